//! `lomi-sync sim`: a local simulator of the lomi. Customers API.
//!
//! No test, demo or benchmark of this project may reach the real service, so everything
//! runs against this simulator. It follows the vendor docs (`customers-api.en.txt`) and can
//! also play the live service's differences (`NOTES.md`): the `customer_id` key, list
//! items without metadata/environment, the error envelope and the rate limit.
//!
//! The crate is self-contained: it depends on external crates only, never on the rest of
//! lomi-sync, so that it can be used (and tested) as an independent stand-in for the API.
//!
//! # Public API (authenticated with `X-API-KEY: <key>` or `Authorization: Bearer <key>`)
//! - `POST /customers`: create; 201 with the customer.
//! - `GET /customers?search=&type=&status=&page=&pageSize=`: newest first, offset paging.
//! - `GET /customers/{id}`, `PATCH /customers/{id}` (200 with the customer).
//! - `DELETE /customers/{id}`: soft delete; 200 `{"deleted":true,"<id key>":"cus_..."}`.
//! - `GET /customers/{id}/transactions`: bare array, newest first.
//! - `GET /transactions?page=&pageSize=&startDate=&endDate=&status=&currency=&paymentMethod=&type=&provider=&isPos=`:
//!   the org-wide feed (NOTES.md), a bare array of richer rows, newest first, offset
//!   paging, at most 1,000 rows served silently; transactions of deleted customers too.
//! - `GET /transactions/{id}`: one feed row; 404 once the transaction was removed.
//! - `POST /webhooks`, `GET /webhooks`, `GET|DELETE /webhooks/{id}`: webhook endpoints
//!   (the answer's shape is our assumption; see `webhooks.rs`). Payment and refund
//!   events are then delivered, signed, to the endpoints on loopback.
//!
//! Errors use the live envelope
//! `{"error":{"code","message","details"},"request_id"}` with the same id in
//! `X-Request-Id` (which successful responses carry too).
//!
//! # Control surface (no key, never subject to faults, drift or rate limits)
//! - `POST /_sim/mutate` ([`Mutation`] -> [`MutationReport`]), `GET /_sim/truth`,
//! - `GET|POST /_sim/faults` ([`Faults`]), `GET|POST /_sim/drift` ([`Drift`]),
//!   `GET|POST /_sim/paging` ([`Paging`]), `GET|POST /_sim/feed` ([`Feed`]),
//! - `GET /_sim/stats` ([`Stats`]), `POST /_sim/stats/reset` (returns the counts it cleared).
//! - `GET|POST /_sim/webhooks` ([`WebhookFaults`]: schedule and faults of deliveries),
//!   `GET /_sim/webhooks/deliveries` ([`WebhookReport`]: counts and the attempts' log),
//!   `POST /_sim/webhooks/burst` ([`Burst`]: new transactions at a steady rate, 409 while
//!   one runs), `GET /_sim/webhooks/burst` ([`BurstReport`]).
//! - `GET /_sim/rate-limit` ([`RateLimitReport`]), `POST /_sim/rate-limit`
//!   `{"route": "GET /customers/{id}", "consume": N}`: another client on the same IP spends
//!   `N` of that route's window (409 when the rate-limit mode is off).

mod args;
mod data;
mod delivery;
mod faults;
mod feed;
mod model;
mod restyle;
mod rng;
mod search;
mod server;
mod state;
mod webhooks;

use std::future::Future;
use std::io::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub use args::SimArgs;
pub use restyle::{FieldOverride, TimestampStyle};
pub use webhooks::{Burst, BurstReport, DeliveryRecord, LOG_LIMIT, WebhookFaults, WebhookReport};

use faults::FaultInjector;
use server::{Counters, RequestIds, RouteWindows};
use state::State;
use webhooks::Webhooks;

