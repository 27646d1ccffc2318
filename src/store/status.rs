//! What `lomi-sync status` shows: recent runs, totals, freshness.

use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{SqliteStore, StoreError};

/// One row of `sync_runs`.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    /// The run's id (`sync_runs.id`).
    pub id: i64,
    /// `backfill`, `sync` or `full` ([`super::RunKind`]).
    pub kind: String,
    /// When the run began: the mirror's UTC timestamp text (`YYYY-MM-DDTHH:MM:SS.ffffffZ`).
    pub started_at: String,
    /// When it ended, in the same form; `None` while running.
    pub finished_at: Option<String>,
    /// `finished_at - started_at`, in seconds; `None` while running.
    pub duration_secs: Option<f64>,
    /// `running`, `succeeded`, `failed`, `interrupted` or `deferred` ([`super::Outcome`]).
    pub outcome: String,
    /// List pages read.
    pub pages: i64,
    /// HTTP requests sent, retries included.
    pub requests: i64,
    /// Of those, the retries.
    pub retries: i64,
    /// Customers new to the mirror.
    pub customers_inserted: i64,
    /// Customers whose stored record changed.
    pub customers_updated: i64,
    /// Customers marked deleted (soft delete: `GET /customers/{id}` answered 404).
    pub customers_deleted: i64,
    /// Customers marked deleted before that the API showed again.
    pub customers_restored: i64,
    /// Transactions new to the mirror.
    pub transactions_inserted: i64,
    /// Transactions whose stored record changed (a status change, say).
    pub transactions_updated: i64,
    /// Transactions marked deleted: gone from their customer's complete list.
    pub transactions_deleted: i64,
    /// Transactions marked deleted before that the API showed again.
    pub transactions_restored: i64,
    /// Records skipped because their id could not be read.
    pub records_skipped: i64,
    /// Why the run failed (or stopped), as its error said; `None` for a success.
    pub error: Option<String>,
    /// A deferred run: when the service's rate limit lets the walk go on (UTC).
    pub resume_at: Option<String>,
}

/// Row counts of the mirror.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    /// Customers not marked deleted.
    pub live_customers: i64,
    /// Customers marked deleted (soft delete; their rows are kept).
    pub deleted_customers: i64,
    /// Transactions not marked deleted.
    pub live_transactions: i64,
    /// Transactions marked deleted (their rows are kept).
    pub deleted_transactions: i64,
    /// Rows of the `changes` log.
    pub changes: i64,
    /// Live customers whose details (`GET /customers/{id}`: the metadata the live list
    /// hides) are not known at their current `updated_at`: their `metadata` is NULL
    /// (never read) or the last one read. Later runs fill them, `sync.details_per_run`
    /// each (issue 14).
    pub customers_lacking_details: i64,
}

/// Customers whose payments a run did not re-read: an incremental run re-reads only
/// the customers worth it and a rolling share of the rest, so a revenue figure it
/// reports is only as fresh as the oldest of these reads. Each is re-read within
/// `sync.full_every` of its last read (the rolling phase's bound), so all of them by
/// `by`, if runs keep coming.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NotReread {
    /// Live customers with payments in the mirror whose transactions were last read
    /// before the run started.
    pub customers: u64,
    /// The oldest of those reads.
    pub oldest_read_at: Option<String>,
    /// When the last of them is due to be re-read: the newest of those reads plus
    /// `sync.full_every`.
    pub by: Option<String>,
}

/// In words: `payments of N customers not re-read by this run (oldest read ...);
/// sync.full_every re-reads them all by ...`, or that every customer's were re-read.
impl std::fmt::Display for NotReread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.customers == 0 {
            return f.write_str("every customer's payments re-read");
        }
        write!(
            f,
            "payments of {} customers not re-read by this run (oldest read {}); sync.full_every re-reads them all by {}",
            self.customers,
            self.oldest_read_at.as_deref().unwrap_or("unknown"),
            self.by.as_deref().unwrap_or("unknown")
        )
    }
}

/// Where the latest run read transactions from (`sync.transactions_source`; issue 14).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceReport {
    /// `feed` (`GET /transactions`) or `per_customer` (`GET /customers/{id}/transactions`).
    pub source: String,
    /// Why `auto` read per customer: the feed probe's answer (`HTTP 404 from GET
    /// /transactions?...`); `None` when the source was the one asked for.
    pub fallback: Option<String>,
}

