//! Recording a run that did not succeed (issue 12, item 8): from a connection of its
//! own, whether or not the run wrote its row, waiting for a database another program
//! is writing, and failing loudly (never creating a file) when it cannot.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{Outcome, RECORD_PATIENCE, RunFailure, RunKind, Store, record_unsuccessful_run};

fn failure(run_id: Option<i64>) -> RunFailure {
    RunFailure {
        run_id,
        kind: RunKind::Sync,
        started_at: "2025-03-01T09:00:00.000Z".into(),
        outcome: Outcome::Failed,
        error: "database error: database is locked".into(),
        requests: 3,
        retries: 1,
    }
}

/// (kind, started_at, outcome, error, requests, retries, finished) of every run.
type RunRow = (String, String, String, Option<String>, i64, i64, bool);

fn runs(path: &Path) -> Vec<RunRow> {
    let conn = Connection::open(path).unwrap();
    conn.prepare(
        "SELECT kind, started_at, outcome, error, requests, retries, finished_at IS NOT NULL FROM sync_runs ORDER BY id",
    )
    .unwrap()
    .query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn mirror(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("m.db");
    drop(Store::open(&path, Duration::from_secs(5)).unwrap());
    path
}

#[test]
fn a_run_that_failed_before_its_row_was_written_gets_one_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(dir.path());
    let id = record_unsuccessful_run(&path, Duration::from_secs(1), &failure(None)).unwrap();
    assert_eq!(id, 1);
    assert_eq!(
        runs(&path),
        [(
            "sync".to_string(),
            "2025-03-01T09:00:00.000Z".to_string(),
            "failed".to_string(),
            Some("database error: database is locked".to_string()),
            3,
            1,
            true
        )]
    );
}

#[test]
fn a_run_with_a_row_has_it_updated_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(dir.path());
    let store = Store::open(&path, Duration::from_secs(5)).unwrap();
    let id = store.start_run(RunKind::Full).unwrap();
    drop(store);
    let mut f = failure(Some(id));
    f.outcome = Outcome::Interrupted;
    assert_eq!(
        record_unsuccessful_run(&path, Duration::from_secs(1), &f).unwrap(),
        id
    );
    let rows = runs(&path);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "full", "the row keeps its kind");
    assert_eq!(rows[0].2, "interrupted");
    assert_eq!(
        rows[0].3.as_deref(),
        Some("database error: database is locked")
    );
    assert!(rows[0].6, "finished");
}

#[test]
fn a_database_another_program_writes_is_waited_for_then_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(dir.path());
    let foreign = Connection::open(&path).unwrap();
    foreign.execute_batch("BEGIN IMMEDIATE").unwrap();
    let busy = Duration::from_millis(200);
    // Released after more than one busy timeout, within the recorder's patience.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(350));
        foreign.execute_batch("COMMIT").unwrap();
    });
    let started = Instant::now();
    record_unsuccessful_run(&path, busy, &failure(None)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    release.join().unwrap();
    assert_eq!(runs(&path).len(), 1);
}

#[test]
fn a_database_locked_throughout_is_an_error_after_the_patience() {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(dir.path());
    let foreign = Connection::open(&path).unwrap();
    foreign.execute_batch("BEGIN IMMEDIATE").unwrap();
    let busy = Duration::from_millis(100);
    let started = Instant::now();
    let err = record_unsuccessful_run(&path, busy, &failure(None)).unwrap_err();
    assert!(
        started.elapsed() >= busy * RECORD_PATIENCE - Duration::from_millis(20),
        "waited {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("locked"), "{err}");
    foreign.execute_batch("COMMIT").unwrap();
    assert_eq!(runs(&path).len(), 0);
}

#[test]
fn no_file_is_created_and_a_file_without_runs_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    assert!(record_unsuccessful_run(&missing, Duration::from_secs(1), &failure(None)).is_err());
    assert!(!missing.exists());
    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = record_unsuccessful_run(&other, Duration::from_secs(1), &failure(None)).unwrap_err();
    assert!(err.to_string().contains("sync_runs"), "{err}");
}
