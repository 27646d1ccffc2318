//! `lomi-sync run`: the schedule, no overlap, SIGTERM, bad cron.

use std::time::Duration;

use lomi_sim::Faults;

use crate::harness::{Mirror, command, run_bin, runs_sum, slow_sim_options, text, wait_for};
use crate::support::{small_sim_options, spawn_sim};

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running") as i32;
    // SAFETY: kill(2) with a pid we spawned and still own.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_every_second_without_overlap_and_stops_on_sigterm() {
    let sim = spawn_sim(small_sim_options(60, 30)).await;
    let m = Mirror::new(&sim);
    let config = m.config_file("[schedule]\ncron = \"* * * * * *\"\nrun_on_start = true");
    let mut child = command(Some(&config), Some(&sim.api_key), &["run"])
        .spawn()
        .unwrap();
    let ok = wait_for(30, || runs_sum(&m.db, "sum(outcome = 'succeeded')") >= 3).await;
    assert!(ok, "three runs succeeded within 30 s");
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let conn = m.conn();
    let runs: Vec<(String, String, Option<String>)> = conn
        .prepare("SELECT kind, started_at, finished_at FROM sync_runs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        runs[0].0, "backfill",
        "the first run on an empty mirror is a backfill"
    );
    assert_eq!(runs[1].0, "sync");
    for pair in runs.windows(2) {
        let finished = pair[0].2.as_deref().expect("finished");
        assert!(pair[1].1.as_str() >= finished, "runs overlap: {pair:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_backfill_interrupts_it_and_the_next_start_finishes() {
    let sim = spawn_sim(slow_sim_options(400, 31, 20)).await;
    let m = Mirror::new(&sim);
    let config = m.config_file(
        "[schedule]\ncron = \"0 0 0 1 1 *\"\nrun_on_start = true\nshutdown_timeout = \"10s\"",
    );
    let mut child = command(Some(&config), Some(&sim.api_key), &["run"])
        .spawn()
        .unwrap();
    let started = wait_for(30, || runs_sum(&m.db, "sum(pages)") >= 2).await;
    assert!(started);
    let asked = std::time::Instant::now();
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "stopped within schedule.shutdown_timeout"
    );
    assert_eq!(
        m.count("SELECT count(*) FROM sync_runs WHERE outcome = 'interrupted'"),
        1
    );
    assert_eq!(
        m.count("SELECT count(*) FROM walk"),
        1,
        "the walk is kept for the next start"
    );
    assert_eq!(m.integrity(), "ok");
    sim.sim.set_faults(Faults::default());
    let out = run_bin(Some(&config), Some(&sim.api_key), &["backfill"]).await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        m.count("SELECT count(*) FROM sync_runs WHERE resumed_walk_of IS NOT NULL"),
        1
    );
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_cron_expression_fails_at_start() {
    let sim = spawn_sim(small_sim_options(5, 32)).await;
    let m = Mirror::new(&sim);
    let config = m.config_file("[schedule]\ncron = \"*/15 * * * *\"");
    let out = run_bin(Some(&config), Some(&sim.api_key), &["run"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out).1;
    assert!(
        err.contains("*/15 * * * *") && err.contains("seconds field"),
        "{err}"
    );
    assert!(!m.db.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_shows_the_next_five_fire_times_and_hides_the_key() {
    let sim = spawn_sim(small_sim_options(5, 33)).await;
    let m = Mirror::new(&sim);
    let config = m.config_file("[schedule]\ncron = \"0 0 * * * *\"");
    let out = run_bin(
        Some(&config),
        Some("lomi_sk_live_hidden"),
        &["check-config"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out).1);
    let stdout = text(&out).0;
    let times: Vec<&str> = stdout.lines().filter(|l| l.starts_with("#   ")).collect();
    assert_eq!(times.len(), 5, "{stdout}");
    assert!(times.iter().all(|t| t.ends_with(":00:00")), "{stdout}");
    assert!(
        stdout.contains("live key") && !stdout.contains("hidden"),
        "{stdout}"
    );
}

/// The daemon under a spent rate-limit window: the run is recorded `deferred` with the
/// time it may resume, ticks before that time start nothing, a tick after it resumes
/// the walk, and the mirror ends exact with no failed run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_daemon_run_is_deferred_and_a_later_tick_resumes_it() {
    use lomi_sim::{RateLimit, Route, SimOptions};
    let sim = spawn_sim(SimOptions {
        rate_limit: Some(RateLimit {
            requests: 40,
            window: Duration::from_secs(4),
        }),
        ..small_sim_options(100, 32)
    })
    .await;
    sim.sim.drain_rate_limit(Route::CustomerTransactions, 40);
    let m = Mirror::per_customer(&sim);
    let config = m.config_file(
        "[schedule]\ncron = \"* * * * * *\"\nrun_on_start = true\ndefer_after = \"1s\"",
    );
    let mut child = command(Some(&config), Some(&sim.api_key), &["run"])
        .spawn()
        .unwrap();
    let done = wait_for(60, || {
        runs_sum(&m.db, "sum(outcome = 'deferred')") >= 1
            && runs_sum(&m.db, "sum(outcome = 'succeeded')") >= 1
    })
    .await;
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(done, "a deferred run, then a successful one, within 60 s");
    assert_eq!(status.code(), Some(0));
    let conn = m.conn();
    let runs: Vec<(String, String, Option<String>)> = conn
        .prepare("SELECT outcome, started_at, resume_at FROM sync_runs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for pair in runs.windows(2) {
        if let (("deferred", _, Some(resume)), (_, started, _)) =
            ((pair[0].0.as_str(), &pair[0].1, &pair[0].2), &pair[1])
        {
            assert!(
                started >= resume,
                "a run started before the resume time: {runs:?}"
            );
        }
    }
    assert!(runs.iter().all(|r| r.0 != "failed"), "{runs:?}");
    let first_success = runs.iter().position(|r| r.0 == "succeeded").unwrap();
    assert!(
        runs[..first_success].iter().any(|r| r.0 == "deferred"),
        "{runs:?}"
    );
    m.assert_equals_truth(&sim);
}

/// The exit statuses ARCHITECTURE.md and the README give for the daemon: a rejected key
/// stops it with status 3 (no retry at the next tick can fix it); a timetable with no
/// future fire time stops it at once with status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_stops_on_a_rejected_key_with_3_and_on_a_timetable_past_its_end_with_0() {
    let sim = spawn_sim(small_sim_options(20, 34)).await;
    let m = Mirror::new(&sim);
    let config = m.config_file("[schedule]\ncron = \"0 0 * * * *\"\nrun_on_start = true");
    let out = run_bin(Some(&config), Some("lomi_sk_test_WRONG"), &["run"]).await;
    let err = text(&out).1;
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("no retry can fix"), "{err}");

    // Only fire times in 2020: nothing to wait for.
    let config = m.config_file("[schedule]\ncron = \"0 0 0 1 1 * 2020\"\nrun_on_start = false");
    let out = run_bin(Some(&config), Some(&sim.api_key), &["run"]).await;
    let err = text(&out).1;
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("no future fire time"), "{err}");
}
