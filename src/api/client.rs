use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::budget::{Observation, Refusal, Route, RouteBudgets, RouteReport, Ticket};
use super::limiter::{RateLimiter, RateLimits};
use super::model::{
    BodyError, Customer, CustomerPage, RegisteredWebhook, ShapeError, Transaction, TransactionList,
};
use crate::config::{ApiKey, ApiSettings, ConfigError};
use crate::metrics::{Metrics, RequestStatus};

/// Everything a request can end in, other than success. Messages name the endpoint
/// and the request id the service gave, so a support ticket can quote them.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// HTTP 401 (or 403 outside the feed): the key was refused. Fatal: no retry helps.
    #[error(
        "the API key was rejected (HTTP 401 on {endpoint}{rid}); check LOMI_API_KEY or api.api_key_file, \
         and that the key matches api.base_url (live or sandbox)",
        rid = fmt_rid(request_id)
    )]
    Unauthorized {
        /// The route and path asked, for the message.
        endpoint: String,
        /// The request id the service gave (body or `X-Request-Id`), if any.
        request_id: Option<String>,
    },
    /// Any other HTTP failure status, after the retries it deserved.
    #[error("{endpoint} answered HTTP {status}{rid}: {message}", rid = fmt_rid(request_id))]
    Status {
        /// The route and path asked, for the message.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The request id the service gave, if any.
        request_id: Option<String>,
        /// The error envelope's `code: message`, or the start of the body.
        message: String,
    },
    /// A success status with a body that could not be used (not JSON, wrong shape, too large).
    #[error("{endpoint} sent an unusable response (HTTP {status}{rid}): {reason}", rid = fmt_rid(request_id))]
    BadResponse {
        /// The route and path asked, for the message.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The request id the service gave, if any.
        request_id: Option<String>,
        /// What was wrong with the body.
        reason: String,
    },
    /// A success status whose body carries an `error` envelope: a failed request, never an
    /// empty result (see [`super::model::BodyError::ErrorBody`]).
    #[error(
        "{endpoint} answered HTTP {status} with an error body{rid}: {message}; its data was not used",
        rid = fmt_rid(request_id)
    )]
    ErrorBody {
        /// The route and path asked, for the message.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The request id the service gave, if any.
        request_id: Option<String>,
        /// The envelope's message.
        message: String,
    },
    /// No usable response: connection, TLS or timeout failure (after the retries it deserved),
    /// or a client that could not be built (a key that cannot go in a header).
    #[error("{endpoint} could not be reached: {reason}")]
    Transport {
        /// The route and path asked (or the base URL), for the message.
        endpoint: String,
        /// What failed, as the HTTP library or the check said it.
        reason: String,
    },
    /// A 429 or 5xx asked (`Retry-After`) for a longer wait than `api.max_retry_after`.
    #[error(
        "{endpoint} is rate limited and asks to wait {wait_secs} s, longer than api.max_retry_after allows{rid}; \
         raise api.max_retry_after or lower api.requests_per_second",
        rid = fmt_rid(request_id)
    )]
    RetryAfterTooLong {
        /// The route and path asked, for the message.
        endpoint: String,
        /// The wait asked (`Retry-After`), in whole seconds.
        wait_secs: u64,
        /// The request id the service gave, if any.
        request_id: Option<String>,
    },
    /// A request that is not idempotent (`POST /webhooks`) failed
    /// after the service may have handled it (no answer after sending, a cut or
    /// unusable answer, a 5xx): it was not sent again, since a second registration
    /// would make a second webhook for the URL, with only the second's secret saved.
    #[error(
        "{cause}; the service may have handled the request all the same, so it was not sent again: \
         run `lomi-sync webhooks list` and delete any duplicate webhook before registering again"
    )]
    Unconfirmed {
        /// The failure, as a read would have reported it.
        cause: Box<ApiError>,
    },
    /// The cancel token fired (shutdown) before the request completed.
    #[error("stopped before {endpoint} completed (shutdown requested)")]
    Cancelled {
        /// The route and path asked, for the message.
        endpoint: String,
    },
    /// Only with [`ClientOptions::defer_after`] set (the daemon's runs): the route must
    /// wait longer than that for its rate-limit window, so the run stops instead.
    #[error(
        "{route} must wait {wait_secs} s for its rate-limit window (until {until}); \
         the run stops at its checkpoint and a scheduled run after that resumes it",
        route = route.template(),
        until = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )]
    Deferred {
        /// The route that must wait.
        route: Route,
        /// When the route may go on (UTC, wall clock).
        until: chrono::DateTime<chrono::Utc>,
        /// How long from now that is, in whole seconds.
        wait_secs: u64,
    },
    /// The org-wide feed (`GET /transactions`, `GET /transactions/{id}`) is not open to
    /// this key: HTTP 403, 404 or 405, as the live service answers a key without access
    /// (or a service without the route). Not a failure of the run: the caller reads
    /// transactions per customer instead. A 404 of `GET /transactions/{id}` is not this
    /// but `None` (that transaction is gone); only the list tells the feed is closed.
    #[error(
        "{endpoint} is not open to this key (HTTP {status}{rid}); transactions can only be read per customer",
        rid = fmt_rid(request_id)
    )]
    NoAccess {
        /// The route and path asked, for the message.
        endpoint: String,
        /// The HTTP status: 403, 404 or 405.
        status: u16,
        /// The request id the service gave, if any.
        request_id: Option<String>,
    },
}

fn fmt_rid(rid: &Option<String>) -> String {
    rid.as_ref()
        .map(|r| format!(", request id {r}"))
        .unwrap_or_default()
}

impl ApiError {
    /// True when no retry, now or at the next tick, can fix it.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ApiError::Unauthorized { .. })
    }
    /// True when the request stopped because of shutdown, not a failure.
    pub fn is_cancelled(&self) -> bool {
        match self {
            ApiError::Unconfirmed { cause } => cause.is_cancelled(),
            e => matches!(e, ApiError::Cancelled { .. }),
        }
    }
    /// The feed is closed to this key ([`ApiError::NoAccess`]): fall back, do not fail.
    pub fn is_no_access(&self) -> bool {
        matches!(self, ApiError::NoAccess { .. })
    }
}

