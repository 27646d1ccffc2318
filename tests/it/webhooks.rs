//! The daemon's listener (issue 16): signed webhook deliveries applied to the mirror
//! through the daemon's one writer, refused ones writing nothing, the ordering rule
//! (never regress; revalidate a tie or a pending state against the API), unknown
//! customers read, `/healthz`, `/metrics`, a delivery during a scheduled run, the
//! start failures, and the secret never printed.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lomi_sim::Mutation;
use lomi_sync::app;
use lomi_sync::config::{ApiKey, TransactionsSource, WebhookSecret};
use lomi_sync::scheduler::{Listening, NoNotifier};
use lomi_sync::store::RunKind;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::harness::{Mirror, command, run_bin, runs_sum, slow_sim_options, text, wait_for};
use crate::support::{TestSim, small_sim_options, spawn_sim};

const SECRET: &str = "whsec_test_0123456789abcdef";

/// A far-off timetable: the tests start the runs they want.
const NEVER: &str = "0 0 0 1 1 * 2099";

/// The daemon in-process, listening on a free loopback port.
struct Daemon {
    url: String,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts the daemon over `m`'s mirror (its settings' schedule applies).
    async fn start(m: &Mirror) -> Daemon {
        let stop = CancellationToken::new();
        let key = ApiKey::new(m.key.clone());
        let mirror = app::Mirror::build_for_daemon(&m.settings, &key, stop.clone()).unwrap();
        let lock = mirror.lock("daemon", false).unwrap();
        let listener = lomi_sync::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let store = mirror.open_store().unwrap();
        let daemon = mirror
            .into_daemon(Arc::new(NoNotifier), store)
            .serve(Listening {
                listener,
                secret: WebhookSecret::new(SECRET),
            });
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let _lock = lock;
            daemon.run(token).await.expect("the daemon ran");
        });
        Daemon {
            url,
            stop,
            task: Some(task),
            http: reqwest::Client::new(),
        }
    }

    /// Posts `body` to `/webhooks/lomi`, signed with `signature` when given.
    async fn post(&self, body: &[u8], signature: Option<&str>) -> (StatusCode, String) {
        let mut req = self
            .http
            .post(format!("{}/webhooks/lomi", self.url))
            .header("Content-Type", "application/json")
            .header("X-Lomi-Event", "PAYMENT_SUCCEEDED")
            .body(body.to_vec());
        if let Some(s) = signature {
            req = req.header("X-Lomi-Signature", s);
        }
        let res = req.send().await.expect("a delivery");
        (res.status(), res.text().await.unwrap_or_default())
    }

    /// Posts `body` signed with the daemon's secret.
    async fn deliver(&self, body: &[u8]) -> (StatusCode, String) {
        self.post(body, Some(&sign(SECRET, body))).await
    }

    async fn get(&self, path: &str) -> (StatusCode, String, String) {
        let res = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let ct = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (res.status(), ct, res.text().await.unwrap())
    }

    async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("the daemon stopped in time")
                .unwrap();
        }
    }
}

/// Lowercase hex HMAC-SHA256 of `body` keyed with `secret`, as the vendor signs.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A delivery's body: the vendor's envelope around `data`.
fn envelope(id: &str, event: &str, data: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id,
        "event": event,
        "timestamp": "2025-06-01T10:00:00.000Z",
        "data": data,
        "lomi_environment": "test",
    }))
    .unwrap()
}

/// A mirror reading transactions from the feed (so its rows carry `updated_at`), with
/// a schedule that never fires.
fn feed_mirror(sim: &TestSim) -> Mirror {
    let mut m = Mirror::new(sim);
    m.settings.sync.transactions_source = TransactionsSource::Feed;
    m.settings.schedule.cron = NEVER.parse().unwrap();
    m.settings.schedule.run_on_start = false;
    m
}

