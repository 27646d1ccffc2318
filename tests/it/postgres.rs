//! The PostgreSQL store (issue 17) against the simulator's truth. What both stores
//! promise is written once, as a function of the [`Backend`], and `both_stores!` makes
//! a test of it for each store (`<behaviour>::sqlite`, `<behaviour>::postgres`), so the
//! two can never drift apart: rounds of changes ending in the truth (per customer and
//! from the feed), no-change runs writing no row (in PostgreSQL not even a tuple, by
//! the server's own statistics), drift during a list walk and during a feed pass,
//! `kill -9` of the binary at random points then an exact resume, readers never seeing
//! half a page, and a second writer refused with exit status 4 naming the holder.
//! PostgreSQL's own: the harness's schema per test, a wrong password, a password in the
//! URL, an unreachable server, the README's roles and its PostgreSQL example query.
//!
//! These need a server: `scripts/with-postgres cargo nextest run --release` (or
//! `LOMI_TEST_PG_URL` and `LOMI_TEST_PG_PASSWORD`; see `pg_schema`).

use std::collections::BTreeSet;
use std::time::Duration;

use lomi_sim::{Drift, Feed, Mutation};
use lomi_sync::config::TransactionsSource;
use lomi_sync::store::{Location, RunKind, Store, WriterLock};

use crate::harness::{Backend, Mirror, command, run_bin, slow_sim_options, text};
use crate::pg_schema::{PgSchema, off_runtime};
use crate::support::{TestSim, small_sim_options, spawn_sim};

/// `behaviour(Backend)` as two tests, `behaviour::sqlite` and `behaviour::postgres`.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::harness::Backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    )*};
}

both_stores!(
    rounds_of_changes_per_customer_end_in_the_truth,
    rounds_of_changes_from_the_feed_end_in_the_truth,
    no_change_runs_per_customer_write_no_row,
    no_change_runs_from_the_feed_write_no_row,
    list_drift_never_deletes_a_live_customer,
    feed_drift_during_the_pass_loses_nothing,
    kill_9_at_random_points_then_resume_is_exact,
    readers_never_see_half_a_page,
    a_second_writer_gets_status_4_naming_the_holder,
);

/// A mirror of `sim` in `backend`, reading transactions from `source`.
fn mirror(sim: &TestSim, backend: Backend, source: TransactionsSource) -> Mirror {
    let mut m = Mirror::on(sim, backend);
    m.settings.sync.transactions_source = source;
    m
}

/// The simulator's usual round of changes: sign-ups, edits, deletions, restores,
/// payments, settlements, deleted payments.
const ROUND: Mutation = Mutation {
    create: 7,
    update: 9,
    delete: 5,
    restore: 2,
    add_tx: 30,
    settle: 10,
    delete_tx: 3,
    delete_newest_tx: 0,
};

async fn rounds_of_changes_per_customer_end_in_the_truth(backend: Backend) {
    rounds_of_changes(backend, TransactionsSource::PerCustomer, 1701).await;
}

async fn rounds_of_changes_from_the_feed_end_in_the_truth(backend: Backend) {
    rounds_of_changes(backend, TransactionsSource::Feed, 1702).await;
}

/// A backfill, then three rounds of changes each followed by a sync: each time the
/// mirror equals the truth, and the changes are recorded by kind.
async fn rounds_of_changes(backend: Backend, source: TransactionsSource, seed: u64) {
    let sim = spawn_sim(small_sim_options(250, seed)).await;
    let mut m = mirror(&sim, backend, source);
    // Runs spaced by more than full_every re-read every transaction: exact truth.
    m.settings.sync.full_every = Duration::from_millis(1).into();
    let s = m.run(RunKind::Backfill).await.unwrap();
    m.assert_equals_truth(&sim);
    assert_eq!(s.applied.customers_inserted, 250);
    assert_eq!(m.count("SELECT count(*) FROM customers"), 250);
    let transactions = m.count("SELECT count(*) FROM transactions");
    assert_eq!(s.applied.transactions_inserted as i64, transactions);
    // The first load is not a change; its run is recorded; its walk is finished.
    assert_eq!(m.count("SELECT count(*) FROM changes"), 0);
    assert_eq!(
        m.count("SELECT count(*) FROM sync_runs WHERE outcome = 'succeeded' AND kind = 'backfill'"),
        1
    );
    assert_eq!(m.count("SELECT count(*) FROM walk"), 0);
    for round in 0..3 {
        sim.sim.mutate(&ROUND);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let s = m.run(RunKind::Sync).await.unwrap();
        assert!(s.rows_written > 0, "round {round} found the changes");
        m.assert_equals_truth(&sim);
    }
    for (entity, kinds) in [
        ("customer", &["created", "deleted", "updated"][..]),
        ("transaction", &["created", "deleted", "updated"][..]),
    ] {
        let seen: BTreeSet<String> = m
            .strings(&format!(
                "SELECT DISTINCT kind FROM changes WHERE entity = '{entity}'"
            ))
            .into_iter()
            .collect();
        for kind in kinds {
            assert!(seen.contains(*kind), "{entity} {kind} missing: {seen:?}");
        }
    }
    assert_eq!(
        m.count("SELECT count(*) FROM sync_runs WHERE outcome = 'succeeded'"),
        4
    );
}

