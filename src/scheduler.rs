//! The daemon: runs on a cron schedule until told to stop.
//!
//! One run at a time: a tick that fires while a run is under way is skipped (and
//! logged), and the next fire time is always computed from *now*, so ticks missed
//! during a suspend are not replayed in a burst. A failed run is retried at the next
//! tick; only a rejected API key stops the daemon, since no retry can fix it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::config::Settings;
use crate::store::{RunKind, Store};
use crate::sync::{self, NoProgress, RunRequest, RunSummary, SyncError, SyncOptions};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("the daemon stopped: no retry can fix this")]
    Fatal(#[source] SyncError),
}

/// Tells the service manager what the daemon is doing (systemd's sd_notify); a no-op
/// when not run by systemd.
pub trait Notifier: Send + Sync {
    fn ready(&self);
    fn status(&self, text: &str);
    fn watchdog(&self);
    fn stopping(&self);
}

/// The systemd notifier (`NOTIFY_SOCKET`).
pub struct SystemdNotifier;

impl Notifier for SystemdNotifier {
    fn ready(&self) {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    }
    fn status(&self, text: &str) {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(text)]);
    }
    fn watchdog(&self) {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
    }
    fn stopping(&self) {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    }
}

/// How often to ping the watchdog, if systemd asked for it (`WatchdogSec=`).
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec / 2))
    } else {
        None
    }
}

/// What the daemon needs; `run` owns it for its whole life.
pub struct Daemon {
    pub settings: Settings,
    pub client: ApiClient,
    pub db: PathBuf,
    pub options: SyncOptions,
    pub notifier: Arc<dyn Notifier>,
}

/// Which kind of run the next tick makes.
fn next_kind(db: &std::path::Path, settings: &Settings) -> RunKind {
    let Ok(store) = Store::open_read_only(db, settings.store.busy_timeout.0) else {
        return RunKind::Backfill;
    };
    // A mirror this version has not migrated yet cannot answer: a `sync` finds out
    // (after migrating) and runs a backfill if none completed. Guessing `backfill`
    // would discard an unfinished `sync` walk and re-read every customer.
    if !store.has_full_walk().unwrap_or(true) {
        return RunKind::Backfill;
    }
    if let Some(every) = settings.schedule.full_every {
        let last = store.last_full_walk_started_at().ok().flatten();
        let due = last
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_none_or(|t| {
                (Utc::now() - t.with_timezone(&Utc))
                    .to_std()
                    .unwrap_or_default()
                    >= every.0
            });
        if due {
            return RunKind::Full;
        }
    }
    RunKind::Sync
}

impl Daemon {
    /// Runs until `shutdown` fires (returns `Ok`) or a run fails fatally.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DaemonError> {
        let schedule = self.settings.schedule.parsed_cron()?;
        let shared = Arc::new(self);
        // Runs get their own token: shutdown cancels it, but so could a fatal error.
        let runs_cancel = shutdown.child_token();
        let mut current: Option<JoinHandle<Result<RunSummary, SyncError>>> = None;
        let start_run = |kind: RunKind| -> JoinHandle<Result<RunSummary, SyncError>> {
            let d = shared.clone();
            let cancel = runs_cancel.clone();
            tokio::spawn(async move {
                tracing::info!(kind = kind.as_str(), "run starting");
                let req = RunRequest {
                    kind,
                    restart: false,
                };
                sync::run(&d.client, &d.db, &d.options, req, &cancel, &NoProgress).await
            })
        };
        shared.notifier.ready();
        shared.notifier.status("waiting for the first run");
        if shared.settings.schedule.run_on_start {
            current = Some(start_run(next_kind(&shared.db, &shared.settings)));
        }
        let watchdog = watchdog_interval();
        let mut watchdog_tick =
            tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        watchdog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let Some(next) = schedule.upcoming(Utc).next() else {
                tracing::warn!(cron = %shared.settings.schedule.cron, "the schedule has no future fire time; stopping");
                break;
            };
            tracing::debug!(next = %next, "next tick");
            // Sleep in short steps against the wall clock: a monotonic sleep would not
            // notice a suspend, and a tick due during one must not fire late in a burst.
            let tick = async {
                loop {
                    let left = (next - Utc::now()).to_std().unwrap_or_default();
                    if left.is_zero() {
                        break;
                    }
                    tokio::time::sleep(left.min(Duration::from_secs(30))).await;
                }
            };
            tokio::pin!(tick);
            let finished = async {
                match current.as_mut() {
                    Some(h) => Some(h.await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    shared.notifier.watchdog();
                    continue;
                }
                joined = finished => {
                    current = None;
                    match joined {
                        Some(Ok(Ok(s))) => {
                            let line = summary_line(&s);
                            tracing::info!(target: "lomi_sync::summary", "{line}");
                            shared.notifier.status(&format!("last run succeeded: {line}"));
                        }
                        Some(Ok(Err(e))) if e.is_fatal() => {
                            shared.notifier.status(&format!("stopped: {e}"));
                            return Err(DaemonError::Fatal(e));
                        }
                        Some(Ok(Err(SyncError::Interrupted))) => {}
                        Some(Ok(Err(e))) => {
                            tracing::error!(error = %e, "run failed; retrying at the next tick");
                            shared.notifier.status(&format!("last run failed: {e}"));
                        }
                        Some(Err(join)) => tracing::error!(error = %join, "run task panicked"),
                        None => {}
                    }
                    continue;
                }
                _ = &mut tick => {
                    if current.is_some() {
                        tracing::warn!(tick = %next, "tick skipped: the previous run is still going");
                    } else {
                        current = Some(start_run(next_kind(&shared.db, &shared.settings)));
                    }
                }
            }
        }
        shared.notifier.stopping();
        runs_cancel.cancel();
        if let Some(h) = current {
            let timeout = shared.settings.schedule.shutdown_timeout.0;
            match tokio::time::timeout(timeout, h).await {
                Ok(Ok(Err(e))) if !matches!(e, SyncError::Interrupted) => {
                    tracing::warn!(error = %e, "the run in flight ended with an error during shutdown")
                }
                Ok(_) => tracing::info!("the run in flight stopped; the next start resumes it"),
                Err(_) => tracing::warn!(
                    ?timeout,
                    "the run in flight did not stop within schedule.shutdown_timeout"
                ),
            }
        }
        Ok(())
    }
}

