//! One request budget per route template, paced by what the server says.
//!
//! The live service counts requests per client IP and per route, in fixed windows
//! (5,000 per 15 minutes), and tells the client where the route stands on every response
//! (`X-RateLimit-Limit`, `-Remaining`, `-Reset` = seconds until the window resets; see
//! `shared/api/NOTES.md`). Behind a shared egress IP the merchant's own systems draw on
//! the same buckets, so a route may spend only `max(0, R - (1 - share) * L)` of what is
//! left, spread evenly until the reset: `share` (`api.budget_share`) of each window at
//! most, never more than the server says remains.
//!
//! Until a route has seen those headers (an older server, the simulator without
//! `--rate-limit`), its requests are paced by the configured averages
//! ([`RateLimiter`]), shared by every route as before.
//!
//! Why not `governor`: its keyed limiters are GCRA with a fixed quota, while here the
//! quota and the window's end change with every response (and other clients). The
//! decision is the pure [`next_start`]; the state around it is a few fields per route.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::limiter::RateLimiter;

/// A route template: the unit the service counts its rate limit in. A new endpoint gets a
/// variant here and in [`Route::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// `GET /customers`, the paged customer list.
    ListCustomers,
    /// `GET /customers/{id}`.
    GetCustomer,
    /// `GET /customers/{id}/transactions`, one customer's transactions.
    CustomerTransactions,
    /// `GET /transactions`, the org-wide feed.
    Transactions,
    /// `GET /transactions/{id}`.
    Transaction,
    /// `GET /webhooks`, the registered webhook endpoints.
    ListWebhooks,
    /// `POST /webhooks`, a webhook endpoint's registration.
    RegisterWebhook,
}

impl Route {
    /// Every route, in a fixed order (reports and `status` list them in it).
    pub const ALL: [Route; 7] = [
        Route::ListCustomers,
        Route::GetCustomer,
        Route::CustomerTransactions,
        Route::Transactions,
        Route::Transaction,
        Route::ListWebhooks,
        Route::RegisterWebhook,
    ];

    /// The route as the service names it in its rate-limit buckets (`"GET /customers/{id}"`).
    pub fn template(self) -> &'static str {
        match self {
            Route::ListCustomers => "GET /customers",
            Route::GetCustomer => "GET /customers/{id}",
            Route::CustomerTransactions => "GET /customers/{id}/transactions",
            Route::Transactions => "GET /transactions",
            Route::Transaction => "GET /transactions/{id}",
            Route::ListWebhooks => "GET /webhooks",
            Route::RegisterWebhook => "POST /webhooks",
        }
    }
}

/// The three `X-RateLimit-*` headers of one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// `X-RateLimit-Limit`: requests the route allows per window (5,000 live; NOTES.md, "Errors").
    pub limit: u32,
    /// `X-RateLimit-Remaining`: requests left in the current window when the response was sent.
    pub remaining: u32,
    /// Until the window resets (the header has whole seconds, rounded up by the server).
    pub reset: Duration,
}

/// The requests a route may still start in its current window: what remains minus the
/// share kept for others, `(1 - share) * limit`. Rounded down, so a fractional share
/// never lets one request too many through.
pub fn allowance(limit: u32, remaining: u32, share: f64) -> u32 {
    let ours = (share * f64::from(limit) + 1e-9).floor().max(0.0) as u32;
    remaining.saturating_sub(limit.saturating_sub(ours.min(limit)))
}

/// The pacing decision: the earliest start of a route's next request, given the server's
/// `limit`, what `remaining` (less the requests already started since), the window's end
/// `reset_at`, the share of each window this client may use, and when the route's
/// previous request started. The allowance left is spread evenly over the time left; with
/// none left, nothing starts before the reset.
pub fn next_start(
    limit: u32,
    remaining: u32,
    reset_at: Instant,
    share: f64,
    last_start: Option<Instant>,
    now: Instant,
) -> Instant {
    let left = allowance(limit, remaining, share);
    if left == 0 {
        return reset_at.max(now);
    }
    match last_start {
        // `left` more starts evenly from `last` to the reset: `left + 1` equal gaps, the
        // last one ending at the reset.
        Some(last) if last < reset_at => {
            let gap = (reset_at - last) / (left + 1);
            (last + gap).max(now)
        }
        _ => now,
    }
}

