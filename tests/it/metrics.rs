//! Issue 16's `GET /metrics` series, recorded by real runs against the simulator and read
//! back through a strict OpenMetrics text parser (`openmetrics-parser`), as a scraper
//! would.

use std::sync::Arc;
use std::time::Duration;

use lomi_sim::{Faults, Mutation, RateLimit, RetryAfterStyle, SimOptions};
use lomi_sync::app;
use lomi_sync::config::ApiKey;
use lomi_sync::metrics::Metrics;
use lomi_sync::scheduler::NoNotifier;
use lomi_sync::store::RunKind;
use lomi_sync::sync::{NoProgress, RunRequest, RunSummary, SyncError};
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use tokio_util::sync::CancellationToken;

use crate::harness::{Mirror, wait_for};
use crate::support::{TestSim, small_sim_options, spawn_sim};

/// A key that would be noticed anywhere in the exposition.
const KEY: &str = "sk_live_metrics_canary_7f3a9c";

type Scrape = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

/// `render()` through the parser, which refuses anything OpenMetrics does not allow
/// (a counter without `_total`, a unit its name does not end with, no `# EOF`).
fn scrape(m: &Metrics) -> (String, Scrape) {
    let text = m.render();
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("{e:?} in:\n{text}"));
    (text, parsed)
}

/// The sum of family `name`'s samples (a counter's or a gauge's) whose labels include
/// every pair of `with`; 0 when the family has none.
fn sum(s: &Scrape, name: &str, with: &[(&str, &str)]) -> f64 {
    let Some(family) = s.families.get(name) else {
        return 0.0;
    };
    family
        .iter_samples()
        .filter(|x| {
            let labels = x.get_labelset().expect("a label set");
            with.iter()
                .all(|(k, v)| labels.get_label_value(k) == Some(*v))
        })
        .map(|x| match &x.value {
            OpenMetricsValue::Counter(c) => c.value.as_f64(),
            OpenMetricsValue::Gauge(g) => g.as_f64(),
            v => panic!("{name} is not a counter or a gauge: {v:?}"),
        })
        .sum()
}

/// Whether family `name` has any sample.
fn present(s: &Scrape, name: &str) -> bool {
    s.families
        .get(name)
        .is_some_and(|f| f.iter_samples().next().is_some())
}

/// The run duration histogram of `kind`: its count and sum.
fn durations(s: &Scrape, kind: &str) -> (u64, f64) {
    let family = &s.families["lomi_sync_run_duration_seconds"];
    let mut out = (0, 0.0);
    for x in family.iter_samples() {
        let labels = x.get_labelset().expect("a label set");
        if let (Some(k), OpenMetricsValue::Histogram(h)) =
            (labels.get_label_value("kind"), &x.value)
            && k == kind
        {
            out = (
                h.count.unwrap_or(0),
                h.sum.as_ref().map_or(0.0, |v| v.as_f64()),
            );
        }
    }
    out
}

/// 500s and 429s at 5% each (`Retry-After: 0`, no hint), with rate-limit headers on
/// every response from 1 s windows too large to pace anything: a 429 holds its route
/// until the window's reset (`api::budget`), so a second at most each.
async fn faulty_sim(customers: usize, seed: u64) -> TestSim {
    let mut opts = SimOptions {
        api_key: KEY.into(),
        rate_limit: Some(RateLimit {
            requests: 1_000_000,
            window: Duration::from_secs(1),
        }),
        ..small_sim_options(customers, seed)
    };
    opts.faults = Faults {
        p429: 0.05,
        p500: 0.05,
        retry_after_style: RetryAfterStyle::Zero,
        ..Faults::default()
    };
    spawn_sim(opts).await
}

async fn run(m: &app::Mirror, kind: RunKind) -> Result<RunSummary, SyncError> {
    let _lock = m.lock(kind.as_str(), false).expect("the writer lock");
    let req = RunRequest {
        kind,
        restart: false,
    };
    m.run(req, &NoProgress).await
}

