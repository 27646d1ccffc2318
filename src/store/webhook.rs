//! Applying one verified webhook delivery (issue 16; NOTES.md, "Webhooks"): through the
//! same write path as a run's feed rows ([`super::apply`]), with the delivery's rules
//! checked inside the transaction that writes it, so no run can slip a newer row in
//! between the check and the write:
//!
//! - a delivery whose envelope `id` is in `webhook_events` writes nothing (the vendor
//!   retries and may duplicate; no timestamp is signed, so this is the replay guard);
//! - a row older than the mirror's (by `updated_at`) writes nothing ([`decide`]);
//! - on a tie with another state, a state that is not final (`pending`), or no
//!   timestamp to order by, the caller is told to read the transaction from the API
//!   ([`WebhookResult::Revalidate`]); the store never does HTTP;
//! - a row of a customer the mirror lacks asks for that customer
//!   ([`WebhookResult::NeedCustomer`]): no orphan is written, no event dropped.

use rusqlite::{OptionalExtension, params};

use super::apply::apply_in;
use super::{Applied, Batch, Observed, SqliteStore, StoreError, now};
use crate::api::model::Transaction;

/// Statuses after which a payment changes only by a new event with a later
/// `updated_at` (NOTES.md, "Transactions": `pending` is the one state still moving on
/// its own). An unknown status is not final: the API is asked.
pub const FINAL_STATUSES: [&str; 5] = ["completed", "failed", "refunded", "expired", "cancelled"];

/// How long a delivery's record is kept for deduplication: the vendor retries a
/// delivery about 5 times from 5 s with exponential backoff (minutes, NOTES.md
/// "Webhooks"), so two days is ample; a replay older than that meets the ordering rule
/// ([`decide`]), which never regresses a row. Without a bound the table would grow by
/// every payment event forever.
pub const DEDUPE_KEEP: chrono::Duration = chrono::Duration::hours(48);

/// One verified delivery of a payment or refund event.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The envelope's `id`, stable across the vendor's retries.
    pub id: String,
    /// The event kind (`PAYMENT_SUCCEEDED`, ...).
    pub event: String,
    /// When the listener received it (the mirror's timestamp form).
    pub received_at: String,
}

/// What to write for one delivery.
#[derive(Clone, Debug)]
pub struct WebhookBatch {
    /// The delivery, recorded in `webhook_events` with the write.
    pub delivery: Delivery,
    /// The transaction as the event's `data` shows it, or as `GET /transactions/{id}`
    /// showed it after a [`WebhookResult::Revalidate`]. Carries its `customer_id`.
    pub row: Transaction,
    /// `row` was read from the API after the delivery arrived: it is the source's state
    /// now, applied unless it is older than the mirror's.
    pub revalidated: bool,
    /// The API answered 404 for the transaction: it is marked deleted (if the mirror
    /// holds it live), as a feed pass's confirmation does.
    pub gone: bool,
    /// The row's customer, read with `GET /customers/{id}` after a
    /// [`WebhookResult::NeedCustomer`] (a row holding only its id if the API no longer
    /// shows it).
    pub customers: Vec<Observed>,
    /// Of those, the ones the API answered 404 for: kept as tombstones.
    pub gone_customers: Vec<String>,
}

/// What applying a delivery did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookResult {
    /// Written (the counts may be all zero: the mirror already held this state).
    Written(Applied),
    /// Older than the mirror's row: nothing written but the delivery's record.
    Stale,
    /// The envelope `id` was applied before: nothing written.
    Duplicate,
    /// The order cannot be told from the event: read the transaction from the API and
    /// submit again with `revalidated`. Nothing written.
    Revalidate,
    /// The mirror lacks the row's customer: read it and submit again with it in
    /// `customers`. Nothing written.
    NeedCustomer,
}

/// What [`decide`] compares: a row's last change and state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowFacts<'a> {
    /// `updated_at` in the mirror's one timestamp form (text order is time order).
    pub updated_at: Option<&'a str>,
    /// The status (`pending`, `completed`, ...).
    pub status: Option<&'a str>,
}

/// What to do with an incoming row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write it.
    Apply,
    /// It is older than the mirror's row: write nothing.
    SkipOlder,
    /// Arrival order cannot be trusted: read the transaction from the API.
    Revalidate,
}

