//! Webhooks (NOTES.md, "Webhooks"): the vendor's registration API and signed deliveries
//! of payment and refund events to the registered endpoints.
//!
//! # Registration (`POST /webhooks`, `GET /webhooks`, `GET|DELETE /webhooks/{id}`)
//! NOTES.md gives the request (`{url, authorized_events[], description?, metadata?}`) and
//! says the secret is returned once; the shape of the answer is **our assumption**, since
//! the docs in `shared/api` do not show it: `{id: "wh_...", url, authorized_events,
//! description, metadata, is_active, environment, created_at, updated_at}`, plus
//! `secret: "whsec_..."` in the answer to `POST` only. `GET /webhooks` is a bare array
//! (also an assumption). The vendor demands public HTTPS URLs; the simulator accepts any
//! `https` URL and plain `http` to a loopback host (tests), and delivers to the latter
//! only (see [`loopback_target`]).
//!
//! # Events
//! `PAYMENT_CREATED` when a transaction is created (`add_tx`, feed drift, a burst);
//! `PAYMENT_SUCCEEDED` / `PAYMENT_FAILED` when a pending payment settles as completed /
//! failed (none for `expired`: the vendor lists no such event, polling finds it);
//! `REFUND_CREATED` then `REFUND_COMPLETED` when a completed payment is refunded (both
//! carry the refunded row and share its `updated_at`). `data` is the row exactly as
//! `GET /transactions/{id}` renders it at that moment (restyled as served bodies are).
//!
//! # Deliveries ([`super::delivery`])
//! `POST` of `{"id","event","timestamp","data","lomi_environment"}` with
//! `X-Lomi-Signature` (lowercase hex HMAC-SHA256 of the exact body, keyed with the
//! endpoint's whole secret string), `X-Lomi-Event` and `User-Agent: Lomi-Webhook/1.0`.
//! Every fault decision is a hash of the seed, the event, the endpoint, the copy and the
//! attempt ([`draw`]): the same seed and the same changes give the same faults,
//! whatever the timing.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use url::{Host, Url};

use super::model::{ENVIRONMENT, Ts, TxStatus};
use super::restyle::Restyle;
use super::rng::mix64;
use super::{lock, read, write};

/// The events the vendor documents for payments and refunds (NOTES.md). Subscription
/// and usage events exist too; the simulator has no subscriptions, so it knows these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EventKind {
    PaymentCreated,
    PaymentSucceeded,
    PaymentFailed,
    RefundCreated,
    RefundCompleted,
    /// Documented; the simulator's refunds always complete, so it never sends it.
    RefundFailed,
}

impl EventKind {
    pub(super) const ALL: [EventKind; 6] = [
        EventKind::PaymentCreated,
        EventKind::PaymentSucceeded,
        EventKind::PaymentFailed,
        EventKind::RefundCreated,
        EventKind::RefundCompleted,
        EventKind::RefundFailed,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            EventKind::PaymentCreated => "PAYMENT_CREATED",
            EventKind::PaymentSucceeded => "PAYMENT_SUCCEEDED",
            EventKind::PaymentFailed => "PAYMENT_FAILED",
            EventKind::RefundCreated => "REFUND_CREATED",
            EventKind::RefundCompleted => "REFUND_COMPLETED",
            EventKind::RefundFailed => "REFUND_FAILED",
        }
    }

    fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The events of a pending payment settling as `status`.
    pub(super) fn of_settlement(status: TxStatus) -> &'static [EventKind] {
        match status {
            TxStatus::Completed => &[EventKind::PaymentSucceeded],
            TxStatus::Failed => &[EventKind::PaymentFailed],
            _ => &[],
        }
    }
}

/// One event as the data set recorded it: `row` is the transaction's
/// `GET /transactions/{id}` body at that moment (shared by the events of one change).
#[derive(Clone, Debug)]
pub(super) struct TxEvent {
    /// 1, 2, ...: the event's place in the simulator's history (its id derives from it).
    pub(super) seq: u64,
    pub(super) kind: EventKind,
    pub(super) at_ms: i64,
    pub(super) row: Arc<[u8]>,
}

