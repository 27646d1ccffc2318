//! The API's objects, checked field by field. Every object keeps the JSON it came in
//! (`raw`), so fields the API adds later reach the mirror even before this code knows
//! them; the typed fields are what the mirror's columns are made of.
//!
//! Both id spellings are accepted: the docs' `id` and the live service's `customer_id`.
//!
//! Parsing has two paths. The fast one borrows every field straight from the response
//! bytes into a typed struct and keeps each object's JSON text as it came: a backfill
//! reads about a million objects, and building (then dropping) a `Value` tree for each
//! was most of the client's CPU time. Anything the fast path does not accept is parsed
//! again as a `Value` by the slow path, which either accepts it or says precisely which
//! field is wrong.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::money::{Decimal, minor_unit_exponent};

/// A JSON object as received.
pub type RawObject = Map<String, Value>;

/// Why a response body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

fn shape(msg: impl Into<String>) -> ShapeError {
    ShapeError(msg.into())
}

/// One customer. Optional fields are `None` when absent or `null`.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: String,
    pub organization_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub whatsapp_number: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub address: Option<String>,
    pub postal_code: Option<String>,
    pub is_business: Option<bool>,
    /// The metadata object as JSON text. `None` when the API sent `null` or nothing:
    /// for list items of the live service this means "not shown", not "empty".
    pub metadata: Option<String>,
    /// The object says `metadata: null`: the live list's way of not showing it.
    pub metadata_null: bool,
    pub environment: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// The object's JSON text as received, every field kept.
    pub raw: String,
}

/// One page of `GET /customers`.
#[derive(Debug, Clone)]
pub struct CustomerPage {
    pub customers: Vec<Customer>,
    pub page: u64,
    pub page_size: u64,
    pub total_count: u64,
    pub total_pages: u64,
}

/// One transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub transaction_id: String,
    pub description: Option<String>,
    /// The amount exactly as the API wrote it (`"10000"`, `"10.5"`).
    pub gross_amount: Option<String>,
    /// The amount in the currency's minor unit, when it is a whole number of them.
    pub amount_minor: Option<i64>,
    pub currency_code: Option<String>,
    pub status: Option<String>,
    pub payment_method_code: Option<String>,
    pub provider_code: Option<String>,
    /// Any non-null `metadata`, as JSON text.
    pub metadata: Option<String>,
    pub created_at: Option<String>,
    /// The object's JSON text as received, every field kept.
    pub raw: String,
}

fn opt_string(obj: &RawObject, key: &str, what: &str) -> Result<Option<String>, ShapeError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(shape(format!(
            "{what}: field `{key}` should be a string, got {}",
            kind(other)
        ))),
    }
}

fn opt_bool(obj: &RawObject, key: &str, what: &str) -> Result<Option<bool>, ShapeError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(shape(format!(
            "{what}: field `{key}` should be a boolean, got {}",
            kind(other)
        ))),
    }
}

