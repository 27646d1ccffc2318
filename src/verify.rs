//! Compares a mirror with a source's ground truth (the simulator's `/_sim/truth`).
//! The demo prints its verdict, and the tests and the benchmark assert it, so "the
//! mirror equals the source" is checked by one piece of code everywhere.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::Connection;
use serde_json::Value;

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

/// Differences between the mirror and `truth`, at most `limit` of them; empty when the
/// mirror equals the source: the same live customers with the same fields, the same
/// live transactions per live customer, and every known deleted customer marked.
pub fn differences(
    conn: &Connection,
    truth: &Value,
    limit: usize,
) -> rusqlite::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut push = |s: String| {
        if out.len() < limit {
            out.push(s);
        }
    };
    let mut mirror: BTreeMap<String, Value> = BTreeMap::new();
    {
        let mut stmt = conn.prepare("SELECT id, raw FROM customers WHERE deleted_at IS NULL")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (id, raw) = row?;
            mirror.insert(id, parse(&raw));
        }
    }
    let empty = Vec::new();
    let customers = truth
        .get("customers")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut truth_ids = BTreeSet::new();
    for c in customers {
        let Some(id) = id_of(c) else {
            push("the truth holds a customer without an id".into());
            continue;
        };
        truth_ids.insert(id.clone());
        match mirror.get(&id) {
            None => push(format!("customer {id} is missing from the mirror")),
            Some(m) if m != c => push(format!("customer {id} differs: mirror {m} vs source {c}")),
            Some(_) => {}
        }
    }
    for id in mirror.keys().filter(|id| !truth_ids.contains(*id)) {
        push(format!(
            "customer {id} is live in the mirror but not at the source"
        ));
    }
    let deleted = truth
        .get("deleted_customer_ids")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    {
        let mut stmt =
            conn.prepare("SELECT deleted_at IS NOT NULL FROM customers WHERE id = ?1")?;
        for id in deleted.iter().filter_map(Value::as_str) {
            let mut rows = stmt.query([id])?;
            if let Some(row) = rows.next()?
                && !row.get::<_, bool>(0)?
            {
                push(format!(
                    "customer {id} was deleted at the source but is live in the mirror"
                ));
            }
        }
    }
    let txs = truth.get("transactions").and_then(Value::as_object);
    let mut stmt = conn.prepare("SELECT transaction_id, raw FROM transactions WHERE customer_id = ?1 AND deleted_at IS NULL")?;
    for id in &truth_ids {
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
        for row in stmt.query_map([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })? {
            let (tid, raw) = row?;
            match source.get(&tid) {
                None => push(format!(
                    "transaction {tid} of customer {id} is live in the mirror but not at the source"
                )),
                Some(t) if parse(&raw) != **t => push(format!(
                    "transaction {tid} differs: mirror {raw} vs source {t}"
                )),
                Some(_) => {}
            }
            seen.insert(tid);
        }
        for tid in source.keys().filter(|t| !seen.contains(*t)) {
            push(format!(
                "transaction {tid} of customer {id} is missing from the mirror"
            ));
        }
    }
    Ok(out)
}