/// What the client last knew of one route, for `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteReport {
    /// The route reported on.
    pub route: Route,
    /// The last `X-RateLimit-Limit` seen: requests per window.
    pub limit: u32,
    /// The last `X-RateLimit-Remaining` seen.
    pub remaining: u32,
    /// When the window was said to reset (wall clock).
    pub reset_at: SystemTime,
    /// 429s met on this route by this client.
    pub rate_limited: u64,
    /// Requests sent on this route by this client.
    pub requests: u64,
    /// The window's length, as the longest reset seen suggests.
    pub window: Duration,
    /// Until when a 429 holds the route back (wall clock), if it does now.
    pub held_until: Option<SystemTime>,
}

/// How long `requests` take on a route whose windows allow `limit` per `window`, at
/// `share` of each: whole windows for all but the last, spread evenly.
pub fn route_time(requests: u64, limit: u32, window: Duration, share: f64) -> Option<Duration> {
    let per_window = allowance(limit, limit, share);
    (per_window > 0).then(|| window.mul_f64(requests as f64 / f64::from(per_window)))
}

/// A walk's time under per-route budgets: the routes run side by side, so the slowest
/// route sets it. `None` when no route has reported its budget.
pub fn estimate(routes: &[RouteReport], share: f64) -> Option<Duration> {
    routes
        .iter()
        .filter(|r| r.limit > 0)
        .filter_map(|r| route_time(r.requests, r.limit, r.window, share))
        .max()
}

/// A started request: its sequence number on the route and when it started, so that the
/// response's headers can be placed against the requests started after it.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    route: Route,
    seq: u64,
    sent_at: Instant,
}

/// The server's view of a route's window, as last known.
#[derive(Clone, Copy, Debug)]
struct Known {
    limit: u32,
    remaining: u32,
    /// The sequence number of the request whose response said `remaining`.
    seq: u64,
    /// The earliest upper bound of the reset seen (the header is rounded up).
    reset_at: Instant,
    /// The longest reset seen: the window's length, to roll on to the next window.
    window: Duration,
}

#[derive(Debug, Default)]
struct RouteState {
    known: Option<Known>,
    /// Requests started on the route (their sequence numbers are 1..=started).
    started: u64,
    last_start: Option<Instant>,
    paused_until: Option<Instant>,
    /// Bumped by a 429: requests that waited for a slot planned before it plan again.
    holds: u64,
    rate_limited: u64,
    /// The last observation and when it said the window resets, for `status`.
    last_seen: Option<(Observation, SystemTime)>,
    /// When the route's first request went out, once the server is known to send the
    /// headers (on another route): the others wait for its answer.
    probe: Option<Instant>,
    /// Requests sent.
    sent: u64,
}

/// Where one acquire landed: a time to wait for, or the fallback limiter; with the
/// request's sequence number and the route's hold count when planned.
enum Plan {
    At(Instant, u64, u64),
    Fallback(u64, u64),
    /// Nothing booked: plan again at this time (a first request on the route is out and
    /// its headers will say how to pace the rest).
    Later(Instant),
    /// Nothing booked: the start would be further off than the deferral threshold.
    Deferred(Instant),
}

/// How long the other requests of a route wait for its first response's headers before
/// the configured averages pace them.
const PROBE_WAIT: Duration = Duration::from_secs(5);
/// How often they look.
const PROBE_POLL: Duration = Duration::from_millis(5);

