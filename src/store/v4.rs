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
