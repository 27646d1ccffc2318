//! The simulator's webhooks against NOTES.md ("Webhooks"): registration, signed
//! deliveries of payment and refund events carrying the `GET /transactions/{id}` row,
//! the retry schedule (scaled down), each fault switch, loopback-only delivery, the
//! burst; and `lomi-sync webhooks register|list` against the simulator. A small axum
//! receiver on loopback collects the deliveries and checks signatures with `hmac` and
//! `sha2` itself, not with the simulator's code.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::Mac as _;
use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;

use crate::harness::{run_bin, text, wait_for};
use crate::support::{TestSim, expect_json, small_sim_options, spawn_sim};

const ALL_EVENTS: &str = r#"["PAYMENT_CREATED","PAYMENT_SUCCEEDED","PAYMENT_FAILED","REFUND_CREATED","REFUND_COMPLETED","REFUND_FAILED"]"#;

/// One delivery as the receiver saw it.
#[derive(Clone, Debug)]
struct Received {
    signature: String,
    event_header: String,
    user_agent: String,
    body: Bytes,
    at: Instant,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a delivery is JSON")
    }
    fn id(&self) -> String {
        self.json()["id"].as_str().expect("an id").to_owned()
    }
}

/// What the receiver answers next; after the script, 200 (or 401 to a signature that
/// does not verify, once a secret is set).
enum Answer {
    Status(u16),
    /// Answers 200 after this many milliseconds.
    Late(u64),
}

#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Answer>>,
    secret: Mutex<Option<String>>,
}

/// A webhook receiver on `127.0.0.1:<free port>/hook`.
struct Receiver {
    inbox: Arc<Inbox>,
    url: String,
}

impl Receiver {
    async fn start() -> Receiver {
        let inbox = Arc::new(Inbox::default());
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { inbox, url }
    }

    fn got(&self) -> Vec<Received> {
        self.inbox.got.lock().unwrap().clone()
    }

    fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inbox.script.lock().unwrap().extend(answers);
    }

    fn check_signatures_with(&self, secret: &str) {
        *self.inbox.secret.lock().unwrap() = Some(secret.to_owned());
    }
}

async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let r = Received {
        signature: header("x-lomi-signature"),
        event_header: header("x-lomi-event"),
        user_agent: header("user-agent"),
        body,
        at: Instant::now(),
    };
    let verified = match &*inbox.secret.lock().unwrap() {
        Some(secret) => verifies(secret, &r.body, &r.signature),
        None => true,
    };
    inbox.got.lock().unwrap().push(r);
    let next = inbox.script.lock().unwrap().pop_front();
    match next {
        Some(Answer::Status(s)) => StatusCode::from_u16(s).unwrap(),
        Some(Answer::Late(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            StatusCode::OK
        }
        None if verified => StatusCode::OK,
        None => StatusCode::UNAUTHORIZED,
    }
}

/// Whether `signature` is the lowercase hex HMAC-SHA256 of `body` keyed with `secret`.
fn verifies(secret: &str, body: &[u8], signature: &str) -> bool {
    let bytes: Option<Vec<u8>> = (0..signature.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(signature.get(i..i + 2)?, 16).ok())
        .collect();
    let lowercase = signature
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    lowercase && bytes.is_some_and(|b| mac.verify_slice(&b).is_ok())
}