async fn no_change_runs_per_customer_write_no_row(backend: Backend) {
    no_change_runs_write_no_row(backend, TransactionsSource::PerCustomer, 1703).await;
}

async fn no_change_runs_from_the_feed_write_no_row(backend: Backend) {
    no_change_runs_write_no_row(backend, TransactionsSource::Feed, 1704).await;
}

/// What a run that wrote nothing leaves as it was: the rows and their newest
/// `synced_at`, the change rows and, in PostgreSQL, the tuples the server counts as
/// inserted, updated or deleted in the data tables.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    customers: (i64, Option<String>),
    transactions: (i64, Option<String>),
    changes: i64,
    tuple_writes: Option<i64>,
}

fn fingerprint(m: &Mirror) -> Fingerprint {
    let table = |t: &str| {
        (
            m.count(&format!("SELECT count(*) FROM {t}")),
            m.text(&format!("SELECT max(synced_at) FROM {t}")),
        )
    };
    Fingerprint {
        customers: table("customers"),
        transactions: table("transactions"),
        changes: m.count("SELECT count(*) FROM changes"),
        tuple_writes: m
            .pg
            .as_ref()
            .map(|pg| pg.tuple_writes(&["customers", "transactions", "changes"])),
    }
}

/// An incremental run and a full re-read over an unchanged source write no row.
async fn no_change_runs_write_no_row(backend: Backend, source: TransactionsSource, seed: u64) {
    let sim = spawn_sim(small_sim_options(200, seed)).await;
    let mut m = mirror(&sim, backend, source);
    m.run(RunKind::Backfill).await.unwrap();
    let before = fingerprint(&m);
    if backend == Backend::Postgres {
        assert!(
            before.tuple_writes.unwrap() >= before.customers.0 + before.transactions.0,
            "the statistics saw the backfill: {before:?}"
        );
    }
    let s = m.run(RunKind::Sync).await.unwrap();
    assert_eq!(s.rows_written, 0);
    m.settings.sync.full_every = Duration::from_millis(1).into();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let s = m.run(RunKind::Full).await.unwrap();
    assert_eq!(s.rows_written, 0);
    // Every transaction was read again, per customer or from the whole feed.
    match source {
        TransactionsSource::PerCustomer => assert!(s.transaction_refreshes > 0),
        _ => assert!(s.feed_pages > 0 && s.transaction_refreshes == 0),
    }
    assert_eq!(fingerprint(&m), before);
}