/// Webhook delivery switches (`GET|POST /_sim/webhooks`, `--webhook-*` flags): the
/// vendor's schedule (timeout, retries, backoff) and the faults. Probabilities are of
/// each delivery (an event to one endpoint), except `p_bad_signature`, of each attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookFaults {
    /// The delivery is never sent (lost): only polling finds the change.
    pub p_drop: f64,
    /// A second copy (same `id`, same bytes) is delivered too, concurrently, with its own
    /// retries.
    pub p_duplicate: f64,
    /// The first attempt waits `reorder_delay_ms`, so later events arrive before it.
    pub p_reorder: f64,
    /// Hold of a reordered delivery, in milliseconds (default 1000).
    pub reorder_delay_ms: u64,
    /// The attempt is signed with another key than the endpoint's secret.
    pub p_bad_signature: f64,
    /// The first retry's wait in milliseconds, doubled each retry (5,000 as the vendor:
    /// 5, 10, 20, 40, 80 s). Tests scale the schedule down with it.
    pub retry_base_ms: u64,
    /// Retries after the first attempt before the delivery is given up (5).
    pub max_retries: u32,
    /// An attempt not answered within this many milliseconds has failed (4,000).
    pub timeout_ms: u64,
}

impl Default for WebhookFaults {
    fn default() -> WebhookFaults {
        WebhookFaults {
            p_drop: 0.0,
            p_duplicate: 0.0,
            p_reorder: 0.0,
            reorder_delay_ms: 1000,
            p_bad_signature: 0.0,
            retry_base_ms: 5000,
            max_retries: 5,
            timeout_ms: 4000,
        }
    }
}

impl WebhookFaults {
    /// The name of the first probability outside `[0, 1]` (or NaN), if any.
    pub(super) fn invalid_probability(&self) -> Option<&'static str> {
        [
            ("p_drop", self.p_drop),
            ("p_duplicate", self.p_duplicate),
            ("p_reorder", self.p_reorder),
            ("p_bad_signature", self.p_bad_signature),
        ]
        .into_iter()
        .find(|(_, p)| !(0.0..=1.0).contains(p))
        .map(|(name, _)| name)
    }

    /// Probabilities clamped into `[0, 1]` (NaN counts as 0).
    pub(super) fn clamped(mut self) -> WebhookFaults {
        for p in [
            &mut self.p_drop,
            &mut self.p_duplicate,
            &mut self.p_reorder,
            &mut self.p_bad_signature,
        ] {
            *p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        }
        self
    }

    /// The wait before retry `retry` (1-based): `retry_base_ms * 2^(retry - 1)`.
    pub(super) fn backoff(&self, retry: u32) -> std::time::Duration {
        let factor = 1u64 << (retry.saturating_sub(1)).min(20);
        std::time::Duration::from_millis(self.retry_base_ms.saturating_mul(factor))
    }
}

/// What deliveries did (`GET /_sim/webhooks/deliveries`). A delivery is one event to one
/// endpoint (a duplicate is a second delivery); an attempt is one POST.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookReport {
    /// Events recorded while some endpoint was registered.
    pub events: u64,
    /// Deliveries scheduled (duplicates included, drops and refusals not).
    pub deliveries: u64,
    /// POSTs sent, retries included.
    pub attempts: u64,
    /// Attempts answered 2xx (each ends its delivery).
    pub acknowledged: u64,
    /// Attempts that failed: a non-2xx answer, a timeout, no connection.
    pub failed_attempts: u64,
    /// Of those, timeouts.
    pub timeouts: u64,
    /// Deliveries abandoned after `max_retries` retries.
    pub given_up: u64,
    /// Deliveries lost on purpose (`p_drop`).
    pub dropped: u64,
    /// Second copies sent (`p_duplicate`).
    pub duplicated: u64,
    /// Deliveries held back (`p_reorder`).
    pub reordered: u64,
    /// Attempts signed with a wrong key (`p_bad_signature`).
    pub bad_signatures: u64,
    /// Deliveries not sent because the endpoint is not plain HTTP on loopback.
    pub refused: u64,
    /// Deliveries not yet acknowledged nor given up.
    pub in_flight: u64,
    /// The last attempts (at most [`LOG_LIMIT`]), oldest first.
    pub log: Vec<DeliveryRecord>,
}

