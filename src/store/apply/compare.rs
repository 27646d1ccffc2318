//! The dialect-free half of writing a batch, shared by the SQLite store (`apply.rs`) and
//! the PostgreSQL one (`pg/apply.rs`): which change an observed row makes to the stored
//! one, the row to write (a partial object merged over the stored one), the `fields`
//! JSON of its change row, and the counts. Each store only reads the stored rows and
//! writes what these functions decide, so both record the same changes for the same
//! batches.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{Applied, Observed};
use crate::api::model::{Customer, RawObject, Transaction};

/// What an observed row does to the stored one. `Updated` and `Restored` carry the
/// changed fields as `changes.fields` JSON (`{"field": {"old": .., "new": ..}}`).
pub(in crate::store) enum Change {
    Created,
    Updated(String),
    Restored(Option<String>),
    Deleted,
}

impl Change {
    /// The change row's `kind` and `fields`; `None`: no change row (a row created by the
    /// initial load, which is not a change and would double a backfill's writes).
    pub(in crate::store) fn row(
        self,
        initial_load: bool,
    ) -> Option<(&'static str, Option<String>)> {
        Some(match self {
            Change::Created if initial_load => return None,
            Change::Created => ("created", None),
            Change::Updated(f) => ("updated", Some(f)),
            Change::Restored(f) => ("restored", f),
            Change::Deleted => ("deleted", None),
        })
    }
}

/// A change row's `run_id` and `source`: a webhook's change belongs to no run (SQLite
/// migration 13), a run's to its run.
pub(in crate::store) fn change_origin(
    run_id: i64,
    webhook: Option<&str>,
) -> (Option<i64>, &'static str) {
    match webhook {
        Some(_) => (None, "webhook"),
        None => (Some(run_id), "poll"),
    }
}

impl Applied {
    /// Counts a customer's change.
    pub(in crate::store) fn count_customer(&mut self, change: &Change) {
        match change {
            Change::Created => self.customers_inserted += 1,
            Change::Updated(_) => self.customers_updated += 1,
            Change::Restored(_) => self.customers_restored += 1,
            Change::Deleted => self.customers_deleted += 1,
        }
    }

    /// Counts a transaction's change.
    pub(in crate::store) fn count_transaction(&mut self, change: &Change) {
        match change {
            Change::Created => self.transactions_inserted += 1,
            Change::Updated(_) => self.transactions_updated += 1,
            Change::Restored(_) => self.transactions_restored += 1,
            Change::Deleted => self.transactions_deleted += 1,
        }
    }
}

/// How observed customer `o` changes the stored one (`stored`: its parsed `raw` and
/// whether it is marked deleted; `None`: not in the mirror), and for a partial list
/// item, the row to write (the stored object with the item merged in). `None`: no
/// change, nothing to write.
pub(in crate::store) fn customer_change(
    stored: Option<(RawObject, bool)>,
    o: &Observed,
) -> Option<(Change, Option<Customer>)> {
    let Some((old, deleted)) = stored else {
        return Some((Change::Created, None));
    };
    let incoming = object(&o.customer.raw);
    let merged = if o.partial {
        merge_partial(&old, &incoming)
    } else {
        incoming
    };
    let fields = diff(&old, &merged);
    let row = if o.partial {
        let text = Value::Object(merged.clone()).to_string();
        Customer::from_stored(Value::Object(merged), text).ok()
    } else {
        None
    };
    match (deleted, fields) {
        (true, fields) => Some((Change::Restored(fields), row)),
        (false, Some(fields)) => Some((Change::Updated(fields), row)),
        (false, None) => None,
    }
}

