//! The feed's columns (migration 8, issue 14): an existing mirror upgrades keeping its
//! rows and views; feed rows fill the new columns; a later read through the
//! per-customer endpoint (which lacks those fields) neither blanks them nor counts as a
//! change; changes of the new fields are recorded; the views sum net revenue and fees
//! where known.

use std::time::Duration;

use rusqlite::Connection;
use rusqlite::types::Value as Sql;
use serde_json::{Value, json};

use super::{Batch, Observed, RunKind, SqliteStore, migrations};
use crate::api::model::{Customer, Transaction};

fn rows(conn: &Connection, sql: &str) -> Vec<Vec<Sql>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get::<_, Sql>(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

const OLD_REVENUE: &str = "SELECT customer_id, customer_name, currency_code, transactions, completed_count,
    completed_minor, completed_total, first_payment_at, last_payment_at FROM customer_revenue ORDER BY 1, 3";
const OLD_DAILY: &str = "SELECT day, currency_code, completed_count, revenue_minor, revenue FROM daily_revenue ORDER BY 1, 2";
const FEED_COLUMNS: &str =
    "SELECT transaction_type, discount_amount, discount_minor, fee_amount, fee_minor,
    net_amount, net_minor, updated_at FROM transactions WHERE transaction_id = ?1";

#[test]
fn a_mirror_at_the_previous_version_upgrades_with_its_rows_and_views() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut old = Connection::open(&path).unwrap();
    migrations().to_version(&mut old, 6).unwrap();
    old.execute_batch(
        "INSERT INTO customers (rowid, id, name, first_seen_at, synced_at, raw) VALUES
             (1, 'cus_a', 'Awa', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', '{\"id\":\"cus_a\"}');
         INSERT INTO transactions (customer_seq, transaction_id, customer_id, gross_amount, amount_minor, currency_code,
                                   status, created_at, first_seen_at, synced_at, raw) VALUES
             (1, 'tx_1', 'cus_a', '25000', 25000, 'XOF', 'completed', '2025-03-01T09:00:00.000000Z',
              '2025-03-01T09:00:01.000000Z', '2025-03-01T09:00:01.000000Z', '{\"transaction_id\":\"tx_1\"}'),
             (1, 'tx_2', 'cus_a', '10.5', 1050, 'USD', 'completed', '2025-03-02T09:00:00.000000Z',
              '2025-03-02T09:00:01.000000Z', '2025-03-02T09:00:01.000000Z', '{}');",
    )
    .unwrap();
    let before = [rows(&old, OLD_REVENUE), rows(&old, OLD_DAILY)];
    drop(old);

    let store = SqliteStore::open(&path, Duration::from_secs(5)).unwrap();
    let conn = store.conn();
    assert_eq!([rows(conn, OLD_REVENUE), rows(conn, OLD_DAILY)], before);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 14, "the migrations list's length");
    // Rows from before the feed know none of its fields: NULL, never zero.
    let mut stmt = conn.prepare(FEED_COLUMNS).unwrap();
    let feed: Vec<Sql> = stmt
        .query_row(["tx_1"], |r| (0..8).map(|i| r.get(i)).collect())
        .unwrap();
    assert!(feed.iter().all(|v| *v == Sql::Null), "{feed:?}");
    let net = rows(
        conn,
        "SELECT completed_net_count, completed_net_minor, completed_net_total, completed_fees_total
         FROM customer_revenue WHERE currency_code = 'XOF'",
    );
    assert_eq!(net, [[Sql::Integer(0), Sql::Null, Sql::Null, Sql::Null]]);
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

fn feed_row(status: &str, updated: &str, fee: &str, net: &str) -> Transaction {
    let raw = format!(
        r#"{{"transaction_id":"tx_9","organization_id":"org_1","customer_id":"cus_a","transaction_type":"payment","status":"{status}","description":"Commande","gross_amount":125.5,"discount_amount":0,"fee_amount":{fee},"net_amount":{net},"currency_code":"USD","created_at":"2025-06-01T10:00:00.12345+00:00","updated_at":"{updated}"}}"#
    );
    let rv: &serde_json::value::RawValue = serde_json::from_str(&raw).unwrap();
    Transaction::from_raw(rv).unwrap()
}

fn per_customer_row(status: &str) -> Transaction {
    Transaction::from_value(json!({"transaction_id": "tx_9", "description": "Commande",
        "gross_amount": 125.5, "currency_code": "USD", "status": status,
        "created_at": "2025-06-01T10:00:00.12345+00:00"}))
    .unwrap()
}

fn batch(store: &SqliteStore, t: Transaction) -> Batch {
    let customer = Customer::from_value(json!({"id": "cus_a", "name": "Awa"})).unwrap();
    Batch {
        run_id: store.start_run(RunKind::Sync).unwrap(),
        customers: vec![Observed {
            customer,
            partial: false,
        }],
        transactions: vec![("cus_a".into(), vec![t])],
        ..Batch::default()
    }
}

fn feed_columns(store: &SqliteStore) -> Vec<Sql> {
    store
        .conn()
        .query_row(FEED_COLUMNS, ["tx_9"], |r| {
            (0..8).map(|i| r.get(i)).collect()
        })
        .unwrap()
}

fn changes(store: &SqliteStore) -> Vec<(String, Value)> {
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT kind, coalesce(fields, 'null') FROM changes
             WHERE entity = 'transaction' AND kind <> 'created' ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let fields: String = r.get(1)?;
        Ok((r.get(0)?, serde_json::from_str(&fields).unwrap()))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn feed_values_survive_a_later_read_through_the_per_customer_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("m.db"), Duration::from_secs(5)).unwrap();
    let row = feed_row(
        "pending",
        "2025-06-01T10:00:00.12345+00:00",
        "3.64",
        "121.86",
    );
    store.apply(&batch(&store, row)).unwrap();
    let known = vec![
        Sql::Text("payment".into()),
        Sql::Text("0".into()),
        Sql::Integer(0),
        Sql::Text("3.64".into()),
        Sql::Integer(364),
        Sql::Text("121.86".into()),
        Sql::Integer(12186),
        Sql::Text("2025-06-01T10:00:00.123450Z".into()),
    ];
    assert_eq!(feed_columns(&store), known);
    let raw_before: String = store
        .conn()
        .query_row("SELECT raw FROM transactions", [], |r| r.get(0))
        .unwrap();

    // The same transaction through the per-customer endpoint: nothing changed.
    let n = store
        .apply(&batch(&store, per_customer_row("pending")))
        .unwrap();
    assert_eq!((n.transactions_updated, n.transactions_inserted), (0, 0));
    assert_eq!(feed_columns(&store), known);
    assert_eq!(changes(&store), []);

    // Its status moved: only the status is a change; the feed's values stay.
    let n = store
        .apply(&batch(&store, per_customer_row("completed")))
        .unwrap();
    assert_eq!(n.transactions_updated, 1);
    assert_eq!(feed_columns(&store), known);
    assert_eq!(
        changes(&store),
        [(
            "updated".to_string(),
            json!({"status": {"old": "pending", "new": "completed"}})
        )]
    );
    let raw: Value = serde_json::from_str(
        &store
            .conn()
            .query_row::<String, _, _>("SELECT raw FROM transactions", [], |r| r.get(0))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        raw["fee_amount"],
        json!(3.64),
        "raw keeps the feed's fields"
    );
    assert_eq!(raw["status"], "completed");
    assert_ne!(raw.to_string(), raw_before);
}

#[test]
fn changes_of_the_feed_fields_are_recorded_and_the_views_sum_net_and_fees() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("m.db"), Duration::from_secs(5)).unwrap();
    let first = feed_row(
        "completed",
        "2025-06-01T10:00:00.12345+00:00",
        "3.64",
        "121.86",
    );
    store.apply(&batch(&store, first)).unwrap();
    let daily = "SELECT completed_count, revenue, net_count, net_revenue_minor, net_revenue, fees_minor, fees
                 FROM daily_revenue WHERE currency_code = 'USD'";
    assert_eq!(
        rows(store.conn(), daily),
        [[
            Sql::Integer(1),
            Sql::Text("125.50".into()),
            Sql::Integer(1),
            Sql::Integer(12186),
            Sql::Text("121.86".into()),
            Sql::Integer(364),
            Sql::Text("3.64".into()),
        ]]
    );
    let revenue = "SELECT completed_net_count, completed_net_total, completed_fees_minor, completed_fees_total
                   FROM customer_revenue WHERE currency_code = 'USD'";
    assert_eq!(
        rows(store.conn(), revenue),
        [[
            Sql::Integer(1),
            Sql::Text("121.86".into()),
            Sql::Integer(364),
            Sql::Text("3.64".into()),
        ]]
    );
    // A later feed row: refunded, fee returned, a new `updated_at`.
    let later = feed_row("refunded", "2025-06-03T08:00:00+00:00", "0", "125.5");
    let n = store.apply(&batch(&store, later)).unwrap();
    assert_eq!(n.transactions_updated, 1);
    assert_eq!(
        changes(&store),
        [(
            "updated".to_string(),
            json!({
                "status": {"old": "completed", "new": "refunded"},
                "fee_amount": {"old": 3.64, "new": 0},
                "net_amount": {"old": 121.86, "new": 125.5},
                "updated_at": {"old": "2025-06-01T10:00:00.12345+00:00", "new": "2025-06-03T08:00:00+00:00"},
            })
        )]
    );
    let cols = feed_columns(&store);
    assert_eq!(cols[4], Sql::Integer(0));
    assert_eq!(cols[7], Sql::Text("2025-06-03T08:00:00.000000Z".into()));
    let live = "SELECT transaction_type, net_minor, updated_at FROM live_transactions";
    assert_eq!(
        rows(store.conn(), live),
        [[
            Sql::Text("payment".into()),
            Sql::Integer(12550),
            Sql::Text("2025-06-03T08:00:00.000000Z".into()),
        ]]
    );
}