/// How many attempts the delivery log keeps.
pub const LOG_LIMIT: usize = 100_000;

/// One attempt of one delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub event_id: String,
    pub event: String,
    pub webhook_id: String,
    /// 0, or 1 for the second copy of a duplicated delivery.
    pub copy: u8,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// False when signed with a wrong key on purpose.
    pub signed_correctly: bool,
    /// The HTTP status answered, if any.
    pub status: Option<u16>,
    /// `acknowledged`, `rejected` (non-2xx), `timeout` or `error` (no answer).
    pub outcome: String,
    /// When the attempt was sent (ms since the Unix epoch).
    pub sent_at_ms: i64,
}

/// `POST /_sim/webhooks/burst`: `count` new transactions (as `add_tx` makes them, so the
/// truth holds them), created at `per_second`, each a `PAYMENT_CREATED` event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub count: u32,
    pub per_second: f64,
}

/// Where the last burst stands (`GET /_sim/webhooks/burst`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BurstReport {
    pub running: bool,
    pub count: u32,
    pub per_second: f64,
    /// Transactions created so far.
    pub created: u32,
    /// Ids of the transactions created, in order.
    pub transaction_ids: Vec<String>,
}

/// A registered endpoint. The secret never leaves it but in the answer to its `POST`
/// and as the HMAC key.
pub(super) struct Endpoint {
    pub(super) seq: u64,
    pub(super) id: String,
    pub(super) url: Url,
    events: Vec<EventKind>,
    description: Option<String>,
    metadata: Map<String, Value>,
    pub(super) secret: String,
    created_ms: i64,
}

impl Endpoint {
    /// The webhook as the API shows it; `secret` only in the answer to its creation.
    fn json(&self, with_secret: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "url": self.url.as_str(),
            "authorized_events": self.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
            "description": self.description,
            "metadata": self.metadata,
            "is_active": true,
            "environment": ENVIRONMENT,
            "created_at": Ts(self.created_ms).to_string(),
            "updated_at": Ts(self.created_ms).to_string(),
        });
        if with_secret {
            v["secret"] = Value::String(self.secret.clone());
        }
        v
    }
}

/// A validated `POST /webhooks` body.
#[derive(Debug)]
pub(super) struct Registration {
    url: Url,
    events: Vec<EventKind>,
    description: Option<String>,
    metadata: Map<String, Value>,
}

/// A registration refused: the field and why (a 400 `invalid_request`).
pub(super) type Invalid = (&'static str, String);

/// Reads `{url, authorized_events[], description?, metadata?}`. The URL must be `https`,
/// or plain `http` to a loopback host; the events must be known and at least one.
pub(super) fn parse_registration(body: &[u8]) -> Result<Registration, Invalid> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ("body", format!("request body is not valid JSON: {e}")))?;
    let Value::Object(mut o) = v else {
        return Err(("body", "request body must be a JSON object".into()));
    };
    let text = o.get("url").and_then(Value::as_str).unwrap_or_default();
    let url = Url::parse(text).map_err(|e| ("url", format!("url is not a valid URL: {e}")))?;
    let secure = url.scheme() == "https" && url.host().is_some();
    if !secure && loopback_target(&url).is_none() {
        return Err(("url", "url must be a public HTTPS URL".into()));
    }
    let events = match o.remove("authorized_events") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().and_then(EventKind::parse).ok_or(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|i| ("authorized_events", format!("unknown event {i}")))?,
        _ => {
            let msg = "authorized_events must be a non-empty array of event names";
            return Err(("authorized_events", msg.into()));
        }
    };
    let description = match o.remove("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(("description", "description must be a string".into())),
    };
    let metadata = match o.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(("metadata", "metadata must be an object".into())),
    };
    Ok(Registration {
        url,
        events,
        description,
        metadata,
    })
}

/// Where a delivery to `url` may go: plain `http` to a loopback address (`localhost` is
/// sent to `127.0.0.1`, never resolved). `None` for anything else, `https` included (the
/// simulator has no TLS client): no test may reach a non-loopback address.
pub(super) fn loopback_target(url: &Url) -> Option<Url> {
    if url.scheme() != "http" {
        return None;
    }
    match url.host()? {
        Host::Ipv4(ip) if ip.is_loopback() => Some(url.clone()),
        Host::Ipv6(ip) if ip.is_loopback() => Some(url.clone()),
        Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => {
            let mut u = url.clone();
            u.set_host(Some("127.0.0.1")).ok()?;
            Some(u)
        }
        _ => None,
    }
}