/// One request to the org-wide feed (`GET /transactions`; NOTES.md, "The org-wide
/// transactions feed"). `start_date` and `end_date` bound `created_at`, both inclusive;
/// they are sent as given, so pass the mirror's timestamps
/// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, [`super::model::format_timestamp`]) taken from rows the
/// feed returned, never from a clock. An empty list filter (or `None`) filters nothing;
/// values go out comma-separated, and one the service does not know may give a 500.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedQuery {
    /// 1-based; offset paging, `offset = (page - 1) * page_size`.
    pub page: u64,
    /// Rows asked for; the service may serve fewer (a silent cap of about 1,000).
    pub page_size: u32,
    /// `startDate`: the earliest `created_at` wanted, inclusive.
    pub start_date: Option<String>,
    /// `endDate`: the latest `created_at` wanted, inclusive.
    pub end_date: Option<String>,
    /// `status` values (`completed`, `refunded`, ...).
    pub status: Vec<String>,
    /// `currency` codes (`XOF`, `USD`, ...).
    pub currency: Vec<String>,
    /// `paymentMethod` codes.
    pub payment_method: Vec<String>,
    /// `transaction_type` values: `payment`, `refund`, `payout`.
    pub transaction_type: Vec<String>,
    /// `provider`: one provider code.
    pub provider: Option<String>,
    /// `isPos`: point-of-sale transactions only (`true`) or none of them (`false`).
    pub is_pos: Option<bool>,
}

impl FeedQuery {
    /// Page `page` of `page_size` rows, no filter.
    pub fn page(page: u64, page_size: u32) -> FeedQuery {
        FeedQuery {
            page,
            page_size,
            ..FeedQuery::default()
        }
    }

    /// The query string, in the service's parameter names.
    fn append_to(&self, url: &mut Url) {
        let mut q = url.query_pairs_mut();
        q.append_pair("page", &self.page.to_string());
        q.append_pair("pageSize", &self.page_size.to_string());
        let mut opt = |key: &str, v: Option<&str>| {
            if let Some(v) = v {
                q.append_pair(key, v);
            }
        };
        opt("startDate", self.start_date.as_deref());
        opt("endDate", self.end_date.as_deref());
        let joined = |l: &[String]| (!l.is_empty()).then(|| l.join(","));
        opt("status", joined(&self.status).as_deref());
        opt("currency", joined(&self.currency).as_deref());
        opt("paymentMethod", joined(&self.payment_method).as_deref());
        opt("type", joined(&self.transaction_type).as_deref());
        opt("provider", self.provider.as_deref());
        opt(
            "isPos",
            self.is_pos.map(|b| if b { "true" } else { "false" }),
        );
    }
}

/// Which part of the list to walk: `status=active` lists customers with at least one
/// transaction, `inactive` those with none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusFilter {
    /// No filter: every customer.
    All,
    /// `status=active`: customers with at least one transaction.
    Active,
    /// `status=inactive`: customers with none.
    Inactive,
}

impl StatusFilter {
    /// The filter's name in config and in the `status` query parameter (`"all"` sends none).
    pub fn as_str(self) -> &'static str {
        match self {
            StatusFilter::All => "all",
            StatusFilter::Active => "active",
            StatusFilter::Inactive => "inactive",
        }
    }
    /// The filter named `s` (`all`, `active`, `inactive`); `None` for anything else.
    pub fn parse(s: &str) -> Option<StatusFilter> {
        match s {
            "all" => Some(StatusFilter::All),
            "active" => Some(StatusFilter::Active),
            "inactive" => Some(StatusFilter::Inactive),
            _ => None,
        }
    }
}

/// Request counters of one client, read by the sync engine for its run summary.
#[derive(Debug, Default)]
pub struct Counters {
    /// HTTP attempts sent, retries included.
    pub requests: AtomicU64,
    /// Attempts that were retries.
    pub retries: AtomicU64,
    /// Records skipped because their identity (id) could not be read, counted each
    /// time one is received: without an id, two sightings cannot be told apart.
    pub skipped: AtomicU64,
}

/// What `GET /customers/{id}` found.
#[derive(Debug)]
pub enum CustomerRead {
    /// 200: the customer as the API sent it.
    Found(Box<Customer>),
    /// 404: deleted (or never existed).
    Gone,
    /// A body whose identity could not be read: skipped (logged and counted), so the
    /// caller keeps what it knew.
    Unreadable,
}

/// The knobs of [`ApiClient`], taken from `[api]` settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The service's root (`https://api.lomi.africa`, no `/v1`; NOTES.md, "Base URLs and keys").
    pub base_url: Url,
    /// The whole request's time limit, body included (`api.timeout`).
    pub timeout: Duration,
    /// The time limit to connect (`api.connect_timeout`).
    pub connect_timeout: Duration,
    /// Retries of a failed request after its first attempt (`api.max_retries`).
    pub max_retries: u32,
    /// The first retry's backoff (250 ms), doubled each retry, with jitter.
    pub initial_backoff: Duration,
    /// The longest backoff between retries (`api.max_backoff`).
    pub max_backoff: Duration,
    /// The longest `Retry-After` waited for; a longer one ends the request with
    /// [`ApiError::RetryAfterTooLong`] (`api.max_retry_after`).
    pub max_retry_after: Duration,
    /// A larger body is refused as [`ApiError::BadResponse`] (`api.max_body_bytes`), in bytes.
    pub max_body_bytes: u64,
    /// The configured average pace, used until a route has sent its rate-limit headers.
    pub limits: RateLimits,
    /// The share of each route's window this client may use (`api.budget_share`).
    pub budget_share: f64,
    /// A rate-limit wait longer than this (a 429's `Retry-After`, or the next slot a
    /// route's budget allows) ends the request with [`ApiError::Deferred`] instead of
    /// waiting. Set for the daemon's runs (`schedule.defer_after`); `None` waits, as a
    /// one-shot `backfill` should.
    pub defer_after: Option<Duration>,
    /// Where each attempt (by route and status), retry and rate-limit header is counted:
    /// the process's one handle (`app::Mirror::build*` sets it); a fresh one by default.
    pub metrics: Metrics,
}

