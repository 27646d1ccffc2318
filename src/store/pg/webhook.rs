//! One webhook delivery in PostgreSQL: the rules are SQLite's, shared
//! (`store::webhook::webhook_in`, `decide`); this module answers its questions in
//! PostgreSQL and writes through the store's `apply_in`, under a savepoint, so a
//! delivery that fails rolls back only itself, never the run's batches it shares a
//! group commit with.

use postgres::Client;

use super::PgStore;
use crate::store::webhook::{Stored, WebhookTx, webhook_in};
use crate::store::{Applied, Batch, Delivery, StoreError, WebhookBatch, WebhookResult, now};

impl PgStore {
    /// See `SqliteStore::webhook_seen`.
    pub fn webhook_seen(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|c| PgWebhook(c).seen(id))
    }

    /// See `SqliteStore::apply_webhook_open`: inside the transaction
    /// [`PgStore::begin`] opened, under the savepoint `webhook`.
    pub fn apply_webhook_open(&mut self, w: &WebhookBatch) -> Result<WebhookResult, StoreError> {
        self.with(|c| {
            c.batch_execute("SAVEPOINT webhook")?;
            match webhook_in(&mut PgWebhook(c), w) {
                Ok(r) => {
                    c.batch_execute("RELEASE webhook")?;
                    Ok(r)
                }
                Err(e) => {
                    c.batch_execute("ROLLBACK TO webhook; RELEASE webhook")?;
                    Err(e)
                }
            }
        })
    }
}

/// PostgreSQL's answers to [`webhook_in`], on the writer's connection.
struct PgWebhook<'a>(&'a mut Client);

impl WebhookTx for PgWebhook<'_> {
    fn seen(&mut self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .0
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM webhook_events WHERE id = $1)",
                &[&id],
            )?
            .get(0))
    }

    fn stored(
        &mut self,
        customer_id: &str,
        transaction_id: &str,
    ) -> Result<Option<Option<Stored>>, StoreError> {
        // One row per known customer: its transaction's facts, or NULLs (`found`
        // false) when the mirror holds no such row.
        let row = self.0.query_opt(
            "SELECT t.transaction_id IS NOT NULL, ts_text(t.updated_at), t.status
             FROM customers c
             LEFT JOIN transactions t ON t.customer_id = c.id AND t.transaction_id = $2
             WHERE c.id = $1",
            &[&customer_id, &transaction_id],
        )?;
        Ok(row.map(|r| r.get::<_, bool>(0).then(|| (r.get(1), r.get(2)))))
    }

    fn apply(&mut self, b: &Batch, event: &str) -> Result<Applied, StoreError> {
        super::apply::apply_in(self.0, b, Some(event))
    }

    fn record(&mut self, d: &Delivery, outcome: &str, horizon: &str) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO webhook_events (id, event, received_at, applied_at, outcome)
             VALUES ($1, $2, $3::text::timestamptz, $4::text::timestamptz, $5)",
            &[&d.id, &d.event, &d.received_at, &now(), &outcome],
        )?;
        self.0.execute(
            "DELETE FROM webhook_events WHERE received_at < $1::text::timestamptz",
            &[&horizon],
        )?;
        Ok(())
    }
}