/// The JSON key that carries a customer's id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IdField {
    /// `"id"`, as the vendor docs show it.
    #[default]
    #[value(name = "id")]
    Id,
    /// `"customer_id"`, as the live service sends it.
    #[value(name = "customer_id")]
    CustomerId,
}

impl IdField {
    /// The JSON key itself.
    pub fn key(self) -> &'static str {
        match self {
            IdField::Id => "id",
            IdField::CustomerId => "customer_id",
        }
    }
}

/// How customer ids look. Clients must treat ids as opaque strings; the two forms let
/// tests prove they do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IdFormat {
    /// `cus_` and 16 hex digits, as the vendor docs show them.
    #[default]
    Prefixed,
    /// A UUID (`8-4-4-4-12` hex digits), as the live service may send them.
    Uuid,
}

/// Fault probabilities, applied to each public API request independently.
///
/// `p_slow` is drawn on its own (a slow request then answers normally or with another
/// fault); the others are mutually exclusive outcomes of one draw, so each happens with
/// exactly its probability as long as they add up to at most 1 (past that, the ones later
/// in the list get the remainder). 500, 502, 503, 429 and close happen before the request
/// is handled (it has no effect); truncate cuts the body of a request that was handled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// 500 `internal_error` envelope.
    pub p500: f64,
    /// 502 with an HTML body, as a proxy in front of the service would send.
    pub p502_html: f64,
    /// 503 `service_unavailable` envelope with `Retry-After`.
    pub p503: f64,
    /// 429 `rate_limit_exceeded` with `Retry-After` and the rate-limit headers.
    pub p429: f64,
    /// `Retry-After` seconds of the 429 and 503 faults (default 1).
    pub retry_after_secs: u64,
    /// Wait `slow_ms` before answering.
    pub p_slow: f64,
    /// Delay of a slow response (default 1000).
    pub slow_ms: u64,
    /// Close the connection without any response.
    pub p_close: f64,
    /// Send a 200 whose JSON body is cut in half (with a matching Content-Length).
    pub p_truncate: f64,
    /// 200 with an error body instead of the list page (`{"customers":[],
    /// "pagination":{..0..},"error":{..}}`), as a proxy or a failed query can send.
    pub p_error_body_list: f64,
    /// 200 `{"error":{..}}` instead of the customer.
    pub p_error_body_get: f64,
    /// 200 `{"data":[],"error":{"message":"statement timeout"}}` instead of the list.
    pub p_error_body_transactions: f64,
    /// How the `Retry-After` of the 429 and 503 faults is written.
    pub retry_after_style: RetryAfterStyle,
    /// How timestamps are written (the truth follows).
    pub timestamp_style: TimestampStyle,
    /// Fields served with another value (or type) than the data's, for the records
    /// named (the truth follows): `[{"id": "cus_...", "field": "postal_code", "value": 75001}]`.
    pub mistyped: Vec<FieldOverride>,
}

/// The `Retry-After` of the 429 and 503 faults: a hint, or one a client must not take
/// at its word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RetryAfterStyle {
    /// `retry_after_secs`, as a number of seconds.
    #[default]
    Seconds,
    /// `0`.
    Zero,
    /// `-1`.
    Negative,
    /// `soon`: not a number nor a date.
    Garbage,
    /// An HTTP date an hour in the past.
    PastDate,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            p500: 0.0,
            p502_html: 0.0,
            p503: 0.0,
            p429: 0.0,
            retry_after_secs: 1,
            p_slow: 0.0,
            slow_ms: 1000,
            p_close: 0.0,
            p_truncate: 0.0,
            p_error_body_list: 0.0,
            p_error_body_get: 0.0,
            p_error_body_transactions: 0.0,
            retry_after_style: RetryAfterStyle::Seconds,
            timestamp_style: TimestampStyle::ZMillis,
            mistyped: Vec::new(),
        }
    }
}