fn opt_timestamp(obj: &RawObject, key: &str, what: &str) -> Result<Option<String>, ShapeError> {
    match opt_string(obj, key, what)? {
        None => Ok(None),
        Some(s) => normalize_timestamp(&s)
            .map(Some)
            .ok_or_else(|| shape(format!("{what}: field `{key}` is not a timestamp: `{s}`"))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An id: a non-empty string, or a number (kept as its text).
fn id_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Rewrites any RFC 3339 timestamp (or Postgres' `2024-01-15 10:30:00.123456+00`) as
/// UTC `YYYY-MM-DDTHH:MM:SS.sssZ`, which sorts as text and which SQLite's date
/// functions read.
pub fn normalize_timestamp(s: &str) -> Option<String> {
    use chrono::{DateTime, NaiveDateTime, Utc};
    if is_canonical_timestamp(s) {
        return Some(s.to_string());
    }
    let parsed = DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc()))
        .ok()?;
    Some(format_timestamp(parsed))
}

/// Already `YYYY-MM-DDTHH:MM:SS.sssZ` with a plausible date and time, as the API
/// writes nearly every timestamp: no need to parse and format it again.
fn is_canonical_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let num =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
        && (1..=12).contains(&num(5..7))
        && (1..=28).contains(&num(8..10))
        && num(11..13) < 24
        && num(14..16) < 60
        && num(17..19) < 60
}

/// The mirror's one timestamp format.
pub fn format_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Why a response body could not be used: not JSON at all (worth another try, as a
/// cut connection usually explains it), or JSON of the wrong shape (not worth one).
#[derive(Debug)]
pub enum BodyError {
    Json(serde_json::Error),
    Shape(ShapeError),
}

impl From<ShapeError> for BodyError {
    fn from(e: ShapeError) -> Self {
        BodyError::Shape(e)
    }
}

/// Parses a whole body as a `Value`: the slow path, for bodies the fast one refused.
fn slow_value(body: &[u8]) -> Result<Value, BodyError> {
    serde_json::from_slice(body).map_err(BodyError::Json)
}

/// `Some(None)` for a key sent as `null`, `None` for a missing key.
fn present<'de, D>(d: D) -> Result<Option<Option<&'de RawValue>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<&'de RawValue>::deserialize(d).map(Some)
}

/// An id as the fast path reads it: a non-empty string or a number.
fn raw_id(v: &RawValue) -> Option<String> {
    let text = v.get();
    if text.starts_with('"') {
        let s: Cow<str> = serde_json::from_str(text).ok()?;
        (!s.trim().is_empty()).then(|| s.into_owned())
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Some(text.to_string())
    } else {
        None
    }
}

fn own(s: Option<Cow<'_, str>>) -> Option<String> {
    s.map(Cow::into_owned)
}

fn fast_timestamp(s: Option<Cow<'_, str>>) -> Result<Option<String>, ()> {
    match s {
        None => Ok(None),
        Some(s) => normalize_timestamp(&s).map(Some).ok_or(()),
    }
}

/// A customer's fields, borrowed from the response; unknown fields are skipped here
/// and kept in `raw`.
#[derive(Deserialize)]
struct CustomerFields<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    customer_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    organization_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    email: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    phone_number: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    whatsapp_number: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    country: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    city: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    address: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    postal_code: Option<Cow<'a, str>>,
    #[serde(default)]
    is_business: Option<bool>,
    #[serde(borrow, default, deserialize_with = "present")]
    metadata: Option<Option<&'a RawValue>>,
    #[serde(borrow, default)]
    environment: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    created_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    updated_at: Option<Cow<'a, str>>,
}

impl Customer {
    /// Checks one customer object given as a `Value` (tests, and the slow path).
    pub fn from_value(v: Value) -> Result<Customer, ShapeError> {
        let text = v.to_string();
        Customer::from_value_and_text(v, text)
    }

    /// Checks one customer object; `raw` keeps its text exactly as received.
    pub fn from_raw(raw: &RawValue) -> Result<Customer, ShapeError> {
        match Customer::fast(raw) {
            Some(c) => Ok(c),
            None => {
                let v = serde_json::from_str(raw.get())
                    .map_err(|e| shape(format!("a customer is not valid JSON: {e}")))?;
                Customer::from_value_and_text(v, raw.get().to_string())
            }
        }
    }

    /// Parses one customer body (`GET /customers/{id}`).
    pub fn from_body(body: &[u8]) -> Result<Customer, BodyError> {
        match serde_json::from_slice::<&RawValue>(body) {
            Ok(raw) => Ok(Customer::from_raw(raw)?),
            Err(_) => {
                let v = slow_value(body)?;
                let text = String::from_utf8_lossy(body).into_owned();
                Ok(Customer::from_value_and_text(v, text)?)
            }
        }
    }

