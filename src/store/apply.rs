//! Writing a batch: compare what the API said with what the mirror holds, write only
//! the differences, and record each one in `changes`. A run over an unchanged source
//! therefore writes no customer, transaction or change row.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{SeenIn, SqliteStore, StoreError, Walk, now};
use crate::api::model::{Customer, Transaction};
use compare::{Change, object};

pub(in crate::store) mod compare;
mod stage;

/// A customer as the API showed it.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The customer's typed fields and JSON text.
    pub customer: Customer,
    /// From a list page: the live service shows `metadata: null` and omits
    /// `environment` there, so a null or a missing key does not overwrite what the
    /// mirror knows from `GET /customers/{id}`.
    pub partial: bool,
}

/// Everything one step of a walk writes, committed together.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// The run writing the batch (`sync_runs.id`).
    pub run_id: i64,
    /// Customers to compare and write.
    pub customers: Vec<Observed>,
    /// Complete transaction lists, one per customer re-read.
    pub transactions: Vec<(String, Vec<Transaction>)>,
    /// Customers whose list above had records skipped for an unreadable id: the list
    /// is not known complete, so what it lacks is not marked deleted.
    pub incomplete: Vec<String>,
    /// Customers the API confirmed gone (404).
    pub gone: Vec<String>,
    /// Customers the walk has now seen, with where.
    pub seen: Vec<(String, SeenIn)>,
    /// The walk's progress after this batch.
    pub checkpoint: Option<Walk>,
    /// List pages this batch represents (for the run's counters).
    pub pages: u32,
    /// The first walk into an empty mirror records no `created` change rows: the
    /// initial load is not a change, and skipping them halves a backfill's writes.
    pub initial_load: bool,
    /// Rows of one page of the org-wide feed (`GET /transactions`, each with its
    /// `customer_id`): upserted one by one, never read as a customer's complete list,
    /// so nothing is marked deleted for being absent from them (issue 14). Their
    /// customers are in the mirror or in `customers` above.
    pub feed_rows: Vec<Transaction>,
    /// A feed pass completed with this batch: its newest `created_at`, the next
    /// incremental run's watermark.
    pub feed_watermark: Option<String>,
    /// Transactions the API confirmed gone (`GET /transactions/{id}` answered 404).
    pub gone_transactions: Vec<String>,
    /// The rolling re-read moved on: `end` replaces the stored one, `since` (when
    /// `Some`, a cycle ended) too. Needs the `feed_state` row a completed pass wrote.
    pub feed_rolling: Option<super::FeedRolling>,
}

/// Row counts of a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// List pages the batch represents.
    pub pages: u64,
    /// Customers new to the mirror.
    pub customers_inserted: u64,
    /// Customers whose stored record changed.
    pub customers_updated: u64,
    /// Customers marked deleted.
    pub customers_deleted: u64,
    /// Customers marked deleted before that the API showed again.
    pub customers_restored: u64,
    /// Transactions new to the mirror.
    pub transactions_inserted: u64,
    /// Transactions whose stored record changed.
    pub transactions_updated: u64,
    /// Transactions marked deleted: gone from their customer's complete list.
    pub transactions_deleted: u64,
    /// Transactions marked deleted before that the API showed again.
    pub transactions_restored: u64,
}

impl Applied {
    /// Adds `o`'s counts to these.
    pub fn add(&mut self, o: &Applied) {
        self.pages += o.pages;
        self.customers_inserted += o.customers_inserted;
        self.customers_updated += o.customers_updated;
        self.customers_deleted += o.customers_deleted;
        self.customers_restored += o.customers_restored;
        self.transactions_inserted += o.transactions_inserted;
        self.transactions_updated += o.transactions_updated;
        self.transactions_deleted += o.transactions_deleted;
        self.transactions_restored += o.transactions_restored;
    }
    /// Data rows written (customers and transactions).
    pub fn rows_written(&self) -> u64 {
        self.customers_inserted
            + self.customers_updated
            + self.customers_deleted
            + self.customers_restored
            + self.transactions_inserted
            + self.transactions_updated
            + self.transactions_deleted
            + self.transactions_restored
    }
}

