//! What `lomi-sync status` and `GET /healthz` read, and each run's route budgets, in
//! PostgreSQL: the same reports as SQLite's (`store/status.rs`, `store/budgets.rs`).

use std::time::Duration;

use postgres::Client;

use super::PgStore;
use crate::store::status::{plus, walk_in_words};
use crate::store::{
    HealthFacts, NotReread, RouteBudgetRow, RunRow, StatusReport, StoreError, Totals,
};

/// `reset_at` in the text the engine wrote it in: whole seconds
/// (`2026-11-30T03:00:00Z`, `sync::run::route_budget_rows`) unless it has a fraction,
/// as SQLite returns the stored text.
const RESET_AT_TEXT: &str = "CASE WHEN date_trunc('second', l.reset_at) = l.reset_at
     THEN to_char(l.reset_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
     ELSE ts_text(l.reset_at) END";

impl PgStore {
    /// See `SqliteStore::note_route_budgets`.
    pub fn note_route_budgets(
        &self,
        run_id: i64,
        rows: &[RouteBudgetRow],
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let stmt = c.prepare(
                "INSERT INTO run_route_budgets (run_id, route, rate_limit, remaining, reset_at, rate_limited)
                 VALUES ($1, $2, $3, $4, $5::text::timestamptz, $6)
                 ON CONFLICT (run_id, route) DO UPDATE SET rate_limit = excluded.rate_limit,
                     remaining = excluded.remaining, reset_at = excluded.reset_at,
                     rate_limited = excluded.rate_limited",
            )?;
            for r in rows {
                c.execute(
                    &stmt,
                    &[
                        &run_id,
                        &r.route,
                        &r.limit,
                        &r.remaining,
                        &r.reset_at,
                        &r.rate_limited,
                    ],
                )?;
            }
            Ok::<_, postgres::Error>(())
        })
    }

    /// See `SqliteStore::route_budgets`.
    pub fn route_budgets(&self, runs: usize) -> Result<Vec<RouteBudgetRow>, StoreError> {
        self.with(|c| route_budgets_on(c, runs))
    }

    /// See `SqliteStore::status`. `database` is the URL (no password) and schema; the
    /// writer is the session holding the mirror's advisory lock.
    pub fn status(&self, limit: usize) -> Result<StatusReport, StoreError> {
        let (runs, totals, freshness, budgets) = self.with(|c| {
            let runs = recent_runs(c, limit)?;
            let totals = totals(c)?;
            let f = c.query_one(
                "SELECT ts_text(last_success_at), seconds_since_success FROM freshness",
                &[],
            )?;
            let freshness: (Option<String>, Option<i64>) = (f.get(0), f.get(1));
            Ok::<_, postgres::Error>((runs, totals, freshness, route_budgets_on(c, limit)?))
        })?;
        let totals = Totals {
            customers_lacking_details: self.lacking_details()? as i64,
            ..totals
        };
        let writer = super::lock::holder(&self.target);
        let walk_in_progress = match self.walk()? {
            Some(w) => {
                let running = self.run_is_running(w.run_id)?;
                Some(walk_in_words(&w, writer.as_deref(), || running))
            }
            None => None,
        };
        Ok(StatusReport {
            database: self.target.shown(),
            last_success_at: freshness.0,
            seconds_since_success: freshness.1,
            walk_in_progress,
            writer,
            payments_not_reread: None,
            transactions_source: self.last_transactions_source()?,
            totals,
            runs,
            route_budgets: budgets,
        })
    }

    /// The run `id` is marked `running` in `sync_runs`.
    fn run_is_running(&self, id: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            c.query_one(
                "SELECT EXISTS (SELECT 1 FROM sync_runs WHERE id = $1 AND outcome = 'running')",
                &[&id],
            )
        })
        .map(|r| r.get(0))
    }

    /// See `SqliteStore::not_reread_since`.
    pub fn not_reread_since(
        &self,
        since: &str,
        full_every: Duration,
    ) -> Result<NotReread, StoreError> {
        let r = self.with(|c| {
            c.query_one(
                "SELECT count(*), ts_text(min(s.tx_checked_at)), ts_text(max(s.tx_checked_at))
                 FROM customers c JOIN customer_sync s ON s.customer_id = c.id
                 WHERE c.deleted_at IS NULL AND s.live_tx > 0
                   AND s.tx_checked_at < $1::text::timestamptz",
                &[&since],
            )
        })?;
        let newest: Option<String> = r.get(2);
        Ok(NotReread {
            customers: r.get::<_, i64>(0).max(0) as u64,
            oldest_read_at: r.get(1),
            by: newest.as_deref().and_then(|t| plus(t, full_every)),
        })
    }

    /// See `SqliteStore::not_reread_by_last_success`.
    pub fn not_reread_by_last_success(
        &self,
        full_every: Duration,
    ) -> Result<Option<NotReread>, StoreError> {
        match self.last_success_started_at()? {
            Some(since) => Ok(Some(self.not_reread_since(&since, full_every)?)),
            None => Ok(None),
        }
    }

    /// See `SqliteStore::health_facts`.
    pub fn health_facts(&self) -> Result<HealthFacts, StoreError> {
        self.with(|c| {
            let last_success_at = c
                .query_one(
                    "SELECT ts_text(max(finished_at)) FROM sync_runs WHERE outcome = 'succeeded'",
                    &[],
                )?
                .get(0);
            let last_run = c
                .query_opt(
                    "SELECT outcome, error FROM sync_runs WHERE outcome <> 'running'
                     ORDER BY id DESC LIMIT 1",
                    &[],
                )?
                .map(|r| (r.get(0), r.get(1)));
            Ok::<_, postgres::Error>(HealthFacts {
                last_success_at,
                last_run,
            })
        })
    }
}

