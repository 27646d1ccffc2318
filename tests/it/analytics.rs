//! The analytics surface: every example query of the README runs against a mirror of
//! the simulator, the answers match totals computed from `/_sim/truth`, and the views
//! add money exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use lomi_sim::Mutation;
use lomi_sync::api::{Customer, Transaction};
use lomi_sync::money::{Decimal, minor_unit_exponent};
use lomi_sync::query::{self, Format};
use lomi_sync::store::{Batch, Observed, RunKind, Store};
use serde_json::{Value, json};

use crate::harness::Mirror;
use crate::support::{customer_id, small_sim_options, spawn_sim};

/// The SQL blocks of the README's "Example questions" section.
fn readme_queries() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("## Example questions")
        .expect("the README has example questions");
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end]
        .split("```sql")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim().to_string())
        .collect()
}

fn rows(store: &Store, sql: &str) -> Vec<Value> {
    let mut out = Vec::new();
    query::run(store, sql, Format::Json, &mut out).unwrap_or_else(|e| panic!("{e}: {sql}"));
    serde_json::from_slice::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn minor(t: &Value) -> i64 {
    let text = t["gross_amount"].to_string();
    Decimal::parse(text.trim_matches('"'))
        .and_then(|d| d.to_minor(minor_unit_exponent(t["currency_code"].as_str().unwrap())))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_query_runs_and_matches_the_truth() {
    let sim = spawn_sim(small_sim_options(400, 80)).await;
    let mut m = Mirror::new(&sim);
    m.settings.sync.full_every = Duration::from_millis(1).into();
    m.run(RunKind::Backfill).await.unwrap();
    // Recent activity, so the "last 30 days" and "stuck in pending" questions have answers.
    let report = sim.sim.mutate(&Mutation {
        create: 10,
        update: 8,
        delete: 0,
        add_tx: 200,
        settle: 40,
        delete_tx: 4,
        delete_newest_tx: 0,
        restore: 0,
    });
    // Deletions of customers who never paid: a deleted customer's payments stay in the
    // mirror (and in its answers) but leave the truth, which would blur the comparison.
    let before = sim.sim.truth();
    let never_paid: Vec<String> = before["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| customer_id(c).to_string())
        .filter(|id| !report.created.contains(id))
        .filter(|id| {
            before["transactions"][id.as_str()]
                .as_array()
                .is_none_or(|t| t.is_empty())
        })
        .take(3)
        .collect();
    for id in &never_paid {
        let res = sim
            .send(reqwest::Method::DELETE, &format!("/customers/{id}"), None)
            .await;
        assert!(res.status().is_success());
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    m.run(RunKind::Sync).await.unwrap();
    m.assert_equals_truth(&sim);
    let store = Store::open_read_only(
        &lomi_sync::store::Location::sqlite(&m.db),
        Duration::from_secs(5),
    )
    .unwrap();
    let truth = sim.sim.truth();
    let customers = truth["customers"].as_array().unwrap();
    let txs: Vec<&Value> = truth["transactions"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|a| a.as_array().unwrap())
        .collect();

    let queries = readme_queries();
    assert!(
        queries.len() >= 8,
        "the README documents at least eight questions"
    );
    let updated = &report.updated[0];
    // How many queries were checked against the truth, not just run.
    let mut checked = 0;
    for sql in &queries {
        // The history example names a demo customer; ask about one that changed here.
        let sql = regex_free_replace_customer(sql, updated);
        let result = rows(&store, &sql);
        if sql.contains("FROM live_customers\nGROUP BY 1") {
            checked += 1;
            // Customers by country.
            let mut expected: BTreeMap<String, i64> = BTreeMap::new();
            for c in customers {
                *expected
                    .entry(c["country"].as_str().unwrap_or("(unknown)").to_string())
                    .or_default() += 1;
            }
            let got: BTreeMap<String, i64> = result
                .iter()
                .map(|r| {
                    (
                        r["country"].as_str().unwrap().to_string(),
                        r["customers"].as_i64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(got, expected);
        } else if sql.contains("refund_rate_pct") {
            checked += 1;
            for r in &result {
                let cur = r["currency_code"].as_str().unwrap();
                let of = |s: &str| {
                    txs.iter()
                        .filter(|t| t["currency_code"] == cur && t["status"] == s)
                        .count() as i64
                };
                assert_eq!(r["refunded"].as_i64().unwrap(), of("refunded"), "{cur}");
                assert_eq!(
                    r["paid"].as_i64().unwrap(),
                    of("refunded") + of("completed"),
                    "{cur}"
                );
            }
        } else if sql.contains("json_each(ch.fields)") {
            checked += 1;
            assert!(
                result
                    .iter()
                    .any(|r| r["kind"] == "updated" && r["entity_id"] == updated.as_str()),
                "{result:?}"
            );
        } else if sql.contains("t.status = 'pending'") {
            checked += 1;
            let cutoff = (chrono::Utc::now() - chrono::Duration::days(1))
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            let stuck = txs
                .iter()
                .filter(|t| {
                    t["status"] == "pending" && t["created_at"].as_str().unwrap() < cutoff.as_str()
                })
                .count();
            assert_eq!(result.len(), stuck.min(20));
        } else if sql.contains("-30 days") {
            checked += 1;
            // Top customers of the last 30 days: the first per currency is the truth's best.
            let since = (chrono::Utc::now() - chrono::Duration::days(30))
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            let mut best: BTreeMap<String, i64> = BTreeMap::new();
            let mut per: BTreeMap<(String, String), i64> = BTreeMap::new();
            for (cid, list) in truth["transactions"].as_object().unwrap() {
                for t in list.as_array().unwrap() {
                    if t["status"] == "completed"
                        && t["created_at"].as_str().unwrap() >= since.as_str()
                    {
                        *per.entry((t["currency_code"].as_str().unwrap().into(), cid.clone()))
                            .or_default() += minor(t);
                    }
                }
            }
            for ((cur, _), v) in per {
                let e = best.entry(cur).or_default();
                *e = (*e).max(v);
            }
            assert!(!best.is_empty(), "recent payments exist");
            for (cur, top) in best {
                let first = result
                    .iter()
                    .find(|r| r["currency_code"] == cur.as_str())
                    .unwrap();
                assert_eq!(first["revenue_minor"].as_i64().unwrap(), top, "{cur}");
            }
        } else if sql.contains("FROM daily_revenue") {
            checked += 1;
            for r in &result {
                let (day, cur) = (
                    r["day"].as_str().unwrap(),
                    r["currency_code"].as_str().unwrap(),
                );
                let expected: i64 = txs
                    .iter()
                    .filter(|t| {
                        t["status"] == "completed"
                            && t["currency_code"] == cur
                            && t["created_at"].as_str().unwrap().starts_with(day)
                    })
                    .map(|t| minor(t))
                    .sum();
                assert_eq!(
                    r["revenue_minor"].as_i64().unwrap(),
                    expected,
                    "{day} {cur}"
                );
            }
        } else if sql.contains("FROM customer_revenue") {
            checked += 1;
            for r in &result {
                let cid = r["customer_id"].as_str().unwrap();
                let list = truth["transactions"][cid].as_array().unwrap();
                let expected: i64 = list
                    .iter()
                    .filter(|t| t["status"] == "completed" && t["currency_code"] == "XOF")
                    .map(minor)
                    .sum();
                assert_eq!(
                    r["completed_total"].as_str().unwrap(),
                    expected.to_string(),
                    "{cid}"
                );
            }
        } else if sql.contains("deleted_at >= strftime('%Y-%m-01") {
            checked += 1;
            assert_eq!(result.len(), never_paid.len(), "deleted this month");
        } else if sql.contains("new_customers") {
            checked += 1;
            let total: i64 = result
                .iter()
                .map(|r| r["new_customers"].as_i64().unwrap())
                .sum();
            assert!(total >= report.created.len() as i64);
        } else {
            assert!(!result.is_empty(), "{sql}");
        }
    }
    assert!(
        checked >= 9,
        "only {checked} queries were checked against the truth"
    );
    let live = rows(
        &store,
        "SELECT live_customers, live_transactions FROM freshness",
    );
    assert_eq!(
        live[0]["live_customers"].as_u64().unwrap() as usize,
        customers.len()
    );
    assert_eq!(
        live[0]["live_transactions"].as_u64().unwrap() as usize,
        txs.len()
    );
}

fn regex_free_replace_customer(sql: &str, id: &str) -> String {
    match sql.find("ch.customer_id = '") {
        Some(i) => {
            let start = i + "ch.customer_id = '".len();
            let end = start + sql[start..].find('\'').unwrap();
            format!("{}{id}{}", &sql[..start], &sql[end..])
        }
        None => sql.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_add_decimal_amounts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let mut store = Store::open(
        &lomi_sync::store::Location::sqlite(&db),
        Duration::from_secs(5),
    )
    .unwrap();
    let run_id = store.start_run(RunKind::Backfill).unwrap();
    let customer = Customer::from_value(json!({"id": "cus_1", "name": "Ndèye"})).unwrap();
    let tx = |id: &str, amount: &str, currency: &str, day: &str| {
        let v: Value = serde_json::from_str(&format!(
            r#"{{"transaction_id":"{id}","gross_amount":{amount},"currency_code":"{currency}","status":"completed","created_at":"{day}T10:00:00Z"}}"#
        ))
        .unwrap();
        Transaction::from_value(v).unwrap()
    };
    let batch = Batch {
        run_id,
        customers: vec![Observed {
            customer,
            partial: false,
        }],
        transactions: vec![(
            "cus_1".into(),
            vec![
                tx("t1", "0.1", "USD", "2026-01-01"),
                tx("t2", "0.2", "USD", "2026-01-01"),
                tx("t3", "1000", "XOF", "2026-01-02"),
                tx("t4", "0.005", "KWD", "2026-01-02"),
            ],
        )],
        ..Batch::default()
    };
    store.apply(&batch).unwrap();
    let r = rows(
        &store,
        "SELECT currency_code, completed_minor, completed_total FROM customer_revenue ORDER BY currency_code",
    );
    assert_eq!(
        r,
        vec![
            json!({"currency_code": "KWD", "completed_minor": 5, "completed_total": "0.005"}),
            json!({"currency_code": "USD", "completed_minor": 30, "completed_total": "0.30"}),
            json!({"currency_code": "XOF", "completed_minor": 1000, "completed_total": "1000"}),
        ]
    );
    let d = rows(
        &store,
        "SELECT day, currency_code, revenue FROM daily_revenue WHERE currency_code = 'USD'",
    );
    assert_eq!(
        d,
        vec![json!({"day": "2026-01-01", "currency_code": "USD", "revenue": "0.30"})]
    );
    let g = rows(
        &store,
        "SELECT gross_amount FROM transactions WHERE transaction_id = 't1'",
    );
    assert_eq!(
        g[0]["gross_amount"], "0.1",
        "the amount is kept as received"
    );
}
