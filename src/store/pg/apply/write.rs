//! How the PostgreSQL store writes many rows in few round trips: rows new to the mirror
//! with `COPY ... FROM STDIN` (text format; the writer holds the advisory lock, so a
//! row it did not find cannot appear before its commit), rows it holds with one
//! `UPDATE ... FROM unnest(text[], ...)` per table and batch. Every value travels as
//! text and PostgreSQL casts it to its column's type: amounts as the exact decimal text
//! to `numeric`, timestamps in the mirror's one text form to `timestamptz`, JSON text to
//! `jsonb`.

use std::borrow::Cow;
use std::io::Write;

use postgres::Client;
use postgres::types::{ToSql, Type};

use crate::api::model::{Customer, Transaction};
use crate::store::StoreError;

/// One value of a row, borrowed from the batch where it can be.
#[derive(Clone, Copy, Debug)]
pub(super) enum Val<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Bool(bool),
}

impl<'a> From<&'a Option<String>> for Val<'a> {
    fn from(v: &'a Option<String>) -> Val<'a> {
        v.as_deref().map_or(Val::Null, Val::Text)
    }
}

impl From<Option<i64>> for Val<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::Null, Val::Int)
    }
}

impl From<Option<bool>> for Val<'_> {
    fn from(v: Option<bool>) -> Self {
        v.map_or(Val::Null, Val::Bool)
    }
}

impl Val<'_> {
    /// The value as `COPY`'s text format writes it (`\N` for NULL; backslash, tab,
    /// newline and carriage return escaped).
    fn copy_into(self, buf: &mut Vec<u8>) {
        match self {
            Val::Null => buf.extend_from_slice(b"\\N"),
            Val::Int(i) => {
                let _ = write!(buf, "{i}");
            }
            Val::Bool(b) => buf.push(if b { b't' } else { b'f' }),
            Val::Text(s) => {
                for &c in s.as_bytes() {
                    match c {
                        b'\\' => buf.extend_from_slice(b"\\\\"),
                        b'\t' => buf.extend_from_slice(b"\\t"),
                        b'\n' => buf.extend_from_slice(b"\\n"),
                        b'\r' => buf.extend_from_slice(b"\\r"),
                        _ => buf.push(c),
                    }
                }
            }
        }
    }

    /// The value as an element of a `text[]` parameter.
    fn text(self) -> Option<String> {
        match self {
            Val::Null => None,
            Val::Int(i) => Some(i.to_string()),
            Val::Bool(b) => Some(b.to_string()),
            Val::Text(s) => Some(s.to_string()),
        }
    }
}

/// Bytes of `COPY` data sent at once: bounds the client's memory whatever the batch.
const COPY_CHUNK: usize = 256 * 1024;

/// Appends `rows` to `table`'s `columns` with one `COPY`; nothing when there are none.
pub(super) fn copy_rows<'a>(
    client: &mut Client,
    table: &str,
    columns: &str,
    rows: impl IntoIterator<Item = Vec<Val<'a>>>,
) -> Result<(), StoreError> {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut writer = client.copy_in(&format!("COPY {table} ({columns}) FROM STDIN"))?;
    let mut buf = Vec::with_capacity(COPY_CHUNK + 4096);
    for row in rows {
        for (i, v) in row.into_iter().enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            v.copy_into(&mut buf);
        }
        buf.push(b'\n');
        if buf.len() >= COPY_CHUNK {
            write_copy(&mut writer, table, &buf)?;
            buf.clear();
        }
    }
    write_copy(&mut writer, table, &buf)?;
    writer.finish()?;
    Ok(())
}

/// Sends one chunk of `COPY` data into `table`. The writer wraps the client's error in
/// an `io::Error`: unwrapped again, so it reads as any other database error.
fn write_copy(
    writer: &mut postgres::CopyInWriter<'_>,
    table: &str,
    buf: &[u8],
) -> Result<(), StoreError> {
    writer.write_all(buf).map_err(|e| {
        if e.get_ref()
            .is_some_and(|inner| inner.is::<postgres::Error>())
        {
            let inner = e.into_inner().expect("checked above");
            return StoreError::Postgres(*inner.downcast().expect("checked above"));
        }
        StoreError::Io {
            path: format!("COPY into {table}").into(),
            source: e,
        }
    })
}

