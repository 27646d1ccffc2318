//! Progress of a run: a bar with an ETA on a terminal, a log line every 10 seconds
//! otherwise (journald and CI logs do not want carriage returns).
//!
//! Both measure requests, not customers: a backfill's time goes into one transactions
//! read per active customer, paced by `api.requests_per_second`, while the list of
//! customers is read in seconds. Counting listed customers showed "ETA 4s" for a
//! 12-minute run; requests sent against requests expected (from the run's estimate)
//! gives the real remaining time. And they tick on their own, reading the client's
//! request counter: the engine reports once per list page, and at 4 requests/s a page
//! of 200 customers is 50 s of transactions reads, which logged nothing for that long.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lomi_sync::api::ApiClient;
use lomi_sync::api::budget::RouteReport;
use lomi_sync::sync::estimate::Pace;
use lomi_sync::sync::{Progress, ProgressInfo};
use tokio::task::JoinHandle;

pub trait Reporter: Progress {
    fn finish(&self);
}

/// How often a log line is written off a terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// `expected`: the requests the run should send in all, when known; `pace`: the client's
/// limits, a floor under the ETA (the first seconds run at the limiter's burst).
pub fn for_terminal(
    label: &str,
    expected: Option<u64>,
    pace: Pace,
    client: &ApiClient,
) -> Box<dyn Reporter> {
    let terminal = std::io::stderr().is_terminal();
    let sink = if terminal {
        let bar = ProgressBar::with_draw_target(expected, ProgressDrawTarget::stderr());
        let template = if expected.is_some() {
            "{prefix} [{bar:30}] {pos}/{len} requests ({per_sec}) {msg}"
        } else {
            "{prefix} {pos} requests ({per_sec}, {elapsed}) {msg}"
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Sink::Bar(bar)
    } else {
        Sink::Lines {
            last: Mutex::new(None),
        }
    };
    let shared = Arc::new(Shared {
        label: label.to_string(),
        expected,
        pace,
        started: Instant::now(),
        info: Mutex::new(ProgressInfo::default()),
        sink,
    });
    // Every second: a bar redraws, lines are held to one per LINE_EVERY by `show`.
    let every = Duration::from_secs(1);
    let ticker = {
        let shared = shared.clone();
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let held = held_route(&client.route_budgets());
                shared.show(client.counters().requests.load(Ordering::Relaxed), held);
            }
        })
    };
    Box::new(Reporting { shared, ticker })
}

enum Sink {
    Bar(ProgressBar),
    /// When the last line was logged; `None` until the first, which is logged at once.
    Lines {
        last: Mutex<Option<Instant>>,
    },
}

struct Shared {
    label: String,
    expected: Option<u64>,
    pace: Pace,
    started: Instant,
    /// The engine's latest report (phase, customers listed).
    info: Mutex<ProgressInfo>,
    sink: Sink,
}

impl Shared {
    fn eta(&self, requests: u64) -> Option<Duration> {
        let expected = self.expected?;
        eta(requests, expected, self.started.elapsed(), &self.pace)
    }

    fn show(&self, requests: u64, held: Option<String>) {
        let info = self.info.lock().expect("progress lock").clone();
        let eta = self
            .eta(requests)
            .map(|d| humantime::format_duration(d).to_string());
        match &self.sink {
            Sink::Bar(bar) => {
                if let Some(expected) = self.expected {
                    bar.set_length(expected.max(requests));
                }
                bar.set_position(requests);
                bar.set_message(format!(
                    "ETA {} · {} customers listed · {}{}",
                    eta.as_deref().unwrap_or("?"),
                    info.customers_seen,
                    info.phase,
                    held.as_deref()
                        .map(|h| format!(" · {h}"))
                        .unwrap_or_default()
                ));
            }
            Sink::Lines { last } => {
                let mut last = last.lock().expect("progress lock");
                if last.is_some_and(|t| t.elapsed() < LINE_EVERY) {
                    return;
                }
                *last = Some(Instant::now());
                tracing::info!(
                    run = %self.label,
                    phase = info.phase.as_str(),
                    customers = info.customers_seen,
                    listed_of = info.customers_total,
                    requests,
                    requests_expected = self.expected,
                    eta = eta.as_deref().unwrap_or("unknown"),
                    waiting = held.as_deref().unwrap_or(""),
                    "progress"
                );
            }
        }
    }
}

