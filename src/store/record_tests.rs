//! Recording a run that did not succeed (issue 12, item 8): from a connection of its
//! own, whether or not the run wrote its row, waiting for a database another program
//! is writing, and failing loudly (never creating a file) when it cannot.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{
    Outcome, RECORD_PATIENCE, RunFailure, RunKind, SqliteStore, record_unsuccessful_in_file,
};

fn failure(run_id: Option<i64>) -> RunFailure {
    RunFailure {
        run_id,
        kind: RunKind::Sync,
        started_at: "2025-03-01T09:00:00.000Z".into(),
        outcome: Outcome::Failed,
        error: "database error: database is locked".into(),
        resume_at: None,
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
    drop(SqliteStore::open(&path, Duration::from_secs(5)).unwrap());
    path
}

#[test]
fn a_run_that_failed_before_its_row_was_written_gets_one_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(dir.path());
    let id = record_unsuccessful_in_file(&path, Duration::from_secs(1), &failure(None)).unwrap();
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
    let store = SqliteStore::open(&path, Duration::from_secs(5)).unwrap();
    let id = store.start_run(RunKind::Full).unwrap();
    drop(store);
    let mut f = failure(Some(id));
    f.outcome = Outcome::Interrupted;
    assert_eq!(
        record_unsuccessful_in_file(&path, Duration::from_secs(1), &f).unwrap(),
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
    record_unsuccessful_in_file(&path, busy, &failure(None)).unwrap();
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
    let err = record_unsuccessful_in_file(&path, busy, &failure(None)).unwrap_err();
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
    assert!(record_unsuccessful_in_file(&missing, Duration::from_secs(1), &failure(None)).is_err());
    assert!(!missing.exists());
    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err =
        record_unsuccessful_in_file(&other, Duration::from_secs(1), &failure(None)).unwrap_err();
    assert!(err.to_string().contains("sync_runs"), "{err}");
}

/// A deferred run keeps its resume time, which `deferred_until` and `status` give
/// back; the schema refuses `deferred` without one (and a time on any other outcome).
#[test]
fn a_deferred_run_is_recorded_with_the_time_it_may_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(dir.path());
    let store = SqliteStore::open(&path, Duration::from_secs(5)).unwrap();
    let id = store.start_run(RunKind::Backfill).unwrap();
    assert_eq!(store.deferred_until().unwrap(), None);
    let mut f = failure(Some(id));
    f.outcome = Outcome::Deferred;
    f.resume_at = Some("2025-03-01T09:15:00.000000Z".into());
    record_unsuccessful_in_file(&path, Duration::from_secs(1), &f).unwrap();
    assert_eq!(
        store.deferred_until().unwrap().as_deref(),
        Some("2025-03-01T09:15:00.000000Z")
    );
    let status = store.status(5).unwrap();
    assert_eq!(status.runs[0].outcome, "deferred");
    assert_eq!(
        status.runs[0].resume_at.as_deref(),
        Some("2025-03-01T09:15:00.000000Z")
    );
    // A later run that is not deferred clears the question.
    let next = store.start_run(RunKind::Sync).unwrap();
    assert_eq!(store.deferred_until().unwrap(), None);
    let c = store.conn();
    let set = |outcome: &str, at: Option<&str>| {
        c.execute(
            "UPDATE sync_runs SET outcome = ?2, resume_at = ?3 WHERE id = ?1",
            rusqlite::params![next, outcome, at],
        )
    };
    assert!(set("deferred", None).is_err(), "deferred needs a time");
    assert!(set("failed", Some("2025-03-01T09:15:00.000000Z")).is_err());
    assert!(set("paused", None).is_err(), "an outcome the enum lacks");
}

/// Migration 7 rebuilds `sync_runs` for the new outcome: the runs, and the changes and
/// route budgets that refer to them, are all kept, the `freshness` view still works,
/// and foreign keys are enforced again afterwards.
#[test]
fn migration_7_keeps_the_runs_and_what_refers_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v6.db");
    {
        let mut c = Connection::open(&path).unwrap();
        super::migrations().to_version(&mut c, 6).unwrap();
        c.execute_batch(
            "INSERT INTO sync_runs (id, kind, started_at, finished_at, outcome, requests, missing_customers)
                 VALUES (1, 'backfill', '2025-06-02T08:00:00.000000Z', '2025-06-02T08:01:00.000000Z',
                         'succeeded', 42, 0),
                        (2, 'sync', '2025-06-02T09:00:00.000000Z', NULL, 'running', 3, 0);
             INSERT INTO changes (run_id, observed_at, entity, entity_id, customer_id, kind)
                 VALUES (1, '2025-06-02T08:00:30.000000Z', 'customer', 'c1', 'c1', 'created');
             INSERT INTO run_route_budgets (run_id, route, rate_limit, remaining, rate_limited)
                 VALUES (1, 'GET /customers', 5000, 4000, 2);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, Duration::from_secs(5)).unwrap();
    let c = store.conn();
    let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM sync_runs"), 2);
    assert_eq!(count("SELECT requests FROM sync_runs WHERE id = 1"), 42);
    assert_eq!(count("SELECT count(*) FROM changes WHERE run_id = 1"), 1);
    assert_eq!(
        count("SELECT rate_limited FROM run_route_budgets WHERE run_id = 1"),
        2
    );
    let last: String = c
        .query_row("SELECT last_success_at FROM freshness", [], |r| r.get(0))
        .unwrap();
    assert_eq!(last, "2025-06-02T08:01:00.000000Z");
    assert_eq!(count("PRAGMA foreign_keys"), 1);
    assert!(
        c.execute(
            "INSERT INTO changes (run_id, observed_at, entity, entity_id, customer_id, kind)
             VALUES (99, 'x', 'customer', 'c1', 'c1', 'created')",
            [],
        )
        .is_err(),
        "a change of a run that does not exist is refused"
    );
}