/// A statement's parameter with its type: with the types given, a statement runs in one
/// round trip, unprepared (`execute_typed`), instead of a prepare and an execute.
pub(super) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// Runs `sql` with `rows` transposed into one `text[]` parameter per column (`$1` ..
/// `$k`), followed by `extra`; nothing when there are no rows.
pub(super) fn with_columns(
    client: &mut Client,
    sql: &str,
    rows: &[Vec<Val<'_>>],
    extra: &[Param<'_>],
) -> Result<u64, StoreError> {
    let Some(first) = rows.first() else {
        return Ok(0);
    };
    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(rows.len()); first.len()];
    for row in rows {
        for (column, v) in columns.iter_mut().zip(row) {
            column.push(v.text());
        }
    }
    let mut params: Vec<Param> = columns
        .iter()
        .map(|c| (c as &(dyn ToSql + Sync), Type::TEXT_ARRAY))
        .collect();
    params.extend_from_slice(extra);
    Ok(client.execute_typed(sql, &params)?)
}

/// The columns of a customer's row [`customer_values`] gives, in its order.
pub(super) const CUSTOMER_COLUMNS: &str = "id, organization_id, name, email, phone_number,
    whatsapp_number, country, city, address, postal_code, is_business, metadata, environment,
    created_at, updated_at, raw";

/// A customer's columns as [`CUSTOMER_COLUMNS`] names them.
pub(super) fn customer_values(c: &Customer) -> Vec<Val<'_>> {
    vec![
        Val::Text(&c.id),
        (&c.organization_id).into(),
        (&c.name).into(),
        (&c.email).into(),
        (&c.phone_number).into(),
        (&c.whatsapp_number).into(),
        (&c.country).into(),
        (&c.city).into(),
        (&c.address).into(),
        (&c.postal_code).into(),
        c.is_business.into(),
        (&c.metadata).into(),
        (&c.environment).into(),
        (&c.created_at).into(),
        (&c.updated_at).into(),
        Val::Text(&c.raw),
    ]
}

