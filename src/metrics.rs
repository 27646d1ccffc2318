//! Prometheus metrics of the daemon, served at `GET /metrics` by the HTTP listener.
//!
//! One [`Metrics`] handle per process, cloned into whatever records (it is an `Arc`):
//! `app::Mirror::build*` makes it and hands it to the API client
//! (`ClientOptions::metrics`), which counts each attempt, retry, 429 and rate-limit
//! header; the engine's `sync::run` records each run and the rows it committed through
//! the client's handle ([`crate::api::ApiClient::metrics`]). The exposition is the
//! `prometheus-client` crate's text format (OpenMetrics), so a scraper and the tests'
//! parser read it as Prometheus does. README's "Metrics" lists every series.
//!
//! Label values are lowercase snake_case words from the types below (a route is its
//! template, `GET /customers/{id}`, never a concrete id), so a series' cardinality is
//! bounded by the code, not by the data. Nothing here holds the API key or the webhook
//! secret: no label is taken from a request header or a setting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::api::budget::Route;
use crate::store::{Applied, RunKind};

/// What became of one webhook delivery (label `outcome`: `received`, `applied`,
/// `duplicate`, `rejected`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Any delivery that reached the endpoint, before it was checked.
    Received,
    /// Verified and committed to the mirror (or found already equal to it).
    Applied,
    /// Verified, but its envelope `id` was applied before (a retry or a replay).
    Duplicate,
    /// Refused: bad or missing signature, oversized or malformed body, unknown event.
    Rejected,
}

impl WebhookOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Received => "received",
            WebhookOutcome::Applied => "applied",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Rejected => "rejected",
        }
    }
}

/// How a run ended (label `outcome`), as `sync_runs.outcome` records it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every step done.
    Succeeded,
    /// Stopped by an error (a walk that could not list everyone included).
    Failed,
    /// Stopped by a shutdown; the next run resumes it.
    Interrupted,
    /// Stopped at a checkpoint for a long rate-limit wait (`schedule.defer_after`).
    Deferred,
}

impl RunOutcome {
    /// The label value (the word `sync_runs.outcome` stores).
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::Deferred => "deferred",
        }
    }
}

/// What one HTTP attempt came back with (label `code`): the status code (`200`,
/// `429`...), `transport_error` when no whole answer arrived (connection, timeout, a
/// body cut off), or `cancelled` when a shutdown cut it short.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RequestStatus {
    /// The HTTP status code the server sent.
    Code(u16),
    /// No usable answer: connection refused or reset, timeout, body cut off.
    TransportError,
    /// The cancel token fired while the request was out.
    Cancelled,
}

/// A mirror table rows are written to (label `table`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Table {
    /// `customers`.
    Customers,
    /// `transactions`.
    Transactions,
}

/// What a write did to a row (label `change`), as [`Applied`] counts them.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RowChange {
    /// New to the mirror.
    Inserted,
    /// Its stored record changed.
    Updated,
    /// Marked deleted.
    Deleted,
    /// Marked deleted before, shown again by the API.
    Restored,
}

/// Writes a fixed word as a label value.
fn word(encoder: &mut LabelValueEncoder, w: &str) -> Result<(), std::fmt::Error> {
    std::fmt::Write::write_str(encoder, w)
}

impl EncodeLabelValue for WebhookOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        word(encoder, self.as_str())
    }
}

impl EncodeLabelValue for RunOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        word(encoder, self.as_str())
    }
}

impl EncodeLabelValue for RunKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        word(encoder, self.as_str())
    }
}

impl EncodeLabelValue for Route {
    /// The template as the service names its rate-limit buckets (`GET /customers/{id}`).
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        word(encoder, self.template())
    }
}

impl EncodeLabelValue for RequestStatus {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            RequestStatus::Code(c) => std::fmt::Write::write_fmt(encoder, format_args!("{c}")),
            RequestStatus::TransportError => word(encoder, "transport_error"),
            RequestStatus::Cancelled => word(encoder, "cancelled"),
        }
    }
}

impl EncodeLabelValue for Table {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        word(
            encoder,
            match self {
                Table::Customers => "customers",
                Table::Transactions => "transactions",
            },
        )
    }
}