/// Why [`RouteBudgets::acquire`] gave no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The cancel token fired.
    Cancelled,
    /// The route's next slot is further off than the deferral threshold (see
    /// [`RouteBudgets::with_deferral`]): nothing was sent, and the route may go on at
    /// `until`.
    Deferred {
        /// When the route's next slot opens.
        until: Instant,
    },
}

/// Every route's budget; shared by the tasks of a run.
#[derive(Debug)]
pub struct RouteBudgets {
    share: f64,
    fallback: RateLimiter,
    /// A slot planned further off than this is refused rather than waited for.
    defer_after: Option<Duration>,
    routes: Mutex<HashMap<Route, RouteState>>,
}

impl RouteBudgets {
    /// Budgets that use at most `share` (`api.budget_share`, 0 to 1) of each route's window,
    /// and pace routes that have sent no rate-limit headers yet by `fallback`.
    pub fn new(share: f64, fallback: RateLimiter) -> RouteBudgets {
        RouteBudgets {
            share,
            fallback,
            defer_after: None,
            routes: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses ([`Refusal::Deferred`]) a slot more than `defer_after` away instead of
    /// waiting for it: a scheduled run stops at a checkpoint and the daemon resumes it
    /// later, rather than sit through a 15-minute window with a run open.
    pub fn with_deferral(mut self, defer_after: Option<Duration>) -> RouteBudgets {
        self.defer_after = defer_after;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Route, RouteState>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for `route`'s next slot; refused if `cancel` fires first, or if the slot
    /// is further off than the deferral threshold.
    pub async fn acquire(
        &self,
        route: Route,
        cancel: &CancellationToken,
    ) -> Result<Ticket, Refusal> {
        loop {
            let (at, seq, holds) = match self.plan(route) {
                Plan::Later(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => continue,
                        _ = cancel.cancelled() => return Err(Refusal::Cancelled),
                    }
                }
                Plan::Fallback(seq, holds) => {
                    if !self.fallback.acquire(cancel).await {
                        return Err(Refusal::Cancelled);
                    }
                    (Instant::now(), seq, holds)
                }
                Plan::At(at, seq, holds) => (at, seq, holds),
                Plan::Deferred(until) => return Err(Refusal::Deferred { until }),
            };
            if at > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = cancel.cancelled() => return Err(Refusal::Cancelled),
                }
            }
            if cancel.is_cancelled() {
                return Err(Refusal::Cancelled);
            }
            let mut routes = self.lock();
            let s = routes.entry(route).or_default();
            // A 429 while this one waited: its slot was planned on stale counts.
            if s.holds != holds || s.paused_until.is_some_and(|p| p > Instant::now()) {
                continue;
            }
            s.sent += 1;
            return Ok(Ticket {
                route,
                seq,
                sent_at: Instant::now(),
            });
        }
    }

    /// Plans the next start on `route` and books it (`started`, `last_start`), so that
    /// requests planned but not yet sent count against the window too. A start further
    /// off than the deferral threshold is not booked: the run stops instead, and a
    /// booking would push back the first request of the run that resumes it.
    fn plan(&self, route: Route) -> Plan {
        let mut routes = self.lock();
        let headers_seen = routes.values().any(|s| s.known.is_some());
        let s = routes.entry(route).or_default();
        let now = Instant::now();
        let floor = s.paused_until.filter(|&p| p > now).unwrap_or(now);
        if self.defer_after.is_some_and(|d| floor > now + d) {
            return Plan::Deferred(floor);
        }
        let Some(k) = s.known else {
            return Self::plan_without_headers(s, headers_seen, now, floor);
        };
        let (at, rolled) = self.start_in_known_window(s, k, floor);
        if self.defer_after.is_some_and(|d| at > now + d) {
            return Plan::Deferred(at);
        }
        if let Some(k) = rolled {
            s.known = Some(k);
        }
        s.last_start = Some(at);
        s.started += 1;
        Plan::At(at, s.started, s.holds)
    }

