//! What `verify` compares, read from the PostgreSQL mirror in the mirror's text forms
//! (`ts_text` for timestamps, `raw::text` for the JSON): the same rows as SQLite's
//! (`store/verify_rows.rs`, whose doc says what each is).

use super::PgStore;
use crate::store::{StoreError, VerifyCustomer, VerifyTransaction};

impl PgStore {
    /// See `SqliteStore::verify_customers`.
    pub fn verify_customers(&self) -> Result<Vec<VerifyCustomer>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT id, raw::text, ts_text(created_at), ts_text(updated_at),
                        details_updated_at IS DISTINCT FROM coalesce(updated_at, '-infinity')
                 FROM customers WHERE deleted_at IS NULL",
                &[],
            )?;
            Ok::<_, postgres::Error>(
                rows.iter()
                    .map(|r| VerifyCustomer {
                        id: r.get(0),
                        raw: r.get(1),
                        created_at: r.get(2),
                        updated_at: r.get(3),
                        details_pending: r.get(4),
                    })
                    .collect(),
            )
        })
    }

    /// See `SqliteStore::verify_transactions`.
    pub fn verify_transactions(&self) -> Result<Vec<VerifyTransaction>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT customer_id, transaction_id, raw::text, ts_text(created_at), currency_code
                 FROM transactions WHERE deleted_at IS NULL",
                &[],
            )?;
            Ok::<_, postgres::Error>(
                rows.iter()
                    .map(|r| VerifyTransaction {
                        customer_id: r.get(0),
                        transaction_id: r.get(1),
                        raw: r.get(2),
                        created_at: r.get(3),
                        currency_code: r.get(4),
                    })
                    .collect(),
            )
        })
    }
}
