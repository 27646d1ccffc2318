//! The runs, walk, planner, status and webhook reads of the PostgreSQL store against
//! the SQLite one (issue 17): the same calls on both, through [`Store`], give the same
//! answers (timestamps written by the store itself aside). Needs a server:
//! `LOMI_TEST_PG_URL` and `LOMI_TEST_PG_PASSWORD` (`scripts/with-postgres` sets them);
//! each test uses a schema of its own, dropped at its end.

use std::ops::Bound;
use std::time::Duration;

use super::{PgStore, PgTarget};
use crate::api::StatusFilter;
use crate::api::model::Transaction;
use crate::store::{
    Delivery, FeedCursor, ListCounts, Outcome, Phase, RouteBudgetRow, RunFailure, RunKind,
    SqliteStore, Store, StoreError, Walk, WebhookBatch, WebhookResult,
};

const T: Duration = Duration::from_secs(10);

/// A schema of its own on the test server, dropped when this is.
struct Schema(PgTarget);

impl Schema {
    /// A new schema `t_<random>`; panics, saying how to set one up, without a server.
    fn new() -> Schema {
        let url = std::env::var("LOMI_TEST_PG_URL").unwrap_or_else(|_| {
            panic!(
                "LOMI_TEST_PG_URL is not set: the PostgreSQL store's tests need a server; run \
                 them under scripts/with-postgres, or set LOMI_TEST_PG_URL and \
                 LOMI_TEST_PG_PASSWORD for an existing one"
            )
        });
        let password = std::env::var("LOMI_TEST_PG_PASSWORD").ok();
        let schema = format!("t_{:016x}", fastrand::u64(..));
        Schema(PgTarget::new(&url, &schema, password.as_deref()).expect("LOMI_TEST_PG_URL"))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        super::off_runtime(|| {
            if let Ok(mut c) = self.0.connect("lomi-sync test cleanup", T) {
                let _ = c.batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    self.0.quoted_schema()
                ));
            }
        });
    }
}

/// The same empty mirror in both stores (dropped before their schema and directory).
struct Both {
    sqlite: Store,
    pg: Store,
    _dir: tempfile::TempDir,
    _schema: Schema,
}

impl Both {
    fn new() -> Both {
        let dir = tempfile::tempdir().unwrap();
        let schema = Schema::new();
        Both {
            sqlite: Store::Sqlite(SqliteStore::open(&dir.path().join("m.db"), T).unwrap()),
            pg: Store::Postgres(PgStore::open(&schema.0, T).unwrap()),
            _dir: dir,
            _schema: schema,
        }
    }

    /// `f` on both stores; asserts they answer the same, and returns that.
    fn same<R: PartialEq + std::fmt::Debug>(&mut self, f: impl Fn(&mut Store) -> R) -> R {
        let s = f(&mut self.sqlite);
        let p = f(&mut self.pg);
        assert_eq!(s, p, "SQLite (left) and PostgreSQL (right) differ");
        s
    }

    /// Runs `sql` on each store; `{seq}` becomes SQLite's `customer_seq` column and
    /// `{seq_of}` its value for the customer named in the row (nothing in PostgreSQL).
    fn seed(&mut self, sql: &str) {
        let sqlite = sql
            .replace("{seq}", ", customer_seq")
            .replace("{seq_of:", ", (SELECT rowid FROM customers WHERE id = ")
            .replace(":}", ")");
        self.sqlite
            .sqlite()
            .unwrap()
            .conn()
            .execute_batch(&sqlite)
            .unwrap();
        let pg = sql.replace("{seq}", "");
        let pg = strip_seq(&pg);
        pg_store(&self.pg).with(|c| c.batch_execute(&pg)).unwrap();
    }
}