    /// The fast path: `None` sends the object to the slow one.
    fn fast(raw: &RawValue) -> Option<Customer> {
        let f: CustomerFields = serde_json::from_str(raw.get()).ok()?;
        let id = match (f.id, f.customer_id) {
            (Some(a), Some(b)) if a.get() != b.get() => return None,
            (Some(v), _) | (None, Some(v)) => raw_id(v)?,
            (None, None) => return None,
        };
        let (metadata, metadata_null) = match f.metadata {
            None => (None, false),
            Some(None) => (None, true),
            Some(Some(m)) if m.get().starts_with('{') => (Some(m.get().to_string()), false),
            Some(Some(_)) => return None,
        };
        Some(Customer {
            id,
            organization_id: own(f.organization_id),
            name: own(f.name),
            email: own(f.email),
            phone_number: own(f.phone_number),
            whatsapp_number: own(f.whatsapp_number),
            country: own(f.country),
            city: own(f.city),
            address: own(f.address),
            postal_code: own(f.postal_code),
            is_business: f.is_business,
            metadata,
            metadata_null,
            environment: own(f.environment),
            created_at: fast_timestamp(f.created_at).ok()?,
            updated_at: fast_timestamp(f.updated_at).ok()?,
            raw: raw.get().to_string(),
        })
    }

    /// The slow path: checks field by field and says which one is wrong.
    pub(crate) fn from_value_and_text(v: Value, text: String) -> Result<Customer, ShapeError> {
        let Value::Object(raw) = v else {
            return Err(shape(format!(
                "a customer should be a JSON object, got {}",
                kind(&v)
            )));
        };
        let id = match (raw.get("id"), raw.get("customer_id")) {
            (Some(a), Some(b)) if !a.is_null() && !b.is_null() && a != b => {
                return Err(shape(format!(
                    "a customer has two different ids: id={a} customer_id={b}"
                )));
            }
            (Some(v), _) if !v.is_null() => id_value(v),
            (_, Some(v)) => id_value(v),
            _ => None,
        }
        .ok_or_else(|| shape("a customer has no `id` (or `customer_id`) string"))?;
        let what = format!("customer {id}");
        let metadata = match raw.get("metadata") {
            None | Some(Value::Null) => None,
            Some(m @ Value::Object(_)) => Some(m.to_string()),
            Some(other) => {
                return Err(shape(format!(
                    "{what}: field `metadata` should be an object, got {}",
                    kind(other)
                )));
            }
        };
        Ok(Customer {
            organization_id: opt_string(&raw, "organization_id", &what)?,
            name: opt_string(&raw, "name", &what)?,
            email: opt_string(&raw, "email", &what)?,
            phone_number: opt_string(&raw, "phone_number", &what)?,
            whatsapp_number: opt_string(&raw, "whatsapp_number", &what)?,
            country: opt_string(&raw, "country", &what)?,
            city: opt_string(&raw, "city", &what)?,
            address: opt_string(&raw, "address", &what)?,
            postal_code: opt_string(&raw, "postal_code", &what)?,
            is_business: opt_bool(&raw, "is_business", &what)?,
            environment: opt_string(&raw, "environment", &what)?,
            created_at: opt_timestamp(&raw, "created_at", &what)?,
            updated_at: opt_timestamp(&raw, "updated_at", &what)?,
            metadata_null: matches!(raw.get("metadata"), Some(Value::Null)),
            metadata,
            id,
            raw: text,
        })
    }
}

/// A list body as the fast path reads it: the items stay unparsed text.
#[derive(Deserialize)]
struct PageBody<'a> {
    #[serde(borrow)]
    customers: Vec<&'a RawValue>,
    pagination: Value,
}

impl CustomerPage {
    /// Parses a whole list body (`GET /customers`).
    pub fn from_body(body: &[u8]) -> Result<CustomerPage, BodyError> {
        match serde_json::from_slice::<PageBody>(body) {
            Ok(p) => Ok(CustomerPage::check(p.customers, &p.pagination, |raw| {
                Customer::from_raw(raw)
            })?),
            Err(_) => Ok(CustomerPage::from_value(slow_value(body)?)?),
        }
    }