/// A loaded mirror and its daemon listening.
async fn loaded(customers: usize, seed: u64) -> (TestSim, Mirror, Daemon) {
    let sim = spawn_sim(small_sim_options(customers, seed)).await;
    // At least one pending payment, for the tests that settle one.
    for _ in 0..50 {
        let pending = sim
            .get_json("/transactions?pageSize=1&status=pending")
            .await;
        if pending.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        sim.sim.mutate(&Mutation {
            add_tx: 5,
            ..Default::default()
        });
    }
    let m = feed_mirror(&sim);
    m.run(RunKind::Backfill).await.expect("backfill");
    let d = Daemon::start(&m).await;
    (sim, m, d)
}

/// The API's row of transaction `id` (`GET /transactions/{id}`).
async fn api_row(sim: &TestSim, id: &str) -> Value {
    sim.get_json(&format!("/transactions/{id}")).await
}

/// A transaction of the truth with `status`, and its row from the API.
async fn some_transaction(sim: &TestSim, status: &str) -> Value {
    let page = sim
        .get_json(&format!("/transactions?pageSize=200&status={status}"))
        .await;
    let id = page[0]["transaction_id"].as_str().expect("a transaction");
    api_row(sim, id).await
}

/// Customer, transaction and change rows, and webhook records: what a refused delivery
/// must leave as it was.
fn rows(m: &Mirror) -> [i64; 4] {
    [
        m.count("SELECT count(*) FROM customers"),
        m.count("SELECT count(*) FROM transactions"),
        m.count("SELECT count(*) FROM changes"),
        m.count("SELECT count(*) FROM webhook_events"),
    ]
}