/// Inserts customers new to the mirror (`(row, details)`: see [`update_customers`]),
/// first seen and synced `at`.
pub(super) fn insert_customers(
    client: &mut Client,
    rows: &[(Cow<'_, Customer>, bool)],
    at: &str,
) -> Result<(), StoreError> {
    let values = rows.iter().map(|(c, details)| {
        let mut v = customer_values(c);
        let known = match (details, c.updated_at.as_deref()) {
            (false, _) => Val::Null,
            (true, Some(t)) => Val::Text(t),
            // Read, with no `updated_at` to be known as of (the schema's comment).
            (true, None) => Val::Text("-infinity"),
        };
        v.extend([Val::Text(at), Val::Text(at), known]);
        v
    });
    let columns = format!("{CUSTOMER_COLUMNS}, first_seen_at, synced_at, details_updated_at");
    copy_rows(client, "customers", &columns, values)
}

/// Replaces every column of customers the mirror holds, undeleted and synced `at`.
/// With `details` the object showed its metadata: `details_updated_at` becomes its
/// `updated_at` (the schema's "details known as of"); else it stays as it was.
pub(super) fn update_customers(
    client: &mut Client,
    rows: &[(Cow<'_, Customer>, bool)],
    at: &str,
) -> Result<(), StoreError> {
    let values: Vec<Vec<Val>> = rows
        .iter()
        .map(|(c, details)| {
            let mut v = customer_values(c);
            v.push(Val::Bool(*details));
            v
        })
        .collect();
    with_columns(
        client,
        "UPDATE customers AS c SET organization_id = u.organization_id, name = u.name,
             email = u.email, phone_number = u.phone_number, whatsapp_number = u.whatsapp_number,
             country = u.country, city = u.city, address = u.address,
             postal_code = u.postal_code, is_business = u.is_business::boolean,
             metadata = u.metadata::jsonb, environment = u.environment,
             created_at = u.created_at::timestamptz, updated_at = u.updated_at::timestamptz,
             synced_at = $18::text::timestamptz, deleted_at = NULL, raw = u.raw::jsonb,
             details_updated_at = CASE WHEN u.details::boolean
                                       THEN coalesce(u.updated_at::timestamptz, '-infinity')
                                       ELSE c.details_updated_at END
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::text[], $14::text[], $15::text[], $16::text[], $17::text[])
             AS u(id, organization_id, name, email, phone_number, whatsapp_number, country, city,
                  address, postal_code, is_business, metadata, environment, created_at,
                  updated_at, raw, details)
         WHERE c.id = u.id",
        &values,
        &[(&at, Type::TEXT)],
    )?;
    Ok(())
}

/// The columns of a transaction's row [`transaction_values`] gives, in its order: the
/// data, without the mirror's own times (`first_seen_at`, `synced_at`, `staged_at`).
pub(super) const TRANSACTION_COLUMNS: &str = "customer_id, transaction_id, description,
    gross_amount, amount_minor, currency_code, status, payment_method_code, provider_code,
    metadata, created_at, raw, transaction_type, discount_amount, discount_minor, fee_amount,
    fee_minor, net_amount, net_minor, updated_at";

/// Transaction `t`'s columns under `customer_id`, as [`TRANSACTION_COLUMNS`] names them.
pub(super) fn transaction_values<'a>(t: &'a Transaction, customer_id: &'a str) -> Vec<Val<'a>> {
    vec![
        Val::Text(customer_id),
        Val::Text(&t.transaction_id),
        (&t.description).into(),
        (&t.gross_amount).into(),
        t.amount_minor.into(),
        (&t.currency_code).into(),
        (&t.status).into(),
        (&t.payment_method_code).into(),
        (&t.provider_code).into(),
        (&t.metadata).into(),
        (&t.created_at).into(),
        Val::Text(&t.raw),
        (&t.transaction_type).into(),
        (&t.discount_amount).into(),
        t.discount_minor.into(),
        (&t.fee_amount).into(),
        t.fee_minor.into(),
        (&t.net_amount).into(),
        t.net_minor.into(),
        (&t.updated_at).into(),
    ]
}

/// A transaction to write: its customer and the row.
pub(super) type TxRow<'a> = (&'a str, Cow<'a, Transaction>);

/// Inserts transactions new to the mirror, first seen and synced `at`.
pub(super) fn insert_transactions(
    client: &mut Client,
    rows: &[TxRow<'_>],
    at: &str,
) -> Result<(), StoreError> {
    let values = rows.iter().map(|(customer_id, t)| {
        let mut v = transaction_values(t, customer_id);
        v.extend([Val::Text(at), Val::Text(at)]);
        v
    });
    let columns = format!("{TRANSACTION_COLUMNS}, first_seen_at, synced_at");
    copy_rows(client, "transactions", &columns, values)
}

/// Replaces every column of transactions the mirror holds (the feed's columns too: a
/// row merged over the stored one carries the values it kept), undeleted, synced `at`.
pub(super) fn update_transactions(
    client: &mut Client,
    rows: &[TxRow<'_>],
    at: &str,
) -> Result<(), StoreError> {
    let values: Vec<Vec<Val>> = rows
        .iter()
        .map(|(customer_id, t)| transaction_values(t, customer_id))
        .collect();
    with_columns(
        client,
        "UPDATE transactions AS t SET description = u.description,
             gross_amount = u.gross_amount::numeric, amount_minor = u.amount_minor::bigint,
             currency_code = u.currency_code, status = u.status,
             payment_method_code = u.payment_method_code, provider_code = u.provider_code,
             metadata = u.metadata::jsonb, created_at = u.created_at::timestamptz,
             synced_at = $21::text::timestamptz, deleted_at = NULL, raw = u.raw::jsonb,
             transaction_type = u.transaction_type, discount_amount = u.discount_amount::numeric,
             discount_minor = u.discount_minor::bigint, fee_amount = u.fee_amount::numeric,
             fee_minor = u.fee_minor::bigint, net_amount = u.net_amount::numeric,
             net_minor = u.net_minor::bigint, updated_at = u.updated_at::timestamptz
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                     $18::text[], $19::text[], $20::text[])
             AS u(customer_id, transaction_id, description, gross_amount, amount_minor,
                  currency_code, status, payment_method_code, provider_code, metadata,
                  created_at, raw, transaction_type, discount_amount, discount_minor,
                  fee_amount, fee_minor, net_amount, net_minor, updated_at)
         WHERE t.customer_id = u.customer_id AND t.transaction_id = u.transaction_id",
        &values,
        &[(&at, Type::TEXT)],
    )?;
    Ok(())
}