/// Lowercase hex HMAC-SHA256 of `body` keyed with `secret` (NOTES.md, Webhooks).
pub(super) fn sign(secret: &[u8], body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(body);
    let mut out = String::with_capacity(64);
    for b in mac.finalize().into_bytes() {
        let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{b:02x}"));
    }
    out
}

/// The delivery body: `data` is the row's bytes as rendered, untouched.
pub(super) fn envelope(id: &str, kind: EventKind, at_ms: i64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 160);
    let _ = write!(
        out,
        "{{\"id\":\"{id}\",\"event\":\"{}\",\"timestamp\":\"{}\",\"data\":",
        kind.as_str(),
        Ts(at_ms)
    );
    out.extend_from_slice(data);
    let _ = write!(out, ",\"lomi_environment\":\"{ENVIRONMENT}\"}}");
    out
}

/// Fault draws, one per decision: a fixed hash of the inputs, in `[0, 1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Draw {
    Drop = 1,
    Duplicate = 2,
    Reorder = 3,
    BadSignature = 4,
}

pub(super) fn draw(seed: u64, event: u64, endpoint: u64, copy: u8, attempt: u32, d: Draw) -> f64 {
    let mut h = mix64(seed ^ 0x7768_6f6f_6b73_2121);
    for x in [
        event,
        endpoint,
        u64::from(copy),
        u64::from(attempt),
        d as u64,
    ] {
        h = mix64(h ^ x);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Counters behind [`WebhookReport`].
#[derive(Default)]
pub(super) struct Counts {
    pub(super) events: AtomicU64,
    pub(super) deliveries: AtomicU64,
    pub(super) attempts: AtomicU64,
    pub(super) acknowledged: AtomicU64,
    pub(super) failed_attempts: AtomicU64,
    pub(super) timeouts: AtomicU64,
    pub(super) given_up: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) duplicated: AtomicU64,
    pub(super) reordered: AtomicU64,
    pub(super) bad_signatures: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) in_flight: AtomicU64,
}

pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The simulator's webhooks: endpoints, switches, counters, the log and the burst.
pub(super) struct Webhooks {
    pub(super) seed: u64,
    endpoints: RwLock<Vec<Arc<Endpoint>>>,
    next_endpoint: AtomicU64,
    switches: RwLock<WebhookFaults>,
    pub(super) counts: Counts,
    log: Mutex<VecDeque<DeliveryRecord>>,
    /// The runtime deliveries are spawned on: the current one, else the one that served
    /// the first registration (a mutation may come from a thread outside any runtime).
    runtime: Mutex<Option<tokio::runtime::Handle>>,
    http: OnceLock<reqwest::Client>,
    pub(super) burst: Mutex<BurstReport>,
}

impl Webhooks {
    pub(super) fn new(seed: u64, switches: WebhookFaults) -> Webhooks {
        Webhooks {
            seed,
            endpoints: RwLock::new(Vec::new()),
            next_endpoint: AtomicU64::new(0),
            switches: RwLock::new(switches),
            counts: Counts::default(),
            log: Mutex::new(VecDeque::new()),
            runtime: Mutex::new(None),
            http: OnceLock::new(),
            burst: Mutex::new(BurstReport::default()),
        }
    }

    pub(super) fn switches(&self) -> WebhookFaults {
        read(&self.switches).clone()
    }

    pub(super) fn set_switches(&self, s: WebhookFaults) {
        *write(&self.switches) = s;
    }