/// Registers `url` for `events` (a JSON array); the webhook's id and secret.
async fn register(sim: &TestSim, url: &str, events: &str) -> (String, String) {
    let body = format!(r#"{{"url":"{url}","authorized_events":{events}}}"#);
    let res = sim.send(Method::POST, "/webhooks", Some(&body)).await;
    let hook = expect_json(res, StatusCode::CREATED).await;
    (
        hook["id"].as_str().unwrap().to_owned(),
        hook["secret"].as_str().unwrap().to_owned(),
    )
}

/// Sets the delivery switches through `/_sim/webhooks` (unnamed fields at defaults).
async fn switches(sim: &TestSim, json: &str) {
    sim.control("/_sim/webhooks", json).await;
}

/// Waits until every delivery scheduled is acknowledged or given up; the report.
async fn settled(sim: &TestSim) -> lomi_sim::WebhookReport {
    assert!(
        wait_for(20, || sim.sim.webhook_report().in_flight == 0).await,
        "deliveries still in flight: {:?}",
        sim.sim.webhook_report().in_flight
    );
    let v = crate::support::get_json(&sim.url("/_sim/webhooks/deliveries"), "").await;
    serde_json::from_value(v).expect("the report")
}

async fn mutate(sim: &TestSim, m: &str) -> Value {
    sim.control("/_sim/mutate", m).await
}

#[tokio::test]
async fn deliveries_are_signed_over_the_exact_bytes_and_carry_the_transaction_row() {
    let sim = spawn_sim(small_sim_options(30, 161)).await;
    let rx = Receiver::start().await;
    let (_, secret) = register(&sim, &rx.url, ALL_EVENTS).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let added = mutate(&sim, r#"{"add_tx": 3}"#).await;
    let report = settled(&sim).await;
    assert_eq!((report.events, report.acknowledged), (3, 3));
    let got = rx.got();
    assert_eq!(got.len(), 3);
    for (r, id) in got.iter().zip(added["tx_added"].as_array().unwrap()) {
        assert!(verifies(&secret, &r.body, &r.signature), "{r:?}");
        assert!(!verifies("whsec_other", &r.body, &r.signature));
        let mut altered = r.body.to_vec();
        altered.push(b' ');
        assert!(
            !verifies(&secret, &altered, &r.signature),
            "the exact bytes are signed"
        );
        assert_eq!(r.user_agent, "Lomi-Webhook/1.0");
        assert_eq!(r.event_header, "PAYMENT_CREATED");
        let v = r.json();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["id", "event", "timestamp", "data", "lomi_environment"]
        );
        assert_eq!(v["event"], "PAYMENT_CREATED");
        assert_eq!(v["lomi_environment"], "test");
        assert!(v["id"].as_str().unwrap().starts_with("evt_"));
        // `data` is the row GET /transactions/{id} serves, byte for byte.
        let id = id.as_str().unwrap();
        let row = sim
            .get(&format!("/transactions/{id}"))
            .await
            .bytes()
            .await
            .unwrap();
        assert!(
            r.body.windows(row.len()).any(|w| w == &row[..]),
            "data is not the served row: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(v["data"]["transaction_id"], id);
        assert!(v["data"]["customer_id"].is_string() && v["data"]["updated_at"].is_string());
    }
}

/// Creations, settlements and refunds each send their events, only to the endpoints
/// subscribed to them.
#[tokio::test]
async fn event_kinds_follow_creation_settlement_and_refund() {
    let sim = spawn_sim(small_sim_options(30, 162)).await;
    let rx = Receiver::start().await;
    let refunds = Receiver::start().await;
    register(&sim, &rx.url, ALL_EVENTS).await;
    register(&sim, &refunds.url, r#"["REFUND_COMPLETED"]"#).await;
    mutate(&sim, r#"{"add_tx": 100}"#).await;
    // More than the pending payments: all settle, then completed ones are refunded.
    let changed = mutate(&sim, r#"{"settle": 400}"#).await;
    settled(&sim).await;
    let mut by_tx: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rx.got() {
        let v = r.json();
        let tx = v["data"]["transaction_id"].as_str().unwrap().to_owned();
        by_tx
            .entry(tx)
            .or_default()
            .push(v["event"].as_str().unwrap().to_owned());
    }
    let created = by_tx.values().filter(|e| e[0] == "PAYMENT_CREATED").count();
    assert_eq!(created, 100);
    let mut kinds = BTreeMap::new();
    for id in changed["tx_changed"].as_array().unwrap() {
        let id = id.as_str().unwrap();
        let row = sim.get_json(&format!("/transactions/{id}")).await;
        let status = row["status"].as_str().unwrap().to_owned();
        let expected: &[&str] = match status.as_str() {
            "completed" => &["PAYMENT_SUCCEEDED"],
            "failed" => &["PAYMENT_FAILED"],
            "expired" => &[],
            "refunded" => &["REFUND_CREATED", "REFUND_COMPLETED"],
            other => panic!("{other}"),
        };
        let got: Vec<&str> = by_tx
            .get(id)
            .map(|e| {
                e.iter()
                    .map(String::as_str)
                    .filter(|e| *e != "PAYMENT_CREATED")
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(got, expected, "{id} ({status})");
        *kinds.entry(status).or_insert(0) += 1;
    }
    assert_eq!(kinds.len(), 4, "every kind of change happened: {kinds:?}");
    let refunded = kinds["refunded"];
    let only_refunds = refunds.got();
    assert_eq!(only_refunds.len(), refunded);
    assert!(
        only_refunds
            .iter()
            .all(|r| r.json()["event"] == "REFUND_COMPLETED")
    );
}

/// 5xx answers are retried at `retry_base_ms * 2^(n-1)`, with the same event id, up to
/// `max_retries`, then given up; a later success ends the retries.
#[tokio::test]
async fn failures_are_retried_on_the_scaled_schedule_then_given_up() {
    let sim = spawn_sim(small_sim_options(30, 163)).await;
    let rx = Receiver::start().await;
    register(&sim, &rx.url, r#"["PAYMENT_CREATED"]"#).await;
    switches(&sim, r#"{"retry_base_ms": 100, "max_retries": 3}"#).await;
    rx.script((0..4).map(|_| Answer::Status(500)));
    mutate(&sim, r#"{"add_tx": 1}"#).await;
    let report = settled(&sim).await;
    assert_eq!(
        (report.attempts, report.acknowledged, report.given_up),
        (4, 0, 1)
    );
    let got = rx.got();
    assert_eq!(got.len(), 4);
    assert!(
        got.iter()
            .all(|r| r.id() == got[0].id() && r.body == got[0].body)
    );
    for (i, pair) in got.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let step = Duration::from_millis(100 << i);
        assert!(
            gap >= step - Duration::from_millis(5) && gap < step + Duration::from_millis(400),
            "retry {}: {gap:?}",
            i + 1
        );
    }
    // Two failures (a 503, then a 502), then an acknowledgement: three attempts.
    rx.script([Answer::Status(503), Answer::Status(502)]);
    mutate(&sim, r#"{"add_tx": 1}"#).await;
    let report = settled(&sim).await;
    assert_eq!(
        (report.attempts, report.acknowledged, report.given_up),
        (7, 1, 1)
    );
    let outcomes: Vec<&str> = report.log[4..].iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["rejected", "rejected", "acknowledged"]);
}

/// An attempt not answered within `timeout_ms` has failed, and is retried.
#[tokio::test]
async fn a_timeout_is_a_failed_attempt_and_retried() {
    let sim = spawn_sim(small_sim_options(30, 164)).await;
    let rx = Receiver::start().await;
    register(&sim, &rx.url, r#"["PAYMENT_CREATED"]"#).await;
    switches(&sim, r#"{"retry_base_ms": 20, "timeout_ms": 200}"#).await;
    rx.script([Answer::Late(1500)]);
    mutate(&sim, r#"{"add_tx": 1}"#).await;
    let report = settled(&sim).await;
    assert_eq!(
        (report.attempts, report.timeouts, report.acknowledged),
        (2, 1, 1)
    );
    assert_eq!(report.log[0].outcome, "timeout");
}

/// `p_drop`: deliveries never sent, the same ones for the same seed and changes.
#[tokio::test]
async fn dropped_deliveries_never_arrive_and_the_same_ones_per_seed() {
    async fn run(p: f64) -> (Vec<String>, lomi_sim::WebhookReport) {
        let sim = spawn_sim(small_sim_options(30, 165)).await;
        let rx = Receiver::start().await;
        register(&sim, &rx.url, ALL_EVENTS).await;
        switches(&sim, &format!(r#"{{"p_drop": {p}}}"#)).await;
        mutate(&sim, r#"{"add_tx": 40}"#).await;
        let report = settled(&sim).await;
        let mut ids: Vec<String> = rx.got().iter().map(Received::id).collect();
        ids.sort();
        (ids, report)
    }
    let (all, _) = run(1.0).await;
    assert!(all.is_empty(), "{all:?}");
    let (got, report) = run(0.5).await;
    assert!((8..=32).contains(&report.dropped), "{}", report.dropped);
    assert_eq!(got.len() as u64 + report.dropped, 40);
    assert_eq!(report.attempts, got.len() as u64);
    let (again, _) = run(0.5).await;
    assert_eq!(
        got, again,
        "the same deliveries are dropped for the same seed"
    );
}

/// `p_duplicate`: each event arrives twice, same id, same bytes, both signed.
#[tokio::test]
async fn duplicated_deliveries_arrive_twice_with_the_same_id() {
    let sim = spawn_sim(small_sim_options(30, 166)).await;
    let rx = Receiver::start().await;
    let (_, secret) = register(&sim, &rx.url, ALL_EVENTS).await;
    switches(&sim, r#"{"p_duplicate": 1.0}"#).await;
    mutate(&sim, r#"{"add_tx": 5}"#).await;
    let report = settled(&sim).await;
    assert_eq!(
        (report.events, report.duplicated, report.acknowledged),
        (5, 5, 10)
    );
    let mut copies: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
    for r in rx.got() {
        assert!(verifies(&secret, &r.body, &r.signature));
        copies.entry(r.id()).or_default().push(r.body);
    }
    assert_eq!(copies.len(), 5);
    assert!(
        copies.values().all(|c| c.len() == 2 && c[0] == c[1]),
        "{copies:?}"
    );
}

/// `p_reorder`: a held-back delivery arrives after an event that happened later.
#[tokio::test]
async fn reordered_deliveries_arrive_after_later_events() {
    let sim = spawn_sim(small_sim_options(30, 167)).await;
    let rx = Receiver::start().await;
    register(&sim, &rx.url, ALL_EVENTS).await;
    switches(&sim, r#"{"p_reorder": 1.0, "reorder_delay_ms": 400}"#).await;
    let first = mutate(&sim, r#"{"add_tx": 1}"#).await;
    switches(&sim, r#"{"p_reorder": 0.0, "reorder_delay_ms": 400}"#).await;
    let second = mutate(&sim, r#"{"add_tx": 1}"#).await;
    let report = settled(&sim).await;
    assert_eq!((report.reordered, report.acknowledged), (1, 2));
    let order: Vec<Value> = rx
        .got()
        .iter()
        .map(|r| r.json()["data"]["transaction_id"].clone())
        .collect();
    assert_eq!(
        order,
        [second["tx_added"][0].clone(), first["tx_added"][0].clone()]
    );
}

/// `p_bad_signature`: attempts signed with another key; a receiver that checks refuses
/// them, and the delivery is retried, then given up.
#[tokio::test]
async fn wrongly_signed_deliveries_do_not_verify() {
    let sim = spawn_sim(small_sim_options(30, 168)).await;
    let rx = Receiver::start().await;
    let (_, secret) = register(&sim, &rx.url, ALL_EVENTS).await;
    rx.check_signatures_with(&secret);
    switches(
        &sim,
        r#"{"p_bad_signature": 1.0, "retry_base_ms": 10, "max_retries": 1}"#,
    )
    .await;
    mutate(&sim, r#"{"add_tx": 2}"#).await;
    let report = settled(&sim).await;
    assert_eq!(
        (
            report.attempts,
            report.bad_signatures,
            report.acknowledged,
            report.given_up
        ),
        (4, 4, 0, 2)
    );
    let got = rx.got();
    assert_eq!(got.len(), 4);
    assert!(
        got.iter()
            .all(|r| !verifies(&secret, &r.body, &r.signature))
    );
    assert!(
        report
            .log
            .iter()
            .all(|a| !a.signed_correctly && a.status == Some(401))
    );
    // Switched off at run time: the next delivery verifies and is acknowledged.
    switches(&sim, r#"{"p_bad_signature": 0.0}"#).await;
    mutate(&sim, r#"{"add_tx": 1}"#).await;
    let report = settled(&sim).await;
    assert_eq!(report.acknowledged, 1);
    assert!(verifies(&secret, &rx.got()[4].body, &rx.got()[4].signature));
}

/// The vendor's rule (public HTTPS) is taken at registration, plus loopback http; a
/// delivery goes only to loopback http, anything else is refused unsent.
#[tokio::test]
async fn non_loopback_targets_are_refused() {
    let sim = spawn_sim(small_sim_options(30, 169)).await;
    let body = r#"{"url":"http://hooks.example.com/x","authorized_events":["PAYMENT_CREATED"]}"#;
    let res = sim.send(Method::POST, "/webhooks", Some(body)).await;
    let err = expect_json(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(err["error"]["details"]["field"], "url");
    register(&sim, "https://hooks.example.com/lomi", ALL_EVENTS).await;
    register(&sim, "https://127.0.0.1:9/lomi", ALL_EVENTS).await;
    mutate(&sim, r#"{"add_tx": 3}"#).await;
    let report = settled(&sim).await;
    assert_eq!(
        (report.refused, report.deliveries, report.attempts),
        (6, 0, 0)
    );
}

#[tokio::test]
async fn registrations_are_listed_without_secrets_read_and_deleted() {
    let sim = spawn_sim(small_sim_options(5, 170)).await;
    let body = r#"{"url":"https://hooks.example.com/lomi","authorized_events":["PAYMENT_CREATED"],"description":"d","metadata":{"k":"v"}}"#;
    let res = sim
        .client
        .post(sim.url("/webhooks"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "the key is required"
    );
    let (id, secret) = register(&sim, "https://hooks.example.com/lomi", ALL_EVENTS).await;
    let list = sim.get("/webhooks").await.text().await.unwrap();
    assert!(
        list.contains(&id) && !list.contains(&secret) && !list.contains("secret"),
        "{list}"
    );
    let one = sim.get_json(&format!("/webhooks/{id}")).await;
    assert_eq!(one["is_active"], true);
    assert_eq!(one["authorized_events"].as_array().unwrap().len(), 6);
    assert!(one.get("secret").is_none());
    let res = sim
        .send(Method::DELETE, &format!("/webhooks/{id}"), None)
        .await;
    assert_eq!(expect_json(res, StatusCode::OK).await["deleted"], true);
    let res = sim.get(&format!("/webhooks/{id}")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.get_json("/webhooks").await, serde_json::json!([]));
    assert_eq!(sim.sim.stats().webhooks, 7);
}

/// A burst makes real transactions (in the truth) at the rate asked, each delivered.
#[tokio::test]
async fn a_burst_creates_transactions_at_the_rate_asked() {
    let sim = spawn_sim(small_sim_options(30, 171)).await;
    let rx = Receiver::start().await;
    register(&sim, &rx.url, ALL_EVENTS).await;
    let started = Instant::now();
    sim.control(
        "/_sim/webhooks/burst",
        r#"{"count": 60, "per_second": 100}"#,
    )
    .await;
    let res = sim
        .client
        .post(sim.url("/_sim/webhooks/burst"))
        .body(r#"{"count": 1, "per_second": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT, "one burst at a time");
    assert!(wait_for(10, || !sim.sim.burst().running).await);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let burst = sim.sim.burst();
    assert_eq!((burst.created, burst.transaction_ids.len()), (60, 60));
    let report = settled(&sim).await;
    assert_eq!(report.acknowledged, 60);
    let truth = sim.sim.truth().to_string();
    assert!(
        burst
            .transaction_ids
            .iter()
            .all(|id| truth.contains(id.as_str()))
    );
}

/// `webhooks register` through the binary: the secret goes to a 0600 file and signs
/// the deliveries, and shows in no output; a second run needs --force; `webhooks list`.
#[tokio::test]
async fn register_and_list_through_the_cli() {
    let sim = spawn_sim(small_sim_options(30, 172)).await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook.secret");
    let config = dir.path().join("lomi-sync.toml");
    let toml = format!(
        "[api]\nbase_url = \"{}\"\nrequests_per_second = 0\nmax_requests_per_window = 0\n\n[webhooks]\nsecret_file = \"{}\"\n",
        sim.base_url,
        secret_file.display()
    );
    std::fs::write(&config, toml).unwrap();
    let key = Some(sim.api_key.as_str());
    let args = ["webhooks", "register", "--url", rx.url.as_str()];
    let out = run_bin(Some(&config), key, &args).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let secret = std::fs::read_to_string(&secret_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(secret.starts_with("whsec_"));
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        !stdout.contains(&secret) && !stderr.contains(&secret),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("wh_") && stdout.contains(&*secret_file.to_string_lossy()),
        "{stdout}"
    );
    // The saved secret is the one that signs.
    mutate(&sim, r#"{"add_tx": 1, "settle": 1}"#).await;
    settled(&sim).await;
    assert!(!rx.got().is_empty());
    assert!(
        rx.got()
            .iter()
            .all(|r| verifies(&secret, &r.body, &r.signature))
    );

    let out = run_bin(Some(&config), key, &args).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap().trim(),
        secret
    );
    assert_eq!(
        sim.get_json("/webhooks").await.as_array().unwrap().len(),
        1,
        "nothing registered"
    );

    // --force: a new webhook, its secret replacing the old one; the old one is named.
    let first_id = sim.get_json("/webhooks").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let forced = [&args[..], &["--force"]].concat();
    let out = run_bin(Some(&config), key, &forced).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&first_id),
        "the older webhook is named: {stderr}"
    );
    let new_secret = std::fs::read_to_string(&secret_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    assert!(!stdout.contains(&new_secret) && !stderr.contains(&new_secret));
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let out = run_bin(Some(&config), key, &["webhooks", "list"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("wh_") && stdout.contains(&rx.url) && stdout.contains("active"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PAYMENT_CREATED") && stdout.contains("REFUND_COMPLETED"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("whsec_") && !stderr.contains("whsec_"),
        "{stdout}\n{stderr}"
    );

    let bad = [
        "webhooks",
        "register",
        "--url",
        "http://hooks.example.com/x",
        "--force",
    ];
    let out = run_bin(Some(&config), key, &bad).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("https://"), "{stderr}");
    let out = run_bin(Some(&config), Some("wrong_key"), &["webhooks", "list"]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "a rejected key: {}",
        text(&out).1
    );
    let out = run_bin(Some(&config), None, &["webhooks", "list"]).await;
    assert_eq!(out.status.code(), Some(2), "no key: {}", text(&out).1);
    let help = run_bin(Some(&config), key, &["webhooks", "register", "--help"]).await;
    assert!(!text(&help).0.contains(&secret));
}

/// The client's registration and listing go through the reads' retry loop: the
/// listing's 5xx faults are retried; the registration (not idempotent) is sent again
/// only after a 429, which the service answers unread, and exactly one webhook is
/// registered; the secret is returned, the listing carries none; a rejected key is
/// `Unauthorized`.
#[tokio::test]
async fn the_client_registers_and_lists_through_the_retry_loop() {
    use lomi_sync::api::ApiError;
    let sim = spawn_sim(small_sim_options(5, 173)).await;
    let c = webhook_client(&sim.base_url, &sim.api_key, 20);
    let events = ["PAYMENT_CREATED", "REFUND_COMPLETED"];
    // Every third registration attempt or so is a 429 (Retry-After 0: no hint).
    sim.sim.set_faults(lomi_sim::Faults {
        p429: 0.6,
        retry_after_secs: 0,
        ..lomi_sim::Faults::default()
    });
    let hook = c
        .register_webhook("https://hooks.example.com/lomi", &events)
        .await
        .unwrap();
    let after_post = retries(&c);
    sim.sim.set_faults(lomi_sim::Faults {
        p500: 0.4,
        p503: 0.2,
        ..lomi_sim::Faults::default()
    });
    let listed = c.list_webhooks().await.unwrap();
    assert!(after_post > 0, "the 429s were retried");
    assert!(retries(&c) > after_post, "the listing's 5xx were retried");
    sim.sim.set_faults(lomi_sim::Faults::default());
    assert!(hook.secret.as_ref().unwrap().expose().starts_with("whsec_"));
    assert_eq!(hook.authorized_events, events);
    assert!(hook.id.starts_with("wh_") && hook.raw.get("secret").is_none());
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, hook.id);
    assert_eq!(
        (listed[0].is_active, listed[0].secret.is_none()),
        (Some(true), true)
    );
    assert_eq!(
        listed[0].raw["environment"], "test",
        "unknown fields are kept"
    );
    let err = webhook_client(&sim.base_url, "wrong", 20)
        .list_webhooks()
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Unauthorized { .. }), "{err}");
}

/// A registration that may have been handled is never sent again: a 500, a 503 (with
/// `Retry-After`), a connection closed after the request went out, an answer cut off
/// after the webhook was made. One attempt each; the error names `webhooks list`, which
/// shows the one webhook the cut answer made. A connection refused is retried: nothing
/// was sent.
#[tokio::test]
async fn a_registration_that_may_have_been_handled_is_sent_once() {
    use lomi_sync::api::ApiError;
    let sim = spawn_sim(small_sim_options(5, 174)).await;
    let c = webhook_client(&sim.base_url, &sim.api_key, 5);
    let faults = [
        lomi_sim::Faults {
            p500: 1.0,
            ..lomi_sim::Faults::default()
        },
        lomi_sim::Faults {
            p503: 1.0,
            ..lomi_sim::Faults::default()
        },
        lomi_sim::Faults {
            p_close: 1.0,
            ..lomi_sim::Faults::default()
        },
        lomi_sim::Faults {
            p_truncate: 1.0,
            ..lomi_sim::Faults::default()
        },
    ];
    for f in faults {
        let label = format!("{f:?}");
        sim.sim.set_faults(f);
        let before = requests(&c);
        let err = c
            .register_webhook("https://hooks.example.com/lomi", &["PAYMENT_CREATED"])
            .await
            .unwrap_err();
        assert_eq!(requests(&c) - before, 1, "one attempt only: {label}");
        assert_eq!(retries(&c), 0, "{label}");
        assert!(
            matches!(err, ApiError::Unconfirmed { .. }),
            "{label}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains("`lomi-sync webhooks list`"), "{text}");
        assert!(
            text.contains("duplicate") && !text.contains("whsec_"),
            "{text}"
        );
    }
    sim.sim.set_faults(lomi_sim::Faults::default());
    // Only the cut answer's request reached the handler: one webhook, no duplicate.
    assert_eq!(c.list_webhooks().await.unwrap().len(), 1);

    // Nothing listens: the connection is refused before anything is sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let c = webhook_client(&url, &sim.api_key, 2);
    let err = c
        .register_webhook("https://hooks.example.com/lomi", &["PAYMENT_CREATED"])
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Transport { .. }), "{err}");
    assert_eq!((requests(&c), retries(&c)), (3, 2), "{err}");
}

/// A client of `base_url` without pacing, quick to retry up to `max_retries` times.
fn webhook_client(base_url: &str, key: &str, max_retries: u32) -> lomi_sync::api::ApiClient {
    use lomi_sync::api::{ApiClient, ClientOptions};
    use lomi_sync::config::{ApiKey, Settings};
    let mut settings = Settings::default();
    settings.api.base_url = base_url.parse().unwrap();
    settings.api.requests_per_second = 0.0;
    settings.api.max_requests_per_window = 0;
    settings.api.max_backoff = Duration::from_millis(20).into();
    settings.api.max_retries = max_retries;
    let opts = ClientOptions::from_settings(&settings.api).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    ApiClient::new(opts, &ApiKey::new(key.to_owned()), cancel).unwrap()
}

fn requests(c: &lomi_sync::api::ApiClient) -> u64 {
    c.counters()
        .requests
        .load(std::sync::atomic::Ordering::Relaxed)
}

fn retries(c: &lomi_sync::api::ApiClient) -> u64 {
    c.counters()
        .retries
        .load(std::sync::atomic::Ordering::Relaxed)
}
