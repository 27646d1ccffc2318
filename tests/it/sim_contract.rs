//! Contract tests of the simulator: it must behave as the vendor docs say (and, where
//! asked, as the live service does), because every other test trusts it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use lomi_sim::{Drift, Faults, IdField, IdFormat, Mutation, RateLimit, SimOptions};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{TestSim, customer_id, expect_json, get_json, small_sim_options, spawn_sim};

const CUSTOMER_FIELDS: [&str; 15] = [
    "id",
    "organization_id",
    "name",
    "email",
    "phone_number",
    "whatsapp_number",
    "country",
    "city",
    "address",
    "postal_code",
    "is_business",
    "metadata",
    "environment",
    "created_at",
    "updated_at",
];

const TX_FIELDS: [&str; 9] = [
    "transaction_id",
    "description",
    "gross_amount",
    "currency_code",
    "status",
    "payment_method_code",
    "provider_code",
    "metadata",
    "created_at",
];

fn customers(v: &Value) -> &Vec<Value> {
    v["customers"].as_array().expect("customers array")
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter().map(|c| customer_id(c).to_owned()).collect()
}

fn truth_customers(sim: &TestSim) -> Vec<Value> {
    customers(&sim.sim.truth()).clone()
}

fn pagination(v: &Value) -> (u64, u64, u64, u64) {
    let p = &v["pagination"];
    let n = |k: &str| {
        p[k].as_u64()
            .unwrap_or_else(|| panic!("pagination.{k} in {p}"))
    };
    (n("page"), n("pageSize"), n("totalCount"), n("totalPages"))
}

/// Asserts the live error envelope with `code`, and that the header and body request ids
/// agree; returns the body.
async fn expect_error(res: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let header_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("X-Request-Id header on an error");
    let body = expect_json(res, status).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"].get("details").is_some(), "{body}");
    assert_eq!(body["request_id"], header_id.as_str(), "{body}");
    body
}

fn parse_ts(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let s = v.as_str().expect("timestamp string");
    assert!(
        s.len() == 24 && s.ends_with('Z'),
        "{s} is not RFC 3339 UTC with milliseconds"
    );
    chrono::DateTime::parse_from_rfc3339(s).expect("RFC 3339")
}

/// Every live customer in list order, walking pages of `page_size`.
async fn walk(sim: &TestSim, page_size: usize) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let v = sim
            .get_json(&format!("/customers?page={page}&pageSize={page_size}"))
            .await;
        let items = customers(&v);
        if items.is_empty() {
            break;
        }
        all.extend(items.iter().cloned());
    }
    all
}

#[tokio::test]
async fn list_defaults_to_pages_of_50_newest_first_with_every_documented_field() {
    let sim = spawn_sim(small_sim_options(120, 1)).await;
    let res = sim.get("/customers").await;
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(
        res.headers()["content-type"].to_str().ok(),
        Some("application/json")
    );
    let v = expect_json(res, StatusCode::OK).await;
    assert_eq!(pagination(&v), (1, 50, 120, 3));
    let page = customers(&v);
    assert_eq!(page.len(), 50);
    for c in page {
        let keys: Vec<&str> = c
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, CUSTOMER_FIELDS, "{c}");
        assert_eq!(c["environment"], "test");
        assert!(c["metadata"].is_object());
        assert!(c["is_business"].is_boolean());
        assert!(customer_id(c).starts_with("cus_"));
        assert!(
            parse_ts(&c["updated_at"]) >= parse_ts(&c["created_at"]),
            "{c}"
        );
    }

    // The whole list is ordered by created_at desc, then id desc, and the generated data
    // lies in the past.
    let all = truth_customers(&sim);
    assert_eq!(ids(page), ids(&all[..50]));
    let key = |c: &Value| (parse_ts(&c["created_at"]), customer_id(c).to_owned());
    assert!(all.windows(2).all(|w| key(&w[0]) > key(&w[1])));
    assert!(
        all.iter()
            .all(|c| parse_ts(&c["created_at"]) < chrono::Utc::now())
    );
}

#[tokio::test]
async fn customers_created_at_the_same_instant_are_ordered_by_id_desc() {
    // Bulk imports give a share of customers identical created_at values.
    let sim = spawn_sim(small_sim_options(2000, 3)).await;
    let all = walk(&sim, 200).await;
    assert_eq!(all.len(), 2000);
    let ties: Vec<_> = all
        .windows(2)
        .filter(|w| w[0]["created_at"] == w[1]["created_at"])
        .collect();
    assert!(
        !ties.is_empty(),
        "the data set should contain equal created_at values"
    );
    for w in ties {
        assert!(customer_id(&w[0]) > customer_id(&w[1]));
    }
}

#[tokio::test]
async fn paging_edges_last_partial_page_past_the_end_and_page_size_cap() {
    let sim = spawn_sim(small_sim_options(120, 2)).await;
    let all = truth_customers(&sim);

    let last = sim.get_json("/customers?page=3&pageSize=50").await;
    assert_eq!(pagination(&last), (3, 50, 120, 3));
    assert_eq!(ids(customers(&last)), ids(&all[100..]));

    let past = sim.get_json("/customers?page=4&pageSize=50").await;
    assert_eq!(pagination(&past), (4, 50, 120, 3));
    assert!(customers(&past).is_empty());
    let far = sim.get_json("/customers?page=18446744073709551615").await;
    assert!(customers(&far).is_empty());

    let capped = sim.get_json("/customers?pageSize=500").await;
    assert_eq!(pagination(&capped), (1, 200, 120, 1));
    assert_eq!(customers(&capped).len(), 120);

    // totalPages = ceil(totalCount / pageSize).
    for (size, pages) in [
        (1, 120),
        (7, 18),
        (40, 3),
        (60, 2),
        (119, 2),
        (120, 1),
        (200, 1),
    ] {
        let v = sim.get_json(&format!("/customers?pageSize={size}")).await;
        assert_eq!(pagination(&v).3, pages, "pageSize {size}");
    }

    // Consecutive pages tile the list exactly.
    assert_eq!(ids(&walk(&sim, 7).await), ids(&all));
}

#[tokio::test]
async fn page_size_cap_is_configurable() {
    let sim = spawn_sim(SimOptions {
        max_page_size: 30,
        ..small_sim_options(100, 2)
    })
    .await;
    let v = sim.get_json("/customers?pageSize=200").await;
    assert_eq!(pagination(&v), (1, 30, 100, 4));
    assert_eq!(customers(&v).len(), 30);
    // The default of 50 is capped too.
    let v = sim.get_json("/customers").await;
    assert_eq!(pagination(&v).1, 30);
}

#[tokio::test]
async fn an_empty_data_set_has_zero_pages() {
    let sim = spawn_sim(small_sim_options(0, 1)).await;
    let v = sim.get_json("/customers").await;
    assert_eq!(pagination(&v), (1, 50, 0, 0));
    assert!(customers(&v).is_empty());
}