impl Faults {
    fn probabilities(&self) -> [(&'static str, f64); 10] {
        [
            ("p_error_body_list", self.p_error_body_list),
            ("p_error_body_get", self.p_error_body_get),
            ("p_error_body_transactions", self.p_error_body_transactions),
            ("p500", self.p500),
            ("p502_html", self.p502_html),
            ("p503", self.p503),
            ("p429", self.p429),
            ("p_slow", self.p_slow),
            ("p_close", self.p_close),
            ("p_truncate", self.p_truncate),
        ]
    }

    /// The name of the first probability outside `[0, 1]`, if any.
    fn invalid_probability(&self) -> Option<&'static str> {
        self.probabilities()
            .into_iter()
            .find(|(_, p)| !(0.0..=1.0).contains(p))
            .map(|(name, _)| name)
    }

    /// Probabilities clamped into `[0, 1]` (NaN counts as 0).
    fn clamped(mut self) -> Faults {
        for p in [
            &mut self.p500,
            &mut self.p502_html,
            &mut self.p503,
            &mut self.p429,
            &mut self.p_slow,
            &mut self.p_close,
            &mut self.p_truncate,
            &mut self.p_error_body_list,
            &mut self.p_error_body_get,
            &mut self.p_error_body_transactions,
        ] {
            *p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        }
        self
    }

    fn any(&self) -> bool {
        self.probabilities().iter().any(|(_, p)| *p > 0.0)
    }
}

/// Customers inserted (at the top of the list) and deleted each time a list page is
/// served, before the page is computed: a walk over the pages really sees them shift.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Drift {
    pub insert_per_page: u32,
    pub delete_per_page: u32,
}

/// Ways the list's paging can misbehave, as real services' paging does (see NOTES.md:
/// no tie-breaker on `created_at`, totals read from one row, a silent row cap). All off by
/// default; each models one family of bug reports from other sync tools.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Paging {
    /// Customers sharing a `created_at` come back in a different order on every request,
    /// as from an `ORDER BY created_at` with no tie-breaker: an offset walk over them can
    /// skip some and repeat others.
    pub shuffle_ties: bool,
    /// Added to every page's `totalCount` (a negative value under-reports).
    pub total_count_delta: i64,
    /// Added to every page's `totalPages` after it is computed from the (lied) count, so
    /// the two can disagree.
    pub total_pages_delta: i64,
    /// At most this many rows per page (0: no cap), while the offset still uses the
    /// requested `pageSize`: the rows between are never served on that page size.
    pub row_cap: u32,
}

/// Switches of the transactions feed (`/_sim/feed`, and `--feed-*` flags).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Feed {
    /// Both feed routes answer 404 with the live envelope, as for a key without access
    /// to them.
    pub disabled: bool,
    /// At most this many rows per feed page (0: only the service's 1,000), while the
    /// offset still uses the requested `pageSize`: a client that takes a short page's
    /// length for the page size skips the rows between.
    pub row_cap: u32,
    /// New transactions (as `add_tx` makes them) created after each feed page is
    /// served: a walk over the feed's pages sees them shift.
    pub insert_per_page: u32,
}

/// A fixed-window rate limit like the live service's (5,000 requests per 15 minutes), per
/// route template ([`Route`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub window: Duration,
}

/// A route template, the unit the live service counts its rate limit in. New routes
/// (e.g. `GET /transactions`) get a variant here and in [`Route::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    ListCustomers,
    GetCustomer,
    CustomerTransactions,
    /// `GET /transactions`, the org-wide feed.
    Transactions,
    /// `GET /transactions/{id}`.
    Transaction,
    /// `POST /customers`, `PATCH` and `DELETE /customers/{id}`.
    Writes,
    /// `POST /webhooks`, `GET /webhooks`, `GET` and `DELETE /webhooks/{id}`.
    Webhooks,
    /// Paths that are no route (answered 404).
    Other,
}