/// Customers inserted and deleted between the list's pages: no live customer is ever
/// marked deleted, and once the source holds still the next run equals it.
async fn list_drift_never_deletes_a_live_customer(backend: Backend) {
    let mut opts = small_sim_options(300, 1705);
    opts.drift = Drift {
        insert_per_page: 2,
        delete_per_page: 2,
    };
    let sim = spawn_sim(opts).await;
    let mut m = mirror(&sim, backend, TransactionsSource::PerCustomer);
    m.run(RunKind::Backfill).await.unwrap();
    m.run(RunKind::Sync).await.unwrap();
    let truth = sim.sim.truth();
    let deleted: BTreeSet<&str> = truth["deleted_customer_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let marked = m.strings("SELECT id FROM customers WHERE deleted_at IS NOT NULL");
    assert!(!marked.is_empty(), "drift deleted customers the mirror saw");
    for id in &marked {
        assert!(
            deleted.contains(id.as_str()),
            "live customer {id} marked deleted"
        );
    }
    sim.sim.set_drift(Drift::default());
    m.settings.sync.full_every = Duration::from_millis(1).into();
    tokio::time::sleep(Duration::from_millis(5)).await;
    m.run(RunKind::Sync).await.unwrap();
    m.assert_equals_truth(&sim);
}

/// Every transaction id of the truth (live customers' live transactions).
fn truth_tx_ids(sim: &TestSim) -> BTreeSet<String> {
    let truth = sim.sim.truth();
    let lists = truth["transactions"].as_object().expect("transactions");
    lists
        .values()
        .flat_map(|l| l.as_array().expect("a list").iter())
        .map(|t| t["transaction_id"].as_str().expect("an id").to_string())
        .collect()
}

/// Payments created after each feed page (and a silent row cap): the first pass keeps
/// every row that existed when it started, counts shifted rows once, and the next sync
/// reads the rest.
async fn feed_drift_during_the_pass_loses_nothing(backend: Backend) {
    let sim = spawn_sim(small_sim_options(200, 1403)).await;
    sim.sim.set_feed(Feed {
        row_cap: 40,
        insert_per_page: 3,
        ..Feed::default()
    });
    let before = truth_tx_ids(&sim);
    let m = mirror(&sim, backend, TransactionsSource::Feed);
    let first = m.run(RunKind::Backfill).await.unwrap();
    let read: BTreeSet<String> = m
        .strings("SELECT transaction_id FROM transactions WHERE deleted_at IS NULL")
        .into_iter()
        .collect();
    assert!(
        first.transactions_seen > read.len() as u64,
        "pages overlapped"
    );
    assert_eq!(first.applied.transactions_inserted, read.len() as u64);
    let missing: Vec<_> = before.difference(&read).collect();
    assert!(
        missing.is_empty(),
        "missing after the backfill: {missing:?}"
    );
    assert!(truth_tx_ids(&sim).len() > before.len(), "the feed drifted");
    sim.sim.set_feed(Feed::default());
    m.run(RunKind::Sync).await.unwrap();
    m.assert_equals_truth(&sim);
}

/// Waits until nobody holds the mirror's writer lock: a killed process's PostgreSQL
/// session ends (and frees its advisory lock) a moment after the process.
async fn wait_unlocked(m: &Mirror) {
    let at = m.location();
    let free = crate::harness::wait_for(10, || lomi_sync::store::lock::holder(&at).is_none());
    assert!(free.await, "the writer lock was never released");
}

/// After a `kill -9`: the mirror reads, holds no duplicate, and its rows agree with the
/// runs' counters (each batch commits with its run's counts and checkpoint).
fn assert_consistent(m: &Mirror, round: usize) {
    if !m.exists() {
        return;
    }
    assert_eq!(m.integrity(), "ok", "round {round}");
    assert_eq!(
        m.count("SELECT count(*) - count(DISTINCT transaction_id) FROM transactions"),
        0,
        "round {round}: duplicate rows"
    );
    assert_eq!(
        m.count("SELECT count(*) FROM customers"),
        m.runs_sum("sum(customers_inserted)"),
        "round {round}: rows without their run's counts"
    );
}

/// The binary killed with SIGKILL at random points of a backfill, then of syncs after
/// a round of changes: every kill leaves a consistent mirror, and the next run resumes
/// to the exact truth with each change recorded once.
async fn kill_9_at_random_points_then_resume_is_exact(backend: Backend) {
    // Slow enough, even in a release build, that most kills land mid-run.
    let sim = spawn_sim(slow_sim_options(300, 1707, 30)).await;
    let mut m = Mirror::on(&sim, backend);
    m.settings.api.page_size = 20;
    let config = m.config_file("[sync]\nfull_every = \"1ms\"");
    let mut rng = fastrand::Rng::with_seed(17);
    let mut kills = 0;
    for round in 0..10 {
        let cmd = if round < 6 { "backfill" } else { "sync" };
        wait_unlocked(&m).await;
        if round == 6 {
            let out = run_bin(Some(&config), Some(&sim.api_key), &["backfill"]).await;
            assert!(out.status.success(), "{}", text(&out).1);
            sim.sim.mutate(&ROUND);
        }
        let mut child = command(Some(&config), Some(&sim.api_key), &[cmd])
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.u64(100..700))).await;
        if child.try_wait().unwrap().is_none() {
            child.start_kill().unwrap();
            kills += 1;
        }
        child.wait().await.unwrap();
        assert_consistent(&m, round);
    }
    assert!(kills >= 7, "most runs were killed mid-way ({kills})");
    wait_unlocked(&m).await;
    let out = run_bin(Some(&config), Some(&sim.api_key), &["sync"]).await;
    assert!(out.status.success(), "{}", text(&out).1);
    m.assert_equals_truth(&sim);
    let dup_changes = m.count(
        "SELECT count(*) FROM (SELECT entity_id, kind FROM changes WHERE kind = 'deleted'
         GROUP BY entity_id, kind HAVING count(*) > 1) d",
    );
    assert_eq!(dup_changes, 0, "a deletion recorded twice");
}

