//! Issue 15: the request budget as the live service counts it (per route, fixed windows,
//! `X-RateLimit-*` on every response), measured against the simulator's rate-limit mode.

use std::time::{Duration, Instant};

use lomi_sim::{RateLimit, RateLimitReport, Route, SimOptions};
use lomi_sync::store::RunKind;

use lomi_sync::store::Store;

use crate::harness::{Mirror, run_bin};
use crate::support::{TestSim, small_sim_options, spawn_sim};

const WINDOW: Duration = Duration::from_secs(2);
const LIMIT: u32 = 50;
const SHARE: f64 = 0.6;

async fn limited_sim(customers: usize, seed: u64) -> TestSim {
    spawn_sim(SimOptions {
        rate_limit: Some(RateLimit {
            requests: LIMIT,
            window: WINDOW,
        }),
        ..small_sim_options(customers, seed)
    })
    .await
}

/// Per customer: these tests drain and pace the per-customer routes.
fn mirror(sim: &TestSim) -> Mirror {
    let mut m = Mirror::per_customer(sim);
    m.settings.api.budget_share = SHARE;
    // The averages are the fallback only: far too slow to be what paces this run.
    m.settings.api.requests_per_second = 4.0;
    m.settings.api.concurrency = 8;
    m
}

/// Requests the client sent on each route: every window's count, summed.
fn used(report: &RateLimitReport, route: Route) -> u32 {
    report.routes[route.template()].windows_used.iter().sum()
}

/// The time the busiest route needs at `SHARE` of each window, its requests spread
/// evenly: `(n - 1)` gaps of `WINDOW / (SHARE * LIMIT)`.
fn ideal(report: &RateLimitReport) -> Duration {
    let per_window = (SHARE * f64::from(LIMIT)).floor();
    let busiest = Route::ALL
        .iter()
        .map(|&r| used(report, r))
        .max()
        .unwrap_or(0);
    WINDOW.mul_f64(f64::from(busiest.saturating_sub(1)) / per_window)
}

/// About three windows of work on the busiest route, nobody else on the IP: exact,
/// zero 429s, at most `SHARE` of any window used, wall time within 10% of the ideal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_paced_by_the_headers_meets_no_429_and_leaves_the_others_share() {
    let sim = limited_sim(200, 151).await;
    let m = mirror(&sim);
    let started = Instant::now();
    m.run(RunKind::Backfill).await.unwrap();
    let wall = started.elapsed();
    m.assert_equals_truth(&sim);
    let report = sim.sim.rate_limit().unwrap();
    let ideal = ideal(&report);
    let cap = (SHARE * f64::from(LIMIT)).floor() as u32;
    for (route, r) in &report.routes {
        eprintln!(
            "{route}: windows used {:?}, 429s {}",
            r.windows_used, r.rate_limited
        );
        assert_eq!(r.rate_limited, 0, "{route}: no 429");
        assert!(
            r.windows_used.iter().all(|&n| n <= cap),
            "{route}: at most {cap} of {LIMIT} per window: {:?}",
            r.windows_used
        );
    }
    eprintln!("wall {wall:?}, ideal {ideal:?}");
    assert!(
        ideal >= WINDOW * 2,
        "the walk needs about three windows: {ideal:?}"
    );
    assert!(
        wall.as_secs_f64() <= ideal.as_secs_f64() * 1.10,
        "wall {wall:?} vs ideal {ideal:?}"
    );
}

