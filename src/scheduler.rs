//! The daemon: runs on a cron schedule until told to stop, through the mirror's one
//! writer thread, which it owns for its life and shares with the webhook listener
//! (`server.listen`, [`crate::server`]).
//!
//! One run at a time: a tick that fires while a run is under way is skipped (and
//! logged), and the next fire time is always computed from *now*, so ticks missed
//! during a suspend are not replayed in a burst. A failed run is retried at the next
//! tick; a rejected API key stops the daemon (no retry can fix it), and so does a
//! cron expression with no future fire time. A run
//! deferred by the rate limit (`schedule.defer_after`) is resumed by the first tick
//! after the time it recorded; the ticks before it are skipped.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::config::{Settings, WebhookSecret};
use crate::server::{self, ServerError, ServerState};
use crate::store::{Location, RunKind, Store};
use crate::sync::webhook::Webhooks;
use crate::sync::{
    self, NoProgress, RunRequest, RunSummary, SyncError, SyncOptions, Writer, WriterHandle,
};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The settings do not make a usable schedule (`schedule.cron`).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A run failed in a way no retry can fix (a rejected API key).
    #[error("the daemon stopped: no retry can fix this")]
    Fatal(#[source] SyncError),
}

/// Tells the service manager what the daemon is doing (systemd's sd_notify); a no-op
/// when not run by systemd.
pub trait Notifier: Send + Sync {
    /// The daemon is up and its schedule parsed (`READY=1`).
    fn ready(&self);
    /// A one-line state for `systemctl status` (`STATUS=`).
    fn status(&self, text: &str);
    /// A watchdog ping (`WATCHDOG=1`), at half of `WatchdogSec=`.
    fn watchdog(&self);
    /// The daemon is shutting down (`STOPPING=1`).
    fn stopping(&self);
}

/// A notifier that tells nobody: a daemon not under a service manager (tests, a
/// daemon embedded in another program).
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn ready(&self) {}
    fn status(&self, _: &str) {}
    fn watchdog(&self) {}
    fn stopping(&self) {}
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
    /// The settings (the schedule is read from `[schedule]`).
    pub settings: Settings,
    /// The API client all of the daemon's runs share.
    pub client: ApiClient,
    /// Where the mirror is (`store.path` or `store.url`).
    pub db: Location,
    /// The run options derived from the settings.
    pub options: SyncOptions,
    /// Where the daemon reports its state (systemd, or nothing).
    pub notifier: Arc<dyn Notifier>,
    /// A handle to the writer thread below, for each run and for the listener.
    /// Declared first, so it is dropped first: the thread ends once no handle is left,
    /// and a daemon dropped without running joins it.
    handle: WriterHandle,
    /// The mirror's one writer thread, for the daemon's whole life: every run and
    /// every webhook delivery writes through it (`run` takes it, and closes it last).
    writer: Option<Writer>,
    /// The HTTP listener, when `server.listen` is set ([`Daemon::serve`]).
    listening: Option<Listening>,
}

/// The daemon's HTTP listener, bound at start ([`server::bind`]).
pub struct Listening {
    /// The bound socket (`server.listen`).
    pub listener: std::net::TcpListener,
    /// The webhook signing secret (`webhooks.secret_file` or `LOMI_WEBHOOK_SECRET`).
    pub secret: WebhookSecret,
}

