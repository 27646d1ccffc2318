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
    pub fn webhook_seen(&self, _id: &str) -> Result<bool, StoreError> {
        Err(StoreError::NotBuilt("webhook_seen"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn apply_webhook_open(&mut self, _w: &WebhookBatch) -> Result<WebhookResult, StoreError> {
        Err(StoreError::NotBuilt("apply_webhook_open"))
    }
}