impl Route {
    pub const ALL: [Route; 8] = [
        Route::ListCustomers,
        Route::GetCustomer,
        Route::CustomerTransactions,
        Route::Transactions,
        Route::Transaction,
        Route::Writes,
        Route::Webhooks,
        Route::Other,
    ];

    pub fn template(self) -> &'static str {
        match self {
            Route::ListCustomers => "GET /customers",
            Route::GetCustomer => "GET /customers/{id}",
            Route::CustomerTransactions => "GET /customers/{id}/transactions",
            Route::Transactions => "GET /transactions",
            Route::Transaction => "GET /transactions/{id}",
            Route::Writes => "writes",
            Route::Webhooks => "webhooks",
            Route::Other => "other",
        }
    }

    pub fn parse(template: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.template() == template)
    }
}

/// Where each route's rate-limit window stands (`GET /_sim/rate-limit`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RateLimitReport {
    pub window_ms: u64,
    /// By route template.
    pub routes: std::collections::BTreeMap<String, RouteReport>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RouteReport {
    pub limit: u32,
    pub remaining: u32,
    pub reset_ms: u64,
    /// Requests answered 429 on this route.
    pub rate_limited: u64,
    /// Requests counted in each window that saw any (drains included), oldest first.
    pub windows_used: Vec<u32>,
    /// 429s answered in each of those windows.
    pub windows_rate_limited: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub customers: usize,
    pub seed: u64,
    pub api_key: String,
    /// Mean number of transactions per customer (about 35% of customers never pay).
    pub tx_per_customer: f64,
    /// Larger `pageSize` values are capped to this.
    pub max_page_size: usize,
    pub id_field: IdField,
    pub id_format: IdFormat,
    /// List items carry `metadata: null` and no `environment`, and a page past the end
    /// reports `totalCount: 0`, as on the live service.
    pub live_quirks: bool,
    /// Share of the generated customers that share the `created_at` of the one before
    /// them (a bulk import); 1.0 gives every customer the same `created_at`.
    pub bulk_import_share: f64,
    pub faults: Faults,
    pub drift: Drift,
    pub paging: Paging,
    pub feed: Feed,
    pub rate_limit: Option<RateLimit>,
    /// Webhook deliveries' schedule and faults.
    pub webhooks: WebhookFaults,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            customers: 1000,
            seed: 42,
            api_key: "test_key".to_owned(),
            tx_per_customer: 10.0,
            max_page_size: 200,
            id_field: IdField::Id,
            id_format: IdFormat::Prefixed,
            live_quirks: false,
            bulk_import_share: 0.01,
            faults: Faults::default(),
            drift: Drift::default(),
            paging: Paging::default(),
            feed: Feed::default(),
            rate_limit: None,
            webhooks: WebhookFaults::default(),
        }
    }
}

/// Changes to apply, in this order, each "up to" the number given (there may be fewer
/// candidates). The sets are disjoint: updates and deletes touch customers that existed
/// before the call, restores bring back customers deleted before the call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mutation {
    /// New customers, without transactions.
    pub create: u32,
    /// Change some of name/email/city/metadata and bump `updated_at`.
    pub update: u32,
    /// Soft deletes.
    pub delete: u32,
    /// Undeletes (the customer comes back at its place in the list, `updated_at` bumped).
    pub restore: u32,
    /// New transactions (completed or pending, some in USD/EUR with decimals) for
    /// customers picked by payer class; never-payers are never picked. Does not change
    /// the customer's `updated_at`, as on the live service.
    pub add_tx: u32,
    /// Pending -> completed/failed/expired; once none is pending, completed -> refunded.
    pub settle: u32,
    /// Transactions removed from their customer's list.
    pub delete_tx: u32,
    /// The newest transactions of the feed removed (payments deleted soon after they were
    /// made): the next feed pass's first page no longer reaches the mirror's newest rows.
    pub delete_newest_tx: u32,
}