/// The rolling re-read's state (migration 12): a pass over the whole feed starts a
/// cycle, a slice moves its end and keeps its start, and the counts that size a slice
/// are of live rows below each bound.
#[test]
fn the_rolling_state_moves_with_its_batches_and_counts_rows_below_its_bounds() {
    use super::FeedRolling;
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("m.db"), Duration::from_secs(5)).unwrap();
    assert_eq!(store.feed_rolling().unwrap(), FeedRolling::default());
    let started = FeedRolling {
        end: None,
        since: Some("2026-11-30T06:00:00.000000Z".into()),
    };
    let mut pass = batch(
        &store,
        feed_row("completed", "2025-06-02T00:00:00Z", "1", "124.5"),
    );
    pass.feed_rows = std::mem::take(&mut pass.transactions).remove(0).1;
    pass.feed_watermark = Some("2025-06-01T10:00:00.123450Z".into());
    pass.feed_rolling = Some(started.clone());
    store.apply(&pass).unwrap();
    assert_eq!(store.feed_rolling().unwrap(), started);
    let slice = Batch {
        run_id: store.start_run(RunKind::Sync).unwrap(),
        feed_rolling: Some(FeedRolling {
            end: Some("2025-05-01T00:00:00.000000Z".into()),
            since: None,
        }),
        ..Batch::default()
    };
    store.apply(&slice).unwrap();
    assert_eq!(
        store.feed_rolling().unwrap(),
        FeedRolling {
            end: Some("2025-05-01T00:00:00.000000Z".into()),
            since: started.since.clone(),
        }
    );
    // The row was created at 2025-06-01T10:00:00.123450Z.
    let below = |floor: &str, top: &str| store.live_transactions_before(floor, top).unwrap();
    assert_eq!(
        below("2025-07-01T00:00:00.000000Z", "2025-06-15T00:00:00.000000Z"),
        (1, 1)
    );
    assert_eq!(
        below("2025-07-01T00:00:00.000000Z", "2025-06-01T10:00:00.123450Z"),
        (1, 0)
    );
    assert_eq!(
        below("2025-06-01T10:00:00.123450Z", "2025-06-01T10:00:00.123450Z"),
        (0, 0)
    );
}