    /// Checks a whole list response given as a `Value` (tests, and the slow path).
    pub fn from_value(v: Value) -> Result<CustomerPage, ShapeError> {
        let Value::Object(mut body) = v else {
            return Err(shape(format!(
                "the list response should be a JSON object, got {}",
                kind(&v)
            )));
        };
        let items = match body.remove("customers") {
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(shape(format!(
                    "`customers` should be an array, got {}",
                    kind(&other)
                )));
            }
            None => return Err(shape("the list response has no `customers` array")),
        };
        let pagination = body.remove("pagination").unwrap_or(Value::Null);
        CustomerPage::check(items, &pagination, Customer::from_value)
    }

    /// Checks the `customers` array, the `pagination` object and their consistency,
    /// and that no id appears twice on one page.
    fn check<T>(
        items: Vec<T>,
        pagination: &Value,
        customer: impl Fn(T) -> Result<Customer, ShapeError>,
    ) -> Result<CustomerPage, ShapeError> {
        let pagination = match pagination {
            Value::Object(p) => p,
            Value::Null => return Err(shape("the list response has no `pagination` object")),
            other => {
                return Err(shape(format!(
                    "`pagination` should be an object, got {}",
                    kind(other)
                )));
            }
        };
        let number = |key: &str| -> Result<u64, ShapeError> {
            pagination
                .get(key)
                .and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                })
                .ok_or_else(|| {
                    shape(format!(
                        "`pagination.{key}` should be a non-negative integer"
                    ))
                })
        };
        let page = number("page")?;
        let page_size = number("pageSize")?;
        let total_count = number("totalCount")?;
        // Neither `totalPages` nor a row count that disagrees with `pageSize` is trusted
        // or refused: the walk ends only at an empty page (NOTES.md), so totals that lie
        // cost nothing but a warning's worth of doubt.
        let total_pages =
            number("totalPages").unwrap_or_else(|_| total_count.div_ceil(page_size.max(1)));
        let customers = items
            .into_iter()
            .map(customer)
            .collect::<Result<Vec<_>, _>>()?;
        let mut ids: Vec<&str> = customers.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(shape(format!(
                "customer {} appears twice on one page",
                w[0]
            )));
        }
        Ok(CustomerPage {
            customers,
            page,
            page_size,
            total_count,
            total_pages,
        })
    }
}

/// A transaction's fields, borrowed from the response.
#[derive(Deserialize)]
struct TransactionFields<'a> {
    #[serde(borrow, default)]
    transaction_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    gross_amount: Option<&'a RawValue>,
    #[serde(borrow, default)]
    currency_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    payment_method_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    provider_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    created_at: Option<Cow<'a, str>>,
}

/// The exact amount of a transaction and, when whole, its minor units.
fn amounts(gross: Option<String>, currency: Option<&str>) -> (Option<String>, Option<i64>) {
    let minor = match (&gross, currency) {
        (Some(a), Some(c)) => Decimal::parse(a).and_then(|d| d.to_minor(minor_unit_exponent(c))),
        _ => None,
    };
    (gross, minor)
}

impl Transaction {
    /// Checks one transaction given as a `Value` (tests, and the slow path).
    pub fn from_value(v: Value) -> Result<Transaction, ShapeError> {
        let text = v.to_string();
        Transaction::from_value_and_text(v, text)
    }

    /// Checks one transaction; `raw` keeps its text exactly as received.
    pub fn from_raw(raw: &RawValue) -> Result<Transaction, ShapeError> {
        match Transaction::fast(raw) {
            Some(t) => Ok(t),
            None => {
                let v = serde_json::from_str(raw.get())
                    .map_err(|e| shape(format!("a transaction is not valid JSON: {e}")))?;
                Transaction::from_value_and_text(v, raw.get().to_string())
            }
        }
    }

    fn fast(raw: &RawValue) -> Option<Transaction> {
        let f: TransactionFields = serde_json::from_str(raw.get()).ok()?;
        let transaction_id = raw_id(f.transaction_id.or(f.id)?)?;
        let gross = match f.gross_amount {
            None => None,
            Some(a)
                if a.get()
                    .starts_with(|c: char| c == '-' || c.is_ascii_digit()) =>
            {
                Some(a.get().to_string())
            }
            // Strings and anything else take the slow path, which checks them.
            Some(_) => return None,
        };
        let (gross_amount, amount_minor) = amounts(gross, f.currency_code.as_deref());
        Some(Transaction {
            transaction_id,
            description: own(f.description),
            gross_amount,
            amount_minor,
            currency_code: own(f.currency_code),
            status: own(f.status),
            payment_method_code: own(f.payment_method_code),
            provider_code: own(f.provider_code),
            metadata: f.metadata.map(|m| m.get().to_string()),
            created_at: fast_timestamp(f.created_at).ok()?,
            raw: raw.get().to_string(),
        })
    }