/// What a [`Mutation`] did: customer ids for the customer changes, transaction ids for
/// the transaction changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
    pub restored: Vec<String>,
    pub tx_added: Vec<String>,
    pub tx_changed: Vec<String>,
    pub tx_deleted: Vec<String>,
}

/// Counts of public API requests (the control surface is not counted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Every request, whatever its kind or outcome.
    pub requests: u64,
    /// `GET /customers`.
    pub list: u64,
    /// `GET /customers/{id}`.
    pub get: u64,
    /// `GET /customers/{id}/transactions`.
    pub transactions: u64,
    /// `GET /transactions` (the feed).
    pub feed: u64,
    /// `GET /transactions/{id}`.
    pub feed_get: u64,
    /// `POST`, `PATCH` and `DELETE` of customers.
    pub writes: u64,
    /// The webhook registration routes (`/webhooks`, `/webhooks/{id}`).
    pub webhooks: u64,
    /// Answered 401.
    pub unauthorized: u64,
    /// Hit by a fault (slow responses included).
    pub faults_injected: u64,
    /// Answered 429 by the rate-limit mode.
    pub rate_limited: u64,
}

/// A running simulator: cheap to clone, all clones share the same data.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

struct Inner {
    api_key: String,
    max_page_size: usize,
    state: RwLock<State>,
    faults: FaultInjector,
    drift: RwLock<Drift>,
    paging: RwLock<Paging>,
    feed: RwLock<Feed>,
    /// Draws of [`Paging::shuffle_ties`]: one per list request, so each request sees
    /// another order while the whole run stays deterministic from the seed.
    shuffles: std::sync::atomic::AtomicU64,
    seed: u64,
    limiter: Option<RouteWindows>,
    counters: Counters,
    request_ids: RequestIds,
    webhooks: Arc<Webhooks>,
}

impl Sim {
    /// Generates the data set (deterministic from `opts.seed`). Takes about a second per
    /// 100,000 customers in a release build: call it off the async executor for big sets.
    pub fn new(opts: SimOptions) -> Sim {
        let state = State::generate(&opts);
        let seed = opts.seed;
        Sim {
            inner: Arc::new(Inner {
                api_key: opts.api_key,
                max_page_size: opts.max_page_size.max(1),
                state: RwLock::new(state),
                faults: FaultInjector::new(opts.faults.clamped(), seed),
                drift: RwLock::new(opts.drift),
                paging: RwLock::new(opts.paging),
                feed: RwLock::new(opts.feed),
                shuffles: std::sync::atomic::AtomicU64::new(0),
                seed,
                limiter: opts.rate_limit.map(RouteWindows::new),
                counters: Counters::default(),
                request_ids: RequestIds::new(seed),
                webhooks: Arc::new(Webhooks::new(seed, opts.webhooks)),
            }),
        }
    }

