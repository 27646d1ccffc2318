//! The PostgreSQL store's batch writes against a real server (`LOMI_TEST_PG_URL`, set by
//! `scripts/with-postgres`), each test in a schema of its own: the same batches through
//! the SQLite store and this one give the same counts and the same change rows; a
//! batch applied again writes no row; amounts stay exact.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::super::{PgStore, PgTarget};
use crate::api::model::{Customer, Transaction};
use crate::store::{Applied, Batch, Observed, RunKind, SeenIn, SqliteStore, StoreError};

/// A mirror in a fresh schema of the test server, dropped with it.
pub(crate) struct TestPg {
    pub store: PgStore,
    schema: String,
}

impl TestPg {
    /// Connects to `LOMI_TEST_PG_URL` (with `LOMI_TEST_PG_PASSWORD`) in a new schema.
    /// Panics, saying how to set it, when the variable is unset: never a skipped test.
    pub fn new() -> TestPg {
        let url = std::env::var("LOMI_TEST_PG_URL").expect(
            "LOMI_TEST_PG_URL is unset: these tests need a PostgreSQL server; run them under \
             scripts/with-postgres, or export LOMI_TEST_PG_URL and LOMI_TEST_PG_PASSWORD",
        );
        let password = std::env::var("LOMI_TEST_PG_PASSWORD").ok();
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!(
            "t_apply_{}_{}_{}",
            std::process::id(),
            nanos,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let target = PgTarget::new(&url, &schema, password.as_deref()).unwrap();
        let store = PgStore::open(&target, Duration::from_secs(10)).unwrap();
        TestPg { store, schema }
    }

    /// A `sync_runs` row to write batches under (the runs are another file's).
    pub fn run(&self) -> i64 {
        self.store
            .with(|c| {
                c.query_one(
                    "INSERT INTO sync_runs (kind, started_at, outcome)
                     VALUES ('sync', now(), 'running') RETURNING id",
                    &[],
                )
                .map(|r| r.get(0))
            })
            .unwrap()
    }

    /// The rows of `sql`, each column as text (NULL as `None`).
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.store
            .with(|c| c.query(sql, &[]))
            .unwrap()
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
            .collect()
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        let drop = format!("DROP SCHEMA {} CASCADE", self.schema);
        let _ = self.store.with(|c| c.batch_execute(&drop));
    }
}

fn customer(text: &str) -> Customer {
    Customer::from_value(serde_json::from_str(text).unwrap()).unwrap()
}

fn tx(text: &str) -> Transaction {
    Transaction::from_value(serde_json::from_str(text).unwrap()).unwrap()
}

fn full(text: &str) -> Observed {
    Observed {
        customer: customer(text),
        partial: false,
    }
}

fn item(text: &str) -> Observed {
    Observed {
        customer: customer(text),
        partial: true,
    }
}

/// A change row as both stores give it: entity, ids, kind, and `fields` parsed (jsonb
/// orders keys its own way).
type ChangeSeen = (String, String, String, String, Option<Value>);

fn parsed(fields: Option<String>) -> Option<Value> {
    fields.map(|f| serde_json::from_str(&f).unwrap())
}