/// The one line logged at the end of each run. An incremental run also says whose
/// payments it did not re-read, so nobody takes its revenue figures as checked.
pub fn summary_line(s: &RunSummary) -> String {
    let mut line = counts_line(s);
    if let Some(n) = &s.not_reread {
        line.push_str("; ");
        line.push_str(&not_reread_note(n));
    }
    line
}

/// What a run did not look at, in words: `payments of N customers not re-read by this
/// run (oldest read ...); sync.full_every re-reads them all by ...`.
pub fn not_reread_note(n: &crate::store::NotReread) -> String {
    if n.customers == 0 {
        return "every customer's payments re-read".into();
    }
    format!(
        "payments of {} customers not re-read by this run (oldest read {}); sync.full_every re-reads them all by {}",
        n.customers,
        n.oldest_read_at.as_deref().unwrap_or("unknown"),
        n.by.as_deref().unwrap_or("unknown")
    )
}

fn counts_line(s: &RunSummary) -> String {
    let skipped = match s.records_skipped {
        0 => String::new(),
        n => format!(", {n} records skipped (unreadable id, see the warnings)"),
    };
    format!(
        "{} run {} finished in {:.1}s: {} pages, {} requests ({} retries), customers +{} ~{} -{} ↺{}, transactions +{} ~{} -{} ↺{}{skipped}",
        s.kind,
        s.run_id
            .map(|i| i.to_string())
            .unwrap_or_else(|| "(dry)".into()),
        s.duration_secs,
        s.applied.pages,
        s.requests,
        s.retries,
        s.applied.customers_inserted,
        s.applied.customers_updated,
        s.applied.customers_deleted,
        s.applied.customers_restored,
        s.applied.transactions_inserted,
        s.applied.transactions_updated,
        s.applied.transactions_deleted,
        s.applied.transactions_restored
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_that_cannot_say_whether_it_was_loaded_gets_a_sync_not_a_backfill() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("m.db");
        let mut settings = Settings::default();
        settings.store.path = db.clone();
        // No mirror yet: a backfill.
        assert_eq!(next_kind(&db, &settings), RunKind::Backfill);
        let store = Store::open(&db, Duration::from_secs(1)).unwrap();
        let run = store.start_run(RunKind::Backfill).unwrap();
        store
            .finish_run(run, crate::store::Outcome::Succeeded, None, 0, 0)
            .unwrap();
        drop(store);
        assert_eq!(next_kind(&db, &settings), RunKind::Sync);
        // A file an older version wrote lacks what the question asks (the run decides
        // after migrating it): a sync, which finishes an unfinished sync walk.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("ALTER TABLE sync_runs DROP COLUMN missing_customers")
            .unwrap();
        drop(conn);
        assert_eq!(next_kind(&db, &settings), RunKind::Sync);
    }
}