impl ClientOptions {
    /// The options of the `[api]` settings; fails on an unusable `api.base_url`.
    pub fn from_settings(api: &ApiSettings) -> Result<ClientOptions, ConfigError> {
        Ok(ClientOptions {
            base_url: api.base_url()?,
            timeout: api.timeout.0,
            connect_timeout: api.connect_timeout.0,
            max_retries: api.max_retries,
            initial_backoff: Duration::from_millis(250),
            max_backoff: api.max_backoff.0,
            max_retry_after: api.max_retry_after.0,
            max_body_bytes: api.max_body_bytes,
            limits: RateLimits {
                requests_per_second: api.requests_per_second,
                max_requests_per_window: api.max_requests_per_window,
                window: api.rate_window.0,
            },
            budget_share: api.budget_share,
            defer_after: None,
            metrics: Metrics::new(),
        })
    }
}

/// A cheap-to-clone handle; clones share the connection pool, the per-route budgets
/// and the counters, so every task of a run draws on the same budget of each route.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    opts: ClientOptions,
    auth: HeaderValue,
    budgets: RouteBudgets,
    counters: Counters,
    cancel: CancellationToken,
}

/// What one attempt produced, before deciding whether to retry.
enum Attempt<T> {
    Done(T, Option<String>),
    NotFound,
    Fail {
        err: ApiError,
        retry: Retry,
        handled: Handled,
    },
}

/// Whether a request may be sent twice: a property of the request, which [`resend`]
/// weighs against how far a failed attempt got ([`Handled`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Replay {
    /// Idempotent (every GET): sent again after any failure the retry rules allow.
    Any,
    /// Not idempotent (`POST /webhooks` makes one more webhook each time the service
    /// handles it): sent again only after a failure the service certainly did not
    /// handle.
    Once,
}

/// Whether the service may have acted on a request whose attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handled {
    /// Certainly not: the connection failed before the request went out, or the
    /// service turned it away unread: a 429 (its rate limiter answers before any
    /// handler, NOTES.md, "Errors"), 401/403, another 4xx (a request refused).
    No,
    /// Perhaps: no answer after sending (a timeout, a connection closed), an answer
    /// cut off or unusable, a 5xx (a 500 can come after the handler wrote; NOTES.md
    /// does not say a 503 with `Retry-After` is unhandled, so it is not taken as such),
    /// a shutdown while the request was out.
    Maybe,
}

/// The one rule for sending a request again (issue: a retried `POST /webhooks` made
/// two webhooks): an idempotent request keeps whatever retry its failure calls for; a
/// [`Replay::Once`] request keeps it only when the service certainly did not handle
/// the attempt (a connection refused, a 429), and otherwise fails at once with
/// [`ApiError::Unconfirmed`], which tells how to find a duplicate.
fn resend<T>(replay: Replay, attempt: Attempt<T>) -> Attempt<T> {
    match attempt {
        Attempt::Fail {
            err,
            handled: Handled::Maybe,
            ..
        } if replay == Replay::Once => Attempt::Fail {
            err: ApiError::Unconfirmed {
                cause: Box::new(err),
            },
            retry: Retry::No,
            handled: Handled::Maybe,
        },
        other => other,
    }
}

enum Retry {
    No,
    Backoff,
    /// A 429 with no usable `Retry-After`: back off (never less than half the capped
    /// exponential step, so a storm of 429s is outlasted, not hammered) and hold every
    /// request of the route back as long.
    Hold,
    /// Wait as the server asked; `hold_route` for a 429 (the limit is per route, so
    /// every request of that route must hold back, and only those), not for a 503 (only
    /// this request was turned away).
    After {
        wait: Duration,
        hold_route: bool,
    },
}