fn sqlite_changes(s: &SqliteStore) -> Vec<ChangeSeen> {
    let mut stmt = s
        .conn()
        .prepare("SELECT entity, entity_id, customer_id, kind, fields FROM changes ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            parsed(r.get(4)?),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn pg_changes(pg: &TestPg) -> Vec<ChangeSeen> {
    pg.rows("SELECT entity, entity_id, customer_id, kind, fields::text FROM changes ORDER BY id")
        .into_iter()
        .map(|r| {
            let s = |i: usize| r[i].clone().unwrap();
            (s(0), s(1), s(2), s(3), parsed(r[4].clone()))
        })
        .collect()
}

/// The rounds both stores go through: a first load (with a partial list item), the
/// same again, changes (an update, a partial item over known metadata, a vanished row
/// of a complete list, an incomplete list), restores and a gone customer, feed rows
/// with their extra columns and a gone transaction, and a first load's feed stage
/// merged at its pass's end.
fn rounds() -> Vec<Batch> {
    let c1 = r#"{"id": "c1", "name": "Ada", "email": "a@x", "metadata": {"vip": true},
                 "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"}"#;
    let c2 = r#"{"id": "c2", "name": "Bo", "metadata": null,
                 "created_at": "2025-01-02T00:00:00Z", "updated_at": "2025-01-02T00:00:00Z"}"#;
    let t1 = r#"{"transaction_id": "t1", "gross_amount": 10.50, "currency_code": "USD",
                 "status": "pending", "created_at": "2025-01-03T00:00:00.123456Z"}"#;
    let t2 = r#"{"transaction_id": "t2", "gross_amount": "7", "currency_code": "XOF",
                 "status": "completed", "created_at": "2025-01-04T00:00:00Z"}"#;
    let t3 = r#"{"transaction_id": "t3", "gross_amount": 1, "currency_code": "EUR",
                 "status": "completed", "created_at": "2025-01-05T00:00:00Z"}"#;
    let first = Batch {
        customers: vec![full(c1), item(c2)],
        transactions: vec![
            ("c1".into(), vec![tx(t1), tx(t2)]),
            ("c2".into(), vec![tx(t3)]),
        ],
        seen: vec![("c1".into(), SeenIn::Confirm)],
        pages: 1,
        initial_load: true,
        ..Batch::default()
    };
    let again = Batch {
        initial_load: false,
        ..first.clone()
    };
    let t1_done = r#"{"transaction_id": "t1", "gross_amount": 10.50, "currency_code": "USD",
                 "status": "completed", "created_at": "2025-01-03T00:00:00.123456Z"}"#;
    let changed = Batch {
        customers: vec![
            full(&c1.replace("Ada", "Ada L")),
            item(r#"{"id": "c2", "name": "Bo B", "metadata": null}"#),
            // The same customer twice in one batch: compared with what the first wrote.
            full(&c1.replace("Ada", "Ada K")),
        ],
        transactions: vec![("c1".into(), vec![tx(t1_done)]), ("c2".into(), vec![])],
        incomplete: vec!["c2".into()],
        ..Batch::default()
    };
    let restored = Batch {
        transactions: vec![("c1".into(), vec![tx(t1_done), tx(t2)])],
        gone: vec!["c2".into(), "c2".into()],
        ..Batch::default()
    };
    let t9 = r#"{"transaction_id": "t9", "customer_id": "c1", "gross_amount": "25.00",
                 "currency_code": "USD", "fee_amount": "0.75", "net_amount": "24.25",
                 "transaction_type": "payment", "status": "completed",
                 "created_at": "2025-01-06T00:00:00Z", "updated_at": "2025-01-06T00:00:01Z"}"#;
    let t2_feed = r#"{"transaction_id": "t2", "customer_id": "c1", "gross_amount": "7",
                 "currency_code": "XOF", "status": "completed", "fee_amount": "0",
                 "created_at": "2025-01-04T00:00:00Z"}"#;
    let feed = Batch {
        customers: vec![full(c2)],
        feed_rows: vec![tx(t9), tx(t2_feed)],
        gone_transactions: vec!["t3".into()],
        ..Batch::default()
    };
    // A later per-customer read of t2 lacks the feed's fields: kept, not a change.
    let per_customer = Batch {
        transactions: vec![("c1".into(), vec![tx(t1_done), tx(t2), tx(t9)])],
        ..Batch::default()
    };
    let staged = |rows: Vec<Transaction>, watermark: Option<&str>| Batch {
        feed_rows: rows,
        initial_load: true,
        feed_watermark: watermark.map(String::from),
        ..Batch::default()
    };
    let t10 = r#"{"transaction_id": "t10", "customer_id": "c2", "gross_amount": "3.5",
                  "currency_code": "USD", "status": "pending", "created_at": "2025-01-07T00:00:00Z"}"#;
    let t10b = t10.replace("pending", "completed");
    vec![
        first,
        again,
        changed,
        restored,
        feed,
        per_customer,
        staged(vec![tx(t10), tx(t9)], None),
        staged(vec![tx(&t10b)], Some("2025-01-07T00:00:00.000000Z")),
    ]
}

