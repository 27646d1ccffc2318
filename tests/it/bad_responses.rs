//! Responses the simulator does not produce on its own: a stub server on loopback that
//! serves a small valid account, then one kind of broken list response at a time.
//! Each must fail the run with a clear message and leave the mirror as it was. (A field
//! of a wrong type, or a record without an id, no longer fails a run: see
//! `misbehaviour_client.rs`.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lomi_sync::store::RunKind;
use serde_json::json;

use crate::harness::Mirror;
use crate::support::{TestSim, small_sim_options, spawn_sim};

/// What `/customers` answers: `None` for the valid account.
type Broken = Arc<Mutex<Option<(&'static str, Vec<u8>)>>>;

async fn customers(
    State(broken): State<Broken>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some((content_type, body)) = broken.lock().unwrap().clone() {
        return ([(header::CONTENT_TYPE, content_type)], body).into_response();
    }
    let size: usize = q.get("pageSize").and_then(|s| s.parse().ok()).unwrap_or(50);
    let page: usize = q.get("page").and_then(|s| s.parse().ok()).unwrap_or(1);
    let all: Vec<_> = (0..3)
        .map(|i| json!({"id": format!("cus_{i}"), "name": format!("Client {i}"), "created_at": format!("2026-01-0{}T00:00:00Z", 3 - i)}))
        .collect();
    let items: Vec<_> = all
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect();
    axum::Json(json!({"customers": items, "pagination": {"page": page, "pageSize": size, "totalCount": 3, "totalPages": 3usize.div_ceil(size)}}))
        .into_response()
}

async fn spawn_stub() -> (String, Broken, tokio::sync::oneshot::Sender<()>) {
    let broken: Broken = Arc::default();
    let app = Router::new()
        .route("/customers", get(customers))
        .route(
            "/customers/{id}/transactions",
            get(|| async { axum::Json(json!([])) }),
        )
        .route(
            "/customers/{id}",
            get(|| async { (StatusCode::NOT_FOUND, "{}") }),
        )
        .with_state(broken.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    (url, broken, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_list_responses_fail_clearly_and_change_nothing() {
    let (url, broken, _stop) = spawn_stub().await;
    // A TestSim only lends its key and URL shape to the Mirror helper.
    let sim: TestSim = spawn_sim(small_sim_options(1, 90)).await;
    let mut m = Mirror::new(&sim);
    m.settings.api.base_url = url.parse().unwrap();
    m.settings.api.max_retries = 0;
    m.settings.api.max_body_bytes = 4096;
    m.settings.sync.use_status_filter = false;
    m.run(RunKind::Backfill).await.unwrap();
    assert_eq!(m.count("SELECT count(*) FROM customers"), 3);
    let snapshot = |m: &Mirror| {
        m.conn()
            .query_row("SELECT (SELECT group_concat(raw) FROM customers) || (SELECT count(*) FROM changes)", [], |r| r.get::<_, String>(0))
            .unwrap()
    };
    let before = snapshot(&m);
    let page = |customers: serde_json::Value, total: u64, pages: u64| {
        json!({"customers": customers, "pagination": {"page": 1, "pageSize": 200, "totalCount": total, "totalPages": pages}})
            .to_string()
            .into_bytes()
    };
    let mut invalid_utf8 = br#"{"customers":[{"id":"cus_0","name":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(
        br#""}],"pagination":{"page":1,"pageSize":200,"totalCount":1,"totalPages":1}}"#,
    );
    let cases: Vec<(&str, &'static str, Vec<u8>, &str)> = vec![
        (
            "HTML instead of JSON",
            "text/html",
            b"<html><body>Bad gateway</body></html>".to_vec(),
            "not valid JSON",
        ),
        // Issue 12: a body with an `error` member is never data, whatever the status.
        (
            "an error body with a success status",
            "application/json",
            br#"{"customers":[],"pagination":{"page":1,"pageSize":200,"totalCount":0,"totalPages":0},"error":{"message":"statement timeout"}}"#.to_vec(),
            "HTTP 200 with an error body",
        ),
        (
            "no pagination",
            "application/json",
            br#"{"customers": []}"#.to_vec(),
            "no `pagination`",
        ),
        (
            "a huge body",
            "application/json",
            page(json!([{"id": "cus_0", "name": "x".repeat(10_000)}]), 1, 1),
            "larger than api.max_body_bytes",
        ),
        (
            "invalid UTF-8",
            "application/json",
            invalid_utf8,
            "not valid JSON",
        ),
        (
            "a truncated body",
            "application/json",
            page(json!([{"id": "cus_0"}]), 1, 1)[..40].to_vec(),
            "truncated",
        ),
    ];
    for (what, content_type, body, expected) in cases {
        *broken.lock().unwrap() = Some((content_type, body));
        let err = m.run(RunKind::Sync).await.unwrap_err().to_string();
        assert!(err.contains("GET /customers"), "{what}: {err}");
        assert!(
            err.contains(expected),
            "{what}: expected {expected:?} in {err}"
        );
        assert_eq!(snapshot(&m), before, "{what} changed the mirror");
        assert_eq!(m.integrity(), "ok");
    }
    *broken.lock().unwrap() = None;
    let s = m.run(RunKind::Sync).await.unwrap();
    assert_eq!(s.rows_written, 0);
}