impl ApiClient {
    /// `cancel` interrupts waits (backoff, rate limit) so shutdown is prompt.
    pub fn new(
        opts: ClientOptions,
        key: &ApiKey,
        cancel: CancellationToken,
    ) -> Result<ApiClient, ApiError> {
        let mut auth = HeaderValue::from_str(key.expose()).map_err(|_| ApiError::Transport {
            endpoint: opts.base_url.to_string(),
            reason: "the API key contains characters that cannot go in an HTTP header; check LOMI_API_KEY".into(),
        })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.connect_timeout)
            .user_agent(concat!("lomi-sync/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            // Redirects could carry the key elsewhere; the API has no reason to redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::Transport {
                endpoint: opts.base_url.to_string(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(ApiClient {
            inner: Arc::new(Inner {
                http,
                budgets: RouteBudgets::new(opts.budget_share, RateLimiter::new(opts.limits))
                    .with_deferral(opts.defer_after),
                opts,
                auth,
                counters: Counters::default(),
                cancel,
            }),
        })
    }

    /// The client's request counters.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// The metrics this client records into (and the run code, through it).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.opts.metrics
    }

    /// What the server last said of each route's budget, and the 429s met on it.
    pub fn route_budgets(&self) -> Vec<RouteReport> {
        self.inner.budgets.report()
    }

    /// The average rate requests are paced at (`api.requests_per_second`); `None`
    /// when unlimited.
    pub fn requests_per_second(&self) -> Option<f64> {
        let rate = self.inner.opts.limits.requests_per_second;
        (rate > 0.0).then_some(rate)
    }

    /// `GET /customers?page=..&pageSize=..[&status=..]`.
    pub async fn list_customers(
        &self,
        page: u64,
        page_size: u32,
        status: StatusFilter,
    ) -> Result<CustomerPage, ApiError> {
        let mut url = self.url(&["customers"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("page", &page.to_string());
            q.append_pair("pageSize", &page_size.to_string());
            if status != StatusFilter::All {
                q.append_pair("status", status.as_str());
            }
        }
        let endpoint = describe(&url);
        match self
            .get(
                Route::ListCustomers,
                url,
                &endpoint,
                CustomerPage::from_body,
            )
            .await?
        {
            Some((page, _)) => {
                self.skipped(&endpoint, &page.skipped);
                Ok(page)
            }
            None => Err(ApiError::Status {
                endpoint,
                status: 404,
                request_id: None,
                message: "the customer list itself was not found; check api.base_url".into(),
            }),
        }
    }

    /// `GET /customers/{id}`: the customer, 404 (`Gone`), or a record whose id cannot
    /// be read (`Unreadable`, logged and counted).
    pub async fn get_customer(&self, id: &str) -> Result<CustomerRead, ApiError> {
        let url = self.url(&["customers", id]);
        let endpoint = describe(&url);
        // An unreadable identity is a value here, not a failed request: retrying would
        // not change it, and failing would stop every later run on this one record.
        let parse = |body: &[u8]| match Customer::from_body(body) {
            Ok(c) => Ok(Ok(c)),
            Err(BodyError::Shape(e)) => Ok(Err(e)),
            Err(e) => Err(e),
        };
        match self.get(Route::GetCustomer, url, &endpoint, parse).await? {
            Some((Ok(c), rid)) => {
                if c.id != id {
                    return Err(shape_error(
                        &endpoint,
                        rid,
                        ShapeError(format!("asked for customer {id}, got {}", c.id)),
                    ));
                }
                Ok(CustomerRead::Found(Box::new(c)))
            }
            Some((Err(e), _)) => {
                self.skipped(&endpoint, &[format!("customer {id}: {e}")]);
                Ok(CustomerRead::Unreadable)
            }
            None => Ok(CustomerRead::Gone),
        }
    }

    /// `GET /customers/{id}/transactions`; `None` when the customer is gone (404).
    pub async fn customer_transactions(
        &self,
        id: &str,
    ) -> Result<Option<TransactionList>, ApiError> {
        let url = self.url(&["customers", id, "transactions"]);
        let endpoint = describe(&url);
        let list = self
            .get(
                Route::CustomerTransactions,
                url,
                &endpoint,
                Transaction::list_from_body,
            )
            .await?
            .map(|(list, _)| list);
        if let Some(l) = &list {
            self.skipped(&endpoint, &l.skipped);
        }
        Ok(list)
    }

    /// `GET /transactions`: one page of the org-wide feed, newest first. A page shorter
    /// than asked is not the end (the cap is silent); an empty one is. 403, 404 and 405
    /// are [`ApiError::NoAccess`].
    pub async fn transactions_feed(&self, query: &FeedQuery) -> Result<TransactionList, ApiError> {
        let mut url = self.url(&["transactions"]);
        query.append_to(&mut url);
        let endpoint = describe(&url);
        match self
            .get(
                Route::Transactions,
                url,
                &endpoint,
                Transaction::list_from_body,
            )
            .await?
        {
            Some((list, _)) => {
                self.skipped(&endpoint, &list.skipped);
                Ok(list)
            }
            None => Err(ApiError::NoAccess {
                endpoint,
                status: 404,
                request_id: None,
            }),
        }
    }

    /// `GET /transactions/{id}`: the feed's row, or `None` on a 404 (removed, or never
    /// existed). 403 and 405 are [`ApiError::NoAccess`].
    pub async fn get_transaction(&self, id: &str) -> Result<Option<Transaction>, ApiError> {
        let url = self.url(&["transactions", id]);
        let endpoint = describe(&url);
        let parse = Transaction::from_body;
        match self.get(Route::Transaction, url, &endpoint, parse).await? {
            Some((t, rid)) if t.transaction_id != id => Err(shape_error(
                &endpoint,
                rid,
                ShapeError(format!(
                    "asked for transaction {id}, got {}",
                    t.transaction_id
                )),
            )),
            Some((t, _)) => Ok(Some(t)),
            None => Ok(None),
        }
    }

    /// `POST /webhooks` with `{url, authorized_events, description}` (NOTES.md,
    /// Webhooks): the endpoint as registered, with its signing secret, which the service
    /// shows only in this answer. An answer without a secret is
    /// [`ApiError::BadResponse`] naming the webhook, since it cannot be verified without
    /// one. Not idempotent ([`Replay::Once`]): sent again only after a failure the
    /// service certainly did not handle (a connection refused, a 429); after any other
    /// ([`ApiError::Unconfirmed`]), `lomi-sync webhooks list` shows whether it was made.
    pub async fn register_webhook(
        &self,
        url: &str,
        events: &[&str],
    ) -> Result<RegisteredWebhook, ApiError> {
        let target = self.url(&["webhooks"]);
        let endpoint = format!("POST {}", target.path());
        let body = serde_json::json!({
            "url": url,
            "authorized_events": events,
            "description": "lomi-sync mirror",
        })
        .to_string()
        .into_bytes();
        let parse = RegisteredWebhook::from_body;
        let (hook, rid) = self
            .send(
                Route::RegisterWebhook,
                target,
                Some((&body, Replay::Once)),
                &endpoint,
                parse,
            )
            .await?
            .ok_or_else(|| no_webhooks_route(&endpoint))?;
        if hook.secret.is_none() {
            let reason = format!(
                "webhook {} was registered, but the answer carries no `secret`: delete it and register again",
                hook.id
            );
            return Err(shape_error(&endpoint, rid, ShapeError(reason)));
        }
        Ok(hook)
    }

    /// `GET /webhooks`: the registered endpoints (never with their secrets).
    pub async fn list_webhooks(&self) -> Result<Vec<RegisteredWebhook>, ApiError> {
        let url = self.url(&["webhooks"]);
        let endpoint = describe(&url);
        let parse = RegisteredWebhook::list_from_body;
        match self.get(Route::ListWebhooks, url, &endpoint, parse).await? {
            Some((hooks, _)) => Ok(hooks),
            None => Err(no_webhooks_route(&endpoint)),
        }
    }

    /// Logs and counts records skipped for an unreadable identity.
    fn skipped(&self, endpoint: &str, reasons: &[String]) {
        for reason in reasons {
            tracing::warn!(
                endpoint,
                "record skipped, its identity cannot be read: {reason}"
            );
        }
        self.inner
            .counters
            .skipped
            .fetch_add(reasons.len() as u64, Ordering::Relaxed);
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.opts.base_url.clone();
        {
            // The base URL was validated to have a host, so it can be a base.
            let mut path = url.path_segments_mut().expect("validated base URL");
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    /// One GET with retries, its body parsed by `parse`. `Ok(None)` is a 404.
    async fn get<T>(
        &self,
        route: Route,
        url: Url,
        endpoint: &str,
        parse: impl Fn(&[u8]) -> Result<T, BodyError> + Copy,
    ) -> Result<Option<(T, Option<String>)>, ApiError> {
        self.send(route, url, None, endpoint, parse).await
    }

    /// One request with retries: a GET, or a POST of the JSON `body` (sent again as its
    /// [`Replay`] allows, [`resend`]); its answer parsed by `parse`. `Ok(None)` is a 404.
    async fn send<T>(
        &self,
        route: Route,
        url: Url,
        post: Option<(&[u8], Replay)>,
        endpoint: &str,
        parse: impl Fn(&[u8]) -> Result<T, BodyError> + Copy,
    ) -> Result<Option<(T, Option<String>)>, ApiError> {
        let opts = &self.inner.opts;
        let mut attempt: u32 = 0;
        loop {
            let ticket = match self.inner.budgets.acquire(route, &self.inner.cancel).await {
                Ok(ticket) => ticket,
                Err(Refusal::Cancelled) => {
                    return Err(ApiError::Cancelled {
                        endpoint: endpoint.to_string(),
                    });
                }
                Err(Refusal::Deferred { until }) => {
                    return Err(deferred(route, until - tokio::time::Instant::now()));
                }
            };
            self.inner.counters.requests.fetch_add(1, Ordering::Relaxed);
            if attempt > 0 {
                self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                self.inner.opts.metrics.retry(route);
            }
            let (body, replay) = post.map_or((None, Replay::Any), |(b, r)| (Some(b), r));
            let sent = self.attempt(ticket, route, &url, body, endpoint, parse);
            let (err, retry) = match resend(replay, sent.await) {
                Attempt::Done(v, rid) => return Ok(Some((v, rid))),
                Attempt::NotFound => return Ok(None),
                Attempt::Fail { err, retry, .. } => (err, retry),
            };
            let wait = match retry {
                Retry::No => return Err(err),
                _ if attempt >= opts.max_retries => return Err(err),
                Retry::Backoff => full_jitter(opts.initial_backoff, opts.max_backoff, attempt),
                Retry::Hold => {
                    let d = equal_jitter(opts.initial_backoff, opts.max_backoff, attempt);
                    self.inner.budgets.hold(route, d);
                    if opts.defer_after.is_some_and(|t| d > t) {
                        return Err(deferred(route, d));
                    }
                    d
                }
                Retry::After {
                    wait: d,
                    hold_route,
                } => self.wait_as_asked(route, endpoint, &err, d, hold_route)?,
            };
            tracing::warn!(error = %err, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, "request failed; retrying");
            attempt += 1;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.cancel.cancelled() => return Err(ApiError::Cancelled { endpoint: endpoint.to_string() }),
            }
        }
    }

    /// The wait a `Retry-After` asks for, if this client waits that long: a deferral
    /// past `defer_after` (the daemon's runs), a failure past `api.max_retry_after`.
    /// A 429 holds its route back for the wait, and says so: a 900 s wait is normal on
    /// the live service, and only that route waits.
    fn wait_as_asked(
        &self,
        route: Route,
        endpoint: &str,
        err: &ApiError,
        wait: Duration,
        hold_route: bool,
    ) -> Result<Duration, ApiError> {
        let opts = &self.inner.opts;
        if opts.defer_after.is_some_and(|t| wait > t) {
            if hold_route {
                self.inner.budgets.hold(route, wait);
            }
            return Err(deferred(route, wait));
        }
        if wait > opts.max_retry_after {
            let request_id = match err {
                ApiError::Status { request_id, .. } => request_id.clone(),
                _ => None,
            };
            return Err(ApiError::RetryAfterTooLong {
                endpoint: endpoint.to_string(),
                wait_secs: wait.as_secs(),
                request_id,
            });
        }
        if hold_route {
            self.inner.budgets.hold(route, wait);
            let until = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            tracing::warn!(
                route = route.template(),
                until = %until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                wait_secs = wait.as_secs(),
                "{} used up its rate-limit window: its requests wait until the reset, the other routes go on",
                route.template()
            );
        }
        Ok(wait)
    }

    /// One request: sends it (cut short by the cancel token), reads the budget's
    /// headers and the body, and classifies what came back.
    async fn attempt<T>(
        &self,
        ticket: Ticket,
        route: Route,
        url: &Url,
        body: Option<&[u8]>,
        endpoint: &str,
        parse: impl Fn(&[u8]) -> Result<T, BodyError>,
    ) -> Attempt<T> {
        let mut request = match body {
            None => self.inner.http.get(url.clone()),
            Some(b) => self
                .inner
                .http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_vec()),
        };
        request = request
            .header("X-API-KEY", self.inner.auth.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        let send = request.send();
        let metrics = &self.inner.opts.metrics;
        let resp = tokio::select! {
            r = send => match r {
                Ok(r) => r,
                Err(e) => {
                    metrics.request(route, RequestStatus::TransportError);
                    // Only a failed connection proves the request never went out.
                    let handled = if e.is_connect() { Handled::No } else { Handled::Maybe };
                    return transport(endpoint, describe_reqwest(&e), handled);
                }
            },
            _ = self.inner.cancel.cancelled() => {
                metrics.request(route, RequestStatus::Cancelled);
                return Attempt::Fail { err: ApiError::Cancelled { endpoint: endpoint.to_string() }, retry: Retry::No, handled: Handled::Maybe };
            }
        };
        let status = resp.status();
        // Counted by the status the server sent, even if the body is then cut off.
        metrics.request(route, RequestStatus::Code(status.as_u16()));
        let headers = resp.headers().clone();
        if let Some(obs) = rate_limit_headers(&headers) {
            metrics.rate_limit(route, obs.limit, obs.remaining, obs.reset);
            self.inner.budgets.observe(ticket, obs);
        }
        let limit = self.inner.opts.max_body_bytes;
        let body = match read_body(resp, limit).await {
            Ok(body) => body,
            Err(BodyRead::TooLarge) => {
                return Attempt::Fail {
                    err: ApiError::BadResponse {
                        endpoint: endpoint.to_string(),
                        status: status.as_u16(),
                        request_id: request_id_header(&headers),
                        reason: format!(
                            "the body is larger than api.max_body_bytes ({limit} bytes)"
                        ),
                    },
                    retry: Retry::No,
                    handled: Handled::Maybe,
                };
            }
            Err(BodyRead::Cut(reason)) => {
                let reason = format!("the response was cut off: {reason}");
                return transport(endpoint, reason, Handled::Maybe);
            }
        };
        let answer = Answer {
            route,
            endpoint,
            status,
            headers: &headers,
            body: &body,
        };
        if status.is_success() {
            classify_success(&answer, parse)
        } else {
            classify_failure(&answer)
        }
    }
}

/// A transport failure (no answer, or a cut one): retried with backoff (a request
/// that is not idempotent only if it was never `handled`, [`resend`]).
fn transport<T>(endpoint: &str, reason: String, handled: Handled) -> Attempt<T> {
    Attempt::Fail {
        err: ApiError::Transport {
            endpoint: endpoint.to_string(),
            reason,
        },
        retry: Retry::Backoff,
        handled,
    }
}

/// Why a body could not be read whole.
enum BodyRead {
    /// Over `api.max_body_bytes` (by its `Content-Length` or as it arrived).
    TooLarge,
    /// The connection failed mid-body.
    Cut(String),
}

/// Reads the body, refusing one over `limit` bytes before holding it all.
async fn read_body(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyRead> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyRead::TooLarge);
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(BodyRead::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(BodyRead::Cut(describe_reqwest(&e))),
        }
    }
}

/// A whole answer, as [`classify_success`] and [`classify_failure`] judge it.
struct Answer<'a> {
    route: Route,
    endpoint: &'a str,
    status: StatusCode,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Answer<'_> {
    /// The body's start for an error message; never for `POST /webhooks`, whose answer
    /// holds the webhook's signing secret (even a cut one may).
    fn snippet(&self) -> String {
        match self.route {
            Route::RegisterWebhook => "body not shown: it may hold the webhook secret".into(),
            _ => snippet(self.body),
        }
    }
}

