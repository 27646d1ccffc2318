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
//!
//! One odd record must not stop a mirror (issue 12): the slow path is lenient field by
//! field. A text column takes a number or a boolean as its text (`75001` -> `"75001"`),
//! and is NULL for an object or an array; `is_business` is NULL unless a boolean; a
//! timestamp is NULL unless it reads as one; a customer's `metadata` is NULL unless an
//! object. Each such field is logged as a warning naming the record and the field, and
//! `raw` always keeps what was sent. Only a record whose identity cannot be read (no
//! usable id, or two ids that disagree) is skipped, and counted ([`CustomerPage::skipped`],
//! [`TransactionList::skipped`]).
//!
//! A top-level `error` member (not null) makes a body an error, whatever the HTTP status:
//! `{"data":[],"error":{"message":"statement timeout"}}` is a failed request, never an
//! empty list ([`BodyError::ErrorBody`]).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use super::timestamp::{format_timestamp, normalize_timestamp};
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
    /// The customer's id, from `id` (docs) or `customer_id` (live); an opaque string
    /// (UUIDs live, `cus_...` in the docs; NOTES.md, "Customer objects").
    pub id: String,
    /// The organization (merchant) the customer belongs to.
    pub organization_id: Option<String>,
    /// The customer's name, as sent.
    pub name: Option<String>,
    /// Email address, as sent (not validated).
    pub email: Option<String>,
    /// Phone number, as sent (not validated).
    pub phone_number: Option<String>,
    /// WhatsApp number, as sent (not validated).
    pub whatsapp_number: Option<String>,
    /// Country, as sent (free text).
    pub country: Option<String>,
    /// City, as sent.
    pub city: Option<String>,
    /// Street address, as sent.
    pub address: Option<String>,
    /// Postal code, as text (a number the API sent becomes its text).
    pub postal_code: Option<String>,
    /// Whether the customer is a business; `None` unless the API sent a boolean.
    pub is_business: Option<bool>,
    /// The metadata object as JSON text. `None` when the API sent `null` or nothing:
    /// for list items of the live service this means "not shown", not "empty".
    pub metadata: Option<String>,
    /// The object says `metadata: null`: the live list's way of not showing it.
    pub metadata_null: bool,
    /// `"live"` or `"test"`; sent by `GET /customers/{id}` of the live service, often absent
    /// from list items (NOTES.md, "Customer objects").
    pub environment: Option<String>,
    /// When the customer was created: the mirror's UTC timestamp text
    /// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, [`normalize_timestamp`]); `None` if absent or unreadable.
    pub created_at: Option<String>,
    /// When the customer last changed, in the same form as `created_at`.
    pub updated_at: Option<String>,
    /// The object's JSON text as received, every field kept.
    pub raw: String,
}

/// One page of `GET /customers`.
#[derive(Debug, Clone)]
pub struct CustomerPage {
    /// The page's customers that could be read, in the API's order (newest first).
    pub customers: Vec<Customer>,
    /// Why each record of the page that could not be identified was skipped.
    pub skipped: Vec<String>,
    /// The page number the API says it served (1-based, `pagination.page`).
    pub page: u64,
    /// The page size the API says it used (`pagination.pageSize`).
    pub page_size: u64,
    /// `pagination.totalCount`: 0 on a page past the end, so it proves nothing about the
    /// customers that exist when the page is empty (NOTES.md, "Customer objects").
    pub total_count: u64,
    /// `pagination.totalPages`, or `totalCount / pageSize` rounded up when absent.
    pub total_pages: u64,
}

/// A customer's transactions (`GET /customers/{id}/transactions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransactionList {
    /// The transactions that could be read, in the API's order (newest first).
    pub transactions: Vec<Transaction>,
    /// Why each record that could not be identified was skipped. The list is then not
    /// known complete: what it lacks may be one of these.
    pub skipped: Vec<String>,
}

/// One transaction, from a customer's list (`GET /customers/{id}/transactions`) or from
/// the org-wide feed (`GET /transactions`, `GET /transactions/{id}`; NOTES.md, "The
/// org-wide transactions feed"). The feed's extra fields are `None` in a row from the
/// per-customer endpoint, which lacks them: `None` there means "not shown", not "empty".
/// Amounts are exact: the text as the API wrote it, and the integer of the currency's
/// minor unit when the amount is a whole number of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    /// The transaction's id, from `transaction_id`; an opaque string.
    pub transaction_id: String,
    /// The description, as sent.
    pub description: Option<String>,
    /// The amount exactly as the API wrote it (`"10000"`, `"10.5"`).
    pub gross_amount: Option<String>,
    /// The amount in the currency's minor unit, when it is a whole number of them.
    pub amount_minor: Option<i64>,
    /// ISO currency code, trimmed and upper case (`XOF`, `USD`); `raw` keeps the original.
    pub currency_code: Option<String>,
    /// `pending`, `completed`, `failed`, `refunded`, `expired` (the feed adds `cancelled`),
    /// kept as text so a new status is stored, not refused (NOTES.md, "Transactions").
    pub status: Option<String>,
    /// The payment method, as sent.
    pub payment_method_code: Option<String>,
    /// The payment provider, as sent.
    pub provider_code: Option<String>,
    /// Any non-null `metadata`, as JSON text.
    pub metadata: Option<String>,
    /// When the transaction was created: the mirror's UTC timestamp text
    /// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, [`normalize_timestamp`]).
    pub created_at: Option<String>,
    /// The feed's: the customer the transaction belongs to.
    pub customer_id: Option<String>,
    /// The feed's: `payment`, `refund` or `payout` (kept as text: a new kind the API
    /// adds is stored as it comes, not refused).
    pub transaction_type: Option<String>,
    /// The feed's, exact as [`Transaction::gross_amount`], with their minor units.
    pub discount_amount: Option<String>,
    /// [`Transaction::discount_amount`] in the currency's minor unit, when whole.
    pub discount_minor: Option<i64>,
    /// The feed's fee, exact as [`Transaction::gross_amount`].
    pub fee_amount: Option<String>,
    /// [`Transaction::fee_amount`] in the currency's minor unit, when whole.
    pub fee_minor: Option<i64>,
    /// `gross - discount - fee`, as the API computed it.
    pub net_amount: Option<String>,
    /// [`Transaction::net_amount`] in the currency's minor unit, when whole.
    pub net_minor: Option<i64>,
    /// The feed's: the last change, normalised to microseconds like `created_at`.
    pub updated_at: Option<String>,
    /// The object's JSON text as received, every field kept.
    pub raw: String,
}

