//! HTTP routes: the public Customers API (auth, rate limit, faults, stats) and the control
//! surface used by tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use super::faults::{self, Outcome, Plan};
use super::feed::{
    CURRENCIES, FEED_ROW_LIMIT, FeedQuery, PAYMENT_METHODS, PROVIDERS, parse_instant,
};
use super::model::{TxKind, TxList, TxStatus};
use super::rng::mix64;
use super::state::{ListQuery, ListStatus, ProfilePatch, TypeFilter};
use super::webhooks::parse_registration;
use super::{
    Burst, Drift, Faults, Feed, Inner, Mutation, RateLimit, RateLimitReport, RetryAfterStyle,
    Route, RouteReport, Sim, Stats, WebhookFaults, lock, now_ms, read,
};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const RATE_LIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const RATE_LIMIT_WINDOW: HeaderName = HeaderName::from_static("x-ratelimit-window-seconds");
const RATE_LIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RATE_LIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("x-ratelimit-policy");

const DEFAULT_PAGE_SIZE: usize = 50;
/// The live service's limit, shown in the headers of a 429 fault when no rate-limit mode
/// is configured.
const LIVE_RATE_LIMIT: RateLimit = RateLimit {
    requests: 5000,
    window: Duration::from_secs(900),
};
/// Bound on each count of a mutation request, so a typo cannot make the simulator spend
/// minutes (or all memory) on one request.
const MAX_MUTATION_COUNT: u32 = 1_000_000;

const BAD_GATEWAY_HTML: &str = "<html><body><h1>502 Bad Gateway</h1></body></html>";

pub(super) async fn serve(
    sim: Sim,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Small responses on keep-alive connections must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::trace!("failed to set TCP_NODELAY: {err}");
        }
    });
    axum::serve(listener, sim.router())
        .with_graceful_shutdown(shutdown)
        .await
}

pub(super) fn router(sim: Sim) -> Router {
    Router::new()
        .route("/customers", get(list_customers).post(create_customer))
        .route(
            "/customers/{id}",
            get(get_customer)
                .patch(update_customer)
                .delete(delete_customer),
        )
        .route("/customers/{id}/transactions", get(customer_transactions))
        .route("/transactions", get(feed_list))
        .route("/transactions/{id}", get(feed_get))
        .route("/webhooks", get(list_webhooks).post(create_webhook))
        .route("/webhooks/{id}", get(get_webhook).delete(delete_webhook))
        .route("/_sim/mutate", post(control_mutate))
        .route("/_sim/truth", get(control_truth))
        .route(
            "/_sim/faults",
            get(control_get_faults).post(control_set_faults),
        )
        .route(
            "/_sim/drift",
            get(control_get_drift).post(control_set_drift),
        )
        .route(
            "/_sim/paging",
            get(control_get_paging).post(control_set_paging),
        )
        .route("/_sim/feed", get(control_get_feed).post(control_set_feed))
        .route(
            "/_sim/rate-limit",
            get(control_get_rate_limit).post(control_drain_rate_limit),
        )
        .route(
            "/_sim/webhooks",
            get(control_get_webhooks).post(control_set_webhooks),
        )
        .route("/_sim/webhooks/deliveries", get(control_deliveries))
        .route(
            "/_sim/webhooks/burst",
            get(control_get_burst).post(control_start_burst),
        )
        .route("/_sim/stats", get(control_stats))
        .route("/_sim/stats/reset", post(control_reset_stats))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(sim)
}

/// What a public request is, for [`Stats`].
#[derive(Clone, Copy)]
enum Kind {
    List,
    Get,
    Transactions,
    Feed,
    FeedGet,
    Write,
    Webhooks,
    Other,
}

impl Kind {
    /// The route template the rate limit counts this request under. Writes share one
    /// bucket and unrouted paths another: the mirror never sends either.
    fn route(self) -> Route {
        match self {
            Kind::List => Route::ListCustomers,
            Kind::Get => Route::GetCustomer,
            Kind::Transactions => Route::CustomerTransactions,
            Kind::Feed => Route::Transactions,
            Kind::FeedGet => Route::Transaction,
            Kind::Write => Route::Writes,
            Kind::Webhooks => Route::Webhooks,
            Kind::Other => Route::Other,
        }
    }
}

#[derive(Default)]
pub(super) struct Counters {
    requests: AtomicU64,
    list: AtomicU64,
    get: AtomicU64,
    transactions: AtomicU64,
    feed: AtomicU64,
    feed_get: AtomicU64,
    writes: AtomicU64,
    webhooks: AtomicU64,
    unauthorized: AtomicU64,
    faults_injected: AtomicU64,
    rate_limited: AtomicU64,
}

