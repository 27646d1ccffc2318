//! The data half of migration 4 (see `migrations/004_micros_currency_skipped.sql`):
//! timestamps to microseconds, read again from `raw` where the API gave them, and
//! currency codes to upper case. One statement per table, whatever the table's layout,
//! through a SQL function that applies the API client's own normalisation.

use rusqlite::functions::FunctionFlags;
use rusqlite_migration::HookResult;

use crate::api::model::normalize_timestamp;

/// The SQL run with `lomi_ts(x)`: `x` normalised, or NULL when `x` is not a timestamp
/// (as the client stores one it cannot read).
const REWRITE: &str = "
    UPDATE customers SET
        created_at = lomi_ts(json_extract(raw, '$.created_at')),
        updated_at = lomi_ts(json_extract(raw, '$.updated_at')),
        first_seen_at = lomi_ts(first_seen_at), synced_at = lomi_ts(synced_at),
        deleted_at = lomi_ts(deleted_at);
    UPDATE transactions SET
        created_at = lomi_ts(json_extract(raw, '$.created_at')),
        currency_code = upper(trim(currency_code)),
        first_seen_at = lomi_ts(first_seen_at), synced_at = lomi_ts(synced_at),
        deleted_at = lomi_ts(deleted_at);
    UPDATE sync_runs SET started_at = lomi_ts(started_at), finished_at = lomi_ts(finished_at);
    UPDATE changes SET observed_at = lomi_ts(observed_at);
    UPDATE customer_sync SET tx_checked_at = lomi_ts(tx_checked_at),
        last_tx_at = lomi_ts(last_tx_at), newest_pending_at = lomi_ts(newest_pending_at);
    UPDATE walk SET started_at = lomi_ts(started_at);";

/// The migration hook: registers `lomi_ts`, rewrites, and removes it again.
pub(super) fn rewrite(tx: &rusqlite::Transaction) -> HookResult {
    tx.create_scalar_function(
        "lomi_ts",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                rusqlite::types::ValueRef::Text(t) => {
                    std::str::from_utf8(t).ok().and_then(normalize_timestamp)
                }
                _ => None,
            })
        },
    )?;
    let result = tx.execute_batch(REWRITE);
    tx.remove_function("lomi_ts", 1)?;
    result?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rusqlite::Connection;

    use crate::store::SqliteStore;

    /// A mirror written by versions 1-2 (milliseconds, cut microseconds, `xof`) is
    /// rewritten: timestamps from `raw` to the microsecond, the mirror's own padded,
    /// the currency upper case, and the views then count the payment in francs.
    #[test]
    fn migration_4_restores_microseconds_and_upper_cases_currencies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(include_str!("migrations/001_initial.sql"))
                .unwrap();
            c.execute_batch(include_str!("migrations/002_views.sql"))
                .unwrap();
            c.execute_batch(
                r#"PRAGMA user_version = 2;
                INSERT INTO sync_runs (id, kind, started_at, finished_at, outcome)
                    VALUES (1, 'backfill', '2025-06-02T08:00:00.001Z', '2025-06-02T08:01:00.002Z', 'succeeded');
                INSERT INTO customers (id, created_at, updated_at, first_seen_at, synced_at, raw)
                    VALUES ('c1', '2025-06-01T10:00:00.123Z', '2025-06-01T11:00:00.000Z',
                            '2025-06-02T08:00:00.500Z', '2025-06-02T08:00:00.500Z',
                            '{"id":"c1","created_at":"2025-06-01T10:00:00.123456+00:00","updated_at":"2025-06-01T12:00:00+0100"}');
                INSERT INTO transactions (transaction_id, customer_id, gross_amount, amount_minor, currency_code, status,
                                          created_at, first_seen_at, synced_at, raw, customer_seq)
                    VALUES ('t1', 'c1', '25000', 25000, 'xof', 'completed', '2025-03-01T09:00:00.500Z',
                            '2025-06-02T08:00:00.500Z', '2025-06-02T08:00:00.500Z',
                            '{"transaction_id":"t1","gross_amount":25000,"currency_code":"xof","status":"completed","created_at":"2025-03-01T10:00:00.5+01:00"}', 1);
                INSERT INTO changes (run_id, observed_at, entity, entity_id, customer_id, kind)
                    VALUES (1, '2025-06-02T08:00:00.700Z', 'customer', 'c1', 'c1', 'created');
                INSERT INTO customer_sync (customer_id, tx_checked_at, live_tx, last_tx_at)
                    VALUES ('c1', '2025-06-02T08:00:00.600Z', 1, '2025-03-01T09:00:00.500Z');"#,
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, Duration::from_secs(1)).unwrap();
        let c = store.conn();
        let row = |sql: &str| -> Vec<Option<String>> {
            c.query_row(sql, [], |r| {
                (0..r.as_ref().column_count())
                    .map(|i| r.get::<_, Option<String>>(i))
                    .collect()
            })
            .unwrap()
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            row(
                "SELECT created_at, updated_at, first_seen_at, synced_at, deleted_at FROM customers"
            ),
            [
                s("2025-06-01T10:00:00.123456Z"),
                s("2025-06-01T11:00:00.000000Z"),
                s("2025-06-02T08:00:00.500000Z"),
                s("2025-06-02T08:00:00.500000Z"),
                None
            ]
        );
        assert_eq!(
            row("SELECT created_at, currency_code, synced_at FROM transactions"),
            [
                s("2025-03-01T09:00:00.500000Z"),
                s("XOF"),
                s("2025-06-02T08:00:00.500000Z")
            ]
        );
        assert_eq!(
            row("SELECT started_at, finished_at, CAST(records_skipped AS TEXT) FROM sync_runs"),
            [
                s("2025-06-02T08:00:00.001000Z"),
                s("2025-06-02T08:01:00.002000Z"),
                s("0")
            ]
        );
        assert_eq!(
            row("SELECT observed_at FROM changes"),
            [s("2025-06-02T08:00:00.700000Z")]
        );
        assert_eq!(
            row("SELECT tx_checked_at, last_tx_at FROM customer_sync"),
            [
                s("2025-06-02T08:00:00.600000Z"),
                s("2025-03-01T09:00:00.500000Z")
            ]
        );
        assert_eq!(
            row("SELECT currency_code, completed_total FROM customer_revenue"),
            [s("XOF"), s("25000")]
        );
        assert_eq!(
            row("SELECT day, revenue FROM daily_revenue"),
            [s("2025-03-01"), s("25000")]
        );
    }
}