/// Reads the typed fields of one object on the slow path, leniently: a field of an
/// unexpected type becomes its faithful text form or `None`, with a warning naming the
/// record and the field, instead of failing the record (and with it every later run).
struct Fields<'a> {
    obj: &'a RawObject,
    /// `customer cus_1` or `transaction tx_1`, for the warnings.
    what: &'a str,
    /// False when the store re-reads a merged object: its fields were warned about once.
    warn: bool,
}

impl Fields<'_> {
    /// Warns that `key` held `sent`, and what the column keeps (`note`).
    fn coerced(&self, key: &str, sent: &Value, note: &str) {
        if self.warn {
            tracing::warn!(
                record = self.what,
                field = key,
                "{}: field `{key}` holds {}: {note} (raw keeps what was sent)",
                self.what,
                kind(sent)
            );
        }
    }

    /// A text column: a number or a boolean is kept as its text, an object or an
    /// array as NULL.
    fn text(&self, key: &str) -> Option<String> {
        let v = self.obj.get(key)?;
        match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => {
                self.coerced(key, v, "stored as its text");
                Some(n.to_string())
            }
            Value::Bool(b) => {
                self.coerced(key, v, "stored as its text");
                Some(b.to_string())
            }
            Value::Array(_) | Value::Object(_) => {
                self.coerced(key, v, "stored as NULL");
                None
            }
        }
    }

    /// A boolean column: anything but a boolean is NULL (`"yes"`, `1`: no guessing).
    fn flag(&self, key: &str) -> Option<bool> {
        match self.obj.get(key)? {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            other => {
                self.coerced(key, other, "stored as NULL");
                None
            }
        }
    }

    /// An exact amount: a JSON number's text, or a string holding a decimal number;
    /// anything else is NULL. Never read as a float.
    fn decimal(&self, key: &str) -> Option<String> {
        match self.obj.get(key)? {
            Value::Null => None,
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) if Decimal::parse(s).is_some() => Some(s.trim().to_string()),
            other => {
                self.coerced(key, other, "not a decimal number, stored as NULL");
                None
            }
        }
    }

    /// A timestamp column, normalised ([`normalize_timestamp`]); NULL if unreadable.
    fn timestamp(&self, key: &str) -> Option<String> {
        let v = self.obj.get(key)?;
        match v {
            Value::Null => None,
            Value::String(s) => {
                let t = normalize_timestamp(s);
                if t.is_none() {
                    self.coerced(key, v, "not a readable timestamp, stored as NULL");
                }
                t
            }
            other => {
                self.coerced(key, other, "stored as NULL");
                None
            }
        }
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

/// The typed `currency_code`: trimmed and upper case, so that the views' join on the
/// `currencies` table and `amount_minor` agree whatever case the API used (`xof`).
/// `raw` keeps the original.
fn currency(code: Cow<'_, str>) -> String {
    let t = code.trim();
    if t.len() == code.len() && !t.bytes().any(|b| b.is_ascii_lowercase()) {
        code.into_owned()
    } else {
        t.to_ascii_uppercase()
    }
}

/// Why a response body could not be used: not JSON at all (worth another try, as a
/// cut connection usually explains it), JSON of the wrong shape (not worth one), or
/// an error envelope sent with a success status (worth another try, like a 5xx).
#[derive(Debug)]
pub enum BodyError {
    /// The body is not JSON.
    Json(serde_json::Error),
    /// The body is JSON, but not of the expected shape.
    Shape(ShapeError),
    /// The body carries a non-null top-level `error` member.
    ErrorBody(ErrorBody),
}

impl From<ShapeError> for BodyError {
    fn from(e: ShapeError) -> Self {
        BodyError::Shape(e)
    }
}

/// What an error envelope (`{"error": {"code", "message"}, "request_id"}`, or
/// `"error": "text"`) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// `error.code` (`not_found`, `internal_error`, ...; NOTES.md, "Errors").
    pub code: Option<String>,
    /// `error.message`; the `error` member itself, as text, when it is not an object.
    pub message: Option<String>,
    /// The top-level `request_id`, to quote in a support ticket.
    pub request_id: Option<String>,
}

impl ErrorBody {
    /// The envelope of a top-level object with a non-null `error` member; `None` for
    /// anything else (arrays, objects without `error`, `"error": null`).
    pub fn from_value(v: &Value) -> Option<ErrorBody> {
        let err = v.as_object()?.get("error").filter(|e| !e.is_null())?;
        let field = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        let (code, message) = match err {
            Value::String(s) => (None, Some(s.clone())),
            Value::Object(_) => (field(err, "code"), field(err, "message")),
            other => (None, Some(other.to_string())),
        };
        Some(ErrorBody {
            code,
            message,
            request_id: field(v, "request_id"),
        })
    }

    /// From the raw `error` member the fast path found (non-null), and the body.
    fn from_body(body: &[u8]) -> ErrorBody {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| ErrorBody::from_value(&v))
            .unwrap_or_default()
    }

    /// `code: message`, or whichever of them the envelope had.
    pub fn describe(&self) -> String {
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => "an `error` member without a message".into(),
        }
    }
}

/// Fails on an error envelope in a body parsed on the slow path.
fn refuse_error_body(v: &Value) -> Result<(), BodyError> {
    match ErrorBody::from_value(v) {
        Some(e) => Err(BodyError::ErrorBody(e)),
        None => Ok(()),
    }
}

/// Parses a whole body as a `Value`: the slow path, for bodies the fast one refused.
/// An error envelope is refused here, before anything reads it as data.
fn slow_value(body: &[u8]) -> Result<Value, BodyError> {
    let v = serde_json::from_slice(body).map_err(BodyError::Json)?;
    refuse_error_body(&v)?;
    Ok(v)
}