/// The ordering rule for a webhook row (`incoming`) over the mirror's (`stored`), as
/// issue 16 states it: never regress (older by `updated_at`: skip); on a tie with
/// another state, or a state that is not final, ask the API rather than trust arrival
/// order (deliveries can be late, duplicated or reordered). Rows without a timestamp
/// to compare are applied only when they change no state. A `revalidated` row is the
/// API's state now: applied unless it is older than the mirror's.
///
/// A row the mirror does not hold is applied as it is, pending or not: there is nothing
/// to regress, a later event or run moves it on, and an earlier one that arrives later
/// is older than it. Asking the API for every new payment (most arrive `pending`) cost
/// one request per event: measured with `benches/webhooks.rs` at 2 requests/s, 1,895
/// of 2,516 deliveries timed out waiting for the rate limiter.
pub fn decide(incoming: RowFacts, stored: Option<RowFacts>, revalidated: bool) -> Decision {
    let is_final = incoming.status.is_some_and(|s| FINAL_STATUSES.contains(&s));
    let Some(stored) = stored else {
        return Decision::Apply;
    };
    let order = match (incoming.updated_at, stored.updated_at) {
        (Some(i), Some(s)) => Some(i.cmp(s)),
        _ => None,
    };
    use std::cmp::Ordering::*;
    match order {
        Some(Less) => Decision::SkipOlder,
        _ if revalidated => Decision::Apply,
        _ if !is_final => Decision::Revalidate,
        Some(Equal) if incoming.status != stored.status => Decision::Revalidate,
        Some(_) => Decision::Apply,
        None if incoming.status == stored.status => Decision::Apply,
        None => Decision::Revalidate,
    }
}

impl SqliteStore {
    /// Whether the delivery with envelope `id` was applied already.
    pub fn webhook_seen(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM webhook_events WHERE id = ?1")?
            .exists(params![id])?)
    }

    /// Applies one delivery inside the transaction [`SqliteStore::begin`] opened, under a
    /// savepoint: a delivery that fails rolls back only itself, never the run's
    /// batches it shares a group commit with.
    pub fn apply_webhook_open(&mut self, w: &WebhookBatch) -> Result<WebhookResult, StoreError> {
        self.conn.execute_batch("SAVEPOINT webhook")?;
        match webhook_in(&mut SqliteWebhook(&self.conn), w) {
            Ok(r) => {
                self.conn.execute_batch("RELEASE webhook")?;
                Ok(r)
            }
            Err(e) => {
                self.conn
                    .execute_batch("ROLLBACK TO webhook; RELEASE webhook")?;
                Err(e)
            }
        }
    }
}

/// What [`webhook_in`] asks of the store, inside the transaction that writes the
/// delivery: each store answers in its own dialect, the rules stay here, once.
pub(super) trait WebhookTx {
    /// The delivery with envelope `id` is recorded in `webhook_events`.
    fn seen(&mut self, id: &str) -> Result<bool, StoreError>;
    /// `None`: the mirror lacks customer `customer_id`; else the stored row's
    /// `updated_at` and status, if the mirror holds it (deleted rows included: a newer
    /// event restores one, an older one does not).
    fn stored(
        &mut self,
        customer_id: &str,
        transaction_id: &str,
    ) -> Result<Option<Option<Stored>>, StoreError>;
    /// Writes `b` as delivery `event` (the store's `apply_in`).
    fn apply(&mut self, b: &Batch, event: &str) -> Result<Applied, StoreError>;
    /// Records the delivery with `outcome` (`applied`, `unchanged`, `stale`, `gone`) and
    /// forgets the records received before `horizon` ([`DEDUPE_KEEP`]).
    fn record(&mut self, d: &Delivery, outcome: &str, horizon: &str) -> Result<(), StoreError>;
}

