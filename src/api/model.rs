//! The API's objects, checked field by field. Every object keeps the JSON it came in
//! (`raw`), so fields the API adds later reach the mirror even before this code knows
//! them; the typed fields are what the mirror's columns are made of.
//!
//! Both id spellings are accepted: the docs' `id` and the live service's `customer_id`.

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
    /// `None` when the API sent `null` or nothing: for list items of the live service
    /// this means "not shown", not "empty".
    pub metadata: Option<Value>,
    pub environment: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub raw: RawObject,
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
    pub metadata: Option<Value>,
    pub created_at: Option<String>,
    pub raw: RawObject,
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
    let parsed = DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc()))
        .ok()?;
    Some(format_timestamp(parsed))
}

/// The mirror's one timestamp format.
pub fn format_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl Customer {
    /// Checks one customer object. Unknown fields are kept in `raw`.
    pub fn from_value(v: Value) -> Result<Customer, ShapeError> {
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
            Some(m @ Value::Object(_)) => Some(m.clone()),
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
            metadata,
            id,
            raw,
        })
    }
}

impl CustomerPage {
    /// Checks a whole list response: the `customers` array, the `pagination` object
    /// and their consistency, and that no id appears twice on one page.
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
        let pagination = match body.get("pagination") {
            Some(Value::Object(p)) => p,
            Some(other) => {
                return Err(shape(format!(
                    "`pagination` should be an object, got {}",
                    kind(other)
                )));
            }
            None => return Err(shape("the list response has no `pagination` object")),
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
        let total_pages = number("totalPages")?;
        if page_size == 0 {
            return Err(shape("`pagination.pageSize` is 0"));
        }
        if total_pages != total_count.div_ceil(page_size) {
            return Err(shape(format!(
                "`pagination` is inconsistent: totalPages={total_pages} but totalCount={total_count} and pageSize={page_size}"
            )));
        }
        if items.len() as u64 > page_size {
            return Err(shape(format!(
                "the page holds {} customers, more than pageSize={page_size}",
                items.len()
            )));
        }
        let customers = items
            .into_iter()
            .map(Customer::from_value)
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

impl Transaction {
    /// Checks one transaction object. The amount is read as text, never as a float.
    pub fn from_value(v: Value) -> Result<Transaction, ShapeError> {
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
        let gross_amount = match raw.get("gross_amount") {
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
        let amount_minor = match (&gross_amount, &currency_code) {
            (Some(a), Some(c)) => {
                Decimal::parse(a).and_then(|d| d.to_minor(minor_unit_exponent(c)))
            }
            _ => None,
        };
        let metadata = match raw.get("metadata") {
            None | Some(Value::Null) => None,
            Some(m) => Some(m.clone()),
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
            raw,
        })
    }

    /// Checks a transactions response: a bare array (the docs and the live service),
    /// or, tolerantly, an object wrapping it in `transactions` or `data`.
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
        let txs = items
            .into_iter()
            .map(Transaction::from_value)
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
        assert_eq!(a.raw["loyalty"], json!(3));
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
    fn timestamps_are_normalised_to_utc_millis() {
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
        let bad = json!({"customers": [], "pagination": {"page": 1, "pageSize": 2, "totalCount": 3, "totalPages": 7}});
        assert!(
            CustomerPage::from_value(bad)
                .unwrap_err()
                .0
                .contains("inconsistent")
        );
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
