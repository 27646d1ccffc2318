//! Sending webhook deliveries: one task per delivery (an event to one endpoint), with
//! the vendor's schedule (NOTES.md, Webhooks: a ~4 s timeout, ~5 retries with
//! exponential backoff from 5 s, then given up) and the faults of [`WebhookFaults`],
//! each decided by [`draw`] so that a seed gives the same faults whatever the timing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::restyle::Restyle;
use super::webhooks::{
    DeliveryRecord, Draw, Endpoint, TxEvent, WebhookFaults, Webhooks, bump, draw, envelope,
    loopback_target, sign,
};
use super::{Sim, now_ms};

/// The key a wrongly signed attempt is signed with.
const WRONG_KEY: &[u8] = b"whsec_not_the_endpoint_secret";

/// One delivery: everything its task needs, shared by its attempts.
struct Delivery {
    event_id: String,
    event: &'static str,
    event_seq: u64,
    body: Arc<[u8]>,
    endpoint: Arc<Endpoint>,
    target: url::Url,
    copy: u8,
    reorder: bool,
}

impl Webhooks {
    /// Schedules the deliveries of `events` (called while the data set's write lock is
    /// held, so events are scheduled in the order they happened).
    pub(super) fn dispatch(self: &Arc<Self>, events: Vec<TxEvent>, restyle: &Restyle) {
        let Some(runtime) = self.runtime() else {
            tracing::warn!(
                events = events.len(),
                "webhook events not delivered: no async runtime"
            );
            return;
        };
        let switches = self.switches();
        for e in events {
            bump(&self.counts.events);
            let endpoints = self.subscribed(e.kind);
            if endpoints.is_empty() {
                continue;
            }
            let event_id = self.event_id(e.seq);
            let row = Webhooks::served_row(&e.row, restyle);
            let body: Arc<[u8]> = envelope(&event_id, e.kind, e.at_ms, &row).into();
            for endpoint in endpoints {
                for d in self.plan(&e, &event_id, &body, endpoint, &switches) {
                    bump(&self.counts.deliveries);
                    self.counts.in_flight.fetch_add(1, Ordering::Relaxed);
                    runtime.spawn(self.clone().deliver(d));
                }
            }
        }
    }

    /// The deliveries of one event to one endpoint: none (refused, dropped), one, or two
    /// (duplicated).
    fn plan(
        &self,
        e: &TxEvent,
        event_id: &str,
        body: &Arc<[u8]>,
        endpoint: Arc<Endpoint>,
        s: &WebhookFaults,
    ) -> Vec<Delivery> {
        let Some(target) = loopback_target(&endpoint.url) else {
            bump(&self.counts.refused);
            tracing::warn!(
                webhook = endpoint.id,
                "webhook not delivered: the simulator delivers only to http on loopback"
            );
            return Vec::new();
        };
        let chance = |d: Draw, p: f64| p > 0.0 && draw(self.seed, e.seq, endpoint.seq, 0, 0, d) < p;
        if chance(Draw::Drop, s.p_drop) {
            bump(&self.counts.dropped);
            return Vec::new();
        }
        let copies = if chance(Draw::Duplicate, s.p_duplicate) {
            bump(&self.counts.duplicated);
            2
        } else {
            1
        };
        let reorder = chance(Draw::Reorder, s.p_reorder);
        if reorder {
            bump(&self.counts.reordered);
        }
        (0..copies)
            .map(|copy| Delivery {
                event_id: event_id.to_owned(),
                event: e.kind.as_str(),
                event_seq: e.seq,
                body: body.clone(),
                endpoint: endpoint.clone(),
                target: target.clone(),
                copy,
                reorder,
            })
            .collect()
    }

    /// Attempts `d` until an attempt is acknowledged (2xx) or the retries run out. The
    /// switches are read at each step, so a test can change them mid-way.
    async fn deliver(self: Arc<Self>, d: Delivery) {
        if d.reorder {
            let hold = self.switches().reorder_delay_ms;
            tokio::time::sleep(Duration::from_millis(hold)).await;
        }
        let mut attempt = 1u32;
        loop {
            let s = self.switches();
            let p = s.p_bad_signature;
            let bad = p > 0.0
                && draw(
                    self.seed,
                    d.event_seq,
                    d.endpoint.seq,
                    d.copy,
                    attempt,
                    Draw::BadSignature,
                ) < p;
            if self.attempt(&d, attempt, !bad, &s).await {
                break;
            }
            if attempt > s.max_retries {
                bump(&self.counts.given_up);
                tracing::debug!(event = d.event_id, "webhook delivery given up");
                break;
            }
            tokio::time::sleep(s.backoff(attempt)).await;
            attempt += 1;
        }
        self.counts.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// One POST; true when acknowledged.
    async fn attempt(&self, d: &Delivery, attempt: u32, good: bool, s: &WebhookFaults) -> bool {
        let key = if good {
            d.endpoint.secret.as_bytes()
        } else {
            bump(&self.counts.bad_signatures);
            WRONG_KEY
        };
        let signature = sign(key, &d.body);
        bump(&self.counts.attempts);
        let sent_at_ms = now_ms();
        let result = self
            .http()
            .post(d.target.clone())
            .timeout(Duration::from_millis(s.timeout_ms.max(1)))
            .header("content-type", "application/json")
            .header("x-lomi-signature", signature)
            .header("x-lomi-event", d.event)
            .body(d.body.to_vec())
            .send()
            .await;
        let (status, outcome) = match result {
            Ok(res) if res.status().is_success() => (Some(res.status().as_u16()), "acknowledged"),
            Ok(res) => (Some(res.status().as_u16()), "rejected"),
            Err(e) if e.is_timeout() => (None, "timeout"),
            Err(_) => (None, "error"),
        };
        let acknowledged = outcome == "acknowledged";
        if acknowledged {
            bump(&self.counts.acknowledged);
        } else {
            bump(&self.counts.failed_attempts);
            if outcome == "timeout" {
                bump(&self.counts.timeouts);
            }
        }
        self.record(DeliveryRecord {
            event_id: d.event_id.clone(),
            event: d.event.to_owned(),
            webhook_id: d.endpoint.id.clone(),
            copy: d.copy,
            attempt,
            signed_correctly: good,
            status,
            outcome: outcome.to_owned(),
            sent_at_ms,
        });
        acknowledged
    }
}

/// Runs a burst: `count` new transactions at `per_second`, created in small batches
/// every few milliseconds so that the rate holds whatever the timer's resolution.
pub(super) async fn run_burst(sim: Sim, count: u32, per_second: f64) {
    let started = tokio::time::Instant::now();
    let mut created = 0u32;
    while created < count {
        let due = (started.elapsed().as_secs_f64() * per_second).floor() as u64 + 1;
        let n = (due.min(u64::from(count)) as u32).saturating_sub(created);
        if n > 0 {
            let report = sim.mutate(&super::Mutation {
                add_tx: n,
                ..super::Mutation::default()
            });
            created += n;
            let mut b = super::lock(&sim.inner.webhooks.burst);
            b.created = created;
            b.transaction_ids.extend(report.tx_added);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    super::lock(&sim.inner.webhooks.burst).running = false;
}