    /// A route that has not seen the headers: the first request probes (if another
    /// route has), the others wait for its answer or take the configured averages.
    fn plan_without_headers(
        s: &mut RouteState,
        headers_seen: bool,
        now: Instant,
        floor: Instant,
    ) -> Plan {
        if floor == now && headers_seen {
            match s.probe {
                None => s.probe = Some(now),
                Some(p) if now < p + PROBE_WAIT => return Plan::Later(now + PROBE_POLL),
                Some(_) => {}
            }
            if s.probe == Some(now) {
                s.started += 1;
                s.last_start = Some(now);
                return Plan::At(now, s.started, s.holds);
            }
        }
        s.started += 1;
        s.last_start = Some(floor);
        if floor > now {
            return Plan::At(floor, s.started, s.holds);
        }
        Plan::Fallback(s.started, s.holds)
    }

    /// The next start in the window `k` describes, or in the next one (returned, to be
    /// kept if the start is booked) when this one's share is spent.
    fn start_in_known_window(
        &self,
        s: &RouteState,
        mut k: Known,
        floor: Instant,
    ) -> (Instant, Option<Known>) {
        // Requests started since the response that said `remaining` are spent too.
        let spent = s.started.saturating_sub(k.seq);
        let remaining = k.remaining.saturating_sub(spent as u32);
        let at = next_start(
            k.limit,
            remaining,
            k.reset_at,
            self.share,
            s.last_start,
            floor,
        );
        if at < k.reset_at {
            return (at, None);
        }
        // The next window: assume it is whole until a response says otherwise.
        while k.reset_at <= at {
            k.reset_at += k.window;
        }
        k.remaining = k.limit;
        k.seq = s.started;
        let at = next_start(k.limit, k.limit, k.reset_at, self.share, None, at);
        (at, Some(k))
    }

    /// Reads a response's headers into the route's state. A response older than the one
    /// the state comes from is ignored; a reset bound earlier than known tightens it.
    pub fn observe(&self, ticket: Ticket, obs: Observation) {
        let now = Instant::now();
        let mut routes = self.lock();
        let s = routes.entry(ticket.route).or_default();
        s.last_seen = Some((obs, SystemTime::now() + obs.reset));
        let upper = now + obs.reset;
        // The server rounds up: the true reset is after `sent_at + reset - 1 s`.
        let lower = ticket.sent_at + obs.reset.saturating_sub(Duration::from_secs(1));
        let fresh = Known {
            limit: obs.limit,
            remaining: obs.remaining,
            seq: ticket.seq,
            reset_at: upper,
            window: obs.reset.max(Duration::from_secs(1)),
        };
        s.known = Some(match s.known {
            None => fresh,
            Some(k) if ticket.seq <= k.seq => k,
            // The server is past the window this state knows of.
            Some(k) if lower >= k.reset_at => Known {
                window: k.window.max(fresh.window),
                ..fresh
            },
            Some(k) => Known {
                reset_at: k.reset_at.min(upper),
                window: k.window.max(fresh.window),
                ..fresh
            },
        });
    }

    /// A 429 on `route`: that route (only) waits `wait`; the requests already planned on
    /// it plan again.
    pub fn hold(&self, route: Route, wait: Duration) {
        let mut routes = self.lock();
        let s = routes.entry(route).or_default();
        let until = Instant::now() + wait;
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
        s.holds += 1;
        s.rate_limited += 1;
        if let Some(k) = &mut s.known {
            k.remaining = 0;
            k.seq = s.started;
        }
    }