    /// The HTTP routes (public API and control surface).
    pub fn router(&self) -> axum::Router {
        server::router(self.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then finishes in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        server::serve(self, listener, shutdown).await
    }

    /// The ground truth, as `GET /_sim/truth` returns it.
    pub fn truth(&self) -> serde_json::Value {
        let text = self.inner.read_state().truth_json();
        let mut truth = serde_json::from_str(&text).expect("the truth is rendered as valid JSON");
        let restyle = self.inner.faults.restyle();
        if restyle.is_active() {
            restyle.truth(&mut truth);
        }
        truth
    }

    /// Applies `m`; the payment and refund events it makes are delivered to the
    /// registered webhooks.
    pub fn mutate(&self, m: &Mutation) -> MutationReport {
        self.inner.change(|state| state.mutate(m, now_ms()))
    }

    /// Replaces the webhook deliveries' schedule and faults (probabilities clamped into
    /// `[0, 1]`); deliveries under way see the change at their next step.
    pub fn set_webhook_faults(&self, f: WebhookFaults) {
        self.inner.webhooks.set_switches(f.clamped());
    }

    pub fn webhook_faults(&self) -> WebhookFaults {
        self.inner.webhooks.switches()
    }

    /// Counts of webhook deliveries and the log of their attempts.
    pub fn webhook_report(&self) -> WebhookReport {
        self.inner.webhooks.report()
    }

    /// Starts a burst of new transactions (see [`Burst`]) on the current runtime;
    /// `false` while another one runs.
    pub fn start_burst(&self, b: &Burst) -> bool {
        {
            let mut report = lock(&self.inner.webhooks.burst);
            if report.running {
                return false;
            }
            *report = BurstReport {
                running: true,
                count: b.count,
                per_second: b.per_second,
                ..BurstReport::default()
            };
        }
        tokio::spawn(delivery::run_burst(self.clone(), b.count, b.per_second));
        true
    }

    pub fn burst(&self) -> BurstReport {
        lock(&self.inner.webhooks.burst).clone()
    }

    /// Replaces the fault probabilities (clamped into `[0, 1]`).
    pub fn set_faults(&self, f: Faults) {
        self.inner.faults.set(f.clamped());
    }

    pub fn faults(&self) -> Faults {
        self.inner.faults.get()
    }

    pub fn set_drift(&self, d: Drift) {
        *write(&self.inner.drift) = d;
    }

    pub fn drift(&self) -> Drift {
        read(&self.inner.drift).clone()
    }

    pub fn set_paging(&self, p: Paging) {
        *write(&self.inner.paging) = p;
    }

    pub fn paging(&self) -> Paging {
        read(&self.inner.paging).clone()
    }

    pub fn set_feed(&self, f: Feed) {
        *write(&self.inner.feed) = f;
    }

    pub fn feed(&self) -> Feed {
        read(&self.inner.feed).clone()
    }

    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// Each route's window, `None` when the rate-limit mode is off.
    pub fn rate_limit(&self) -> Option<RateLimitReport> {
        self.inner.limiter.as_ref().map(RouteWindows::report)
    }

    /// Spends `n` of `route`'s current window as another client on the same IP would;
    /// `false` when the rate-limit mode is off.
    pub fn drain_rate_limit(&self, route: Route, n: u32) -> bool {
        match &self.inner.limiter {
            Some(l) => {
                l.drain(route, n);
                true
            }
            None => false,
        }
    }

    pub fn reset_stats(&self) {
        self.inner.counters.take();
    }
}

impl Inner {
    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        read(&self.state)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        write(&self.state)
    }

    /// Changes the data set with `f`, then schedules the webhook deliveries of the
    /// events it made, before the lock is released (so in the order they happened).
    fn change<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.write_state();
        let out = f(&mut state);
        let events = state.take_events();
        if !events.is_empty() {
            self.webhooks.dispatch(events, &self.faults.restyle());
        }
        out
    }
}

/// Binds `args.bind:args.port`, generates the data, prints
/// `lomi-sync sim listening on http://ADDR` (one line, flushed: scripts wait for it) and
/// serves until `shutdown` completes.
pub async fn run(
    args: SimArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Bind first so that a busy port fails at once, not after generating the data.
    let listener = TcpListener::bind((args.bind, args.port)).await?;
    let addr = listener.local_addr()?;
    let opts = args.options();
    let started = Instant::now();
    let sim = tokio::task::spawn_blocking(move || Sim::new(opts))
        .await
        .map_err(std::io::Error::other)?;
    {
        let state = sim.inner.read_state();
        tracing::info!(
            customers = state.live_count(),
            transactions = state.transaction_count(),
            feed_transactions = state.feed_len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "simulated data generated"
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "lomi-sync sim listening on http://{addr}")?;
    out.flush()?;
    drop(out);
    sim.serve(listener, shutdown).await
}

/// Wall-clock milliseconds since the Unix epoch; changes made at run time are stamped
/// with the real clock.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// A panic while a lock is held cannot leave the data half-changed in a way that matters
// more than stopping the simulator would, so poisoned locks are simply used on.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
