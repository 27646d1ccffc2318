//! STUB (issue 17 in progress): replaced by the real implementation.
#![allow(unused_imports)]

use std::collections::HashMap;
use std::ops::Bound;
use std::time::Duration;

use super::PgStore;
use crate::store::{
    Applied, Batch, FeedRolling, HealthFacts, NotReread, Outcome, PlanInfo, RouteBudgetRow,
    RunFailure, RunKind, SeenIn, SourceReport, StatusReport, StoreError, Walk, WebhookBatch,
    WebhookResult,
};

impl PgStore {
    /// Not built yet (issue 17, in progress).
    pub fn note_route_budgets(
        &self,
        _run_id: i64,
        _rows: &[RouteBudgetRow],
    ) -> Result<(), StoreError> {
        Err(StoreError::NotBuilt("note_route_budgets"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn route_budgets(&self, _runs: usize) -> Result<Vec<RouteBudgetRow>, StoreError> {
        Err(StoreError::NotBuilt("route_budgets"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn status(&self, _limit: usize) -> Result<StatusReport, StoreError> {
        Err(StoreError::NotBuilt("status"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn not_reread_since(
        &self,
        _since: &str,
        _full_every: Duration,
    ) -> Result<NotReread, StoreError> {
        Err(StoreError::NotBuilt("not_reread_since"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn not_reread_by_last_success(
        &self,
        _full_every: Duration,
    ) -> Result<Option<NotReread>, StoreError> {
        Err(StoreError::NotBuilt("not_reread_by_last_success"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn health_facts(&self) -> Result<HealthFacts, StoreError> {
        Err(StoreError::NotBuilt("health_facts"))
    }
}