impl Counters {
    fn count(&self, kind: Kind) {
        bump(&self.requests);
        match kind {
            Kind::List => bump(&self.list),
            Kind::Get => bump(&self.get),
            Kind::Transactions => bump(&self.transactions),
            Kind::Feed => bump(&self.feed),
            Kind::FeedGet => bump(&self.feed_get),
            Kind::Write => bump(&self.writes),
            Kind::Webhooks => bump(&self.webhooks),
            Kind::Other => {}
        }
    }

    pub(super) fn snapshot(&self) -> Stats {
        self.collect(|c| c.load(Ordering::Relaxed))
    }

    /// Reads and clears the counters.
    pub(super) fn take(&self) -> Stats {
        self.collect(|c| c.swap(0, Ordering::Relaxed))
    }

    fn collect(&self, read: impl Fn(&AtomicU64) -> u64) -> Stats {
        Stats {
            requests: read(&self.requests),
            list: read(&self.list),
            get: read(&self.get),
            transactions: read(&self.transactions),
            feed: read(&self.feed),
            feed_get: read(&self.feed_get),
            writes: read(&self.writes),
            webhooks: read(&self.webhooks),
            unauthorized: read(&self.unauthorized),
            faults_injected: read(&self.faults_injected),
            rate_limited: read(&self.rate_limited),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Unique request ids (`req_` and 16 hex digits): a counter through a bijective mix,
/// salted with the start time so that two runs do not repeat each other's ids.
pub(super) struct RequestIds {
    next: AtomicU64,
    salt: u64,
}

impl RequestIds {
    pub(super) fn new(seed: u64) -> RequestIds {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        RequestIds {
            next: AtomicU64::new(0),
            salt: mix64(seed ^ started),
        }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("req_{:016x}", mix64(n ^ self.salt))
    }
}

/// The rate-limit mode: one fixed window per route, as the live service counts them (per
/// client IP and per route; the simulator has one client). Windows are aligned on a grid
/// from the simulator's start, so a window's reset does not depend on who asked.
pub(super) struct RouteWindows {
    limit: RateLimit,
    epoch: Instant,
    routes: Mutex<HashMap<Route, RouteWindow>>,
}

/// One route's current window and the use of the windows before it.
#[derive(Default)]
struct RouteWindow {
    index: u64,
    used: u32,
    rate_limited: u64,
    /// `(window index, requests counted, 429s)` of every window that saw a request,
    /// oldest first.
    history: Vec<(u64, u32, u64)>,
}

/// Where a route stands after a request was counted (or refused).
pub(super) struct Standing {
    limit: u32,
    remaining: u32,
    /// Seconds until the window resets, rounded up (at least 1).
    reset_secs: u64,
}

impl RouteWindows {
    pub(super) fn new(limit: RateLimit) -> RouteWindows {
        RouteWindows {
            limit,
            epoch: Instant::now(),
            routes: Mutex::new(HashMap::new()),
        }
    }

    /// The route's window, rolled to the current grid slot.
    fn window<'a>(
        &self,
        routes: &'a mut HashMap<Route, RouteWindow>,
        route: Route,
        now: Instant,
    ) -> (&'a mut RouteWindow, Duration) {
        let len = self.limit.window.max(Duration::from_millis(1));
        let elapsed = now.duration_since(self.epoch);
        let index = (elapsed.as_nanos() / len.as_nanos()) as u64;
        let w = routes.entry(route).or_default();
        if w.index != index {
            w.index = index;
            w.used = 0;
        }
        let end = len.saturating_mul(u32::try_from(index + 1).unwrap_or(u32::MAX));
        let left = end.saturating_sub(elapsed);
        (w, left)
    }

    /// Counts a request on `route`. `Err` when the window had no room left: the request
    /// is refused and the 429 counted.
    fn admit(&self, route: Route) -> Result<Standing, Standing> {
        self.spend(route, 1, true)
    }

    /// Spends `n` of `route`'s window as another client on the same IP would.
    pub(super) fn drain(&self, route: Route, n: u32) {
        let _ = self.spend(route, n, false);
    }

    fn spend(&self, route: Route, n: u32, ours: bool) -> Result<Standing, Standing> {
        let mut routes = lock(&self.routes);
        let (w, left) = self.window(&mut routes, route, Instant::now());
        let admitted = w.used < self.limit.requests && n > 0;
        if admitted {
            w.used = w.used.saturating_add(n).min(self.limit.requests);
        } else if ours {
            w.rate_limited += 1;
        }
        let (index, used, refused) = (w.index, w.used, u64::from(!admitted && ours));
        match w.history.last_mut() {
            Some((i, u, r)) if *i == index => {
                *u = used;
                *r += refused;
            }
            _ if admitted || refused > 0 => w.history.push((index, used, refused)),
            _ => {}
        }
        let standing = Standing {
            limit: self.limit.requests,
            remaining: self.limit.requests - w.used,
            reset_secs: ceil_secs(left).max(1),
        };
        if admitted {
            Ok(standing)
        } else {
            Err(standing)
        }
    }

    /// Every route's standing, for `GET /_sim/rate-limit`.
    pub(super) fn report(&self) -> RateLimitReport {
        let mut routes = lock(&self.routes);
        let now = Instant::now();
        let mut out = BTreeMap::new();
        for route in Route::ALL {
            let (w, left) = self.window(&mut routes, route, now);
            out.insert(
                route.template().to_owned(),
                RouteReport {
                    limit: self.limit.requests,
                    remaining: self.limit.requests - w.used,
                    reset_ms: left.as_millis() as u64,
                    rate_limited: w.rate_limited,
                    windows_used: w.history.iter().map(|&(_, used, _)| used).collect(),
                    windows_rate_limited: w.history.iter().map(|&(_, _, r)| r).collect(),
                },
            );
        }
        RateLimitReport {
            window_ms: self.limit.window.as_millis() as u64,
            routes: out,
        }
    }
}

impl Standing {
    /// `X-RateLimit-Limit`, `-Remaining` and `-Reset`, as on every live response.
    fn headers(&self) -> [(HeaderName, HeaderValue); 3] {
        [
            (RATE_LIMIT_LIMIT, self.limit.into()),
            (RATE_LIMIT_REMAINING, self.remaining.into()),
            (RATE_LIMIT_RESET, self.reset_secs.into()),
        ]
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// An error in the live service's envelope.
#[derive(Debug)]
struct SimError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Value,
}

impl SimError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> SimError {
        SimError {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// A 400 about one field of the request.
    fn invalid(field: &str, message: impl Into<String>) -> SimError {
        SimError {
            details: json!({ "field": field }),
            ..SimError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }

    fn bad_body(message: impl Into<String>) -> SimError {
        SimError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn customer_not_found(id: &str) -> SimError {
        SimError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("Customer {id} not found"),
        )
    }

    fn transaction_not_found(id: &str) -> SimError {
        SimError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("Transaction {id} not found"),
        )
    }

    /// What a key without access to a route gets: the same 404 as a path that is no
    /// route.
    fn no_route(path: &str) -> SimError {
        SimError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No route for GET {path}"),
        )
    }

    fn internal() -> SimError {
        SimError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "An unexpected error occurred",
        )
    }

    fn into_reply(self, request_id: &str) -> Reply {
        let body = json!({
            "error": { "code": self.code, "message": self.message, "details": self.details },
            "request_id": request_id,
        });
        Reply {
            status: self.status,
            body: body.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }
}

/// A JSON response before the request id is attached.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    fn new(status: StatusCode, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }

    fn ok(body: Vec<u8>) -> Reply {
        Reply::new(StatusCode::OK, body)
    }

    fn json(value: &impl Serialize) -> Result<Reply, SimError> {
        serde_json::to_vec(value)
            .map(Reply::ok)
            .map_err(|_| SimError::internal())
    }

    fn header(self, name: HeaderName, value: u64) -> Reply {
        self.header_value(name, HeaderValue::from(value))
    }

    fn header_value(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.push((name, value));
        self
    }

    fn headers(mut self, headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>) -> Reply {
        self.headers.extend(headers);
        self
    }

    fn into_response(self, request_id: &str) -> Response {
        let mut res = Response::new(Body::from(self.body));
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert(REQUEST_ID, id);
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        res
    }
}

/// A 429 like the live service's: `Retry-After`, the policy and window headers, and
/// `details: {retry_after_seconds, limit}` (the remaining/reset headers are added by the
/// caller when the rate-limit mode is on).
fn too_many_requests(retry_after: HeaderValue, limit: &RateLimit, request_id: &str) -> Reply {
    let secs = retry_after
        .to_str()
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    SimError {
        details: json!({ "retry_after_seconds": secs, "limit": limit.requests }),
        ..SimError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "Too many requests, please try again later",
        )
    }
    .into_reply(request_id)
    .header_value(header::RETRY_AFTER, retry_after)
    .header(RATE_LIMIT_LIMIT, u64::from(limit.requests))
    .header(RATE_LIMIT_WINDOW, ceil_secs(limit.window))
    .header_value(RATE_LIMIT_POLICY, HeaderValue::from_static("fixed-window"))
}

impl Sim {
    /// Runs a public API request: counts it, checks the key and the rate limit, applies
    /// the faults drawn for it, then `handle`s it.
    async fn public(
        &self,
        headers: &HeaderMap,
        kind: Kind,
        handle: impl FnOnce(&Inner) -> Result<Reply, SimError>,
    ) -> Response {
        let inner = &*self.inner;
        let request_id = inner.request_ids.next();
        inner.counters.count(kind);

        if !inner.authorized(headers) {
            bump(&inner.counters.unauthorized);
            return SimError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Invalid or missing API key",
            )
            .into_reply(&request_id)
            .into_response(&request_id);
        }
        let standing = match inner.limiter.as_ref().map(|l| (l, l.admit(kind.route()))) {
            None => None,
            Some((_, Ok(standing))) => Some(standing),
            Some((limiter, Err(standing))) => {
                bump(&inner.counters.rate_limited);
                return too_many_requests(standing.reset_secs.into(), &limiter.limit, &request_id)
                    .headers(standing.headers())
                    .into_response(&request_id);
            }
        };
        let rate_headers = standing.map(|s| s.headers());

