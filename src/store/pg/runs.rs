//! Runs, the walk checkpoint and the planner's reads, in PostgreSQL: each method keeps
//! the contract of its SQLite counterpart (`store/mod.rs`, whose doc comments are the
//! reference) and returns the same strings. Timestamps are read through `ts_text` and
//! written as `$n::text::timestamptz`; ids are ordered `COLLATE "C"`, byte order as in
//! SQLite, whatever the database's collation.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;

use postgres::Client;

use super::PgStore;
use crate::store::{
    FeedCursor, FeedRolling, Outcome, Phase, PlanInfo, RunFailure, RunKind, SeenIn, SourceReport,
    StoreError, StoredWalk, Walk, now, seen_rows, text_hash,
};

/// A count from PostgreSQL (`bigint`), as the engine's unsigned one.
fn count(n: i64) -> u64 {
    n.max(0) as u64
}

impl PgStore {
    /// See `SqliteStore::record_unsuccessful`: updates the run's row, or inserts one.
    pub fn record_unsuccessful(&self, f: &RunFailure) -> Result<i64, StoreError> {
        self.with(|c| record_on(c, f))
    }

    /// See `SqliteStore::recover_stale_runs`.
    pub fn recover_stale_runs(&self) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE sync_runs SET outcome = $2, finished_at = $1::text::timestamptz,
                        error = coalesce(error, 'the process stopped before the run ended')
                 WHERE outcome = $3",
                &[
                    &now(),
                    &Outcome::Interrupted.as_str(),
                    &Outcome::Running.as_str(),
                ],
            )
        })
        .map(|n| n as usize)
    }

    /// See `SqliteStore::start_run`: the id is `sync_runs.id`'s identity.
    pub fn start_run(&self, kind: RunKind) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_one(
                "INSERT INTO sync_runs (kind, started_at, outcome)
                 VALUES ($1, $2::text::timestamptz, $3) RETURNING id",
                &[&kind.as_str(), &now(), &Outcome::Running.as_str()],
            )
        })
        .map(|r| r.get(0))
    }

    /// See `SqliteStore::finish_run`.
    pub fn finish_run(
        &self,
        run_id: i64,
        outcome: Outcome,
        error: Option<&str>,
        requests: u64,
        retries: u64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE sync_runs SET outcome = $2, finished_at = $3::text::timestamptz, error = $4,
                        requests = $5, retries = $6
                 WHERE id = $1",
                &[
                    &run_id,
                    &outcome.as_str(),
                    &now(),
                    &error,
                    &(requests as i64),
                    &(retries as i64),
                ],
            )
        })
        .map(drop)
    }

    /// See `SqliteStore::note_records_skipped`.
    pub fn note_records_skipped(&self, run_id: i64, skipped: u64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE sync_runs SET records_skipped = $2 WHERE id = $1",
                &[&run_id, &(skipped as i64)],
            )
        })
        .map(drop)
    }

    /// See `SqliteStore::deferred_until`.
    pub fn deferred_until(&self) -> Result<Option<String>, StoreError> {
        self.opt_text("SELECT ts_text(resume_at) FROM sync_runs ORDER BY id DESC LIMIT 1")
    }

    /// See `SqliteStore::has_full_walk`.
    pub fn has_full_walk(&self) -> Result<bool, StoreError> {
        self.with(|c| {
            c.query_one(
                // A walk that completed without listing everyone still loaded the mirror.
                "SELECT EXISTS (SELECT 1 FROM sync_runs
                                WHERE (outcome = 'succeeded' OR missing_customers > 0)
                                  AND kind IN ('backfill', 'full'))",
                &[],
            )
        })
        .map(|r| r.get(0))
    }

    /// See `SqliteStore::last_success_started_at`.
    pub fn last_success_started_at(&self) -> Result<Option<String>, StoreError> {
        self.opt_text("SELECT ts_text(max(started_at)) FROM sync_runs WHERE outcome = 'succeeded'")
    }

    /// See `SqliteStore::note_transactions_source`.
    pub fn note_transactions_source(
        &self,
        run_id: i64,
        source: &str,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE sync_runs SET transactions_source = $2, source_note = $3 WHERE id = $1",
                &[&run_id, &source, &note],
            )
        })
        .map(drop)
    }

    /// See `SqliteStore::last_transactions_source`.
    pub fn last_transactions_source(&self) -> Result<Option<SourceReport>, StoreError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT transactions_source, source_note FROM sync_runs
                 WHERE transactions_source IS NOT NULL ORDER BY id DESC LIMIT 1",
                &[],
            )
        })?;
        Ok(row.map(|r| SourceReport {
            source: r.get(0),
            fallback: r.get(1),
        }))
    }

    /// See `SqliteStore::last_success_times`.
    pub fn last_success_times(&self) -> Result<Option<(String, String)>, StoreError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT ts_text(started_at), ts_text(finished_at) FROM sync_runs
                 WHERE outcome = 'succeeded' AND finished_at IS NOT NULL
                 ORDER BY started_at DESC LIMIT 1",
                &[],
            )
        })?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// See `SqliteStore::last_full_walk_started_at`.
    pub fn last_full_walk_started_at(&self) -> Result<Option<String>, StoreError> {
        self.opt_text(
            "SELECT ts_text(max(started_at)) FROM sync_runs
             WHERE outcome = 'succeeded' AND kind IN ('backfill', 'full')",
        )
    }

    /// The one text column of `sql`'s first row; `None` without a row or for NULL.
    fn opt_text(&self, sql: &str) -> Result<Option<String>, StoreError> {
        let row = self.with(|c| c.query_opt(sql, &[]))?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// See `SqliteStore::walk`: a walk this version cannot read is
    /// [`StoreError::UnreadableWalk`], never `None`. A first load's feed pass whose
    /// staged rows are gone starts again ([`restart_lost_stage`]).
    pub fn walk(&self) -> Result<Option<Walk>, StoreError> {
        let Some(mut w) = self.stored_walk()? else {
            return Ok(None);
        };
        if lost_stage(&w) {
            let staged: bool = self
                .with(|c| c.query_one("SELECT EXISTS (SELECT 1 FROM feed_stage)", &[]))?
                .get(0);
            if !staged {
                restart_lost_stage(&mut w);
            }
        }
        Ok(Some(w))
    }

    /// The `walk` row, checked.
    fn stored_walk(&self) -> Result<Option<Walk>, StoreError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT run_id, kind, ts_text(started_at), phase, segment, next_page, page_size,
                        last_total, initial, pass, page_cap, list_counts, feed
                 FROM walk WHERE id = 1",
                &[],
            )
        })?;
        row.map(|r| {
            StoredWalk {
                run_id: r.get(0),
                kind: r.get(1),
                started_at: r.get(2),
                phase: r.get(3),
                segment: r.get(4),
                next_page: r.get(5),
                page_size: r.get(6),
                last_total: r.get(7),
                initial: r.get(8),
                pass: r.get(9),
                page_cap: r.get(10),
                counts: r.get(11),
                feed: r.get(12),
            }
            .read()
        })
        .transpose()
    }

    /// See `SqliteStore::begin_walk`. An initial walk drops the deferred indexes, which
    /// [`PgStore::complete_walk`] builds once the load is in (one table at a time, before
    /// the walk's transaction: see [`super::DROP_DEFERRED_INDEXES`]).
    pub fn begin_walk(&mut self, w: &Walk) -> Result<(), StoreError> {
        self.with(|c| {
            if w.initial {
                for drop in super::DROP_DEFERRED_INDEXES {
                    c.batch_execute(drop)?;
                }
            }
            let mut tx = c.transaction()?;
            tx.batch_execute("DELETE FROM walk; DELETE FROM walk_seen;")?;
            tx.execute(
                "INSERT INTO walk (id, run_id, kind, started_at, phase, segment, next_page, page_size,
                                   last_total, initial, pass, page_cap, list_counts, feed)
                 VALUES (1, $1, $2, $3::text::timestamptz, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                &[
                    &w.run_id,
                    &w.kind.as_str(),
                    &w.started_at,
                    &w.phase.as_str(),
                    &w.segment.as_str(),
                    &(w.next_page as i64),
                    &i64::from(w.page_size),
                    &w.last_total.map(|t| t as i64),
                    &w.initial,
                    &i64::from(w.pass),
                    &w.page_cap.map(i64::from),
                    &w.counts.to_json(),
                    &w.feed.as_ref().map(FeedCursor::to_json),
                ],
            )?;
            tx.commit()
        })
    }

    /// See `SqliteStore::adopt_walk`.
    pub fn adopt_walk(&self, run_id: i64) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            let previous: Option<i64> = c
                .query_opt("SELECT run_id FROM walk WHERE id = 1", &[])?
                .map(|r| r.get(0));
            c.execute("UPDATE walk SET run_id = $1 WHERE id = 1", &[&run_id])?;
            c.execute(
                "UPDATE sync_runs SET resumed_walk_of = $2 WHERE id = $1",
                &[&run_id, &previous],
            )?;
            Ok::<_, postgres::Error>(previous)
        })
    }

    /// See `SqliteStore::complete_walk`: the walk ends, the deferred indexes are built
    /// (a no-op unless an initial walk dropped them) and the run is marked, in one
    /// transaction. SQLite's `cache_size` switch around the build has no counterpart:
    /// the server sizes an index build by its own `maintenance_work_mem`.
    pub fn complete_walk(
        &mut self,
        run_id: i64,
        requests: u64,
        retries: u64,
        missing: Option<(u64, &str)>,
    ) -> Result<(), StoreError> {
        let (outcome, missed, error) = match missing {
            None => (Outcome::Succeeded, 0, None),
            Some((n, e)) => (Outcome::Failed, n, Some(e)),
        };
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.batch_execute("DELETE FROM walk; DELETE FROM walk_seen;")?;
            tx.batch_execute(super::DEFERRED_INDEXES)?;
            tx.execute(
                "UPDATE sync_runs SET outcome = $5, finished_at = $2::text::timestamptz, error = $6,
                        requests = $3, retries = $4, missing_customers = $7
                 WHERE id = $1",
                &[
                    &run_id,
                    &now(),
                    &(requests as i64),
                    &(retries as i64),
                    &outcome.as_str(),
                    &error,
                    &(missed as i64),
                ],
            )?;
            tx.commit()
        })
    }

    /// See `SqliteStore::plan_snapshot`. `raw_hash` hashes `raw` as `jsonb` prints it,
    /// which is not the text the API sent (`jsonb` orders keys and spaces them), so a
    /// listed customer is never taken as identical here: it rides along to the batch,
    /// whose comparison of the JSON values writes nothing when nothing changed.
    pub fn plan_snapshot(
        &self,
        hot_after: &str,
        pending_after: &str,
    ) -> Result<HashMap<Box<str>, PlanInfo>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT c.id, c.raw::text, ts_text(c.updated_at), c.deleted_at IS NOT NULL,
                        coalesce(s.live_tx, 0),
                        coalesce(s.last_tx_at >= $1::text::timestamptz, false),
                        coalesce(s.newest_pending_at >= $2::text::timestamptz, false),
                        s.customer_id IS NOT NULL
                 FROM customers c LEFT JOIN customer_sync s ON s.customer_id = c.id",
                &[&hot_after, &pending_after],
            )
        })?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get(0);
            let updated_at: Option<&str> = r.get(2);
            let info = PlanInfo {
                raw_hash: text_hash(r.get(1)),
                updated_at_hash: text_hash(updated_at.unwrap_or("")),
                deleted: r.get(3),
                live_transactions: r.get::<_, i64>(4).clamp(0, u32::MAX as i64) as u32,
                hot: r.get(5),
                pending: r.get(6),
                checked: r.get(7),
            };
            out.insert(id.into_boxed_str(), info);
        }
        Ok(out)
    }

    /// See `SqliteStore::feed_watermark`.
    pub fn feed_watermark(&self) -> Result<Option<String>, StoreError> {
        self.opt_text("SELECT ts_text(watermark) FROM feed_state WHERE id = 1")
    }

    /// See `SqliteStore::feed_rolling`.
    pub fn feed_rolling(&self) -> Result<FeedRolling, StoreError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT ts_text(rolling_end), ts_text(rolling_since) FROM feed_state WHERE id = 1",
                &[],
            )
        })?;
        Ok(row
            .map(|r| FeedRolling {
                end: r.get(0),
                since: r.get(1),
            })
            .unwrap_or_default())
    }

    /// See `SqliteStore::live_transactions_before`.
    pub fn live_transactions_before(
        &self,
        floor: &str,
        top: &str,
    ) -> Result<(u64, u64), StoreError> {
        let r = self.with(|c| {
            c.query_one(
                "SELECT count(*), count(*) FILTER (WHERE created_at < $2::text::timestamptz)
                 FROM transactions
                 WHERE deleted_at IS NULL AND created_at < $1::text::timestamptz",
                &[&floor, &top],
            )
        })?;
        Ok((count(r.get(0)), count(r.get(1))))
    }

    /// See `SqliteStore::live_transactions_between`: one SQL text per kind of bound, so
    /// each is a range of the `created_at` index.
    pub fn live_transactions_between(
        &self,
        lower: Bound<&str>,
        upper: &str,
    ) -> Result<Vec<String>, StoreError> {
        const LIVE: &str = "SELECT transaction_id FROM transactions
             WHERE deleted_at IS NULL AND created_at <= $1::text::timestamptz";
        let (sql, low) = match lower {
            Bound::Unbounded => (LIVE.to_string(), None),
            Bound::Included(l) => (
                format!("{LIVE} AND created_at >= $2::text::timestamptz"),
                Some(l),
            ),
            Bound::Excluded(l) => (
                format!("{LIVE} AND created_at > $2::text::timestamptz"),
                Some(l),
            ),
        };
        let rows = self.with(|c| match low {
            None => c.query(&sql, &[&upper]),
            Some(l) => c.query(&sql, &[&upper, &l]),
        })?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// See `SqliteStore::known_customers`: one query for all of `ids`.
    pub fn known_customers<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashSet<String>, StoreError> {
        let ids: Vec<&str> = ids.into_iter().collect();
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let rows =
            self.with(|c| c.query("SELECT id FROM customers WHERE id = ANY($1)", &[&ids]))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// See `SqliteStore::confirmed_present`.
    pub fn confirmed_present(&self) -> Result<u64, StoreError> {
        let r = self.with(|c| {
            c.query_one(
                "SELECT count(*) FROM walk_seen w JOIN customers c ON c.id = w.customer_id
                 WHERE w.segment = 'confirm' AND c.deleted_at IS NULL",
                &[],
            )
        })?;
        Ok(count(r.get(0)))
    }

    /// See `SqliteStore::walk_seen`.
    pub fn walk_seen(&self) -> Result<Vec<(String, SeenIn)>, StoreError> {
        let rows = self.with(|c| c.query("SELECT customer_id, segment FROM walk_seen", &[]))?;
        seen_rows(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// See `SqliteStore::unseen_live_customers`.
    pub fn unseen_live_customers(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.ids(
            "SELECT id FROM customers c
             WHERE deleted_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM walk_seen w WHERE w.customer_id = c.id)
             ORDER BY id COLLATE \"C\" LIMIT $1",
            None,
            limit,
        )
    }

    /// See `SqliteStore::rolling_candidates`.
    pub fn rolling_candidates(
        &self,
        before: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.ids(
            &format!(
                "SELECT c.id {ROLLING_ELIGIBLE}
                   AND (s.tx_checked_at IS NULL OR s.tx_checked_at < $2::text::timestamptz)
                 ORDER BY s.tx_checked_at IS NOT NULL, s.tx_checked_at, c.id COLLATE \"C\" LIMIT $1"
            ),
            Some(before),
            limit,
        )
    }

    /// See `SqliteStore::rolling_counts`.
    pub fn rolling_counts(&self, overdue_before: &str) -> Result<(u64, u64), StoreError> {
        let r = self.with(|c| {
            c.query_one(
                &format!(
                    "SELECT count(*),
                            count(*) FILTER (WHERE s.tx_checked_at IS NULL
                                                OR s.tx_checked_at < $1::text::timestamptz)
                     {ROLLING_ELIGIBLE}"
                ),
                &[&overdue_before],
            )
        })?;
        Ok((count(r.get(0)), count(r.get(1))))
    }

    /// See `SqliteStore::lacking_details`.
    pub fn lacking_details(&self) -> Result<u64, StoreError> {
        let r = self.with(|c| c.query_one(&format!("SELECT count(*) {LACKING_DETAILS}"), &[]))?;
        Ok(count(r.get(0)))
    }

    /// See `SqliteStore::details_candidates`: changed ones first, then never read;
    /// newest first within each.
    pub fn details_candidates(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.ids(
            &format!(
                "SELECT id {LACKING_DETAILS}
                 ORDER BY details_updated_at IS NULL, created_at DESC NULLS LAST,
                          id COLLATE \"C\" DESC
                 LIMIT $1"
            ),
            None,
            limit,
        )
    }

    /// The ids `sql` selects, its `$1` the limit and `$2` (if given) a timestamp.
    fn ids(&self, sql: &str, at: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows = self.with(|c| match at {
            None => c.query(sql, &[&limit]),
            Some(at) => c.query(sql, &[&limit, &at]),
        })?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }
}

/// `w` is a first load in its feed pass that has staged rows (`read_to` past the top):
/// they must be in `feed_stage` until the pass's last batch merges them.
fn lost_stage(w: &Walk) -> bool {
    w.initial && w.phase == Phase::Feed && w.feed.as_ref().is_some_and(|f| f.read_to > 0)
}

/// `feed_stage` is a logged table, so a crash of the server keeps it; should it be
/// empty anyway while the checkpoint says its pages were read (truncated by hand, or a
/// mirror restored from a dump without it), the pass starts again from the top of the
/// feed, keeping what it learned of the feed's pages (size, cap), rather than complete
/// without those rows. (A pass whose pages held only rows without a customer restarts
/// too, harmlessly.)
pub(super) fn restart_lost_stage(w: &mut Walk) {
    if let Some(f) = w.feed.as_mut() {
        tracing::warn!(
            rows = f.read_to,
            "the first load's staged feed rows are gone from feed_stage: its feed pass starts again"
        );
        *f = f.from_top();
    }
}

/// The customers the rolling schedule covers (see SQLite's `ROLLING_ELIGIBLE`).
const ROLLING_ELIGIBLE: &str = "FROM customers c
    LEFT JOIN customer_sync s ON s.customer_id = c.id
    WHERE c.deleted_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM walk_seen w WHERE w.customer_id = c.id AND w.segment = 'inactive')";

/// Live customers whose details are not known at their current `updated_at`: the
/// predicate of the partial index `customers_lacking_details`, so the planner uses it.
const LACKING_DETAILS: &str = "FROM customers
     WHERE deleted_at IS NULL
       AND details_updated_at IS DISTINCT FROM coalesce(updated_at, '-infinity')";

/// Writes `f` (see `record_unsuccessful_run`) through `c`.
fn record_on(c: &mut Client, f: &RunFailure) -> Result<i64, postgres::Error> {
    let (requests, retries) = (f.requests as i64, f.retries as i64);
    if let Some(id) = f.run_id {
        // The CHECK ties the outcome `deferred` to `resume_at`: only a deferral sets it.
        let updated = c.execute(
            "UPDATE sync_runs SET outcome = $2, finished_at = $3::text::timestamptz, error = $4,
                    requests = $5, retries = $6,
                    resume_at = CASE WHEN $7::text IS NULL THEN resume_at
                                     ELSE $7::text::timestamptz END
             WHERE id = $1",
            &[
                &id,
                &f.outcome.as_str(),
                &now(),
                &f.error,
                &requests,
                &retries,
                &f.resume_at,
            ],
        )?;
        if updated == 1 {
            return Ok(id);
        }
    }
    let row = c.query_one(
        "INSERT INTO sync_runs (kind, started_at, finished_at, outcome, error, requests, retries)
         VALUES ($1, $2::text::timestamptz, $3::text::timestamptz, $4, $5, $6, $7) RETURNING id",
        &[
            &f.kind.as_str(),
            &f.started_at,
            &now(),
            &f.outcome.as_str(),
            &f.error,
            &requests,
            &retries,
        ],
    )?;
    Ok(row.get(0))
}