/// Requests by route (every status) equal the client's own count of each route, and
/// their sum its total; retries and 429s likewise; rows written equal the summaries'.
fn assert_matches_client(s: &Scrape, m: &app::Mirror, summaries: &[&RunSummary]) {
    let client = m.client();
    let counters = client.counters();
    let total = counters.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sum(s, "lomi_sync_requests", &[]), total as f64);
    let retries = counters.retries.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sum(s, "lomi_sync_retries", &[]), retries as f64);
    let budgets = client.route_budgets();
    assert!(budgets.len() >= 2, "{budgets:?}");
    for r in &budgets {
        let route = [("route", r.route.template())];
        let requests = sum(s, "lomi_sync_requests", &route);
        assert_eq!(requests, r.requests as f64, "{route:?}");
        let code_429 = [("route", r.route.template()), ("code", "429")];
        let limited = sum(s, "lomi_sync_rate_limited", &route);
        assert_eq!(limited, sum(s, "lomi_sync_requests", &code_429));
        assert_eq!(limited, r.rate_limited as f64, "{route:?}");
        assert_eq!(sum(s, "lomi_sync_rate_limit_limit", &route), 1_000_000.0);
    }
    type Count = fn(&RunSummary) -> u64;
    let counts: [(&str, &str, Count); 6] = [
        ("customers", "inserted", |a| a.applied.customers_inserted),
        ("customers", "updated", |a| a.applied.customers_updated),
        ("customers", "deleted", |a| a.applied.customers_deleted),
        ("transactions", "inserted", |a| {
            a.applied.transactions_inserted
        }),
        ("transactions", "updated", |a| {
            a.applied.transactions_updated
        }),
        ("transactions", "deleted", |a| {
            a.applied.transactions_deleted
        }),
    ];
    for (table, change, n) in counts {
        let want: u64 = summaries.iter().map(|s| n(s)).sum();
        let labels = [("table", table), ("change", change)];
        let got = sum(s, "lomi_sync_rows_written", &labels);
        assert_eq!(got, want as f64, "{table} {change}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_and_a_sync_are_exposed_as_the_client_and_the_summaries_count_them() {
    let sim = faulty_sim(150, 161).await;
    let h = Mirror::new(&sim);
    let m = app::Mirror::build(&h.settings, &ApiKey::new(KEY), CancellationToken::new())
        .expect("a mirror");
    let backfill = run(&m, RunKind::Backfill).await.expect("the backfill");
    h.assert_equals_truth(&sim);
    assert!(sim.sim.stats().faults_injected > 0, "faults were drawn");
    let (text, s) = scrape(m.metrics());
    assert!(!text.contains(KEY), "the key is in the exposition:\n{text}");
    assert_matches_client(&s, &m, &[&backfill]);
    assert!(sum(&s, "lomi_sync_retries", &[]) > 0.0, "{text}");
    assert!(sum(&s, "lomi_sync_rate_limited", &[]) > 0.0, "{text}");
    // The faults the simulator drew are the 429s and 500s counted.
    let faults = sum(&s, "lomi_sync_requests", &[("code", "500")])
        + sum(&s, "lomi_sync_requests", &[("code", "429")]);
    assert_eq!(faults, sim.sim.stats().faults_injected as f64, "{text}");
    assert_eq!(
        sum(&s, "lomi_sync_requests", &[]),
        sim.sim.stats().requests as f64
    );
    let inserted = [("table", "customers"), ("change", "inserted")];
    assert_eq!(sum(&s, "lomi_sync_rows_written", &inserted), 150.0);
    let ok = [("kind", "backfill"), ("outcome", "succeeded")];
    assert_eq!(sum(&s, "lomi_sync_runs", &ok), 1.0, "{text}");
    assert_eq!(sum(&s, "lomi_sync_runs", &[]), 1.0, "{text}");
    let (count, took) = durations(&s, "backfill");
    assert_eq!(count, 1, "{text}");
    assert!(
        took >= backfill.duration_secs,
        "{took} {}",
        backfill.duration_secs
    );
    let lag = sum(&s, "lomi_sync_mirror_lag_seconds", &[]);
    assert!(
        lag >= took - 0.5 && lag < took + 30.0,
        "lag {lag}, run {took}"
    );
    assert!(
        present(&s, "lomi_sync_last_success_timestamp_seconds"),
        "{text}"
    );

    // A change at the source, a sync: everything adds up over both runs.
    sim.sim.mutate(&Mutation {
        create: 3,
        update: 2,
        delete: 1,
        ..Mutation::default()
    });
    let sync = run(&m, RunKind::Sync).await.expect("the sync");
    let (_, s) = scrape(m.metrics());
    assert_matches_client(&s, &m, &[&backfill, &sync]);
    assert_eq!(sum(&s, "lomi_sync_rows_written", &inserted), 153.0);
    let deleted = [("table", "customers"), ("change", "deleted")];
    assert_eq!(sum(&s, "lomi_sync_rows_written", &deleted), 1.0);
    let ok = [("kind", "sync"), ("outcome", "succeeded")];
    assert_eq!(sum(&s, "lomi_sync_runs", &ok), 1.0);
    assert_eq!(sum(&s, "lomi_sync_runs", &[]), 2.0);
    // The lag now counts from the sync's start.
    let lag = sum(&s, "lomi_sync_mirror_lag_seconds", &[]);
    assert!(lag < sync.duration_secs + 30.0, "lag {lag}");
}

/// A rejected key: a failed run, its 401 counted on its route, and the key nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_counted_failed_with_its_status() {
    let sim = spawn_sim(small_sim_options(5, 162)).await;
    let h = Mirror::new(&sim);
    let m = app::Mirror::build(&h.settings, &ApiKey::new(KEY), CancellationToken::new())
        .expect("a mirror");
    let err = run(&m, RunKind::Sync).await.unwrap_err();
    assert!(err.is_fatal(), "{err}");
    let (text, s) = scrape(m.metrics());
    assert!(!text.contains(KEY), "{text}");
    let failed = [("kind", "sync"), ("outcome", "failed")];
    assert_eq!(sum(&s, "lomi_sync_runs", &failed), 1.0, "{text}");
    let list_401 = [("route", "GET /customers"), ("code", "401")];
    assert_eq!(sum(&s, "lomi_sync_requests", &list_401), 1.0, "{text}");
    assert!(!present(&s, "lomi_sync_mirror_lag_seconds"), "{text}");
    assert!(!present(&s, "lomi_sync_last_success_timestamp_seconds"));
}