/// The records of a list that can be identified, and why each other one was skipped
/// (`customer #3 of the list: ...`): one unreadable record must not cost the others.
fn keep_readable<T, R>(
    items: Vec<T>,
    read: impl Fn(T) -> Result<R, ShapeError>,
    what: &str,
) -> (Vec<R>, Vec<String>) {
    let mut kept = Vec::with_capacity(items.len());
    let mut skipped = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match read(item) {
            Ok(r) => kept.push(r),
            Err(e) => skipped.push(format!("{what} #{} of the list: {e}", i + 1)),
        }
    }
    (kept, skipped)
}

/// Keeps the first record of each id: a list holding one id twice says two things of
/// it, and neither can be trusted over the other, so the second is skipped (logged and
/// counted like an unreadable record, which also keeps a transaction list with it from
/// proving any deletion) rather than failing every run on it.
fn first_of_each<R>(
    records: Vec<R>,
    id: impl Fn(&R) -> &String,
    what: &str,
    skipped: &mut Vec<String>,
) -> Vec<R> {
    let mut seen = std::collections::HashSet::with_capacity(records.len());
    let mut kept = Vec::with_capacity(records.len());
    for r in records {
        if seen.insert(id(&r).clone()) {
            kept.push(r);
        } else {
            skipped.push(format!(
                "{what} {} appears twice in one list: the second is skipped",
                id(&r)
            ));
        }
    }
    kept
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

/// Just the `error` member of an object body, for the fast path's envelope check.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

impl Customer {
    /// Checks one customer object given as a `Value` (tests, and the slow path).
    /// Only an unreadable identity is an error: see the module's doc.
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

    /// Parses one customer body (`GET /customers/{id}`); an error envelope is an
    /// error, whatever the status it came with.
    pub fn from_body(body: &[u8]) -> Result<Customer, BodyError> {
        match serde_json::from_slice::<&RawValue>(body) {
            Ok(raw) => {
                if serde_json::from_str::<Envelope>(raw.get()).is_ok_and(|e| e.error.is_some()) {
                    return Err(BodyError::ErrorBody(ErrorBody::from_body(body)));
                }
                Ok(Customer::from_raw(raw)?)
            }
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

    /// The slow path: reads field by field, leniently, warning about each field of an
    /// unexpected type.
    pub(crate) fn from_value_and_text(v: Value, text: String) -> Result<Customer, ShapeError> {
        Customer::lenient(v, text, true)
    }

    /// As [`Customer::from_value_and_text`], without warnings: for the store, which
    /// re-reads a list item merged over the stored object (warned about when received).
    pub(crate) fn from_stored(v: Value, text: String) -> Result<Customer, ShapeError> {
        Customer::lenient(v, text, false)
    }

    /// The customer's id: `id` or `customer_id`, which must agree when both are given.
    fn identity(raw: &RawObject) -> Result<String, ShapeError> {
        match (raw.get("id"), raw.get("customer_id")) {
            (Some(a), Some(b)) if !a.is_null() && !b.is_null() && a != b => Err(shape(format!(
                "a customer has two different ids: id={a} customer_id={b}"
            ))),
            (Some(v), _) if !v.is_null() => id_value(v)
                .ok_or_else(|| shape(format!("a customer's `id` is {}, not a usable id", kind(v)))),
            (_, Some(v)) if !v.is_null() => id_value(v).ok_or_else(|| {
                shape(format!(
                    "a customer's `customer_id` is {}, not a usable id",
                    kind(v)
                ))
            }),
            _ => Err(shape("a customer has no `id` (or `customer_id`)")),
        }
    }

    fn lenient(v: Value, text: String, warn: bool) -> Result<Customer, ShapeError> {
        let Value::Object(raw) = v else {
            return Err(shape(format!(
                "a customer should be a JSON object, got {}",
                kind(&v)
            )));
        };
        let id = Customer::identity(&raw)?;
        let what = format!("customer {id}");
        let f = Fields {
            obj: &raw,
            what: &what,
            warn,
        };
        let metadata = match raw.get("metadata") {
            None | Some(Value::Null) => None,
            Some(m @ Value::Object(_)) => Some(m.to_string()),
            Some(other) => {
                f.coerced("metadata", other, "stored as NULL");
                None
            }
        };
        Ok(Customer {
            organization_id: f.text("organization_id"),
            name: f.text("name"),
            email: f.text("email"),
            phone_number: f.text("phone_number"),
            whatsapp_number: f.text("whatsapp_number"),
            country: f.text("country"),
            city: f.text("city"),
            address: f.text("address"),
            postal_code: f.text("postal_code"),
            is_business: f.flag("is_business"),
            environment: f.text("environment"),
            created_at: f.timestamp("created_at"),
            updated_at: f.timestamp("updated_at"),
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
    /// An error envelope's member: the page is then no data at all.
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

impl CustomerPage {
    /// Parses a whole list body (`GET /customers`).
    pub fn from_body(body: &[u8]) -> Result<CustomerPage, BodyError> {
        match serde_json::from_slice::<PageBody>(body) {
            Ok(p) if p.error.is_some() => Err(BodyError::ErrorBody(ErrorBody::from_body(body))),
            Ok(p) => Ok(CustomerPage::check(p.customers, &p.pagination, |raw| {
                Customer::from_raw(raw)
            })?),
            Err(_) => Ok(CustomerPage::from_value(slow_value(body)?)?),
        }
    }

    /// Checks a whole list response given as a `Value` (tests, and the slow path).
    pub fn from_value(v: Value) -> Result<CustomerPage, ShapeError> {
        if let Some(e) = ErrorBody::from_value(&v) {
            return Err(shape(format!(
                "the list response is an error: {}",
                e.describe()
            )));
        }
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
    /// keeping the first record of an id listed twice.
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
        let (customers, mut skipped) = keep_readable(items, customer, "customer");
        let customers = first_of_each(customers, |c| &c.id, "customer", &mut skipped);
        Ok(CustomerPage {
            customers,
            skipped,
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
    #[serde(borrow, default)]
    customer_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    transaction_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    discount_amount: Option<&'a RawValue>,
    #[serde(borrow, default)]
    fee_amount: Option<&'a RawValue>,
    #[serde(borrow, default)]
    net_amount: Option<&'a RawValue>,
    #[serde(borrow, default)]
    updated_at: Option<Cow<'a, str>>,
}

/// The exact amount of a transaction and, when whole, its minor units.
fn amounts(gross: Option<String>, currency: Option<&str>) -> (Option<String>, Option<i64>) {
    let minor = match (&gross, currency) {
        (Some(a), Some(c)) => Decimal::parse(a).and_then(|d| d.to_minor(minor_unit_exponent(c))),
        _ => None,
    };
    (gross, minor)
}

/// An amount as the fast path reads it: a JSON number's text (`Err` sends anything else,
/// strings included, to the slow path, which checks them).
fn fast_decimal(v: Option<&RawValue>) -> Result<Option<String>, ()> {
    match v {
        None => Ok(None),
        Some(a) if a.get() == "null" => Ok(None),
        Some(a)
            if a.get()
                .starts_with(|c: char| c == '-' || c.is_ascii_digit()) =>
        {
            Ok(Some(a.get().to_string()))
        }
        Some(_) => Err(()),
    }
}

/// The feed's fields of one transaction, read by either path.
struct FeedFields {
    customer_id: Option<String>,
    transaction_type: Option<String>,
    discount: Option<String>,
    fee: Option<String>,
    net: Option<String>,
    updated_at: Option<String>,
}

impl FeedFields {
    /// The fast path's: `None` sends the object to the slow path.
    fn fast(f: &TransactionFields<'_>) -> Option<FeedFields> {
        let customer_id = match f.customer_id {
            None => None,
            Some(v) if v.get() == "null" => None,
            Some(v) => Some(raw_id(v)?),
        };
        Some(FeedFields {
            customer_id,
            transaction_type: f.transaction_type.clone().map(Cow::into_owned),
            discount: fast_decimal(f.discount_amount).ok()?,
            fee: fast_decimal(f.fee_amount).ok()?,
            net: fast_decimal(f.net_amount).ok()?,
            updated_at: fast_timestamp(f.updated_at.clone()).ok()?,
        })
    }

    /// The slow path's, leniently.
    fn lenient(f: &Fields<'_>) -> FeedFields {
        FeedFields {
            customer_id: f.text("customer_id"),
            transaction_type: f.text("transaction_type"),
            discount: f.decimal("discount_amount"),
            fee: f.decimal("fee_amount"),
            net: f.decimal("net_amount"),
            updated_at: f.timestamp("updated_at"),
        }
    }

    /// Fills the feed's fields of `t`, whose currency is already read.
    fn fill(self, mut t: Transaction) -> Transaction {
        let currency = t.currency_code.clone();
        let exact = |a| amounts(a, currency.as_deref());
        (t.discount_amount, t.discount_minor) = exact(self.discount);
        (t.fee_amount, t.fee_minor) = exact(self.fee);
        (t.net_amount, t.net_minor) = exact(self.net);
        t.customer_id = self.customer_id;
        t.transaction_type = self.transaction_type;
        t.updated_at = self.updated_at;
        t
    }
}

impl Transaction {
    /// Checks one transaction given as a `Value` (tests, and the slow path). Only an
    /// unreadable identity is an error: see the module's doc.
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
        let feed = FeedFields::fast(&f)?;
        let currency_code = f.currency_code.map(currency);
        let (gross_amount, amount_minor) = amounts(gross, currency_code.as_deref());
        let t = Transaction {
            transaction_id,
            description: own(f.description),
            gross_amount,
            amount_minor,
            currency_code,
            status: own(f.status),
            payment_method_code: own(f.payment_method_code),
            provider_code: own(f.provider_code),
            metadata: f.metadata.map(|m| m.get().to_string()),
            created_at: fast_timestamp(f.created_at).ok()?,
            raw: raw.get().to_string(),
            ..Transaction::empty()
        };
        Some(feed.fill(t))
    }

    /// A transaction with only an empty id, for the parsers to fill.
    fn empty() -> Transaction {
        Transaction {
            transaction_id: String::new(),
            description: None,
            gross_amount: None,
            amount_minor: None,
            currency_code: None,
            status: None,
            payment_method_code: None,
            provider_code: None,
            metadata: None,
            created_at: None,
            customer_id: None,
            transaction_type: None,
            discount_amount: None,
            discount_minor: None,
            fee_amount: None,
            fee_minor: None,
            net_amount: None,
            net_minor: None,
            updated_at: None,
            raw: String::new(),
        }
    }

    /// The slow path: reads field by field, leniently. The amount is read as text,
    /// never as a float; one that is not a decimal number is NULL.
    fn from_value_and_text(v: Value, text: String) -> Result<Transaction, ShapeError> {
        Transaction::lenient(v, text, true)
    }

    /// As the slow path, without warnings: for the store, which re-reads a row merged
    /// over the stored one (its fields were warned about when received).
    pub(crate) fn from_stored(v: Value, text: String) -> Result<Transaction, ShapeError> {
        Transaction::lenient(v, text, false)
    }

    fn lenient(v: Value, text: String, warn: bool) -> Result<Transaction, ShapeError> {
        let Value::Object(raw) = v else {
            return Err(shape(format!(
                "a transaction should be a JSON object, got {}",
                kind(&v)
            )));
        };
        let transaction_id = match raw.get("transaction_id").filter(|v| !v.is_null()) {
            Some(v) => id_value(v),
            None => raw.get("id").and_then(id_value),
        }
        .ok_or_else(|| shape("a transaction has no usable `transaction_id`"))?;
        let what = format!("transaction {transaction_id}");
        let f = Fields {
            obj: &raw,
            what: &what,
            warn,
        };
        let currency_code = f.text("currency_code").map(|c| currency(Cow::Owned(c)));
        let (gross_amount, amount_minor) =
            amounts(f.decimal("gross_amount"), currency_code.as_deref());
        let metadata = match raw.get("metadata") {
            None | Some(Value::Null) => None,
            Some(m) => Some(m.to_string()),
        };
        let feed = FeedFields::lenient(&f);
        let t = Transaction {
            description: f.text("description"),
            status: f.text("status"),
            payment_method_code: f.text("payment_method_code"),
            provider_code: f.text("provider_code"),
            created_at: f.timestamp("created_at"),
            gross_amount,
            amount_minor,
            currency_code,
            metadata,
            transaction_id,
            raw: text,
            ..Transaction::empty()
        };
        Ok(feed.fill(t))
    }

    /// Parses a `GET /transactions/{id}` body: one feed row. An error envelope is an
    /// error, whatever the status it came with.
    pub fn from_body(body: &[u8]) -> Result<Transaction, BodyError> {
        match serde_json::from_slice::<&RawValue>(body) {
            Ok(raw) => {
                if serde_json::from_str::<Envelope>(raw.get()).is_ok_and(|e| e.error.is_some()) {
                    return Err(BodyError::ErrorBody(ErrorBody::from_body(body)));
                }
                Ok(Transaction::from_raw(raw)?)
            }
            Err(_) => {
                let v = slow_value(body)?;
                let text = String::from_utf8_lossy(body).into_owned();
                Ok(Transaction::from_value_and_text(v, text)?)
            }
        }
    }

    /// Parses a transactions body: a bare array (the docs and the live service), or,
    /// tolerantly, an object wrapping it in `transactions` or `data`. An object with
    /// an `error` member is an error, never an (empty) list.
    pub fn list_from_body(body: &[u8]) -> Result<TransactionList, BodyError> {
        match serde_json::from_slice::<Vec<&RawValue>>(body) {
            Ok(items) => Ok(Transaction::check_list(items, Transaction::from_raw)?),
            Err(_) => Ok(Transaction::list_from_value(slow_value(body)?)?),
        }
    }

    /// Checks a transactions response given as a `Value` (tests, and the slow path).
    pub fn list_from_value(v: Value) -> Result<TransactionList, ShapeError> {
        if let Some(e) = ErrorBody::from_value(&v) {
            return Err(shape(format!(
                "the transactions response is an error: {}",
                e.describe()
            )));
        }
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

    /// Keeps every identifiable item, the first of an id listed twice.
    fn check_list<T>(
        items: Vec<T>,
        transaction: impl Fn(T) -> Result<Transaction, ShapeError>,
    ) -> Result<TransactionList, ShapeError> {
        let (transactions, mut skipped) = keep_readable(items, transaction, "transaction");
        let transactions = first_of_each(
            transactions,
            |t| &t.transaction_id,
            "transaction",
            &mut skipped,
        );
        Ok(TransactionList {
            transactions,
            skipped,
        })
    }
}

/// A webhook endpoint as `POST /webhooks` and `GET /webhooks` show it (NOTES.md,
/// Webhooks). The docs give only the request and say the secret is returned once; the
/// answer's shape is our assumption: `id`, `url`, `authorized_events` and `is_active` are
/// read, every other field is kept in `raw`. The secret is taken out of `raw` into
/// `secret`, whose `Debug` and `Display` print `[redacted]`, so this type can be logged.
#[derive(Debug, Clone)]
pub struct RegisteredWebhook {
    /// The webhook's id (`id`, or `webhook_id`), an opaque string.
    pub id: String,
    /// Where the vendor delivers.
    pub url: String,
    /// The events delivered (`PAYMENT_CREATED`, ...), as sent.
    pub authorized_events: Vec<String>,
    /// `is_active`; `None` when absent or not a boolean.
    pub is_active: Option<bool>,
    /// The signing secret (`whsec_...`): only in the answer to `POST /webhooks`.
    pub secret: Option<crate::config::WebhookSecret>,
    /// The object as received, less `secret`.
    pub raw: RawObject,
}

impl RegisteredWebhook {
    /// Reads one webhook object. Errors name fields, never values (one is a secret).
    pub fn from_value(v: Value) -> Result<RegisteredWebhook, ShapeError> {
        let Value::Object(mut raw) = v else {
            return Err(shape(format!(
                "a webhook should be a JSON object, got {}",
                kind(&v)
            )));
        };
        let secret = match raw.remove("secret") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => {
                Some(crate::config::WebhookSecret::new(s))
            }
            Some(_) => return Err(shape("the webhook's `secret` should be a non-empty string")),
        };
        let text = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        let id = text("id")
            .or_else(|| text("webhook_id"))
            .ok_or_else(|| shape("a webhook has no `id` string"))?;
        let url = text("url").ok_or_else(|| shape(format!("webhook {id} has no `url` string")))?;
        let authorized_events = match raw.get("authorized_events") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    shape(format!(
                        "webhook {id}: `authorized_events` should hold strings"
                    ))
                })?,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(shape(format!(
                    "webhook {id}: `authorized_events` should be an array"
                )));
            }
        };
        let is_active = raw.get("is_active").and_then(Value::as_bool);
        Ok(RegisteredWebhook {
            id,
            url,
            authorized_events,
            is_active,
            secret,
            raw,
        })
    }

    /// Parses the answer to `POST /webhooks` (the object, or wrapped in `data`).
    pub fn from_body(body: &[u8]) -> Result<RegisteredWebhook, BodyError> {
        let v = slow_value(body)?;
        let v = match v {
            Value::Object(mut o)
                if !o.contains_key("id") && o.get("data").is_some_and(Value::is_object) =>
            {
                o.remove("data").unwrap_or_default()
            }
            v => v,
        };
        Ok(RegisteredWebhook::from_value(v)?)
    }

    /// Parses `GET /webhooks`: a bare array, or, tolerantly, one wrapped in `data` or
    /// `webhooks`.
    pub fn list_from_body(body: &[u8]) -> Result<Vec<RegisteredWebhook>, BodyError> {
        let items = match slow_value(body)? {
            Value::Array(items) => items,
            Value::Object(mut o) => match o.remove("data").or_else(|| o.remove("webhooks")) {
                Some(Value::Array(items)) => items,
                _ => return Err(shape("the webhooks response should be a JSON array").into()),
            },
            other => {
                let msg = format!(
                    "the webhooks response should be a JSON array, got {}",
                    kind(&other)
                );
                return Err(shape(msg).into());
            }
        };
        Ok(items
            .into_iter()
            .map(RegisteredWebhook::from_value)
            .collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod webhook_tests {
    use super::*;

    #[test]
    fn a_registration_answer_keeps_unknown_fields_and_hides_the_secret() {
        let body = br#"{"id":"wh_1","url":"https://h.example/x","authorized_events":["PAYMENT_CREATED"],"is_active":true,"secret":"whsec_abc","rotation":{"n":1}}"#;
        let hook = RegisteredWebhook::from_body(body).unwrap();
        assert_eq!(hook.id, "wh_1");
        assert_eq!(hook.authorized_events, ["PAYMENT_CREATED"]);
        assert_eq!(hook.is_active, Some(true));
        assert_eq!(hook.secret.as_ref().map(|s| s.expose()), Some("whsec_abc"));
        assert_eq!(hook.raw["rotation"], serde_json::json!({"n": 1}));
        assert!(!hook.raw.contains_key("secret"));
        assert!(!format!("{hook:?}").contains("whsec_abc"));
        let wrapped = br#"{"data":{"webhook_id":"wh_2","url":"https://h.example/y"}}"#;
        let hook = RegisteredWebhook::from_body(wrapped).unwrap();
        assert_eq!((hook.id.as_str(), hook.secret.is_none()), ("wh_2", true));
    }

    #[test]
    fn lists_are_read_bare_or_wrapped_and_errors_name_no_value() {
        let one = r#"{"id":"wh_1","url":"https://h.example/x","authorized_events":[]}"#;
        for body in [format!("[{one}]"), format!(r#"{{"data":[{one}]}}"#)] {
            let hooks = RegisteredWebhook::list_from_body(body.as_bytes()).unwrap();
            assert_eq!(hooks.len(), 1);
        }
        let bad = br#"{"id":"wh_1","url":"https://h.example/x","secret":42}"#;
        let err = RegisteredWebhook::from_body(bad).unwrap_err();
        assert!(matches!(err, BodyError::Shape(_)), "{err:?}");
        assert!(matches!(
            RegisteredWebhook::list_from_body(br#"{"error":{"message":"no"}}"#),
            Err(BodyError::ErrorBody(_))
        ));
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
    fn customer_without_a_usable_id_is_refused() {
        for v in [
            json!({"name": "x"}),
            json!({"id": ""}),
            json!({"id": {"v": 1}}),
            json!({"id": null, "customer_id": true}),
            json!({"id": "a", "customer_id": "b"}),
            json!("cus_1"),
        ] {
            assert!(Customer::from_value(v.clone()).is_err(), "{v}");
        }
        assert!(
            Customer::from_value(json!({"name": "x"}))
                .unwrap_err()
                .0
                .contains("no `id`")
        );
    }

    /// Issue 12, kind 5: a field of an unexpected type costs that field, not the record.
    #[test]
    fn customer_fields_of_an_unexpected_type_are_coerced_or_null() {
        let body = br#"{"id":"c1","name":"Awa","postal_code":75001,"email":true,"city":{"x":1},
            "address":["a"],"is_business":"yes","metadata":"vip","created_at":"yesterday",
            "updated_at":12,"phone_number":1.50}"#;
        let c = Customer::from_body(body).unwrap();
        assert_eq!(c.id, "c1");
        assert_eq!(c.name.as_deref(), Some("Awa"));
        assert_eq!(c.postal_code.as_deref(), Some("75001"));
        assert_eq!(c.email.as_deref(), Some("true"));
        assert_eq!(
            c.phone_number.as_deref(),
            Some("1.50"),
            "the number's exact text"
        );
        assert_eq!((c.city, c.address), (None, None));
        assert_eq!(c.is_business, None);
        assert_eq!((c.metadata, c.metadata_null), (None, false));
        assert_eq!((c.created_at, c.updated_at), (None, None));
        assert_eq!(c.raw.as_bytes(), body, "raw keeps what was sent");
    }

    #[test]
    fn transaction_fields_of_an_unexpected_type_are_coerced_or_null() {
        let list = Transaction::list_from_body(
            br#"[{"transaction_id":"t1","gross_amount":"abc","currency_code":"xof","status":3,
                  "description":{"a":1},"created_at":"2025-13-01T00:00:00Z"},
                 {"transaction_id":"t2","gross_amount":true,"currency_code":" usd "},
                 {"transaction_id":7,"gross_amount":"12.5","currency_code":"eur","payment_method_code":false}]"#,
        )
        .unwrap();
        assert!(list.skipped.is_empty());
        let [t1, t2, t3] = &list.transactions[..] else {
            panic!("{list:?}")
        };
        assert_eq!((t1.gross_amount.as_deref(), t1.amount_minor), (None, None));
        assert_eq!(t1.currency_code.as_deref(), Some("XOF"));
        assert_eq!(t1.status.as_deref(), Some("3"));
        assert_eq!(
            (t1.description.as_deref(), t1.created_at.as_deref()),
            (None, None)
        );
        assert_eq!(
            (t2.gross_amount.as_deref(), t2.currency_code.as_deref()),
            (None, Some("USD"))
        );
        assert_eq!(t3.transaction_id, "7");
        assert_eq!(
            (t3.gross_amount.as_deref(), t3.amount_minor),
            (Some("12.5"), Some(1250))
        );
        assert_eq!(t3.payment_method_code.as_deref(), Some("false"));
    }

    /// Issue 12, kind 7: the typed currency code is upper case on both paths, so the
    /// views' join on `currencies` agrees with `amount_minor`.
    #[test]
    fn currency_codes_are_upper_case_whatever_the_api_sent() {
        let body = br#"[{"transaction_id":"a","gross_amount":25000,"currency_code":"xof","status":"completed"},
                        {"transaction_id":"b","gross_amount":10.5,"currency_code":"Usd"},
                        {"transaction_id":"c","gross_amount":"1","currency_code":"eur"}]"#;
        let list = Transaction::list_from_body(body).unwrap().transactions;
        let got: Vec<_> = list
            .iter()
            .map(|t| (t.currency_code.as_deref().unwrap(), t.amount_minor.unwrap()))
            .collect();
        assert_eq!(got, [("XOF", 25000), ("USD", 1050), ("EUR", 100)]);
        assert!(list[0].raw.contains(r#""currency_code":"xof""#));
    }

    /// A record whose identity cannot be read is skipped and counted; the others stay.
    #[test]
    fn unidentifiable_records_are_skipped_and_counted() {
        let page = CustomerPage::from_body(
            br#"{"customers":[{"id":"a"},{"id":{"x":1},"name":"ghost"},{"name":"no id"},5,{"id":"b","postal_code":1}],
                 "pagination":{"page":1,"pageSize":5,"totalCount":5,"totalPages":1}}"#,
        )
        .unwrap();
        let ids: Vec<_> = page.customers.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(page.skipped.len(), 3, "{:?}", page.skipped);
        assert!(
            page.skipped[0].starts_with("customer #2 of the list"),
            "{:?}",
            page.skipped
        );
        let list = Transaction::list_from_body(
            br#"[{"transaction_id":"t1"},{"transaction_id":null},{"transaction_id":[1]},{"id":"t2"}]"#,
        )
        .unwrap();
        let ids: Vec<_> = list
            .transactions
            .iter()
            .map(|t| t.transaction_id.as_str())
            .collect();
        assert_eq!(ids, ["t1", "t2"]);
        assert_eq!(list.skipped.len(), 2);
    }

    /// Issue 12, kind 3: a body with a non-null top-level `error` is never data.
    #[test]
    fn error_envelopes_are_errors_whatever_else_the_body_holds() {
        let tx = br#"{"data":[],"error":{"message":"statement timeout"}}"#;
        match Transaction::list_from_body(tx) {
            Err(BodyError::ErrorBody(e)) => assert_eq!(e.describe(), "statement timeout"),
            other => panic!("{other:?}"),
        }
        let page = br#"{"customers":[{"id":"a"}],"pagination":{"page":1,"pageSize":1,"totalCount":1,"totalPages":1},
                        "error":{"code":"internal_error","message":"boom"},"request_id":"req_9"}"#;
        match CustomerPage::from_body(page) {
            Err(BodyError::ErrorBody(e)) => {
                assert_eq!(e.describe(), "internal_error: boom");
                assert_eq!(e.request_id.as_deref(), Some("req_9"));
            }
            other => panic!("{other:?}"),
        }
        for body in [
            &br#"{"error":"statement timeout"}"#[..],
            br#"{"id":"c1","name":"A","error":{"message":"x"}}"#,
            br#"{"error":{"code":"not_found"}}"#,
        ] {
            assert!(
                matches!(Customer::from_body(body), Err(BodyError::ErrorBody(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // The slow paths refuse them too.
        assert!(
            CustomerPage::from_value(json!({"customers": [], "pagination": {}, "error": "x"}))
                .is_err()
        );
        assert!(
            Transaction::list_from_value(json!({"data": [], "error": {"message": "x"}})).is_err()
        );
        // `"error": null` is no error, and a bare array never is.
        let ok = Transaction::list_from_body(br#"{"data":[{"transaction_id":"t"}],"error":null}"#)
            .unwrap();
        assert_eq!(ok.transactions.len(), 1);
        assert!(Customer::from_body(br#"{"id":"c","error":null}"#).is_ok());
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
        assert_eq!(a.updated_at.as_deref(), Some("2024-01-15T10:30:00.123456Z"));
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
        match Customer::from_body(br#"{"email":"x@y"}"#) {
            Err(BodyError::Shape(e)) => assert!(e.0.contains("no `id`"), "{e}"),
            other => panic!("{other:?}"),
        }
        match CustomerPage::from_body(br#"{"customers":[{"id":"a"}]}"#) {
            Err(BodyError::Shape(e)) => assert!(e.0.contains("pagination"), "{e}"),
            other => panic!("{other:?}"),
        }
        // The tolerated wrapper goes by the slow path and still parses.
        let list = Transaction::list_from_body(br#"{"data":[{"transaction_id":"t"}]}"#).unwrap();
        assert_eq!(list.transactions[0].transaction_id, "t");
    }

    #[test]
    fn timestamps_are_normalised_on_both_paths() {
        let body = br#"[{"transaction_id":"a","created_at":"2025-03-01T10:00:00+0100"},
                        {"transaction_id":"b","created_at":"2025-06-01T10:00:00.123456+00:00"},
                        {"transaction_id":"c","created_at":"2025-06-01T10:00:00.123Z"}]"#;
        let list = Transaction::list_from_body(body).unwrap().transactions;
        let got: Vec<_> = list
            .iter()
            .map(|t| t.created_at.as_deref().unwrap())
            .collect();
        assert_eq!(
            got,
            [
                "2025-03-01T09:00:00.000000Z",
                "2025-06-01T10:00:00.123456Z",
                "2025-06-01T10:00:00.123000Z"
            ]
        );
        let c = Customer::from_value(
            json!({"id": "c", "created_at": "2025-03-01 10:00:00.5+01", "postal_code": 1}),
        )
        .unwrap();
        assert_eq!(c.created_at.as_deref(), Some("2025-03-01T09:00:00.500000Z"));
    }

    #[test]
    fn page_checks_pagination_and_duplicates() {
        let ok = CustomerPage::from_value(page(json!([{"id": "a"}, {"id": "b"}]), 3)).unwrap();
        assert_eq!(ok.total_pages, 2);
        // An id listed twice: the first is kept, the second skipped and said so.
        let twice = CustomerPage::from_value(page(
            json!([{"id": "a", "name": "first"}, {"id": "a", "name": "second"}]),
            3,
        ))
        .unwrap();
        assert_eq!(twice.customers.len(), 1);
        assert_eq!(twice.customers[0].name.as_deref(), Some("first"));
        assert_eq!(twice.skipped.len(), 1);
        assert!(twice.skipped[0].contains("twice"), "{:?}", twice.skipped);
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
        let txs = Transaction::list_from_value(v).unwrap().transactions;
        let fast = Transaction::list_from_body(
            br#"[{"transaction_id":"t1","gross_amount":10.5,"currency_code":"USD"},
                {"transaction_id":"t2","gross_amount":10000,"currency_code":"XOF"},
                {"transaction_id":"t3","gross_amount":"0.1","currency_code":"EUR"},
                {"transaction_id":"t4","gross_amount":0.30000000000000004,"currency_code":"EUR"}]"#,
        )
        .unwrap()
        .transactions;
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
        let twice =
            Transaction::list_from_value(json!([{"transaction_id": "t"}, {"transaction_id": "t"}]))
                .unwrap();
        assert_eq!(twice.transactions.len(), 1);
        assert_eq!(twice.skipped.len(), 1);
        assert!(twice.skipped[0].contains("twice"));
    }

    /// A feed row in the live service's forms (`+00:00` microsecond timestamps, a
    /// fractional USD amount, numbers): both paths read the same exact values.
    #[test]
    fn feed_rows_are_read_exactly_on_both_paths() {
        let body = br#"[{"transaction_id":"7c1e","organization_id":"org_1","customer_id":"c9a0",
            "transaction_type":"payment","status":"completed","gross_amount":125.5,
            "discount_amount":12.55,"fee_amount":3.28,"net_amount":109.67,"currency_code":"USD",
            "is_pos":false,"spi_tx":null,"created_at":"2025-06-01T10:00:00.12345+00:00",
            "updated_at":"2025-06-01T10:05:00.1+00:00"},
            {"transaction_id":"7c1f","customer_id":"c9a0","transaction_type":"refund",
            "gross_amount":10000,"discount_amount":0,"fee_amount":0,"net_amount":10000,
            "currency_code":"XOF","created_at":"2025-06-01T09:00:00Z","updated_at":null}]"#;
        let fast = Transaction::list_from_body(body).unwrap().transactions;
        let slow = Transaction::list_from_value(serde_json::from_slice(body).unwrap())
            .unwrap()
            .transactions;
        for (f, s) in fast.iter().zip(&slow) {
            let blank = |t: &Transaction| Transaction {
                raw: String::new(),
                ..t.clone()
            };
            assert_eq!(blank(f), blank(s));
        }
        let t = &fast[0];
        assert_eq!(t.customer_id.as_deref(), Some("c9a0"));
        assert_eq!(t.transaction_type.as_deref(), Some("payment"));
        assert_eq!(
            (t.amount_minor, t.gross_amount.as_deref()),
            (Some(12550), Some("125.5"))
        );
        assert_eq!(
            (t.discount_minor, t.discount_amount.as_deref()),
            (Some(1255), Some("12.55"))
        );
        assert_eq!(
            (t.fee_minor, t.fee_amount.as_deref()),
            (Some(328), Some("3.28"))
        );
        assert_eq!(
            (t.net_minor, t.net_amount.as_deref()),
            (Some(10967), Some("109.67"))
        );
        assert_eq!(t.created_at.as_deref(), Some("2025-06-01T10:00:00.123450Z"));
        assert_eq!(t.updated_at.as_deref(), Some("2025-06-01T10:05:00.100000Z"));
        assert!(t.raw.contains(r#""spi_tx":null"#), "raw keeps every field");
        let x = &fast[1];
        assert_eq!((x.net_minor, x.fee_minor), (Some(10000), Some(0)));
        assert_eq!(x.updated_at, None);
    }

    /// A row of the per-customer endpoint has none of the feed's fields: all `None`,
    /// never zero or empty.
    #[test]
    fn per_customer_rows_leave_the_feed_fields_unknown() {
        let t = Transaction::from_value(json!({"transaction_id": "tx_1", "gross_amount": 5,
            "currency_code": "XOF", "created_at": "2025-06-01T10:00:00Z"}))
        .unwrap();
        assert_eq!(
            (
                &t.customer_id,
                &t.transaction_type,
                &t.fee_amount,
                &t.net_amount
            ),
            (&None, &None, &None, &None)
        );
        assert_eq!(
            (t.discount_minor, t.fee_minor, t.net_minor),
            (None, None, None)
        );
        assert_eq!(t.updated_at, None);
    }

    /// Odd types in the feed's fields: text for a text column, NULL for an amount that
    /// is no decimal, a decimal string read exactly; the record is kept.
    #[test]
    fn feed_fields_of_an_unexpected_type_are_coerced_or_null() {
        let raw = r#"{"transaction_id":"tx_2","customer_id":42,"transaction_type":7,
            "fee_amount":"1.5","net_amount":"lots","discount_amount":{"v":1},
            "currency_code":"EUR","updated_at":"yesterday"}"#;
        let rv: &RawValue = serde_json::from_str(raw).unwrap();
        let t = Transaction::from_raw(rv).unwrap();
        assert_eq!(t.customer_id.as_deref(), Some("42"));
        assert_eq!(t.transaction_type.as_deref(), Some("7"));
        assert_eq!(
            (t.fee_amount.as_deref(), t.fee_minor),
            (Some("1.5"), Some(150))
        );
        assert_eq!((t.net_amount.as_deref(), t.net_minor), (None, None));
        assert_eq!(t.discount_amount, None);
        assert_eq!(t.updated_at, None);
        assert_eq!(t.raw, raw);
    }

    #[test]
    fn one_feed_row_body_refuses_an_error_envelope() {
        let ok = Transaction::from_body(br#"{"transaction_id":"tx_3","net_amount":1}"#).unwrap();
        assert_eq!(ok.net_amount.as_deref(), Some("1"));
        let err = Transaction::from_body(br#"{"error":{"code":"internal_error"}}"#);
        assert!(matches!(err, Err(BodyError::ErrorBody(_))), "{err:?}");
    }
}