impl SqliteStore {
    /// Applies one batch in its own SQLite transaction.
    pub fn apply(&mut self, b: &Batch) -> Result<Applied, StoreError> {
        self.begin()?;
        match self.apply_open(b) {
            Ok(n) => {
                self.commit()?;
                Ok(n)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// Applies one batch inside the transaction [`SqliteStore::begin`] opened: the writer
    /// applies several before one commit when they arrive faster than it commits.
    pub fn apply_open(&mut self, b: &Batch) -> Result<Applied, StoreError> {
        apply_in(&self.conn, b, None)
    }
}

/// What every write of one batch shares: the connection (inside the transaction the
/// caller opened), the batch (its run, whether it is the initial load), the time
/// its rows are written at, and the webhook delivery it applies, if it does.
struct Ctx<'a> {
    tx: &'a Connection,
    b: &'a Batch,
    at: &'a str,
    /// The envelope `id` of the webhook delivery this batch applies (`None`: a run's
    /// batch): its change rows are marked `source = 'webhook'` and belong to no run.
    webhook: Option<&'a str>,
}

/// Writes batch `b` inside the open transaction; `webhook`: see [`Ctx::webhook`].
pub(super) fn apply_in(
    tx: &Connection,
    b: &Batch,
    webhook: Option<&str>,
) -> Result<Applied, StoreError> {
    let at = now();
    let cx = Ctx {
        tx,
        b,
        at: &at,
        webhook,
    };
    let mut n = Applied {
        pages: b.pages as u64,
        ..Applied::default()
    };
    // Customers this batch inserted, by rowid: they have no stored transactions,
    // so theirs are inserted without looking anything up (a backfill's every row).
    let mut created: HashMap<&str, i64> = HashMap::new();
    for o in &b.customers {
        if let Some(seq) = apply_customer(&cx, o, &mut n)? {
            created.insert(&o.customer.id, seq);
        }
    }
    for (customer_id, list) in &b.transactions {
        // Taken, not read: a second list for the same customer must see the first.
        let seq = created.remove(customer_id.as_str());
        let complete = !b.incomplete.contains(customer_id);
        apply_transactions(&cx, (customer_id, seq, complete), list, &mut n)?;
    }
    if b.initial_load {
        stage::append(&cx, &b.feed_rows)?;
    } else {
        apply_feed_rows(&cx, &b.feed_rows, &mut n)?;
    }
    if b.feed_watermark.is_some() {
        stage::merge(&cx, &mut n)?;
    }
    for id in &b.gone_transactions {
        delete_transaction(&cx, id, &mut n)?;
    }
    if let Some(w) = &b.feed_watermark {
        tx.prepare_cached(
            "INSERT INTO feed_state (id, watermark) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET watermark = max(watermark, excluded.watermark)",
        )?
        .execute(params![w])?;
    }
    if let Some(r) = &b.feed_rolling {
        tx.prepare_cached(
            "UPDATE feed_state SET rolling_end = ?1, rolling_since = coalesce(?2, rolling_since)
             WHERE id = 1",
        )?
        .execute(params![r.end, r.since])?;
    }
    for id in &b.gone {
        let changed = tx
            .prepare_cached("UPDATE customers SET deleted_at = ?2, synced_at = ?2 WHERE id = ?1 AND deleted_at IS NULL")?
            .execute(params![id, at])?;
        if changed > 0 {
            n.customers_deleted += 1;
            record(&cx, "customer", id, id, Change::Deleted)?;
        }
    }
    note_walk(tx, b)?;
    if webhook.is_none() {
        add_to_run(tx, b.run_id, &n)?;
    }
    Ok(n)
}

/// The walk's side of a batch: the customers it saw, and its checkpoint.
fn note_walk(tx: &Connection, b: &Batch) -> Result<(), StoreError> {
    let mut seen = tx
        .prepare_cached("INSERT OR IGNORE INTO walk_seen (customer_id, segment) VALUES (?1, ?2)")?;
    for (id, segment) in &b.seen {
        seen.execute(params![id, segment.as_str()])?;
    }
    if let Some(w) = &b.checkpoint {
        tx.prepare_cached(
            "UPDATE walk SET phase = ?1, segment = ?2, next_page = ?3, last_total = ?4, page_size = ?5,
                             pass = ?6, page_cap = ?7, list_counts = ?8
             , feed = ?9 WHERE id = 1",
        )?
        .execute(params![
            w.phase.as_str(),
            w.segment.as_str(),
            w.next_page as i64,
            w.last_total.map(|t| t as i64),
            w.page_size,
            w.pass,
            w.page_cap,
            w.counts.to_json(),
            w.feed.as_ref().map(super::FeedCursor::to_json)
        ])?;
    }
    Ok(())
}

/// Adds a batch's counts to its run's row.
fn add_to_run(tx: &Connection, run_id: i64, n: &Applied) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE sync_runs SET pages = pages + ?2,
            customers_inserted = customers_inserted + ?3, customers_updated = customers_updated + ?4,
            customers_deleted = customers_deleted + ?5, customers_restored = customers_restored + ?6,
            transactions_inserted = transactions_inserted + ?7, transactions_updated = transactions_updated + ?8,
            transactions_deleted = transactions_deleted + ?9, transactions_restored = transactions_restored + ?10
         WHERE id = ?1",
    )?
    .execute(params![
        run_id,
        n.pages as i64,
        n.customers_inserted as i64,
        n.customers_updated as i64,
        n.customers_deleted as i64,
        n.customers_restored as i64,
        n.transactions_inserted as i64,
        n.transactions_updated as i64,
        n.transactions_deleted as i64,
        n.transactions_restored as i64
    ])?;
    Ok(())
}

