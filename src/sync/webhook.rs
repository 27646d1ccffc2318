//! Webhook deliveries into the mirror (issue 16; NOTES.md, "Webhooks"): the envelope
//! read from a verified body, and a payment or refund event applied through the
//! daemon's one writer thread, as a feed row is (the same conversion of the API's
//! transaction row, [`Transaction::from_raw`], and the same store path).
//!
//! Webhooks are hints layered on polling: they can be lost, late, duplicated or out of
//! order, and the scheduled runs still reconcile everything. So a delivery never
//! regresses a row, and when its order cannot be trusted (a tie on `updated_at` with
//! another state, or a state that is not final) the transaction is read from the API
//! (`GET /transactions/{id}`) and that is applied instead; the rule is
//! [`crate::store::decide`], checked in the transaction that writes. The API is called
//! here, never by the store.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::SyncError;
use super::feed::{Owners, read_owner};
use super::writer::WriterHandle;
use crate::api::model::Transaction;
use crate::api::{ApiClient, ApiError};
use crate::store::{Delivery, WebhookBatch, WebhookResult, now};

/// The payment and refund events a mirror applies (NOTES.md, "Webhooks"); every other
/// kind (subscriptions, usage) is acknowledged and ignored.
pub const PAYMENT_EVENTS: [&str; 6] = [
    "PAYMENT_CREATED",
    "PAYMENT_SUCCEEDED",
    "PAYMENT_FAILED",
    "REFUND_CREATED",
    "REFUND_COMPLETED",
    "REFUND_FAILED",
];

/// Rounds of writer and API a delivery may take: the event, then after a
/// revalidation, then with its customer read.
const MAX_ROUNDS: usize = 4;

/// A body that is not a webhook envelope (the listener answers 400).
#[derive(Debug, thiserror::Error)]
#[error("the body is not a lomi. webhook envelope: {0}")]
pub struct EnvelopeError(String);

/// A delivery's envelope: `{"id", "event", "timestamp", "data", "lomi_environment"}`.
#[derive(Debug)]
pub struct Envelope {
    /// The delivery's id, stable across the vendor's retries.
    pub id: String,
    /// The event kind (`PAYMENT_SUCCEEDED`, ...).
    pub event: String,
    /// For a payment or refund event, `data`: the transaction as
    /// `GET /transactions/{id}` shows it. `None` for other kinds.
    pub row: Option<Transaction>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    id: String,
    event: String,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

impl Envelope {
    /// Reads a verified body. A payment or refund event must carry its transaction,
    /// with an id, in `data`.
    pub fn parse(body: &[u8]) -> Result<Envelope, EnvelopeError> {
        let wire: Wire = serde_json::from_slice(body).map_err(|e| EnvelopeError(e.to_string()))?;
        if wire.id.is_empty() {
            return Err(EnvelopeError("the envelope's `id` is empty".into()));
        }
        let row = if PAYMENT_EVENTS.contains(&wire.event.as_str()) {
            let data = wire
                .data
                .ok_or_else(|| EnvelopeError(format!("a {} event has no `data`", wire.event)))?;
            Some(Transaction::from_raw(data).map_err(|e| EnvelopeError(e.0))?)
        } else {
            None
        };
        Ok(Envelope {
            id: wire.id,
            event: wire.event,
            row,
        })
    }
}

/// What became of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Committed: `rows` customer and transaction rows written.
    Applied {
        /// Rows written.
        rows: u64,
    },
    /// Committed, and the mirror already held that state.
    Unchanged,
    /// Older than the mirror's row: nothing written but its record.
    Stale,
    /// Its envelope id was applied before: nothing written.
    Duplicate,
    /// Not a payment or refund event, or a transaction the API could not confirm (no
    /// customer, or its customer gone): nothing written.
    Ignored,
}