        let plan = inner.faults.plan();
        if plan.is_fault() {
            bump(&inner.counters.faults_injected);
        }
        if let Some(delay) = plan.slow {
            tokio::time::sleep(delay).await;
        }
        if let Some(mut res) = inner.fault_response(&plan, &request_id) {
            for (name, value) in rate_headers.into_iter().flatten() {
                res.headers_mut().entry(name).or_insert(value);
            }
            return res;
        }
        if inner.faults.error_body(|f| match kind {
            Kind::List => f.p_error_body_list,
            Kind::Get => f.p_error_body_get,
            Kind::Transactions | Kind::Feed => f.p_error_body_transactions,
            Kind::FeedGet => f.p_error_body_get,
            Kind::Write | Kind::Webhooks | Kind::Other => 0.0,
        }) {
            bump(&inner.counters.faults_injected);
            return error_body(kind, &request_id)
                .headers(rate_headers.into_iter().flatten())
                .into_response(&request_id);
        }

        let mut reply = handle(inner).unwrap_or_else(|err| err.into_reply(&request_id));
        if reply.status == StatusCode::OK {
            let restyle = inner.faults.restyle();
            if restyle.is_active() {
                reply.body = restyle.body(std::mem::take(&mut reply.body));
            }
        }
        if plan.outcome == Some(Outcome::Truncate) {
            // Body cut in half, Content-Length matching what is sent: valid HTTP, broken JSON.
            reply.body.truncate(reply.body.len() / 2);
        }
        reply
            .headers(rate_headers.into_iter().flatten())
            .into_response(&request_id)
    }
}