    /// Adds an endpoint; its JSON with the secret (the only time it is shown).
    pub(super) fn register(&self, r: Registration, now_ms: i64) -> Value {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            lock(&self.runtime).get_or_insert(handle);
        }
        let seq = self.next_endpoint.fetch_add(1, Ordering::Relaxed) + 1;
        let salt = mix64(self.seed ^ 0x7768_5f73_6563_7221);
        let endpoint = Endpoint {
            seq,
            id: format!("wh_{:016x}", mix64(seq ^ self.seed ^ 0x7768_5f69_6421)),
            url: r.url,
            events: r.events,
            description: r.description,
            metadata: r.metadata,
            // A simulator's secret: unique per endpoint, derived from the seed.
            secret: format!(
                "whsec_{:016x}{:016x}",
                mix64(seq ^ salt),
                mix64(seq ^ mix64(salt))
            ),
            created_ms: now_ms,
        };
        let body = endpoint.json(true);
        write(&self.endpoints).push(Arc::new(endpoint));
        body
    }

    /// Every endpoint, without secrets.
    pub(super) fn list(&self) -> Value {
        Value::Array(
            read(&self.endpoints)
                .iter()
                .map(|e| e.json(false))
                .collect(),
        )
    }

    pub(super) fn get(&self, id: &str) -> Option<Value> {
        let endpoints = read(&self.endpoints);
        endpoints.iter().find(|e| e.id == id).map(|e| e.json(false))
    }

    /// Removes an endpoint; `false` when there is none with that id.
    pub(super) fn delete(&self, id: &str) -> bool {
        let mut endpoints = write(&self.endpoints);
        let before = endpoints.len();
        endpoints.retain(|e| e.id != id);
        endpoints.len() != before
    }

    pub(super) fn any(&self) -> bool {
        !read(&self.endpoints).is_empty()
    }

    /// The endpoints subscribed to `kind`.
    pub(super) fn subscribed(&self, kind: EventKind) -> Vec<Arc<Endpoint>> {
        read(&self.endpoints)
            .iter()
            .filter(|e| e.events.contains(&kind))
            .cloned()
            .collect()
    }

    pub(super) fn runtime(&self) -> Option<tokio::runtime::Handle> {
        tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| lock(&self.runtime).clone())
    }

    /// The delivery client: no proxy (a proxy from the environment would take a
    /// loopback delivery elsewhere), no redirects, the vendor's user agent.
    pub(super) fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent("Lomi-Webhook/1.0")
                .build()
                .expect("a plain HTTP client builds")
        })
    }

    /// The event id of event number `seq`: `evt_` and 16 hex digits, the same for every
    /// attempt and copy of its deliveries.
    pub(super) fn event_id(&self, seq: u64) -> String {
        format!(
            "evt_{:016x}",
            mix64(seq ^ mix64(self.seed ^ 0x6576_745f_6964))
        )
    }

    /// The row as served: restyled like a `GET /transactions/{id}` body when the
    /// timestamp style or mistyped fields are switched on.
    pub(super) fn served_row(row: &Arc<[u8]>, restyle: &Restyle) -> Arc<[u8]> {
        if restyle.is_active() {
            restyle.body(row.to_vec()).into()
        } else {
            row.clone()
        }
    }

    pub(super) fn record(&self, r: DeliveryRecord) {
        let mut log = lock(&self.log);
        if log.len() == LOG_LIMIT {
            log.pop_front();
        }
        log.push_back(r);
    }

    pub(super) fn report(&self) -> WebhookReport {
        let c = &self.counts;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WebhookReport {
            events: n(&c.events),
            deliveries: n(&c.deliveries),
            attempts: n(&c.attempts),
            acknowledged: n(&c.acknowledged),
            failed_attempts: n(&c.failed_attempts),
            timeouts: n(&c.timeouts),
            given_up: n(&c.given_up),
            dropped: n(&c.dropped),
            duplicated: n(&c.duplicated),
            reordered: n(&c.reordered),
            bad_signatures: n(&c.bad_signatures),
            refused: n(&c.refused),
            in_flight: n(&c.in_flight),
            log: lock(&self.log).iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2: the signature is standard HMAC-SHA256 in lowercase hex.
    #[test]
    fn signatures_are_hmac_sha256_in_lowercase_hex() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_envelope_carries_the_row_bytes_untouched() {
        let row = br#"{"transaction_id":"tx_1","gross_amount":10.50,"updated_at":"x"}"#;
        let body = envelope("evt_1", EventKind::PaymentSucceeded, 0, row);
        let text = String::from_utf8(body).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"id\":\"evt_1\",\"event\":\"PAYMENT_SUCCEEDED\",\"timestamp\":\"1970-01-01T00:00:00.000Z\",\"data\":{},\"lomi_environment\":\"test\"}}",
                std::str::from_utf8(row).unwrap()
            )
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["data"]["gross_amount"].to_string(), "10.50");
    }

    #[test]
    fn only_loopback_http_is_a_delivery_target() {
        let target = |u: &str| loopback_target(&Url::parse(u).unwrap()).map(String::from);
        assert_eq!(
            target("http://127.0.0.1:9810/webhooks/lomi").as_deref(),
            Some("http://127.0.0.1:9810/webhooks/lomi")
        );
        assert!(target("http://127.8.9.1/x").is_some());
        assert!(target("http://[::1]:80/x").is_some());
        assert_eq!(
            target("http://localhost:9/x").as_deref(),
            Some("http://127.0.0.1:9/x")
        );
        for refused in [
            "https://127.0.0.1/x",
            "https://hooks.example.com/x",
            "http://example.com/x",
            "http://10.0.0.1/x",
            "http://[::2]/x",
            "http://localhost.example.com/x",
            "ftp://127.0.0.1/x",
        ] {
            assert_eq!(target(refused), None, "{refused}");
        }
    }

    #[test]
    fn registrations_take_https_or_loopback_http_and_known_events() {
        let ok = |b: &str| parse_registration(b.as_bytes()).map(|r| r.url.to_string());
        assert!(ok(r#"{"url":"https://hooks.example.com/lomi","authorized_events":["PAYMENT_CREATED"]}"#).is_ok());
        assert!(ok(r#"{"url":"http://127.0.0.1:1/x","authorized_events":["REFUND_COMPLETED"],"description":"t","metadata":{"a":1}}"#).is_ok());
        for (body, field) in [
            (
                r#"{"url":"http://hooks.example.com/x","authorized_events":["PAYMENT_CREATED"]}"#,
                "url",
            ),
            (r#"{"authorized_events":["PAYMENT_CREATED"]}"#, "url"),
            (
                r#"{"url":"https://a.example/x","authorized_events":[]}"#,
                "authorized_events",
            ),
            (
                r#"{"url":"https://a.example/x","authorized_events":["CUSTOMER_CREATED"]}"#,
                "authorized_events",
            ),
            (
                r#"{"url":"https://a.example/x","authorized_events":["PAYMENT_CREATED"],"metadata":3}"#,
                "metadata",
            ),
            ("[]", "body"),
        ] {
            assert_eq!(
                parse_registration(body.as_bytes()).unwrap_err().0,
                field,
                "{body}"
            );
        }
    }

    #[test]
    fn the_schedule_doubles_from_the_base() {
        let s = WebhookFaults::default();
        let waits: Vec<u64> = (1..=5).map(|r| s.backoff(r).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80]);
        let scaled = WebhookFaults {
            retry_base_ms: 10,
            ..WebhookFaults::default()
        };
        assert_eq!(scaled.backoff(3).as_millis(), 40);
    }

    /// Fault draws depend on their inputs only, and hit about the share asked.
    #[test]
    fn draws_are_fixed_by_their_inputs_and_uniform() {
        assert_eq!(
            draw(7, 1, 1, 0, 1, Draw::Drop),
            draw(7, 1, 1, 0, 1, Draw::Drop)
        );
        assert_ne!(
            draw(7, 1, 1, 0, 1, Draw::Drop),
            draw(8, 1, 1, 0, 1, Draw::Drop)
        );
        assert_ne!(
            draw(7, 1, 1, 0, 1, Draw::Drop),
            draw(7, 1, 1, 0, 1, Draw::Duplicate)
        );
        let hits = (0..10_000)
            .filter(|&e| draw(42, e, 1, 0, 1, Draw::Drop) < 0.2)
            .count();
        assert!((1800..2200).contains(&hits), "{hits}");
    }

    #[test]
    fn settlements_map_to_their_events() {
        assert_eq!(
            EventKind::of_settlement(TxStatus::Completed),
            [EventKind::PaymentSucceeded]
        );
        assert_eq!(
            EventKind::of_settlement(TxStatus::Failed),
            [EventKind::PaymentFailed]
        );
        assert!(EventKind::of_settlement(TxStatus::Expired).is_empty());
    }
}
