//! `lomi-sync run`: the schedule, no overlap, SIGTERM, bad cron.

use std::time::Duration;

use lomi_sync::sim::Faults;

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
