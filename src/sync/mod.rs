//! The sync engine: walks the API and hands the store what changed.
//!
//! A run is a *walk* in phases, each step checkpointed with the rows it wrote:
//!
//! 1. **list**: page through `GET /customers`, by default twice (`status=active`, then
//!    `status=inactive`), re-reading the transactions of the customers worth it;
//! 2. **topup**: re-read the top of each list for customers created during the walk
//!    (the list is newest first, so they land above pages already read); then count the
//!    customers listed against what the list counts and **sweep** a segment that came up
//!    short again with larger pages (see [`listing`]);
//! 3. **confirm**: `GET /customers/{id}` for every mirrored customer the walk missed:
//!    404 marks it deleted, 200 means page drift hid it, and it is kept;
//! 4. **feed** (feed mode, `sync.transactions_source`, issue 14): no transactions were
//!    read per customer; one pass over `GET /transactions` reads them (see [`feed`]);
//! 5. **rolling** (incremental runs): in per-customer mode, re-read the transactions of
//!    the customers longest unread, enough that each is re-read within `sync.full_every`;
//!    in feed mode, re-read a slice of the feed below the pass's window, enough that the
//!    whole feed is re-read within `sync.full_every` (see `feed_slice`).
//!
//! A killed run leaves its walk in the `walk` table and the next run resumes it.

pub mod estimate;
mod feed;
mod feed_slice;
pub mod listing;
mod pipeline;
mod plan;
mod run;
mod summary;
mod walk;
pub mod webhook;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, ApiError, StatusFilter};
use crate::config::SyncSettings;
use crate::store::{Applied, NotReread, Phase, PlanInfo, RunKind, Store, StoreError, Walk};
use pipeline::{PageInFlight, Stopped};
pub use run::{dry_run, run, run_on};
use walk::segments;
pub use writer::{Writer, WriterHandle};

/// Why a run did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A request failed, after its retries; [`ApiError::is_fatal`] says whether a later run
    /// can do better.
    #[error(transparent)]
    Api(ApiError),
    /// The mirror could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cancel token fired (a shutdown): the walk's checkpoint is kept for the next run.
    #[error("the run was interrupted by a shutdown request; the next run resumes where it stopped")]
    Interrupted,
    /// A scheduled run met a rate-limit wait longer than `schedule.defer_after`: it
    /// stopped at a checkpoint, recorded `deferred` with `until`, and the daemon's next
    /// tick after `until` resumes the walk.
    #[error(
        "deferred: {route} must wait for its rate-limit window until {until}; the next scheduled run after that resumes the walk",
        route = route.template(),
        until = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )]
    Deferred {
        /// The route that must wait.
        route: crate::api::budget::Route,
        /// When the route's window lets it go on (UTC, wall clock).
        until: chrono::DateTime<chrono::Utc>,
    },
    /// The thread that writes the mirror's batches stopped before the run did.
    #[error("the database writer thread stopped unexpectedly")]
    WriterGone,
    /// The list counts more customers than the walk could list, even after sweeping it:
    /// the run fails so the gap is seen, and keeps what it read.
    #[error(
        "{missing} customers that the list counts could not be listed, after {sweeps} sweeps over it \
         (its order or its paging is unstable: customers sharing a created_at, or pages cut short); \
         the mirror keeps everything read, and the next run lists again"
    )]
    Incomplete {
        /// Customers the list counts that the walk could not list, less those the confirm
        /// phase found present one by one.
        missing: u64,
        /// Sweeps made ([`Walk::pass`]): full re-reads of a segment that came up short.
        sweeps: u32,
    },
    /// The run failed and its failure could not be written to `sync_runs` either: said
    /// here, because `lomi-sync status` will not show this run.
    #[error(
        "{error}; and this run could not be recorded in the mirror ({record}), so `lomi-sync status` does not show it"
    )]
    Unrecorded {
        /// Why the run failed.
        error: Box<SyncError>,
        /// Why that could not be recorded.
        record: StoreError,
    },
}

impl From<ApiError> for SyncError {
    /// A request cut short by shutdown is an interruption, not a failure.
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Cancelled { .. } => SyncError::Interrupted,
            ApiError::Deferred { route, until, .. } => SyncError::Deferred { route, until },
            e => SyncError::Api(e),
        }
    }
}