/// Returns the rowid of a customer it inserted (not of one it updated).
fn apply_customer(cx: &Ctx, o: &Observed, n: &mut Applied) -> Result<Option<i64>, StoreError> {
    let Some((change, merged)) = customer_change(cx.tx, o)? else {
        if !o.partial {
            details_read(cx.tx, &o.customer.id)?;
        }
        return Ok(None);
    };
    let c = merged.as_ref().unwrap_or(&o.customer);
    upsert_customer(cx, &o.customer.id, c, compare::shows_details(o))?;
    let inserted = matches!(change, Change::Created).then(|| cx.tx.last_insert_rowid());
    n.count_customer(&change);
    let id = &o.customer.id;
    record(cx, "customer", id, id, change)?;
    Ok(inserted)
}

/// How an observed customer changes the stored one, and for a partial list item, the
/// row to write (the stored object with the item merged in); `None`: no change.
fn customer_change(
    tx: &Connection,
    o: &Observed,
) -> Result<Option<(Change, Option<Customer>)>, StoreError> {
    let id = &o.customer.id;
    let stored: Option<(String, Option<String>)> = tx
        .prepare_cached("SELECT raw, deleted_at FROM customers WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    // The very same text needs no JSON parsing here.
    if let Some((text, None)) = &stored
        && *text == o.customer.raw
    {
        return Ok(None);
    }
    let stored = stored.map(|(text, deleted_at)| (object(&text), deleted_at.is_some()));
    Ok(compare::customer_change(stored, o))
}

/// Records that customer `id`'s details were read at its current `updated_at` (a
/// `GET /customers/{id}` read that changed nothing in the row).
fn details_read(tx: &Connection, id: &str) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE customers SET details_updated_at = COALESCE(updated_at, '')
         WHERE id = ?1 AND details_updated_at IS NOT COALESCE(updated_at, '')",
    )?
    .execute(params![id])?;
    Ok(())
}

/// Writes customer `id`'s row (inserted, or updated and undeleted), synced at `cx.at`;
/// with `details`, the object showed its metadata (`customers.details_updated_at`,
/// migration 13), else what was known of the details stays as it was.
fn upsert_customer(cx: &Ctx, id: &str, c: &Customer, details: bool) -> Result<(), StoreError> {
    cx.tx.prepare_cached(
        "INSERT INTO customers (id, organization_id, name, email, phone_number, whatsapp_number, country, city,
             address, postal_code, is_business, metadata, environment, created_at, updated_at,
             first_seen_at, synced_at, deleted_at, raw, details_updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16, NULL, ?17,
             CASE WHEN ?18 THEN COALESCE(?15, '') END)
         ON CONFLICT (id) DO UPDATE SET organization_id = excluded.organization_id, name = excluded.name,
             email = excluded.email, phone_number = excluded.phone_number, whatsapp_number = excluded.whatsapp_number,
             country = excluded.country, city = excluded.city, address = excluded.address,
             postal_code = excluded.postal_code, is_business = excluded.is_business, metadata = excluded.metadata,
             environment = excluded.environment, created_at = excluded.created_at, updated_at = excluded.updated_at,
             synced_at = excluded.synced_at, deleted_at = NULL, raw = excluded.raw,
             details_updated_at = CASE WHEN ?18 THEN excluded.details_updated_at
                 ELSE customers.details_updated_at END",
    )?
    .execute(params![
        id,
        c.organization_id,
        c.name,
        c.email,
        c.phone_number,
        c.whatsapp_number,
        c.country,
        c.city,
        c.address,
        c.postal_code,
        c.is_business,
        c.metadata,
        c.environment,
        c.created_at,
        c.updated_at,
        cx.at,
        c.raw,
        details
    ])?;
    Ok(())
}