/// Removes `{seq_of:'id':}` from PostgreSQL's text.
fn strip_seq(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(i) = rest.find("{seq_of:") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(":}").expect("{seq_of: ends with :}") + i + 2;
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn pg_store(s: &Store) -> &PgStore {
    match s {
        Store::Postgres(p) => p,
        Store::Sqlite(_) => panic!("not the PostgreSQL store"),
    }
}

fn walk(run_id: i64, initial: bool) -> Walk {
    let mut counts = ListCounts::default();
    counts.totals.insert(StatusFilter::Active, 120);
    counts.unreadable.insert(StatusFilter::Inactive, 2);
    counts.missing = Some(3);
    Walk {
        kind: RunKind::Backfill,
        started_at: "2025-06-02T08:00:00.123456Z".into(),
        phase: Phase::Feed,
        counts,
        initial,
        feed: Some(FeedCursor {
            end: Some("2025-06-01T00:00:00.000001Z".into()),
            floor: None,
            next_page: 7,
            page_size: 1000,
            read_to: 6000,
            probe_after: Some(12),
            cap: Some(988),
            window_top: Some("2025-05-20T10:00:00.250000Z".into()),
        }),
        ..crate::store::walk_tests::walk(run_id)
    }
}

/// A stored run row without what the clock decides (its times and duration).
fn run_shape(s: &Store) -> Vec<serde_json::Value> {
    let mut runs = serde_json::to_value(s.status(10).unwrap().runs).unwrap();
    for r in runs.as_array_mut().unwrap() {
        let r = r.as_object_mut().unwrap();
        for k in ["started_at", "finished_at", "duration_secs"] {
            let v = r.get_mut(k).unwrap();
            *v = serde_json::Value::Bool(!v.is_null());
        }
    }
    runs.as_array().unwrap().clone()
}

#[test]
fn runs_are_recorded_alike_started_finished_deferred_failed_and_recovered() {
    let mut m = Both::new();
    m.same(|s| {
        (
            s.has_full_walk().unwrap(),
            s.deferred_until().unwrap(),
            s.last_success_started_at().unwrap(),
            s.last_success_times().unwrap(),
            s.health_facts().unwrap(),
            s.last_transactions_source().unwrap(),
        )
    });
    m.same(|s| {
        let r1 = s.start_run(RunKind::Backfill).unwrap();
        s.note_records_skipped(r1, 4).unwrap();
        s.note_transactions_source(r1, "per_customer", Some("HTTP 404 from GET /transactions"))
            .unwrap();
        s.finish_run(r1, Outcome::Succeeded, None, 12, 2).unwrap();
        let r2 = s.start_run(RunKind::Sync).unwrap();
        let deferred = RunFailure {
            run_id: Some(r2),
            kind: RunKind::Sync,
            started_at: "2025-06-02T08:00:00.000000Z".into(),
            outcome: Outcome::Deferred,
            error: "rate limited".into(),
            resume_at: Some("2030-01-01T00:00:00.250000Z".into()),
            requests: 5,
            retries: 1,
        };
        let id2 = s.record_unsuccessful(&deferred).unwrap();
        let until = s.deferred_until().unwrap();
        // A run that failed before its row was written gets one.
        let failed = RunFailure {
            run_id: None,
            outcome: Outcome::Failed,
            error: "the key was rejected".into(),
            resume_at: None,
            ..deferred
        };
        let id3 = s.record_unsuccessful(&failed).unwrap();
        let r4 = s.start_run(RunKind::Full).unwrap();
        let recovered = s.recover_stale_runs().unwrap();
        let again = s.recover_stale_runs().unwrap();
        (
            (r1, r2, id2, id3, r4, until, recovered, again),
            s.has_full_walk().unwrap(),
            s.last_success_started_at().unwrap().is_some(),
            s.last_success_times().unwrap().is_some(),
            s.last_full_walk_started_at().unwrap() == s.last_success_started_at().unwrap(),
            s.last_transactions_source().unwrap(),
            s.health_facts().unwrap().last_run,
            run_shape(s),
        )
    });
    // The strings are the mirror's one form in both.
    let times = m.pg.last_success_times().unwrap().unwrap();
    assert_eq!(
        times.0.len(),
        "2025-06-02T08:00:00.000000Z".len(),
        "{times:?}"
    );
    assert!(times.1.ends_with('Z') && times.1 >= times.0, "{times:?}");
    assert_eq!(
        m.pg.deferred_until().unwrap(),
        None,
        "the last run is the recovered one"
    );
}

#[test]
fn a_walk_with_its_feed_cursor_and_counts_round_trips_adopted_and_completed() {
    let mut m = Both::new();
    m.same(|s| {
        let r1 = s.start_run(RunKind::Backfill).unwrap();
        s.begin_walk(&walk(r1, false)).unwrap();
        let read = s.walk().unwrap();
        let r2 = s.start_run(RunKind::Backfill).unwrap();
        let previous = s.adopt_walk(r2).unwrap();
        let adopted = s.walk().unwrap().map(|w| w.run_id);
        let before = s.has_full_walk().unwrap();
        s.complete_walk(r2, 40, 3, None).unwrap();
        (
            read == Some(walk(r1, false)),
            previous,
            adopted,
            before,
            s.walk().unwrap(),
            s.walk_seen().unwrap(),
            s.has_full_walk().unwrap(),
            s.health_facts().unwrap().last_run,
            run_shape(s),
        )
    });
    // A walk that could not list everyone ends failed, and still loaded the mirror.
    m.same(|s| {
        let r = s.start_run(RunKind::Full).unwrap();
        s.begin_walk(&walk(r, false)).unwrap();
        s.complete_walk(r, 1, 0, Some((3, "3 customers missing")))
            .unwrap();
        (s.has_full_walk().unwrap(), run_shape(s)[0].clone())
    });
}

/// The deferred indexes in the test's schema.
fn deferred_indexes(p: &PgStore) -> i64 {
    p.with(|c| {
        c.query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema()
               AND indexname IN ('transactions_id', 'transactions_created_at', 'customers_email')",
            &[],
        )
    })
    .unwrap()
    .get(0)
}

