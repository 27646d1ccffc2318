//! Surviving what the service and the machine throw at a run: the fault matrix,
//! `kill -9` at random points, and readers querying during a sync.

use std::time::Duration;

use lomi_sim::{Faults, Mutation, RateLimit};
use lomi_sync::store::RunKind;

use crate::harness::{Mirror, command, slow_sim_options};
use crate::support::{TestSim, small_sim_options, spawn_sim};

/// Backfill, one round of changes, an exact sync: all must equal the truth.
async fn survives(sim: &TestSim, faults: Faults) {
    let mut m = Mirror::new(sim);
    m.settings.sync.full_every = Duration::from_millis(1).into();
    m.settings.api.timeout = Duration::from_millis(500).into();
    m.settings.api.max_retries = 12;
    sim.sim.set_faults(faults.clone());
    let s = m
        .run(RunKind::Backfill)
        .await
        .unwrap_or_else(|e| panic!("{faults:?}: {e}"));
    assert!(
        s.retries > 0,
        "{faults:?}: faults were injected and retried"
    );
    m.assert_equals_truth(sim);
    sim.sim.set_faults(Faults::default());
    sim.sim.mutate(&Mutation {
        create: 5,
        update: 5,
        delete: 3,
        restore: 1,
        add_tx: 20,
        settle: 5,
        delete_tx: 2,
        delete_newest_tx: 0,
    });
    sim.sim.set_faults(faults.clone());
    tokio::time::sleep(Duration::from_millis(2)).await;
    m.run(RunKind::Sync)
        .await
        .unwrap_or_else(|e| panic!("{faults:?}: {e}"));
    sim.sim.set_faults(Faults::default());
    m.assert_equals_truth(sim);
    assert_eq!(m.integrity(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_alone_at_20_percent_still_ends_in_the_truth() {
    let base = Faults {
        retry_after_secs: 0,
        slow_ms: 800,
        ..Faults::default()
    };
    let matrix = [
        Faults {
            p500: 0.2,
            ..base.clone()
        },
        Faults {
            p502_html: 0.2,
            ..base.clone()
        },
        Faults {
            p503: 0.2,
            ..base.clone()
        },
        Faults {
            p429: 0.2,
            ..base.clone()
        },
        // Slower than api.timeout: a timeout, retried.
        Faults {
            p_slow: 0.2,
            ..base.clone()
        },
        Faults {
            p_close: 0.2,
            ..base.clone()
        },
        Faults {
            p_truncate: 0.2,
            ..base.clone()
        },
    ];
    for (i, faults) in matrix.into_iter().enumerate() {
        let sim = spawn_sim(small_sim_options(120, 40 + i as u64)).await;
        survives(&sim, faults).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_faults_mixed_at_20_percent_still_end_in_the_truth() {
    let p = 0.2 / 7.0;
    let faults = Faults {
        p500: p,
        p502_html: p,
        p503: p,
        p429: p,
        retry_after_secs: 0,
        p_slow: p,
        slow_ms: 800,
        p_close: p,
        p_truncate: p,
        ..Faults::default()
    };
    let sim = spawn_sim(small_sim_options(200, 50)).await;
    survives(&sim, faults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_service_is_waited_out_not_hammered() {
    let mut opts = small_sim_options(60, 51);
    opts.rate_limit = Some(RateLimit {
        requests: 20,
        window: Duration::from_secs(1),
    });
    let sim = spawn_sim(opts).await;
    let m = Mirror::new(&sim);
    let s = m.run(RunKind::Backfill).await.unwrap();
    m.assert_equals_truth(&sim);
    let stats = sim.sim.stats();
    // The simulator's X-RateLimit-* headers pace every route under its window: no
    // 429 at all (the 429 path is exercised by `rate_budget::*`).
    assert_eq!(stats.rate_limited, 0, "{} requests", s.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_budget_keeps_under_the_service_limit() {
    let mut opts = small_sim_options(40, 52);
    opts.rate_limit = Some(RateLimit {
        requests: 30,
        window: Duration::from_secs(1),
    });
    let sim = spawn_sim(opts).await;
    let mut m = Mirror::new(&sim);
    m.settings.api.max_requests_per_window = 25;
    m.settings.api.rate_window = Duration::from_secs(1).into();
    m.run(RunKind::Backfill).await.unwrap();
    assert_eq!(
        sim.sim.stats().rate_limited,
        0,
        "never over the service's limit"
    );
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_twenty_random_points_never_corrupts_and_always_resumes() {
    // Slow enough, even in a release build, that most kills land mid-run.
    let sim = spawn_sim(slow_sim_options(300, 60, 30)).await;
    let mut m = Mirror::new(&sim);
    m.settings.api.page_size = 20;
    m.settings.sync.full_every = Duration::from_millis(1).into();
    let config = m.config_file("[sync]\nfull_every = \"1ms\"");
    let mut rng = fastrand::Rng::with_seed(7);
    let mut kills = 0;
    for round in 0..20 {
        let cmd = if round < 12 { "backfill" } else { "sync" };
        if round == 12 {
            // Finish the backfill, then change the source and kill syncs.
            let out =
                crate::harness::run_bin(Some(&config), Some(&sim.api_key), &["backfill"]).await;
            assert!(out.status.success(), "{}", crate::harness::text(&out).1);
            sim.sim.mutate(&Mutation {
                create: 10,
                update: 10,
                delete: 5,
                add_tx: 40,
                settle: 10,
                delete_tx: 3,
                delete_newest_tx: 0,
                restore: 2,
            });
        }
        let mut child = command(Some(&config), Some(&sim.api_key), &[cmd])
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.u64(30..600))).await;
        if child.try_wait().unwrap().is_none() {
            child.start_kill().unwrap();
            kills += 1;
        }
        child.wait().await.unwrap();
        if m.db.exists() {
            assert_eq!(m.integrity(), "ok", "round {round}");
            assert_eq!(
                m.count("SELECT count(*) - count(DISTINCT transaction_id) FROM transactions"),
                0,
                "round {round}: duplicate rows"
            );
        }
    }
    assert!(kills >= 15, "most runs were killed mid-way ({kills})");
    let out = crate::harness::run_bin(Some(&config), Some(&sim.api_key), &["sync"]).await;
    assert!(out.status.success(), "{}", crate::harness::text(&out).1);
    m.assert_equals_truth(&sim);
    // Every change of the round is recorded exactly once, despite the kills.
    let dup_changes = m.count(
        "SELECT count(*) FROM (SELECT entity_id, kind, fields FROM changes WHERE kind = 'deleted'
         GROUP BY entity_id, kind, fields HAVING count(*) > 1)",
    );
    assert_eq!(dup_changes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_fail_nor_see_half_a_page_during_a_backfill() {
    let sim = spawn_sim(slow_sim_options(400, 70, 1)).await;
    let m = Mirror::new(&sim);
    let db = m.db.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut snapshots = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(conn) = rusqlite::Connection::open_with_flags(
                    &db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                ) else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                // Rows and the run's counters commit together: they always agree.
                let row = conn.query_row(
                    "SELECT (SELECT count(*) FROM customers), (SELECT coalesce(sum(customers_inserted), 0) FROM sync_runs),
                            (SELECT count(*) FROM transactions), (SELECT coalesce(sum(transactions_inserted), 0) FROM sync_runs)",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)),
                );
                match row {
                    Ok((c, ci, t, ti)) => {
                        assert_eq!((c, t), (ci, ti), "a reader saw half a page");
                        snapshots += 1;
                    }
                    // The schema may not exist yet in the first instants.
                    Err(e) if e.to_string().contains("no such table") => {}
                    Err(e) => panic!("a reader failed: {e}"),
                }
            }
            snapshots
        })
    };
    m.run(RunKind::Backfill).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let snapshots = reader.join().unwrap();
    assert!(
        snapshots > 10,
        "the reader ran throughout ({snapshots} snapshots)"
    );
}

/// A paced backfill of `opts`, interrupted after `after` when given; returns the mirror
/// and the requests the simulator served.
async fn paced_backfill(
    sim: &TestSim,
    rate: f64,
    after: Option<Duration>,
) -> (Mirror, Result<(), lomi_sync::sync::SyncError>) {
    // Per customer: the chunks of a paced page are its transaction reads.
    let mut m = Mirror::per_customer(sim);
    m.settings.api.requests_per_second = rate;
    m.settings.api.page_size = 1000;
    let cancel = tokio_util::sync::CancellationToken::new();
    if let Some(after) = after {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            cancel.cancel();
        });
    }
    let r = m.run_with(RunKind::Backfill, false, &cancel).await;
    (m, r.map(|_| ()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_paced_backfill_resumes_without_spending_its_requests_again() {
    // (rate, interrupted after, customers, requests it may spend again). The first
    // page (every paying customer, in one page of 1,000) takes longer than the time
    // before the interruption, which used to lose all of it. Now what was fetched is
    // committed (in chunks of about a second of requests as the run goes, the rest as
    // it stops): spent again are only the requests cut short (at most
    // `api.concurrency`, 4), the interrupted run's preflight and first-line reads (3)
    // and its page, read again (1).
    let default_rate = lomi_sync::config::Settings::default()
        .api
        .requests_per_second;
    let cases = [
        (default_rate, Duration::from_secs(6), 60, 10),
        (200.0, Duration::from_secs(2), 1500, 10),
    ];
    for (rate, after, customers, allowed) in cases {
        let opts = lomi_sim::SimOptions {
            max_page_size: 1000,
            ..small_sim_options(customers, 41)
        };
        let whole = spawn_sim(opts.clone()).await;
        paced_backfill(&whole, 0.0, None).await.1.unwrap();
        let needed = whole.sim.stats().requests;

        let sim = spawn_sim(opts).await;
        let (mut m, r) = paced_backfill(&sim, rate, Some(after)).await;
        assert!(
            matches!(r, Err(lomi_sync::sync::SyncError::Interrupted)),
            "{rate}/s: {r:?}"
        );
        let spent = sim.sim.stats().requests;
        assert!(
            spent < needed,
            "{rate}/s: interrupted mid-way: {spent} of {needed}"
        );
        assert!(
            m.count("SELECT count(*) FROM customers") > 0,
            "{rate}/s: work done before the interruption is committed"
        );
        // The resume's pace does not change what it must read again.
        m.settings.api.requests_per_second = 0.0;
        m.run(RunKind::Backfill).await.unwrap();
        m.assert_equals_truth(&sim);
        let wasted = sim.sim.stats().requests - needed;
        assert!(
            wasted <= allowed,
            "{rate}/s: {wasted} requests spent again (interrupted after {spent} of {needed})"
        );
    }
}
