//! The first load's feed rows go through `feed_stage`, as in SQLite (`store/apply/stage.rs`
//! says why: the feed is ordered by time across customers, `transactions` by customer):
//! each page is appended with `COPY`, and the batch that completes the pass moves them
//! into `transactions` with one sorted `INSERT ... SELECT`, then empties the stage.

use std::collections::HashMap;

use postgres::Client;

use super::write::{self, TRANSACTION_COLUMNS, Val};
use super::{FeedGroups, check_owners};
use crate::store::{Applied, StoreError};

/// Appends a first-load page's rows, staged `at` (their customers are stored, by this
/// batch or an earlier one). Nothing is counted here: a row staged twice is one
/// transaction, counted by [`merge`]. A key twice on one page is staged once, its last
/// row: the merge orders a key's rows by `staged_at`, which one page shares.
pub(super) fn append(
    client: &mut Client,
    feed: &FeedGroups<'_>,
    at: &str,
) -> Result<(), StoreError> {
    if feed.is_empty() {
        return Ok(());
    }
    check_owners(client, feed)?;
    let mut rows = Vec::new();
    for (customer_id, list) in feed {
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, t) in list.iter().enumerate() {
            last.insert(&t.transaction_id, i);
        }
        rows.extend(
            list.iter()
                .enumerate()
                .filter(|(i, t)| last[t.transaction_id.as_str()] == *i)
                .map(|(_, t)| {
                    let mut v = write::transaction_values(t, customer_id);
                    v.push(Val::Text(at));
                    v
                }),
        );
    }
    let columns = format!("{TRANSACTION_COLUMNS}, staged_at");
    write::copy_rows(client, "feed_stage", &columns, rows)
}

/// Moves every staged row into `transactions` and empties the stage. A key staged
/// twice keeps its last staged row (the later page read it later). Keys the mirror did
/// not hold count as inserted; the first load records no change rows for them.
pub(super) fn merge(client: &mut Client, n: &mut Applied) -> Result<(), StoreError> {
    let staged: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM feed_stage)", &[])?
        .get(0);
    if !staged {
        return Ok(());
    }
    let new_keys: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT DISTINCT customer_id, transaction_id FROM feed_stage) AS s
             WHERE NOT EXISTS (SELECT 1 FROM transactions AS t
                               WHERE t.customer_id = s.customer_id
                                 AND t.transaction_id = s.transaction_id)",
            &[],
        )?
        .get(0);
    client.execute(
        &format!(
            "INSERT INTO transactions ({TRANSACTION_COLUMNS}, first_seen_at, synced_at)
             SELECT DISTINCT ON (customer_id, transaction_id) {TRANSACTION_COLUMNS}, staged_at, staged_at
             FROM feed_stage ORDER BY customer_id, transaction_id, staged_at DESC
             ON CONFLICT (customer_id, transaction_id) DO UPDATE SET
                 description = excluded.description, gross_amount = excluded.gross_amount,
                 amount_minor = excluded.amount_minor, currency_code = excluded.currency_code,
                 status = excluded.status, payment_method_code = excluded.payment_method_code,
                 provider_code = excluded.provider_code, metadata = excluded.metadata,
                 created_at = excluded.created_at, synced_at = excluded.synced_at,
                 deleted_at = NULL, raw = excluded.raw,
                 transaction_type = excluded.transaction_type,
                 discount_amount = excluded.discount_amount,
                 discount_minor = excluded.discount_minor, fee_amount = excluded.fee_amount,
                 fee_minor = excluded.fee_minor, net_amount = excluded.net_amount,
                 net_minor = excluded.net_minor, updated_at = excluded.updated_at"
        ),
        &[],
    )?;
    // TRUNCATE, not DELETE: a million dead rows would wait for vacuum; the stage is the
    // writer's alone, and TRUNCATE is undone with the transaction if it rolls back.
    client.batch_execute("TRUNCATE feed_stage")?;
    n.transactions_inserted += new_keys as u64;
    Ok(())
}