/// One snapshot of (customers, customers counted by the runs, transactions,
/// transactions counted by the runs), in one statement: `None` while the mirror has no
/// tables yet.
const SNAPSHOT: &str = "SELECT (SELECT count(*) FROM customers),
        (SELECT CAST(coalesce(sum(customers_inserted), 0) AS BIGINT) FROM sync_runs),
        (SELECT count(*) FROM transactions),
        (SELECT CAST(coalesce(sum(transactions_inserted), 0) AS BIGINT) FROM sync_runs)";

type Snapshot = (i64, i64, i64, i64);

/// A reader of `at` on this (non-runtime) thread: each call takes one snapshot.
fn reader(at: Location) -> impl FnMut() -> Option<Snapshot> {
    let mut pg: Option<postgres::Client> = None;
    move || match &at {
        Location::Sqlite(db) => {
            let conn = rusqlite::Connection::open_with_flags(
                db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .ok()?;
            conn.busy_timeout(Duration::from_secs(5)).unwrap();
            match conn.query_row(SNAPSHOT, [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            }) {
                Ok(s) => Some(s),
                Err(e) if e.to_string().contains("no such table") => None,
                Err(e) => panic!("a reader failed: {e}"),
            }
        }
        Location::Postgres(t) => {
            if pg.is_none() {
                pg = Some(t.connect("it reader", Duration::from_secs(5)).unwrap());
            }
            match pg.as_mut().unwrap().query_one(SNAPSHOT, &[]) {
                Ok(r) => Some((r.get(0), r.get(1), r.get(2), r.get(3))),
                // The schema or its tables do not exist yet in the first instants.
                Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => None,
                Err(e) => panic!("a reader failed: {e:?}"),
            }
        }
    }
}

/// A reader querying throughout a backfill always sees the rows and their run's counts
/// agree: never half a page.
async fn readers_never_see_half_a_page(backend: Backend) {
    let sim = spawn_sim(slow_sim_options(400, 1708, 1)).await;
    let m = Mirror::on(&sim, backend);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let mut snapshot = reader(m.location());
        std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match snapshot() {
                    Some((c, ci, t, ti)) => {
                        assert_eq!((c, t), (ci, ti), "a reader saw half a page");
                        seen += 1;
                    }
                    None => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            seen
        })
    };
    let result = m.run(RunKind::Backfill).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    result.unwrap();
    assert!(seen > 10, "the reader ran throughout ({seen} snapshots)");
}

/// While one process holds the writer lock, `sync` exits with status 4 naming it (for
/// PostgreSQL, the holder's `application_name`); once it is released, `sync` runs.
async fn a_second_writer_gets_status_4_naming_the_holder(backend: Backend) {
    let sim = spawn_sim(small_sim_options(10, 1709)).await;
    let m = Mirror::on(&sim, backend);
    let config = m.config_file("");
    let held = WriterLock::acquire(&m.location(), "backfill", false).unwrap();
    let out = run_bin(Some(&config), Some(&sim.api_key), &["sync"]).await;
    let err = text(&out).1;
    assert_eq!(out.status.code(), Some(4), "{err}");
    let pid = std::process::id();
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("--wait"),
        "{err}"
    );
    if backend == Backend::Postgres {
        assert!(
            err.contains(&format!("lomi-sync backfill (pid {pid})")),
            "{err}"
        );
    }
    drop(held);
    wait_unlocked(&m).await;
    let out = run_bin(Some(&config), Some(&sim.api_key), &["sync"]).await;
    assert!(out.status.success(), "{}", text(&out).1);
}

