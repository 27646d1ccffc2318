//! Deciding which fault, if any, hits a request, and the one fault that needs a trick:
//! closing the connection without a response.

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use super::restyle::Restyle;
use super::rng::{Rng, mix64};
use super::{Faults, RetryAfterStyle, lock, read, write};

/// What a fault does to a request, beyond an optional delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Internal,
    BadGatewayHtml,
    Unavailable,
    TooManyRequests,
    Close,
    Truncate,
}

#[derive(Debug, Default)]
pub(super) struct Plan {
    pub(super) slow: Option<Duration>,
    pub(super) outcome: Option<Outcome>,
    /// `Retry-After` of the 429 and 503 outcomes.
    pub(super) retry_after_secs: u64,
    pub(super) retry_after_style: RetryAfterStyle,
}

impl Plan {
    pub(super) fn is_fault(&self) -> bool {
        self.slow.is_some() || self.outcome.is_some()
    }
}

/// The fault settings (replaceable at run time) and their own seeded RNG, so that fault
/// draws do not disturb the data's random stream.
pub(super) struct FaultInjector {
    config: RwLock<Faults>,
    rng: Mutex<Rng>,
}

impl FaultInjector {
    pub(super) fn new(faults: Faults, seed: u64) -> FaultInjector {
        FaultInjector {
            config: RwLock::new(faults),
            rng: Mutex::new(Rng::new(mix64(seed ^ 0x6661_756c_7473_2121))),
        }
    }

    pub(super) fn set(&self, faults: Faults) {
        *write(&self.config) = faults;
    }

    pub(super) fn get(&self) -> Faults {
        read(&self.config).clone()
    }

    /// Draws the faults of one request. Without any fault configured this takes no lock
    /// but the (uncontended) read lock of the settings.
    pub(super) fn plan(&self) -> Plan {
        let f = read(&self.config);
        if !f.any() {
            return Plan::default();
        }
        let mut rng = lock(&self.rng);
        let slow =
            (f.p_slow > 0.0 && rng.chance(f.p_slow)).then(|| Duration::from_millis(f.slow_ms));
        let roll = rng.unit();
        let mut cumulative = 0.0;
        let outcome = [
            (f.p500, Outcome::Internal),
            (f.p502_html, Outcome::BadGatewayHtml),
            (f.p503, Outcome::Unavailable),
            (f.p429, Outcome::TooManyRequests),
            (f.p_close, Outcome::Close),
            (f.p_truncate, Outcome::Truncate),
        ]
        .into_iter()
        .find_map(|(p, outcome)| {
            cumulative += p;
            (roll < cumulative).then_some(outcome)
        });
        Plan {
            slow,
            outcome,
            retry_after_secs: f.retry_after_secs,
            retry_after_style: f.retry_after_style,
        }
    }

    /// Draws whether a request gets a 200 with an error body, with the probability
    /// `p` picks for its route.
    pub(super) fn error_body(&self, p: impl Fn(&Faults) -> f64) -> bool {
        let p = p(&read(&self.config));
        p > 0.0 && lock(&self.rng).chance(p)
    }

    /// What successful bodies (and the truth) are to look like.
    pub(super) fn restyle(&self) -> Restyle {
        let f = read(&self.config);
        Restyle {
            style: f.timestamp_style,
            overrides: f.mistyped.clone(),
        }
    }
}

/// The payload of the unwind that drops a connection.
struct ConnectionClosedByFault;

/// Drops the connection the current request came on, without sending anything.
///
/// axum spawns one task per connection and runs the handler inside it, so unwinding out of
/// the handler ends that task: the socket is dropped (the client sees the connection close
/// before any response), tokio contains the unwind in the task, and the server goes on.
/// `resume_unwind` does not run the panic hook, so nothing is printed. This needs
/// `panic = "unwind"`, the default of every profile.
pub(super) fn close_connection() -> ! {
    std::panic::resume_unwind(Box::new(ConnectionClosedByFault))
}