/// Which kind of run the next tick asks for: a `full` when `schedule.full_every` is
/// due, else a `sync`. The engine applies the run-kind rule ([`RunKind::for_mirror`])
/// once it has opened and migrated the mirror, so a `sync` into a mirror never loaded
/// is a backfill, and one with an unfinished walk finishes that walk. Deciding here,
/// from a file this version may not have migrated yet, could guess `backfill` and
/// discard an unfinished `sync` walk.
fn next_kind(db: &Location, settings: &Settings) -> RunKind {
    let Ok(store) = Store::open_read_only(db, settings.store.busy_timeout.0) else {
        return RunKind::Sync;
    };
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

/// A run task's result, as the daemon awaits it.
type RunHandle = JoinHandle<Result<RunSummary, SyncError>>;

impl Daemon {
    /// The daemon over the mirror `store` (opened and migrated; the caller holds the
    /// writer lock for the daemon's life), whose writer thread it spawns now.
    pub fn new(
        settings: Settings,
        client: ApiClient,
        options: SyncOptions,
        notifier: Arc<dyn Notifier>,
        (store, db): (Store, Location),
    ) -> Daemon {
        let writer = Writer::spawn(store);
        Daemon {
            db,
            handle: writer.handle(),
            writer: Some(writer),
            settings,
            client,
            options,
            notifier,
            listening: None,
        }
    }

    /// Serves `POST /webhooks/lomi`, `GET /healthz` and `GET /metrics` on `listening`
    /// while the daemon runs.
    pub fn serve(mut self, listening: Listening) -> Daemon {
        self.listening = Some(listening);
        self
    }

    /// Runs until `shutdown` fires (returns `Ok`) or a run fails fatally; then stops
    /// the listener (its requests in flight finish) and closes the writer thread.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), DaemonError> {
        let schedule = self.settings.schedule.parsed_cron()?;
        let writer = self.writer.take();
        let listening = self.listening.take();
        let shared = Arc::new(self);
        let server_stop = shutdown.child_token();
        let server = listening.map(|l| shared.start_server(l, server_stop.clone()));
        let result = shared.clone().schedule(schedule, shutdown).await;
        server_stop.cancel();
        if let Some(task) = server {
            shared.stop_server(task).await;
        }
        if let Some(w) = writer {
            w.close().await;
        }
        result
    }

    /// Starts the listener on the daemon's client and writer.
    fn start_server(
        &self,
        l: Listening,
        stop: CancellationToken,
    ) -> JoinHandle<Result<(), ServerError>> {
        let webhooks = Webhooks::new(self.client.clone(), self.handle.clone());
        let timeouts = (
            self.settings.store.busy_timeout.0,
            self.settings.server.healthy_within.0,
        );
        // The client's metrics: the one registry the runs and the client record into.
        let metrics = self.client.metrics().clone();
        let state = ServerState::new(webhooks, l.secret, metrics, self.db.clone(), timeouts);
        tokio::spawn(async move {
            let served = server::run(l.listener, state, stop).await;
            if let Err(e) = &served {
                // Said when it happens: the runs go on without the listener.
                tracing::error!(error = %e, "the HTTP listener stopped; the scheduled runs go on");
            }
            served
        })
    }

    /// Waits up to `schedule.shutdown_timeout` for the listener's requests in flight.
    async fn stop_server(&self, task: JoinHandle<Result<(), ServerError>>) {
        let timeout = self.settings.schedule.shutdown_timeout.0;
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(_))) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the HTTP listener panicked"),
            Err(_) => tracing::warn!(
                ?timeout,
                "the HTTP listener's requests did not finish within schedule.shutdown_timeout"
            ),
        }
    }

    /// The schedule's loop (see the module's doc).
    async fn schedule(
        self: Arc<Self>,
        schedule: cron::Schedule,
        shutdown: CancellationToken,
    ) -> Result<(), DaemonError> {
        let shared = self;
        // Runs get their own token: shutdown cancels it, but so could a fatal error.
        let runs_cancel = shutdown.child_token();
        let mut current: Option<RunHandle> = None;
        // A deferral recorded by an earlier process holds too.
        let mut deferred_until = recorded_deferral(&shared.db, &shared.settings);
        seed_last_success(&shared.db, &shared.settings, shared.client.metrics());
        shared.notifier.ready();
        shared.notifier.status("waiting for the first run");
        if shared.settings.schedule.run_on_start {
            current = shared.start_if_due(&runs_cancel, deferred_until, "start");
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
            let finished = async {
                match current.as_mut() {
                    Some(h) => Some(h.await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = watchdog_tick.tick(), if watchdog.is_some() => shared.notifier.watchdog(),
                joined = finished => {
                    current = None;
                    if let Some(joined) = joined {
                        shared.run_ended(joined, &mut deferred_until)?;
                    }
                }
                _ = wall_clock_sleep_until(next) => {
                    if current.is_some() {
                        tracing::warn!(tick = %next, "tick skipped: the previous run is still going");
                    } else {
                        current = shared.start_if_due(&runs_cancel, deferred_until, "tick");
                    }
                }
            }
        }
        shared.notifier.stopping();
        runs_cancel.cancel();
        if let Some(h) = current {
            shared.stop_in_flight(h).await;
        }
        Ok(())
    }

    /// Starts a run of the kind due, unless the last run was deferred to a time still
    /// ahead (then the tick is skipped, and logged).
    fn start_if_due(
        self: &Arc<Self>,
        cancel: &CancellationToken,
        deferred_until: Option<DateTime<Utc>>,
        why: &str,
    ) -> Option<RunHandle> {
        if let Some(until) = deferred_until.filter(|u| *u > Utc::now()) {
            tracing::info!(until = %until.to_rfc3339_opts(SecondsFormat::Secs, true), "{why}: no run, the last one was deferred for the rate limit");
            return None;
        }
        let kind = next_kind(&self.db, &self.settings);
        let d = self.clone();
        let cancel = cancel.clone();
        Some(tokio::spawn(async move {
            tracing::info!(kind = kind.as_str(), "run starting");
            let req = RunRequest {
                kind,
                restart: false,
            };
            let (client, db, writer) = (&d.client, &d.db, &d.handle);
            sync::run_on(client, db, writer, &d.options, req, &cancel, &NoProgress).await
        }))
    }

    /// Logs how a run ended and tells systemd; a fatal error stops the daemon. A
    /// deferral sets `deferred_until`, which the next ticks respect.
    fn run_ended(
        &self,
        joined: Result<Result<RunSummary, SyncError>, tokio::task::JoinError>,
        deferred_until: &mut Option<DateTime<Utc>>,
    ) -> Result<(), DaemonError> {
        *deferred_until = None;
        match joined {
            Ok(Ok(s)) => {
                let line = s.to_string();
                tracing::info!(target: "lomi_sync::summary", "{line}");
                self.notifier.status(&format!("last run succeeded: {line}"));
            }
            Ok(Err(e)) if e.is_fatal() => {
                self.notifier.status(&format!("stopped: {e}"));
                return Err(DaemonError::Fatal(e));
            }
            Ok(Err(SyncError::Interrupted)) => {}
            Ok(Err(e @ SyncError::Deferred { until, .. })) => {
                tracing::info!("run {e}");
                self.notifier.status(&format!(
                    "run deferred until {} (rate limit)",
                    until.to_rfc3339_opts(SecondsFormat::Secs, true)
                ));
                *deferred_until = Some(until);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "run failed; retrying at the next tick");
                self.notifier.status(&format!("last run failed: {e}"));
            }
            Err(join) => tracing::error!(error = %join, "run task panicked"),
        }
        Ok(())
    }

    /// On shutdown: waits up to `schedule.shutdown_timeout` for the run in flight to
    /// commit what it fetched.
    async fn stop_in_flight(&self, h: RunHandle) {
        let timeout = self.settings.schedule.shutdown_timeout.0;
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
}

/// Sleeps until `next` in short steps against the wall clock: a monotonic sleep would
/// not notice a suspend, and a tick due during one must not fire late in a burst.
async fn wall_clock_sleep_until(next: DateTime<Utc>) {
    loop {
        let left = (next - Utc::now()).to_std().unwrap_or_default();
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_secs(30))).await;
    }
}

