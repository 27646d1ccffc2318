//! The daemon's HTTP listener (`server.listen`, off by default; issue 16), on axum:
//!
//! - `POST /webhooks/lomi`: a signed delivery ([`signature`]) applied to the mirror
//!   through the daemon's one writer ([`crate::sync::webhook`]); 2xx only once it is
//!   committed, so the vendor retries whatever was not stored;
//! - `GET /healthz`: 200 while the last successful run is younger than
//!   `server.healthy_within`, else 503 with a one-line reason ([`health`]);
//! - `GET /metrics`: the Prometheus text exposition ([`Metrics::render`]).
//!
//! Started by `lomi-sync run` as [`run`]`(listener, state, shutdown)` (mini-redis's
//! shape): the daemon binds first ([`bind`]), so a taken address fails the start, and
//! its shutdown token stops the listener, which finishes the requests in flight.

pub mod health;
pub mod signature;

use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::config::WebhookSecret;
use crate::metrics::{Metrics, WebhookOutcome};
use crate::store::{Location, Store};
use crate::sync::webhook::{Delivered, Envelope, Webhooks};

/// The largest delivery accepted (1 MiB); a larger body is answered 413 unread past it.
pub const MAX_BODY: usize = 1 << 20;

/// The header carrying a delivery's signature.
pub const SIGNATURE_HEADER: &str = "x-lomi-signature";

/// Why the listener could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address cannot be bound.
    #[error(
        "cannot listen on {addr} (server.listen): {source}; stop whatever holds that port, or choose another address"
    )]
    Bind {
        /// `server.listen`.
        addr: SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the HTTP listener stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// What the routes share: cheap to clone.
#[derive(Clone)]
pub struct ServerState {
    inner: Arc<Inner>,
}

struct Inner {
    webhooks: Webhooks,
    secret: WebhookSecret,
    metrics: Metrics,
    db: Location,
    busy_timeout: Duration,
    healthy_within: Duration,
}

impl ServerState {
    /// The routes' state: deliveries applied through `webhooks`, verified with
    /// `secret`; health read from the mirror at `db` (`store.busy_timeout`) and judged
    /// against `healthy_within` (`server.healthy_within`).
    pub fn new(
        webhooks: Webhooks,
        secret: WebhookSecret,
        metrics: Metrics,
        db: Location,
        (busy_timeout, healthy_within): (Duration, Duration),
    ) -> ServerState {
        ServerState {
            inner: Arc::new(Inner {
                webhooks,
                secret,
                metrics,
                db,
                busy_timeout,
                healthy_within,
            }),
        }
    }
}

/// Binds `addr` now, so that the daemon fails at its start, not at its first request.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let bind_err = |source| ServerError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok(listener)
}

/// The routes.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/webhooks/lomi", post(webhook))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves `listener` until `shutdown` fires, then lets the requests in flight finish.
pub async fn run(
    listener: std::net::TcpListener,
    state: ServerState,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(ServerError::Serve)?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "listening for webhooks, /healthz and /metrics");
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ServerError::Serve)
}

/// `POST /webhooks/lomi`: every delivery is counted received, then applied, duplicate
/// or rejected.
async fn webhook(
    State(s): State<ServerState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let m = &s.inner.metrics;
    m.webhook(WebhookOutcome::Received);
    let (status, text) = receive(&s, &headers, body).await;
    // 2xx are counted where their outcome is known; a 5xx is retried by the vendor.
    if status.is_client_error() {
        m.webhook(WebhookOutcome::Rejected);
    }
    (status, text).into_response()
}

/// Checks and applies one delivery: the status to answer and a word of why.
async fn receive(
    s: &ServerState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (StatusCode, &'static str) {
    let body = match body {
        Ok(b) => b,
        Err(r) => {
            tracing::warn!("webhook delivery refused: {r}");
            return (r.status(), "body refused\n");
        }
    };
    let Some(signature) = headers.get(SIGNATURE_HEADER) else {
        tracing::warn!("webhook delivery without X-Lomi-Signature refused");
        return (StatusCode::UNAUTHORIZED, "missing signature\n");
    };
    if !signature::verify(&s.inner.secret, &body, signature.as_bytes()) {
        tracing::warn!("webhook delivery with a wrong X-Lomi-Signature refused");
        return (StatusCode::UNAUTHORIZED, "bad signature\n");
    }
    let env = match Envelope::parse(&body) {
        Ok(env) => env,
        Err(e) => {
            tracing::warn!("webhook delivery refused: {e}");
            return (StatusCode::BAD_REQUEST, "malformed envelope\n");
        }
    };
    let (id, event) = (env.id.clone(), env.event.clone());
    let m = &s.inner.metrics;
    match s.inner.webhooks.deliver(env).await {
        Ok(Delivered::Ignored) => {
            tracing::debug!(id, event, "webhook delivery ignored, nothing written");
            m.webhook(WebhookOutcome::Rejected);
            (StatusCode::OK, "ignored\n")
        }
        Ok(Delivered::Duplicate) => {
            tracing::debug!(id, event, "webhook delivery already applied");
            m.webhook(WebhookOutcome::Duplicate);
            (StatusCode::OK, "duplicate\n")
        }
        Ok(done) => {
            tracing::debug!(id, event, ?done, "webhook delivery committed");
            m.webhook(WebhookOutcome::Applied);
            (StatusCode::OK, "applied\n")
        }
        Err(e) => {
            tracing::error!(
                id,
                event,
                "webhook delivery not applied (the vendor retries): {e}"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not applied, retry later\n",
            )
        }
    }
}

/// `GET /healthz`.
async fn healthz(State(s): State<ServerState>) -> Response {
    let (db, timeout) = (s.inner.db.clone(), s.inner.busy_timeout);
    let facts = tokio::task::spawn_blocking(move || {
        Store::open_read_only(&db, timeout).and_then(|store| store.health_facts())
    })
    .await;
    let judged = match facts {
        Ok(Ok(f)) => health::judge(&f, chrono::Utc::now(), s.inner.healthy_within),
        Ok(Err(e)) => Err(format!("cannot read the mirror: {e}")),
        Err(e) => Err(format!("cannot read the mirror: {e}")),
    };
    match judged {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

/// `GET /metrics`: the text exposition, as Prometheus scrapes it.
async fn metrics(State(s): State<ServerState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.inner.metrics.render(),
    )
        .into_response()
}