/// In words: `feed`, or `per_customer (feed not available: HTTP 404 from ...)`.
impl std::fmt::Display for SourceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)?;
        match &self.fallback {
            Some(why) => write!(f, " (feed not available: {why})"),
            None => Ok(()),
        }
    }
}

/// The whole status report.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    /// Where the mirror is: the SQLite file's path, or the PostgreSQL URL (never with
    /// a password) and schema.
    pub database: String,
    /// When the last successful run finished (the `freshness` view; UTC timestamp text).
    pub last_success_at: Option<String>,
    /// Seconds from then to now; `None` before any success.
    pub seconds_since_success: Option<i64>,
    /// The unfinished walk in words (kind, run, phase, segment, next page), and whether a
    /// running process is writing it or the next run resumes it; `None` if there is none.
    pub walk_in_progress: Option<String>,
    /// The process writing the mirror now (from its writer lock), if any.
    pub writer: Option<String>,
    /// Of the last successful run; set by the caller that knows `sync.full_every`.
    pub payments_not_reread: Option<NotReread>,
    /// Where the latest run read transactions from, and why `auto` fell back.
    pub transactions_source: Option<SourceReport>,
    /// Row counts of the mirror.
    pub totals: Totals,
    /// The last runs, newest first.
    pub runs: Vec<RunRow>,
    /// Per route: the service's last known rate-limit budget and the 429s of the runs shown.
    pub route_budgets: Vec<super::RouteBudgetRow>,
}