#[test]
fn an_initial_walk_drops_the_deferred_indexes_and_its_completion_builds_them() {
    let schema = Schema::new();
    let mut p = PgStore::open(&schema.0, T).unwrap();
    assert_eq!(deferred_indexes(&p), 3);
    let r = p.start_run(RunKind::Backfill).unwrap();
    p.begin_walk(&walk(r, true)).unwrap();
    assert_eq!(deferred_indexes(&p), 0);
    p.with(|c| {
        c.batch_execute(
            "INSERT INTO feed_stage (customer_id, transaction_id, raw, staged_at)
             VALUES ('c', 't', '{}', now())",
        )
    })
    .unwrap();
    assert_eq!(p.walk().unwrap(), Some(walk(r, true)));
    p.complete_walk(r, 1, 0, None).unwrap();
    assert_eq!(deferred_indexes(&p), 3);
    // An incremental walk leaves them.
    let r = p.start_run(RunKind::Sync).unwrap();
    p.begin_walk(&walk(r, false)).unwrap();
    assert_eq!(deferred_indexes(&p), 3);
    drop(p);
}

/// A reader's open transaction that has read `customers` and goes on to read
/// `transactions` while a first backfill begins: the backfill's index drops wait for
/// the reader, and the reader is never left waiting for the backfill (holding
/// `transactions` exclusively while it waits for `customers` made PostgreSQL detect a
/// deadlock and abort one of them).
#[test]
fn a_first_backfill_beginning_under_a_readers_transaction_never_deadlocks() {
    let schema = Schema::new();
    let mut p = PgStore::open(&schema.0, T).unwrap();
    let r = p.start_run(RunKind::Backfill).unwrap();
    let mut reader = schema.0.connect("test reader", T).unwrap();
    let mut tx = reader.transaction().unwrap();
    tx.query_one("SELECT count(*) FROM customers", &[]).unwrap();
    std::thread::scope(|s| {
        let writer = s.spawn(|| p.begin_walk(&walk(r, true)));
        // Until the writer waits for the reader's lock on this schema's `customers`.
        let mut watch = schema.0.connect("test watch", T).unwrap();
        let q =
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'customers'::regclass";
        while watch.query_one(q, &[]).unwrap().get::<_, i64>(0) == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        tx.query_one("SELECT count(*) FROM transactions", &[])
            .expect("the reader reads on: the writer holds no lock it waits for");
        tx.commit().unwrap();
        let began = writer.join().unwrap();
        began.expect("the writer goes on once the reader is done");
    });
    assert_eq!(deferred_indexes(&p), 0);
    assert_eq!(p.walk().unwrap().map(|w| w.run_id), Some(r));
}

