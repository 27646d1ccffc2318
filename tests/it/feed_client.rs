//! The API client's reads of the org-wide transactions feed (`GET /transactions`,
//! `GET /transactions/{id}`) against the simulator, and the "no access" answers
//! (403, 404, 405) against a stub: the engine falls back on those, so they must be
//! recognisable and never taken for a rejected key.

use std::collections::HashSet;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use lomi_sim::{Faults, Feed, Mutation, TimestampStyle};
use lomi_sync::api::{ApiClient, ApiError, ClientOptions, FeedQuery, Transaction};
use lomi_sync::config::{ApiKey, Settings};
use tokio_util::sync::CancellationToken;

use crate::support::{TestSim, small_sim_options, spawn_sim};

fn client_for(base_url: &str, key: &str) -> ApiClient {
    let mut settings = Settings::default();
    settings.api.base_url = base_url.parse().expect("a base url");
    settings.api.requests_per_second = 0.0;
    settings.api.max_requests_per_window = 0;
    settings.api.max_backoff = Duration::from_millis(20).into();
    settings.api.timeout = Duration::from_secs(5).into();
    let opts = ClientOptions::from_settings(&settings.api).expect("valid api settings");
    ApiClient::new(opts, &ApiKey::new(key.to_owned()), CancellationToken::new()).expect("client")
}

fn client(sim: &TestSim) -> ApiClient {
    client_for(&sim.base_url, &sim.api_key)
}

/// Every row of the feed matching `base`, page by page until the empty page.
async fn walk(c: &ApiClient, base: &FeedQuery) -> Vec<Transaction> {
    let mut all = Vec::new();
    for page in 1.. {
        let q = FeedQuery {
            page,
            ..base.clone()
        };
        let list = c.transactions_feed(&q).await.expect("a feed page");
        assert!(list.skipped.is_empty());
        if list.transactions.is_empty() {
            break;
        }
        all.extend(list.transactions);
    }
    all
}

#[tokio::test]
async fn the_feed_is_read_page_by_page_with_its_extra_fields_exact() {
    let sim = spawn_sim(small_sim_options(200, 81)).await;
    // The live service's forms: `+00:00` microsecond timestamps.
    sim.sim.set_faults(Faults {
        timestamp_style: TimestampStyle::PgMicro,
        ..Faults::default()
    });
    let c = client(&sim);
    let rows = walk(&c, &FeedQuery::page(1, 64)).await;
    let truth = sim.sim.truth();
    let expected: usize = truth["transactions"]
        .as_object()
        .unwrap()
        .values()
        .map(|l| l.as_array().unwrap().len())
        .sum();
    assert_eq!(rows.len(), expected);
    let ids: HashSet<&str> = rows.iter().map(|t| t.transaction_id.as_str()).collect();
    assert_eq!(ids.len(), rows.len());
    let mut fractional = 0;
    for t in &rows {
        let customer = t.customer_id.as_deref().expect("customer_id");
        assert!(truth["transactions"][customer].is_array(), "{customer}");
        let (gross, discount, fee, net) = (
            t.amount_minor.unwrap(),
            t.discount_minor.unwrap(),
            t.fee_minor.unwrap(),
            t.net_minor.unwrap(),
        );
        assert_eq!(net, gross - discount - fee, "{}", t.raw);
        fractional += usize::from(t.net_amount.as_deref().unwrap().contains('.'));
        let updated = t.updated_at.as_deref().expect("updated_at");
        assert_eq!(updated.len(), 27, "microseconds, Z: {updated}");
        assert!(updated >= t.created_at.as_deref().unwrap());
        assert!(["payment", "refund", "payout"].contains(&t.transaction_type.as_deref().unwrap()));
        assert!(t.raw.contains("\"is_pos\""), "raw keeps every field");
    }
    assert!(fractional > 0, "USD/EUR amounts keep their decimals");
    // Newest first, in the mirror's one timestamp form (text order is time order).
    assert!(rows.windows(2).all(|w| w[0].created_at >= w[1].created_at));
    assert_eq!(sim.sim.stats().feed, rows.len().div_ceil(64) as u64 + 1);
}

