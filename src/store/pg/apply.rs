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

/// STUB in this branch (issue 17): the real one is written in parallel; it writes batch
/// `b` inside the open transaction, `webhook` being the delivery it applies, if any.
pub(super) fn apply_in(
    _client: &mut postgres::Client,
    _b: &Batch,
    _webhook: Option<&str>,
) -> Result<Applied, StoreError> {
    Err(StoreError::NotBuilt("apply_in"))
}

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