/// A 2xx: its body parsed by `parse`, or why it is not data. An error envelope is never
/// data, whatever the status: a failed request, retried like a 5xx (a statement timeout
/// may pass); so is invalid JSON (usually a cut connection); a wrong shape is not
/// retried.
fn classify_success<T>(a: &Answer, parse: impl Fn(&[u8]) -> Result<T, BodyError>) -> Attempt<T> {
    let endpoint = a.endpoint.to_string();
    let status = a.status.as_u16();
    let header_rid = request_id_header(a.headers);
    match parse(a.body) {
        Ok(v) => Attempt::Done(v, header_rid),
        Err(BodyError::Shape(e)) => Attempt::Fail {
            err: shape_error(a.endpoint, header_rid, e),
            retry: Retry::No,
            handled: Handled::Maybe,
        },
        Err(BodyError::ErrorBody(e)) => Attempt::Fail {
            err: ApiError::ErrorBody {
                endpoint,
                status,
                message: e.describe(),
                request_id: header_rid.or(e.request_id),
            },
            retry: Retry::Backoff,
            handled: Handled::Maybe,
        },
        Err(BodyError::Json(e)) => Attempt::Fail {
            err: ApiError::BadResponse {
                endpoint,
                status,
                request_id: header_rid,
                reason: format!(
                    "the body is not valid JSON ({}): {}",
                    json_problem(&e),
                    a.snippet()
                ),
            },
            retry: Retry::Backoff,
            handled: Handled::Maybe,
        },
    }
}