#[tokio::test]
async fn date_bounds_from_rows_the_feed_returned_are_inclusive() {
    let sim = spawn_sim(small_sim_options(200, 82)).await;
    sim.sim.set_faults(Faults {
        timestamp_style: TimestampStyle::PgMicro,
        ..Faults::default()
    });
    let c = client(&sim);
    let all = walk(&c, &FeedQuery::page(1, 500)).await;
    let (newer, older) = (&all[10], &all[90]);
    let q = FeedQuery {
        start_date: older.created_at.clone(),
        end_date: newer.created_at.clone(),
        status: vec!["completed".into(), "pending".into()],
        ..FeedQuery::page(1, 25)
    };
    let got = walk(&c, &q).await;
    let expected: Vec<&str> = all
        .iter()
        .filter(|t| t.created_at >= older.created_at && t.created_at <= newer.created_at)
        .filter(|t| ["completed", "pending"].contains(&t.status.as_deref().unwrap()))
        .map(|t| t.transaction_id.as_str())
        .collect();
    assert!(expected.len() > 10);
    let got: Vec<&str> = got.iter().map(|t| t.transaction_id.as_str()).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn one_transaction_by_id_and_none_once_removed() {
    let sim = spawn_sim(small_sim_options(100, 83)).await;
    let c = client(&sim);
    let page = c.transactions_feed(&FeedQuery::page(1, 5)).await.unwrap();
    let first = &page.transactions[0];
    let one = c.get_transaction(&first.transaction_id).await.unwrap();
    assert_eq!(one.as_ref(), Some(first));
    assert_eq!(
        c.get_transaction("tx_0000000000000000").await.unwrap(),
        None
    );
    let removed = sim.sim.mutate(&Mutation {
        delete_tx: 1,
        ..Mutation::default()
    });
    let gone = &removed.tx_deleted[0];
    assert_eq!(c.get_transaction(gone).await.unwrap(), None);
    assert_eq!(sim.sim.stats().feed_get, 3);
}

#[tokio::test]
async fn a_disabled_feed_is_no_access_not_a_failure_of_the_key() {
    let sim = spawn_sim(small_sim_options(20, 84)).await;
    sim.sim.set_feed(Feed {
        disabled: true,
        ..Feed::default()
    });
    let c = client(&sim);
    let err = c
        .transactions_feed(&FeedQuery::page(1, 1))
        .await
        .unwrap_err();
    assert!(err.is_no_access() && !err.is_fatal(), "{err}");
    assert!(
        matches!(err, ApiError::NoAccess { status: 404, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("GET /transactions?page=1&pageSize=1"),
        "{err}"
    );
    // One request, no retry.
    assert_eq!(sim.sim.stats().feed, 1);
    assert_eq!(
        c.counters()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn forbidden_and_method_not_allowed_on_the_feed_are_no_access_too() {
    for status in [
        StatusCode::FORBIDDEN,
        StatusCode::METHOD_NOT_ALLOWED,
        StatusCode::NOT_FOUND,
    ] {
        let body = r#"{"error":{"code":"forbidden","message":"no access"},"request_id":"req_9"}"#;
        let app = Router::new()
            .route("/transactions", get(move || async move { (status, body) }))
            .route(
                "/transactions/{id}",
                get(move || async move { (status, body) }),
            )
            .route(
                "/customers/{id}",
                get(|| async { (StatusCode::FORBIDDEN, "{}") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let c = client_for(&url, "k");
        let err = c
            .transactions_feed(&FeedQuery::page(1, 1))
            .await
            .unwrap_err();
        assert!(err.is_no_access(), "{status}: {err}");
        assert!(matches!(err, ApiError::NoAccess { status: s, .. } if s == status.as_u16()));
        match c.get_transaction("tx_1").await {
            Ok(None) => assert_eq!(status, StatusCode::NOT_FOUND),
            Err(e) => assert!(e.is_no_access() && status != StatusCode::NOT_FOUND, "{e}"),
            Ok(Some(t)) => panic!("{t:?}"),
        }
        // Elsewhere a 403 still means a rejected key.
        let other = c.get_customer("cus_1").await.unwrap_err();
        assert!(other.is_fatal() && !other.is_no_access(), "{other}");
        server.abort();
    }
}

#[tokio::test]
async fn feed_reads_retry_like_the_others_and_count_on_their_own_route() {
    let sim = spawn_sim(lomi_sim::SimOptions {
        rate_limit: Some(lomi_sim::RateLimit {
            requests: 1000,
            window: Duration::from_secs(60),
        }),
        ..small_sim_options(50, 85)
    })
    .await;
    let c = client(&sim);
    sim.sim.set_faults(Faults {
        p_error_body_transactions: 1.0,
        ..Faults::default()
    });
    let err = c
        .transactions_feed(&FeedQuery::page(1, 10))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::ErrorBody { .. }), "{err:?}");
    let retries = c
        .counters()
        .retries
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(u64::from(Settings::default().api.max_retries), retries);
    sim.sim.set_faults(Faults::default());
    let page = c.transactions_feed(&FeedQuery::page(1, 10)).await.unwrap();
    assert_eq!(page.transactions.len(), 10);
    c.get_transaction(&page.transactions[0].transaction_id)
        .await
        .unwrap()
        .expect("found");
    let routes: Vec<_> = c
        .route_budgets()
        .into_iter()
        .map(|r| (r.route.template(), r.requests))
        .collect();
    assert!(
        routes.contains(&("GET /transactions", retries + 2)),
        "{routes:?}"
    );
    assert!(
        routes.contains(&("GET /transactions/{id}", 1)),
        "{routes:?}"
    );
}
