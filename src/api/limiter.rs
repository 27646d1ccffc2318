//! The fallback budget, for a server that sends no `X-RateLimit-*` headers: one
//! request budget shared by every concurrent request of a run.
//!
//! The merchant's production systems share the service's rate limit with the mirror,
//! so the mirror spends only the share it is given: an average rate
//! (`requests_per_second`) and a hard cap per sliding window
//! (`max_requests_per_window`). It knows nothing of 429s: a 429 holds back its route
//! only (`budget.rs`), and a 503's `Retry-After` delays only the request that got it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Settings of a [`RateLimiter`]; zero means "no limit" for either bound.
#[derive(Clone, Copy, Debug)]
pub struct RateLimits {
    /// Average pace, in requests per second; zero for none.
    pub requests_per_second: f64,
    /// At most this many requests start in any `window`; zero for no cap.
    pub max_requests_per_window: u32,
    /// The sliding window `max_requests_per_window` counts in.
    pub window: Duration,
}

/// A reservation-based limiter: each caller reserves the next free slot under the lock,
/// then sleeps until it outside the lock, so waiting callers do not hold each other up.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Earliest start of the next request under the average rate.
    next_slot: Instant,
    /// Start times of the requests in the current window (at most `max_requests_per_window`).
    recent: VecDeque<Instant>,
}

impl RateLimiter {
    /// A limiter with no request made yet: the first one may start at once.
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            state: Mutex::new(State {
                next_slot: Instant::now(),
                recent: VecDeque::new(),
            }),
        }
    }

    /// Waits for a slot. Returns `false` if `cancel` fired first.
    pub async fn acquire(&self, cancel: &CancellationToken) -> bool {
        let at = self.reserve().await;
        if at <= Instant::now() {
            return !cancel.is_cancelled();
        }
        tokio::select! {
            _ = tokio::time::sleep_until(at) => true,
            _ = cancel.cancelled() => false,
        }
    }

    async fn reserve(&self) -> Instant {
        let mut s = self.state.lock().await;
        let now = Instant::now();
        let mut at = now.max(s.next_slot);
        let cap = self.limits.max_requests_per_window as usize;
        if cap > 0 {
            // Reservations stay in order, so the window check below sees every earlier one.
            if let Some(&last) = s.recent.back() {
                at = at.max(last);
            }
            while s
                .recent
                .front()
                .is_some_and(|&t| t + self.limits.window <= at)
            {
                s.recent.pop_front();
            }
            if s.recent.len() >= cap {
                // The oldest request in the window must leave it before this one starts.
                let oldest = s.recent[s.recent.len() - cap];
                at = at.max(oldest + self.limits.window);
                while s
                    .recent
                    .front()
                    .is_some_and(|&t| t + self.limits.window <= at)
                {
                    s.recent.pop_front();
                }
            }
            s.recent.push_back(at);
        }
        if self.limits.requests_per_second > 0.0 {
            s.next_slot = at + Duration::from_secs_f64(1.0 / self.limits.requests_per_second);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rps: f64, cap: u32, window_secs: u64) -> RateLimiter {
        RateLimiter::new(RateLimits {
            requests_per_second: rps,
            max_requests_per_window: cap,
            window: Duration::from_secs(window_secs),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn average_rate_spaces_requests() {
        let l = limiter(4.0, 0, 900);
        let cancel = CancellationToken::new();
        let start = Instant::now();
        for _ in 0..9 {
            assert!(l.acquire(&cancel).await);
        }
        // 9 requests at 4/s: the 9th starts 2 s after the first.
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn window_cap_holds_back_until_the_window_slides() {
        let l = limiter(0.0, 3, 60);
        let cancel = CancellationToken::new();
        let start = Instant::now();
        for _ in 0..3 {
            l.acquire(&cancel).await;
        }
        assert_eq!(Instant::now(), start);
        l.acquire(&cancel).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_interrupts_a_wait() {
        let l = limiter(0.0, 1, 900);
        let cancel = CancellationToken::new();
        // The window's one request: the next waits 900 s, unless cancelled.
        assert!(l.acquire(&cancel).await);
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            c2.cancel();
        });
        assert!(!l.acquire(&cancel).await);
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let l = limiter(0.0, 0, 60);
        let cancel = CancellationToken::new();
        let start = Instant::now();
        for _ in 0..1000 {
            l.acquire(&cancel).await;
        }
        assert_eq!(Instant::now(), start);
    }
}