/// Anything but a 2xx: 404 is a value; 401/403 a rejected key (403/405 on the feed: no
/// access to it, a fallback); 429 and 5xx retried (a 429 holds its route back, as long
/// as `Retry-After` says, when it says); the rest fails at once. The message comes from
/// the live error envelope (`{"error": {"code", "message"}}`), else the body's start.
fn classify_failure<T>(a: &Answer) -> Attempt<T> {
    let (code, message, body_rid) = match serde_json::from_slice::<Value>(a.body) {
        Ok(v) => error_envelope(&v),
        Err(_) => (None, None, None),
    };
    let request_id = request_id_header(a.headers).or(body_rid);
    let message = match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => a.snippet(),
    };
    let endpoint = a.endpoint.to_string();
    let feed = matches!(a.route, Route::Transactions | Route::Transaction);
    // Turned away unread (a 429, any other 4xx), or perhaps handled (a 5xx).
    let handled = if a.status.is_client_error() {
        Handled::No
    } else {
        Handled::Maybe
    };
    let (err, retry) = match a.status {
        StatusCode::NOT_FOUND => return Attempt::NotFound,
        StatusCode::FORBIDDEN | StatusCode::METHOD_NOT_ALLOWED if feed => {
            let status = a.status.as_u16();
            let err = ApiError::NoAccess {
                endpoint,
                status,
                request_id,
            };
            (err, Retry::No)
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            let err = ApiError::Unauthorized {
                endpoint,
                request_id,
            };
            (err, Retry::No)
        }
        s => {
            let hold_route = s == StatusCode::TOO_MANY_REQUESTS;
            let retry = match retry_after(a.headers) {
                _ if !hold_route && !s.is_server_error() => Retry::No,
                Some(wait) => Retry::After { wait, hold_route },
                None if hold_route => Retry::Hold,
                None => Retry::Backoff,
            };
            let err = ApiError::Status {
                endpoint,
                status: s.as_u16(),
                request_id,
                message,
            };
            (err, retry)
        }
    };
    Attempt::Fail {
        err,
        retry,
        handled,
    }
}

/// A 404 on the webhook routes: the service (or `api.base_url`) has no `/webhooks`.
fn no_webhooks_route(endpoint: &str) -> ApiError {
    ApiError::Status {
        endpoint: endpoint.to_string(),
        status: 404,
        request_id: None,
        message: "the service has no webhook routes here; check api.base_url".into(),
    }
}