/// `whose`: the customer's id, its rowid if this batch inserted it, and whether the
/// list is complete (then what it lacks was deleted at the source).
fn apply_transactions(
    cx: &Ctx,
    whose: (&str, Option<i64>, bool),
    list: &[Transaction],
    n: &mut Applied,
) -> Result<(), StoreError> {
    let (customer_id, inserted_seq, complete) = whose;
    let tx = cx.tx;
    // Transactions are keyed by the customer's rowid (see the schema); the customer is
    // always stored before its transactions, by this batch or an earlier one.
    let seq: i64 = match inserted_seq {
        Some(seq) => seq,
        None => tx
            .prepare_cached("SELECT rowid FROM customers WHERE id = ?1")?
            .query_row(params![customer_id], |r| r.get(0))?,
    };
    // A customer inserted by this batch has a new rowid: nothing is stored under it.
    let mut stored = match inserted_seq {
        Some(_) => HashMap::new(),
        None => stored_transactions(tx, seq)?,
    };
    upsert_transactions(cx, (customer_id, seq), list, &mut stored, n)?;
    // What the list no longer holds was deleted at the source.
    let left = stored.into_iter().map(|(id, (_, deleted))| (id, deleted));
    for id in compare::vanished(left, complete) {
        tx.prepare_cached(
            "UPDATE transactions SET deleted_at = ?3, synced_at = ?3 WHERE customer_seq = ?1 AND transaction_id = ?2",
        )?
        .execute(params![seq, id, cx.at])?;
        n.transactions_deleted += 1;
        record(cx, "transaction", &id, customer_id, Change::Deleted)?;
    }
    note_transactions_read(cx, customer_id, list)
}