impl SyncError {
    /// No later run can succeed without the user fixing something (the API key).
    pub fn is_fatal(&self) -> bool {
        match self {
            SyncError::Api(e) => e.is_fatal(),
            SyncError::Unrecorded { error, .. } => error.is_fatal(),
            _ => false,
        }
    }
}

/// How a run fetches: taken from `[api]` and `[sync]` settings.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// `api.page_size`: list rows asked a page.
    pub page_size: u32,
    /// `api.concurrency`: requests under way at once.
    pub concurrency: usize,
    /// The `[sync]` settings.
    pub settings: SyncSettings,
    /// `store.busy_timeout`: how long a write waits for a busy database.
    pub busy_timeout: Duration,
}

/// What the caller asks for.
#[derive(Clone, Copy, Debug)]
pub struct RunRequest {
    /// The kind asked. A `sync` on a mirror never fully walked runs as a backfill
    /// ([`RunKind::for_mirror`]); an unfinished walk, when resumed, keeps its own kind.
    pub kind: RunKind,
    /// Forget an unfinished walk instead of resuming it.
    pub restart: bool,
}

/// Progress callbacks, for a progress bar or periodic log lines.
pub trait Progress: Send + Sync {
    /// Called as the walk advances (list pages, confirm and rolling steps), with where it
    /// stands.
    fn update(&self, p: &ProgressInfo);
}

/// A snapshot of a walk's progress.
#[derive(Clone, Debug)]
pub struct ProgressInfo {
    /// The phase the walk is in (`Display`: `list`, `topup`, `sweep`, `confirm`,
    /// `rolling`).
    pub phase: Phase,
    /// Distinct customers listed so far by this run.
    pub customers_seen: u64,
    /// Customers the list says exist, summed over the segments seen so far.
    pub customers_total: u64,
    /// HTTP requests the client has sent so far, retries included.
    pub requests: u64,
}

impl Default for ProgressInfo {
    /// Before the first report: the walk starts by listing.
    fn default() -> Self {
        ProgressInfo {
            phase: Phase::List,
            customers_seen: 0,
            customers_total: 0,
            requests: 0,
        }
    }
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {
    fn update(&self, _: &ProgressInfo) {}
}

/// What a run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunSummary {
    /// The run's `sync_runs` row; `None` for a dry run, which records nothing.
    pub run_id: Option<i64>,
    /// The walk's kind (a resumed walk's own; `Display` and JSON: `backfill`, `sync`,
    /// `full`).
    pub kind: RunKind,
    /// The run that started the walk this run finished, if it resumed one.
    pub resumed_walk_of: Option<i64>,
    /// Wall-clock time of the run, in seconds.
    pub duration_secs: f64,
    /// HTTP requests the run sent, retries included.
    pub requests: u64,
    /// Of those, the retries.
    pub retries: u64,
    /// Distinct customers the run listed.
    pub customers_seen: u64,
    /// Transaction rows received (of every customer whose transactions were read).
    pub transactions_seen: u64,
    /// Customers whose transactions were re-read.
    pub transaction_refreshes: u64,
    /// Pages read from the org-wide feed (`GET /transactions`), in feed mode.
    pub feed_pages: u64,
    /// Of those, the rolling re-read's: the slice of the feed below the incremental
    /// pass's window that this run re-read (`feed_slice.rs`).
    pub feed_rolling_pages: u64,
    /// `GET /transactions/{id}` reads: transactions a complete feed pass did not show,
    /// confirmed gone (404) or present.
    pub feed_confirmations: u64,
    /// `GET /customers/{id}` calls (details and confirmations).
    pub customer_reads: u64,
    /// The largest list page the server proved it serves, when it cut pages shorter
    /// than `api.page_size` asked (a silent cap).
    pub list_page_cap: Option<u32>,
    /// Records skipped because their id could not be read (each time one was received).
    pub records_skipped: u64,
    /// An incremental run: the customers whose payments it did not re-read, and by
    /// when they will be (`sync.full_every`).
    pub not_reread: Option<NotReread>,
    /// Rows written, by kind.
    #[serde(flatten)]
    pub applied: Applied,
    /// The sum of [`RunSummary::applied`]: customer and transaction rows written.
    pub rows_written: u64,
}