/// The body of [`SqliteStore::apply_webhook_open`] and of PostgreSQL's: the delivery's
/// rules (see the module's doc) over the store's answers.
pub(super) fn webhook_in(
    tx: &mut impl WebhookTx,
    w: &WebhookBatch,
) -> Result<WebhookResult, StoreError> {
    let d = &w.delivery;
    if tx.seen(&d.id)? {
        return Ok(WebhookResult::Duplicate);
    }
    let t = &w.row;
    let (outcome, written) = if w.gone {
        let b = Batch {
            gone_transactions: vec![t.transaction_id.clone()],
            ..Batch::default()
        };
        ("gone", tx.apply(&b, &d.id)?)
    } else {
        let Some(customer_id) = t.customer_id.as_deref() else {
            return Ok(WebhookResult::Revalidate);
        };
        let known = tx.stored(customer_id, &t.transaction_id)?;
        let brought = w.customers.iter().any(|o| o.customer.id == customer_id);
        if known.is_none() && !brought {
            return Ok(WebhookResult::NeedCustomer);
        }
        let stored = known.flatten();
        let incoming = RowFacts {
            updated_at: t.updated_at.as_deref(),
            status: t.status.as_deref(),
        };
        let stored_facts = stored.as_ref().map(|(u, s)| RowFacts {
            updated_at: u.as_deref(),
            status: s.as_deref(),
        });
        match decide(incoming, stored_facts, w.revalidated) {
            Decision::Revalidate => return Ok(WebhookResult::Revalidate),
            Decision::SkipOlder => ("stale", Applied::default()),
            Decision::Apply => {
                let b = Batch {
                    feed_rows: vec![t.clone()],
                    customers: w.customers.clone(),
                    gone: w.gone_customers.clone(),
                    ..Batch::default()
                };
                let n = tx.apply(&b, &d.id)?;
                let outcome = if n.rows_written() > 0 {
                    "applied"
                } else {
                    "unchanged"
                };
                (outcome, n)
            }
        }
    };
    let horizon = crate::api::model::format_timestamp(chrono::Utc::now() - DEDUPE_KEEP);
    tx.record(d, outcome, &horizon)?;
    Ok(match outcome {
        "stale" => WebhookResult::Stale,
        _ => WebhookResult::Written(written),
    })
}

/// A stored row's `updated_at` and status.
pub(super) type Stored = (Option<String>, Option<String>);

/// SQLite's answers to [`webhook_in`], on the writer's connection.
struct SqliteWebhook<'a>(&'a rusqlite::Connection);

