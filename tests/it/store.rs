//! The mirror file itself (issue 12, items 8 and 9): every run that opened the mirror is
//! recorded, even one that failed before its row was written, or the run says it could
//! not be; and the file checks and reads clean in the system `sqlite3` (Debian 12's
//! 3.40.1 misread the layout before migration 3), freshly backfilled or migrated.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lomi_sync::store::{Location, RunKind, Store};
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
    let store = Store::open_read_only(
        &lomi_sync::store::Location::sqlite(&m.db),
        Duration::from_secs(5),
    )
    .unwrap();
    let report = store.status(5).unwrap();
    assert_eq!(report.runs[0].outcome, "failed");
    assert!(report.runs[0].finished_at.is_some());
    drop(store);
    // Nothing was left half done: the next run succeeds.
    m.run(RunKind::Sync).await.unwrap();
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_even_open_a_mirror_held_exclusively_is_recorded_once_it_frees() {
    let sim = spawn_sim(small_sim_options(20, 129)).await;
    let m = backfilled(&sim, Duration::from_millis(400)).await;
    let runs_before = m.count("SELECT count(*) FROM sync_runs");
    // `sqlite3` with `PRAGMA locking_mode = EXCLUSIVE`: not even a reader gets in.
    let foreign = Connection::open(&m.db).unwrap();
    foreign
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;")
        .unwrap();
    let requests = sim.sim.stats().requests;
    let release = async {
        crate::harness::wait_for(10, || sim.sim.stats().requests > requests).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(foreign);
    };
    let (result, ()) = tokio::join!(m.run(RunKind::Sync), release);
    let err = result.unwrap_err();
    assert!(
        !matches!(err, SyncError::Unrecorded { .. }),
        "recorded: {err}"
    );
    assert!(err.to_string().contains("cannot open the mirror"), "{err}");
    assert_eq!(m.count("SELECT count(*) FROM sync_runs"), runs_before + 1);
    let (kind, outcome, error) = last_run(&m);
    assert_eq!((kind.as_str(), outcome.as_str()), ("sync", "failed"));
    assert!(error.unwrap().contains("locked"));
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

/// The system `sqlite3` (what users and their scripts open the mirror with).
fn sqlite3(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("the system sqlite3 runs (apt-get install -y sqlite3)");
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sqlite3_version() -> String {
    let out = Command::new("sqlite3").arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `sql` through the bundled library, printed as `sqlite3` prints it (`|` between
/// columns, a line per row, NULL as nothing).
fn bundled(db: &Path, sql: &str) -> String {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    let rows: Vec<String> = stmt
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                        rusqlite::types::Value::Null => String::new(),
                        rusqlite::types::Value::Integer(v) => v.to_string(),
                        rusqlite::types::Value::Real(v) => v.to_string(),
                        rusqlite::types::Value::Text(v) => v,
                        rusqlite::types::Value::Blob(_) => "<blob>".into(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.join("|"))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.join("\n").trim().to_string()
}

/// Reads that touch every column of `transactions` (through the table, its indexes and
/// the views) and must give the same answer in both SQLite builds.
const READS: [&str; 4] = [
    "SELECT count(*), count(customer_id), count(first_seen_at), count(synced_at), count(raw), sum(amount_minor) FROM transactions",
    "SELECT customer_id, currency_code, transactions, completed_minor, completed_total FROM customer_revenue ORDER BY customer_id, currency_code",
    "SELECT transaction_id, customer_id, created_at, length(raw) FROM transactions INDEXED BY transactions_id ORDER BY transaction_id",
    "SELECT live_customers, live_transactions, pending_transactions FROM freshness",
];

/// The mirror checks clean and reads the same in the system `sqlite3` (and in the
/// system's Python, which links the same library on Debian) as in the bundled library.
fn assert_clean_in_the_system_sqlite(db: &Path) {
    assert_eq!(
        sqlite3(db, "PRAGMA integrity_check"),
        "ok",
        "{}",
        sqlite3_version()
    );
    assert_eq!(bundled(db, "PRAGMA integrity_check"), "ok");
    for sql in READS {
        let system = sqlite3(db, sql);
        assert!(!system.is_empty(), "{sql}");
        assert_eq!(system, bundled(db, sql), "{sql}");
    }
    let python = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1])\n\
             print(c.execute('PRAGMA integrity_check').fetchone()[0])\n\
             print(c.execute('SELECT count(*) FROM transactions WHERE customer_id IS NOT NULL').fetchone()[0])",
        )
        .arg(db)
        .output();
    // Optional: only where Python is installed.
    if let Ok(out) = python {
        let want = format!("ok\n{}", bundled(db, "SELECT count(*) FROM transactions"));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfilled_mirror_checks_and_reads_clean_in_the_system_sqlite3() {
    let sim = spawn_sim(small_sim_options(80, 124)).await;
    let m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    assert!(m.count("SELECT count(*) FROM transactions") > 20);
    assert_clean_in_the_system_sqlite(&m.db);
}

/// Builds at `to` a mirror as versions up to 2 laid it out, holding the rows of the
/// mirror at `from`, with the indexes a completed backfill leaves.
fn old_layout_copy(from: &Path, to: &Path) {
    let conn = Connection::open(to).unwrap();
    conn.execute_batch("PRAGMA page_size = 16384; PRAGMA journal_mode = WAL;")
        .unwrap();
    conn.execute_batch(include_str!("../../src/store/migrations/001_initial.sql"))
        .unwrap();
    conn.execute_batch(include_str!("../../src/store/migrations/002_views.sql"))
        .unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn.execute("ATTACH DATABASE ?1 AS a", [from.to_str().unwrap()])
        .unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'currencies'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in tables {
        let cols: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .unwrap()
            .query_map([&t], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // customer_seq is the customer's rowid: keep it.
        let rowid = if t == "customers" { "rowid, " } else { "" };
        let cols = cols.join(", ");
        conn.execute_batch(&format!(
            "INSERT INTO main.{t} ({rowid}{cols}) SELECT {rowid}{cols} FROM a.{t}"
        ))
        .unwrap();
    }
    conn.execute_batch(
        "CREATE INDEX transactions_id ON transactions (transaction_id);
         CREATE INDEX transactions_customer ON transactions (customer_id, created_at);
         CREATE INDEX transactions_created_at ON transactions (created_at);
         DETACH DATABASE a;",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_in_the_old_layout_is_migrated_and_then_checks_clean_in_the_system_sqlite3() {
    let sim = spawn_sim(small_sim_options(80, 125)).await;
    let source = Mirror::new(&sim);
    source.run(RunKind::Backfill).await.unwrap();
    let m = Mirror::new(&sim);
    old_layout_copy(&source.db, &m.db);
    let transactions = m.count("SELECT count(*) FROM transactions");
    assert!(transactions > 20);
    let version = sqlite3_version();
    if version.starts_with("3.40.") {
        // The bug this layout works around, seen through the user's sqlite3.
        let report = sqlite3(&m.db, "PRAGMA integrity_check");
        assert!(
            report.contains("NULL value in transactions.customer_id"),
            "{version}: {report}"
        );
    }
    // The next run migrates the file, and finds nothing to change.
    let s = m.run(RunKind::Sync).await.unwrap();
    assert_eq!(s.applied.transactions_inserted, 0);
    assert!(m.count("PRAGMA user_version") >= 3);
    assert_eq!(m.count("SELECT count(*) FROM transactions"), transactions);
    m.assert_equals_truth(&sim);
    assert_eq!(
        sqlite3(
            &m.db,
            "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'transactions' ORDER BY name)"
        ),
        "transactions_created_at,transactions_customer,transactions_id,transactions_pending"
    );
    assert_clean_in_the_system_sqlite(&m.db);
}

/// Bytes in the mirror's WAL (0 when it is absent or truncated).
fn wal_len(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(Path::new(&wal)).map_or(0, |m| m.len())
}

/// `(runs, succeeded runs, integrity)` of a copied file, opened alone.
/// A copy of a mirror opened as `verify` reads it.
fn read_only(copy: &Path) -> Store {
    Store::open_read_only(&Location::sqlite(copy), Duration::from_secs(5)).expect("open the copy")
}

fn copy_report(copy: &Path) -> (i64, i64, String) {
    let c = Connection::open(copy).unwrap();
    c.query_row(
        "SELECT count(*), sum(outcome = 'succeeded'), (SELECT integrity_check FROM pragma_integrity_check) FROM sync_runs",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_clean_stop_a_copy_of_the_main_file_alone_has_every_run() {
    let sim = spawn_sim(small_sim_options(60, 126)).await;
    let m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    sim.sim.mutate(&lomi_sim::Mutation {
        create: 3,
        update: 3,
        add_tx: 5,
        ..Default::default()
    });
    m.run(RunKind::Sync).await.unwrap();
    m.run(RunKind::Full).await.unwrap();
    // Copied before anything else opens the mirror: the last connection to close a
    // file folds its WAL itself, which would hide what the runs left behind.
    assert_eq!(wal_len(&m.db), 0, "the WAL is folded back");
    let copy = m.dir.path().join("copy.db");
    std::fs::copy(&m.db, &copy).unwrap();
    assert_eq!(copy_report(&copy), (3, 3, "ok".to_string()));
    let truth = sim.sim.truth();
    let d = lomi_sync::verify::differences(&read_only(&copy), &truth, 10).unwrap();
    assert!(d.is_empty(), "the copy differs from the source: {d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_leaves_a_whole_main_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let out = run_bin(
        None,
        None,
        &[
            "demo",
            "--customers",
            "120",
            "--seed",
            "9",
            "--db",
            db.to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out).1);
    // It shows what each transactions source spends on the backfill: the feed (the
    // default `auto`), far less than the per-customer walk's estimate.
    let stdout = text(&out).0;
    let number_after = |marker: &str| -> u64 {
        let rest = &stdout[stdout
            .find(marker)
            .unwrap_or_else(|| panic!("{marker}: {stdout}"))
            + marker.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let feed = number_after("requests by source: the feed ");
    let per_customer = number_after("per customer about ");
    assert!(feed * 2 < per_customer, "{stdout}");
    assert_eq!(wal_len(&db), 0, "the WAL is folded back");
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let (runs, succeeded, integrity) = copy_report(&copy);
    assert_eq!(integrity, "ok");
    assert!(runs >= 3, "backfill, sync and full: {runs}");
    assert_eq!(copy_report(&db), (runs, succeeded, integrity));
}

/// (customers, transactions, runs) of a mirror file.
fn counts(db: &Path) -> (i64, i64, i64) {
    Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM transactions), (SELECT count(*) FROM sync_runs)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_copies_a_stopped_mirror_whole_and_checked_and_refuses_to_overwrite() {
    let sim = spawn_sim(small_sim_options(60, 127)).await;
    let m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    m.run(RunKind::Sync).await.unwrap();
    let config = m.config_file("");
    let copy = m.dir.path().join("backup.db");
    let arg = copy.to_str().unwrap();
    let out = run_bin(Some(&config), None, &["backup", arg]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("quick_check ok"), "{stdout}");
    assert_eq!(counts(&copy), counts(&m.db));
    assert_eq!(counts(&copy).2, 2);
    assert_eq!(copy_report(&copy).2, "ok");
    let truth = sim.sim.truth();
    let d = lomi_sync::verify::differences(&read_only(&copy), &truth, 10).unwrap();
    assert!(d.is_empty(), "the copy differs from the source: {d:?}");
    // An existing file is kept unless --force.
    sim.sim.mutate(&lomi_sim::Mutation {
        create: 2,
        ..Default::default()
    });
    m.run(RunKind::Sync).await.unwrap();
    let out = run_bin(Some(&config), None, &["backup", arg]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(counts(&copy).2, 2, "the old copy is untouched");
    let out = run_bin(Some(&config), None, &["backup", "--force", arg]).await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(counts(&copy), counts(&m.db));
    assert_eq!(counts(&copy).2, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_a_backfill_writes_is_a_consistent_snapshot() {
    let sim = spawn_sim(crate::harness::slow_sim_options(300, 128, 15)).await;
    let m = Mirror::new(&sim);
    let config = m.config_file("");
    let copy = m.dir.path().join("during.db");
    let backup = async {
        let started =
            crate::harness::wait_for(60, || crate::harness::runs_sum(&m.db, "sum(pages)") >= 2)
                .await;
        assert!(started, "the backfill committed pages");
        run_bin(Some(&config), None, &["backup", copy.to_str().unwrap()]).await
    };
    let (run, out) = tokio::join!(m.run(RunKind::Backfill), backup);
    run.unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let c = Connection::open(&copy).unwrap();
    let (integrity, outcome, customers, inserted, walks): (String, String, i64, i64, i64) = c
        .query_row(
            "SELECT (SELECT integrity_check FROM pragma_integrity_check),
                    (SELECT outcome FROM sync_runs),
                    (SELECT count(*) FROM customers),
                    (SELECT sum(customers_inserted) FROM sync_runs),
                    (SELECT count(*) FROM walk)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(integrity, "ok");
    // A snapshot between two commits: the run in flight, its rows and its checkpoint.
    assert_eq!(outcome, "running");
    assert_eq!(walks, 1);
    assert!(customers > 0 && customers < 300, "{customers}");
    assert_eq!(customers, inserted, "rows and counters of the same commits");
    m.assert_equals_truth(&sim);
}
