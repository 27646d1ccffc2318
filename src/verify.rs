//! Compares a mirror with a source's ground truth (the simulator's `/_sim/truth`).
//! The demo prints its verdict, and the tests and the benchmark assert it, so "the
//! mirror equals the source" is checked by one piece of code everywhere.
//!
//! Records are compared as JSON with their timestamps normalised (the same instant in
//! another style is no difference: the simulator can change styles between runs), and
//! the typed columns the mirror derives from them are checked too: `created_at` and
//! `updated_at` to the microsecond, and `currency_code` in upper case.
//!
//! A customer whose details are pending (`customers.details_updated_at` behind its
//! `updated_at`: written from a list item that hides `metadata`, the background fill has
//! not read `GET /customers/{id}` yet) is expected to differ in the fields a list item
//! hides (`metadata`, `environment`; NOTES.md) and is compared without them. Its
//! `metadata` column must still be NULL or the last one read: [`pending_details`] counts
//! those left, and once it is 0 the comparison is exact.
//!
//! Either store: the mirror's rows come from `Store::verify_customers` and
//! `Store::verify_transactions`, in the mirror's text forms, so the comparison here is
//! the one for SQLite and PostgreSQL alike.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::api::model::normalize_timestamp;
use crate::store::{Store, StoreError, VerifyTransaction};