/// A first load whose checkpoint says it staged rows the stage no longer holds (emptied
/// by hand, or restored without it) reads its pass again.
#[test]
fn a_first_load_whose_staged_feed_rows_were_lost_reads_its_feed_pass_again() {
    let schema = Schema::new();
    let mut p = PgStore::open(&schema.0, T).unwrap();
    let r = p.start_run(RunKind::Backfill).unwrap();
    p.begin_walk(&walk(r, true)).unwrap();
    let resumed = p.walk().unwrap().unwrap();
    let written = walk(r, true).feed.unwrap();
    assert_eq!(
        resumed.feed,
        Some(FeedCursor {
            end: None,
            next_page: 1,
            read_to: 0,
            probe_after: None,
            window_top: None,
            ..written
        })
    );
    assert_eq!(
        Walk {
            feed: None,
            ..resumed
        },
        Walk {
            feed: None,
            ..walk(r, true)
        },
        "only the feed pass starts again"
    );
    // An incremental walk writes its rows in place: nothing is staged, nothing lost.
    p.begin_walk(&walk(r, false)).unwrap();
    assert_eq!(p.walk().unwrap(), Some(walk(r, false)));
}

#[test]
fn a_walk_postgresql_cannot_read_is_an_error_never_dropped() {
    let schema = Schema::new();
    let mut p = PgStore::open(&schema.0, T).unwrap();
    let r = p.start_run(RunKind::Sync).unwrap();
    p.begin_walk(&walk(r, false)).unwrap();
    p.with(|c| c.batch_execute("UPDATE walk SET list_counts = '{\"totals\": {\"someday\": 1}}'"))
        .unwrap();
    assert!(matches!(p.walk(), Err(StoreError::UnreadableWalk { .. })));
    p.with(|c| {
        c.batch_execute(
            "UPDATE walk SET list_counts = '{}'; INSERT INTO walk_seen VALUES ('a', 'all')",
        )
    })
    .unwrap();
    assert!(p.walk().unwrap().is_some());
    assert_eq!(p.walk_seen().unwrap().len(), 1);
}

/// Customers, their reads and transactions, a walk's sightings and the feed's state:
/// the same rows in both stores.
const SEED: &str = "
INSERT INTO customers (id, created_at, updated_at, first_seen_at, synced_at, deleted_at, raw, details_updated_at) VALUES
 ('cus_a', '2025-01-01T00:00:00.000000Z', '2025-02-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', NULL, '{}', '2025-02-01T00:00:00.000000Z'),
 ('cus_b', '2025-01-02T00:00:00.000000Z', '2025-02-02T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', NULL, '{}', NULL),
 ('cus_c', '2025-01-03T00:00:00.000000Z', '2025-03-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', NULL, '{}', '2025-02-01T00:00:00.000000Z'),
 ('cus_d', '2025-01-04T00:00:00.000000Z', '2025-02-04T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', '2025-04-01T00:00:00.000000Z', '{}', NULL),
 ('Cus_e', '2025-01-03T00:00:00.000000Z', '2025-02-05T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', NULL, '{}', NULL),
 ('cus_f', '2025-01-06T00:00:00.000000Z', '2025-02-06T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', NULL, '{}', NULL);
INSERT INTO customer_sync (customer_id, tx_checked_at, live_tx, last_tx_at, newest_pending_at) VALUES
 ('cus_a', '2025-05-01T00:00:00.000000Z', 2, '2025-04-30T00:00:00.000000Z', '2025-04-30T00:00:00.000000Z'),
 ('cus_b', '2025-03-01T00:00:00.000000Z', 1, '2025-01-15T00:00:00.000000Z', NULL),
 ('Cus_e', '2025-03-02T00:00:00.000000Z', 1, '2025-01-16T00:00:00.000000Z', NULL),
 ('cus_f', '2025-05-02T00:00:00.000000Z', 0, NULL, NULL);
INSERT INTO transactions (transaction_id, customer_id, status, created_at, first_seen_at, synced_at, deleted_at, raw {seq}) VALUES
 ('t1', 'cus_a', 'completed', '2025-04-01T00:00:00.000000Z', '2025-05-01T00:00:00.000000Z', '2025-05-01T00:00:00.000000Z', NULL, '{}' {seq_of:'cus_a':}),
 ('t2', 'cus_a', 'pending', '2025-04-30T00:00:00.000000Z', '2025-05-01T00:00:00.000000Z', '2025-05-01T00:00:00.000000Z', NULL, '{}' {seq_of:'cus_a':}),
 ('t3', 'cus_a', 'completed', '2025-03-01T00:00:00.000000Z', '2025-05-01T00:00:00.000000Z', '2025-05-01T00:00:00.000000Z', '2025-05-02T00:00:00.000000Z', '{}' {seq_of:'cus_a':}),
 ('t4', 'cus_b', 'completed', '2025-01-15T00:00:00.000000Z', '2025-05-01T00:00:00.000000Z', '2025-05-01T00:00:00.000000Z', NULL, '{}' {seq_of:'cus_b':}),
 ('t5', 'Cus_e', 'failed', '2025-03-01T00:00:00.000000Z', '2025-05-01T00:00:00.000000Z', '2025-05-01T00:00:00.000000Z', NULL, '{}' {seq_of:'Cus_e':});