impl WebhookTx for SqliteWebhook<'_> {
    fn seen(&mut self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .0
            .prepare_cached("SELECT 1 FROM webhook_events WHERE id = ?1")?
            .exists(params![id])?)
    }

    fn stored(
        &mut self,
        customer_id: &str,
        transaction_id: &str,
    ) -> Result<Option<Option<Stored>>, StoreError> {
        let seq: Option<i64> = self
            .0
            .prepare_cached("SELECT rowid FROM customers WHERE id = ?1")?
            .query_row(params![customer_id], |r| r.get(0))
            .optional()?;
        let Some(seq) = seq else {
            return Ok(None);
        };
        Ok(Some(
            self.0
                .prepare_cached(
                    "SELECT updated_at, status FROM transactions WHERE customer_seq = ?1 AND transaction_id = ?2",
                )?
                .query_row(params![seq, transaction_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
        ))
    }

    fn apply(&mut self, b: &Batch, event: &str) -> Result<Applied, StoreError> {
        apply_in(self.0, b, Some(event))
    }

    fn record(&mut self, d: &Delivery, outcome: &str, horizon: &str) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO webhook_events (id, event, received_at, applied_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![d.id, d.event, d.received_at, now(), outcome])?;
        self.0
            .prepare_cached("DELETE FROM webhook_events WHERE received_at < ?1")?
            .execute(params![horizon])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn migration_11_keeps_every_change_row_as_polled_and_a_webhook_change_needs_no_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut old = rusqlite::Connection::open(&path).unwrap();
        crate::store::migrations().to_version(&mut old, 10).unwrap();
        old.execute_batch(
            "INSERT INTO sync_runs (id, kind, started_at, outcome) VALUES (7, 'sync', '2025-01-01T00:00:00.000000Z', 'succeeded');
             INSERT INTO changes (run_id, observed_at, entity, entity_id, customer_id, kind, fields) VALUES
                 (7, '2025-01-01T00:00:01.000000Z', 'transaction', 'tx_1', 'cus_a', 'updated',
                  '{\"status\":{\"old\":\"completed\",\"new\":\"refunded\"}}');",
        )
        .unwrap();
        drop(old);
        let store = SqliteStore::open(&path, Duration::from_secs(5)).unwrap();
        let c = store.conn();
        let row: (i64, String, Option<String>) = c
            .query_row(
                "SELECT run_id, source, webhook_event FROM changes WHERE entity_id = 'tx_1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(row, (7, "poll".to_string(), None));
        // The refunds view reads the rebuilt table.
        c.query_row("SELECT count(*) FROM refunds", [], |r| r.get::<_, i64>(0))
            .unwrap();
        let insert = |run: Option<i64>, source: &str, event: Option<&str>| {
            c.execute(
                "INSERT INTO changes (run_id, observed_at, entity, entity_id, customer_id, kind, source, webhook_event)
                 VALUES (?1, 'x', 'transaction', 't', 'c', 'updated', ?2, ?3)",
                params![run, source, event],
            )
        };
        assert!(insert(None, "webhook", Some("evt_1")).is_ok());
        assert!(
            insert(None, "poll", None).is_err(),
            "a polled change has a run"
        );
        assert!(
            insert(Some(7), "webhook", None).is_err(),
            "a webhook's names its delivery"
        );
    }

    #[test]
    fn delivery_records_are_kept_two_days_then_pruned_by_the_next_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let mut store =
            SqliteStore::open(&dir.path().join("m.db"), Duration::from_secs(5)).unwrap();
        let at =
            |ago: chrono::Duration| crate::api::model::format_timestamp(chrono::Utc::now() - ago);
        for (id, ago) in [
            ("old", chrono::Duration::hours(49)),
            ("recent", chrono::Duration::hours(47)),
        ] {
            store
                .conn()
                .execute(
                    "INSERT INTO webhook_events VALUES (?1, 'PAYMENT_SUCCEEDED', ?2, ?2, 'applied')",
                    params![id, at(ago)],
                )
                .unwrap();
        }
        let w = WebhookBatch {
            delivery: Delivery {
                id: "new".into(),
                event: "PAYMENT_SUCCEEDED".into(),
                received_at: now(),
            },
            row: Transaction::from_value(
                serde_json::json!({"transaction_id": "t", "customer_id": "c"}),
            )
            .unwrap(),
            revalidated: true,
            gone: true,
            customers: Vec::new(),
            gone_customers: Vec::new(),
        };
        store.begin().unwrap();
        assert!(matches!(
            store.apply_webhook_open(&w),
            Ok(WebhookResult::Written(_))
        ));
        assert!(matches!(
            store.apply_webhook_open(&w),
            Ok(WebhookResult::Duplicate)
        ));
        store.commit().unwrap();
        let ids: Vec<String> = store
            .conn()
            .prepare("SELECT id FROM webhook_events ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, ["new", "recent"]);
    }

    const T1: &str = "2025-06-01T10:00:00.000000Z";
    const T2: &str = "2025-06-01T10:00:05.000000Z";

    fn facts<'a>(updated_at: Option<&'a str>, status: &'a str) -> RowFacts<'a> {
        RowFacts {
            updated_at,
            status: Some(status),
        }
    }

    #[test]
    fn the_ordering_rule_as_a_table() {
        use Decision::*;
        #[rustfmt::skip]
        let rows: &[(&str, RowFacts, Option<RowFacts>, bool, Decision)] = &[
            ("new row, final state", facts(Some(T1), "completed"), None, false, Apply),
            ("new row, pending: nothing to regress", facts(Some(T1), "pending"), None, false, Apply),
            ("new row, unknown status", facts(Some(T1), "on_hold"), None, false, Apply),
            ("new row, revalidated", facts(Some(T1), "pending"), None, true, Apply),
            ("newer, final", facts(Some(T2), "completed"), Some(facts(Some(T1), "pending")), false, Apply),
            ("older: never regress", facts(Some(T1), "pending"), Some(facts(Some(T2), "completed")), false, SkipOlder),
            ("older and final: still skipped", facts(Some(T1), "failed"), Some(facts(Some(T2), "refunded")), false, SkipOlder),
            ("tie, other state: ask", facts(Some(T1), "failed"), Some(facts(Some(T1), "completed")), false, Revalidate),
            ("tie, same state", facts(Some(T1), "completed"), Some(facts(Some(T1), "completed")), false, Apply),
            ("newer but pending: ask", facts(Some(T2), "pending"), Some(facts(Some(T1), "pending")), false, Revalidate),
            ("revalidated tie", facts(Some(T1), "failed"), Some(facts(Some(T1), "completed")), true, Apply),
            ("revalidated but older", facts(Some(T1), "completed"), Some(facts(Some(T2), "refunded")), true, SkipOlder),
            ("stored without updated_at, same state", facts(Some(T2), "completed"), Some(facts(None, "completed")), false, Apply),
            ("stored without updated_at, other state", facts(Some(T2), "completed"), Some(facts(None, "pending")), false, Revalidate),
            ("event without updated_at, other state", facts(None, "completed"), Some(facts(Some(T1), "pending")), false, Revalidate),
        ];
        for (why, incoming, stored, revalidated, want) in rows {
            assert_eq!(decide(*incoming, *stored, *revalidated), *want, "{why}");
        }
    }
}
