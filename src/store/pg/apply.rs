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
    pub fn apply(&mut self, _b: &Batch) -> Result<Applied, StoreError> {
        Err(StoreError::NotBuilt("apply"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn apply_open(&mut self, _b: &Batch) -> Result<Applied, StoreError> {
        Err(StoreError::NotBuilt("apply_open"))
    }
}