/// A second client drains one route at the middle of every window: lomi-sync meets at
/// most one 429 per window there, none elsewhere, and finishes exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_draining_one_route_costs_at_most_one_429_per_window() {
    let sim = limited_sim(120, 152).await;
    let drained = Route::CustomerTransactions;
    let other = sim.sim.clone();
    let drainer = tokio::spawn(async move {
        loop {
            // The middle of the current window, or of the next.
            let reset = Duration::from_millis(
                other.rate_limit().unwrap().routes[drained.template()].reset_ms,
            );
            let wait = reset.checked_sub(WINDOW / 2).unwrap_or(reset + WINDOW / 2);
            tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
            other.drain_rate_limit(drained, LIMIT);
        }
    });
    let m = mirror(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    drainer.abort();
    m.assert_equals_truth(&sim);
    let report = sim.sim.rate_limit().unwrap();
    for (route, r) in &report.routes {
        eprintln!(
            "{route}: windows used {:?}, 429s per window {:?}",
            r.windows_used, r.windows_rate_limited
        );
    }
    let d = &report.routes[drained.template()];
    assert!(d.rate_limited > 0, "the drain was met");
    assert!(
        d.windows_rate_limited.iter().all(|&n| n <= 1),
        "at most one 429 per window: {:?}",
        d.windows_rate_limited
    );
    for route in [Route::ListCustomers, Route::GetCustomer] {
        assert_eq!(report.routes[route.template()].rate_limited, 0, "{route:?}");
    }
    assert!(used(&report, Route::ListCustomers) > 0);

    // `status` shows per route what the service last said and the 429s met.
    let status = Store::open_read_only(
        &lomi_sync::store::Location::sqlite(&m.db),
        Duration::from_secs(5),
    )
    .unwrap()
    .status(10)
    .unwrap();
    let row = |template: &str| {
        status
            .route_budgets
            .iter()
            .find(|r| r.route == template)
            .unwrap_or_else(|| panic!("{template} in {:?}", status.route_budgets))
            .clone()
    };
    let tx = row(drained.template());
    assert_eq!(tx.limit, Some(i64::from(LIMIT)));
    assert_eq!(
        tx.rate_limited as u64, d.rate_limited,
        "the client counted every 429"
    );
    assert!(tx.reset_at.is_some());
    assert_eq!(row(Route::ListCustomers.template()).rate_limited, 0);
    let out = run_bin(Some(&m.config_file("")), None, &["status"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with(drained.template())
            && l.trim_end().ends_with(&format!(" {}", d.rate_limited))),
        "{text}"
    );
}

/// `backfill --dry-run` estimates with the per-route budgets the service reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_estimates_with_the_per_route_budgets() {
    let sim = spawn_sim(SimOptions {
        rate_limit: Some(RateLimit {
            requests: 1000,
            window: WINDOW,
        }),
        ..small_sim_options(40, 153)
    })
    .await;
    let m = mirror(&sim);
    let out = run_bin(
        Some(&m.config_file("")),
        Some(&m.key),
        &["backfill", "--dry-run"],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let report = sim.sim.rate_limit().unwrap();
    let tx = used(&report, Route::CustomerTransactions);
    assert!(
        text.contains(&format!(
            "GET /customers/{{id}}/transactions: {tx} requests, 1000 per 2s window"
        )),
        "{text}"
    );
    assert!(
        text.contains("under the service's per-route budgets, a backfill would take about"),
        "{text}"
    );
}

/// A run that may not wait longer than `defer_after` (the daemon's) stops when a
/// route's window is spent: recorded `deferred` with the time it may resume and the
/// walk kept; runs started after that time resume the walk, and the last one ends
/// exact, with nothing read twice beyond the pages in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_meets_a_long_wait_is_deferred_and_the_next_resumes_it() {
    let sim = spawn_sim(SimOptions {
        rate_limit: Some(RateLimit {
            requests: LIMIT,
            window: Duration::from_secs(3),
        }),
        ..small_sim_options(150, 154)
    })
    .await;
    let mut m = mirror(&sim);
    m.defer_after = Some(Duration::from_millis(500));
    // Another client on the IP has spent this window of the transactions route.
    sim.sim.drain_rate_limit(Route::CustomerTransactions, LIMIT);
    let mut deferred = 0;
    let summary = loop {
        match m.run(RunKind::Backfill).await {
            Ok(s) => break s,
            Err(lomi_sync::sync::SyncError::Deferred { until, .. }) => {
                deferred += 1;
                assert!(deferred <= 20, "the walk makes progress");
                let status = Store::open_read_only(
                    &lomi_sync::store::Location::sqlite(&m.db),
                    Duration::from_secs(5),
                )
                .unwrap()
                .status(1)
                .unwrap();
                assert_eq!(status.runs[0].outcome, "deferred");
                let at = status.runs[0].resume_at.clone().expect("a resume time");
                assert_eq!(at, lomi_sync::api::model::format_timestamp(until));
                assert!(status.walk_in_progress.is_some(), "the walk is kept");
                let wait = (until - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
            }
            Err(e) => panic!("deferred or done, not: {e}"),
        }
    };
    assert!(deferred >= 1, "the spent window deferred the run");
    assert!(summary.resumed_walk_of.is_some());
    m.assert_equals_truth(&sim);
    assert_eq!(
        m.count("SELECT count(*) FROM sync_runs WHERE outcome = 'failed'"),
        0
    );
    // Whatever the deferred runs fetched was committed, not fetched again: the
    // transactions route read each active customer about once.
    let report = sim.sim.rate_limit().unwrap();
    let active = m
        .count("SELECT count(DISTINCT customer_id) FROM transactions WHERE deleted_at IS NULL")
        as u32;
    let tx_reads = used(&report, Route::CustomerTransactions) - LIMIT;
    assert!(
        tx_reads <= active + 2 * 8 * deferred,
        "{tx_reads} reads for {active} active customers"
    );
}