/// The engine state of one run.
struct Engine<'a> {
    client: &'a ApiClient,
    opts: &'a SyncOptions,
    cancel: &'a CancellationToken,
    progress: &'a dyn Progress,
    /// `None` in a dry run: nothing is read from or written to a mirror.
    writer: Option<Writer>,
    reader: Option<Store>,
    walk: Walk,
    run_id: i64,
    initial_load: bool,
    /// Ids seen by this walk, each with where ([`seen_bit`] bits); a resumed walk
    /// starts from the store's record of them.
    seen: HashMap<String, u8>,
    /// Customers listed in each segment (indexed by [`segment_index`]), and in any.
    listed: [u64; 3],
    listed_distinct: u64,
    /// The latest `totalCount` of each segment, from a page with rows (a page past the
    /// end says nothing, NOTES.md): for progress. The completeness check uses the
    /// walk's own `counts`, kept with its checkpoint.
    segment_totals: HashMap<StatusFilter, u64>,
    /// The first offset of the current pass not read yet; `None` after a resume (the
    /// next page's start, then).
    read_to: Option<u64>,
    /// The page just read came back short: if the next one shows rows past it, it was
    /// a cap.
    probing: bool,
    /// Records without a readable id in the current list or sweep pass: the list counts
    /// them, the walk cannot list them.
    pass_unreadable: u64,
    /// A fetch of a page failed (or was cancelled): what the rest of that page fetched,
    /// for [`Engine::salvage`] to commit with the page's start as the checkpoint (and
    /// everything after it too, or the checkpoint would move past customers never
    /// written).
    stopped: Option<Stopped>,
    summary: RunSummary,
    /// Optional requests left in this run's budget (`sync.max_requests_per_run`).
    budget: Option<u64>,
    /// What the mirror knew of each customer when the run started.
    snapshot: HashMap<Box<str>, PlanInfo>,
    /// Pages fetching, oldest first; their batches are submitted in this order.
    in_flight: VecDeque<PageInFlight>,
    /// `api.concurrency`: requests under way at once, over all pages in flight.
    permits: Arc<Semaphore>,
    /// What the current feed read (a pass, or a rolling slice) has shown, window by
    /// window: the mirror's live rows a finished window did not show are confirmed one
    /// by one before the page that finished it is committed. `None`: no feed read
    /// under way, or one with nothing to confirm (a first load).
    feed_seen: Option<feed::Vanished>,
}

impl<'a> Engine<'a> {
    fn new(
        client: &'a ApiClient,
        opts: &'a SyncOptions,
        cancel: &'a CancellationToken,
        progress: &'a dyn Progress,
        writer: Option<Writer>,
        reader: Option<Store>,
        walk: Walk,
    ) -> Self {
        let budget = match opts.settings.max_requests_per_run {
            0 => None,
            n => Some(n as u64),
        };
        Engine {
            client,
            opts,
            cancel,
            progress,
            writer,
            reader,
            summary: RunSummary {
                kind: walk.kind,
                ..RunSummary::default()
            },
            walk,
            run_id: 0,
            initial_load: false,
            seen: HashMap::new(),
            listed: [0; 3],
            listed_distinct: 0,
            segment_totals: HashMap::new(),
            read_to: None,
            probing: false,
            pass_unreadable: 0,
            stopped: None,
            budget,
            snapshot: HashMap::new(),
            in_flight: VecDeque::new(),
            permits: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            feed_seen: None,
        }
    }

    fn check_cancel(&self) -> Result<(), SyncError> {
        if self.cancel.is_cancelled() {
            Err(SyncError::Interrupted)
        } else {
            Ok(())
        }
    }

    fn report(&self, phase: Phase) {
        self.progress.update(&ProgressInfo {
            phase,
            customers_seen: self.summary.customers_seen,
            customers_total: self.segment_totals.values().sum(),
            requests: self.client.counters().requests.load(Ordering::Relaxed),
        });
    }
}