/// Feed rows (see [`Batch::feed_rows`]), grouped by customer and written through the
/// same comparison as a customer's list, but with no deletion inferred: the feed is not
/// complete per customer page by page. A row whose customer the mirror lacks is
/// [`StoreError::OrphanTransaction`] (the engine reads such customers first).
fn apply_feed_rows(cx: &Ctx, rows: &[Transaction], n: &mut Applied) -> Result<(), StoreError> {
    let mut find = cx.tx.prepare_cached(
        "SELECT raw, deleted_at IS NOT NULL FROM transactions WHERE customer_seq = ?1 AND transaction_id = ?2",
    )?;
    for (customer_id, list) in compare::by_customer(rows) {
        let seq = feed_row_owner(cx, customer_id)?;
        let mut stored = HashMap::new();
        for t in &list {
            let found: Option<(String, bool)> = find
                .query_row(params![seq, t.transaction_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            if let Some(v) = found {
                stored.insert(t.transaction_id.clone(), v);
            }
        }
        upsert_transactions(cx, (customer_id, seq), &list, &mut stored, n)?;
    }
    Ok(())
}

/// The rowid of a feed row's customer, which the engine stored first (a row whose
/// customer the mirror lacks is [`StoreError::OrphanTransaction`]).
fn feed_row_owner(cx: &Ctx, customer_id: &str) -> Result<i64, StoreError> {
    cx.tx
        .prepare_cached("SELECT rowid FROM customers WHERE id = ?1")?
        .query_row(params![customer_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::OrphanTransaction {
            customer_id: customer_id.to_string(),
        })
}

/// Marks transaction `id` deleted (every live row of that id), with a change row.
fn delete_transaction(cx: &Ctx, id: &str, n: &mut Applied) -> Result<(), StoreError> {
    let owners: Vec<String> = cx
        .tx
        .prepare_cached(
            "SELECT customer_id FROM transactions WHERE transaction_id = ?1 AND deleted_at IS NULL",
        )?
        .query_map(params![id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    cx.tx
        .prepare_cached(
            "UPDATE transactions SET deleted_at = ?2, synced_at = ?2 WHERE transaction_id = ?1 AND deleted_at IS NULL",
        )?
        .execute(params![id, cx.at])?;
    for customer_id in owners {
        n.transactions_deleted += 1;
        record(cx, "transaction", id, &customer_id, Change::Deleted)?;
    }
    Ok(())
}

/// A customer's stored transactions (by its rowid `seq`): id -> (raw text, deleted).
fn stored_transactions(
    tx: &Connection,
    seq: i64,
) -> Result<HashMap<String, (String, bool)>, StoreError> {
    let mut stored = HashMap::new();
    let mut stmt = tx.prepare_cached(
        "SELECT transaction_id, raw, deleted_at IS NOT NULL FROM transactions WHERE customer_seq = ?1",
    )?;
    let rows = stmt.query_map(params![seq], |r| {
        Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?)))
    })?;
    for row in rows {
        let (id, v) = row?;
        stored.insert(id, v);
    }
    Ok(stored)
}

/// Writes the transactions of `list` that are new or changed (taking each out of
/// `stored`, which is left with the ones the list no longer holds). `whose`: the
/// customer's id and rowid.
fn upsert_transactions(
    cx: &Ctx,
    whose: (&str, i64),
    list: &[Transaction],
    stored: &mut HashMap<String, (String, bool)>,
    n: &mut Applied,
) -> Result<(), StoreError> {
    let (customer_id, seq) = whose;
    // Looked up once per customer, not per row: the cache hashes the statement's text.
    let mut insert = cx.tx.prepare_cached(UPSERT_TRANSACTION)?;
    for t in list {
        let stored = stored.remove(&t.transaction_id);
        // The very same text needs no JSON parsing here.
        if matches!(&stored, Some((text, false)) if *text == t.raw) {
            continue;
        }
        let stored = stored.map(|(text, deleted)| (object(&text), deleted));
        let Some((change, merged)) = compare::transaction_change(stored, t) else {
            continue;
        };
        let t = merged.as_ref().unwrap_or(t);
        upsert_transaction(&mut insert, t, customer_id, cx.at, seq)?;
        n.count_transaction(&change);
        record(cx, "transaction", &t.transaction_id, customer_id, change)?;
    }
    Ok(())
}

/// The `ON CONFLICT` clause of every transaction upsert ([`UPSERT_TRANSACTION`] and the
/// staged first load's merge): every column replaced, `first_seen_at` kept, a deleted
/// row restored.
macro_rules! replace_on_conflict {
    () => {
        " ON CONFLICT (customer_seq, transaction_id) DO UPDATE SET
             description = excluded.description, gross_amount = excluded.gross_amount,
             amount_minor = excluded.amount_minor, currency_code = excluded.currency_code,
             status = excluded.status, payment_method_code = excluded.payment_method_code,
             provider_code = excluded.provider_code, metadata = excluded.metadata,
             created_at = excluded.created_at, synced_at = excluded.synced_at, deleted_at = NULL,
             raw = excluded.raw, transaction_type = excluded.transaction_type,
             discount_amount = excluded.discount_amount, discount_minor = excluded.discount_minor,
             fee_amount = excluded.fee_amount, fee_minor = excluded.fee_minor,
             net_amount = excluded.net_amount, net_minor = excluded.net_minor,
             updated_at = excluded.updated_at"
    };
}
use replace_on_conflict;

/// Inserts a transaction, or replaces every column of the stored one (the feed's
/// columns included: a row merged over the stored one carries the values it kept).
const UPSERT_TRANSACTION: &str = concat!(
    "INSERT INTO transactions (transaction_id, customer_id, description, gross_amount, amount_minor,
             currency_code, status, payment_method_code, provider_code, metadata, created_at,
             first_seen_at, synced_at, deleted_at, raw, customer_seq, transaction_type,
             discount_amount, discount_minor, fee_amount, fee_minor, net_amount, net_minor, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, NULL, ?13, ?14, ?15,
                 ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
    replace_on_conflict!()
);

/// Executes `insert` ([`UPSERT_TRANSACTION`], or the feed stage's insert, whose
/// parameters are numbered alike) with `t`'s columns, written `at` under customer rowid
/// `seq`.
fn upsert_transaction(
    insert: &mut rusqlite::CachedStatement<'_>,
    t: &Transaction,
    customer_id: &str,
    at: &str,
    seq: i64,
) -> Result<(), StoreError> {
    insert.execute(params![
        t.transaction_id,
        customer_id,
        t.description,
        t.gross_amount,
        t.amount_minor,
        t.currency_code,
        t.status,
        t.payment_method_code,
        t.provider_code,
        t.metadata,
        t.created_at,
        at,
        t.raw,
        seq,
        t.transaction_type,
        t.discount_amount,
        t.discount_minor,
        t.fee_amount,
        t.fee_minor,
        t.net_amount,
        t.net_minor,
        t.updated_at
    ])?;
    Ok(())
}

/// The list is complete, so its summary is exact until the next re-read.
fn note_transactions_read(
    cx: &Ctx,
    customer_id: &str,
    list: &[Transaction],
) -> Result<(), StoreError> {
    let s = compare::summary(list);
    cx.tx.prepare_cached(
        "INSERT INTO customer_sync (customer_id, tx_checked_at, live_tx, last_tx_at, newest_pending_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (customer_id) DO UPDATE SET tx_checked_at = excluded.tx_checked_at,
             live_tx = excluded.live_tx, last_tx_at = excluded.last_tx_at,
             newest_pending_at = excluded.newest_pending_at",
    )?
    .execute(params![customer_id, cx.at, s.live_tx, s.last_tx_at, s.newest_pending_at])?;
    Ok(())
}

/// Writes a change row (none for a row created by the initial load).
fn record(
    cx: &Ctx,
    entity: &str,
    entity_id: &str,
    customer_id: &str,
    change: Change,
) -> Result<(), StoreError> {
    let Some((kind, fields)) = change.row(cx.b.initial_load) else {
        return Ok(());
    };
    let (run_id, source) = compare::change_origin(cx.b.run_id, cx.webhook);
    cx.tx.prepare_cached(
        "INSERT INTO changes (run_id, observed_at, entity, entity_id, customer_id, kind, fields,
                              source, webhook_event)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        run_id,
        cx.at,
        entity,
        entity_id,
        customer_id,
        kind,
        fields,
        source,
        cx.webhook
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A customer as observed: `partial` for a list item; `meta` its metadata (null:
    /// hidden by the live list, or none).
    fn seen(id: &str, created: &str, updated: &str, meta: Value, partial: bool) -> Observed {
        let customer = Customer::from_value(json!({"id": id, "created_at": created,
            "updated_at": updated, "metadata": meta}))
        .unwrap();
        Observed { customer, partial }
    }

    /// Which customers lack details (`details_updated_at` behind `updated_at`,
    /// migration 13) after each kind of observation, and the fill's order.
    #[test]
    fn details_are_known_only_from_objects_that_show_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut store =
            SqliteStore::open(&dir.path().join("m.db"), std::time::Duration::from_secs(5)).unwrap();
        let (d1, d2, d3) = (
            "2025-01-01T00:00:00Z",
            "2025-02-01T00:00:00Z",
            "2025-03-01T00:00:00Z",
        );
        let mut apply = |customers: Vec<Observed>| {
            let run_id = store.start_run(super::super::RunKind::Sync).unwrap();
            store
                .apply(&Batch {
                    run_id,
                    customers,
                    ..Batch::default()
                })
                .unwrap();
            let ids = store.details_candidates(10).unwrap();
            let meta: Vec<Option<String>> = ids
                .iter()
                .map(|id| {
                    store
                        .conn()
                        .query_row("SELECT metadata FROM customers WHERE id = ?1", [id], |r| {
                            r.get(0)
                        })
                        .unwrap()
                })
                .collect();
            assert_eq!(store.lacking_details().unwrap(), ids.len() as u64);
            (ids, meta)
        };
        let tier = json!({"tier": "gold"});
        // List items hiding metadata: unknown (NULL, never "{}"), newest first.
        let (ids, meta) = apply(vec![
            seen("a", d1, d1, Value::Null, true),
            seen("b", d2, d2, Value::Null, true),
        ]);
        assert_eq!(
            (ids, meta),
            (vec!["b".into(), "a".into()], vec![None, None])
        );
        // A detail read fills one; the same read again changes nothing.
        let read = seen("a", d1, d1, tier.clone(), false);
        assert_eq!(apply(vec![read.clone()]).0, ["b"]);
        assert_eq!(apply(vec![read]).0, ["b"]);
        // `a` changes (a list item hiding metadata): it lacks details again, ahead of
        // the never-read `b` and a newer `c`, and keeps the metadata last read.
        let (ids, meta) = apply(vec![
            seen("a", d1, d2, Value::Null, true),
            seen("c", d3, d3, Value::Null, true),
        ]);
        assert_eq!(ids, ["a", "c", "b"]);
        assert_eq!(meta[0].as_deref(), Some(r#"{"tier":"gold"}"#));
        // A list item that shows metadata is the details: nothing to read for `c`.
        assert_eq!(apply(vec![seen("c", d3, d3, tier, true)]).0, ["a", "b"]);
    }
}
