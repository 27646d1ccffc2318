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
    pub fn record_unsuccessful(&self, _f: &RunFailure) -> Result<i64, StoreError> {
        Err(StoreError::NotBuilt("record_unsuccessful"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn recover_stale_runs(&self) -> Result<usize, StoreError> {
        Err(StoreError::NotBuilt("recover_stale_runs"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn start_run(&self, _kind: RunKind) -> Result<i64, StoreError> {
        Err(StoreError::NotBuilt("start_run"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn finish_run(
        &self,
        _run_id: i64,
        _outcome: Outcome,
        _error: Option<&str>,
        _requests: u64,
        _retries: u64,
    ) -> Result<(), StoreError> {
        Err(StoreError::NotBuilt("finish_run"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn note_records_skipped(&self, _run_id: i64, _skipped: u64) -> Result<(), StoreError> {
        Err(StoreError::NotBuilt("note_records_skipped"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn deferred_until(&self) -> Result<Option<String>, StoreError> {
        Err(StoreError::NotBuilt("deferred_until"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn has_full_walk(&self) -> Result<bool, StoreError> {
        Err(StoreError::NotBuilt("has_full_walk"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn last_success_started_at(&self) -> Result<Option<String>, StoreError> {
        Err(StoreError::NotBuilt("last_success_started_at"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn note_transactions_source(
        &self,
        _run_id: i64,
        _source: &str,
        _note: Option<&str>,
    ) -> Result<(), StoreError> {
        Err(StoreError::NotBuilt("note_transactions_source"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn last_transactions_source(&self) -> Result<Option<SourceReport>, StoreError> {
        Err(StoreError::NotBuilt("last_transactions_source"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn last_success_times(&self) -> Result<Option<(String, String)>, StoreError> {
        Err(StoreError::NotBuilt("last_success_times"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn last_full_walk_started_at(&self) -> Result<Option<String>, StoreError> {
        Err(StoreError::NotBuilt("last_full_walk_started_at"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn walk(&self) -> Result<Option<Walk>, StoreError> {
        Err(StoreError::NotBuilt("walk"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn begin_walk(&mut self, _w: &Walk) -> Result<(), StoreError> {
        Err(StoreError::NotBuilt("begin_walk"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn adopt_walk(&self, _run_id: i64) -> Result<Option<i64>, StoreError> {
        Err(StoreError::NotBuilt("adopt_walk"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn complete_walk(
        &mut self,
        _run_id: i64,
        _requests: u64,
        _retries: u64,
        _missing: Option<(u64, &str)>,
    ) -> Result<(), StoreError> {
        Err(StoreError::NotBuilt("complete_walk"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn plan_snapshot(
        &self,
        _hot_after: &str,
        _pending_after: &str,
    ) -> Result<HashMap<Box<str>, PlanInfo>, StoreError> {
        Err(StoreError::NotBuilt("plan_snapshot"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn feed_watermark(&self) -> Result<Option<String>, StoreError> {
        Err(StoreError::NotBuilt("feed_watermark"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn feed_rolling(&self) -> Result<FeedRolling, StoreError> {
        Err(StoreError::NotBuilt("feed_rolling"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn live_transactions_before(
        &self,
        _floor: &str,
        _top: &str,
    ) -> Result<(u64, u64), StoreError> {
        Err(StoreError::NotBuilt("live_transactions_before"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn live_transactions_between(
        &self,
        _lower: Bound<&str>,
        _upper: &str,
    ) -> Result<Vec<String>, StoreError> {
        Err(StoreError::NotBuilt("live_transactions_between"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn confirmed_present(&self) -> Result<u64, StoreError> {
        Err(StoreError::NotBuilt("confirmed_present"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn walk_seen(&self) -> Result<Vec<(String, SeenIn)>, StoreError> {
        Err(StoreError::NotBuilt("walk_seen"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn unseen_live_customers(&self, _limit: usize) -> Result<Vec<String>, StoreError> {
        Err(StoreError::NotBuilt("unseen_live_customers"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn rolling_candidates(
        &self,
        _before: &str,
        _limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        Err(StoreError::NotBuilt("rolling_candidates"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn rolling_counts(&self, _overdue_before: &str) -> Result<(u64, u64), StoreError> {
        Err(StoreError::NotBuilt("rolling_counts"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn lacking_details(&self) -> Result<u64, StoreError> {
        Err(StoreError::NotBuilt("lacking_details"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn details_candidates(&self, _limit: usize) -> Result<Vec<String>, StoreError> {
        Err(StoreError::NotBuilt("details_candidates"))
    }

    /// Not built yet (issue 17, in progress).
    pub fn known_customers<'a>(
        &self,
        _ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        Err(StoreError::NotBuilt("known_customers"))
    }
}