fn status_of(m: &Mirror, id: &str) -> String {
    m.conn()
        .query_row(
            "SELECT status FROM transactions WHERE transaction_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
}

/// Settles one transaction at the source and returns its row before and after.
async fn settled(sim: &TestSim) -> (Value, Value) {
    let pending = some_transaction(sim, "pending").await;
    let id = pending["transaction_id"].as_str().unwrap().to_string();
    // Settle until this one moved (the simulator picks which pending one settles).
    for _ in 0..200 {
        let now = api_row(sim, &id).await;
        if now["status"] != "pending" {
            return (pending, now);
        }
        sim.sim.mutate(&Mutation {
            settle: 1,
            ..Default::default()
        });
    }
    panic!("transaction {id} never settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_payment_event_is_applied_with_a_change_row_marked_webhook() {
    let (sim, m, d) = loaded(30, 160).await;
    let (before, after) = settled(&sim).await;
    let id = after["transaction_id"].as_str().unwrap();
    assert_eq!(status_of(&m, id), "pending");
    sim.sim.reset_stats();
    let (status, body) = d
        .deliver(&envelope("evt_1", "PAYMENT_SUCCEEDED", &after))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Answered after the commit: another connection sees it at once.
    assert_eq!(status_of(&m, id), after["status"].as_str().unwrap());
    assert_ne!(before["status"], after["status"]);
    let (run_id, source, event, kind): (Option<i64>, String, String, String) = m
        .conn()
        .query_row(
            "SELECT run_id, source, webhook_event, kind FROM changes WHERE entity_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (run_id, source.as_str(), event.as_str(), kind.as_str()),
        (None, "webhook", "evt_1", "updated")
    );
    // A final state newer than the mirror's needs no read of the API.
    assert_eq!(sim.sim.stats().requests, 0);
    assert_eq!(
        m.count("SELECT count(*) FROM webhook_events WHERE id = 'evt_1' AND outcome = 'applied'"),
        1
    );
    let (_, _, metrics) = d.get("/metrics").await;
    assert!(
        metrics.contains("lomi_sync_webhook_deliveries_total{outcome=\"applied\"} 1"),
        "{metrics}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delivery_id_writes_nothing() {
    let (sim, m, d) = loaded(30, 161).await;
    let (_, after) = settled(&sim).await;
    let body = envelope("evt_replayed", "PAYMENT_SUCCEEDED", &after);
    assert_eq!(d.deliver(&body).await.0, StatusCode::OK);
    let once = rows(&m);
    let (status, text) = d.deliver(&body).await;
    assert_eq!((status, text.trim()), (StatusCode::OK, "duplicate"));
    assert_eq!(rows(&m), once);
    // Even with other data under the same id (a replay is not re-read).
    let mut other = after.clone();
    other["description"] = json!("changed under a replayed id");
    let (status, _) = d
        .deliver(&envelope("evt_replayed", "PAYMENT_SUCCEEDED", &other))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows(&m), once);
    let (_, _, metrics) = d.get("/metrics").await;
    assert!(
        metrics.contains("lomi_sync_webhook_deliveries_total{outcome=\"duplicate\"} 2"),
        "{metrics}"
    );
    d.stop().await;
}

/// Posts a refused delivery and checks its status and that nothing was written.
async fn assert_refused(
    seed: u64,
    body: impl FnOnce(&Value) -> Vec<u8>,
    sign_with: Option<&str>,
    want: StatusCode,
) {
    let (sim, m, d) = loaded(20, seed).await;
    let (_, after) = settled(&sim).await;
    let body = body(&after);
    let before = rows(&m);
    let signature = sign_with.map(|secret| sign(secret, &body));
    let (status, text) = d.post(&body, signature.as_deref()).await;
    assert_eq!(status, want, "{text}");
    assert_eq!(rows(&m), before, "a refused delivery wrote rows");
    let (_, _, metrics) = d.get("/metrics").await;
    assert!(
        metrics.contains("lomi_sync_webhook_deliveries_total{outcome=\"rejected\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("outcome=\"applied\"} 1"), "{metrics}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrongly_signed_delivery_is_refused_with_401() {
    let body = |row: &Value| envelope("evt_wrong", "PAYMENT_SUCCEEDED", row);
    assert_refused(
        162,
        body,
        Some("whsec_not_the_secret"),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_delivery_is_refused_with_401() {
    let body = |row: &Value| envelope("evt_unsigned", "PAYMENT_SUCCEEDED", row);
    assert_refused(163, body, None, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_one_mib_is_refused_with_413() {
    let body = |row: &Value| {
        let mut row = row.clone();
        row["metadata"] = json!({ "padding": "x".repeat(lomi_sync::server::MAX_BODY) });
        envelope("evt_big", "PAYMENT_SUCCEEDED", &row)
    };
    assert_refused(164, body, Some(SECRET), StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_body_that_is_not_json_is_refused_with_400() {
    let body = |_: &Value| b"{\"id\": \"evt_cut\", \"event\": \"PAYMENT_SUC".to_vec();
    assert_refused(165, body, Some(SECRET), StatusCode::BAD_REQUEST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_event_is_acknowledged_and_ignored() {
    let (sim, m, d) = loaded(20, 166).await;
    let (_, after) = settled(&sim).await;
    let before = rows(&m);
    let body = envelope("evt_sub", "SUBSCRIPTION_RENEWED", &after);
    let (status, text) = d.deliver(&body).await;
    assert_eq!((status, text.trim()), (StatusCode::OK, "ignored"));
    assert_eq!(rows(&m), before);
    let (_, _, metrics) = d.get("/metrics").await;
    assert!(
        metrics.contains("lomi_sync_webhook_deliveries_total{outcome=\"rejected\"} 1"),
        "{metrics}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_older_than_the_mirror_changes_nothing() {
    let (sim, m, d) = loaded(30, 167).await;
    let (before, after) = settled(&sim).await;
    let id = after["transaction_id"].as_str().unwrap();
    assert_eq!(
        d.deliver(&envelope("evt_new", "PAYMENT_SUCCEEDED", &after))
            .await
            .0,
        StatusCode::OK
    );
    let newer = rows(&m);
    sim.sim.reset_stats();
    // The creation event arrives last, older than what the mirror holds.
    let (status, _) = d
        .deliver(&envelope("evt_old", "PAYMENT_CREATED", &before))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_of(&m, id), after["status"].as_str().unwrap());
    let [c, t, ch, _] = rows(&m);
    assert_eq!([c, t, ch], [newer[0], newer[1], newer[2]]);
    assert_eq!(sim.sim.stats().requests, 0, "an older event needs no read");
    assert_eq!(
        m.count("SELECT count(*) FROM webhook_events WHERE id = 'evt_old' AND outcome = 'stale'"),
        1
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tie_with_another_state_is_revalidated_against_the_api() {
    let (sim, m, d) = loaded(30, 168).await;
    let truth = some_transaction(&sim, "completed").await;
    let id = truth["transaction_id"].as_str().unwrap();
    // Same updated_at as the mirror's row, another state: arrival order says nothing.
    let mut tie = truth.clone();
    tie["status"] = json!("failed");
    sim.sim.reset_stats();
    let (status, _) = d
        .deliver(&envelope("evt_tie", "PAYMENT_FAILED", &tie))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sim.sim.stats().feed_get, 1, "GET /transactions/{{id}} read");
    assert_eq!(
        status_of(&m, id),
        "completed",
        "the API's state, not the event's"
    );
    assert_eq!(
        m.count(&format!(
            "SELECT count(*) FROM changes WHERE entity_id = '{id}' AND source = 'webhook'"
        )),
        0
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_event_is_revalidated_and_the_row_ends_in_the_apis_state() {
    let (sim, m, d) = loaded(30, 169).await;
    let (before, after) = settled(&sim).await;
    let id = after["transaction_id"].as_str().unwrap();
    // A pending event, later than the mirror's row, but the API has moved on.
    let mut pending = before.clone();
    pending["updated_at"] = after["updated_at"].clone();
    sim.sim.reset_stats();
    let (status, _) = d
        .deliver(&envelope("evt_pending", "PAYMENT_CREATED", &pending))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sim.sim.stats().feed_get, 1);
    assert_eq!(status_of(&m, id), after["status"].as_str().unwrap());
    let source: String = m
        .conn()
        .query_row(
            "SELECT source FROM changes WHERE entity_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(source, "webhook");
    d.stop().await;
}

/// A new payment (the mirror lacks it) is applied as delivered, pending or not: no
/// request is spent on it, so a burst of new payments is not held by the rate limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pending_payment_is_applied_without_an_api_read() {
    let (sim, m, d) = loaded(30, 181).await;
    let mut new_pending = None;
    for _ in 0..50 {
        let added = sim.sim.mutate(&Mutation {
            add_tx: 5,
            ..Default::default()
        });
        for id in added.tx_added {
            let row = api_row(&sim, &id).await;
            if row["status"] == "pending" {
                new_pending = Some(row);
            }
        }
        if new_pending.is_some() {
            break;
        }
    }
    let row = new_pending.expect("a new pending payment");
    let id = row["transaction_id"].as_str().unwrap();
    assert_eq!(
        m.count(&format!(
            "SELECT count(*) FROM transactions WHERE transaction_id = '{id}'"
        )),
        0
    );
    sim.sim.reset_stats();
    let (status, _) = d
        .deliver(&envelope("evt_new_pending", "PAYMENT_CREATED", &row))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sim.sim.stats().requests, 0, "no API read for a new row");
    assert_eq!(status_of(&m, id), "pending");
    d.stop().await;
}

/// A key without the feed's routes gets 404 for every `GET /transactions/{id}`: that
/// 404 must not delete the row; the customer's list decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_feed_a_tie_is_revalidated_from_the_customers_list_and_nothing_is_deleted() {
    let (sim, m, d) = loaded(30, 176).await;
    let truth = some_transaction(&sim, "completed").await;
    let id = truth["transaction_id"].as_str().unwrap();
    sim.sim.set_feed(lomi_sim::Feed {
        disabled: true,
        ..Default::default()
    });
    let mut tie = truth.clone();
    tie["status"] = json!("failed");
    sim.sim.reset_stats();
    let (status, _) = d
        .deliver(&envelope("evt_no_feed", "PAYMENT_FAILED", &tie))
        .await;
    assert_eq!(status, StatusCode::OK);
    let stats = sim.sim.stats();
    assert_eq!((stats.feed_get, stats.transactions), (1, 1), "{stats:?}");
    assert_eq!(status_of(&m, id), "completed");
    assert_eq!(
        m.count(&format!(
            "SELECT count(*) FROM transactions WHERE transaction_id = '{id}' AND deleted_at IS NULL AND updated_at IS NOT NULL"
        )),
        1,
        "kept, with the feed's fields"
    );
    d.stop().await;
}

/// A transaction removed at the source: the revalidation finds it gone (404, and absent
/// from its customer's complete list) and marks it deleted, as a run would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_gone_at_the_source_is_marked_deleted_on_revalidation() {
    let (sim, m, d) = loaded(30, 177).await;
    let report = sim.sim.mutate(&Mutation {
        delete_tx: 1,
        ..Default::default()
    });
    let id = report.tx_deleted[0].clone();
    let raw: String = m
        .conn()
        .query_row(
            "SELECT raw FROM transactions WHERE transaction_id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    let mut row: Value = serde_json::from_str(&raw).unwrap();
    row["status"] = json!("pending");
    let (status, _) = d
        .deliver(&envelope("evt_gone", "PAYMENT_CREATED", &row))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (deleted, source): (Option<String>, String) = m
        .conn()
        .query_row(
            "SELECT t.deleted_at, c.source FROM transactions t JOIN changes c ON c.entity_id = t.transaction_id
             WHERE t.transaction_id = ?1 AND c.kind = 'deleted'",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(deleted.is_some());
    assert_eq!(source, "webhook");
    d.stop().await;
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_a_customer_the_mirror_lacks_reads_the_customer_and_keeps_the_row() {
    let sim = spawn_sim(small_sim_options(20, 170)).await;
    let m = feed_mirror(&sim);
    // An empty mirror: every customer is unknown to it.
    let d = Daemon::start(&m).await;
    let row = some_transaction(&sim, "completed").await;
    let (id, customer) = (
        row["transaction_id"].as_str().unwrap(),
        row["customer_id"].as_str().unwrap(),
    );
    sim.sim.reset_stats();
    let (status, text) = d
        .deliver(&envelope("evt_orphan", "PAYMENT_SUCCEEDED", &row))
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(sim.sim.stats().get, 1, "GET /customers/{{id}} read");
    assert_eq!(
        m.count(&format!(
            "SELECT count(*) FROM customers WHERE id = '{customer}' AND deleted_at IS NULL AND name IS NOT NULL"
        )),
        1
    );
    assert_eq!(
        m.count(&format!(
            "SELECT count(*) FROM transactions WHERE transaction_id = '{id}' AND customer_id = '{customer}'"
        )),
        1
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_200_while_the_last_success_is_young_and_503_with_a_reason_otherwise() {
    let sim = spawn_sim(small_sim_options(10, 171)).await;
    let mut m = feed_mirror(&sim);
    m.settings.server.healthy_within = Duration::from_secs(2).into();
    let d = Daemon::start(&m).await;
    let (status, _, body) = d.get("/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body.trim(), "no successful run yet");
    d.stop().await;

    m.run(RunKind::Backfill).await.unwrap();
    let d = Daemon::start(&m).await;
    let (status, _, body) = d.get("/healthz").await;
    assert_eq!((status, body.trim()), (StatusCode::OK, "ok"));
    // A failed run after it, and time passing beyond server.healthy_within.
    m.conn()
        .execute(
            "INSERT INTO sync_runs (kind, started_at, finished_at, outcome, error)
             VALUES ('sync', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:01.000000Z', 'failed', 'the API said 500')",
            [],
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _, body) = d.get("/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body.lines().count(), 1, "{body}");
    assert!(
        body.starts_with("last run failed: the API said 500; last success at ")
            && body.trim().ends_with("older than 2s"),
        "{body}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_as_prometheus_text() {
    let sim = spawn_sim(small_sim_options(5, 172)).await;
    let m = feed_mirror(&sim);
    let d = Daemon::start(&m).await;
    let (status, ct, body) = d.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    // An unsigned delivery: received, and rejected.
    d.post(b"{}", None).await;
    let (_, _, body) = d.get("/metrics").await;
    for outcome in ["received", "rejected"] {
        let line = format!("lomi_sync_webhook_deliveries_total{{outcome=\"{outcome}\"}} 1");
        assert!(body.contains(&line), "{body}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_during_a_scheduled_run_is_committed_and_the_run_succeeds() {
    let sim = spawn_sim(slow_sim_options(300, 173, 100)).await;
    let row = some_transaction(&sim, "completed").await;
    let id = row["transaction_id"].as_str().unwrap();
    let mut m = feed_mirror(&sim);
    m.settings.schedule.run_on_start = true;
    let d = Daemon::start(&m).await;
    let walking = wait_for(60, || runs_sum(&m.db, "sum(pages)") >= 1).await;
    assert!(walking, "the run started walking");
    let (status, text) = d
        .deliver(&envelope("evt_during_run", "PAYMENT_SUCCEEDED", &row))
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        m.count(&format!(
            "SELECT count(*) FROM transactions WHERE transaction_id = '{id}'"
        )),
        1
    );
    let done = wait_for(120, || runs_sum(&m.db, "sum(outcome = 'succeeded')") == 1).await;
    assert!(done, "the run succeeded");
    assert_eq!(runs_sum(&m.db, "sum(outcome <> 'succeeded')"), 0);
    // Committed while the run was walking, by the same writer: no lock error.
    assert_eq!(
        m.count(
            "SELECT count(*) FROM webhook_events w JOIN sync_runs r
             ON w.applied_at > r.started_at AND w.applied_at < r.finished_at
             WHERE w.id = 'evt_during_run'"
        ),
        1
    );
    d.stop().await;
    m.assert_equals_truth(&sim);
}

/// The binary: a listener that cannot bind, or no secret, fails the start with status
/// 2 and an actionable message, before the mirror is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_fails_at_start_without_a_secret_or_an_address() {
    let sim = spawn_sim(small_sim_options(5, 174)).await;
    let m = Mirror::new(&sim);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = m.config_file(&format!(
        "[schedule]\ncron = \"{NEVER}\"\n\n[server]\nlisten = \"{addr}\""
    ));
    let out = run_bin(Some(&config), Some(&sim.api_key), &["run"]).await;
    let err = text(&out).1;
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no webhook secret"), "{err}");
    let mut cmd = command(Some(&config), Some(&sim.api_key), &["run"]);
    cmd.env("LOMI_WEBHOOK_SECRET", SECRET);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap()
        .unwrap();
    let err = text(&out).1;
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("server.listen"),
        "{err}"
    );
    assert!(!m.db.exists());
    drop(taken);
}

/// The binary at debug level: deliveries good and bad, then SIGTERM; the secret is in
/// neither output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_never_appears_in_the_daemons_output() {
    let sim = spawn_sim(small_sim_options(20, 175)).await;
    let m = Mirror::new(&sim);
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = m.config_file(&format!(
        "[schedule]\ncron = \"{NEVER}\"\nrun_on_start = true\n\n[server]\nlisten = \"{addr}\""
    ));
    let child = command(Some(&config), Some(&sim.api_key), &["run"])
        .env("LOMI_WEBHOOK_SECRET", SECRET)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{addr}");
    let mut healthy = false;
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{url}/healthz")).send().await
            && r.status() == StatusCode::OK
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "the daemon's first run succeeded");
    let row = some_transaction(&sim, "completed").await;
    let body = envelope("evt_quiet", "PAYMENT_SUCCEEDED", &row);
    for signature in [sign(SECRET, &body), sign("whsec_other", &body), "zz".into()] {
        http.post(format!("{url}/webhooks/lomi"))
            .header("X-Lomi-Signature", signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
    }
    let pid = child.id().unwrap() as i32;
    // SAFETY: kill(2) with a pid we spawned and still own.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("listening"), "{stderr}");
    for (name, output) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!output.contains(SECRET), "the secret is in the {name}");
        assert!(
            !output.contains("0123456789abcdef"),
            "part of the secret in {name}"
        );
    }
}