struct Reporting {
    shared: Arc<Shared>,
    ticker: JoinHandle<()>,
}

impl Progress for Reporting {
    fn update(&self, p: &ProgressInfo) {
        *self.shared.info.lock().expect("progress lock") = p.clone();
        self.shared.show(p.requests, None);
    }
}

impl Reporter for Reporting {
    fn finish(&self) {
        self.ticker.abort();
        if let Sink::Bar(bar) = &self.shared.sink {
            bar.finish_and_clear();
        }
    }
}

/// Why the run is waiting, if a 429 holds a route back: the route held longest and
/// until when (UTC), as `GET /customers rate limited, waiting until 09:15:00Z`.
fn held_route(routes: &[RouteReport]) -> Option<String> {
    let r = routes
        .iter()
        .filter(|r| r.held_until.is_some())
        .max_by_key(|r| r.held_until)?;
    let until: chrono::DateTime<chrono::Utc> = r.held_until?.into();
    Some(format!(
        "{} rate limited, waiting until {}",
        r.route.template(),
        until.format("%H:%M:%SZ")
    ))
}

/// Time left for `expected - done` requests: at the rate observed so far, and never less
/// than the client's limits allow (its first requests go out in a burst).
pub fn eta(done: u64, expected: u64, elapsed: Duration, pace: &Pace) -> Option<Duration> {
    let left = expected.saturating_sub(done);
    let paced = pace.duration(left);
    let observed = (done > 0 && !elapsed.is_zero()).then(|| {
        let per_sec = done as f64 / elapsed.as_secs_f64();
        Duration::from_secs((left as f64 / per_sec).round() as u64)
    });
    let secs = match (observed, paced) {
        (Some(o), Some(p)) => o.max(p),
        (o, p) => o.or(p)?,
    };
    Some(Duration::from_secs(secs.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(rate: f64) -> Pace {
        Pace {
            rate,
            cap: 0,
            window: Duration::from_secs(900),
        }
    }

    #[test]
    fn a_route_held_by_a_429_is_named_with_its_wait() {
        use lomi_sync::api::budget::Route;
        let at = |secs| std::time::UNIX_EPOCH + Duration::from_secs(secs);
        let report = |route, held_until| RouteReport {
            route,
            limit: 5000,
            remaining: 0,
            reset_at: at(0),
            rate_limited: 1,
            requests: 10,
            window: Duration::from_secs(900),
            held_until,
        };
        assert_eq!(held_route(&[report(Route::ListCustomers, None)]), None);
        // 2025-03-01T09:15:00Z and 09:00:00Z: the longer wait is named.
        let routes = [
            report(Route::ListCustomers, Some(at(1_740_819_600))),
            report(Route::CustomerTransactions, Some(at(1_740_820_500))),
        ];
        assert_eq!(
            held_route(&routes).as_deref(),
            Some("GET /customers/{id}/transactions rate limited, waiting until 09:15:00Z")
        );
    }

    #[test]
    fn eta_follows_requests_not_customers() {
        // 300 of 2,970 requests in 75 s (4/s): 2,670 left take 667.5 s.
        assert_eq!(
            eta(300, 2970, Duration::from_secs(75), &pace(0.0)),
            Some(Duration::from_secs(668))
        );
        assert_eq!(eta(0, 2970, Duration::from_secs(5), &pace(0.0)), None);
        assert_eq!(
            eta(3000, 2970, Duration::from_secs(750), &pace(4.0)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn eta_is_never_below_what_the_rate_allows() {
        // A burst of 8 requests in 0.2 s would promise 1,776 more in 44 s; at 4/s they
        // take 7 min 24 s.
        assert_eq!(
            eta(8, 1784, Duration::from_millis(200), &pace(4.0)),
            Some(Duration::from_secs(444))
        );
        assert_eq!(
            eta(0, 1784, Duration::ZERO, &pace(4.0)),
            Some(Duration::from_secs(446))
        );
    }
}