/// Why a delivery could not be applied (the listener answers 5xx: the vendor retries).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Reading the transaction or its customer from the API failed.
    #[error("reading the API for the delivery failed: {0}")]
    Api(#[source] ApiError),
    /// The mirror could not be written (or the writer thread is gone).
    #[error("the delivery could not be written: {0}")]
    Write(#[source] SyncError),
    /// The mirror kept asking for more (a bug, not the source's fault).
    #[error("the delivery was not settled after {MAX_ROUNDS} rounds; the next run reconciles it")]
    Unsettled,
}

/// Applies deliveries: the daemon's client and a handle to its writer thread.
#[derive(Clone)]
pub struct Webhooks {
    client: ApiClient,
    writer: WriterHandle,
}

impl Webhooks {
    /// Deliveries applied through `writer` (the daemon's), reading with `client`.
    pub fn new(client: ApiClient, writer: WriterHandle) -> Webhooks {
        Webhooks { client, writer }
    }

    /// Applies one verified delivery and returns once it is committed. The writer says
    /// what else it needs: the API's own state of the transaction, or its customer.
    pub async fn deliver(&self, env: Envelope) -> Result<Delivered, WebhookError> {
        let Some(row) = env.row else {
            return Ok(Delivered::Ignored);
        };
        let mut w = WebhookBatch {
            delivery: Delivery {
                id: env.id,
                event: env.event,
                received_at: now(),
            },
            row,
            revalidated: false,
            gone: false,
            customers: Vec::new(),
            gone_customers: Vec::new(),
        };
        for _ in 0..MAX_ROUNDS {
            if w.row.customer_id.is_none() && !w.gone {
                if w.revalidated || !self.revalidate(&mut w).await? {
                    return Ok(ignored(&w));
                }
                continue;
            }
            let result = self.writer.webhook(w.clone()).await;
            match result.map_err(WebhookError::Write)? {
                WebhookResult::Written(n) if n.rows_written() > 0 => {
                    return Ok(Delivered::Applied {
                        rows: n.rows_written(),
                    });
                }
                WebhookResult::Written(_) => return Ok(Delivered::Unchanged),
                WebhookResult::Stale => return Ok(Delivered::Stale),
                WebhookResult::Duplicate => return Ok(Delivered::Duplicate),
                WebhookResult::Revalidate => {
                    if !self.revalidate(&mut w).await? {
                        return Ok(ignored(&w));
                    }
                }
                WebhookResult::NeedCustomer => self.read_customer(&mut w).await?,
            }
        }
        Err(WebhookError::Unsettled)
    }

    /// Replaces the event's row with the API's (`GET /transactions/{id}`). A 404 there
    /// proves nothing alone (a key without the feed's routes gets 404 for every id,
    /// NOTES.md), so then, as on "no access", the customer's list decides: the row it
    /// shows, or, a complete list without it, gone (as a run concludes). False when the
    /// API cannot say (the customer is gone too, or its list skipped records): nothing
    /// is written and the next run reconciles.
    async fn revalidate(&self, w: &mut WebhookBatch) -> Result<bool, WebhookError> {
        let id = w.row.transaction_id.clone();
        w.revalidated = true;
        match self.client.get_transaction(&id).await {
            Ok(Some(t)) => {
                w.row = t;
                return Ok(true);
            }
            Ok(None) => {}
            Err(e) if e.is_no_access() => {}
            Err(e) => return Err(WebhookError::Api(e)),
        }
        let Some(customer) = w.row.customer_id.clone() else {
            return Ok(false);
        };
        let list = self
            .client
            .customer_transactions(&customer)
            .await
            .map_err(WebhookError::Api)?;
        let Some(list) = list else {
            return Ok(false);
        };
        let complete = list.skipped.is_empty();
        match list
            .transactions
            .into_iter()
            .find(|t| t.transaction_id == id)
        {
            // The per-customer row does not name its customer.
            Some(t) => {
                w.row = Transaction {
                    customer_id: Some(customer),
                    ..t
                };
                Ok(true)
            }
            None if complete => {
                w.gone = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Reads the row's customer, which the mirror lacks (`GET /customers/{id}`): the
    /// customer, or its tombstone if the API no longer shows it. The event is kept.
    async fn read_customer(&self, w: &mut WebhookBatch) -> Result<(), WebhookError> {
        let Some(id) = w.row.customer_id.clone() else {
            return Ok(());
        };
        let mut owners = Owners::default();
        read_owner(&self.client, id, &mut owners)
            .await
            .map_err(WebhookError::Api)?;
        w.customers = owners.customers;
        w.gone_customers = owners.gone;
        Ok(())
    }
}

/// A delivery the API could not confirm: logged, nothing written (polling repairs it).
fn ignored(w: &WebhookBatch) -> Delivered {
    tracing::warn!(
        id = %w.delivery.id,
        transaction = %w.row.transaction_id,
        "the API could not confirm a webhook's transaction (no customer, or the customer is gone): \
         nothing written; the next run reconciles it"
    );
    Delivered::Ignored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_read_and_payment_events_carry_their_row() {
        let body = br#"{"id":"evt_1","event":"PAYMENT_SUCCEEDED","timestamp":"2025-06-01T10:00:00Z",
            "data":{"transaction_id":"t1","customer_id":"c1","status":"completed","gross_amount":10.5,
                    "currency_code":"USD","updated_at":"2025-06-01T10:00:00.5+00:00"},
            "lomi_environment":"test"}"#;
        let env = Envelope::parse(body).unwrap();
        let row = env.row.unwrap();
        assert_eq!(
            (env.id.as_str(), row.customer_id.as_deref()),
            ("evt_1", Some("c1"))
        );
        assert_eq!(row.amount_minor, Some(1050));
        assert_eq!(
            row.updated_at.as_deref(),
            Some("2025-06-01T10:00:00.500000Z")
        );
        assert!(row.raw.contains("\"gross_amount\":10.5"), "{}", row.raw);
        let other = Envelope::parse(br#"{"id":"e","event":"SUBSCRIPTION_RENEWED","data":{}}"#);
        assert!(other.unwrap().row.is_none());
        for bad in [
            &b"not json"[..],
            br#"{"event":"PAYMENT_CREATED"}"#,
            br#"{"id":"e","event":"PAYMENT_CREATED"}"#,
            br#"{"id":"e","event":"PAYMENT_CREATED","data":{"status":"pending"}}"#,
            br#"{"id":"","event":"PAYMENT_CREATED","data":{"transaction_id":"t"}}"#,
        ] {
            assert!(
                Envelope::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