impl Inner {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let key = self.api_key.as_bytes();
        let api_key_ok = headers
            .get("x-api-key")
            .is_some_and(|v| v.as_bytes() == key);
        // The auth scheme is case-insensitive (RFC 9110); the key is not.
        let bearer_ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().split_at_checked(7))
            .is_some_and(|(scheme, token)| scheme.eq_ignore_ascii_case(b"bearer ") && token == key);
        api_key_ok || bearer_ok
    }

    /// The response of a fault that replaces the real one (`None`: handle the request).
    fn fault_response(&self, plan: &Plan, request_id: &str) -> Option<Response> {
        let res = match plan.outcome? {
            Outcome::Internal => SimError::internal()
                .into_reply(request_id)
                .into_response(request_id),
            Outcome::BadGatewayHtml => {
                // As a reverse proxy would answer: HTML, and no request id.
                let mut res = Response::new(Body::from(BAD_GATEWAY_HTML));
                *res.status_mut() = StatusCode::BAD_GATEWAY;
                res.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
                res
            }
            Outcome::Unavailable => SimError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "The service is temporarily unavailable",
            )
            .into_reply(request_id)
            .header_value(header::RETRY_AFTER, retry_after(plan))
            .into_response(request_id),
            Outcome::TooManyRequests => {
                let limit = self.limiter.as_ref().map_or(&LIVE_RATE_LIMIT, |l| &l.limit);
                too_many_requests(retry_after(plan), limit, request_id).into_response(request_id)
            }
            Outcome::Close => faults::close_connection(),
            Outcome::Truncate => return None,
        };
        Some(res)
    }
}