/// Gives the metrics the mirror's last successful run, so `lomi_sync_mirror_lag_seconds`
/// is known from the daemon's start, not from its first run's end. Nothing when the
/// mirror cannot say (no file yet, not migrated, no success).
fn seed_last_success(db: &Location, settings: &Settings, metrics: &crate::metrics::Metrics) {
    let Ok(store) = Store::open_read_only(db, settings.store.busy_timeout.0) else {
        return;
    };
    let Ok(Some((started, finished))) = store.last_success_times() else {
        return;
    };
    let time = |t: &str| {
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| std::time::SystemTime::from(t.with_timezone(&Utc)))
    };
    if let (Some(s), Some(f)) = (time(&started), time(&finished)) {
        metrics.seed_last_success(s, f);
    }
}

/// The resume time of the mirror's last run, if it was deferred; `None` if not, or if
/// the mirror cannot say (not created or not migrated yet).
fn recorded_deferral(db: &Location, settings: &Settings) -> Option<DateTime<Utc>> {
    let store = Store::open_read_only(db, settings.store.busy_timeout.0).ok()?;
    let at = store.deferred_until().ok()??;
    DateTime::parse_from_rfc3339(&at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon's handle to its writer thread goes before the thread is joined: a
    /// daemon dropped without running (an error between its start and its loop) does
    /// not wait forever for its own handle.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_daemon_dropped_without_running_closes_its_writer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.api.base_url = "http://127.0.0.1:9".parse().unwrap();
        settings.store.path = dir.path().join("m.db");
        let key = crate::config::ApiKey::new("k");
        let mirror = crate::app::Mirror::build(&settings, &key, CancellationToken::new()).unwrap();
        let store = mirror.open_store().unwrap();
        let daemon = mirror.into_daemon(Arc::new(NoNotifier), store);
        let dropped = tokio::task::spawn_blocking(move || drop(daemon));
        tokio::time::timeout(Duration::from_secs(10), dropped)
            .await
            .expect("the writer thread ended")
            .unwrap();
    }

    #[test]
    fn a_mirror_that_cannot_say_whether_it_was_loaded_gets_a_sync_not_a_backfill() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("m.db");
        let mut settings = Settings::default();
        settings.store.path = db.clone();
        // No mirror yet: a sync, which the engine makes a backfill.
        assert_eq!(next_kind(&Location::sqlite(&db), &settings), RunKind::Sync);
        let store = Store::open(&Location::sqlite(&db), Duration::from_secs(1)).unwrap();
        let run = store.start_run(RunKind::Backfill).unwrap();
        store
            .finish_run(run, crate::store::Outcome::Succeeded, None, 0, 0)
            .unwrap();
        drop(store);
        assert_eq!(next_kind(&Location::sqlite(&db), &settings), RunKind::Sync);
        // A file an older version wrote lacks what the question asks (the run decides
        // after migrating it): a sync, which finishes an unfinished sync walk.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("ALTER TABLE sync_runs DROP COLUMN missing_customers")
            .unwrap();
        drop(conn);
        assert_eq!(next_kind(&Location::sqlite(&db), &settings), RunKind::Sync);
    }
}