/// The harness itself: each mirror gets a schema of its own on the test server, the
/// store creates it with its tables there (as a user's first run does), the harness
/// reads it, and the schema is dropped with its guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_test_mirrors_into_a_schema_of_its_own_dropped_at_its_end() {
    let pg = PgSchema::new();
    let other = PgSchema::new();
    assert_ne!(pg.schema, other.schema);
    let mode = std::fs::metadata(pg.password_file.path()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let at = pg.location();
    off_runtime(|| drop(Store::open(&at, Duration::from_secs(5)).expect("open the mirror")));
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()";
    assert!(pg.count(tables).unwrap() >= 10);
    assert_eq!(
        pg.text("current_schema()").unwrap(),
        Some(pg.schema.clone())
    );
    assert_eq!(other.count(tables).unwrap(), 0, "the other schema is empty");
    let name = pg.schema.clone();
    drop(pg);
    let left = other
        .count(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = '{name}'"
        ))
        .unwrap();
    assert_eq!(left, 0, "the schema was dropped");
}

/// A wrong password: each command fails, the message names `store.url` and the
/// password's settings, and neither the wrong password nor the right one shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_naming_the_settings_and_never_the_password() {
    let sim = spawn_sim(small_sim_options(10, 1710)).await;
    let m = Mirror::on(&sim, Backend::Postgres);
    let pg = m.pg.as_ref().unwrap();
    let wrong = format!("wrong-{:016x}", fastrand::u64(..));
    std::fs::write(pg.password_file.path(), format!("{wrong}\n")).unwrap();
    let config = m.config_file("");
    for args in [&["backfill"][..], &["sync"], &["status"]] {
        let out = run_bin(Some(&config), Some(&sim.api_key), args).await;
        let (o, e) = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded: {o}{e}");
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {e}");
        assert!(
            e.contains("store.url") && e.contains("password") && e.contains(&pg.schema),
            "{args:?}: {e}"
        );
        for secret in [wrong.as_str(), pg.password()] {
            assert!(
                !o.contains(secret) && !e.contains(secret),
                "{args:?} printed a password"
            );
        }
    }
}

/// The README's roles, as written: an administrator creates the writer's role and a
/// schema it owns (no right to create schemas in the database), and a read-only analyst
/// role. lomi-sync mirrors into the schema as the writer; the analyst reads every table
/// and view the writer made, and can write none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_roles_work_a_writer_owning_its_schema_and_a_read_only_analyst() {
    let sim = spawn_sim(small_sim_options(30, 1713)).await;
    let mut m = Mirror::on(&sim, Backend::Postgres);
    let pg = m.pg.as_ref().unwrap();
    let (writer, analyst, schema) = (
        format!("w_{}", pg.schema),
        format!("a_{}", pg.schema),
        pg.schema.clone(),
    );
    let setup = format!(
        "CREATE ROLE {writer} LOGIN PASSWORD 'writer-pw';
         CREATE SCHEMA {schema} AUTHORIZATION {writer};
         CREATE ROLE {analyst} LOGIN PASSWORD 'analyst-pw';
         GRANT USAGE ON SCHEMA {schema} TO {analyst};
         GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {analyst};
         ALTER DEFAULT PRIVILEGES FOR ROLE {writer} IN SCHEMA {schema} GRANT SELECT ON TABLES TO {analyst};"
    );
    pg.with(|c| c.batch_execute(&setup)).unwrap();
    let as_role = |role: &str| {
        let mut url = url::Url::parse(&pg.url).unwrap();
        url.set_username(role).unwrap();
        url.to_string()
    };
    let password = m.dir.path().join("writer-password");
    std::fs::write(&password, "writer-pw\n").unwrap();
    m.settings.store.url = Some(as_role(&writer));
    m.settings.store.password_file = Some(password);
    let config = m.config_file("");
    let out = run_bin(Some(&config), Some(&sim.api_key), &["backfill"]).await;
    assert!(out.status.success(), "{}", text(&out).1);
    let analyst_url = as_role(&analyst);
    let (read, write) = off_runtime(|| {
        let target =
            lomi_sync::store::pg::PgTarget::new(&analyst_url, &schema, Some("analyst-pw")).unwrap();
        let mut c = target
            .connect("it analyst", Duration::from_secs(10))
            .unwrap();
        let read: i64 = c
            .query_one("SELECT count(*) FROM live_customers", &[])
            .unwrap()
            .get(0);
        let write = c
            .batch_execute("DELETE FROM customers")
            .map_err(|e| e.code().cloned());
        (read, write)
    });
    assert_eq!(read, 30);
    assert_eq!(
        write,
        Err(Some(postgres::error::SqlState::INSUFFICIENT_PRIVILEGE))
    );
    let cleanup = format!(
        "DROP SCHEMA {schema} CASCADE; DROP OWNED BY {analyst}; DROP ROLE {analyst}; DROP ROLE {writer};"
    );
    pg.with(|c| c.batch_execute(&cleanup)).unwrap();
}