/// A daemon started on a loaded mirror knows its lag before its first run ends: the
/// metrics take the mirror's last success from `sync_runs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_exposes_the_mirror_lag_from_its_start() {
    let sim = spawn_sim(small_sim_options(20, 163)).await;
    let mut h = Mirror::new(&sim);
    h.run(RunKind::Backfill).await.expect("the backfill");
    h.settings.schedule.run_on_start = false;
    h.settings.schedule.cron = "0 0 0 1 1 *".parse().expect("a yearly cron");
    let key = ApiKey::new(sim.api_key.clone());
    let cancel = CancellationToken::new();
    let m = app::Mirror::build_for_daemon(&h.settings, &key, cancel.clone()).expect("a mirror");
    let metrics = m.metrics().clone();
    assert!(!metrics.render().contains("lomi_sync_mirror_lag_seconds"));
    let store = m.open_store().expect("the store");
    let daemon = tokio::spawn(
        m.into_daemon(Arc::new(NoNotifier), store)
            .run(cancel.clone()),
    );
    let seeded = wait_for(10, || {
        metrics.render().contains("lomi_sync_mirror_lag_seconds ")
    })
    .await;
    cancel.cancel();
    daemon
        .await
        .expect("joined")
        .expect("the daemon stops cleanly");
    assert!(seeded, "{}", metrics.render());
    let (_, s) = scrape(&metrics);
    let lag = sum(&s, "lomi_sync_mirror_lag_seconds", &[]);
    assert!((0.0..60.0).contains(&lag), "{lag}");
    // No run was made by this process: nothing counted as one.
    assert_eq!(sum(&s, "lomi_sync_runs", &[]), 0.0);
}
