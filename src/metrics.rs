//! Prometheus metrics of the daemon, served at `GET /metrics` by the HTTP listener.
//!
//! One [`Metrics`] handle per process, cloned into whatever records (it is an `Arc`);
//! the exposition is the `prometheus-client` crate's text format (OpenMetrics), so a
//! scraper and the tests' parser read it as Prometheus does.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// What became of one webhook delivery.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    outcome: WebhookOutcome,
}

/// The process's metrics: a cheap clone of one shared registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    webhooks: Family<WebhookLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric registered (at zero).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("lomi_sync");
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by outcome (received counts every delivery)",
            webhooks.clone(),
        );
        Metrics {
            inner: Arc::new(Inner { registry, webhooks }),
        }
    }

    /// Counts one webhook delivery's outcome.
    pub fn webhook(&self, outcome: WebhookOutcome) {
        self.inner
            .webhooks
            .get_or_create(&WebhookLabels { outcome })
            .inc();
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

    #[test]
    fn a_counted_webhook_outcome_appears_in_the_exposition() {
        let metrics = Metrics::new();
        metrics.webhook(WebhookOutcome::Duplicate);
        metrics.webhook(WebhookOutcome::Duplicate);
        let text = metrics.render();
        assert!(
            text.contains("lomi_sync_webhook_deliveries_total{outcome=\"Duplicate\"} 2"),
            "{text}"
        );
    }
}