/// The same batches through both stores: equal counts, batch by batch, and equal
/// change rows (kinds, ids, `fields`), in the same order.
#[test]
fn the_same_batches_give_the_same_counts_and_change_rows_in_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let mut lite = SqliteStore::open(&dir.path().join("m.db"), Duration::from_secs(5)).unwrap();
    let mut pg = TestPg::new();
    let (lite_run, pg_run) = (lite.start_run(RunKind::Backfill).unwrap(), pg.run());
    for (i, b) in rounds().into_iter().enumerate() {
        let a = lite
            .apply(&Batch {
                run_id: lite_run,
                ..b.clone()
            })
            .unwrap();
        let p = pg
            .store
            .apply(&Batch {
                run_id: pg_run,
                ..b
            })
            .unwrap();
        assert_eq!(p, a, "batch {i}");
    }
    let changes = pg_changes(&pg);
    assert_eq!(changes, sqlite_changes(&lite));
    assert!(changes.len() > 8, "{changes:?}");
    // The rows agree too: values, deletions, `raw` (as parsed JSON).
    let lite_rows: Vec<(String, String, bool, Value)> = {
        let mut stmt = lite
            .conn()
            .prepare(
                "SELECT customer_id, transaction_id, deleted_at IS NOT NULL, raw FROM transactions
                 ORDER BY customer_id, transaction_id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            let raw: String = r.get(3)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                serde_json::from_str(&raw).unwrap(),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let pg_rows: Vec<(String, String, bool, Value)> = pg
        .rows(
            "SELECT customer_id, transaction_id, (deleted_at IS NOT NULL)::text, raw::text
             FROM transactions ORDER BY customer_id, transaction_id",
        )
        .into_iter()
        .map(|r| {
            let s = |i: usize| r[i].clone().unwrap();
            (
                s(0),
                s(1),
                s(2) == "true",
                serde_json::from_str(&s(3)).unwrap(),
            )
        })
        .collect();
    assert_eq!(pg_rows, lite_rows);
    // The run's counters are the batches' sums.
    let pages = pg.rows(&format!(
        "SELECT pages::text FROM sync_runs WHERE id = {pg_run}"
    ));
    assert_eq!(pages, [[Some("2".to_string())]]);
}

/// Every row's `xmin` and the count of change rows: equal before and after a batch
/// means the batch wrote no row.
fn footprint(pg: &TestPg) -> Vec<Vec<Option<String>>> {
    pg.rows(
        "SELECT 'c', id, xmin::text FROM customers
         UNION ALL SELECT 't', transaction_id, xmin::text FROM transactions
         UNION ALL SELECT 'n', count(*)::text, '' FROM changes
         ORDER BY 1, 2",
    )
}

/// A backfill's batch applied again (a run over an unchanged source) writes no
/// customer, transaction or change row, though `raw` came back from jsonb in another
/// key order and spacing; a new value then makes exactly one `updated` row.
#[test]
fn a_batch_applied_again_writes_no_row_and_a_change_one_updated_row() {
    let mut pg = TestPg::new();
    let run_id = pg.run();
    let mut b = rounds().remove(0);
    b.run_id = run_id;
    let n = pg.store.apply(&b).unwrap();
    assert_eq!((n.customers_inserted, n.transactions_inserted), (2, 3));
    assert!(
        pg_changes(&pg).is_empty(),
        "the initial load records no change"
    );
    let before = footprint(&pg);
    b.initial_load = false;
    let n = pg.store.apply(&b).unwrap();
    assert_eq!(n.rows_written(), 0, "{n:?}");
    assert_eq!(footprint(&pg), before);
    b.customers[0].customer = customer(
        r#"{"id": "c1", "name": "Ada", "email": "a@y", "metadata": {"vip": true},
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"}"#,
    );
    let n = pg.store.apply(&b).unwrap();
    assert_eq!(n.rows_written(), 1, "{n:?}");
    let fields: Value = serde_json::json!({"email": {"old": "a@x", "new": "a@y"}});
    assert_eq!(
        pg_changes(&pg),
        [(
            "customer".into(),
            "c1".into(),
            "c1".into(),
            "updated".into(),
            Some(fields)
        )]
    );
}

/// Amounts are `numeric` from the exact text (`10.50` keeps its digits) beside the
/// integer minor units; timestamps keep their microseconds; the feed's fee and net too.
#[test]
fn amounts_and_timestamps_are_stored_exactly() {
    let mut pg = TestPg::new();
    let run_id = pg.run();
    for b in rounds().into_iter().take(5) {
        pg.store.apply(&Batch { run_id, ..b }).unwrap();
    }
    let rows = pg.rows(
        "SELECT transaction_id, gross_amount::text, amount_minor::text, fee_amount::text,
                fee_minor::text, net_amount::text, ts_text(created_at)
         FROM transactions WHERE transaction_id IN ('t1', 't9') ORDER BY 1",
    );
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        rows,
        [
            vec![
                some("t1"),
                some("10.50"),
                some("1050"),
                None,
                None,
                None,
                some("2025-01-03T00:00:00.123456Z")
            ],
            vec![
                some("t9"),
                some("25.00"),
                some("2500"),
                some("0.75"),
                some("75"),
                some("24.25"),
                some("2025-01-06T00:00:00.000000Z")
            ],
        ]
    );
}

