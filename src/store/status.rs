//! What `lomi-sync status` shows: recent runs, totals, freshness.

use rusqlite::params;
use serde::Serialize;

use super::{Store, StoreError};

/// One row of `sync_runs`.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub kind: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_secs: Option<f64>,
    pub outcome: String,
    pub pages: i64,
    pub requests: i64,
    pub retries: i64,
    pub customers_inserted: i64,
    pub customers_updated: i64,
    pub customers_deleted: i64,
    pub customers_restored: i64,
    pub transactions_inserted: i64,
    pub transactions_updated: i64,
    pub transactions_deleted: i64,
    pub transactions_restored: i64,
    /// Records skipped because their id could not be read.
    pub records_skipped: i64,
    pub error: Option<String>,
}

/// Row counts of the mirror.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    pub live_customers: i64,
    pub deleted_customers: i64,
    pub live_transactions: i64,
    pub deleted_transactions: i64,
    pub changes: i64,
}

/// The whole status report.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub database: String,
    pub last_success_at: Option<String>,
    pub seconds_since_success: Option<i64>,
    pub walk_in_progress: Option<String>,
    pub totals: Totals,
    pub runs: Vec<RunRow>,
    /// Per route: the service's last known rate-limit budget and the 429s of the runs shown.
    pub route_budgets: Vec<super::RouteBudgetRow>,
}

impl Store {
    /// The last `limit` runs (newest first), totals, and freshness.
    pub fn status(&self, limit: usize) -> Result<StatusReport, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, started_at, finished_at,
                    (julianday(finished_at) - julianday(started_at)) * 86400.0,
                    outcome, pages, requests, retries,
                    customers_inserted, customers_updated, customers_deleted, customers_restored,
                    transactions_inserted, transactions_updated, transactions_deleted, transactions_restored, error,
                    records_skipped
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
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
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
                })
            },
        )?;
        let (last_success_at, seconds_since_success): (Option<String>, Option<i64>) =
            self.conn.query_row(
                "SELECT last_success_at, seconds_since_success FROM freshness",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        let walk_in_progress = self.walk()?.map(|w| {
            format!(
                "{} walk of run {} stopped in phase {} ({} segment, next page {}); the next run resumes it",
                w.kind.as_str(),
                w.run_id,
                w.phase.as_str(),
                w.segment,
                w.next_page
            )
        });
        Ok(StatusReport {
            database: self.path.display().to_string(),
            last_success_at,
            seconds_since_success,
            walk_in_progress,
            totals,
            runs,
            route_budgets: self.route_budgets(limit)?,
        })
    }
}