/// How incoming transaction `t` changes the stored one (`stored` as for
/// [`customer_change`]), and the row to write when it is not `t` as received
/// ([`merge_transaction`]). `None`: no change.
pub(in crate::store) fn transaction_change(
    stored: Option<(RawObject, bool)>,
    t: &Transaction,
) -> Option<(Change, Option<Transaction>)> {
    let Some((old, deleted)) = stored else {
        return Some((Change::Created, None));
    };
    let (fields, merged) = merge_transaction(&old, t);
    match (deleted, fields) {
        (true, fields) => Some((Change::Restored(fields), merged)),
        (false, Some(fields)) => Some((Change::Updated(fields), merged)),
        (false, None) => None,
    }
}

/// The object shows the customer's metadata: a `GET /customers/{id}` read, or a list
/// item that carries `metadata` (the simulator without live quirks, or a service that
/// stops hiding it). A list item's `metadata: null` proves nothing (NOTES.md).
pub(in crate::store) fn shows_details(o: &Observed) -> bool {
    !o.partial || !o.customer.metadata_null
}

/// What a customer's complete transaction list says of it (`customer_sync`): how many
/// it holds, the newest `created_at`, the newest pending one's `created_at`.
pub(in crate::store) struct ListSummary<'a> {
    pub live_tx: i64,
    pub last_tx_at: Option<&'a str>,
    pub newest_pending_at: Option<&'a str>,
}

/// The summary of `list` (timestamps in the mirror's one text form compare as text).
pub(in crate::store) fn summary(list: &[Transaction]) -> ListSummary<'_> {
    ListSummary {
        live_tx: list.len() as i64,
        last_tx_at: list.iter().filter_map(|t| t.created_at.as_deref()).max(),
        newest_pending_at: list
            .iter()
            .filter(|t| t.status.as_deref() == Some("pending"))
            .filter_map(|t| t.created_at.as_deref())
            .max(),
    }
}

/// The stored transactions a customer's list no longer holds (`left`: id and whether
/// it is marked deleted), in id order: deleted at the source when the list is
/// `complete`, else nothing is.
pub(in crate::store) fn vanished(
    left: impl IntoIterator<Item = (String, bool)>,
    complete: bool,
) -> Vec<String> {
    if !complete {
        return Vec::new();
    }
    let mut ids: Vec<String> = left
        .into_iter()
        .filter(|(_, deleted)| !deleted)
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    ids
}

/// Feed rows grouped by their customer, in customer id order (a row without a
/// `customer_id` cannot be stored and is left out).
pub(in crate::store) fn by_customer(rows: &[Transaction]) -> BTreeMap<&str, Vec<Transaction>> {
    let mut by: BTreeMap<&str, Vec<Transaction>> = BTreeMap::new();
    for t in rows {
        if let Some(c) = t.customer_id.as_deref() {
            by.entry(c).or_default().push(t.clone());
        }
    }
    by
}

/// A stored or received object's text as a map (empty if it is not an object, which
/// the API client never lets through).
pub(in crate::store) fn object(text: &str) -> RawObject {
    serde_json::from_str(text).unwrap_or_default()
}

