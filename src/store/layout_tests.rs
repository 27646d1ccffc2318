//! The file's layout (issue 12, item 9): every WITHOUT ROWID table keeps its key columns
//! first, so SQLite 3.40.1 (Debian 12's `sqlite3`) checks and reads the mirror clean,
//! and migration 3 moves an existing mirror to that layout without losing a row, an
//! index or a view. The system `sqlite3` itself is exercised in `tests/it/store.rs`.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::types::Value;

use super::{DEFERRED_INDEXES, SqliteStore, migrations};

/// WITHOUT ROWID tables whose primary-key columns are not their first columns: the
/// layout SQLite 3.40.1 misreads (`NULL value in ...` from `PRAGMA integrity_check`).
fn misplaced_keys(conn: &Connection) -> Vec<String> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = Vec::new();
    for t in tables {
        // Only a WITHOUT ROWID table has no rowid to select.
        if conn.prepare(&format!("SELECT rowid FROM \"{t}\"")).is_ok() {
            continue;
        }
        let key_cids: Vec<i64> = conn
            .prepare("SELECT cid FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY cid")
            .unwrap()
            .query_map([&t], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        if key_cids != (0..key_cids.len() as i64).collect::<Vec<_>>() {
            out.push(t);
        }
    }
    out
}

/// A mirror file at schema version 2 (the layout before migration 3).
fn version_2(path: &Path) -> Connection {
    let mut conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    migrations().to_version(&mut conn, 2).unwrap();
    conn
}

/// Rows as a mirror holds them: two customers, transactions with every column set or
/// NULL, one deleted, in two currencies.
fn fill(conn: &Connection) {
    conn.execute_batch(
        "INSERT INTO customers (rowid, id, name, first_seen_at, synced_at, raw) VALUES
             (1, 'cus_a', 'Awa', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z', '{\"id\":\"cus_a\"}'),
             (2, 'cus_b', 'Binta', '2025-01-02T00:00:00.000Z', '2025-01-02T00:00:00.000Z', '{\"id\":\"cus_b\"}');
         INSERT INTO transactions (transaction_id, customer_id, description, gross_amount, amount_minor, currency_code,
                                   status, payment_method_code, provider_code, metadata, created_at, first_seen_at,
                                   synced_at, deleted_at, raw, customer_seq) VALUES
             ('tx_1', 'cus_a', 'one', '25000', 25000, 'XOF', 'completed', 'WAVE', 'wave', '{\"k\":1}',
              '2025-03-01T09:00:00.000Z', '2025-03-01T09:00:01.000Z', '2025-03-01T09:00:01.000Z', NULL, '{\"transaction_id\":\"tx_1\"}', 1),
             ('tx_2', 'cus_a', NULL, '10.5', 1050, 'USD', 'pending', NULL, NULL, NULL,
              '2025-03-02T09:00:00.000Z', '2025-03-02T09:00:01.000Z', '2025-03-02T09:00:01.000Z', NULL, '{}', 1),
             ('tx_3', 'cus_b', 'gone', '7', 7, 'XOF', 'completed', NULL, NULL, NULL,
              '2025-03-03T09:00:00.000Z', '2025-03-03T09:00:01.000Z', '2025-03-04T09:00:01.000Z',
              '2025-03-04T09:00:01.000Z', '{}', 2),
             ('tx_4', 'cus_b', 'four', '3000', 3000, 'XOF', 'completed', NULL, NULL, NULL,
              '2025-03-05T09:00:00.000Z', '2025-03-05T09:00:01.000Z', '2025-03-05T09:00:01.000Z', NULL, '{}', 2);",
    )
    .unwrap();
}

/// Every row of `sql`, every column, as SQLite values.
fn rows(conn: &Connection, sql: &str) -> Vec<Vec<Value>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every column of `transactions` by name, so the order of the layout does not matter.
const ALL_TRANSACTIONS: &str = "SELECT transaction_id, customer_id, description, gross_amount, amount_minor,
        currency_code, status, payment_method_code, provider_code, metadata, created_at, first_seen_at,
        synced_at, deleted_at, raw, customer_seq FROM transactions ORDER BY transaction_id";

fn indexes(conn: &Connection) -> Vec<String> {
    conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'transactions' AND sql IS NOT NULL ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn integrity(conn: &Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn every_without_rowid_table_has_its_key_columns_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("new.db"), Duration::from_secs(5)).unwrap();
    assert_eq!(misplaced_keys(store.conn()), Vec::<String>::new());
    // The check does see the layout SQLite 3.40.1 misreads: version 2's.
    let old = version_2(&dir.path().join("old.db"));
    assert_eq!(misplaced_keys(&old), vec!["transactions".to_string()]);
}

#[test]
fn migration_3_keeps_every_row_index_and_view_of_a_finished_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let old = version_2(&path);
    fill(&old);
    // A completed backfill has built its deferred indexes.
    old.execute_batch(DEFERRED_INDEXES).unwrap();
    let before = rows(&old, ALL_TRANSACTIONS);
    let revenue = "SELECT * FROM customer_revenue ORDER BY customer_id, currency_code";
    let daily = "SELECT * FROM daily_revenue ORDER BY day, currency_code";
    let live = "SELECT * FROM live_transactions ORDER BY transaction_id";
    let views_before = [rows(&old, revenue), rows(&old, daily), rows(&old, live)];
    let indexes_before = indexes(&old);
    drop(old);

    // Migration 3 alone (4 goes on to rewrite timestamps from `raw`, which these rows lack).
    let mut at_3 = Connection::open(&path).unwrap();
    migrations().to_version(&mut at_3, 3).unwrap();
    let conn = &at_3;
    assert_eq!(misplaced_keys(conn), Vec::<String>::new());
    assert_eq!(rows(conn, ALL_TRANSACTIONS), before);
    assert_eq!(before.len(), 4);
    assert_eq!(
        [rows(conn, revenue), rows(conn, daily), rows(conn, live)],
        views_before
    );
    assert_eq!(indexes(conn), indexes_before);
    assert_eq!(
        indexes(conn),
        [
            "transactions_created_at",
            "transactions_customer",
            "transactions_id",
            "transactions_pending"
        ]
    );
    assert_eq!(integrity(conn), "ok");
    let key_first: String = conn
        .query_row(
            "SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_table_info('transactions') WHERE cid < 2 ORDER BY cid)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(key_first, "customer_seq,transaction_id");
    // The migration leaves no trace of the swap.
    let leftovers: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%_v3'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leftovers, 0);
}

#[test]
fn migration_3_leaves_the_deferred_indexes_to_a_first_backfill_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let old = version_2(&path);
    fill(&old);
    // As `begin_walk` leaves a first backfill: its deferred indexes dropped.
    old.execute_batch(
        "INSERT INTO walk (id, run_id, kind, started_at, phase, segment, next_page, page_size, initial)
         VALUES (1, 1, 'backfill', '2025-03-01T00:00:00.000Z', 'list', 'active', 3, 25, 1);
         DROP INDEX IF EXISTS customers_email;",
    )
    .unwrap();
    drop(old);
    let store = SqliteStore::open(&path, Duration::from_secs(5)).unwrap();
    assert_eq!(indexes(store.conn()), ["transactions_pending"]);
    assert_eq!(rows(store.conn(), ALL_TRANSACTIONS).len(), 4);
    assert_eq!(integrity(store.conn()), "ok");
}
