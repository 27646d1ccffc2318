//! Each run's view of the service's per-route rate-limit budgets (issue 15), for `status`.

use rusqlite::params;
use serde::Serialize;

use super::{SqliteStore, StoreError};

/// One route's budget as a run last saw it, or (in `status`) as the latest run that saw
/// the route did, with the 429s of the recent runs summed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteBudgetRow {
    /// The route template, e.g. `GET /customers/{id}`.
    pub route: String,
    /// The route's last `X-RateLimit-Limit`: requests per window; `None` if never seen.
    pub limit: Option<i64>,
    /// The route's last `X-RateLimit-Remaining`; `None` if never seen.
    pub remaining: Option<i64>,
    /// When the window was said to reset (UTC).
    pub reset_at: Option<String>,
    /// 429s met on the route: by the run, or (in `status`) by the runs shown.
    pub rate_limited: i64,
}

impl SqliteStore {
    /// Records what `run_id` saw of each route's budget.
    pub fn note_route_budgets(
        &self,
        run_id: i64,
        rows: &[RouteBudgetRow],
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(
            "INSERT OR REPLACE INTO run_route_budgets (run_id, route, rate_limit, remaining, reset_at, rate_limited)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for r in rows {
            stmt.execute(params![
                run_id,
                r.route,
                r.limit,
                r.remaining,
                r.reset_at,
                r.rate_limited
            ])?;
        }
        Ok(())
    }

    /// Per route: the latest known limit, remaining and reset, and the 429s of the last
    /// `runs` runs.
    pub fn route_budgets(&self, runs: usize) -> Result<Vec<RouteBudgetRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "WITH recent AS (SELECT id FROM sync_runs ORDER BY id DESC LIMIT ?1),
                  latest AS (SELECT route, max(run_id) AS run_id FROM run_route_budgets
                             WHERE rate_limit IS NOT NULL GROUP BY route)
             SELECT b.route, l.rate_limit, l.remaining, l.reset_at,
                    coalesce(sum(b.rate_limited) FILTER (WHERE b.run_id IN (SELECT id FROM recent)), 0)
             FROM run_route_budgets b
             LEFT JOIN latest x ON x.route = b.route
             LEFT JOIN run_route_budgets l ON l.route = x.route AND l.run_id = x.run_id
             GROUP BY b.route ORDER BY b.route",
        )?;
        let rows = stmt
            .query_map(params![runs as i64], |r| {
                Ok(RouteBudgetRow {
                    route: r.get(0)?,
                    limit: r.get(1)?,
                    remaining: r.get(2)?,
                    reset_at: r.get(3)?,
                    rate_limited: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

// Tested against both stores: `pg/runs_tests.rs`,
// `route_budgets_keep_the_latest_budget_and_sum_the_recent_429s_alike`.