/// A route that must wait `wait` before its next request, as a deferral.
fn deferred(route: Route, wait: Duration) -> ApiError {
    // Not logged here: every request waiting on the route is refused alike, and the
    // run says once that it was deferred.
    let until = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
    ApiError::Deferred {
        route,
        until,
        wait_secs: wait.as_secs(),
    }
}

/// The path and query of a URL: enough to find the request, never the key (which
/// travels in a header).
fn describe(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("GET {}?{q}", url.path()),
        None => format!("GET {}", url.path()),
    }
}

fn shape_error(endpoint: &str, request_id: Option<String>, e: ShapeError) -> ApiError {
    ApiError::BadResponse {
        endpoint: endpoint.to_string(),
        status: 200,
        request_id,
        reason: e.0,
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out (api.timeout / api.connect_timeout)"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the body could not be read"
    } else {
        "request failed"
    };
    // The error's source chain names the cause (refused, reset, DNS...). URLs in it
    // carry no secret: the key is a header.
    let mut msg = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn json_problem(e: &serde_json::Error) -> &'static str {
    if e.is_eof() { "truncated" } else { "malformed" }
}

/// The first bytes of a body, for an error message (HTML error pages are long).
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().is_empty() {
        "empty body".into()
    } else {
        format!("body starts with `{}`", text.trim())
    }
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds), all three or nothing.
fn rate_limit_headers(h: &HeaderMap) -> Option<Observation> {
    let num = |name: &str| h.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    let limit = u32::try_from(num("x-ratelimit-limit")?).ok()?;
    let remaining = u32::try_from(num("x-ratelimit-remaining")?).ok()?;
    let reset = Duration::from_secs(num("x-ratelimit-reset")?);
    (limit > 0).then_some(Observation {
        limit,
        remaining: remaining.min(limit),
        reset,
    })
}

