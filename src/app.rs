//! The one wiring of the library: [`Mirror::build`] turns [`Settings`] and an API key
//! into a ready mirror (the HTTP client, the sync options and the store's path), as
//! zero2prod's `Application::build` is shared by `main` and the tests' `spawn_app`.
//! The CLI's commands, the demo and the integration tests' harness all build through
//! it, so they run the same client with the same options; the benchmark drives the
//! binary, and so this too.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, ApiError, ClientOptions};
use crate::config::{ApiKey, ConfigError, Settings};
use crate::metrics::Metrics;
use crate::scheduler::{Daemon, Notifier};
use crate::store::{Location, RunKind, Store, StoreError, WriterLock};
use crate::sync::estimate::Estimate;
use crate::sync::{self, Progress, RunRequest, RunSummary, SyncError, SyncOptions};

/// Why a mirror could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A setting the client cannot use (exit status 2 in the CLI).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built (e.g. a key that cannot go in a header).
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// A mirror ready to run: the client (with its rate limiter and request counters,
/// shared by every run made through this value), the engine's options and the
/// database path, all from one [`Settings`]; and the process's [`Metrics`], which the
/// client and every run through it record into.
pub struct Mirror {
    settings: Settings,
    key: ApiKey,
    client: ApiClient,
    options: SyncOptions,
    cancel: CancellationToken,
    /// The client's [`ClientOptions::defer_after`]: set for the daemon's runs.
    defer_after: Option<Duration>,
    /// Where the mirror is (`store.path`, or `store.url` and its password).
    location: Location,
}

impl Mirror {
    /// Builds the client and the options. Sends no request and opens no file: the
    /// caller takes the writer lock ([`Mirror::lock`]) before a run that writes.
    /// `cancel` stops the client's requests and the runs (a shutdown signal).
    pub fn build(
        settings: &Settings,
        key: &ApiKey,
        cancel: CancellationToken,
    ) -> Result<Mirror, AppError> {
        Mirror::build_with(settings, key, cancel, None)
    }

    /// As [`Mirror::build`], for the daemon: a run that would wait longer than
    /// `schedule.defer_after` for a rate-limit window ends deferred instead.
    pub fn build_for_daemon(
        settings: &Settings,
        key: &ApiKey,
        cancel: CancellationToken,
    ) -> Result<Mirror, AppError> {
        let defer_after = Some(settings.schedule.defer_after.0);
        Mirror::build_with(settings, key, cancel, defer_after)
    }

    /// As [`Mirror::build`], with the client's `defer_after` given; a new [`Metrics`].
    pub fn build_with(
        settings: &Settings,
        key: &ApiKey,
        cancel: CancellationToken,
        defer_after: Option<Duration>,
    ) -> Result<Mirror, AppError> {
        Mirror::build_recording(settings, key, cancel, defer_after, Metrics::new())
    }

    /// As [`Mirror::build_with`], recording into `metrics` (the process's one handle).
    pub fn build_recording(
        settings: &Settings,
        key: &ApiKey,
        cancel: CancellationToken,
        defer_after: Option<Duration>,
        metrics: Metrics,
    ) -> Result<Mirror, AppError> {
        let mut opts = ClientOptions::from_settings(&settings.api)?;
        opts.defer_after = defer_after;
        opts.metrics = metrics;
        let client = ApiClient::new(opts, key, cancel.clone())?;
        let location = settings.store_location()?;
        Ok(Mirror {
            settings: settings.clone(),
            key: key.clone(),
            client,
            options: sync_options(settings),
            cancel,
            defer_after,
            location,
        })
    }

    /// The settings the mirror was built from.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The API client every run of this mirror shares (one budget per route, one set of counters).
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    /// The metrics this mirror's client and runs record into (what `GET /metrics` renders).
    pub fn metrics(&self) -> &Metrics {
        self.client.metrics()
    }

    /// The run options derived from the settings.
    pub fn options(&self) -> &SyncOptions {
        &self.options
    }

    /// Where the mirror is: `store.path`, or `store.url` (PostgreSQL).
    pub fn db(&self) -> &Location {
        &self.location
    }

    /// The token that stops this mirror's requests and runs.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The same mirror with a client that never retries, on the same cancel token and
    /// the same metrics: for the two requests of a backfill's opening estimate, which
    /// must not spend the run's retries when the API is down (the run's preflight
    /// reports that).
    pub fn without_retries(&self) -> Result<Mirror, AppError> {
        let mut once = self.settings.clone();
        once.api.max_retries = 0;
        let metrics = self.metrics().clone();
        Mirror::build_recording(
            &once,
            &self.key,
            self.cancel.clone(),
            self.defer_after,
            metrics,
        )
    }