INSERT INTO walk_seen (customer_id, segment) VALUES ('cus_a', 'confirm'), ('cus_b', 'inactive'), ('cus_d', 'confirm');
INSERT INTO feed_state (id, watermark, rolling_end, rolling_since) VALUES
 (1, '2025-04-30T00:00:00.000000Z', '2025-03-01T00:00:00.000000Z', NULL);
";

const MID_APRIL: &str = "2025-04-15T00:00:00.000000Z";

#[test]
fn the_planner_reads_the_same_mirror_alike() {
    let mut m = Both::new();
    m.same(|s| {
        (
            s.plan_snapshot(MID_APRIL, MID_APRIL).unwrap().len(),
            s.feed_watermark().unwrap(),
            s.feed_rolling().unwrap(),
            s.status(5).unwrap().totals.live_customers,
        )
    });
    m.seed(SEED);
    m.same(|s| {
        let mut plan: Vec<_> = s
            .plan_snapshot(MID_APRIL, MID_APRIL)
            .unwrap()
            .into_iter()
            .collect();
        plan.sort_by(|a, b| a.0.cmp(&b.0));
        plan
    });
    m.same(|s| {
        let mut known: Vec<String> = s
            .known_customers(["cus_a", "nope", "cus_d", "Cus_e"])
            .unwrap()
            .into_iter()
            .collect();
        known.sort();
        let mut seen = s.walk_seen().unwrap();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        (
            known,
            seen,
            s.confirmed_present().unwrap(),
            s.unseen_live_customers(10).unwrap(),
            s.unseen_live_customers(1).unwrap(),
            s.rolling_candidates(MID_APRIL, 10).unwrap(),
            s.rolling_candidates(MID_APRIL, 1).unwrap(),
            s.rolling_counts(MID_APRIL).unwrap(),
        )
    });
    let top = "2025-03-15T00:00:00.000000Z";
    m.same(|s| {
        let mut between = Vec::new();
        for lower in [
            Bound::Unbounded,
            Bound::Included("2025-03-01T00:00:00.000000Z"),
            Bound::Excluded("2025-03-01T00:00:00.000000Z"),
        ] {
            let mut ids = s.live_transactions_between(lower, MID_APRIL).unwrap();
            ids.sort();
            between.push(ids);
        }
        (
            s.live_transactions_before(MID_APRIL, top).unwrap(),
            between,
            s.lacking_details().unwrap(),
            s.details_candidates(10).unwrap(),
            s.details_candidates(2).unwrap(),
            s.not_reread_since(MID_APRIL, Duration::from_secs(86_400))
                .unwrap(),
            s.feed_watermark().unwrap(),
            s.feed_rolling().unwrap(),
            serde_json::to_value(s.status(5).unwrap().totals).unwrap(),
        )
    });
    // Values these answers were checked by (SQLite's, which PostgreSQL equals).
    let s = &m.pg;
    assert_eq!(
        s.rolling_candidates(MID_APRIL, 10).unwrap(),
        ["cus_c", "Cus_e"],
        "never read first, then the longest unread"
    );
    assert_eq!(
        s.unseen_live_customers(10).unwrap(),
        ["Cus_e", "cus_c", "cus_f"],
        "byte order, as SQLite's, whatever the database's collation"
    );
    assert_eq!(
        s.details_candidates(10).unwrap(),
        ["cus_c", "cus_f", "Cus_e", "cus_b"]
    );
    assert_eq!(s.live_transactions_before(MID_APRIL, top).unwrap(), (3, 2));
}