/// The `Retry-After` of a 429 or 503 fault, in the style the faults ask for.
fn retry_after(plan: &Plan) -> HeaderValue {
    match plan.retry_after_style {
        RetryAfterStyle::Seconds => plan.retry_after_secs.into(),
        RetryAfterStyle::Zero => HeaderValue::from_static("0"),
        RetryAfterStyle::Negative => HeaderValue::from_static("-1"),
        RetryAfterStyle::Garbage => HeaderValue::from_static("soon"),
        RetryAfterStyle::PastDate => {
            let past = chrono::Utc::now() - chrono::Duration::hours(1);
            HeaderValue::from_str(&past.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
                .expect("an HTTP date is a valid header value")
        }
    }
}

/// A 200 whose body is an error (a failed query behind a proxy that kept the status):
/// shaped like the route's data, so that only the `error` member tells it apart.
fn error_body(kind: Kind, request_id: &str) -> Reply {
    let error = json!({"code": "internal_error", "message": "statement timeout"});
    let body = match kind {
        Kind::List => json!({
            "customers": [],
            "pagination": {"page": 1, "pageSize": DEFAULT_PAGE_SIZE, "totalCount": 0, "totalPages": 0},
            "error": error,
            "request_id": request_id,
        }),
        Kind::Transactions | Kind::Feed => {
            json!({"data": [], "error": {"message": "statement timeout"}})
        }
        _ => json!({"error": error, "request_id": request_id}),
    };
    Reply::ok(body.to_string().into_bytes())
}

async fn list_customers(
    State(sim): State<Sim>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    sim.public(&headers, Kind::List, |inner| {
        let q = parse_list_query(query.as_deref(), inner.max_page_size)?;
        let drift = read(&inner.drift).clone();
        if drift != Drift::default() {
            inner.write_state().drift(&drift, now_ms());
        }
        let paging = read(&inner.paging).clone();
        let draw = inner.shuffles.fetch_add(1, Ordering::Relaxed);
        let seed = mix64(inner.seed ^ draw);
        Ok(Reply::ok(inner.read_state().list_page(&q, &paging, seed)))
    })
    .await
}

async fn get_customer(
    State(sim): State<Sim>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    sim.public(&headers, Kind::Get, |inner| {
        let id = path_id(path)?;
        let state = inner.read_state();
        let customer = state
            .live_customer(&id)
            .ok_or_else(|| SimError::customer_not_found(&id))?;
        Ok(Reply::ok(customer.json().as_bytes().to_vec()))
    })
    .await
}

async fn customer_transactions(
    State(sim): State<Sim>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    sim.public(&headers, Kind::Transactions, |inner| {
        let id = path_id(path)?;
        let state = inner.read_state();
        let customer = state
            .live_customer(&id)
            .ok_or_else(|| SimError::customer_not_found(&id))?;
        Reply::json(&TxList(&customer.txs))
    })
    .await
}

/// `GET /transactions`: one page of the feed; then the feed's drift, if switched on.
async fn feed_list(
    State(sim): State<Sim>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    sim.public(&headers, Kind::Feed, |inner| {
        let switches = read(&inner.feed).clone();
        if switches.disabled {
            return Err(SimError::no_route("/transactions"));
        }
        let q = parse_feed_query(query.as_deref())?;
        let cap = match switches.row_cap {
            0 => FEED_ROW_LIMIT,
            n => (n as usize).min(FEED_ROW_LIMIT),
        };
        let style = inner.faults.get().timestamp_style;
        let body = inner.read_state().feed_page(&q, cap, style);
        if switches.insert_per_page > 0 {
            inner.change(|state| state.feed_drift(switches.insert_per_page, now_ms()));
        }
        Ok(Reply::ok(body))
    })
    .await
}

/// `GET /transactions/{id}`: the transaction (its customer may be deleted), or 404.
async fn feed_get(
    State(sim): State<Sim>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    sim.public(&headers, Kind::FeedGet, |inner| {
        if read(&inner.feed).disabled {
            return Err(SimError::no_route("/transactions/{id}"));
        }
        let id = path_id(path)?;
        let row = inner
            .read_state()
            .feed_transaction(&id)
            .ok_or_else(|| SimError::transaction_not_found(&id))?;
        Ok(Reply::ok(row))
    })
    .await
}

async fn create_customer(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    sim.public(&headers, Kind::Write, |inner| {
        let patch = parse_profile(&body_bytes(body)?, true)?;
        let mut state = inner.write_state();
        let customer = state.create(patch, now_ms());
        Ok(Reply::new(
            StatusCode::CREATED,
            customer.json().as_bytes().to_vec(),
        ))
    })
    .await
}

async fn update_customer(
    State(sim): State<Sim>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    sim.public(&headers, Kind::Write, |inner| {
        let id = path_id(path)?;
        let patch = parse_profile(&body_bytes(body)?, false)?;
        let mut state = inner.write_state();
        let customer = state
            .update(&id, patch, now_ms())
            .ok_or_else(|| SimError::customer_not_found(&id))?;
        Ok(Reply::ok(customer.json().as_bytes().to_vec()))
    })
    .await
}

async fn delete_customer(
    State(sim): State<Sim>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    sim.public(&headers, Kind::Write, |inner| {
        let id = path_id(path)?;
        let mut state = inner.write_state();
        let deleted = state
            .delete(&id)
            .ok_or_else(|| SimError::customer_not_found(&id))?;
        let mut body = Map::new();
        body.insert("deleted".into(), true.into());
        body.insert(state.id_key().into(), state.id_text(deleted).into());
        Reply::json(&body)
    })
    .await
}

/// `POST /webhooks` (see `webhooks.rs` for the assumed shape): 201 with the webhook and
/// its secret, the only answer that shows it.
async fn create_webhook(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    sim.public(&headers, Kind::Webhooks, |inner| {
        let registration = parse_registration(&body_bytes(body)?)
            .map_err(|(field, message)| SimError::invalid(field, message))?;
        let created = inner.webhooks.register(registration, now_ms());
        inner.write_state().set_events(true);
        Ok(Reply::new(
            StatusCode::CREATED,
            created.to_string().into_bytes(),
        ))
    })
    .await
}

/// `GET /webhooks`: a bare array of the webhooks, without their secrets.
async fn list_webhooks(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    sim.public(&headers, Kind::Webhooks, |inner| {
        Reply::json(&inner.webhooks.list())
    })
    .await
}

async fn get_webhook(
    State(sim): State<Sim>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    sim.public(&headers, Kind::Webhooks, |inner| {
        let id = path_id(path)?;
        let hook = inner
            .webhooks
            .get(&id)
            .ok_or_else(|| webhook_not_found(&id))?;
        Reply::json(&hook)
    })
    .await
}

/// `DELETE /webhooks/{id}`: 200 `{"deleted": true, "id": "wh_..."}`; deliveries under
/// way finish.
async fn delete_webhook(
    State(sim): State<Sim>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    sim.public(&headers, Kind::Webhooks, |inner| {
        let id = path_id(path)?;
        if !inner.webhooks.delete(&id) {
            return Err(webhook_not_found(&id));
        }
        inner.write_state().set_events(inner.webhooks.any());
        Reply::json(&json!({"deleted": true, "id": id}))
    })
    .await
}

fn webhook_not_found(id: &str) -> SimError {
    SimError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("Webhook {id} not found"),
    )
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, SimError> {
    path.map(|Path(id)| id)
        .map_err(|rejection| SimError::bad_body(format!("invalid path: {rejection}")))
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, SimError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_request"
        };
        SimError::new(status, code, rejection.body_text())
    })
}