impl EncodeLabelValue for RowChange {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        word(
            encoder,
            match self {
                RowChange::Inserted => "inserted",
                RowChange::Updated => "updated",
                RowChange::Deleted => "deleted",
                RowChange::Restored => "restored",
            },
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    outcome: WebhookOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    kind: RunKind,
    outcome: RunOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: RunKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Route,
    code: RequestStatus,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Route,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RowLabels {
    table: Table,
    change: RowChange,
}

/// Upper bounds of the run duration histogram, in seconds: a quiet `sync` takes
/// seconds, a backfill of 100,000 customers hours (README's measurements).
const RUN_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

fn run_histogram() -> Histogram {
    Histogram::new(RUN_BUCKETS)
}

/// The process's metrics: a cheap clone of one shared registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

struct Inner {
    registry: Registry,
    webhooks: Family<WebhookLabels, Counter>,
    runs: Family<RunLabels, Counter>,
    run_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    requests: Family<RequestLabels, Counter>,
    retries: Family<RouteLabels, Counter>,
    rate_limited: Family<RouteLabels, Counter>,
    rows: Family<RowLabels, Counter>,
    budget_limit: Family<RouteLabels, Gauge>,
    budget_remaining: Family<RouteLabels, Gauge>,
    budget_reset: Family<RouteLabels, Gauge>,
    last_success: Arc<LastSuccess>,
}

/// The last successful run's start and end, read at each scrape: the lag is computed
/// then, so it grows between runs without anything recording.
#[derive(Debug, Default)]
struct LastSuccess {
    /// `(started, finished)`, once a run succeeded (or the daemon read one from the mirror).
    times: Mutex<Option<(SystemTime, SystemTime)>>,
}

impl LastSuccess {
    fn get(&self) -> Option<(SystemTime, SystemTime)> {
        *self.times.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the later of the known success and this one (by start).
    fn set(&self, started: SystemTime, finished: SystemTime) {
        let mut t = self.times.lock().unwrap_or_else(|e| e.into_inner());
        if t.is_none_or(|(s, _)| s <= started) {
            *t = Some((started, finished));
        }
    }
}

/// Seconds since the Unix epoch (negative before it, which no run is).
fn unix_secs(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

impl Collector for LastSuccess {
    /// Both gauges are absent until a success is known: a lag of 0 would say "fresh".
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((started, finished)) = self.get() else {
            return Ok(());
        };
        let at = ConstGauge::new(unix_secs(finished));
        let e = encoder.encode_descriptor(
            "last_success_timestamp",
            "When the last successful run finished (unix time)",
            Some(&Unit::Seconds),
            at.metric_type(),
        )?;
        at.encode(e)?;
        let lag = SystemTime::now()
            .duration_since(started)
            .unwrap_or_default();
        let lag = ConstGauge::new(lag.as_secs_f64());
        let e = encoder.encode_descriptor(
            "mirror_lag",
            "Time since the last successful run started: the mirror holds the source as of then at least",
            Some(&Unit::Seconds),
            lag.metric_type(),
        )?;
        lag.encode(e)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric registered (families with no series yet).
    pub fn new() -> Metrics {
        let mut inner = Inner {
            registry: Registry::with_prefix("lomi_sync"),
            webhooks: Family::default(),
            runs: Family::default(),
            run_duration: Family::new_with_constructor(run_histogram),
            requests: Family::default(),
            retries: Family::default(),
            rate_limited: Family::default(),
            rows: Family::default(),
            budget_limit: Family::default(),
            budget_remaining: Family::default(),
            budget_reset: Family::default(),
            last_success: Arc::default(),
        };
        let r = &mut inner.registry;
        r.register(
            "webhook_deliveries",
            "Webhook deliveries by outcome (received counts every delivery)",
            inner.webhooks.clone(),
        );
        r.register(
            "runs",
            "Runs by kind and how they ended",
            inner.runs.clone(),
        );
        // The unit is in the name, without a `# UNIT` line: strict OpenMetrics parsers
        // (the tests' among them) refuse one on a histogram.
        r.register(
            "run_duration_seconds",
            "Wall-clock time of runs, by kind, whatever their outcome",
            inner.run_duration.clone(),
        );
        r.register(
            "requests",
            "HTTP attempts to the API (retries included) by route template and status code",
            inner.requests.clone(),
        );
        r.register(
            "retries",
            "HTTP attempts that were retries, by route template",
            inner.retries.clone(),
        );
        r.register(
            "rate_limited",
            "HTTP 429 responses, by route template",
            inner.rate_limited.clone(),
        );
        r.register(
            "rows_written",
            "Mirror rows committed, by table and change",
            inner.rows.clone(),
        );
        r.register(
            "rate_limit_limit",
            "X-RateLimit-Limit last seen on the route: requests per window",
            inner.budget_limit.clone(),
        );
        r.register(
            "rate_limit_remaining",
            "X-RateLimit-Remaining last seen on the route: requests left in its window, for every client of the key",
            inner.budget_remaining.clone(),
        );
        r.register_with_unit(
            "rate_limit_reset_timestamp",
            "When the route's window was last said to reset (unix time)",
            Unit::Seconds,
            inner.budget_reset.clone(),
        );
        r.register_collector(Box::new(inner.last_success.clone()));
        Metrics {
            inner: Arc::new(inner),
        }
    }

    /// Counts one webhook delivery's outcome.
    pub fn webhook(&self, outcome: WebhookOutcome) {
        self.inner
            .webhooks
            .get_or_create(&WebhookLabels { outcome })
            .inc();
    }

    /// Counts one HTTP attempt on `route` and what it came back with; a 429 is also
    /// counted as rate limited.
    pub fn request(&self, route: Route, code: RequestStatus) {
        self.inner
            .requests
            .get_or_create(&RequestLabels { route, code })
            .inc();
        if code == RequestStatus::Code(429) {
            self.inner
                .rate_limited
                .get_or_create(&RouteLabels { route })
                .inc();
        }
    }

    /// Counts one retry on `route` (its attempt is counted by [`Metrics::request`]).
    pub fn retry(&self, route: Route) {
        self.inner
            .retries
            .get_or_create(&RouteLabels { route })
            .inc();
    }

    /// What a response's `X-RateLimit-*` headers said of `route`'s window: `limit`,
    /// `remaining`, and the reset `reset` from now.
    pub fn rate_limit(&self, route: Route, limit: u32, remaining: u32, reset: Duration) {
        let labels = RouteLabels { route };
        let i = &self.inner;
        i.budget_limit.get_or_create(&labels).set(i64::from(limit));
        i.budget_remaining
            .get_or_create(&labels)
            .set(i64::from(remaining));
        let at = unix_secs(SystemTime::now() + reset).round() as i64;
        i.budget_reset.get_or_create(&labels).set(at);
    }

    /// Records a run that ended with `outcome` after `duration`, started at `started`
    /// (wall clock); a success sets the last success time and the lag's origin.
    pub fn run(&self, kind: RunKind, outcome: RunOutcome, started: SystemTime, duration: Duration) {
        self.inner
            .runs
            .get_or_create(&RunLabels { kind, outcome })
            .inc();
        self.inner
            .run_duration
            .get_or_create(&KindLabels { kind })
            .observe(duration.as_secs_f64());
        if outcome == RunOutcome::Succeeded {
            self.inner.last_success.set(started, started + duration);
        }
    }

    /// A successful run this process did not make (the mirror's last one, read when the
    /// daemon starts), so the lag is known before the first run ends. An older one than
    /// already known changes nothing.
    pub fn seed_last_success(&self, started: SystemTime, finished: SystemTime) {
        self.inner.last_success.set(started, finished);
    }

    /// Counts the rows a run committed, by table and change (every series appears, at
    /// zero when nothing of that kind was written).
    pub fn rows_written(&self, a: &Applied) {
        use RowChange::*;
        use Table::*;
        for (table, change, n) in [
            (Customers, Inserted, a.customers_inserted),
            (Customers, Updated, a.customers_updated),
            (Customers, Deleted, a.customers_deleted),
            (Customers, Restored, a.customers_restored),
            (Transactions, Inserted, a.transactions_inserted),
            (Transactions, Updated, a.transactions_updated),
            (Transactions, Deleted, a.transactions_deleted),
            (Transactions, Restored, a.transactions_restored),
        ] {
            self.inner
                .rows
                .get_or_create(&RowLabels { table, change })
                .inc_by(n);
        }
    }

    /// The text exposition (`text/plain; version=0.0.4`-compatible OpenMetrics text).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line `series` (name and labels, as rendered).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().expect("a number"))
    }

    #[test]
    fn a_counted_webhook_outcome_appears_in_the_exposition() {
        let metrics = Metrics::new();
        metrics.webhook(WebhookOutcome::Duplicate);
        metrics.webhook(WebhookOutcome::Duplicate);
        let text = metrics.render();
        let series = "lomi_sync_webhook_deliveries_total{outcome=\"duplicate\"}";
        assert_eq!(value(&text, series), Some(2.0), "{text}");
    }

    #[test]
    fn a_recorded_run_counts_by_kind_and_outcome_and_times_it() {
        let m = Metrics::new();
        let t0 = SystemTime::now() - Duration::from_secs(60);
        m.run(
            RunKind::Backfill,
            RunOutcome::Succeeded,
            t0,
            Duration::from_secs(3),
        );
        m.run(
            RunKind::Sync,
            RunOutcome::Deferred,
            t0,
            Duration::from_secs(20),
        );
        m.run(
            RunKind::Sync,
            RunOutcome::Deferred,
            t0,
            Duration::from_secs(2),
        );
        let text = m.render();
        let runs = |kind: &str, outcome: &str| {
            let s = format!("lomi_sync_runs_total{{kind=\"{kind}\",outcome=\"{outcome}\"}}");
            value(&text, &s)
        };
        assert_eq!(runs("backfill", "succeeded"), Some(1.0), "{text}");
        assert_eq!(runs("sync", "deferred"), Some(2.0), "{text}");
        assert_eq!(runs("sync", "succeeded"), None, "{text}");
        let h = "lomi_sync_run_duration_seconds";
        assert_eq!(
            value(&text, &format!("{h}_count{{kind=\"sync\"}}")),
            Some(2.0)
        );
        assert_eq!(
            value(&text, &format!("{h}_sum{{kind=\"sync\"}}")),
            Some(22.0)
        );
        // 2 s falls in the 5 s bucket, 20 s only from the 30 s one.
        let le = |b: &str| value(&text, &format!("{h}_bucket{{le=\"{b}\",kind=\"sync\"}}"));
        assert_eq!(
            (le("1.0"), le("5.0"), le("15.0"), le("30.0")),
            (Some(0.0), Some(1.0), Some(1.0), Some(2.0)),
            "{text}"
        );
    }

    #[test]
    fn only_a_success_sets_the_last_success_time_and_the_lag_grows_from_its_start() {
        let m = Metrics::new();
        let t0 = SystemTime::now() - Duration::from_secs(600);
        m.run(
            RunKind::Sync,
            RunOutcome::Failed,
            t0,
            Duration::from_secs(5),
        );
        let text = m.render();
        assert!(!text.contains("lomi_sync_mirror_lag_seconds"), "{text}");
        assert!(
            !text.contains("lomi_sync_last_success_timestamp_seconds"),
            "{text}"
        );
        m.run(
            RunKind::Sync,
            RunOutcome::Succeeded,
            t0,
            Duration::from_secs(5),
        );
        let text = m.render();
        let lag = value(&text, "lomi_sync_mirror_lag_seconds").expect(&text);
        assert!((600.0..660.0).contains(&lag), "{lag}");
        let at = value(&text, "lomi_sync_last_success_timestamp_seconds").expect(&text);
        assert!((at - (unix_secs(t0) + 5.0)).abs() < 1e-3, "{at}");
        // An older success (the mirror's, read at start) does not move it back.
        m.seed_last_success(t0 - Duration::from_secs(3600), t0);
        let again = value(&m.render(), "lomi_sync_last_success_timestamp_seconds");
        assert_eq!(again, Some(at));
    }

    #[test]
    fn a_429_is_a_request_and_a_rate_limited_one_and_a_retry_is_counted_by_route() {
        let m = Metrics::new();
        let r = Route::CustomerTransactions;
        m.request(r, RequestStatus::Code(429));
        m.retry(r);
        m.request(r, RequestStatus::Code(429));
        m.retry(r);
        m.request(r, RequestStatus::Code(200));
        m.request(Route::ListCustomers, RequestStatus::TransportError);
        m.request(Route::ListCustomers, RequestStatus::Cancelled);
        let text = m.render();
        let route = "route=\"GET /customers/{id}/transactions\"";
        let req = |route: &str, code: &str| {
            value(
                &text,
                &format!("lomi_sync_requests_total{{{route},code=\"{code}\"}}"),
            )
        };
        assert_eq!(req(route, "429"), Some(2.0), "{text}");
        assert_eq!(req(route, "200"), Some(1.0), "{text}");
        let list = "route=\"GET /customers\"";
        assert_eq!(req(list, "transport_error"), Some(1.0), "{text}");
        assert_eq!(req(list, "cancelled"), Some(1.0), "{text}");
        assert_eq!(
            value(&text, &format!("lomi_sync_rate_limited_total{{{route}}}")),
            Some(2.0)
        );
        assert_eq!(
            value(&text, &format!("lomi_sync_rate_limited_total{{{list}}}")),
            None
        );
        assert_eq!(
            value(&text, &format!("lomi_sync_retries_total{{{route}}}")),
            Some(2.0)
        );
    }

    #[test]
    fn rows_written_follow_what_the_store_applied() {
        let m = Metrics::new();
        let a = Applied {
            pages: 9,
            customers_inserted: 1,
            customers_updated: 2,
            customers_deleted: 3,
            customers_restored: 4,
            transactions_inserted: 5,
            transactions_updated: 6,
            transactions_deleted: 7,
            transactions_restored: 8,
        };
        m.rows_written(&a);
        m.rows_written(&a);
        let text = m.render();
        let rows = |t: &str, c: &str| {
            value(
                &text,
                &format!("lomi_sync_rows_written_total{{table=\"{t}\",change=\"{c}\"}}"),
            )
        };
        assert_eq!(rows("customers", "inserted"), Some(2.0), "{text}");
        assert_eq!(rows("customers", "restored"), Some(8.0), "{text}");
        assert_eq!(rows("transactions", "updated"), Some(12.0), "{text}");
        assert_eq!(rows("transactions", "deleted"), Some(14.0), "{text}");
    }

    #[test]
    fn the_rate_limit_headers_set_the_route_budget_gauges() {
        let m = Metrics::new();
        let r = Route::GetCustomer;
        m.rate_limit(r, 5000, 4200, Duration::from_secs(600));
        m.rate_limit(r, 5000, 4100, Duration::from_secs(590));
        let text = m.render();
        let l = "{route=\"GET /customers/{id}\"}";
        assert_eq!(
            value(&text, &format!("lomi_sync_rate_limit_remaining{l}")),
            Some(4100.0)
        );
        assert_eq!(
            value(&text, &format!("lomi_sync_rate_limit_limit{l}")),
            Some(5000.0)
        );
        let reset = value(
            &text,
            &format!("lomi_sync_rate_limit_reset_timestamp_seconds{l}"),
        )
        .expect(&text);
        let expect = unix_secs(SystemTime::now()) + 590.0;
        assert!((reset - expect).abs() < 5.0, "{reset} {expect}");
    }

    /// Every label value but a route's template is a lowercase snake_case word.
    #[test]
    fn label_values_are_lowercase_snake_case() {
        let m = Metrics::new();
        for o in [
            WebhookOutcome::Received,
            WebhookOutcome::Applied,
            WebhookOutcome::Duplicate,
            WebhookOutcome::Rejected,
        ] {
            m.webhook(o);
        }
        let t = SystemTime::now();
        for kind in [RunKind::Backfill, RunKind::Sync, RunKind::Full] {
            for o in [
                RunOutcome::Succeeded,
                RunOutcome::Failed,
                RunOutcome::Interrupted,
                RunOutcome::Deferred,
            ] {
                m.run(kind, o, t, Duration::ZERO);
            }
        }
        for code in [
            RequestStatus::Code(503),
            RequestStatus::TransportError,
            RequestStatus::Cancelled,
        ] {
            m.request(Route::Transaction, code);
        }
        m.rows_written(&Applied::default());
        let text = m.render();
        let mut seen = 0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some(labels) = line.split_once('{').map(|(_, rest)| rest) else {
                continue;
            };
            let labels = labels.rsplit_once('}').expect(line).0;
            for pair in labels.split("\",") {
                let (key, v) = pair.split_once("=\"").expect(line);
                let v = v.trim_end_matches('"');
                if key == "route" || key == "le" {
                    continue;
                }
                seen += 1;
                assert!(
                    !v.is_empty()
                        && v.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{key}={v:?} in {line}"
                );
            }
        }
        assert!(seen > 40, "{seen} label values checked:\n{text}");
    }
}