#[test]
fn status_and_health_read_alike_on_an_empty_and_a_used_mirror() {
    let mut m = Both::new();
    let empty = |s: &mut Store| {
        let r = s.status(5).unwrap();
        (
            r.last_success_at,
            r.seconds_since_success,
            r.walk_in_progress,
            r.writer,
            serde_json::to_value(r.totals).unwrap(),
            r.runs.len(),
            r.route_budgets,
            r.transactions_source,
            s.not_reread_by_last_success(Duration::from_secs(3600))
                .unwrap(),
        )
    };
    m.same(empty);
    m.same(|s| {
        let r = s.start_run(RunKind::Backfill).unwrap();
        s.finish_run(r, Outcome::Succeeded, None, 1, 0).unwrap();
        let r = s.start_run(RunKind::Sync).unwrap();
        s.begin_walk(&walk(r, false)).unwrap();
        let report = s.status(5).unwrap();
        (
            report.last_success_at.is_some(),
            report.seconds_since_success.map(|s| s < 60),
            report.walk_in_progress,
            report.writer,
            s.not_reread_by_last_success(Duration::from_secs(3600))
                .unwrap(),
            run_shape(s),
        )
    });
    let p = m.pg.status(5).unwrap();
    assert!(p.database.contains("schema t_"), "{}", p.database);
    let health = m.pg.health_facts().unwrap();
    assert_eq!(health.last_success_at, p.last_success_at);
    assert_eq!(health.last_run, Some(("succeeded".to_string(), None)));
}

#[test]
fn status_names_the_writer_holding_the_advisory_lock() {
    let schema = Schema::new();
    let mut p = PgStore::open(&schema.0, T).unwrap();
    let r = p.start_run(RunKind::Sync).unwrap();
    p.begin_walk(&walk(r, false)).unwrap();
    let stopped = p.status(5).unwrap();
    assert_eq!(stopped.writer, None);
    assert!(
        stopped
            .walk_in_progress
            .as_deref()
            .unwrap()
            .starts_with("stopped: backfill walk of run"),
        "{stopped:?}"
    );
    let _lock = super::AdvisoryLock::acquire(&schema.0, "sync", false).unwrap();
    let running = p.status(5).unwrap();
    let writer = running.writer.clone().expect("the lock's holder");
    assert!(writer.contains("lomi-sync sync"), "{writer}");
    assert!(
        running
            .walk_in_progress
            .as_deref()
            .unwrap()
            .starts_with("running: "),
        "{running:?}"
    );
}

fn budget(route: &str, remaining: Option<i64>, rate_limited: i64) -> RouteBudgetRow {
    RouteBudgetRow {
        route: route.into(),
        limit: remaining.map(|_| 5000),
        remaining,
        reset_at: remaining.map(|_| "2026-11-30T03:00:00Z".into()),
        rate_limited,
    }
}

#[test]
fn route_budgets_keep_the_latest_budget_and_sum_the_recent_429s_alike() {
    let mut m = Both::new();
    let rows = m.same(|s| {
        let r1 = s.start_run(RunKind::Backfill).unwrap();
        s.note_route_budgets(
            r1,
            &[
                budget("GET /customers", Some(10), 2),
                budget("GET /customers/{id}", Some(7), 1),
            ],
        )
        .unwrap();
        let r2 = s.start_run(RunKind::Sync).unwrap();
        s.note_route_budgets(
            r2,
            &[
                budget("GET /customers", Some(4000), 0),
                budget("GET /customers/{id}", None, 3),
            ],
        )
        .unwrap();
        // Noted again: replaced, not added.
        s.note_route_budgets(r2, &[budget("GET /customers/{id}", None, 3)])
            .unwrap();
        (
            s.route_budgets(10).unwrap(),
            s.route_budgets(1).unwrap(),
            s.status(10).unwrap().route_budgets,
        )
    });
    assert_eq!(
        rows.0,
        vec![
            RouteBudgetRow {
                rate_limited: 2,
                ..budget("GET /customers", Some(4000), 0)
            },
            RouteBudgetRow {
                rate_limited: 4,
                ..budget("GET /customers/{id}", Some(7), 0)
            },
        ]
    );
    // Only the last run's 429s.
    let last: Vec<i64> = rows.1.iter().map(|r| r.rate_limited).collect();
    assert_eq!(last, [0, 3]);
    assert_eq!(rows.2, rows.0, "status shows the runs it lists");
}