fn id_of(c: &Value) -> Option<String> {
    c.get("id")
        .or_else(|| c.get("customer_id"))
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

fn parse(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or(Value::Null)
}

/// The mirror's form of a record's timestamp field: normalised, or NULL when absent or
/// not a timestamp (as the client stores it).
fn timestamp_of(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(normalize_timestamp)
}

/// A record with its timestamps in the mirror's one form.
fn normalized(v: &Value) -> Value {
    let mut v = v.clone();
    if let Value::Object(o) = &mut v {
        for key in ["created_at", "updated_at"] {
            if let Some(t) = o
                .get(key)
                .and_then(Value::as_str)
                .and_then(normalize_timestamp)
            {
                o.insert(key.into(), Value::String(t));
            }
        }
    }
    v
}

/// What the typed columns of a record should hold, for those [`differences`] checks.
fn columns_of(v: &Value, keys: &[&str]) -> Vec<Option<String>> {
    keys.iter()
        .map(|k| match *k {
            "currency_code" => v
                .get(k)
                .and_then(Value::as_str)
                .map(|c| c.trim().to_ascii_uppercase()),
            _ => timestamp_of(v, k),
        })
        .collect()
}

/// Differences between the mirror and `truth`, at most `limit` of them; empty when the
/// mirror equals the source: the same live customers with the same fields, the same
/// live transactions per live customer, and every known deleted customer marked.
pub fn differences(store: &Store, truth: &Value, limit: usize) -> Result<Vec<String>, StoreError> {
    let mut out = Found {
        list: Vec::new(),
        limit,
    };
    let mirror = live_customers(store)?;
    let truth_ids = compare_customers(&mirror, truth, &mut out);
    compare_deleted(&mirror, truth, &mut out);
    compare_transactions(store, truth, &truth_ids, &mut out)?;
    Ok(out.list)
}

/// The differences found so far, at most `limit`.
struct Found {
    list: Vec<String>,
    limit: usize,
}

impl Found {
    fn push(&mut self, s: String) {
        if self.list.len() < self.limit {
            self.list.push(s);
        }
    }
}

const CUSTOMER_COLUMNS: [&str; 2] = ["created_at", "updated_at"];

/// The fields a list item of the live service hides (NOTES.md, "Customer objects"):
/// what a customer whose details are pending may lack.
const HIDDEN_IN_LISTS: [&str; 2] = ["metadata", "environment"];

/// The mirror's live customers: id -> (the record, its [`CUSTOMER_COLUMNS`], whether
/// its details are pending).
type LiveCustomers = BTreeMap<String, (Value, Vec<Option<String>>, bool)>;

fn live_customers(store: &Store) -> Result<LiveCustomers, StoreError> {
    Ok(store
        .verify_customers()?
        .into_iter()
        .map(|c| {
            let columns = vec![c.created_at, c.updated_at];
            (c.id, (parse(&c.raw), columns, c.details_pending))
        })
        .collect())
}

/// Live customers of the mirror whose details are pending (the background fill's
/// work left; `status` shows the same count).
pub fn pending_details(store: &Store) -> Result<u64, StoreError> {
    let customers = store.verify_customers()?;
    Ok(customers.iter().filter(|c| c.details_pending).count() as u64)
}

/// `v` without the fields a list item hides, when `pending`.
fn comparable(v: &Value, pending: bool) -> Value {
    let mut v = normalized(v);
    if let (true, Value::Object(o)) = (pending, &mut v) {
        for k in HIDDEN_IN_LISTS {
            o.remove(k);
        }
    }
    v
}

/// Compares the live customers both ways; returns the ids the source holds.
fn compare_customers(mirror: &LiveCustomers, truth: &Value, out: &mut Found) -> BTreeSet<String> {
    let empty = Vec::new();
    let customers = truth
        .get("customers")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut truth_ids = BTreeSet::new();
    for c in customers {
        let Some(id) = id_of(c) else {
            out.push("the truth holds a customer without an id".into());
            continue;
        };
        truth_ids.insert(id.clone());
        match mirror.get(&id) {
            None => out.push(format!("customer {id} is missing from the mirror")),
            Some((m, _, pending)) if comparable(m, *pending) != comparable(c, *pending) => {
                out.push(format!("customer {id} differs: mirror {m} vs source {c}"))
            }
            Some((_, cols, _)) if *cols != columns_of(c, &CUSTOMER_COLUMNS) => out.push(format!(
                "customer {id}: columns {CUSTOMER_COLUMNS:?} hold {cols:?}, expected {:?}",
                columns_of(c, &CUSTOMER_COLUMNS)
            )),
            Some(_) => {}
        }
    }
    for id in mirror.keys().filter(|id| !truth_ids.contains(*id)) {
        out.push(format!(
            "customer {id} is live in the mirror but not at the source"
        ));
    }
    truth_ids
}

/// Every customer deleted at the source that the mirror holds is marked deleted: none
/// of them is among the mirror's live customers.
fn compare_deleted(mirror: &LiveCustomers, truth: &Value, out: &mut Found) {
    let empty = Vec::new();
    let deleted = truth
        .get("deleted_customer_ids")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for id in deleted.iter().filter_map(Value::as_str) {
        if mirror.contains_key(id) {
            out.push(format!(
                "customer {id} was deleted at the source but is live in the mirror"
            ));
        }
    }
}

const TX_COLUMNS: [&str; 2] = ["created_at", "currency_code"];

/// A transaction the mirror read from the org-wide feed (it carries `customer_id`,
/// which the per-customer form never shows) reduced to the keys of `source`, the
/// per-customer form `/_sim/truth` holds: the feed's extra fields (fees, type, ...) are
/// not in the truth to compare with (NOTES.md, "The org-wide transactions feed").
/// Any other row is compared whole.
fn per_customer_form(mirror: Value, source: &Value) -> Value {
    match (mirror, source) {
        (Value::Object(m), Value::Object(s)) if m.contains_key("customer_id") => {
            Value::Object(m.into_iter().filter(|(k, _)| s.contains_key(k)).collect())
        }
        (m, _) => m,
    }
}

/// Compares the live transactions of each customer the source holds, both ways.
fn compare_transactions(
    store: &Store,
    truth: &Value,
    truth_ids: &BTreeSet<String>,
    out: &mut Found,
) -> Result<(), StoreError> {
    let txs = truth.get("transactions").and_then(Value::as_object);
    let mut mirror: BTreeMap<String, Vec<VerifyTransaction>> = BTreeMap::new();
    for t in store.verify_transactions()? {
        mirror.entry(t.customer_id.clone()).or_default().push(t);
    }
    // One order whatever the store's scan gave, so a limited list is the same list.
    for rows in mirror.values_mut() {
        rows.sort_by(|a, b| a.transaction_id.cmp(&b.transaction_id));
    }
    for id in truth_ids {
        let source: BTreeMap<String, &Value> = txs
            .and_then(|t| t.get(id))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| Some((t.get("transaction_id")?.as_str()?.to_string(), t)))
                    .collect()
            })
            .unwrap_or_default();
        let mut seen = BTreeSet::new();
        for row in mirror.remove(id).unwrap_or_default() {
            let (tid, raw) = (row.transaction_id, row.raw);
            let cols = vec![row.created_at, row.currency_code];
            match source.get(&tid) {
                None => out.push(format!(
                    "transaction {tid} of customer {id} is live in the mirror but not at the source"
                )),
                Some(t) if normalized(&per_customer_form(parse(&raw), t)) != normalized(t) => out
                    .push(format!(
                        "transaction {tid} differs: mirror {raw} vs source {t}"
                    )),
                Some(t) if cols != columns_of(t, &TX_COLUMNS) => out.push(format!(
                    "transaction {tid}: columns {TX_COLUMNS:?} hold {cols:?}, expected {:?}",
                    columns_of(t, &TX_COLUMNS)
                )),
                Some(_) => {}
            }
            seen.insert(tid);
        }
        for tid in source.keys().filter(|t| !seen.contains(*t)) {
            out.push(format!(
                "transaction {tid} of customer {id} is missing from the mirror"
            ));
        }
    }
    Ok(())
}
