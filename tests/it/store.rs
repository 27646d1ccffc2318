//! The mirror file itself (issue 12, item 8): every run that opened the mirror is
//! recorded, even one that failed before its row was written, or the run says it could
//! not be.

use std::path::Path;
use std::time::Duration;

use lomi_sync::store::{RunKind, Store};
use lomi_sync::sync::SyncError;
use rusqlite::Connection;

use crate::harness::{Mirror, run_bin, text};
use crate::support::{TestSim, small_sim_options, spawn_sim};

/// The last run's (kind, outcome, error), read with the bundled library.
fn last_run(m: &Mirror) -> (String, String, Option<String>) {
    m.conn()
        .query_row(
            "SELECT kind, outcome, error FROM sync_runs ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
}

/// A backfilled mirror whose runs wait `busy` for a database another program writes.
async fn backfilled(sim: &TestSim, busy: Duration) -> Mirror {
    let mut m = Mirror::new(sim);
    m.run(RunKind::Backfill).await.unwrap();
    m.settings.store.busy_timeout = busy.into();
    m
}

/// Another program's write transaction on the mirror (`sqlite3` with `BEGIN IMMEDIATE`).
fn foreign_writer(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_failing_on_a_database_another_program_writes_is_recorded_once_it_frees() {
    let sim = spawn_sim(small_sim_options(30, 120)).await;
    let m = backfilled(&sim, Duration::from_millis(400)).await;
    let runs_before = m.count("SELECT count(*) FROM sync_runs");
    let foreign = foreign_writer(&m.db);
    let requests = sim.sim.stats().requests;
    // The run cannot write for one busy timeout and fails; the other program commits
    // while the run is recording its failure (within its patience).
    let release = async {
        crate::harness::wait_for(10, || sim.sim.stats().requests > requests).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        foreign.execute_batch("COMMIT").unwrap();
    };
    let (result, ()) = tokio::join!(m.run(RunKind::Sync), release);
    let err = result.unwrap_err();
    assert!(
        !matches!(err, SyncError::Unrecorded { .. }),
        "recorded: {err}"
    );
    assert!(err.to_string().contains("database is locked"), "{err}");
    assert_eq!(m.count("SELECT count(*) FROM sync_runs"), runs_before + 1);
    let (kind, outcome, error) = last_run(&m);
    assert_eq!((kind.as_str(), outcome.as_str()), ("sync", "failed"));
    assert!(error.unwrap().contains("database is locked"));
    // `status` shows it.
    let store = Store::open_read_only(&m.db, Duration::from_secs(5)).unwrap();
    let report = store.status(5).unwrap();
    assert_eq!(report.runs[0].outcome, "failed");
    assert!(report.runs[0].finished_at.is_some());
    drop(store);
    // Nothing was left half done: the next run succeeds.
    m.run(RunKind::Sync).await.unwrap();
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_record_its_failure_says_so() {
    let sim = spawn_sim(small_sim_options(20, 121)).await;
    let m = backfilled(&sim, Duration::from_millis(150)).await;
    let runs_before = m.count("SELECT count(*) FROM sync_runs");
    let foreign = foreign_writer(&m.db);
    let err = m.run(RunKind::Sync).await.unwrap_err();
    foreign.execute_batch("COMMIT").unwrap();
    assert!(matches!(err, SyncError::Unrecorded { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("database is locked"), "{msg}");
    assert!(msg.contains("could not be recorded"), "{msg}");
    assert_eq!(m.count("SELECT count(*) FROM sync_runs"), runs_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_fails_and_says_when_a_locked_mirror_could_not_record_the_run() {
    let sim = spawn_sim(small_sim_options(20, 122)).await;
    let m = backfilled(&sim, Duration::from_millis(150)).await;
    let config = m.config_file("busy_timeout = \"150ms\"");
    let key = Some(sim.api_key.as_str());
    let foreign = foreign_writer(&m.db);
    let out = run_bin(Some(&config), key, &["sync"]).await;
    foreign.execute_batch("COMMIT").unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("database is locked"), "{stderr}");
    assert!(stderr.contains("could not be recorded"), "{stderr}");
    // Free again: the next run works and `status` shows it.
    let out = run_bin(Some(&config), key, &["sync"]).await;
    assert!(out.status.success(), "{}", text(&out).1);
    let (stdout, _) = text(&run_bin(Some(&config), key, &["status"]).await);
    assert!(stdout.contains("succeeded"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_migration_fails_is_recorded_and_status_shows_why() {
    let sim = spawn_sim(small_sim_options(20, 123)).await;
    let m = backfilled(&sim, Duration::from_secs(5)).await;
    let version = m.count("PRAGMA user_version");
    // A mirror written by a newer lomi-sync: this one cannot migrate it.
    m.conn().pragma_update(None, "user_version", 1000).unwrap();
    let config = m.config_file("");
    let key = Some(sim.api_key.as_str());
    let out = run_bin(Some(&config), key, &["sync"]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("schema"), "{stderr}");
    assert!(!stderr.contains("could not be recorded"), "{stderr}");
    let (kind, outcome, error) = last_run(&m);
    assert_eq!((kind.as_str(), outcome.as_str()), ("sync", "failed"));
    assert!(
        error
            .unwrap()
            .contains("cannot bring the mirror's schema up to date")
    );
    let (stdout, _) = text(&run_bin(Some(&config), key, &["status"]).await);
    assert!(
        stdout.contains("failed") && stdout.contains("cannot bring the mirror's schema up to date"),
        "{stdout}"
    );
    m.conn()
        .pragma_update(None, "user_version", version)
        .unwrap();
    m.run(RunKind::Sync).await.unwrap();
    m.assert_equals_truth(&sim);
}