    /// The writer lock on `<db>.lock`, naming `purpose` to whoever finds it held;
    /// `wait` waits for the holder instead of failing.
    pub fn lock(&self, purpose: &str, wait: bool) -> Result<WriterLock, StoreError> {
        WriterLock::acquire(self.db(), purpose, wait)
    }

    /// Opens (creating and migrating) the mirror.
    pub fn open_store(&self) -> Result<Store, StoreError> {
        Store::open(self.db(), self.settings.store.busy_timeout.0)
    }

    /// Opens the mirror for reading only (no lock needed).
    pub fn open_read_only(&self) -> Result<Store, StoreError> {
        Store::open_read_only(self.db(), self.settings.store.busy_timeout.0)
    }

    /// Whether the mirror holds a completed full walk; `None` when that cannot be read
    /// (no file yet, or a file this version has not migrated).
    pub fn full_walk_done(&self) -> Option<bool> {
        self.open_read_only().ok()?.has_full_walk().ok()
    }

    /// Whether a run asked as `kind` walks everything and so opens with the backfill's
    /// estimate: see [`walks_everything`].
    pub fn walks_everything(&self, kind: RunKind) -> bool {
        walks_everything(kind, self.full_walk_done())
    }

    /// One run, as `lomi-sync backfill`/`sync` make it (the caller holds the lock).
    pub async fn run(
        &self,
        req: RunRequest,
        progress: &dyn Progress,
    ) -> Result<RunSummary, SyncError> {
        sync::run(
            &self.client,
            self.db(),
            &self.options,
            req,
            &self.cancel,
            progress,
        )
        .await
    }

    /// A backfill's walk with nothing written (no lock needed).
    pub async fn dry_run(&self, progress: &dyn Progress) -> Result<RunSummary, SyncError> {
        sync::dry_run(&self.client, &self.options, &self.cancel, progress).await
    }

    /// `backfill --estimate`: the list alone.
    pub async fn estimate(&self) -> Result<Estimate, SyncError> {
        sync::estimate::estimate(&self.client, &self.options, &self.cancel).await
    }

    /// Two requests: what the list counts, as the requests a backfill sends.
    pub async fn quick_estimate(&self) -> Result<Estimate, SyncError> {
        sync::estimate::quick(&self.client, &self.options).await
    }

    /// The daemon over this mirror, writing through one thread over `store` (opened
    /// with [`Mirror::open_store`]; the caller holds the lock for the daemon's life).
    pub fn into_daemon(self, notifier: Arc<dyn Notifier>, store: Store) -> Daemon {
        Daemon::new(
            self.settings,
            self.client,
            self.options,
            notifier,
            (store, self.location),
        )
    }
}

/// The engine's options from the settings.
pub fn sync_options(settings: &Settings) -> SyncOptions {
    SyncOptions {
        page_size: settings.api.page_size,
        concurrency: settings.api.concurrency as usize,
        settings: settings.sync.clone(),
        busy_timeout: settings.store.busy_timeout.0,
    }
}

/// A run walks everything (every customer's transactions, as a first load does) when
/// it is a backfill, or when the mirror holds no completed full walk: then even a
/// `full` is the mirror's first load.
pub fn walks_everything(asked: RunKind, full_walk_done: Option<bool>) -> bool {
    asked.for_mirror(full_walk_done) == RunKind::Backfill || full_walk_done != Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_into_an_unloaded_mirror_is_a_backfill() {
        use RunKind::*;
        for (asked, done, kind, everything) in [
            (Sync, Some(true), Sync, false),
            (Sync, Some(false), Backfill, true),
            (Sync, None, Backfill, true),
            (Full, Some(true), Full, false),
            (Full, Some(false), Full, true),
            (Full, None, Full, true),
            (Backfill, Some(true), Backfill, true),
            (Backfill, None, Backfill, true),
        ] {
            assert_eq!(asked.for_mirror(done), kind, "{asked:?} {done:?}");
            assert_eq!(
                walks_everything(asked, done),
                everything,
                "{asked:?} {done:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_built_mirror_reads_its_store_and_options_from_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.api.base_url = "http://127.0.0.1:9".parse().unwrap();
        settings.api.page_size = 25;
        settings.store.path = dir.path().join("m.db");
        let m = Mirror::build(&settings, &ApiKey::new("k"), CancellationToken::new()).unwrap();
        assert_eq!(m.options().page_size, 25);
        assert!(matches!(m.db(), Location::Sqlite(p) if *p == dir.path().join("m.db")));
        assert_eq!(m.full_walk_done(), None);
        assert!(m.walks_everything(RunKind::Sync));
        drop(m.open_store().unwrap());
        assert_eq!(m.full_walk_done(), Some(false));
        let bad = Mirror::build(
            &settings,
            &ApiKey::new("bad\nkey"),
            CancellationToken::new(),
        );
        assert!(matches!(bad, Err(AppError::Api(_))));
    }
}