/// Row counts of the mirror (`customers_lacking_details` is filled by the caller).
fn totals(c: &mut Client) -> Result<Totals, postgres::Error> {
    let r = c.query_one(
        "SELECT (SELECT count(*) FROM customers WHERE deleted_at IS NULL),
                (SELECT count(*) FROM customers WHERE deleted_at IS NOT NULL),
                (SELECT count(*) FROM transactions WHERE deleted_at IS NULL),
                (SELECT count(*) FROM transactions WHERE deleted_at IS NOT NULL),
                (SELECT count(*) FROM changes)",
        &[],
    )?;
    Ok(Totals {
        live_customers: r.get(0),
        deleted_customers: r.get(1),
        live_transactions: r.get(2),
        deleted_transactions: r.get(3),
        changes: r.get(4),
        customers_lacking_details: 0,
    })
}

/// The last `limit` rows of `sync_runs`, newest first.
fn recent_runs(c: &mut Client, limit: usize) -> Result<Vec<RunRow>, postgres::Error> {
    let rows = c.query(
        "SELECT id, kind, ts_text(started_at), ts_text(finished_at),
                extract(epoch FROM finished_at - started_at)::float8,
                outcome, pages, requests, retries,
                customers_inserted, customers_updated, customers_deleted, customers_restored,
                transactions_inserted, transactions_updated, transactions_deleted,
                transactions_restored, error, records_skipped, ts_text(resume_at)
         FROM sync_runs ORDER BY id DESC LIMIT $1",
        &[&(limit.min(i64::MAX as usize) as i64)],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| RunRow {
            id: r.get(0),
            kind: r.get(1),
            started_at: r.get(2),
            finished_at: r.get(3),
            duration_secs: r.get(4),
            outcome: r.get(5),
            pages: r.get(6),
            requests: r.get(7),
            retries: r.get(8),
            customers_inserted: r.get(9),
            customers_updated: r.get(10),
            customers_deleted: r.get(11),
            customers_restored: r.get(12),
            transactions_inserted: r.get(13),
            transactions_updated: r.get(14),
            transactions_deleted: r.get(15),
            transactions_restored: r.get(16),
            error: r.get(17),
            records_skipped: r.get(18),
            resume_at: r.get(19),
        })
        .collect())
}

/// Per route: the latest known limit, remaining and reset, and the 429s of the last
/// `runs` runs (as SQLite's query).
fn route_budgets_on(c: &mut Client, runs: usize) -> Result<Vec<RouteBudgetRow>, postgres::Error> {
    let rows = c.query(
        &format!(
            "WITH recent AS (SELECT id FROM sync_runs ORDER BY id DESC LIMIT $1),
                  latest AS (SELECT route, max(run_id) AS run_id FROM run_route_budgets
                             WHERE rate_limit IS NOT NULL GROUP BY route)
             SELECT b.route, l.rate_limit, l.remaining, {RESET_AT_TEXT},
                    coalesce(sum(b.rate_limited) FILTER (WHERE b.run_id IN (SELECT id FROM recent)), 0)::bigint
             FROM run_route_budgets b
             LEFT JOIN latest x ON x.route = b.route
             LEFT JOIN run_route_budgets l ON l.route = x.route AND l.run_id = x.run_id
             GROUP BY b.route, l.rate_limit, l.remaining, l.reset_at
             ORDER BY b.route COLLATE \"C\""
        ),
        &[&(runs.min(i64::MAX as usize) as i64)],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| RouteBudgetRow {
            route: r.get(0),
            limit: r.get(1),
            remaining: r.get(2),
            reset_at: r.get(3),
            rate_limited: r.get(4),
        })
        .collect())
}
