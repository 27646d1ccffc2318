//! What `verify` compares with a source's truth, read from the SQLite mirror: the live
//! customers and live transactions with their raw JSON and the typed columns derived
//! from it, every value in the mirror's text form. `pg/verify_rows.rs` reads the same
//! from PostgreSQL, so `verify.rs` holds the one comparison for both stores.

use super::{SqliteStore, StoreError};

/// A live customer as the mirror holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyCustomer {
    /// `customers.id`.
    pub id: String,
    /// The JSON object last received (`raw`).
    pub raw: String,
    /// `created_at`, in the mirror's text form.
    pub created_at: Option<String>,
    /// `updated_at`, in the mirror's text form.
    pub updated_at: Option<String>,
    /// Its details are pending: `details_updated_at` NULL or not its `updated_at` (the
    /// background fill has not read `GET /customers/{id}` since it last changed).
    pub details_pending: bool,
}

/// A live transaction as the mirror holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyTransaction {
    /// The customer it belongs to.
    pub customer_id: String,
    /// `transaction_id`.
    pub transaction_id: String,
    /// The JSON object last received (`raw`).
    pub raw: String,
    /// `created_at`, in the mirror's text form.
    pub created_at: Option<String>,
    /// `currency_code`.
    pub currency_code: Option<String>,
}

impl SqliteStore {
    /// Every live customer (see [`VerifyCustomer`]), for `verify`.
    pub fn verify_customers(&self) -> Result<Vec<VerifyCustomer>, StoreError> {
        let mut stmt = self.conn().prepare(
            "SELECT id, raw, created_at, updated_at,
                    details_updated_at IS NULL OR details_updated_at <> COALESCE(updated_at, '')
             FROM customers WHERE deleted_at IS NULL",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(VerifyCustomer {
                id: r.get(0)?,
                raw: r.get(1)?,
                created_at: r.get(2)?,
                updated_at: r.get(3)?,
                details_pending: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every live transaction (see [`VerifyTransaction`]), for `verify`.
    pub fn verify_transactions(&self) -> Result<Vec<VerifyTransaction>, StoreError> {
        let mut stmt = self.conn().prepare(
            "SELECT customer_id, transaction_id, raw, created_at, currency_code
             FROM transactions WHERE deleted_at IS NULL",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(VerifyTransaction {
                customer_id: r.get(0)?,
                transaction_id: r.get(1)?,
                raw: r.get(2)?,
                created_at: r.get(3)?,
                currency_code: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