/// A list item over what the mirror knows: keys the item omits, and a `metadata: null`
/// the live list shows for every customer, keep their known values.
pub(in crate::store) fn merge_partial(stored: &RawObject, incoming: &RawObject) -> RawObject {
    let mut merged = incoming.clone();
    for (k, v) in stored {
        match merged.get(k) {
            None => {
                merged.insert(k.clone(), v.clone());
            }
            Some(Value::Null) if k == "metadata" && !v.is_null() => {
                merged.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    merged
}

/// `{"field": {"old": .., "new": ..}}` for every field that differs, or `None`.
/// Key order does not matter: the same fields in another order are no change.
pub(in crate::store) fn diff(old: &RawObject, new: &RawObject) -> Option<String> {
    let mut d = Map::new();
    for (k, nv) in new {
        let ov = old.get(k).unwrap_or(&Value::Null);
        if ov != nv {
            d.insert(k.clone(), json!({"old": ov, "new": nv}));
        }
    }
    for (k, ov) in old {
        if !new.contains_key(k) {
            d.insert(k.clone(), json!({"old": ov, "new": null}));
        }
    }
    if d.is_empty() {
        None
    } else {
        Some(Value::Object(d).to_string())
    }
}

/// An incoming transaction over the stored one: the fields that changed, and the row
/// to write when it is not `incoming` as received. Keys the incoming row omits keep
/// their stored values: the per-customer endpoint does not show the feed's fields
/// (`customer_id`, `fee_amount`, `updated_at`, ...), and its row must neither blank
/// what the feed told (columns and `raw` alike) nor count as a change of them.
pub(in crate::store) fn merge_transaction(
    stored: &RawObject,
    incoming: &Transaction,
) -> (Option<String>, Option<Transaction>) {
    let received = object(&incoming.raw);
    if stored.keys().all(|k| received.contains_key(k)) {
        return (diff(stored, &received), None);
    }
    let mut merged = received;
    for (k, v) in stored {
        if !merged.contains_key(k) {
            merged.insert(k.clone(), v.clone());
        }
    }
    let fields = diff(stored, &merged);
    let text = Value::Object(merged.clone()).to_string();
    // The merged object holds the incoming id, so it always reads back.
    let row = Transaction::from_stored(Value::Object(merged), text).ok();
    (fields, row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> RawObject {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn partial_list_items_keep_known_metadata_and_hidden_fields() {
        let stored = obj(
            json!({"customer_id": "c", "name": "A", "metadata": {"vip": true}, "environment": "live"}),
        );
        let incoming = obj(json!({"customer_id": "c", "name": "A", "metadata": null}));
        let merged = merge_partial(&stored, &incoming);
        assert_eq!(diff(&stored, &merged), None);
        let renamed = obj(json!({"customer_id": "c", "name": "B", "metadata": null}));
        let merged = merge_partial(&stored, &renamed);
        assert_eq!(merged["metadata"], json!({"vip": true}));
        let d: Value = serde_json::from_str(&diff(&stored, &merged).unwrap()).unwrap();
        assert_eq!(d, json!({"name": {"old": "A", "new": "B"}}));
    }

    #[test]
    fn diff_ignores_key_order_and_sees_removed_keys() {
        let a = obj(json!({"x": 1, "y": 2}));
        let b = obj(json!({"y": 2, "x": 1}));
        assert_eq!(diff(&a, &b), None);
        let c = obj(json!({"x": 1}));
        let d: Value = serde_json::from_str(&diff(&a, &c).unwrap()).unwrap();
        assert_eq!(d, json!({"y": {"old": 2, "new": null}}));
    }

    /// The decision a store acts on, for each kind of stored row: new, the same object
    /// (any key order, exact digits kept), changed, deleted and shown again.
    #[test]
    fn a_transaction_changes_the_stored_row_only_when_a_value_differs() {
        let text = r#"{"transaction_id": "t1", "gross_amount": 10.50, "status": "pending"}"#;
        let t = Transaction::from_value(serde_json::from_str(text).unwrap()).unwrap();
        let kind = |stored: Option<(&str, bool)>| {
            transaction_change(stored.map(|(s, d)| (object(s), d)), &t)
                .and_then(|(c, _)| c.row(false))
        };
        assert_eq!(kind(None), Some(("created", None)));
        let same = r#"{"status": "pending", "gross_amount": 10.50, "transaction_id": "t1"}"#;
        assert_eq!(kind(Some((same, false))), None);
        // `10.5` is another text of the amount: a change, as the API wrote it.
        let other = r#"{"transaction_id": "t1", "gross_amount": 10.5, "status": "pending"}"#;
        let (k, fields) = kind(Some((other, false))).unwrap();
        assert_eq!(k, "updated");
        assert_eq!(
            fields.as_deref(),
            Some(r#"{"gross_amount":{"old":10.5,"new":10.50}}"#)
        );
        assert_eq!(kind(Some((same, true))), Some(("restored", None)));
    }
}