impl SqliteStore {
    /// The last `limit` runs (newest first), totals, and freshness.
    pub fn status(&self, limit: usize) -> Result<StatusReport, StoreError> {
        let runs = self.recent_runs(limit)?;
        let totals = self.conn.query_row(
            "SELECT (SELECT count(*) FROM customers WHERE deleted_at IS NULL),
                    (SELECT count(*) FROM customers WHERE deleted_at IS NOT NULL),
                    (SELECT count(*) FROM transactions WHERE deleted_at IS NULL),
                    (SELECT count(*) FROM transactions WHERE deleted_at IS NOT NULL),
                    (SELECT count(*) FROM changes)",
            [],
            |r| {
                Ok(Totals {
                    live_customers: r.get(0)?,
                    deleted_customers: r.get(1)?,
                    live_transactions: r.get(2)?,
                    deleted_transactions: r.get(3)?,
                    changes: r.get(4)?,
                    customers_lacking_details: 0,
                })
            },
        )?;
        let totals = Totals {
            customers_lacking_details: self.lacking_details()? as i64,
            ..totals
        };
        let (last_success_at, seconds_since_success): (Option<String>, Option<i64>) =
            self.conn.query_row(
                "SELECT last_success_at, seconds_since_success FROM freshness",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        let writer = super::lock::file_holder(&self.path);
        let walk_in_progress = self.walk()?.map(|w| {
            walk_in_words(&w, writer.as_deref(), || {
                run_is_running(&self.conn, w.run_id)
            })
        });
        Ok(StatusReport {
            database: self.path.display().to_string(),
            last_success_at,
            seconds_since_success,
            walk_in_progress,
            writer,
            payments_not_reread: None,
            transactions_source: self.last_transactions_source()?,
            totals,
            runs,
            route_budgets: self.route_budgets(limit)?,
        })
    }

    /// The last `limit` rows of `sync_runs`, newest first.
    fn recent_runs(&self, limit: usize) -> Result<Vec<RunRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, started_at, finished_at,
                    (julianday(finished_at) - julianday(started_at)) * 86400.0,
                    outcome, pages, requests, retries,
                    customers_inserted, customers_updated, customers_deleted, customers_restored,
                    transactions_inserted, transactions_updated, transactions_deleted, transactions_restored, error,
                    records_skipped, resume_at
             FROM sync_runs ORDER BY id DESC LIMIT ?1",
        )?;
        let runs = stmt
            .query_map(params![limit as i64], |r| {
                Ok(RunRow {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    started_at: r.get(2)?,
                    finished_at: r.get(3)?,
                    duration_secs: r.get(4)?,
                    outcome: r.get(5)?,
                    pages: r.get(6)?,
                    requests: r.get(7)?,
                    retries: r.get(8)?,
                    customers_inserted: r.get(9)?,
                    customers_updated: r.get(10)?,
                    customers_deleted: r.get(11)?,
                    customers_restored: r.get(12)?,
                    transactions_inserted: r.get(13)?,
                    transactions_updated: r.get(14)?,
                    transactions_deleted: r.get(15)?,
                    transactions_restored: r.get(16)?,
                    error: r.get(17)?,
                    records_skipped: r.get(18)?,
                    resume_at: r.get(19)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(runs)
    }

    /// Customers whose payments were not re-read since `since` (a run's start): live,
    /// with live transactions in the mirror, last read before it. Customers without
    /// payments are left out: the `status=active` list shows their first payment on
    /// every run, and that read is never skipped.
    pub fn not_reread_since(
        &self,
        since: &str,
        full_every: Duration,
    ) -> Result<NotReread, StoreError> {
        let (customers, oldest, newest): (i64, Option<String>, Option<String>) =
            self.conn.query_row(
                "SELECT count(*), min(s.tx_checked_at), max(s.tx_checked_at)
                 FROM customers c JOIN customer_sync s ON s.customer_id = c.id
                 WHERE c.deleted_at IS NULL AND s.live_tx > 0 AND s.tx_checked_at < ?1",
                params![since],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
        Ok(NotReread {
            customers: customers as u64,
            oldest_read_at: oldest,
            by: newest.as_deref().and_then(|t| plus(t, full_every)),
        })
    }

    /// [`SqliteStore::not_reread_since`] the start of the last successful run; `None`
    /// before any.
    pub fn not_reread_by_last_success(
        &self,
        full_every: Duration,
    ) -> Result<Option<NotReread>, StoreError> {
        match self.last_success_started_at()? {
            Some(since) => Ok(Some(self.not_reread_since(&since, full_every)?)),
            None => Ok(None),
        }
    }
}

/// The unfinished walk `w` in words for [`StatusReport::walk_in_progress`]: running
/// (with the lock's `writer`) when `running` says its run is marked so, else stopped.
pub(super) fn walk_in_words(
    w: &super::Walk,
    writer: Option<&str>,
    running: impl FnOnce() -> bool,
) -> String {
    let at = format!(
        "{} walk of run {} in phase {} ({} segment, next page {})",
        w.kind.as_str(),
        w.run_id,
        w.phase.as_str(),
        w.segment.as_str(),
        w.next_page
    );
    // The daemon holds the lock between runs too: only a run marked running is one.
    match writer {
        Some(holder) if running() => format!("running: {at}, written by {holder}"),
        _ => format!("stopped: {at}; the next run resumes it"),
    }
}

/// A stored timestamp plus a duration, in the same format.
pub(super) fn plus(t: &str, d: Duration) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(t).ok()?;
    let later = t.with_timezone(&chrono::Utc) + chrono::Duration::from_std(d).ok()?;
    Some(crate::api::model::format_timestamp(later))
}

/// The run `id` is marked `running` in `sync_runs`.
fn run_is_running(conn: &rusqlite::Connection, id: i64) -> bool {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sync_runs WHERE id = ?1 AND outcome = 'running')",
        [id],
        |r| r.get(0),
    )
    .unwrap_or(false)
}

/// What `GET /healthz` judges by (the daemon's listener, `server.healthy_within`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthFacts {
    /// When the last successful run finished (the mirror's timestamp form).
    pub last_success_at: Option<String>,
    /// The last run that ended: its outcome and error, if any.
    pub last_run: Option<(String, Option<String>)>,
}

impl SqliteStore {
    /// The facts `GET /healthz` reports on, from `sync_runs`.
    pub fn health_facts(&self) -> Result<HealthFacts, StoreError> {
        let last_success_at = self.conn.query_row(
            "SELECT max(finished_at) FROM sync_runs WHERE outcome = 'succeeded'",
            [],
            |r| r.get(0),
        )?;
        let last_run = self
            .conn
            .query_row(
                "SELECT outcome, error FROM sync_runs WHERE outcome <> 'running' ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(HealthFacts {
            last_success_at,
            last_run,
        })
    }
}