    /// What is known of each route that answered with the headers or met a 429.
    pub fn report(&self) -> Vec<RouteReport> {
        let routes = self.lock();
        let now = Instant::now();
        let mut out: Vec<RouteReport> = routes
            .iter()
            .filter(|(_, s)| s.last_seen.is_some() || s.rate_limited > 0)
            .map(|(&route, s)| {
                let (obs, reset_at) = s.last_seen.unwrap_or((
                    Observation {
                        limit: 0,
                        remaining: 0,
                        reset: Duration::ZERO,
                    },
                    SystemTime::UNIX_EPOCH,
                ));
                RouteReport {
                    route,
                    limit: obs.limit,
                    remaining: obs.remaining,
                    reset_at,
                    rate_limited: s.rate_limited,
                    requests: s.sent,
                    window: s.known.map_or(Duration::ZERO, |k| k.window),
                    held_until: s
                        .paused_until
                        .filter(|&p| p > now)
                        .map(|p| SystemTime::now() + (p - now)),
                }
            })
            .collect();
        out.sort_by_key(|r| r.route);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::limiter::RateLimits;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn allowance_leaves_the_others_share() {
        // 5,000 per window at 0.6: 3,000 ours, 2,000 kept for the merchant.
        assert_eq!(allowance(5000, 5000, 0.6), 3000);
        assert_eq!(allowance(5000, 2500, 0.6), 500);
        assert_eq!(allowance(5000, 2000, 0.6), 0);
        assert_eq!(allowance(5000, 10, 0.6), 0);
        assert_eq!(allowance(50, 50, 0.6), 30);
        assert_eq!(allowance(7, 7, 0.5), 3, "rounded down");
        assert_eq!(allowance(10, 4, 1.0), 4, "never more than remains");
        assert_eq!(allowance(0, 0, 0.6), 0);
    }

    #[test]
    fn the_estimate_is_set_by_the_slowest_route() {
        let report = |route, limit, requests| RouteReport {
            route,
            limit,
            remaining: limit,
            reset_at: SystemTime::UNIX_EPOCH,
            rate_limited: 0,
            requests,
            window: secs(900),
            held_until: None,
        };
        // 30,000 transaction reads at 3,000 per 15 minutes: 150 minutes; the list's
        // 500 pages fit in a fraction of one window.
        let routes = [
            report(Route::ListCustomers, 5000, 500),
            report(Route::CustomerTransactions, 5000, 30_000),
        ];
        assert_eq!(estimate(&routes, 0.6), Some(secs(9000)));
        assert_eq!(estimate(&routes, 1.0), Some(secs(5400)));
        assert_eq!(estimate(&[report(Route::GetCustomer, 0, 10)], 0.6), None);
    }

    #[test]
    fn next_start_spreads_the_allowance_evenly_until_the_reset() {
        let now = Instant::now();
        let reset = now + secs(10);
        // Fresh route: go now.
        assert_eq!(next_start(100, 100, reset, 0.5, None, now), now);
        // 50 ours, 1 started at `now`: 49 left -> 50 gaps of 10 s / 50.
        let last = now;
        let at = next_start(100, 99, reset, 0.5, Some(last), now);
        assert_eq!(at - now, Duration::from_millis(200));
        // Evenly: the k-th start of 50 is at k * 200 ms, the 50th before the reset.
        let mut last = now;
        for k in 1..50u32 {
            let at = next_start(100, 100 - k, reset, 0.5, Some(last), last);
            assert_eq!(at - now, Duration::from_millis(200) * k, "start {k}");
            last = at;
        }
        assert!(last < reset);
    }

    #[test]
    fn next_start_waits_for_the_reset_when_the_share_is_spent() {
        let now = Instant::now();
        let reset = now + secs(600);
        // Another client drained the route to below what we leave to others.
        assert_eq!(next_start(5000, 1999, reset, 0.6, Some(now), now), reset);
        assert_eq!(next_start(5000, 0, reset, 0.6, None, now), reset);
        // Never before now.
        let past = now - secs(1);
        assert_eq!(next_start(5000, 0, past, 0.6, None, now), now);
        assert_eq!(
            next_start(10, 10, reset, 1.0, Some(now - secs(900)), now),
            now
        );
    }

    fn budgets(share: f64) -> RouteBudgets {
        RouteBudgets::new(
            share,
            RateLimiter::new(RateLimits {
                requests_per_second: 4.0,
                max_requests_per_window: 0,
                window: secs(900),
            }),
        )
    }

    fn obs(limit: u32, remaining: u32, reset: u64) -> Observation {
        Observation {
            limit,
            remaining,
            reset: secs(reset),
        }
    }

    /// Without headers the configured average applies (4/s here).
    #[tokio::test(start_paused = true)]
    async fn without_headers_the_configured_average_applies() {
        let b = budgets(0.6);
        let cancel = CancellationToken::new();
        let start = Instant::now();
        for _ in 0..5 {
            b.acquire(Route::GetCustomer, &cancel).await.unwrap();
        }
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }

    /// With headers the server's numbers pace the route: 10 s left, 20 remaining of
    /// 20, share 0.5 -> 10 requests over the 10 s, then nothing until the reset.
    #[tokio::test(start_paused = true)]
    async fn headers_pace_a_route_and_its_share_ends_at_the_reset() {
        let b = budgets(0.5);
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let t = b.acquire(Route::ListCustomers, &cancel).await.unwrap();
        b.observe(t, obs(20, 19, 10));
        let mut starts = vec![Duration::ZERO];
        for _ in 0..9 {
            let t = b.acquire(Route::ListCustomers, &cancel).await.unwrap();
            starts.push(Instant::now() - start);
            let remaining = 19 - starts.len() as u32 + 1;
            b.observe(
                t,
                obs(
                    20,
                    remaining,
                    (10 - (Instant::now() - start).as_secs()).max(1),
                ),
            );
        }
        assert!(starts.windows(2).all(|w| w[1] > w[0]), "{starts:?}");
        assert!(*starts.last().unwrap() < secs(10), "{starts:?}");
        // The 11th goes into the next window.
        b.acquire(Route::ListCustomers, &cancel).await.unwrap();
        assert!(Instant::now() - start >= secs(10));
    }

    /// With a deferral threshold, a slot further off than it is refused at once with
    /// its time (a spent share waits for the reset; a 429 holds the route), while
    /// slots nearer than it are waited for as usual and other routes go on.
    #[tokio::test(start_paused = true)]
    async fn a_slot_further_off_than_the_threshold_is_deferred_not_waited_for() {
        let b = budgets(0.6).with_deferral(Some(secs(60)));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        // 600 of 1000 over 900 s: a request every 1.5 s, waited for.
        let t = b.acquire(Route::ListCustomers, &cancel).await.unwrap();
        b.observe(t, obs(1000, 999, 900));
        b.acquire(Route::ListCustomers, &cancel).await.unwrap();
        assert!(Instant::now() - start < secs(2));
        // The share is spent (400 of 1000 left is the others'): the reset is 900 s off.
        let t = b.acquire(Route::GetCustomer, &cancel).await.unwrap();
        b.observe(t, obs(1000, 400, 900));
        let at = Instant::now();
        match b.acquire(Route::GetCustomer, &cancel).await {
            Err(Refusal::Deferred { until }) => {
                assert!(until >= at + secs(899), "{:?}", until - at);
            }
            other => panic!("deferred, not {other:?}"),
        }
        assert_eq!(Instant::now(), at, "refused without waiting");
        // A 429 holding a route for 900 s defers it too; the other route goes on.
        b.hold(Route::CustomerTransactions, secs(900));
        assert!(matches!(
            b.acquire(Route::CustomerTransactions, &cancel).await,
            Err(Refusal::Deferred { .. })
        ));
        b.acquire(Route::ListCustomers, &cancel).await.unwrap();
        // Without a threshold the same wait is waited for.
        let plain = budgets(0.6);
        let t = plain.acquire(Route::GetCustomer, &cancel).await.unwrap();
        plain.observe(t, obs(1000, 400, 900));
        let at = Instant::now();
        plain.acquire(Route::GetCustomer, &cancel).await.unwrap();
        assert!(Instant::now() - at >= secs(899));
    }

    /// A 429 holds back its route only, and the wait ends when the server said.
    #[tokio::test(start_paused = true)]
    async fn a_429_holds_back_its_route_only() {
        let b = budgets(0.6);
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let t = b.acquire(Route::GetCustomer, &cancel).await.unwrap();
        b.observe(t, obs(5000, 0, 900));
        b.hold(Route::GetCustomer, secs(900));
        let t = b.acquire(Route::ListCustomers, &cancel).await.unwrap();
        b.observe(t, obs(5000, 4000, 900));
        b.acquire(Route::ListCustomers, &cancel).await.unwrap();
        assert!(Instant::now() - start < secs(1), "other routes go on");
        b.acquire(Route::GetCustomer, &cancel).await.unwrap();
        assert!(Instant::now() - start >= secs(900));
        let report = b.report();
        let get = report
            .iter()
            .find(|r| r.route == Route::GetCustomer)
            .unwrap();
        assert_eq!((get.limit, get.remaining, get.rate_limited), (5000, 0, 1));
    }

    /// Requests planned before a 429 plan again rather than go out into it.
    #[tokio::test(start_paused = true)]
    async fn waiting_requests_plan_again_after_a_429() {
        let b = std::sync::Arc::new(budgets(1.0));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let t = b.acquire(Route::GetCustomer, &cancel).await.unwrap();
        b.observe(t, obs(10, 2, 10));
        // Planned for later in the window.
        let b2 = b.clone();
        let c2 = cancel.clone();
        let waiting = tokio::spawn(async move {
            b2.acquire(Route::GetCustomer, &c2).await.unwrap();
            Instant::now()
        });
        tokio::task::yield_now().await;
        b.hold(Route::GetCustomer, secs(60));
        let went = waiting.await.unwrap();
        assert!(went - start >= secs(60), "{:?}", went - start);
    }

    /// A response that says less remains than planned (another client) slows the route.
    #[tokio::test(start_paused = true)]
    async fn never_plans_past_what_the_server_says_remains() {
        let b = budgets(1.0);
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let t = b.acquire(Route::GetCustomer, &cancel).await.unwrap();
        b.observe(t, obs(100, 3, 30));
        for _ in 0..3 {
            b.acquire(Route::GetCustomer, &cancel).await.unwrap();
        }
        assert!(Instant::now() - start < secs(30));
        b.acquire(Route::GetCustomer, &cancel).await.unwrap();
        assert!(
            Instant::now() - start >= secs(30),
            "the 4th waits for the reset"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_interrupts_a_wait_for_the_reset() {
        let b = budgets(0.6);
        let cancel = CancellationToken::new();
        let t = b.acquire(Route::GetCustomer, &cancel).await.unwrap();
        b.observe(t, obs(10, 0, 900));
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(secs(1)).await;
            c2.cancel();
        });
        assert_eq!(
            b.acquire(Route::GetCustomer, &cancel).await.unwrap_err(),
            Refusal::Cancelled
        );
    }

    /// Once the server is known to send the headers, a route's first request goes out
    /// alone and its answer paces the rest: no crawl at the configured average.
    #[tokio::test(start_paused = true)]
    async fn a_new_route_waits_for_its_first_answer_not_the_average() {
        let b = std::sync::Arc::new(budgets(0.6));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let t = b.acquire(Route::ListCustomers, &cancel).await.unwrap();
        b.observe(t, obs(100, 99, 100));
        let probe = b.acquire(Route::GetCustomer, &cancel).await.unwrap();
        let b2 = b.clone();
        let c2 = cancel.clone();
        let second = tokio::spawn(async move {
            b2.acquire(Route::GetCustomer, &c2).await.unwrap();
            Instant::now()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "waits for the first answer");
        b.observe(probe, obs(100, 99, 100));
        let went = second.await.unwrap();
        // 60 - 1 left over 100 s: about 1.7 s after the first, not the average's 0.25 s
        // steps nor a burst.
        assert!(
            went - start > secs(1) && went - start < secs(2),
            "{:?}",
            went - start
        );
    }
}