fn positive(field: &str, value: &str) -> Result<u64, SimError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| SimError::invalid(field, format!("{field} must be a positive integer")))
}

/// The feed's query (NOTES.md): paging as the list's but with no maximum `pageSize`
/// (the 1,000-row cap is silent), inclusive date bounds on `created_at` (garbage is a
/// 400), comma-separated enum lists where an unknown value is a 500 `internal_error`, as
/// the live service's failed enum cast gives.
fn parse_feed_query(raw: Option<&str>) -> Result<FeedQuery, SimError> {
    let mut q = FeedQuery {
        page: 1,
        page_size: DEFAULT_PAGE_SIZE as u64,
        ..FeedQuery::default()
    };
    let date = |field: &str, value: &str| {
        parse_instant(value).map(Some).ok_or_else(|| {
            SimError::invalid(
                field,
                format!("{field} must be an ISO 8601 date or timestamp"),
            )
        })
    };
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match &*key {
            "page" => q.page = positive("page", &value)?,
            "pageSize" => q.page_size = positive("pageSize", &value)?,
            "startDate" => q.start_ns = date("startDate", &value)?,
            "endDate" => q.end_ns = date("endDate", &value)?,
            "status" => {
                q.status = enum_list(&value, |v| {
                    TxStatus::ALL.into_iter().find(|s| s.as_str() == v)
                })?
            }
            "currency" => {
                q.currency = enum_list(&value, |v| CURRENCIES.into_iter().find(|c| c.code() == v))?
            }
            "type" => {
                q.kind = enum_list(&value, |v| {
                    TxKind::ALL.into_iter().find(|k| k.as_str() == v)
                })?
            }
            "paymentMethod" => {
                q.method = enum_list(&value, |v| {
                    PAYMENT_METHODS.contains(&v).then(|| v.to_owned())
                })?
            }
            "provider" => {
                q.provider = enum_list(&value, |v| PROVIDERS.contains(&v).then(|| v.to_owned()))?
            }
            "isPos" => {
                q.is_pos = match &*value {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => return Err(SimError::invalid("isPos", "isPos must be true or false")),
                }
            }
            _ => {}
        }
    }
    Ok(q)
}

/// A comma-separated list of enum values (`None` when empty); an unknown one is a 500.
fn enum_list<T>(
    value: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<Vec<T>>, SimError> {
    let items: Vec<T> = value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| parse(v).ok_or_else(SimError::internal))
        .collect::<Result<_, _>>()?;
    Ok((!items.is_empty()).then_some(items))
}