fn request_id_header(h: &HeaderMap) -> Option<String> {
    h.get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `{"error": {"code", "message"}, "request_id"}`, the live service's error envelope.
fn error_envelope(v: &Value) -> (Option<String>, Option<String>, Option<String>) {
    let err = v.get("error");
    let field = |o: Option<&Value>, k: &str| {
        o.and_then(|o| o.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (code, message) = match err {
        Some(Value::String(s)) => (None, Some(s.clone())),
        e => (field(e, "code"), field(e, "message")),
    };
    (code, message, field(Some(v), "request_id"))
}

/// `Retry-After` as a positive number of seconds or an HTTP date in the future: a
/// usable hint. `0`, a negative number, a date already past or anything unparsable is
/// no hint (`None`), and the normal capped backoff applies: taken at its word, `0` made
/// a 429 storm burn every retry in a third of a second.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if v.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') {
        let secs = v.parse::<u64>().ok()?;
        return (secs > 0).then(|| Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    delta.to_std().ok().filter(|d| !d.is_zero())
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)].
fn full_jitter(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    ceiling.mul_f64(fastrand::f64())
}

/// Exponential backoff with "equal" jitter: uniform in [c/2, c], c = min(cap, base *
/// 2^attempt). For a 429 without a usable hint: the waits add up to at least half the
/// plain exponential sum, so `api.max_retries` (8) outlasts a storm of at least 30 s
/// with the defaults, where full jitter could burn every retry at once.
fn equal_jitter(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    ceiling / 2 + (ceiling / 2).mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("900"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(900)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(120);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&later.to_rfc2822()).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(110) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    /// Values that are not a positive hint mean "no hint": the caller then backs off.
    #[test]
    fn retry_after_that_is_not_a_positive_hint_is_no_hint() {
        let past = (chrono::Utc::now() - chrono::Duration::seconds(30)).to_rfc2822();
        for v in [
            "0",
            "-1",
            "-900",
            "soon",
            "",
            "1.5",
            "0x10",
            "18446744073709551616",
            past.as_str(),
            "Thu, 01 Jan 1970 00:00:00 GMT",
        ] {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            assert_eq!(retry_after(&h), None, "Retry-After: {v:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 2 "));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
    }

    #[test]
    fn equal_jitter_waits_at_least_half_the_step() {
        let (base, cap) = (Duration::from_millis(250), Duration::from_secs(60));
        for attempt in 0..12 {
            let step = base.saturating_mul(1 << attempt).min(cap);
            for _ in 0..50 {
                let d = equal_jitter(base, cap, attempt);
                assert!(d >= step / 2 && d <= step, "{attempt}: {d:?}");
            }
        }
        // The default 8 retries outlast a 1 s storm of 429s whatever the draws.
        let least: Duration = (0..8).map(|a| base.saturating_mul(1 << a) / 2).sum();
        assert!(least > Duration::from_secs(30), "{least:?}");
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 0..30 {
            let d = full_jitter(Duration::from_millis(250), Duration::from_secs(10), attempt);
            assert!(d <= Duration::from_secs(10));
        }
        let first = full_jitter(Duration::from_millis(250), Duration::from_secs(10), 0);
        assert!(first <= Duration::from_millis(250));
    }

    /// Each status and header an answer can come with, to what the request ends in:
    /// the error's kind and whether and how it is retried.
    #[test]
    fn answers_are_classified_by_status_route_and_headers() {
        fn kind(a: &Attempt<()>) -> String {
            match a {
                Attempt::Done(..) => "done".into(),
                Attempt::NotFound => "not found".into(),
                Attempt::Fail { err, retry, .. } => {
                    let err = match err {
                        ApiError::Unconfirmed { .. } => "unconfirmed",
                        ApiError::Unauthorized { .. } => "unauthorized",
                        ApiError::NoAccess { .. } => "no access",
                        ApiError::Status { .. } => "status",
                        ApiError::ErrorBody { .. } => "error body",
                        ApiError::BadResponse { .. } => "bad response",
                        _ => "other",
                    };
                    let retry = match retry {
                        Retry::No => "no retry".to_string(),
                        Retry::Backoff => "backoff".into(),
                        Retry::Hold => "hold route".into(),
                        Retry::After { wait, hold_route } => {
                            format!("after {}s, hold route {hold_route}", wait.as_secs())
                        }
                    };
                    format!("{err}, {retry}")
                }
            }
        }
        let envelope =
            br#"{"error":{"code":"rate_limit_exceeded","message":"slow down"},"request_id":"r1"}"#;
        for (route, status, retry_after, expected) in [
            (Route::GetCustomer, 404, None, "not found"),
            (Route::GetCustomer, 401, None, "unauthorized, no retry"),
            (Route::GetCustomer, 403, None, "unauthorized, no retry"),
            (Route::Transactions, 403, None, "no access, no retry"),
            (Route::Transaction, 405, None, "no access, no retry"),
            (Route::ListCustomers, 405, None, "status, no retry"),
            (Route::ListCustomers, 400, Some("5"), "status, no retry"),
            (
                Route::ListCustomers,
                429,
                Some("900"),
                "status, after 900s, hold route true",
            ),
            (Route::ListCustomers, 429, None, "status, hold route"),
            (
                Route::ListCustomers,
                503,
                Some("7"),
                "status, after 7s, hold route false",
            ),
            (Route::ListCustomers, 500, None, "status, backoff"),
            // POST /webhooks (Replay::Once): sent again only when certainly unhandled.
            (Route::RegisterWebhook, 500, None, "unconfirmed, no retry"),
            (Route::RegisterWebhook, 502, None, "unconfirmed, no retry"),
            (
                Route::RegisterWebhook,
                503,
                Some("7"),
                "unconfirmed, no retry",
            ),
            (
                Route::RegisterWebhook,
                429,
                Some("900"),
                "status, after 900s, hold route true",
            ),
            (Route::RegisterWebhook, 429, None, "status, hold route"),
            (Route::RegisterWebhook, 400, None, "status, no retry"),
        ] {
            let replay = match route {
                Route::RegisterWebhook => Replay::Once,
                _ => Replay::Any,
            };
            let mut headers = HeaderMap::new();
            if let Some(v) = retry_after {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(v));
            }
            let a = Answer {
                route,
                endpoint: "GET /x",
                status: StatusCode::from_u16(status).unwrap(),
                headers: &headers,
                body: envelope,
            };
            let got: Attempt<()> = resend(replay, classify_failure(&a));
            assert_eq!(kind(&got), expected, "{route:?} {status} {retry_after:?}");
        }
        // A 2xx: data, an error envelope (retried), bad JSON (retried), a wrong shape.
        let ok = |body: &'static [u8], parse: fn(&[u8]) -> Result<(), BodyError>| {
            let headers = HeaderMap::new();
            let a = Answer {
                route: Route::ListCustomers,
                endpoint: "GET /x",
                status: StatusCode::OK,
                headers: &headers,
                body,
            };
            kind(&classify_success(&a, parse))
        };
        assert_eq!(ok(b"[]", |_| Ok(())), "done");
        assert_eq!(
            ok(b"{", |b| serde_json::from_slice::<Value>(b)
                .map(|_| ())
                .map_err(BodyError::Json)),
            "bad response, backoff"
        );
        // Transport failures: only a connection that failed proves a write unsent.
        let failed = |replay, handled| {
            kind(&resend::<()>(
                replay,
                transport("POST /x", "t".into(), handled),
            ))
        };
        assert_eq!(failed(Replay::Once, Handled::No), "other, backoff");
        assert_eq!(
            failed(Replay::Once, Handled::Maybe),
            "unconfirmed, no retry"
        );
        assert_eq!(failed(Replay::Any, Handled::Maybe), "other, backoff");
        // A cut 2xx answer to a write: it was handled, perhaps; never sent again.
        let headers = HeaderMap::new();
        let cut = Answer {
            route: Route::RegisterWebhook,
            endpoint: "POST /webhooks",
            status: StatusCode::CREATED,
            headers: &headers,
            body: b"{",
        };
        let parse = |b: &[u8]| {
            serde_json::from_slice::<Value>(b)
                .map(|_| ())
                .map_err(BodyError::Json)
        };
        let got = resend(Replay::Once, classify_success(&cut, parse));
        assert_eq!(kind(&got), "unconfirmed, no retry");
        let Attempt::Fail { err, .. } = got else {
            unreachable!()
        };
        assert!(
            err.to_string().contains("run `lomi-sync webhooks list`"),
            "{err}"
        );
    }

    /// The answer to `POST /webhooks` holds the secret: a cut or failed one is never
    /// quoted in an error (errors are logged while retrying).
    #[test]
    fn a_registration_answer_is_never_quoted_in_an_error() {
        let headers = HeaderMap::new();
        let body: &[u8] = br#"{"id":"wh_1","url":"https://h.example/x","secret":"whsec_abc"#;
        let answer = |status: u16| Answer {
            route: Route::RegisterWebhook,
            endpoint: "POST /webhooks",
            status: StatusCode::from_u16(status).unwrap(),
            headers: &headers,
            body,
        };
        let message = |a: Attempt<super::RegisteredWebhook>| match a {
            Attempt::Fail { err, .. } => err.to_string(),
            _ => panic!("a cut body is no webhook"),
        };
        let cut = message(classify_success(
            &answer(201),
            super::RegisteredWebhook::from_body,
        ));
        let failed = message(classify_failure(&answer(502)));
        for text in [cut, failed] {
            assert!(!text.contains("whsec_abc"), "{text}");
            assert!(text.contains("body not shown"), "{text}");
        }
    }

    #[test]
    fn error_envelope_is_read() {
        let v = serde_json::json!({"error": {"code": "not_found", "message": "no such customer", "details": null}, "request_id": "req_1"});
        assert_eq!(
            error_envelope(&v),
            (
                Some("not_found".into()),
                Some("no such customer".into()),
                Some("req_1".into())
            )
        );
    }

    #[test]
    fn endpoint_description_has_no_host() {
        let u = Url::parse("http://127.0.0.1:1/customers?page=2&pageSize=200").unwrap();
        assert_eq!(describe(&u), "GET /customers?page=2&pageSize=200");
    }
}