/// A feed row whose customer the mirror lacks is refused, naming the customer, and
/// nothing of its batch is written.
#[test]
fn a_feed_row_without_its_customer_is_an_orphan() {
    let mut pg = TestPg::new();
    let run_id = pg.run();
    let b = Batch {
        run_id,
        customers: vec![full(r#"{"id": "c1"}"#)],
        feed_rows: vec![tx(r#"{"transaction_id": "t1", "customer_id": "nobody"}"#)],
        ..Batch::default()
    };
    let err = pg.store.apply(&b).unwrap_err();
    assert!(
        matches!(&err, StoreError::OrphanTransaction { customer_id } if customer_id == "nobody"),
        "{err}"
    );
    assert!(pg.rows("SELECT id FROM customers").is_empty());
    assert_eq!(
        pg.store.apply(&Batch::default()).ok(),
        Some(Applied::default())
    );
}

/// A webhook delivery's batch (`apply_in` with the envelope's id, the path
/// `pg/webhook.rs` writes through): its change rows are `source = 'webhook'` with the
/// delivery's id and no run, and no run's counters move.
#[test]
fn a_webhook_batch_records_changes_of_no_run() {
    let mut pg = TestPg::new();
    let run_id = pg.run();
    let customers = vec![full(r#"{"id": "c1"}"#)];
    pg.store
        .apply(&Batch {
            run_id,
            customers,
            ..Batch::default()
        })
        .unwrap();
    let b = Batch {
        run_id,
        feed_rows: vec![tx(
            r#"{"transaction_id": "t1", "customer_id": "c1", "status": "completed"}"#,
        )],
        ..Batch::default()
    };
    let n = pg
        .store
        .with(|c| {
            c.batch_execute("BEGIN")?;
            let n = super::apply_in(c, &b, Some("evt_1"))?;
            c.batch_execute("COMMIT")?;
            Ok::<_, StoreError>(n)
        })
        .unwrap();
    assert_eq!(n.transactions_inserted, 1);
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        pg.rows(
            "SELECT entity, kind, source, webhook_event, run_id::text FROM changes ORDER BY id"
        ),
        [
            vec![
                some("customer"),
                some("created"),
                some("poll"),
                None,
                Some(run_id.to_string())
            ],
            vec![
                some("transaction"),
                some("created"),
                some("webhook"),
                some("evt_1"),
                None
            ],
        ]
    );
    let counts = pg.rows(&format!(
        "SELECT customers_inserted::text, transactions_inserted::text FROM sync_runs WHERE id = {run_id}"
    ));
    assert_eq!(counts, [[some("1"), some("0")]]);
}

/// Which customers lack details, in both stores, after each kind of observation, for
/// customers with and without an `updated_at` (NOTES.md: list rows may lack fields): a
/// customer never read lacks them, a read one does not until it changes, whether or not
/// it has an `updated_at` to be known "as of".
#[test]
fn details_are_pending_alike_with_or_without_updated_at() {
    let dir = tempfile::tempdir().unwrap();
    let mut lite = SqliteStore::open(&dir.path().join("m.db"), Duration::from_secs(5)).unwrap();
    let mut pg = TestPg::new();
    let (lite_run, pg_run) = (lite.start_run(RunKind::Sync).unwrap(), pg.run());
    let mut step = |customers: Vec<Observed>| {
        let batch = Batch {
            customers,
            ..Batch::default()
        };
        let (lite_batch, pg_batch) = (
            Batch {
                run_id: lite_run,
                ..batch.clone()
            },
            Batch {
                run_id: pg_run,
                ..batch
            },
        );
        lite.apply(&lite_batch).unwrap();
        pg.store.apply(&pg_batch).unwrap();
        let a = (
            lite.lacking_details().unwrap(),
            lite.details_candidates(10).unwrap(),
        );
        let p = &pg.store;
        let p = (
            p.lacking_details().unwrap(),
            p.details_candidates(10).unwrap(),
        );
        assert_eq!(p, a, "PostgreSQL against SQLite");
        a
    };
    let (a_item, n_item) = (
        r#"{"id":"a","created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","metadata":null}"#,
        r#"{"id":"n","created_at":"2025-02-01T00:00:00Z","metadata":null}"#,
    );
    // Listed, metadata hidden: neither is known, with an `updated_at` or without.
    assert_eq!(
        step(vec![item(a_item), item(n_item)]),
        (2, vec!["n".into(), "a".into()])
    );
    // `n` read whole: known, though it has no `updated_at`; listed again, still known.
    let n_read = r#"{"id":"n","created_at":"2025-02-01T00:00:00Z","metadata":{"k":1}}"#;
    assert_eq!(step(vec![full(n_read)]), (1, vec!["a".into()]));
    assert_eq!(step(vec![item(n_item)]), (1, vec!["a".into()]));
    // `n` gains an `updated_at`: changed, so pending again, ahead of the never-read `a`.
    let n_changed = r#"{"id":"n","created_at":"2025-02-01T00:00:00Z","updated_at":"2025-03-01T00:00:00Z","metadata":null}"#;
    assert_eq!(
        step(vec![item(n_changed)]),
        (2, vec!["n".into(), "a".into()])
    );
}