fn parse_list_query(raw: Option<&str>, max_page_size: usize) -> Result<ListQuery, SimError> {
    let mut q = ListQuery {
        search: None,
        kind: TypeFilter::All,
        status: ListStatus::All,
        page: 1,
        page_size: DEFAULT_PAGE_SIZE.min(max_page_size),
    };
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match &*key {
            "search" => q.search = (!value.is_empty()).then(|| value.to_lowercase()),
            "type" => {
                q.kind = match &*value {
                    "all" => TypeFilter::All,
                    "business" => TypeFilter::Business,
                    "individual" => TypeFilter::Individual,
                    _ => {
                        return Err(SimError::invalid(
                            "type",
                            "type must be one of business, individual, all",
                        ));
                    }
                }
            }
            "status" => {
                q.status = match &*value {
                    "all" => ListStatus::All,
                    "active" => ListStatus::Active,
                    "inactive" => ListStatus::Inactive,
                    _ => {
                        return Err(SimError::invalid(
                            "status",
                            "status must be one of active, inactive, all",
                        ));
                    }
                }
            }
            "page" => q.page = positive("page", &value)?,
            "pageSize" => {
                let size = positive("pageSize", &value)?;
                q.page_size = usize::try_from(size)
                    .unwrap_or(usize::MAX)
                    .min(max_page_size);
            }
            _ => {}
        }
    }
    Ok(q)
}

/// Validates a create (`creating`: name required) or update body against the docs' types.
/// Unknown fields are ignored; `null` clears an optional string and empties `metadata`.
fn parse_profile(body: &[u8], creating: bool) -> Result<ProfilePatch, SimError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| SimError::bad_body(format!("request body is not valid JSON: {err}")))?;
    let Value::Object(mut obj) = value else {
        return Err(SimError::bad_body("request body must be a JSON object"));
    };
    let mut optional_string = |field: &str| match obj.remove(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s))),
        Some(_) => Err(SimError::invalid(
            field,
            format!("{field} must be a string or null"),
        )),
    };
    let mut patch = ProfilePatch {
        email: optional_string("email")?,
        phone_number: optional_string("phone_number")?,
        whatsapp_number: optional_string("whatsapp_number")?,
        country: optional_string("country")?,
        city: optional_string("city")?,
        address: optional_string("address")?,
        postal_code: optional_string("postal_code")?,
        ..ProfilePatch::default()
    };
    patch.name = match obj.remove("name") {
        None if creating => return Err(SimError::invalid("name", "name is required")),
        None => None,
        Some(Value::String(name)) if !name.trim().is_empty() => Some(name),
        Some(_) => {
            return Err(SimError::invalid("name", "name must be a non-empty string"));
        }
    };
    patch.is_business = match obj.remove("is_business") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b),
        Some(_) => {
            return Err(SimError::invalid(
                "is_business",
                "is_business must be a boolean",
            ));
        }
    };
    patch.metadata = match obj.remove("metadata") {
        None => None,
        Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(SimError::invalid("metadata", "metadata must be an object")),
    };
    Ok(patch)
}

/// Answers a control request (no key, no faults, not counted).
fn control(sim: &Sim, handle: impl FnOnce() -> Result<Reply, SimError>) -> Response {
    let request_id = sim.inner.request_ids.next();
    handle()
        .unwrap_or_else(|err| err.into_reply(&request_id))
        .into_response(&request_id)
}

fn control_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, SimError> {
    let bytes = body_bytes(body)?;
    let invalid = |err: serde_json::Error| SimError::bad_body(format!("invalid body: {err}"));
    // Serde would also take a struct from a JSON array; only objects are meant.
    match serde_json::from_slice(&bytes).map_err(invalid)? {
        value @ Value::Object(_) => serde_json::from_value(value).map_err(invalid),
        _ => Err(SimError::bad_body("request body must be a JSON object")),
    }
}

/// A control body of switches holding probabilities, refused (naming the field) when
/// `invalid` finds one outside `[0, 1]`.
fn probabilities_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    invalid: impl Fn(&T) -> Option<&'static str>,
) -> Result<T, SimError> {
    let switches: T = control_body(body)?;
    match invalid(&switches) {
        Some(field) => Err(SimError::invalid(
            field,
            format!("{field} must be between 0 and 1"),
        )),
        None => Ok(switches),
    }
}

async fn control_mutate(State(sim): State<Sim>, body: Result<Bytes, BytesRejection>) -> Response {
    control(&sim, || {
        let m: Mutation = control_body(body)?;
        let counts = [
            m.create,
            m.update,
            m.delete,
            m.restore,
            m.add_tx,
            m.settle,
            m.delete_tx,
            m.delete_newest_tx,
        ];
        if counts.iter().any(|&n| n > MAX_MUTATION_COUNT) {
            return Err(SimError::bad_body(format!(
                "each count must be at most {MAX_MUTATION_COUNT}"
            )));
        }
        Reply::json(&sim.mutate(&m))
    })
}

async fn control_truth(State(sim): State<Sim>) -> Response {
    control(&sim, || Reply::json(&sim.truth()))
}

async fn control_get_faults(State(sim): State<Sim>) -> Response {
    control(&sim, || Reply::json(&sim.faults()))
}

async fn control_set_faults(
    State(sim): State<Sim>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    control(&sim, || {
        let faults: Faults = probabilities_body(body, Faults::invalid_probability)?;
        sim.set_faults(faults);
        Reply::json(&sim.faults())
    })
}