/// The README's PostgreSQL example (its `postgresql` blocks) runs as is against a
/// PostgreSQL mirror, and counts the completed payments of the last 30 days the truth
/// holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_postgresql_example_runs_and_agrees_with_the_truth() {
    let sim = spawn_sim(small_sim_options(200, 1714)).await;
    sim.sim.mutate(&Mutation {
        add_tx: 100,
        settle: 40,
        ..Mutation::default()
    });
    let m = Mirror::on(&sim, Backend::Postgres);
    m.run(RunKind::Backfill).await.unwrap();
    let readme = include_str!("../../README.md");
    let blocks: Vec<&str> = readme
        .split("```postgresql")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 1, "one PostgreSQL example");
    let mut out = Vec::new();
    let format = lomi_sync::query::Format::Json;
    lomi_sync::query::run(&m.store(), blocks[0], format, &mut out).unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
    let payments: i64 = rows.iter().map(|r| r["payments"].as_i64().unwrap()).sum();
    let since = chrono::Utc::now() - chrono::Duration::days(30);
    let truth = sim.sim.truth();
    let expected = truth["transactions"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|list| list.as_array().unwrap())
        .filter(|t| t["status"] == "completed")
        .filter(|t| {
            let at = t["created_at"].as_str().unwrap();
            chrono::DateTime::parse_from_rfc3339(at).unwrap() >= since
        })
        .count() as i64;
    assert!(expected > 0, "the simulator made recent payments");
    assert_eq!(payments, expected, "{rows:?}");
}

/// A server that is not there: the run fails at once (no retry loop, no hang) naming
/// the address and what to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_at_once_with_a_clear_error() {
    let sim = spawn_sim(small_sim_options(10, 1711)).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut m = Mirror::new(&sim);
    let password = m.dir.path().join("pg-password");
    std::fs::write(&password, "unused\n").unwrap();
    m.settings.store.url = Some(format!("postgres://lomi@127.0.0.1:{port}/postgres"));
    m.settings.store.password_file = Some(password);
    let config = m.config_file("");
    let started = std::time::Instant::now();
    for args in [&["sync"][..], &["status"]] {
        let out = run_bin(Some(&config), Some(&sim.api_key), args).await;
        let e = text(&out).1;
        assert!(!out.status.success(), "{args:?}: {e}");
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {e}");
        assert!(
            e.contains(&format!("127.0.0.1:{port}"))
                && e.contains("cannot connect")
                && e.contains("server is running"),
            "{args:?}: {e}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// A password written into `store.url` is refused before anything connects (status 2,
/// configuration), naming where it belongs, never echoing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_refused_with_status_2() {
    let sim = spawn_sim(small_sim_options(10, 1712)).await;
    for url in [
        "postgres://lomi:hunter2secret@127.0.0.1:5432/postgres",
        "postgres://lomi@127.0.0.1:5432/postgres?sslmode=disable&password=hunter2secret",
    ] {
        let mut m = Mirror::new(&sim);
        m.settings.store.url = Some(url.into());
        let config = m.config_file("");
        for args in [&["sync"][..], &["check-config"]] {
            let out = run_bin(Some(&config), Some(&sim.api_key), args).await;
            let (o, e) = text(&out);
            assert_eq!(out.status.code(), Some(2), "{url} {args:?}: {e}");
            assert!(
                e.contains("store.url") && e.contains("password_file"),
                "{e}"
            );
            assert!(
                !o.contains("hunter2secret") && !e.contains("hunter2secret"),
                "{url} {args:?}: {o}{e}"
            );
        }
    }
}
