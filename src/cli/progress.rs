//! Progress of a run: a bar with an ETA on a terminal, a log line every 10 seconds
//! otherwise (journald and CI logs do not want carriage returns).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lomi_sync::sync::{Progress, ProgressInfo};

pub trait Reporter: Progress {
    fn finish(&self);
}

pub fn for_terminal(label: &str) -> Box<dyn Reporter> {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} customers ({per_sec}, ETA {eta}) {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Box::new(Bar(bar))
    } else {
        Box::new(Lines {
            last: Mutex::new(Instant::now()),
            label: label.to_string(),
        })
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn update(&self, p: &ProgressInfo) {
        self.0.set_length(p.customers_total.max(p.customers_seen));
        self.0.set_position(p.customers_seen);
        self.0
            .set_message(format!("{} · {} requests", p.phase, p.requests));
    }
}

impl Reporter for Bar {
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

struct Lines {
    last: Mutex<Instant>,
    label: String,
}

impl Progress for Lines {
    fn update(&self, p: &ProgressInfo) {
        let mut last = self.last.lock().expect("progress lock");
        if last.elapsed() >= Duration::from_secs(10) {
            *last = Instant::now();
            tracing::info!(
                run = %self.label,
                phase = p.phase,
                customers = p.customers_seen,
                of = p.customers_total,
                requests = p.requests,
                "progress"
            );
        }
    }
}

impl Reporter for Lines {
    fn finish(&self) {}
}