fn delivery(id: &str, row: serde_json::Value) -> WebhookBatch {
    WebhookBatch {
        delivery: Delivery {
            id: id.into(),
            event: "PAYMENT_SUCCEEDED".into(),
            received_at: crate::store::now(),
        },
        row: Transaction::from_value(row).unwrap(),
        revalidated: false,
        gone: false,
        customers: Vec::new(),
        gone_customers: Vec::new(),
    }
}

/// The webhook decisions that write nothing but their record (duplicate, stale, a
/// customer to read, a tie to revalidate) are the same in both stores.
#[test]
fn webhook_deliveries_are_judged_alike_inside_a_savepoint() {
    let mut m = Both::new();
    m.seed(SEED);
    m.seed(
        "UPDATE transactions SET updated_at = '2025-05-01T00:00:00.000000Z' WHERE transaction_id = 't1';
         INSERT INTO webhook_events (id, event, received_at, applied_at, outcome) VALUES
          ('evt_old', 'PAYMENT_SUCCEEDED', '2020-01-01T00:00:00.000000Z', '2020-01-01T00:00:00.000000Z', 'applied');",
    );
    let stale = delivery(
        "evt_stale",
        serde_json::json!({"transaction_id": "t1", "customer_id": "cus_a", "status": "pending",
                           "updated_at": "2025-04-01T00:00:00.000000Z"}),
    );
    let tie = delivery(
        "evt_tie",
        serde_json::json!({"transaction_id": "t1", "customer_id": "cus_a", "status": "failed",
                           "updated_at": "2025-05-01T00:00:00.000000Z"}),
    );
    let stranger = delivery(
        "evt_new",
        serde_json::json!({"transaction_id": "t9", "customer_id": "cus_zz", "status": "completed",
                           "updated_at": "2025-05-01T00:00:00.000000Z"}),
    );
    let got = m.same(|s| {
        s.begin().unwrap();
        let answers = [&stale, &stale, &tie, &stranger].map(|w| s.apply_webhook_open(w).unwrap());
        s.commit().unwrap();
        (
            answers,
            s.webhook_seen("evt_stale").unwrap(),
            s.webhook_seen("evt_tie").unwrap(),
            // Pruned by the next delivery recorded: received more than 48 h ago.
            s.webhook_seen("evt_old").unwrap(),
        )
    });
    use WebhookResult::*;
    assert_eq!(
        got,
        (
            [Stale, Duplicate, Revalidate, NeedCustomer],
            true,
            false,
            false
        )
    );
    let outcome: String = pg_store(&m.pg)
        .with(|c| {
            c.query_one(
                "SELECT outcome FROM webhook_events WHERE id = 'evt_stale'",
                &[],
            )
        })
        .unwrap()
        .get(0);
    assert_eq!(outcome, "stale");
}

/// The engine opens its stores and makes the planner's reads inside the async engine:
/// opening and each call run off the runtime, where the blocking client may start its
/// own (inside one it panics).
#[tokio::test]
async fn the_reads_work_from_inside_the_async_engine() {
    let schema = Schema::new();
    let p = PgStore::open(&schema.0, T).unwrap();
    let r = p.start_run(RunKind::Sync).unwrap();
    assert!(p.plan_snapshot(MID_APRIL, MID_APRIL).unwrap().is_empty());
    assert_eq!(p.health_facts().unwrap().last_run, None);
    assert_eq!(p.status(3).unwrap().runs[0].id, r);
    assert!(p.webhook_seen("evt").is_ok());
    drop(p);
}

/// A run that failed is recorded from a connection of its own, by its location.
#[test]
fn a_failed_run_is_recorded_through_its_location() {
    let schema = Schema::new();
    let at = crate::store::Location::Postgres(schema.0.clone());
    let f = RunFailure {
        run_id: None,
        kind: RunKind::Sync,
        started_at: "2025-06-02T08:00:00.000000Z".into(),
        outcome: Outcome::Interrupted,
        error: "stopped by a signal".into(),
        resume_at: None,
        requests: 3,
        retries: 0,
    };
    let id = crate::store::record_unsuccessful_run(&at, T, &f).unwrap();
    let s = Store::open_read_only(&at, T).unwrap();
    let run = &s.status(1).unwrap().runs[0];
    assert_eq!(
        (run.id, run.outcome.as_str(), run.error.as_deref()),
        (id, "interrupted", Some("stopped by a signal"))
    );
    assert_eq!(run.started_at, f.started_at);
    assert_eq!(run.requests, 3);
}