#[tokio::test]
async fn bad_query_values_are_rejected_with_400() {
    let sim = spawn_sim(small_sim_options(10, 1)).await;
    for (query, field) in [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=1.5", "page"),
        ("page=", "page"),
        ("pageSize=0", "pageSize"),
        ("pageSize=abc", "pageSize"),
        ("type=vip", "type"),
        ("type=Business", "type"),
        ("status=gold", "status"),
    ] {
        let res = sim.get(&format!("/customers?{query}")).await;
        let body = expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert_eq!(body["error"]["details"]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn search_is_a_case_insensitive_substring_of_name_or_email() {
    let sim = spawn_sim(small_sim_options(300, 4)).await;
    let created = sim
        .send(
            Method::POST,
            "/customers",
            Some(r#"{"name":"Aïssatou Traoré","email":"Zz.Unique@Example.com"}"#),
        )
        .await;
    let created = expect_json(created, StatusCode::CREATED).await;
    let id = customer_id(&created).to_owned();

    for needle in [
        "AÏSSATOU%20TRAOR%C3%89",
        "a%C3%AFssatou",
        "traoré",
        "zz.unique@",
        "EXAMPLE.COM",
    ] {
        let v = sim
            .get_json(&format!("/customers?search={needle}&pageSize=200"))
            .await;
        assert!(
            ids(customers(&v)).contains(&id),
            "search {needle} should find {id}"
        );
    }

    // Results are exactly the matching customers, in list order.
    let all = truth_customers(&sim);
    for needle in [
        "diop",
        "SÈNE",
        "n'diaye",
        "example.org",
        "+221",
        "zzz-nothing",
    ] {
        let lower = needle.to_lowercase();
        let expected: Vec<String> = all
            .iter()
            .filter(|c| {
                let name = c["name"].as_str().unwrap_or_default().to_lowercase();
                let email = c["email"].as_str().unwrap_or_default().to_lowercase();
                name.contains(&lower) || email.contains(&lower)
            })
            .map(|c| customer_id(c).to_owned())
            .collect();
        let url = sim.url("/customers");
        let res = sim
            .client
            .get(url)
            .query(&[("search", needle), ("pageSize", "200")])
            .header("X-API-KEY", &sim.api_key)
            .send()
            .await
            .expect("search request");
        let v = expect_json(res, StatusCode::OK).await;
        assert_eq!(ids(customers(&v)), expected, "search {needle}");
        assert_eq!(pagination(&v).2, expected.len() as u64);
    }
}

#[tokio::test]
async fn type_filter_splits_business_and_individual_customers() {
    let sim = spawn_sim(small_sim_options(400, 5)).await;
    let all = truth_customers(&sim);
    let business: Vec<String> = all
        .iter()
        .filter(|c| c["is_business"] == true)
        .map(|c| customer_id(c).to_owned())
        .collect();
    assert!(!business.is_empty() && business.len() < all.len() / 3);

    let v = sim.get_json("/customers?type=business&pageSize=200").await;
    assert_eq!(ids(customers(&v)), business);
    let v = sim.get_json("/customers?type=individual&pageSize=1").await;
    assert_eq!(pagination(&v).2 as usize, all.len() - business.len());
    assert_eq!(customers(&v)[0]["is_business"], false);
    let v = sim.get_json("/customers?type=all").await;
    assert_eq!(pagination(&v).2 as usize, all.len());
}

#[tokio::test]
async fn status_filter_follows_transactions() {
    let sim = spawn_sim(small_sim_options(300, 6)).await;
    let truth = sim.sim.truth();
    let has_tx = |id: &str| {
        !truth["transactions"][id]
            .as_array()
            .expect("transactions of every live customer")
            .is_empty()
    };
    let active = walk_filtered(&sim, "status=active").await;
    let inactive = walk_filtered(&sim, "status=inactive").await;
    assert!(!active.is_empty() && !inactive.is_empty());
    assert!(active.iter().all(|id| has_tx(id)));
    assert!(inactive.iter().all(|id| !has_tx(id)));
    assert_eq!(active.len() + inactive.len(), 300);

    // Filters combine, and a combined filter pages like the plain list.
    let both = walk_filtered(&sim, "status=active&type=individual&search=a").await;
    let v = sim
        .get_json("/customers?status=active&type=individual&search=a&pageSize=3&page=2")
        .await;
    assert_eq!(ids(customers(&v)), both[3..6]);
    assert_eq!(pagination(&v).2 as usize, both.len());
}

async fn walk_filtered(sim: &TestSim, filter: &str) -> Vec<String> {
    let v = sim
        .get_json(&format!("/customers?{filter}&pageSize=200&page=1"))
        .await;
    let mut out = ids(customers(&v));
    let pages = pagination(&v).3;
    for page in 2..=pages {
        let v = sim
            .get_json(&format!("/customers?{filter}&pageSize=200&page={page}"))
            .await;
        out.extend(ids(customers(&v)));
    }
    out
}

#[tokio::test]
async fn get_customer_returns_the_full_object_and_404_for_unknown_ids() {
    let sim = spawn_sim(small_sim_options(20, 7)).await;
    let list = sim.get_json("/customers").await;
    for c in customers(&list) {
        let one = sim
            .get_json(&format!("/customers/{}", customer_id(c)))
            .await;
        assert_eq!(&one, c);
    }
    for unknown in [
        "cus_0000000000000000",
        "cus_nope",
        "123",
        "CUS_0123456789abcdef",
    ] {
        let res = sim.get(&format!("/customers/{unknown}")).await;
        expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
        let res = sim.get(&format!("/customers/{unknown}/transactions")).await;
        expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    let res = sim.get("/v1/customers").await;
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = sim.send(Method::PUT, "/customers", Some("{}")).await;
    expect_error(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn transactions_are_a_bare_array_newest_first_with_exact_amounts() {
    let sim = spawn_sim(SimOptions {
        tx_per_customer: 10.0,
        ..small_sim_options(200, 8)
    })
    .await;
    let truth = sim.sim.truth();
    let mut fractional = 0;
    let mut currencies = HashSet::new();
    let mut statuses = HashSet::new();
    let mut tx_ids = HashSet::new();
    for c in customers(&truth).iter().take(60) {
        let id = customer_id(c);
        let txs = get_json(
            &sim.url(&format!("/customers/{id}/transactions")),
            &sim.api_key,
        )
        .await;
        assert_eq!(txs, truth["transactions"][id]);
        let txs = txs.as_array().expect("a bare array");
        let created: Vec<_> = txs.iter().map(|t| parse_ts(&t["created_at"])).collect();
        assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");
        for tx in txs {
            let keys: Vec<&str> = tx
                .as_object()
                .expect("object")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, TX_FIELDS, "{tx}");
            assert!(tx_ids.insert(tx["transaction_id"].as_str().expect("id").to_owned()));
            assert!(tx["metadata"].is_null() || tx["metadata"].is_object());
            assert!(parse_ts(&tx["created_at"]) >= parse_ts(&c["created_at"]));
            let currency = tx["currency_code"].as_str().expect("currency");
            currencies.insert(currency.to_owned());
            statuses.insert(tx["status"].as_str().expect("status").to_owned());
            // With arbitrary_precision the number keeps the exact text that was sent.
            let Value::Number(amount) = &tx["gross_amount"] else {
                panic!("gross_amount must be a JSON number: {tx}");
            };
            let text = amount.to_string();
            assert!(
                !text.starts_with('-') && !text.contains(['e', 'E']),
                "{text}"
            );
            match text.split_once('.') {
                None => {}
                Some((_, decimals)) => {
                    assert_ne!(currency, "XOF", "XOF has no minor unit: {text}");
                    assert!(decimals.len() <= 2 && !decimals.ends_with('0'), "{text}");
                    fractional += 1;
                }
            }
        }
    }
    assert!(fractional > 0, "some USD/EUR amounts have decimals");
    assert!(currencies.contains("XOF") && currencies.contains("USD") && currencies.contains("EUR"));
    let known: HashSet<String> = ["pending", "completed", "failed", "refunded", "expired"]
        .map(String::from)
        .into();
    assert!(statuses.is_subset(&known), "{statuses:?}");
    assert!(statuses.contains("completed") && statuses.contains("pending"));
}

#[tokio::test]
async fn transactions_average_tx_per_customer_and_a_third_never_pay() {
    let sim = spawn_sim(SimOptions {
        tx_per_customer: 10.0,
        ..small_sim_options(3000, 9)
    })
    .await;
    let truth = sim.sim.truth();
    let counts: Vec<usize> = truth["transactions"]
        .as_object()
        .expect("map")
        .values()
        .map(|t| t.as_array().expect("array").len())
        .collect();
    let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    assert!((8.5..11.5).contains(&mean), "mean {mean}");

    // Many transactions later, the never-payers (about 35%) still have none.
    let report = sim.sim.mutate(&Mutation {
        add_tx: 30_000,
        ..Mutation::default()
    });
    assert_eq!(report.tx_added.len(), 30_000);
    let after = sim.sim.truth();
    let empty_after: HashSet<&String> = after["transactions"]
        .as_object()
        .expect("map")
        .iter()
        .filter(|(_, t)| t.as_array().is_some_and(Vec::is_empty))
        .map(|(id, _)| id)
        .collect();
    let share = empty_after.len() as f64 / 3000.0;
    assert!((0.28..0.42).contains(&share), "never-payer share {share}");
    for id in &empty_after {
        assert!(
            truth["transactions"][id.as_str()]
                .as_array()
                .is_some_and(Vec::is_empty)
        );
    }
}

#[tokio::test]
async fn create_returns_201_and_the_new_customer_tops_the_list() {
    let sim = spawn_sim(small_sim_options(50, 10)).await;
    let body = r#"{"name":"Amadou Ba","email":"amadou.ba@example.com","phone_number":"+221771234567",
        "country":"Senegal","city":"Dakar","is_business":false,"metadata":{"internal_id":"USER_123"},
        "unknown_field":"ignored"}"#;
    let res = sim.send(Method::POST, "/customers", Some(body)).await;
    assert!(res.headers().contains_key("x-request-id"));
    let created = expect_json(res, StatusCode::CREATED).await;
    assert_eq!(created["name"], "Amadou Ba");
    assert_eq!(created["email"], "amadou.ba@example.com");
    assert_eq!(created["city"], "Dakar");
    assert_eq!(created["metadata"]["internal_id"], "USER_123");
    assert_eq!(created["whatsapp_number"], Value::Null);
    assert_eq!(created["is_business"], false);
    assert!(created.get("unknown_field").is_none());
    assert_eq!(created["created_at"], created["updated_at"]);

    let top = sim.get_json("/customers?pageSize=2").await;
    assert_eq!(customers(&top)[0], created);
    assert!(parse_ts(&created["created_at"]) > parse_ts(&customers(&top)[1]["created_at"]));
    assert_eq!(pagination(&top).2, 51);
    let fetched = sim
        .get_json(&format!("/customers/{}", customer_id(&created)))
        .await;
    assert_eq!(fetched, created);
    let txs = sim
        .get_json(&format!(
            "/customers/{}/transactions",
            customer_id(&created)
        ))
        .await;
    assert_eq!(txs, Value::Array(Vec::new()));

    // Creation times stay strictly increasing even within one millisecond.
    let mut previous = parse_ts(&created["created_at"]);
    for i in 0..5 {
        let res = sim
            .send(
                Method::POST,
                "/customers",
                Some(&format!(r#"{{"name":"C {i}"}}"#)),
            )
            .await;
        let c = expect_json(res, StatusCode::CREATED).await;
        let at = parse_ts(&c["created_at"]);
        assert!(at > previous);
        previous = at;
    }
}

#[tokio::test]
async fn invalid_bodies_get_400() {
    let sim = spawn_sim(small_sim_options(5, 11)).await;
    let id = customer_id(&truth_customers(&sim)[0]).to_owned();
    let cases = [
        (r#"{"email":"a@example.com"}"#, Some("name")),
        (r#"{"name":""}"#, Some("name")),
        (r#"{"name":"   "}"#, Some("name")),
        (r#"{"name":42}"#, Some("name")),
        (r#"{"name":null}"#, Some("name")),
        (r#"{"name":"A","email":5}"#, Some("email")),
        (r#"{"name":"A","city":["Dakar"]}"#, Some("city")),
        (r#"{"name":"A","is_business":"yes"}"#, Some("is_business")),
        (r#"{"name":"A","metadata":[1]}"#, Some("metadata")),
        (r#"{"name":"A","metadata":"x"}"#, Some("metadata")),
        ("not json", None),
        ("", None),
        (r#"["name"]"#, None),
        (r#"{"name":"A""#, None),
    ];
    for (body, field) in cases {
        let res = sim.send(Method::POST, "/customers", Some(body)).await;
        let err = expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
        if let Some(field) = field {
            assert_eq!(err["error"]["details"]["field"], field, "{body}");
        }
    }
    // PATCH checks types the same way but does not require a name.
    for body in [
        r#"{"name":""}"#,
        r#"{"email":5}"#,
        r#"{"metadata":true}"#,
        "nope",
    ] {
        let res = sim
            .send(Method::PATCH, &format!("/customers/{id}"), Some(body))
            .await;
        expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    assert_eq!(
        pagination(&sim.get_json("/customers").await).2,
        5,
        "nothing was created"
    );
}

#[tokio::test]
async fn patch_changes_the_given_fields_and_bumps_updated_at() {
    let sim = spawn_sim(small_sim_options(10, 12)).await;
    let before = truth_customers(&sim)[3].clone();
    let id = customer_id(&before).to_owned();
    let res = sim
        .send(
            Method::PATCH,
            &format!("/customers/{id}"),
            Some(r#"{"email":"new.email@example.com","metadata":{"vip":true},"address":null}"#),
        )
        .await;
    let after = expect_json(res, StatusCode::OK).await;
    assert_eq!(after["email"], "new.email@example.com");
    assert_eq!(after["metadata"], serde_json::json!({ "vip": true }));
    assert_eq!(after["address"], Value::Null);
    for unchanged in ["name", "phone_number", "city", "created_at", "is_business"] {
        assert_eq!(after[unchanged], before[unchanged], "{unchanged}");
    }
    assert!(parse_ts(&after["updated_at"]) > parse_ts(&before["updated_at"]));
    assert_eq!(sim.get_json(&format!("/customers/{id}")).await, after);

    // The list position (by created_at) does not move.
    let list = sim.get_json("/customers?pageSize=10").await;
    assert_eq!(customer_id(&customers(&list)[3]), id);

    let res = sim
        .send(Method::PATCH, "/customers/cus_0000000000000000", Some("{}"))
        .await;
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn search_follows_renames() {
    // Few customers, so that the renames below make the search index compact itself.
    let sim = spawn_sim(small_sim_options(3, 12)).await;
    let id = customer_id(&truth_customers(&sim)[1]).to_owned();
    let search = |needle: &'static str| {
        let sim = &sim;
        async move {
            ids(customers(
                &sim.get_json(&format!("/customers?search={needle}")).await,
            ))
        }
    };
    let res = sim
        .send(
            Method::PATCH,
            &format!("/customers/{id}"),
            Some(r#"{"name":"Zébulon Ōkafor","email":"zeb@example.com"}"#),
        )
        .await;
    expect_json(res, StatusCode::OK).await;
    assert_eq!(search("z%C3%89BULON").await, vec![id.clone()]);
    assert_eq!(search("zeb@").await, vec![id.clone()]);
    // Renamed again and again, only the last name is found.
    for i in 0..50 {
        let body = format!(r#"{{"name":"Rename {i:02}","email":null}}"#);
        let res = sim
            .send(Method::PATCH, &format!("/customers/{id}"), Some(&body))
            .await;
        expect_json(res, StatusCode::OK).await;
    }
    assert!(search("zébulon").await.is_empty());
    assert!(search("zeb@").await.is_empty());
    assert_eq!(search("rename%2049").await, vec![id.clone()]);
    assert!(search("rename%2048").await.is_empty());
}

#[tokio::test]
async fn delete_is_soft_and_everything_404s_afterwards() {
    let sim = spawn_sim(small_sim_options(10, 13)).await;
    let id = customer_id(&truth_customers(&sim)[2]).to_owned();
    let res = sim
        .send(Method::DELETE, &format!("/customers/{id}"), None)
        .await;
    let body = expect_json(res, StatusCode::OK).await;
    assert_eq!(body, serde_json::json!({ "deleted": true, "id": id }));

    let gone = [
        (Method::GET, format!("/customers/{id}"), None),
        (Method::GET, format!("/customers/{id}/transactions"), None),
        (
            Method::PATCH,
            format!("/customers/{id}"),
            Some(r#"{"name":"X"}"#),
        ),
        (Method::DELETE, format!("/customers/{id}"), None),
    ];
    for (method, path, body) in gone {
        let res = sim.send(method.clone(), &path, body).await;
        expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    let list = sim.get_json("/customers").await;
    assert_eq!(pagination(&list).2, 9);
    assert!(!ids(customers(&list)).contains(&id));
    let truth = sim.sim.truth();
    assert_eq!(truth["deleted_customer_ids"], serde_json::json!([id]));
    assert!(truth["transactions"].get(&id).is_none());
}

#[tokio::test]
async fn auth_accepts_either_header_and_rejects_missing_or_wrong_keys() {
    let sim = spawn_sim(small_sim_options(5, 14)).await;
    let id = customer_id(&truth_customers(&sim)[0]).to_owned();
    let url = sim.url("/customers");
    let ok = sim
        .client
        .get(&url)
        .header("X-API-KEY", "test_key")
        .send()
        .await;
    assert_eq!(ok.expect("request").status(), StatusCode::OK);
    let ok = sim.client.get(&url).bearer_auth("test_key").send().await;
    assert_eq!(ok.expect("request").status(), StatusCode::OK);
    let ok = sim
        .client
        .get(&url)
        .header("Authorization", "bearer test_key")
        .send()
        .await;
    assert_eq!(ok.expect("request").status(), StatusCode::OK);

    let paths = [
        (Method::GET, "/customers".to_owned()),
        (Method::POST, "/customers".to_owned()),
        (Method::GET, format!("/customers/{id}")),
        (Method::PATCH, format!("/customers/{id}")),
        (Method::DELETE, format!("/customers/{id}")),
        (Method::GET, format!("/customers/{id}/transactions")),
    ];
    for (method, path) in paths {
        let url = sim.url(&path);
        let attempts = [
            sim.client.request(method.clone(), &url),
            sim.client
                .request(method.clone(), &url)
                .header("X-API-KEY", "wrong"),
            sim.client
                .request(method.clone(), &url)
                .header("X-API-KEY", ""),
            sim.client
                .request(method.clone(), &url)
                .bearer_auth("wrong"),
            sim.client
                .request(method.clone(), &url)
                .header("Authorization", "test_key"),
        ];
        for req in attempts {
            let res = req.body(r#"{"name":"X"}"#).send().await.expect("request");
            expect_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
        }
    }
    // Nothing was written by the rejected requests.
    assert_eq!(truth_customers(&sim).len(), 5);
    assert_eq!(sim.sim.stats().unauthorized, 30);
}

#[tokio::test]
async fn same_seed_gives_the_same_truth_and_another_seed_does_not() {
    let a = spawn_sim(small_sim_options(200, 77)).await;
    let b = spawn_sim(small_sim_options(200, 77)).await;
    let c = spawn_sim(small_sim_options(200, 78)).await;
    let truth = a.sim.truth();
    assert_eq!(truth, b.sim.truth());
    assert_ne!(truth, c.sim.truth());
    // And over HTTP, byte for byte.
    let text = |sim: &TestSim| {
        let url = sim.url("/_sim/truth");
        let client = sim.client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .expect("truth")
                .text()
                .await
                .expect("text")
        }
    };
    assert_eq!(text(&a).await, text(&b).await);
    assert_eq!(
        a.get_json("/customers").await,
        b.get_json("/customers").await
    );
}

#[tokio::test]
async fn id_field_customer_id_names_the_key_as_the_live_service_does() {
    let sim = spawn_sim(SimOptions {
        id_field: IdField::CustomerId,
        ..small_sim_options(10, 15)
    })
    .await;
    let list = sim.get_json("/customers").await;
    let first = &customers(&list)[0];
    assert!(first.get("id").is_none());
    let id = first["customer_id"]
        .as_str()
        .expect("customer_id")
        .to_owned();
    assert_eq!(
        sim.get_json(&format!("/customers/{id}")).await["customer_id"],
        id
    );
    let res = sim
        .send(Method::POST, "/customers", Some(r#"{"name":"Kofi"}"#))
        .await;
    let created = expect_json(res, StatusCode::CREATED).await;
    assert!(created["customer_id"].is_string() && created.get("id").is_none());
    assert!(
        truth_customers(&sim)
            .iter()
            .all(|c| c.get("customer_id").is_some())
    );
    let res = sim
        .send(Method::DELETE, &format!("/customers/{id}"), None)
        .await;
    let deleted = expect_json(res, StatusCode::OK).await;
    assert_eq!(
        deleted,
        serde_json::json!({ "deleted": true, "customer_id": id })
    );
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| {
            g.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
}

#[tokio::test]
async fn id_format_uuid_serves_uuid_ids_on_every_endpoint() {
    let sim = spawn_sim(SimOptions {
        id_format: IdFormat::Uuid,
        ..small_sim_options(20, 17)
    })
    .await;
    let list = sim.get_json("/customers").await;
    let ids: Vec<String> = customers(&list)
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    assert!(ids.iter().all(|id| is_uuid(id)), "{ids:?}");
    let id = &ids[0];
    assert_eq!(sim.get_json(&format!("/customers/{id}")).await["id"], *id);
    let res = sim
        .send(Method::GET, &format!("/customers/{id}/transactions"), None)
        .await;
    expect_json(res, StatusCode::OK).await;
    // A documented-form id names no customer of this simulator.
    let res = sim
        .send(Method::GET, "/customers/cus_0000000000000001", None)
        .await;
    expect_json(res, StatusCode::NOT_FOUND).await;
    let truth = sim.sim.truth();
    assert!(
        truth_customers(&sim)
            .iter()
            .all(|c| is_uuid(c["id"].as_str().unwrap()))
    );
    assert!(
        truth["transactions"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| is_uuid(k))
    );
    let res = sim
        .send(Method::DELETE, &format!("/customers/{id}"), None)
        .await;
    let deleted = expect_json(res, StatusCode::OK).await;
    assert_eq!(deleted, serde_json::json!({ "deleted": true, "id": id }));
    let res = sim
        .send(Method::GET, &format!("/customers/{id}"), None)
        .await;
    expect_json(res, StatusCode::NOT_FOUND).await;
    assert_eq!(
        sim.sim.truth()["deleted_customer_ids"],
        serde_json::json!([id])
    );
}

#[tokio::test]
async fn live_quirks_drop_metadata_and_environment_from_list_items_only() {
    let sim = spawn_sim(SimOptions {
        live_quirks: true,
        ..small_sim_options(30, 16)
    })
    .await;
    let list = sim.get_json("/customers").await;
    for item in customers(&list) {
        assert!(item["metadata"].is_null(), "{item}");
        assert!(item.get("environment").is_none(), "{item}");
        let full = sim
            .get_json(&format!("/customers/{}", customer_id(item)))
            .await;
        assert!(full["metadata"].is_object());
        assert_eq!(full["environment"], "test");
        assert_eq!(full["updated_at"], item["updated_at"]);
    }
    // The truth holds the full objects.
    assert!(
        truth_customers(&sim)
            .iter()
            .all(|c| c["metadata"].is_object())
    );
}

async fn forced(fault: Faults) -> TestSim {
    let sim = spawn_sim(small_sim_options(20, 17)).await;
    sim.sim.set_faults(fault);
    sim
}

#[tokio::test]
async fn fault_500_uses_the_envelope() {
    let sim = forced(Faults {
        p500: 1.0,
        ..Faults::default()
    })
    .await;
    let res = sim.get("/customers").await;
    expect_error(res, StatusCode::INTERNAL_SERVER_ERROR, "internal_error").await;
    assert_eq!(sim.sim.stats().faults_injected, 1);
}

#[tokio::test]
async fn fault_502_is_an_html_page_like_a_proxy_sends() {
    let sim = forced(Faults {
        p502_html: 1.0,
        ..Faults::default()
    })
    .await;
    let res = sim.get("/customers").await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );
    let body = res.text().await.expect("body");
    assert!(body.contains("<h1>502 Bad Gateway</h1>"), "{body}");
    assert!(serde_json::from_str::<Value>(&body).is_err());
}

#[tokio::test]
async fn fault_503_and_429_carry_retry_after() {
    let sim = forced(Faults {
        p503: 1.0,
        retry_after_secs: 7,
        ..Faults::default()
    })
    .await;
    let res = sim.get("/customers").await;
    assert_eq!(res.headers()["retry-after"], "7");
    expect_error(res, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await;

    sim.sim.set_faults(Faults {
        p429: 1.0,
        retry_after_secs: 3,
        ..Faults::default()
    });
    let res = sim.get("/customers").await;
    assert_eq!(res.headers()["retry-after"], "3");
    assert_eq!(res.headers()["x-ratelimit-limit"], "5000");
    assert_eq!(res.headers()["x-ratelimit-window-seconds"], "900");
    expect_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded").await;
}

#[tokio::test]
async fn fault_slow_delays_then_answers_normally() {
    let sim = forced(Faults {
        p_slow: 1.0,
        slow_ms: 300,
        ..Faults::default()
    })
    .await;
    let started = Instant::now();
    let v = sim.get_json("/customers").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(pagination(&v).2, 20);
}

#[tokio::test]
async fn fault_close_drops_the_connection_and_the_server_keeps_serving() {
    let sim = forced(Faults {
        p_close: 1.0,
        ..Faults::default()
    })
    .await;
    for _ in 0..3 {
        let err = sim
            .client
            .get(sim.url("/customers"))
            .header("X-API-KEY", &sim.api_key)
            .send()
            .await
            .expect_err("the connection is closed without a response");
        assert!(err.is_request() || err.is_connect(), "{err:?}");
    }
    sim.sim.set_faults(Faults::default());
    let v = sim.get_json("/customers").await;
    assert_eq!(pagination(&v).2, 20);
    assert_eq!(sim.sim.stats().faults_injected, 3);
}

#[tokio::test]
async fn fault_truncate_sends_half_a_json_body_with_a_matching_length() {
    let sim = forced(Faults {
        p_truncate: 1.0,
        ..Faults::default()
    })
    .await;
    let res = sim.get("/customers").await;
    assert_eq!(res.status(), StatusCode::OK);
    let length = res.content_length().expect("Content-Length");
    let body = res.bytes().await.expect("the whole (short) body arrives");
    assert_eq!(body.len() as u64, length);
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    sim.sim.set_faults(Faults::default());
    let full = sim.get("/customers").await.bytes().await.expect("body");
    assert_eq!(&full[..body.len()], &body[..]);
}

#[tokio::test]
async fn faults_are_set_over_http_and_spare_the_control_surface() {
    let sim = spawn_sim(small_sim_options(5, 18)).await;
    let set = sim.control("/_sim/faults", r#"{"p500":1.0}"#).await;
    assert_eq!(set["p500"], 1.0);
    assert_eq!(set["retry_after_secs"], 1);
    let res = sim.get("/customers").await;
    expect_error(res, StatusCode::INTERNAL_SERVER_ERROR, "internal_error").await;
    // Control endpoints answer whatever the faults.
    let faults = get_json(&sim.url("/_sim/faults"), "").await;
    assert_eq!(faults["p500"], 1.0);
    assert_eq!(
        get_json(&sim.url("/_sim/truth"), "").await["customers"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );

    for bad in [
        r#"{"p500":1.5}"#,
        r#"{"p_close":-0.1}"#,
        r#"{"p501":0.5}"#,
        "nope",
    ] {
        let res = sim
            .client
            .post(sim.url("/_sim/faults"))
            .body(bad)
            .send()
            .await
            .expect("request");
        expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    sim.control("/_sim/faults", "{}").await;
    sim.get_json("/customers").await;
}

#[tokio::test]
async fn faults_hit_at_their_probability() {
    let sim = forced(Faults {
        p500: 0.5,
        ..Faults::default()
    })
    .await;
    let mut failures = 0;
    for _ in 0..200 {
        if sim.get("/customers?pageSize=1").await.status() == StatusCode::INTERNAL_SERVER_ERROR {
            failures += 1;
        }
    }
    assert!((60..140).contains(&failures), "{failures} of 200");
}

#[tokio::test]
async fn drift_shifts_the_list_while_it_is_walked() {
    let sim = spawn_sim(small_sim_options(100, 19)).await;
    let before: HashSet<String> = ids(&truth_customers(&sim)).into_iter().collect();
    let drift = sim
        .control(
            "/_sim/drift",
            r#"{"insert_per_page":2,"delete_per_page":0}"#,
        )
        .await;
    assert_eq!(drift["insert_per_page"], 2);

    let p1 = sim.get_json("/customers?page=1&pageSize=20").await;
    let p2 = sim.get_json("/customers?page=2&pageSize=20").await;
    assert_eq!(pagination(&p1).2, 102);
    assert_eq!(pagination(&p2).2, 104);
    // The inserted customers are the newest: they top page 1 ...
    let top: Vec<String> = ids(&customers(&p1)[..2]);
    assert!(top.iter().all(|id| !before.contains(id)));
    assert!(
        ids(&customers(&p1)[2..])
            .iter()
            .all(|id| before.contains(id))
    );
    // ... and push the rest down, so page 2 repeats the end of page 1.
    assert_eq!(ids(&customers(&p1)[18..]), ids(&customers(&p2)[..2]));

    sim.sim.set_drift(Drift {
        insert_per_page: 0,
        delete_per_page: 3,
    });
    let p3 = sim.get_json("/customers?page=3&pageSize=20").await;
    assert_eq!(pagination(&p3).2, 101);
    assert_eq!(
        sim.sim.truth()["deleted_customer_ids"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // Other reads do not drift.
    sim.sim.set_drift(Drift {
        insert_per_page: 5,
        delete_per_page: 0,
    });
    let id = customer_id(&customers(&p3)[0]).to_owned();
    sim.get_json(&format!("/customers/{id}")).await;
    sim.get_json(&format!("/customers/{id}/transactions")).await;
    assert_eq!(truth_customers(&sim).len(), 101);
}

#[tokio::test]
async fn rate_limit_mode_answers_429_with_the_live_headers_once_over() {
    let sim = spawn_sim(SimOptions {
        rate_limit: Some(RateLimit {
            requests: 3,
            window: Duration::from_secs(60),
        }),
        ..small_sim_options(5, 20)
    })
    .await;
    for _ in 0..3 {
        sim.get_json("/customers").await;
    }
    let res = sim.get("/customers").await;
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("numeric Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(res.headers()["x-ratelimit-limit"], "3");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(
        res.headers()["x-ratelimit-reset"].to_str().unwrap(),
        retry_after.to_string()
    );
    assert_eq!(res.headers()["x-ratelimit-window-seconds"], "60");
    assert_eq!(res.headers()["x-ratelimit-policy"], "fixed-window");
    let body = expect_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded").await;
    assert_eq!(
        body["error"]["details"],
        serde_json::json!({"retry_after_seconds": retry_after, "limit": 3})
    );
    // Still limited on that route; another route has its own window; the control
    // surface is not limited.
    assert_eq!(
        sim.get("/customers").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let other = sim.get("/customers/cus_0000000000000000").await;
    assert_ne!(other.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(other.headers()["x-ratelimit-remaining"], "2");
    get_json(&sim.url("/_sim/stats"), "").await;
    let stats = sim.sim.stats();
    assert_eq!((stats.requests, stats.rate_limited), (6, 2));
}

/// Every public response, 200 or 404 alike, says where its route's window stands.
#[tokio::test]
async fn rate_limit_headers_count_down_per_route_on_every_response() {
    let sim = spawn_sim(SimOptions {
        rate_limit: Some(RateLimit {
            requests: 5,
            window: Duration::from_secs(60),
        }),
        ..small_sim_options(5, 20)
    })
    .await;
    let header = |res: &reqwest::Response, name: &str| -> u64 {
        res.headers()[name].to_str().unwrap().parse().unwrap()
    };
    for expected in [4, 3] {
        let res = sim.get("/customers").await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "x-ratelimit-limit"), 5);
        assert_eq!(header(&res, "x-ratelimit-remaining"), expected);
        assert!((1..=60).contains(&header(&res, "x-ratelimit-reset")));
    }
    let missing = sim.get("/customers/cus_nope/transactions").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&missing, "x-ratelimit-remaining"), 4);
    let report = sim.sim.rate_limit().unwrap();
    assert_eq!(report.routes["GET /customers"].remaining, 3);
    assert_eq!(report.routes["GET /customers"].windows_used, vec![2]);
    assert_eq!(
        report.routes["GET /customers/{id}/transactions"].remaining,
        4
    );
    assert_eq!(report.routes["GET /customers/{id}"].remaining, 5);
}

/// Without the switch, no rate-limit headers (an older server).
#[tokio::test]
async fn no_rate_limit_headers_without_the_switch() {
    let sim = spawn_sim(small_sim_options(5, 20)).await;
    let res = sim.get("/customers").await;
    assert!(res.headers().get("x-ratelimit-remaining").is_none());
    assert!(sim.sim.rate_limit().is_none());
    let res = post_control(&sim, r#"{"route":"GET /customers","consume":1}"#).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
}

/// A second client on the same IP drains one route: that route answers 429 with the
/// time left, the others do not notice.
#[tokio::test]
async fn another_client_can_drain_one_routes_window() {
    let sim = spawn_sim(SimOptions {
        rate_limit: Some(RateLimit {
            requests: 10,
            window: Duration::from_secs(60),
        }),
        ..small_sim_options(5, 20)
    })
    .await;
    let report = sim
        .control(
            "/_sim/rate-limit",
            r#"{"route":"GET /customers/{id}","consume":9}"#,
        )
        .await;
    assert_eq!(report["routes"]["GET /customers/{id}"]["remaining"], 1);
    let id = customer_id(&truth_customers(&sim)[0]).to_owned();
    let last = sim.get(&format!("/customers/{id}")).await;
    assert_eq!(last.status(), StatusCode::OK);
    assert_eq!(last.headers()["x-ratelimit-remaining"], "0");
    let refused = sim.get(&format!("/customers/{id}")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(sim.get("/customers").await.status(), StatusCode::OK);
    let report = sim.sim.rate_limit().unwrap();
    assert_eq!(report.routes["GET /customers/{id}"].rate_limited, 1);
    assert_eq!(report.routes["GET /customers"].rate_limited, 0);
    let res = post_control(&sim, r#"{"route":"GET /nope","consume":1}"#).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

async fn post_control(sim: &TestSim, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(sim.url("/_sim/rate-limit"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn rate_limit_window_resets() {
    let sim = spawn_sim(SimOptions {
        rate_limit: Some(RateLimit {
            requests: 1,
            window: Duration::from_millis(600),
        }),
        ..small_sim_options(5, 20)
    })
    .await;
    sim.get_json("/customers").await;
    let limited = sim.get("/customers").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    // Less than a second left, rounded up.
    assert_eq!(limited.headers()["retry-after"], "1");
    tokio::time::sleep(Duration::from_millis(650)).await;
    sim.get_json("/customers").await;
}

#[tokio::test]
async fn mutate_creates_updates_deletes_and_restores_customers() {
    let sim = spawn_sim(small_sim_options(50, 21)).await;
    let before = truth_customers(&sim);
    let by_id: HashMap<String, Value> = before
        .iter()
        .map(|c| (customer_id(c).to_owned(), c.clone()))
        .collect();

    let report = sim
        .control("/_sim/mutate", r#"{"create":3,"update":4,"delete":5}"#)
        .await;
    let list = |k: &str| -> Vec<String> {
        report[k]
            .as_array()
            .expect("report list")
            .iter()
            .map(|v| v.as_str().expect("id").to_owned())
            .collect()
    };
    let (created, updated, deleted) = (list("created"), list("updated"), list("deleted"));
    assert_eq!((created.len(), updated.len(), deleted.len()), (3, 4, 5));
    assert!(updated.iter().all(|id| !deleted.contains(id)));

    let truth = sim.sim.truth();
    let after = customers(&truth);
    assert_eq!(after.len(), 48);
    // New customers are at the top, newest first, without transactions.
    let mut top = ids(&after[..3]);
    top.reverse();
    assert_eq!(top, created);
    assert!(
        created
            .iter()
            .all(|id| truth["transactions"][id] == serde_json::json!([]))
    );
    for id in &updated {
        let now = after
            .iter()
            .find(|c| customer_id(c) == id)
            .expect("still live");
        let old = &by_id[id];
        assert!(parse_ts(&now["updated_at"]) > parse_ts(&old["updated_at"]));
        let changed = ["name", "email", "city", "metadata"]
            .iter()
            .any(|f| now[f] != old[f]);
        assert!(changed, "{id} should have a visible change");
    }
    let deleted_ids: Vec<String> = truth["deleted_customer_ids"]
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_str().expect("id").to_owned())
        .collect();
    assert_eq!(deleted_ids, deleted);
    for id in &deleted {
        let res = sim.get(&format!("/customers/{id}")).await;
        expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }

    let report = sim.sim.mutate(&Mutation {
        restore: 2,
        ..Mutation::default()
    });
    assert_eq!(report.restored.len(), 2);
    let truth = sim.sim.truth();
    for id in &report.restored {
        assert!(deleted.contains(id));
        let c = sim.get_json(&format!("/customers/{id}")).await;
        // Back at its place in the list (by created_at), with a newer updated_at.
        assert_eq!(c["created_at"], by_id[id]["created_at"]);
        assert!(parse_ts(&c["updated_at"]) > parse_ts(&by_id[id]["updated_at"]));
        assert!(
            !truth["deleted_customer_ids"]
                .as_array()
                .expect("array")
                .contains(&Value::from(id.as_str()))
        );
    }
    assert_eq!(customers(&truth).len(), 50);
    // Asking for more than there is does what it can.
    let report = sim.sim.mutate(&Mutation {
        restore: 10,
        ..Mutation::default()
    });
    assert_eq!(report.restored.len(), 3);
}

#[tokio::test]
async fn mutate_changes_transactions_without_touching_customers() {
    let sim = spawn_sim(SimOptions {
        tx_per_customer: 5.0,
        ..small_sim_options(100, 22)
    })
    .await;
    let before = sim.sim.truth();
    let tx_status = |truth: &Value| -> HashMap<String, (String, String)> {
        truth["transactions"]
            .as_object()
            .expect("map")
            .iter()
            .flat_map(|(cid, txs)| {
                txs.as_array().expect("array").iter().map(move |t| {
                    (
                        t["transaction_id"].as_str().expect("id").to_owned(),
                        (
                            cid.clone(),
                            t["status"].as_str().expect("status").to_owned(),
                        ),
                    )
                })
            })
            .collect()
    };
    let old = tx_status(&before);

    let report = sim.sim.mutate(&Mutation {
        add_tx: 20,
        settle: 5,
        delete_tx: 4,
        ..Mutation::default()
    });
    assert_eq!(
        (
            report.tx_added.len(),
            report.tx_changed.len(),
            report.tx_deleted.len()
        ),
        (20, 5, 4)
    );
    let after = sim.sim.truth();
    let new = tx_status(&after);
    for tx in &report.tx_added {
        assert!(!old.contains_key(tx));
        // (Unless the same mutation then settled or deleted it.)
        if !report.tx_deleted.contains(tx) && !report.tx_changed.contains(tx) {
            let (_, status) = &new[tx];
            assert!(status == "pending" || status == "completed", "{status}");
        }
    }
    for tx in &report.tx_changed {
        let Some((_, now)) = new.get(tx) else {
            assert!(report.tx_deleted.contains(tx), "{tx} vanished");
            continue;
        };
        match old.get(tx) {
            Some((_, was)) => assert_ne!(now, was, "{tx} changed status"),
            None => assert!(report.tx_added.contains(tx) && now != "pending", "{tx}"),
        }
    }
    for tx in &report.tx_deleted {
        assert!(!new.contains_key(tx));
    }
    assert_eq!(new.len(), old.len() + 20 - 4);
    // Customers are untouched: transactions do not bump updated_at.
    assert_eq!(before["customers"], after["customers"]);

    // New transactions come first on their customer's list.
    let tx = &report.tx_added[0];
    let (cid, _) = &new[tx];
    let txs = sim
        .get_json(&format!("/customers/{cid}/transactions"))
        .await;
    let newest_added = report
        .tx_added
        .iter()
        .rev()
        .find(|t| new.get(*t).is_some_and(|(c, _)| c == cid))
        .expect("an added tx of that customer");
    assert_eq!(txs[0]["transaction_id"], newest_added.as_str());
}

#[tokio::test]
async fn settle_refunds_completed_payments_once_nothing_is_pending() {
    let sim = spawn_sim(small_sim_options(30, 23)).await;
    let pending = |sim: &TestSim| -> usize {
        sim.sim.truth()["transactions"]
            .as_object()
            .expect("map")
            .values()
            .flat_map(|t| t.as_array().expect("array").clone())
            .filter(|t| t["status"] == "pending")
            .count()
    };
    let n = pending(&sim);
    let report = sim.sim.mutate(&Mutation {
        settle: n as u32 + 2,
        ..Mutation::default()
    });
    assert_eq!(report.tx_changed.len(), n + 2);
    assert_eq!(pending(&sim), 0);
    let truth = sim.sim.truth();
    let refunded: HashSet<&str> = truth["transactions"]
        .as_object()
        .expect("map")
        .values()
        .flat_map(|t| t.as_array().expect("array"))
        .filter(|t| t["status"] == "refunded")
        .filter_map(|t| t["transaction_id"].as_str())
        .collect();
    assert!(
        report.tx_changed[n..]
            .iter()
            .all(|t| refunded.contains(t.as_str()))
    );
}

#[tokio::test]
async fn mutate_rejects_bad_bodies() {
    let sim = spawn_sim(small_sim_options(5, 24)).await;
    for bad in [
        r#"{"creat":1}"#,
        r#"{"create":-1}"#,
        r#"{"create":2000000}"#,
        "[]",
        "",
    ] {
        let res = sim
            .client
            .post(sim.url("/_sim/mutate"))
            .body(bad)
            .send()
            .await
            .expect("request");
        expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let empty = sim.control("/_sim/mutate", "{}").await;
    assert_eq!(empty["created"], serde_json::json!([]));
}

#[tokio::test]
async fn truth_matches_what_the_public_api_serves() {
    let sim = spawn_sim(small_sim_options(75, 25)).await;
    sim.sim.mutate(&Mutation {
        create: 2,
        update: 3,
        delete: 2,
        add_tx: 5,
        ..Mutation::default()
    });
    let truth = get_json(&sim.url("/_sim/truth"), "").await;
    assert_eq!(truth, sim.sim.truth());
    assert_eq!(walk(&sim, 20).await, *customers(&truth));
    let transactions = truth["transactions"].as_object().expect("map");
    assert_eq!(transactions.len(), 75);
    for (id, txs) in transactions.iter().take(10) {
        assert_eq!(
            &sim.get_json(&format!("/customers/{id}/transactions")).await,
            txs
        );
    }
}

#[tokio::test]
async fn stats_count_requests_by_kind_and_reset() {
    let sim = spawn_sim(small_sim_options(5, 26)).await;
    let id = customer_id(&truth_customers(&sim)[0]).to_owned();
    sim.get_json("/customers").await;
    sim.get_json("/customers?page=2").await;
    sim.get_json(&format!("/customers/{id}")).await;
    sim.get_json(&format!("/customers/{id}/transactions")).await;
    sim.send(Method::POST, "/customers", Some(r#"{"name":"N"}"#))
        .await;
    sim.send(Method::PATCH, &format!("/customers/{id}"), Some("{}"))
        .await;
    sim.client
        .get(sim.url("/customers"))
        .send()
        .await
        .expect("request");
    sim.get("/nowhere").await;
    sim.get_json("/transactions").await;
    sim.get("/transactions/tx_0000000000000000").await;
    sim.get_json("/webhooks").await;
    sim.control("/_sim/mutate", "{}").await;

    let stats = get_json(&sim.url("/_sim/stats"), "").await;
    let expected = serde_json::json!({
        "requests": 11, "list": 3, "get": 1, "transactions": 1, "feed": 1, "feed_get": 1,
        "writes": 2, "webhooks": 1, "unauthorized": 1, "faults_injected": 0, "rate_limited": 0
    });
    assert_eq!(stats, expected);
    let cleared = sim.control("/_sim/stats/reset", "").await;
    assert_eq!(cleared, expected);
    assert_eq!(sim.sim.stats().requests, 0);
    sim.get_json("/customers").await;
    sim.sim.reset_stats();
    assert_eq!(sim.sim.stats(), lomi_sim::Stats::default());
}

#[tokio::test]
async fn concurrent_readers_and_writers_are_served() {
    let sim = spawn_sim(small_sim_options(300, 27)).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = sim.client.clone();
        let base = sim.base_url.clone();
        let key = sim.api_key.clone();
        tasks.push(tokio::spawn(async move {
            let req = if i % 4 == 0 {
                client
                    .post(format!("{base}/customers"))
                    .body(format!(r#"{{"name":"Concurrent {i}"}}"#))
            } else {
                client.get(format!("{base}/customers?page={}&pageSize=100", i % 3 + 1))
            };
            req.header("X-API-KEY", key)
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    for task in tasks {
        let status = task.await.expect("task").expect("response");
        assert!(status.is_success(), "{status}");
    }
    assert_eq!(truth_customers(&sim).len(), 310);
}

// ---- Issue 12: misbehaviours of the API client's concern ------------------------------

#[tokio::test]
async fn error_body_faults_answer_200_with_an_error_member_on_their_route_only() {
    let sim = spawn_sim(small_sim_options(10, 1301)).await;
    let id = customer_id(&sim.get_json("/customers").await["customers"][0]).to_string();
    let tx_path = format!("/customers/{id}/transactions");
    let get_path = format!("/customers/{id}");
    for (switch, path) in [
        ("p_error_body_list", "/customers?page=1&pageSize=5"),
        ("p_error_body_get", get_path.as_str()),
        ("p_error_body_transactions", tx_path.as_str()),
    ] {
        sim.control("/_sim/faults", &format!(r#"{{"{switch}":1.0}}"#))
            .await;
        let body = sim.get_json(path).await;
        assert_eq!(body["error"]["message"], "statement timeout", "{switch}");
        // Shaped like the route's data: only `error` tells it apart.
        match switch {
            "p_error_body_list" => {
                assert_eq!(body["customers"], serde_json::json!([]));
                assert_eq!(body["pagination"]["totalCount"], 0);
            }
            "p_error_body_transactions" => assert_eq!(body["data"], serde_json::json!([])),
            _ => {}
        }
        // The other routes answer normally.
        for other in [
            "/customers?page=1&pageSize=5",
            get_path.as_str(),
            tx_path.as_str(),
        ] {
            if other != path {
                assert!(
                    sim.get_json(other).await.get("error").is_none(),
                    "{switch} {other}"
                );
            }
        }
    }
    sim.control("/_sim/faults", "{}").await;
    assert!(sim.sim.stats().faults_injected >= 3);
}

#[tokio::test]
async fn retry_after_styles_write_hints_a_client_must_not_take_at_their_word() {
    let sim = spawn_sim(small_sim_options(3, 1302)).await;
    for (style, check) in [
        ("seconds", (|v: &str| v == "7") as fn(&str) -> bool),
        ("zero", |v| v == "0"),
        ("negative", |v| v == "-1"),
        ("garbage", |v| {
            v.parse::<i64>().is_err() && chrono::DateTime::parse_from_rfc2822(v).is_err()
        }),
        ("past-date", |v| {
            chrono::DateTime::parse_from_rfc2822(v).is_ok_and(|d| d < chrono::Utc::now())
        }),
    ] {
        for fault in ["p429", "p503"] {
            sim.control(
                "/_sim/faults",
                &format!(r#"{{"{fault}":1.0,"retry_after_secs":7,"retry_after_style":"{style}"}}"#),
            )
            .await;
            let res = sim.get("/customers").await;
            assert!(res.status() == 429 || res.status() == 503);
            let v = res.headers()["retry-after"].to_str().unwrap().to_string();
            assert!(check(&v), "{fault} {style}: Retry-After: {v}");
        }
    }
}

#[tokio::test]
async fn timestamp_styles_rewrite_every_body_and_the_truth_alike() {
    let sim = spawn_sim(small_sim_options(8, 1303)).await;
    let plain = sim.sim.truth();
    // `d` stands for a digit, `f` for an optional fraction of 1 to 6 digits without
    // trailing zeros (Postgres' microseconds).
    for (style, form) in [
        ("pg-micro", "dddd-dd-ddTdd:dd:ddf+00:00"),
        ("offset-no-colon", "dddd-dd-ddTdd:dd:dd.ddd+0100"),
        ("negative-offset", "dddd-dd-ddTdd:dd:dd.ddd-05:00"),
        ("space", "dddd-dd-dd dd:dd:ddf+00"),
        ("z-nanos", "dddd-dd-ddTdd:dd:dd.dddddddddZ"),
    ] {
        let set = sim
            .control(
                "/_sim/faults",
                &format!(r#"{{"timestamp_style":"{style}"}}"#),
            )
            .await;
        assert_eq!(set["timestamp_style"], style);
        let matches = |v: &Value| has_form(v.as_str().unwrap(), form);
        let page = sim.get_json("/customers?pageSize=8").await;
        let c = &page["customers"][0];
        assert!(
            matches(&c["created_at"]) && matches(&c["updated_at"]),
            "{style}: {c}"
        );
        let id = customer_id(c).to_string();
        assert_eq!(
            sim.get_json(&format!("/customers/{id}")).await["created_at"],
            c["created_at"]
        );
        let truth = sim.sim.truth();
        assert_eq!(
            truth["customers"][0]["created_at"], c["created_at"],
            "{style}: truth follows"
        );
        for (cid, txs) in truth["transactions"].as_object().unwrap() {
            let served = sim
                .get_json(&format!("/customers/{cid}/transactions"))
                .await;
            assert_eq!(&served, txs, "{style}");
            if let Some(t) = served.as_array().unwrap().first() {
                assert!(matches(&t["created_at"]), "{style}: {t}");
            }
        }
    }
    sim.control("/_sim/faults", "{}").await;
    assert_eq!(sim.sim.truth(), plain, "z-millis is the data as generated");
}

/// `s` has `form`: `d` a digit, `f` an optional `.` and 1 to 6 digits not ending in 0,
/// anything else itself.
fn has_form(s: &str, form: &str) -> bool {
    let Some((head, tail)) = form.split_once('f') else {
        return s.len() == form.len()
            && s.chars().zip(form.chars()).all(|(c, f)| match f {
                'd' => c.is_ascii_digit(),
                _ => c == f,
            });
    };
    if s.len() < head.len() + tail.len() {
        return false;
    }
    let fraction = &s[head.len()..s.len() - tail.len()];
    has_form(&s[..head.len()], head)
        && has_form(&s[s.len() - tail.len()..], tail)
        && (fraction.is_empty()
            || (fraction.starts_with('.')
                && (2..=7).contains(&fraction.len())
                && fraction[1..].chars().all(|c| c.is_ascii_digit())
                && !fraction.ends_with('0')))
}

#[tokio::test]
async fn mistyped_fields_are_served_on_every_endpoint_and_in_the_truth() {
    let sim = spawn_sim(small_sim_options(6, 1304)).await;
    let truth = sim.sim.truth();
    let (cid, txs) = truth["transactions"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, t)| !t.as_array().unwrap().is_empty())
        .map(|(c, t)| (c.clone(), t.clone()))
        .unwrap();
    let tid = txs[0]["transaction_id"].as_str().unwrap().to_string();
    sim.control(
        "/_sim/faults",
        &serde_json::json!({"mistyped": [
            {"id": cid, "field": "postal_code", "value": 75001},
            {"id": tid, "field": "gross_amount", "value": "abc"},
        ]})
        .to_string(),
    )
    .await;
    let listed = walk(&sim, 50).await;
    let c = listed.iter().find(|c| customer_id(c) == cid).unwrap();
    assert_eq!(c["postal_code"], 75001);
    assert_eq!(
        sim.get_json(&format!("/customers/{cid}")).await["postal_code"],
        75001
    );
    let served = sim
        .get_json(&format!("/customers/{cid}/transactions"))
        .await;
    assert_eq!(served[0]["gross_amount"], "abc");
    let truth = sim.sim.truth();
    assert_eq!(truth["transactions"][&cid][0]["gross_amount"], "abc");
    let t = truth["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| customer_id(c) == cid)
        .unwrap();
    assert_eq!(t["postal_code"], 75001);
    // Other records are untouched.
    assert!(
        listed
            .iter()
            .filter(|c| customer_id(c) != cid)
            .all(|c| !c["postal_code"].is_number())
    );
    let bad = sim
        .client
        .post(sim.url("/_sim/faults"))
        .body(r#"{"mistyped":[{"id":"x"}]}"#)
        .send()
        .await
        .unwrap();
    expect_error(bad, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn paging_switch_shuffles_tied_rows_on_every_request_and_keeps_the_set() {
    let sim = spawn_sim(SimOptions {
        bulk_import_share: 1.0,
        ..small_sim_options(30, 31)
    })
    .await;
    let all = ids(&truth_customers(&sim));
    // One created_at for every customer: ordered by id, stable, before the switch.
    let first = ids(customers(&sim.get_json("/customers?pageSize=30").await));
    assert_eq!(first, all);
    let on = sim
        .control("/_sim/paging", r#"{"shuffle_ties":true}"#)
        .await;
    assert_eq!(on["shuffle_ties"], true);
    let mut orders = HashSet::new();
    for _ in 0..5 {
        let page = sim.get_json("/customers?pageSize=30").await;
        assert_eq!(pagination(&page), (1, 30, 30, 1));
        let order = ids(customers(&page));
        let mut sorted = order.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(sorted, all, "the same customers, in another order");
        orders.insert(order);
    }
    assert!(
        orders.len() >= 4,
        "a new order on each request: {}",
        orders.len()
    );
    // Pages of an offset walk can now skip some customers and repeat others.
    let mut walked = HashSet::new();
    for page in 1..=3 {
        let v = sim
            .get_json(&format!("/customers?page={page}&pageSize=10"))
            .await;
        walked.extend(ids(customers(&v)));
    }
    assert!(walked.len() <= 30);
    sim.control("/_sim/paging", "{}").await;
    assert_eq!(
        ids(customers(&sim.get_json("/customers?pageSize=30").await)),
        all
    );
}

#[tokio::test]
async fn paging_switch_lies_about_totals_and_caps_rows_silently() {
    let sim = spawn_sim(SimOptions {
        max_page_size: 1000,
        ..small_sim_options(25, 32)
    })
    .await;
    let all = ids(&truth_customers(&sim));
    sim.control("/_sim/paging", r#"{"total_count_delta":-5}"#)
        .await;
    // 25 customers reported as 20 in 2 pages, while page 3 still has 5.
    let p2 = sim.get_json("/customers?page=2&pageSize=10").await;
    assert_eq!(pagination(&p2), (2, 10, 20, 2));
    assert_eq!(customers(&p2).len(), 10);
    let p3 = sim.get_json("/customers?page=3&pageSize=10").await;
    assert_eq!(ids(customers(&p3)), all[20..]);
    sim.control("/_sim/paging", r#"{"total_pages_delta":4}"#)
        .await;
    assert_eq!(
        pagination(&sim.get_json("/customers?pageSize=10").await),
        (1, 10, 25, 7)
    );
    // A cap of 4 rows while offsets use the requested 10: rows 4..10 are never served
    // on pages of 10.
    sim.control("/_sim/paging", r#"{"row_cap":4}"#).await;
    let p1 = sim.get_json("/customers?page=1&pageSize=10").await;
    let p2 = sim.get_json("/customers?page=2&pageSize=10").await;
    assert_eq!(pagination(&p1), (1, 10, 25, 3));
    assert_eq!(ids(customers(&p1)), all[..4]);
    assert_eq!(ids(customers(&p2)), all[10..14]);
    for bad in [r#"{"row_cap":-1}"#, r#"{"shuffle":true}"#] {
        let res = sim
            .client
            .post(sim.url("/_sim/paging"))
            .body(bad)
            .send()
            .await
            .expect("request");
        expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn live_quirks_report_no_totals_on_a_page_past_the_end() {
    // NOTES.md: the count is read from the page's first row, so an empty page says 0.
    let live = spawn_sim(SimOptions {
        live_quirks: true,
        ..small_sim_options(30, 33)
    })
    .await;
    let past = live.get_json("/customers?page=9&pageSize=10").await;
    assert!(customers(&past).is_empty());
    assert_eq!(pagination(&past), (9, 10, 0, 0));
    assert_eq!(
        pagination(&live.get_json("/customers?page=3&pageSize=10").await),
        (3, 10, 30, 3)
    );
    // As documented (no quirks), the totals stay.
    let docs = spawn_sim(small_sim_options(30, 33)).await;
    assert_eq!(
        pagination(&docs.get_json("/customers?page=9&pageSize=10").await),
        (9, 10, 30, 3)
    );
}

// ---- The org-wide transactions feed (`GET /transactions`, NOTES.md) ----

const FEED_FIELDS: [&str; 24] = [
    "transaction_id",
    "organization_id",
    "customer_id",
    "product_id",
    "subscription_id",
    "price_id",
    "transaction_type",
    "status",
    "description",
    "quantity",
    "metadata",
    "gross_amount",
    "discount_amount",
    "fee_amount",
    "net_amount",
    "currency_code",
    "provider_code",
    "payment_method_code",
    "is_bnpl",
    "is_pos",
    "environment",
    "spi_transaction_id",
    "created_at",
    "updated_at",
];

fn feed_rows(v: &Value) -> &Vec<Value> {
    v.as_array().expect("the feed is a bare JSON array")
}

/// Every feed row matching `query` (`""` or `&k=v...`), walking pages of `page_size`
/// until the empty page.
async fn feed_walk(sim: &TestSim, query: &str, page_size: usize) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let v = sim
            .get_json(&format!(
                "/transactions?page={page}&pageSize={page_size}{query}"
            ))
            .await;
        if feed_rows(&v).is_empty() {
            break;
        }
        all.extend(feed_rows(&v).iter().cloned());
    }
    all
}

fn tx_id(row: &Value) -> &str {
    row["transaction_id"].as_str().expect("transaction id")
}

/// A JSON number with at most two decimals as an integer of hundredths, exactly.
fn hundredths(v: &Value) -> i128 {
    let Value::Number(n) = v else {
        panic!("amounts are JSON numbers: {v}")
    };
    let text = n.to_string();
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    assert!(frac.len() <= 2, "{text}");
    whole.parse::<i128>().expect("digits") * 100 + format!("{frac:0<2}").parse::<i128>().unwrap()
}

/// Every transaction the truth lists, by id, with its customer's id.
fn truth_tx_customers(sim: &TestSim) -> HashMap<String, String> {
    let truth = sim.sim.truth();
    let mut out = HashMap::new();
    for (customer, txs) in truth["transactions"].as_object().expect("map") {
        for tx in txs.as_array().expect("array") {
            out.insert(tx_id(tx).to_owned(), customer.clone());
        }
    }
    out
}

#[tokio::test]
async fn feed_is_a_bare_array_newest_first_of_rich_rows_with_exact_amounts() {
    let sim = spawn_sim(small_sim_options(300, 61)).await;
    let truth = truth_tx_customers(&sim);
    let rows = feed_walk(&sim, "", 100).await;
    assert_eq!(rows.len(), truth.len(), "every transaction, once");
    let mut seen = HashSet::new();
    let (mut kinds, mut discounted) = (HashSet::new(), 0);
    for row in &rows {
        let keys: Vec<&str> = row
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, FEED_FIELDS, "{row}");
        assert!(seen.insert(tx_id(row).to_owned()));
        assert_eq!(row["customer_id"], truth[tx_id(row)].as_str(), "{row}");
        let (gross, discount, fee, net) = (
            hundredths(&row["gross_amount"]),
            hundredths(&row["discount_amount"]),
            hundredths(&row["fee_amount"]),
            hundredths(&row["net_amount"]),
        );
        assert_eq!(net, gross - discount - fee, "{row}");
        assert!(discount >= 0 && fee >= 0 && net >= 0, "{row}");
        discounted += usize::from(discount > 0);
        kinds.insert(row["transaction_type"].as_str().expect("type").to_owned());
        assert!(
            parse_ts(&row["updated_at"]) >= parse_ts(&row["created_at"]),
            "{row}"
        );
        assert_eq!(row["environment"], "test");
        assert!(row["is_pos"].is_boolean() && row["is_bnpl"].is_boolean());
    }
    assert!(discounted > 0, "some payments carry a discount");
    assert!(
        kinds.contains("payment") && kinds.contains("refund"),
        "{kinds:?}"
    );
    // Newest first, ties on `created_at` by id descending: a deterministic order.
    for pair in rows.windows(2) {
        let key = |r: &Value| (parse_ts(&r["created_at"]), tx_id(r).to_owned());
        assert!(
            key(&pair[0]) > key(&pair[1]),
            "{} then {}",
            pair[0],
            pair[1]
        );
    }
    // The default page is 50 rows; the same seed serves the same bytes.
    let again = spawn_sim(small_sim_options(300, 61)).await;
    let a = sim.get("/transactions").await.text().await.unwrap();
    let b = again.get("/transactions").await.text().await.unwrap();
    assert_eq!(feed_rows(&serde_json::from_str(&a).unwrap()).len(), 50);
    assert_eq!(a, b);
    let one = sim
        .get_json(&format!("/transactions/{}", tx_id(&rows[7])))
        .await;
    assert_eq!(
        one, rows[7],
        "GET /transactions/{{id}} serves the feed's row"
    );
}

/// Which rows a filter keeps.
type RowFilter = dyn Fn(&Value) -> bool;

#[tokio::test]
async fn feed_filters_are_comma_separated_lists_and_combine() {
    let sim = spawn_sim(small_sim_options(300, 62)).await;
    let all = feed_walk(&sim, "", 500).await;
    let cases: [(&str, &RowFilter); 7] = [
        ("&status=pending,refunded", &|r| {
            ["pending", "refunded"].contains(&r["status"].as_str().unwrap())
        }),
        ("&currency=USD", &|r| r["currency_code"] == "USD"),
        ("&paymentMethod=CARDS,BANK_TRANSFER", &|r| {
            ["CARDS", "BANK_TRANSFER"].contains(&r["payment_method_code"].as_str().unwrap())
        }),
        ("&type=refund,payout", &|r| {
            r["transaction_type"] != "payment"
        }),
        ("&provider=WAVE", &|r| r["provider_code"] == "WAVE"),
        ("&isPos=true", &|r| r["is_pos"] == true),
        ("&status=completed&currency=XOF&isPos=false", &|r| {
            r["status"] == "completed" && r["currency_code"] == "XOF" && r["is_pos"] == false
        }),
    ];
    for (query, keep) in cases {
        let expected: Vec<&str> = all.iter().filter(|r| keep(r)).map(tx_id).collect();
        assert!(!expected.is_empty(), "{query} selects something");
        let got = feed_walk(&sim, query, 37).await;
        assert_eq!(
            got.iter().map(tx_id).collect::<Vec<_>>(),
            expected,
            "{query}"
        );
    }
    // A known value no row has is an empty result, not an error.
    assert!(feed_walk(&sim, "&status=cancelled", 50).await.is_empty());
}

#[tokio::test]
async fn feed_date_bounds_are_inclusive_on_created_at_in_every_served_style() {
    for style in [
        lomi_sim::TimestampStyle::ZMillis,
        lomi_sim::TimestampStyle::PgMicro,
    ] {
        let sim = spawn_sim(small_sim_options(200, 63)).await;
        sim.sim.set_faults(Faults {
            timestamp_style: style,
            ..Faults::default()
        });
        let all = feed_walk(&sim, "", 1000).await;
        let instant = |r: &Value| {
            let s = r["created_at"].as_str().unwrap();
            chrono::DateTime::parse_from_rfc3339(s).unwrap()
        };
        let (newer, older) = (&all[20], &all[120]);
        let enc = |r: &Value| {
            url::form_urlencoded::byte_serialize(r["created_at"].as_str().unwrap().as_bytes())
                .collect::<String>()
        };
        // Bounds taken from served rows include those rows.
        let query = format!("&startDate={}&endDate={}", enc(older), enc(newer));
        let got = feed_walk(&sim, &query, 40).await;
        let expected: Vec<&str> = all
            .iter()
            .filter(|r| instant(r) >= instant(older) && instant(r) <= instant(newer))
            .map(tx_id)
            .collect();
        assert_eq!(
            got.iter().map(tx_id).collect::<Vec<_>>(),
            expected,
            "{style:?}"
        );
        assert_eq!(got.first().map(tx_id), Some(tx_id(newer)));
        assert_eq!(got.last().map(tx_id), Some(tx_id(older)));
        // A date alone is midnight UTC; an unencoded `+` (a space once decoded) is read.
        let day = &older["created_at"].as_str().unwrap()[..10];
        let from_day = feed_walk(&sim, &format!("&startDate={day}"), 500).await;
        let midnight = chrono::DateTime::parse_from_rfc3339(&format!("{day}T00:00:00Z")).unwrap();
        assert_eq!(
            from_day.len(),
            all.iter().filter(|r| instant(r) >= midnight).count()
        );
        let plus = sim
            .get_json(&format!(
                "/transactions?endDate={day}T00:00:00.000000+00:00&pageSize=1"
            ))
            .await;
        assert!(instant(&feed_rows(&plus)[0]) <= midnight, "{plus}");
    }
    let sim = spawn_sim(small_sim_options(5, 63)).await;
    for bad in [
        "startDate=yesterday",
        "endDate=2025-13-01",
        "startDate=1748772000",
    ] {
        let res = sim.get(&format!("/transactions?{bad}")).await;
        let body = expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert_eq!(
            body["error"]["details"]["field"],
            bad.split('=').next().unwrap()
        );
    }
}

#[tokio::test]
async fn feed_pages_end_on_an_empty_page_and_cap_rows_silently() {
    let sim = spawn_sim(SimOptions {
        tx_per_customer: 10.0,
        ..small_sim_options(300, 64)
    })
    .await;
    let all = feed_walk(&sim, "", 1000).await;
    assert!(all.len() > 1600, "{}", all.len());
    let page = |p: u64, size: u64| {
        let sim = &sim;
        async move {
            sim.get_json(&format!("/transactions?page={p}&pageSize={size}"))
                .await
        }
    };
    // Past the end: an empty array, nothing else.
    let past = page(all.len() as u64 / 7 + 2, 7).await;
    assert!(feed_rows(&past).is_empty());
    // The service's 1,000-row cap is silent: the offset still uses the asked size.
    let big = page(1, 1500).await;
    assert_eq!(feed_rows(&big).len(), 1000);
    let second = page(2, 1500).await;
    assert_eq!(tx_id(&feed_rows(&second)[0]), tx_id(&all[1500]));
    // The switch lowers it: pages of 30 rows at offsets of 50.
    let feed = sim.control("/_sim/feed", r#"{"row_cap": 30}"#).await;
    assert_eq!(feed["row_cap"], 30);
    let p2 = page(2, 50).await;
    assert_eq!(feed_rows(&p2).len(), 30);
    assert_eq!(tx_id(&feed_rows(&p2)[0]), tx_id(&all[50]));
    assert_eq!(tx_id(&feed_rows(&p2)[29]), tx_id(&all[79]));
    for bad in ["pageSize=0", "page=-1", "isPos=maybe"] {
        let res = sim.get(&format!("/transactions?{bad}")).await;
        expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn feed_unknown_enum_values_in_a_filter_are_a_500() {
    let sim = spawn_sim(small_sim_options(20, 65)).await;
    for bad in [
        "status=bogus",
        "status=pending,settled",
        "currency=xof",
        "paymentMethod=CHEQUE",
        "type=charge",
        "provider=VISA",
    ] {
        let res = sim.get(&format!("/transactions?{bad}")).await;
        expect_error(res, StatusCode::INTERNAL_SERVER_ERROR, "internal_error").await;
    }
}

#[tokio::test]
async fn feed_disabled_answers_404_on_both_routes_with_the_envelope() {
    let sim = spawn_sim(SimOptions {
        feed: lomi_sim::Feed {
            disabled: true,
            ..Default::default()
        },
        ..small_sim_options(20, 66)
    })
    .await;
    let res = sim.get("/transactions?page=1&pageSize=1").await;
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = sim.get("/transactions/tx_0000000000000001").await;
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(sim.sim.stats().feed, 1);
    assert_eq!(sim.sim.stats().feed_get, 1);
    // Switched back on over the control surface.
    sim.control("/_sim/feed", r#"{"disabled": false}"#).await;
    let v = sim.get_json("/transactions?page=1&pageSize=3").await;
    assert_eq!(feed_rows(&v).len(), 3);
    let one = sim
        .get_json(&format!("/transactions/{}", tx_id(&feed_rows(&v)[0])))
        .await;
    assert_eq!(one, feed_rows(&v)[0]);
}

#[tokio::test]
async fn feed_drift_creates_transactions_after_each_page_served() {
    let sim = spawn_sim(small_sim_options(200, 67)).await;
    let before = sim.sim.truth();
    let count = |t: &Value| -> usize {
        t["transactions"]
            .as_object()
            .unwrap()
            .values()
            .map(|l| l.as_array().unwrap().len())
            .sum()
    };
    sim.control("/_sim/feed", r#"{"insert_per_page": 3}"#).await;
    let p1 = sim.get_json("/transactions?page=1&pageSize=20").await;
    let p2 = sim.get_json("/transactions?page=2&pageSize=20").await;
    assert_eq!(count(&sim.sim.truth()), count(&before) + 6);
    // Three new rows on top pushed the rest down: page 2 repeats page 1's last three.
    let ids = |v: &Value| {
        feed_rows(v)
            .iter()
            .map(|r| tx_id(r).to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&p1)[17..], ids(&p2)[..3]);
    let top = sim.get_json("/transactions?page=1&pageSize=6").await;
    let known = truth_tx_customers(&sim);
    for row in feed_rows(&top) {
        assert!(known.contains_key(tx_id(row)));
        assert!(
            !ids(&p1).contains(&tx_id(row).to_owned()),
            "new rows are the newest"
        );
    }
}

#[tokio::test]
async fn feed_updated_at_moves_when_a_status_changes() {
    let sim = spawn_sim(small_sim_options(300, 68)).await;
    let pending: HashMap<String, Value> = feed_walk(&sim, "&status=pending", 200)
        .await
        .into_iter()
        .map(|r| (tx_id(&r).to_owned(), r))
        .collect();
    assert!(pending.len() >= 5, "{}", pending.len());
    let report = sim.sim.mutate(&Mutation {
        settle: 5,
        ..Mutation::default()
    });
    assert_eq!(report.tx_changed.len(), 5);
    for id in &report.tx_changed {
        let old = &pending[id];
        let new = sim.get_json(&format!("/transactions/{id}")).await;
        assert_ne!(new["status"], "pending", "{new}");
        assert!(
            parse_ts(&new["updated_at"]) > parse_ts(&old["updated_at"]),
            "{old} -> {new}"
        );
        assert_eq!(new["created_at"], old["created_at"]);
    }
    // Transactions that did not change keep their `updated_at`.
    let unchanged = pending
        .keys()
        .find(|id| !report.tx_changed.contains(id))
        .unwrap();
    let row = sim.get_json(&format!("/transactions/{unchanged}")).await;
    assert_eq!(row["updated_at"], pending[unchanged]["updated_at"]);
}

#[tokio::test]
async fn feed_lists_deleted_customers_transactions_and_404s_removed_ones() {
    let sim = spawn_sim(small_sim_options(200, 69)).await;
    let before = truth_tx_customers(&sim);
    let report = sim.sim.mutate(&Mutation {
        delete: 20,
        delete_tx: 3,
        ..Mutation::default()
    });
    let orphaned: Vec<&String> = before
        .iter()
        .filter(|(_, c)| report.deleted.contains(c))
        .map(|(t, _)| t)
        .filter(|t| !report.tx_deleted.contains(t))
        .collect();
    assert!(
        !orphaned.is_empty(),
        "some deleted customer had transactions"
    );
    let listed: HashSet<String> = feed_walk(&sim, "", 500)
        .await
        .iter()
        .map(|r| tx_id(r).to_owned())
        .collect();
    assert_eq!(listed.len(), before.len() - 3);
    for t in &orphaned {
        assert!(
            listed.contains(*t),
            "{t} of a deleted customer is still listed"
        );
        let row = sim.get_json(&format!("/transactions/{t}")).await;
        assert_eq!(row["customer_id"], before[*t].as_str());
        let res = sim
            .get(&format!("/customers/{}/transactions", before[*t]))
            .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    for t in &report.tx_deleted {
        assert!(!listed.contains(t));
        let res = sim.get(&format!("/transactions/{t}")).await;
        expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    for unknown in ["tx_0000000000000000", "nope", "tx_ABCDEF0123456789"] {
        let res = sim.get(&format!("/transactions/{unknown}")).await;
        expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn feed_routes_have_their_own_rate_limit_windows_and_faults() {
    let sim = spawn_sim(SimOptions {
        rate_limit: Some(RateLimit {
            requests: 5,
            window: Duration::from_secs(60),
        }),
        ..small_sim_options(20, 70)
    })
    .await;
    let res = sim.get("/transactions?pageSize=2").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "4");
    assert!(res.headers().contains_key("x-request-id"));
    let rows: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    let res = sim
        .get(&format!("/transactions/{}", tx_id(&feed_rows(&rows)[0])))
        .await;
    assert_eq!(res.headers()["x-ratelimit-remaining"], "4");
    let report = sim.sim.rate_limit().unwrap();
    assert_eq!(report.routes["GET /transactions"].remaining, 4);
    assert_eq!(report.routes["GET /transactions/{id}"].remaining, 4);
    assert_eq!(report.routes["GET /customers"].remaining, 5);
    let unauthorized = sim
        .client
        .get(sim.url("/transactions"))
        .send()
        .await
        .unwrap();
    expect_error(unauthorized, StatusCode::UNAUTHORIZED, "unauthorized").await;
    sim.sim.set_faults(Faults {
        p_error_body_transactions: 1.0,
        ..Faults::default()
    });
    let body = sim.get_json("/transactions").await;
    assert!(body["error"].is_object(), "{body}");
    sim.sim.set_faults(Faults {
        p500: 1.0,
        ..Faults::default()
    });
    let res = sim.get("/transactions").await;
    expect_error(res, StatusCode::INTERNAL_SERVER_ERROR, "internal_error").await;
}