async fn control_get_paging(State(sim): State<Sim>) -> Response {
    control(&sim, || Reply::json(&sim.paging()))
}

async fn control_set_paging(
    State(sim): State<Sim>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    control(&sim, || {
        sim.set_paging(control_body(body)?);
        Reply::json(&sim.paging())
    })
}

async fn control_get_feed(State(sim): State<Sim>) -> Response {
    control(&sim, || Reply::json(&sim.feed()))
}

async fn control_set_feed(State(sim): State<Sim>, body: Result<Bytes, BytesRejection>) -> Response {
    control(&sim, || {
        let feed: Feed = control_body(body)?;
        sim.set_feed(feed);
        Reply::json(&sim.feed())
    })
}

async fn control_get_drift(State(sim): State<Sim>) -> Response {
    control(&sim, || Reply::json(&sim.drift()))
}

async fn control_set_drift(
    State(sim): State<Sim>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    control(&sim, || {
        sim.set_drift(control_body(body)?);
        Reply::json(&sim.drift())
    })
}

async fn control_get_rate_limit(State(sim): State<Sim>) -> Response {
    control(&sim, || {
        let report = sim.rate_limit().ok_or_else(rate_limit_off)?;
        Reply::json(&report)
    })
}

/// `{"route": "GET /customers/{id}", "consume": N}`: another client on the same IP
/// spends `N` of the route's current window.
async fn control_drain_rate_limit(
    State(sim): State<Sim>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    control(&sim, || {
        let drain: Drain = control_body(body)?;
        let route = Route::parse(&drain.route).ok_or_else(|| {
            SimError::invalid("route", format!("unknown route template `{}`", drain.route))
        })?;
        if !sim.drain_rate_limit(route, drain.consume) {
            return Err(rate_limit_off());
        }
        Reply::json(&sim.rate_limit())
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Drain {
    route: String,
    consume: u32,
}

fn rate_limit_off() -> SimError {
    SimError::new(
        StatusCode::CONFLICT,
        "rate_limit_off",
        "the rate-limit mode is off (start the simulator with --rate-limit)",
    )
}

async fn control_get_webhooks(State(sim): State<Sim>) -> Response {
    control(&sim, || Reply::json(&sim.webhook_faults()))
}

async fn control_set_webhooks(
    State(sim): State<Sim>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    control(&sim, || {
        let switches: WebhookFaults = probabilities_body(body, WebhookFaults::invalid_probability)?;
        sim.set_webhook_faults(switches);
        Reply::json(&sim.webhook_faults())
    })
}

async fn control_deliveries(State(sim): State<Sim>) -> Response {
    control(&sim, || Reply::json(&sim.webhook_report()))
}

async fn control_get_burst(State(sim): State<Sim>) -> Response {
    control(&sim, || Reply::json(&sim.burst()))
}

/// `{"count": N, "per_second": R}`: 200 with the burst's report once started, 409 while
/// another runs.
async fn control_start_burst(
    State(sim): State<Sim>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    control(&sim, || {
        let burst: Burst = control_body(body)?;
        if burst.count > MAX_MUTATION_COUNT {
            let msg = format!("count must be at most {MAX_MUTATION_COUNT}");
            return Err(SimError::invalid("count", msg));
        }
        if !(burst.per_second.is_finite() && burst.per_second > 0.0) {
            let msg = "per_second must be a positive number";
            return Err(SimError::invalid("per_second", msg));
        }
        if !sim.start_burst(&burst) {
            let msg = "a burst is already running (GET /_sim/webhooks/burst)";
            return Err(SimError::new(StatusCode::CONFLICT, "burst_running", msg));
        }
        Reply::json(&sim.burst())
    })
}

async fn control_stats(State(sim): State<Sim>) -> Response {
    control(&sim, || Reply::json(&sim.stats()))
}

/// Clears the counters and returns what they held.
async fn control_reset_stats(State(sim): State<Sim>) -> Response {
    control(&sim, || Reply::json(&sim.inner.counters.take()))
}

/// 404 for paths that are not routes. Counted as public requests unless under `/_sim/`.
async fn unknown_route(State(sim): State<Sim>, method: Method, uri: Uri) -> Response {
    unrouted(
        &sim,
        &uri,
        SimError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No route for {method} {}", uri.path()),
        ),
    )
}

async fn method_not_allowed(State(sim): State<Sim>, method: Method, uri: Uri) -> Response {
    unrouted(
        &sim,
        &uri,
        SimError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {}", uri.path()),
        ),
    )
}

fn unrouted(sim: &Sim, uri: &Uri, err: SimError) -> Response {
    if !uri.path().starts_with("/_sim/") {
        sim.inner.counters.count(Kind::Other);
    }
    let request_id = sim.inner.request_ids.next();
    err.into_reply(&request_id).into_response(&request_id)
}