    /// The slow path: checks field by field. The amount is read as text, never as a
    /// float.
    fn from_value_and_text(v: Value, text: String) -> Result<Transaction, ShapeError> {
        let Value::Object(raw) = v else {
            return Err(shape(format!(
                "a transaction should be a JSON object, got {}",
                kind(&v)
            )));
        };
        let transaction_id = raw
            .get("transaction_id")
            .or_else(|| raw.get("id"))
            .and_then(id_value)
            .ok_or_else(|| shape("a transaction has no `transaction_id` string"))?;
        let what = format!("transaction {transaction_id}");
        let currency_code = opt_string(&raw, "currency_code", &what)?;
        let gross = match raw.get("gross_amount") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(s)) if Decimal::parse(s).is_some() => Some(s.trim().to_string()),
            Some(other) => {
                return Err(shape(format!(
                    "{what}: field `gross_amount` should be a number, got {}",
                    kind(other)
                )));
            }
        };
        let (gross_amount, amount_minor) = amounts(gross, currency_code.as_deref());
        let metadata = match raw.get("metadata") {
            None | Some(Value::Null) => None,
            Some(m) => Some(m.to_string()),
        };
        Ok(Transaction {
            description: opt_string(&raw, "description", &what)?,
            status: opt_string(&raw, "status", &what)?,
            payment_method_code: opt_string(&raw, "payment_method_code", &what)?,
            provider_code: opt_string(&raw, "provider_code", &what)?,
            created_at: opt_timestamp(&raw, "created_at", &what)?,
            gross_amount,
            amount_minor,
            currency_code,
            metadata,
            transaction_id,
            raw: text,
        })
    }

    /// Parses a transactions body: a bare array (the docs and the live service), or,
    /// tolerantly, an object wrapping it in `transactions` or `data`.
    pub fn list_from_body(body: &[u8]) -> Result<Vec<Transaction>, BodyError> {
        match serde_json::from_slice::<Vec<&RawValue>>(body) {
            Ok(items) => Ok(Transaction::check_list(items, Transaction::from_raw)?),
            Err(_) => Ok(Transaction::list_from_value(slow_value(body)?)?),
        }
    }

    /// Checks a transactions response given as a `Value` (tests, and the slow path).
    pub fn list_from_value(v: Value) -> Result<Vec<Transaction>, ShapeError> {
        let items = match v {
            Value::Array(items) => items,
            Value::Object(mut o) => match o.remove("transactions").or_else(|| o.remove("data")) {
                Some(Value::Array(items)) => items,
                _ => return Err(shape("the transactions response should be a JSON array")),
            },
            other => {
                return Err(shape(format!(
                    "the transactions response should be a JSON array, got {}",
                    kind(&other)
                )));
            }
        };
        Transaction::check_list(items, Transaction::from_value)
    }

    /// Checks every item, and that no id appears twice in one list.
    fn check_list<T>(
        items: Vec<T>,
        transaction: impl Fn(T) -> Result<Transaction, ShapeError>,
    ) -> Result<Vec<Transaction>, ShapeError> {
        let txs = items
            .into_iter()
            .map(transaction)
            .collect::<Result<Vec<_>, _>>()?;
        let mut ids: Vec<&str> = txs.iter().map(|t| t.transaction_id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(shape(format!(
                "transaction {} appears twice in one list",
                w[0]
            )));
        }
        Ok(txs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(customers: Value, total: u64) -> Value {
        json!({"customers": customers, "pagination": {"page": 1, "pageSize": 2, "totalCount": total, "totalPages": total.div_ceil(2)}})
    }

    #[test]
    fn customer_accepts_both_id_spellings_and_keeps_unknown_fields() {
        let a =
            Customer::from_value(json!({"id": "cus_1", "name": "Aïssatou", "loyalty": 3})).unwrap();
        assert_eq!(a.id, "cus_1");
        assert_eq!(
            serde_json::from_str::<Value>(&a.raw).unwrap()["loyalty"],
            json!(3)
        );
        let b = Customer::from_value(
            json!({"customer_id": "7f0c", "metadata": null, "environment": "live"}),
        )
        .unwrap();
        assert_eq!(b.id, "7f0c");
        assert_eq!(b.metadata, None);
        assert_eq!(b.environment.as_deref(), Some("live"));
    }

    #[test]
    fn customer_without_id_or_with_wrong_types_is_refused() {
        assert!(
            Customer::from_value(json!({"name": "x"}))
                .unwrap_err()
                .0
                .contains("no `id`")
        );
        assert!(Customer::from_value(json!({"id": ""})).is_err());
        let e = Customer::from_value(json!({"id": "c", "email": 5})).unwrap_err();
        assert!(e.0.contains("email") && e.0.contains("string"), "{e}");
        let e = Customer::from_value(json!({"id": "c", "is_business": "yes"})).unwrap_err();
        assert!(e.0.contains("is_business"), "{e}");
        let e = Customer::from_value(json!({"id": "c", "created_at": "yesterday"})).unwrap_err();
        assert!(e.0.contains("created_at"), "{e}");
    }

    #[test]
    fn fast_and_slow_paths_agree_and_raw_is_the_text_received() {
        let body = br#"{"customers":[
            {"id":"cus_1","name":"A\u00efssatou","email":null,"is_business":true,"metadata":{"vip":true},"created_at":"2024-01-15T10:30:00.000Z","updated_at":"2024-01-15T11:30:00.123456+01:00","loyalty":3},
            {"customer_id":"7f0c","metadata":null,"environment":"live"}],
            "pagination":{"page":1,"pageSize":2,"totalCount":2,"totalPages":1}}"#;
        let fast = CustomerPage::from_body(body).unwrap();
        let slow =
            CustomerPage::from_value(serde_json::from_slice::<Value>(body).unwrap()).unwrap();
        for (f, s) in fast.customers.iter().zip(&slow.customers) {
            let Customer { raw: fr, .. } = f.clone();
            let Customer { raw: sr, .. } = s.clone();
            assert_eq!(
                Customer {
                    raw: String::new(),
                    ..f.clone()
                },
                Customer {
                    raw: String::new(),
                    ..s.clone()
                }
            );
            let (fv, sv): (Value, Value) = (
                serde_json::from_str(&fr).unwrap(),
                serde_json::from_str(&sr).unwrap(),
            );
            assert_eq!(fv, sv);
        }
        let a = &fast.customers[0];
        assert!(
            a.raw.starts_with(r#"{"id":"cus_1","name":"A\u00efssatou""#),
            "{}",
            a.raw
        );
        assert!(a.raw.ends_with(r#""loyalty":3}"#));
        assert_eq!(a.name.as_deref(), Some("Aïssatou"));
        assert_eq!(a.metadata.as_deref(), Some(r#"{"vip":true}"#));
        assert_eq!(a.updated_at.as_deref(), Some("2024-01-15T10:30:00.123Z"));
        assert!(!a.metadata_null);
        assert!(fast.customers[1].metadata_null);
        assert_eq!(fast.customers[1].id, "7f0c");
    }

    #[test]
    fn body_errors_tell_bad_json_from_a_bad_shape() {
        assert!(matches!(
            Transaction::list_from_body(br#"[{"transaction_id":"t1","gross"#),
            Err(BodyError::Json(e)) if e.is_eof()
        ));
        match Customer::from_body(br#"{"id":"c","email":5}"#) {
            Err(BodyError::Shape(e)) => assert!(e.0.contains("email"), "{e}"),
            other => panic!("{other:?}"),
        }
        match CustomerPage::from_body(br#"{"customers":[{"id":"a"}]}"#) {
            Err(BodyError::Shape(e)) => assert!(e.0.contains("pagination"), "{e}"),
            other => panic!("{other:?}"),
        }
        // The tolerated wrapper goes by the slow path and still parses.
        let list = Transaction::list_from_body(br#"{"data":[{"transaction_id":"t"}]}"#).unwrap();
        assert_eq!(list[0].transaction_id, "t");
    }

    #[test]
    fn timestamps_are_normalised_to_utc_millis() {
        assert_eq!(
            normalize_timestamp("2024-02-29T23:59:59.999Z").unwrap(),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(normalize_timestamp("2023-02-29T10:00:00.000Z"), None);
        assert_eq!(normalize_timestamp("2024-13-01T10:00:00.000Z"), None);
        assert_eq!(
            normalize_timestamp("2024-01-15T10:30:00Z").unwrap(),
            "2024-01-15T10:30:00.000Z"
        );
        assert_eq!(
            normalize_timestamp("2024-01-15T11:30:00.123456+01:00").unwrap(),
            "2024-01-15T10:30:00.123Z"
        );
        assert_eq!(
            normalize_timestamp("2024-01-15 10:30:00.5+00").unwrap(),
            "2024-01-15T10:30:00.500Z"
        );
        assert_eq!(normalize_timestamp("nope"), None);
    }

    #[test]
    fn page_checks_pagination_and_duplicates() {
        let ok = CustomerPage::from_value(page(json!([{"id": "a"}, {"id": "b"}]), 3)).unwrap();
        assert_eq!(ok.total_pages, 2);
        let e = CustomerPage::from_value(page(json!([{"id": "a"}, {"id": "a"}]), 3)).unwrap_err();
        assert!(e.0.contains("twice"), "{e}");
        let e = CustomerPage::from_value(json!({"customers": []})).unwrap_err();
        assert!(e.0.contains("pagination"), "{e}");
        // Totals are not trusted, so totals that disagree are no reason to refuse a page.
        let odd = json!({"customers": [{"id": "a"}], "pagination": {"page": 1, "pageSize": 2, "totalCount": 3, "totalPages": 7}});
        assert_eq!(CustomerPage::from_value(odd).unwrap().total_pages, 7);
        let no_pages =
            json!({"customers": [], "pagination": {"page": 1, "pageSize": 2, "totalCount": 3}});
        assert_eq!(CustomerPage::from_value(no_pages).unwrap().total_pages, 2);
        assert!(CustomerPage::from_value(json!([1])).is_err());
    }

    #[test]
    fn amounts_are_read_exactly() {
        let v: Value = serde_json::from_str(
            r#"[{"transaction_id":"t1","gross_amount":10.5,"currency_code":"USD"},
                {"transaction_id":"t2","gross_amount":10000,"currency_code":"XOF"},
                {"transaction_id":"t3","gross_amount":"0.1","currency_code":"EUR"},
                {"transaction_id":"t4","gross_amount":0.30000000000000004,"currency_code":"EUR"}]"#,
        )
        .unwrap();
        let txs = Transaction::list_from_value(v).unwrap();
        let fast = Transaction::list_from_body(
            br#"[{"transaction_id":"t1","gross_amount":10.5,"currency_code":"USD"},
                {"transaction_id":"t2","gross_amount":10000,"currency_code":"XOF"},
                {"transaction_id":"t3","gross_amount":"0.1","currency_code":"EUR"},
                {"transaction_id":"t4","gross_amount":0.30000000000000004,"currency_code":"EUR"}]"#,
        )
        .unwrap();
        for (f, s) in fast.iter().zip(&txs) {
            assert_eq!(
                (&f.gross_amount, f.amount_minor),
                (&s.gross_amount, s.amount_minor)
            );
        }
        assert_eq!(txs[0].gross_amount.as_deref(), Some("10.5"));
        assert_eq!(txs[0].amount_minor, Some(1050));
        assert_eq!(txs[1].amount_minor, Some(10000));
        assert_eq!(txs[2].amount_minor, Some(10));
        assert_eq!(txs[3].gross_amount.as_deref(), Some("0.30000000000000004"));
        assert_eq!(txs[3].amount_minor, None);
    }

    #[test]
    fn transaction_list_must_be_an_array_of_unique_ids() {
        assert!(Transaction::list_from_value(json!({"x": 1})).is_err());
        let e =
            Transaction::list_from_value(json!([{"transaction_id": "t"}, {"transaction_id": "t"}]))
                .unwrap_err();
        assert!(e.0.contains("twice"));
        let e =
            Transaction::list_from_value(json!([{"transaction_id": "t", "gross_amount": true}]))
                .unwrap_err();
        assert!(e.0.contains("gross_amount"));
    }
}
