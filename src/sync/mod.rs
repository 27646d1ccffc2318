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
//! 4. **rolling** (incremental runs): re-read the transactions of the customers longest
//!    unread, enough that each is re-read within `sync.full_every`.
//!
//! A killed run leaves its walk in the `walk` table and the next run resumes it.

pub mod estimate;
pub mod listing;
mod summary;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::model::TransactionList;
use crate::api::{ApiClient, ApiError, Customer, CustomerPage, CustomerRead, StatusFilter};
use crate::config::SyncSettings;
use crate::store::{
    Applied, Batch, NotReread, Observed, Phase, PlanInfo, RunKind, Store, StoreError, Walk, now,
    text_hash,
};
use tokio::task::JoinHandle;
use writer::Writer;

/// Why a run did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the run was interrupted by a shutdown request; the next run resumes where it stopped")]
    Interrupted,
    #[error("the database writer thread stopped unexpectedly")]
    WriterGone,
    #[error(
        "{missing} customers that the list counts could not be listed, after {sweeps} sweeps over it \
         (its order or its paging is unstable: customers sharing a created_at, or pages cut short); \
         the mirror keeps everything read, and the next run lists again"
    )]
    Incomplete { missing: u64, sweeps: u32 },
    /// The run failed and its failure could not be written to `sync_runs` either: said
    /// here, because `lomi-sync status` will not show this run.
    #[error(
        "{error}; and this run could not be recorded in the mirror ({record}), so `lomi-sync status` does not show it"
    )]
    Unrecorded {
        error: Box<SyncError>,
        record: StoreError,
    },
}

impl From<ApiError> for SyncError {
    /// A request cut short by shutdown is an interruption, not a failure.
    fn from(e: ApiError) -> Self {
        if e.is_cancelled() {
            SyncError::Interrupted
        } else {
            SyncError::Api(e)
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
    pub page_size: u32,
    pub concurrency: usize,
    pub settings: SyncSettings,
    pub busy_timeout: Duration,
}

/// What the caller asks for.
#[derive(Clone, Copy, Debug)]
pub struct RunRequest {
    pub kind: RunKind,
    /// Forget an unfinished walk instead of resuming it.
    pub restart: bool,
}

/// Progress callbacks, for a progress bar or periodic log lines.
pub trait Progress: Send + Sync {
    fn update(&self, p: &ProgressInfo);
}

/// A snapshot of a walk's progress.
#[derive(Clone, Debug, Default)]
pub struct ProgressInfo {
    pub phase: &'static str,
    pub customers_seen: u64,
    /// Customers the list says exist, summed over the segments seen so far.
    pub customers_total: u64,
    pub requests: u64,
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {
    fn update(&self, _: &ProgressInfo) {}
}

/// What a run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunSummary {
    pub run_id: Option<i64>,
    pub kind: &'static str,
    /// The run that started the walk this run finished, if it resumed one.
    pub resumed_walk_of: Option<i64>,
    pub duration_secs: f64,
    pub requests: u64,
    pub retries: u64,
    pub customers_seen: u64,
    pub transactions_seen: u64,
    /// Customers whose transactions were re-read.
    pub transaction_refreshes: u64,
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
    pub rows_written: u64,
}

/// One customer of a page and what to fetch for it.
struct Job {
    customer: Option<Customer>,
    id: String,
    details: bool,
    transactions: bool,
}

/// What fetching a job produced.
enum Fetched {
    Present {
        observed: Option<Box<Observed>>,
        transactions: Option<TransactionList>,
    },
    Gone,
}

/// List pages whose fetches may overlap: while one page's slowest requests finish,
/// the next page's start, so neither the connections nor the writer wait on a page's
/// stragglers.
const PAGES_IN_FLIGHT: usize = 4;

/// Seconds of requests, at the configured rate, that one committed unit of work holds:
/// what an interruption can lose. A page of 200 customers at 4 requests a second is
/// about 50 s of reads, so a page is cut into chunks, each committed with a checkpoint
/// that still points at its page (a resumed run reads the page again and skips the
/// customers the walk has seen).
const CHUNK_SECS: f64 = 1.0;

/// One page's fetches, running, and what to commit with their results.
struct PageInFlight {
    fetches: JoinHandle<Vec<(String, Result<Fetched, ApiError>)>>,
    segment: &'static str,
    pages: u32,
    checkpoint: Walk,
    /// The walk where this page started: what a part of it commits with, so that a
    /// resumed run reads its page again (and skips the customers committed).
    restart: Walk,
    /// Customers this page lists for the first time in its segment but that were read
    /// already (listed in another segment): recorded as seen here too, nothing fetched.
    also_seen: Vec<String>,
}

/// A page whose fetches did not all succeed: what the others fetched, and where the
/// page started.
struct Stopped {
    restart: Walk,
    segment: &'static str,
    fetched: Vec<(String, Fetched)>,
}

/// Where a batch goes in the walk: what [`Engine::submit`] needs of a page in flight.
struct Part {
    segment: &'static str,
    pages: u32,
    checkpoint: Walk,
    also_seen: Vec<String>,
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
}

/// How far a run got, for recording it if it fails (see [`run`]).
struct RunRecord {
    kind: RunKind,
    started_at: String,
    /// The preflight passed and the mirror is being opened: from here on, a failure
    /// is recorded.
    opened: bool,
    /// The run's `sync_runs` row, once written.
    run_id: Option<i64>,
    base_requests: u64,
    base_retries: u64,
}

/// Runs one walk against the mirror at `db` (the caller holds its writer lock).
///
/// Every run that gets as far as opening the mirror leaves a `sync_runs` row. A run
/// that fails, even before its row is written (a database another program is writing,
/// a migration that cannot run), is recorded `failed` (or `interrupted`) with its error
/// from a connection of its own once the run's connections are closed; if even that
/// cannot be written, the error says so ([`SyncError::Unrecorded`]). A run stopped at
/// the preflight, before the mirror is opened, writes nothing (a rejected key creates
/// no file).
pub async fn run(
    client: &ApiClient,
    db: &Path,
    opts: &SyncOptions,
    req: RunRequest,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<RunSummary, SyncError> {
    let mut rec = RunRecord {
        kind: req.kind,
        started_at: now(),
        opened: false,
        run_id: None,
        base_requests: client.counters().requests.load(Ordering::Relaxed),
        base_retries: client.counters().retries.load(Ordering::Relaxed),
    };
    match run_recorded(client, db, opts, req, cancel, progress, &mut rec).await {
        Ok(summary) => Ok(summary),
        Err(e) if !rec.opened || !db.exists() => Err(e),
        Err(e) => Err(record_failure(client, db, opts.busy_timeout, rec, e).await),
    }
}

/// Writes a failed run's row (see [`run`]) and returns the error to report: the run's
/// own, or [`SyncError::Unrecorded`] if the row could not be written.
async fn record_failure(
    client: &ApiClient,
    db: &Path,
    busy_timeout: Duration,
    rec: RunRecord,
    error: SyncError,
) -> SyncError {
    let outcome = if matches!(error, SyncError::Interrupted) {
        crate::store::Outcome::Interrupted
    } else {
        crate::store::Outcome::Failed
    };
    let failure = crate::store::RunFailure {
        run_id: rec.run_id,
        kind: rec.kind,
        started_at: rec.started_at,
        outcome,
        error: error.to_string(),
        requests: client.counters().requests.load(Ordering::Relaxed) - rec.base_requests,
        retries: client.counters().retries.load(Ordering::Relaxed) - rec.base_retries,
    };
    let path = db.to_owned();
    let written = tokio::task::spawn_blocking(move || {
        crate::store::record_unsuccessful_run(&path, busy_timeout, &failure)
    })
    .await
    .unwrap_or_else(|e| {
        Err(StoreError::Io {
            path: db.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })
    });
    match written {
        Ok(id) => {
            tracing::debug!(run = id, "the failed run is recorded");
            error
        }
        Err(record) => SyncError::Unrecorded {
            error: Box::new(error),
            record,
        },
    }
}

/// The walk of [`run`], which records how far it got in `rec`.
async fn run_recorded(
    client: &ApiClient,
    db: &Path,
    opts: &SyncOptions,
    req: RunRequest,
    cancel: &CancellationToken,
    progress: &dyn Progress,
    rec: &mut RunRecord,
) -> Result<RunSummary, SyncError> {
    let started = Instant::now();
    // Counters are per client and a daemon reuses its client: report this run's share.
    let base_requests = client.counters().requests.load(Ordering::Relaxed);
    let base_retries = client.counters().retries.load(Ordering::Relaxed);
    let base_skipped = client.counters().skipped.load(Ordering::Relaxed);
    let base_budgets = client.route_budgets();
    preflight(client).await?;
    rec.opened = true;
    let mut store = Store::open(db, opts.busy_timeout)?;
    store.recover_stale_runs()?;
    let (walk, resumed_walk_of) = open_walk(&mut store, req, opts, rec)?;
    let run_id = walk.run_id;
    let initial_load = walk.initial;
    let reader = Store::open_read_only(db, opts.busy_timeout)?;
    let mut engine = Engine::new(
        client,
        opts,
        cancel,
        progress,
        Some(Writer::spawn(store)),
        Some(reader),
        walk,
    );
    engine.run_id = run_id;
    engine.initial_load = initial_load;
    if let Some(r) = &engine.reader {
        if !initial_load {
            let hot = ago(opts.settings.hot_window.0);
            let pending = ago(opts.settings.pending_window.0);
            engine.snapshot = r.plan_snapshot(&hot, &pending)?;
        }
        for (id, segment) in r.walk_seen()? {
            engine.mark_seen(id, seen_bit(&segment));
        }
    }
    engine.summary.resumed_walk_of = resumed_walk_of;
    engine.summary.run_id = Some(run_id);
    let result = engine.walk_all().await;
    if result.is_err() {
        engine.salvage().await;
    }
    engine.summary.list_page_cap = engine.walk.page_cap;
    let requests = client.counters().requests.load(Ordering::Relaxed) - base_requests;
    let retries = client.counters().retries.load(Ordering::Relaxed) - base_retries;
    let mut writer = engine.writer.take().expect("a writer for a real run");
    // Commit what was fetched before deciding the outcome: pages already complete
    // are kept even when the run stops.
    let flushed = writer.flush().await;
    engine.summary.applied = writer.applied;
    engine.summary.rows_written = writer.applied.rows_written();
    engine.summary.requests = requests;
    engine.summary.retries = retries;
    engine.summary.duration_secs = started.elapsed().as_secs_f64();
    let skipped = client.counters().skipped.load(Ordering::Relaxed) - base_skipped;
    engine.summary.records_skipped = skipped;
    let budgets = route_budget_rows(&client.route_budgets(), &base_budgets);
    let noted = writer
        .call(move |s| {
            s.note_records_skipped(run_id, skipped)?;
            s.note_route_budgets(run_id, &budgets)
        })
        .await;
    // A failure is recorded by `run`, once this writer's connection is closed.
    result.and(flushed).and(noted)?;
    let incomplete = engine.incomplete()?;
    complete(&mut writer, run_id, (requests, retries), incomplete).await?;
    if let (RunKind::Sync, Some(r)) = (engine.walk.kind, &engine.reader) {
        let since = &engine.walk.started_at;
        engine.summary.not_reread = Some(r.not_reread_since(since, opts.settings.full_every.0)?);
    }
    // The run's time includes building deferred indexes at the end of a backfill.
    engine.summary.duration_secs = started.elapsed().as_secs_f64();
    Ok(std::mem::take(&mut engine.summary))
}

/// Resumes the unfinished walk (its kind wins) or starts a new one, and the run's row:
/// the walk, with the run it resumes, if any. A `sync` into a mirror no backfill has
/// completed runs a backfill.
fn open_walk(
    store: &mut Store,
    req: RunRequest,
    opts: &SyncOptions,
    rec: &mut RunRecord,
) -> Result<(Walk, Option<i64>), SyncError> {
    let resume = match store.walk()? {
        Some(w) if !(req.restart || req.kind == RunKind::Backfill && w.kind == RunKind::Sync) => {
            Some(w)
        }
        _ => None,
    };
    let mut kind = resume.as_ref().map_or(req.kind, |w| w.kind);
    let has_full_walk = store.has_full_walk()?;
    if kind == RunKind::Sync && resume.is_none() && !has_full_walk {
        // Nothing to be incremental against: the first run is a backfill.
        tracing::info!("no completed backfill in this mirror yet: running a backfill");
        kind = RunKind::Backfill;
    }
    rec.kind = kind;
    let run_id = store.start_run(kind)?;
    rec.run_id = Some(run_id);
    match resume {
        Some(mut w) => {
            let of = store.adopt_walk(run_id)?;
            tracing::info!(run = run_id, of, phase = w.phase.as_str(), segment = %w.segment, page = w.next_page, "resuming an unfinished walk");
            w.run_id = run_id;
            Ok((w, of))
        }
        None => {
            let initial = kind != RunKind::Sync && !has_full_walk;
            let w = new_walk(run_id, kind, initial, opts);
            store.begin_walk(&w)?;
            tracing::info!(run = run_id, kind = kind.as_str(), segment = %w.segment, "walk started: listing customers");
            Ok((w, None))
        }
    }
}

/// Ends the walk: `succeeded`, or, when it could not list everyone the list counts
/// (`incomplete`, from [`Engine::incomplete`]), `failed` with the count (the walk is
/// over either way) and that error.
async fn complete(
    writer: &mut Writer,
    run_id: i64,
    (requests, retries): (u64, u64),
    incomplete: Option<SyncError>,
) -> Result<(), SyncError> {
    let record = incomplete.as_ref().map(|e| match e {
        SyncError::Incomplete { missing, .. } => (*missing, e.to_string()),
        _ => unreachable!("incomplete() gives Incomplete"),
    });
    writer
        .call(move |s| {
            let missing = record.as_ref().map(|(n, e)| (*n, e.as_str()));
            s.complete_walk(run_id, requests, retries, missing)
        })
        .await?;
    incomplete.map_or(Ok(()), Err)
}

/// This run's view of each route's budget: the client's last known numbers and the
/// 429s met since `base` (a daemon's client outlives its runs).
fn route_budget_rows(
    now: &[crate::api::budget::RouteReport],
    base: &[crate::api::budget::RouteReport],
) -> Vec<crate::store::RouteBudgetRow> {
    now.iter()
        .map(|r| {
            let before = base
                .iter()
                .find(|b| b.route == r.route)
                .map_or(0, |b| b.rate_limited);
            let seen = r.limit > 0;
            crate::store::RouteBudgetRow {
                route: r.route.template().to_string(),
                limit: seen.then_some(i64::from(r.limit)),
                remaining: seen.then_some(i64::from(r.remaining)),
                reset_at: seen.then(|| {
                    chrono::DateTime::<chrono::Utc>::from(r.reset_at)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }),
                rate_limited: (r.rate_limited - before) as i64,
            }
        })
        .filter(|row| row.limit.is_some() || row.rate_limited > 0)
        .collect()
}

/// Walks everything and writes nothing: how long and how many requests a backfill takes.
pub async fn dry_run(
    client: &ApiClient,
    opts: &SyncOptions,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<RunSummary, SyncError> {
    let started = Instant::now();
    preflight(client).await?;
    let walk = new_walk(0, RunKind::Backfill, true, opts);
    tracing::info!(segment = %walk.segment, "dry run walk started: listing customers");
    let mut engine = Engine::new(client, opts, cancel, progress, None, None, walk);
    engine.walk_all().await?;
    engine.summary.list_page_cap = engine.walk.page_cap;
    if let Some(e) = engine.incomplete()? {
        return Err(e);
    }
    engine.summary.requests = client.counters().requests.load(Ordering::Relaxed);
    engine.summary.retries = client.counters().retries.load(Ordering::Relaxed);
    engine.summary.records_skipped = client.counters().skipped.load(Ordering::Relaxed);
    engine.summary.duration_secs = started.elapsed().as_secs_f64();
    Ok(std::mem::take(&mut engine.summary))
}

/// A walk at its start: the first segment's first page.
fn new_walk(run_id: i64, kind: RunKind, initial: bool, opts: &SyncOptions) -> Walk {
    Walk {
        run_id,
        kind,
        started_at: now(),
        phase: Phase::List,
        segment: segments(&opts.settings)[0].as_str().to_string(),
        next_page: 1,
        page_size: opts.page_size,
        last_total: None,
        pass: 0,
        page_cap: None,
        counts: Default::default(),
        initial,
    }
}

fn segments(s: &SyncSettings) -> Vec<StatusFilter> {
    if s.use_status_filter {
        vec![StatusFilter::Active, StatusFilter::Inactive]
    } else {
        vec![StatusFilter::All]
    }
}

/// The segments a customer can be listed in, in [`segment_index`] order.
const SEGMENTS: [StatusFilter; 3] = [
    StatusFilter::All,
    StatusFilter::Active,
    StatusFilter::Inactive,
];

fn segment_index(s: StatusFilter) -> usize {
    match s {
        StatusFilter::All => 0,
        StatusFilter::Active => 1,
        StatusFilter::Inactive => 2,
    }
}

/// Where a walk saw a customer, as bits: listed in a segment, or read by a later phase.
fn seen_bit(segment: &str) -> u8 {
    match StatusFilter::parse(segment) {
        Some(s) => 1 << segment_index(s),
        None => SEEN_READ,
    }
}

/// Bits of [`seen_bit`] that are list segments.
const SEEN_LISTED: u8 = 0b111;
/// Read by the confirm or rolling phase, not listed.
const SEEN_READ: u8 = 0b1000;

fn ago(d: Duration) -> String {
    let t = chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
    crate::api::model::format_timestamp(t)
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
                kind: walk.kind.as_str(),
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
        }
    }

    fn check_cancel(&self) -> Result<(), SyncError> {
        if self.cancel.is_cancelled() {
            Err(SyncError::Interrupted)
        } else {
            Ok(())
        }
    }

    async fn walk_all(&mut self) -> Result<(), SyncError> {
        loop {
            tracing::debug!(phase = self.walk.phase.as_str(), segment = %self.walk.segment, page = self.walk.next_page, "walk step");
            match self.walk.phase {
                Phase::List | Phase::Topup | Phase::Sweep => {
                    let seg = StatusFilter::parse(&self.walk.segment).unwrap_or(StatusFilter::All);
                    self.list_segment(seg).await?;
                }
                Phase::Confirm => {
                    if self.writer.is_none() {
                        return Ok(());
                    }
                    self.confirm().await?;
                    self.walk.phase = Phase::Rolling;
                }
                Phase::Rolling => {
                    if self.walk.kind == RunKind::Sync {
                        self.rolling().await?;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// The walk's state once a pass over the current segment is done: the next
    /// segment, a sweep, or the next phase.
    fn advanced(&mut self) -> Walk {
        let segs = segments(&self.opts.settings);
        let i = segs
            .iter()
            .position(|s| s.as_str() == self.walk.segment)
            .unwrap_or(0);
        let mut w = self.walk.clone();
        w.next_page = 1;
        w.last_total = None;
        w.page_size = listing::base_page_size(self.opts.page_size, w.page_cap);
        self.probing = false;
        self.read_to = None;
        match (w.phase, segs.get(i + 1)) {
            (Phase::List | Phase::Topup, Some(next)) => w.segment = next.as_str().into(),
            (Phase::List, None) => {
                w.phase = Phase::Topup;
                w.segment = segs[0].as_str().into();
            }
            _ => self.after_listing(&mut w, &segs),
        }
        w
    }

    /// After the top-ups, and after each sweep: counts the customers listed against
    /// what the list counts, and sweeps the segment furthest short, or gives up after
    /// [`listing::MAX_SWEEPS`] and goes on (the run will then not succeed).
    fn after_listing(&mut self, w: &mut Walk, segs: &[StatusFilter]) {
        // Records the list counts but whose id cannot be read were skipped (and
        // counted as such), not missed.
        let unreadable =
            |s: &StatusFilter| w.counts.unreadable.get(s.as_str()).copied().unwrap_or(0);
        let counts: Vec<(Option<u64>, u64)> = segs
            .iter()
            .map(|s| {
                let total = w
                    .counts
                    .totals
                    .get(s.as_str())
                    .or(self.segment_totals.get(s));
                (
                    total.copied(),
                    self.listed[segment_index(*s)] + unreadable(s),
                )
            })
            .collect();
        let skipped: u64 = segs.iter().map(unreadable).sum();
        let missing = listing::shortfall(&counts, self.listed_distinct + skipped);
        match listing::segment_to_sweep(&counts) {
            Some(t) if missing > 0 && w.pass < listing::MAX_SWEEPS => {
                w.pass += 1;
                w.phase = Phase::Sweep;
                w.segment = segs[t].as_str().into();
                w.page_size = listing::sweep_page_size(w.page_cap);
                tracing::warn!(
                    segment = segs[t].as_str(),
                    missing,
                    sweep = w.pass,
                    page_size = w.page_size,
                    "the list showed fewer customers than it counts (ties in created_at or \
                     pages cut short): reading it again in the largest pages it serves"
                );
            }
            _ => {
                if missing > 0 {
                    tracing::error!(
                        missing,
                        "customers the list counts could not be listed; this run will not \
                         succeed and the next one lists again"
                    );
                }
                w.counts.missing = (missing > 0).then_some(missing);
                w.phase = Phase::Confirm;
                w.segment = StatusFilter::All.as_str().into();
            }
        }
    }

    /// Pages through one segment of the list (a list pass, a top-up or a sweep).
    async fn list_segment(&mut self, seg: StatusFilter) -> Result<(), SyncError> {
        // The next page is requested while this one is processed: an incremental run is
        // otherwise a chain of sequential round trips.
        type Prefetch = (u64, u32, JoinHandle<Result<CustomerPage, ApiError>>);
        let mut prefetch: Option<Prefetch> = None;
        let result = loop {
            if let Err(e) = self.check_cancel() {
                break Err(e);
            }
            let (page_no, size) = (self.walk.next_page, self.walk.page_size);
            let fetched = match prefetch.take() {
                Some((p, s, handle)) if p == page_no && s == size => {
                    handle.await.expect("a list task panicked")
                }
                stale => {
                    if let Some((_, _, handle)) = stale {
                        handle.abort();
                    }
                    self.client.list_customers(page_no, size, seg).await
                }
            };
            let page = match fetched {
                Ok(p) => p,
                Err(e) => break Err(e.into()),
            };
            // A full page is followed by another (only an empty page ends a pass).
            if self.walk.phase != Phase::Topup && page.customers.len() == size as usize {
                let client = self.client.clone();
                let next =
                    tokio::spawn(
                        async move { client.list_customers(page_no + 1, size, seg).await },
                    );
                prefetch = Some((page_no + 1, size, next));
            }
            match self.list_page(seg, page_no, page).await {
                Ok(true) => break Ok(()),
                Ok(false) => {}
                Err(e) => break Err(e),
            }
        };
        if let Some((_, _, handle)) = prefetch {
            handle.abort();
        }
        result
    }

    /// Processes one list page; `Ok(true)` when the pass over the segment is done.
    async fn list_page(
        &mut self,
        seg: StatusFilter,
        page_no: u64,
        page: CustomerPage,
    ) -> Result<bool, SyncError> {
        let phase = self.walk.phase;
        let size = self.walk.page_size;
        // A record skipped for an unreadable id still takes its row of the page.
        let rows = page.customers.len() + page.skipped.len();
        let start = listing::page_start(page_no, size);
        let from = self.read_to.unwrap_or(start).max(start);
        // A probe's first rows were read on the short page before it.
        let overlap = (from - start) as usize;
        self.count_unreadable(phase, page_no, page.skipped.len().saturating_sub(overlap));
        let total = page.total_count;
        self.note_total(seg, page_no, rows, total);
        let mut customers = page.customers;
        if phase == Phase::Topup {
            self.flush().await?;
        } else {
            customers.extend(self.reread_shifted(seg, page_no, rows, total).await?);
        }
        // Rows past the short page that this walk has not listed prove a cap; rows it has
        // listed only show that the list grew (everything shifted down).
        let unlisted_past = customers
            .iter()
            .skip(overlap)
            .filter(|c| !self.listed_in(&c.id, seg))
            .count();
        if self.probing && unlisted_past > 0 {
            self.learn_cap(size);
        }
        let (fresh, also_seen) = self.unseen(customers, seg);
        let read = listing::PageRead {
            page: page_no,
            size,
            rows,
            fresh: fresh.len(),
            from,
            probe: self.probing,
            unlisted_past,
        };
        let step = listing::next_step(phase, &read);
        let done = step == listing::ListStep::Done;
        if done && phase != Phase::Topup {
            let unreadable = self.pass_unreadable;
            self.walk
                .counts
                .unreadable
                .insert(seg.as_str().into(), unreadable);
        }
        // The checkpoint committed with this page is where a resumed run starts.
        let next = match step {
            listing::ListStep::Done => self.advanced(),
            listing::ListStep::Next {
                page,
                size,
                from,
                probe,
            } => {
                self.probing = probe;
                self.read_to = Some(from);
                let mut w = self.walk.clone();
                w.next_page = page;
                w.page_size = size;
                w.last_total = (rows > 0).then_some(total);
                w
            }
        };
        let jobs = self.plan(fresh, seg)?;
        self.start_chunked(jobs, seg.as_str(), 1, next.clone(), also_seen)
            .await?;
        if done {
            self.drain().await?;
        }
        self.walk = next;
        self.report(phase.as_str());
        Ok(done)
    }

    /// Counts the unreadable records of a list or sweep pass, from its first page on.
    fn count_unreadable(&mut self, phase: Phase, page_no: u64, skipped: usize) {
        if phase == Phase::Topup {
            return;
        }
        if page_no == 1 {
            self.pass_unreadable = 0;
        }
        self.pass_unreadable += skipped as u64;
    }

    /// Records what a page says the segment holds. A page past the end reports 0 on
    /// the live service (NOTES.md), so only a page with rows, or the first page, counts.
    fn note_total(&mut self, seg: StatusFilter, page_no: u64, rows: usize, total: u64) {
        if rows == 0 && page_no > 1 {
            return;
        }
        self.segment_totals.insert(seg, total);
        if page_no == 1 && self.walk.phase != Phase::List {
            self.walk.counts.totals.insert(seg.as_str().into(), total);
        }
    }

    /// Customers deleted above our position since the previous page shift the rest
    /// up, so the start of this page slid onto the previous one: reads those again to
    /// catch them (only the unseen ones cost anything beyond the request).
    async fn reread_shifted(
        &mut self,
        seg: StatusFilter,
        page_no: u64,
        rows: usize,
        total: u64,
    ) -> Result<Vec<Customer>, SyncError> {
        let size = self.walk.page_size;
        let fell = match self.walk.last_total {
            Some(last) if page_no > 1 && rows > 0 && total < last => last - total,
            _ => return Ok(Vec::new()),
        };
        let back = fell.div_ceil(u64::from(size)).min(3);
        let mut again = Vec::new();
        for p in page_no.saturating_sub(back).max(1)..page_no {
            again.extend(self.client.list_customers(p, size, seg).await?.customers);
        }
        Ok(again)
    }

    /// A short page was followed by rows not seen before: the server cuts pages at
    /// `size` rows (silently, NOTES.md), so larger pages would skip rows.
    fn learn_cap(&mut self, size: u32) {
        if self.walk.page_cap.is_none_or(|cap| size < cap) {
            tracing::warn!(
                rows = size,
                configured = self.opts.page_size,
                "the server cut a list page short while more customers followed: it caps \
                 pages at {size} rows, so the rest of the walk uses pages of {size} \
                 (lower api.page_size to {size} to skip this check)"
            );
            self.walk.page_cap = Some(size);
        }
    }

    /// The customers of a page not yet read by this walk, deduplicated, and the ids
    /// listed in this segment for the first time but read already (listed in another
    /// segment). Both count as seen from now on, so a customer the list shifts onto the
    /// next page (which may be planned before this one's fetches finish) is not read
    /// twice.
    fn unseen(
        &mut self,
        customers: Vec<Customer>,
        seg: StatusFilter,
    ) -> (Vec<Customer>, Vec<String>) {
        let bit = seen_bit(seg.as_str());
        let mut fresh = Vec::with_capacity(customers.len());
        let mut also = Vec::new();
        for c in customers {
            match self.seen.get(c.id.as_str()).copied() {
                Some(mask) if mask & bit != 0 => {}
                Some(_) => {
                    self.mark_seen(c.id.clone(), bit);
                    also.push(c.id);
                }
                None => {
                    self.mark_seen(c.id.clone(), bit);
                    fresh.push(c);
                }
            }
        }
        self.summary.customers_seen += fresh.len() as u64;
        (fresh, also)
    }

    /// This walk has listed `id` in `seg`.
    fn listed_in(&self, id: &str, seg: StatusFilter) -> bool {
        self.seen
            .get(id)
            .is_some_and(|m| m & seen_bit(seg.as_str()) != 0)
    }

    /// Customers the list counts that the walk could not list, less those the confirm
    /// phase found present one by one: an error to end the run with, if any are left.
    fn incomplete(&self) -> Result<Option<SyncError>, SyncError> {
        let Some(counted) = self.walk.counts.missing else {
            return Ok(None);
        };
        let confirmed = match &self.reader {
            Some(r) => r.confirmed_present()?,
            None => 0,
        };
        let missing = counted.saturating_sub(confirmed);
        Ok((missing > 0).then_some(SyncError::Incomplete {
            missing,
            sweeps: self.walk.pass,
        }))
    }

    /// Records that this walk saw `id` where `bit` says, keeping the listed counts.
    fn mark_seen(&mut self, id: String, bit: u8) {
        let mask = self.seen.entry(id).or_insert(0);
        let before = *mask;
        *mask |= bit;
        if before & bit != 0 || bit & SEEN_LISTED == 0 {
            return;
        }
        if before & SEEN_LISTED == 0 {
            self.listed_distinct += 1;
        }
        for (i, s) in SEGMENTS.iter().enumerate() {
            if bit & seen_bit(s.as_str()) != 0 {
                self.listed[i] += 1;
            }
        }
    }

    /// Decides, per customer, whether to read its details and its transactions.
    fn plan(&mut self, customers: Vec<Customer>, seg: StatusFilter) -> Result<Vec<Job>, SyncError> {
        let full = self.walk.kind.is_full();
        let mut jobs = Vec::with_capacity(customers.len());
        for c in customers {
            let i = self.snapshot.get(c.id.as_str()).copied();
            let changed = i.is_none_or(|i| {
                i.deleted || i.updated_at_hash != text_hash(c.updated_at.as_deref().unwrap_or(""))
            });
            // An identical object needs no write: only its sighting is recorded.
            let identical = i.is_some_and(|i| !i.deleted && i.raw_hash == text_hash(&c.raw));
            let details = self.opts.settings.fetch_details
                && self.writer.is_some()
                && changed
                && c.metadata_null;
            let transactions = match (seg, i) {
                (StatusFilter::Inactive, _) => i.is_some_and(|i| i.live_transactions > 0),
                (_, None) => true,
                _ if full || changed => true,
                (_, Some(i)) => {
                    let must = seg == StatusFilter::Active && i.live_transactions == 0;
                    let worth = i.pending || i.hot || (!i.checked && seg == StatusFilter::Active);
                    must || (worth && self.spend(1))
                }
            };
            jobs.push(Job {
                id: c.id.clone(),
                customer: if identical && !details { None } else { Some(c) },
                details,
                transactions,
            });
        }
        Ok(jobs)
    }

    /// Takes `n` requests from the run's optional budget.
    fn spend(&mut self, n: u64) -> bool {
        match &mut self.budget {
            None => true,
            Some(left) if *left >= n => {
                *left -= n;
                true
            }
            Some(_) => false,
        }
    }

    /// Starts one page's jobs as chunks of at most [`CHUNK_SECS`] of requests: every
    /// chunk but the last commits with the walk where it is (this page is read again on
    /// resume), the last with `checkpoint`. Waits while [`PAGES_IN_FLIGHT`] are in flight.
    async fn start_chunked(
        &mut self,
        jobs: Vec<Job>,
        segment: &'static str,
        pages: u32,
        checkpoint: Walk,
        also_seen: Vec<String>,
    ) -> Result<(), SyncError> {
        let budget = self
            .client
            .requests_per_second()
            .map_or(u64::MAX, |rate| ((rate * CHUNK_SECS) as u64).max(1));
        let mut chunks = chunk_jobs(jobs, budget);
        let last = chunks.pop().unwrap_or_default();
        for chunk in chunks {
            let here = self.walk.clone();
            self.start(chunk, segment, 0, here, Vec::new());
            self.limit_in_flight().await?;
        }
        self.start(last, segment, pages, checkpoint, also_seen);
        self.limit_in_flight().await
    }

    async fn limit_in_flight(&mut self) -> Result<(), SyncError> {
        while self.in_flight.len() >= PAGES_IN_FLIGHT {
            self.finish_oldest().await?;
        }
        Ok(())
    }

    /// After an error or an interruption: commits, in order, what the pages in flight
    /// fetched, so that the requests spent are not spent again. After a shutdown every
    /// fetch ends at once (its requests are cancelled); after an error only the pages
    /// already done are taken. Once a page is incomplete, everything after it commits
    /// with that page's start as the checkpoint: the resumed run reads it again and
    /// skips the customers committed.
    async fn salvage(&mut self) {
        let interrupted = self.cancel.is_cancelled();
        let mut floor = None;
        if let Some(stopped) = self.stopped.take() {
            floor = Some(stopped.restart.clone());
            let part = Part {
                segment: stopped.segment,
                pages: 0,
                checkpoint: stopped.restart,
                also_seen: Vec::new(),
            };
            if self.submit(part, stopped.fetched).await.is_err() {
                return;
            }
        }
        while let Some(page) = self.in_flight.pop_front() {
            if !interrupted && !page.fetches.is_finished() {
                break;
            }
            let Ok(results) = page.fetches.await else {
                break;
            };
            let total = results.len();
            let fetched: Vec<(String, Fetched)> = results
                .into_iter()
                .filter_map(|(id, r)| r.ok().map(|f| (id, f)))
                .collect();
            let whole = fetched.len() == total && floor.is_none();
            let (pages, checkpoint, also_seen) = if whole {
                (page.pages, page.checkpoint, page.also_seen)
            } else {
                let at = floor.get_or_insert(page.restart).clone();
                (0, at, Vec::new())
            };
            let part = Part {
                segment: page.segment,
                pages,
                checkpoint,
                also_seen,
            };
            if self.submit(part, fetched).await.is_err() {
                break;
            }
        }
    }

    /// Starts fetching what the jobs need, as a page in flight.
    fn start(
        &mut self,
        jobs: Vec<Job>,
        segment: &'static str,
        pages: u32,
        checkpoint: Walk,
        also_seen: Vec<String>,
    ) {
        self.summary.customer_reads += jobs.iter().filter(|j| j.details).count() as u64;
        let client = self.client.clone();
        let permits = self.permits.clone();
        // Each fetch is its own task, so parsing responses spreads over the runtime's
        // threads; the semaphore keeps `api.concurrency` over all pages in flight, and
        // being fair, serves older pages first. Dropping the set aborts what is left.
        let fetches = tokio::spawn(async move {
            let mut set = JoinSet::new();
            for job in jobs {
                let client = client.clone();
                let permits = permits.clone();
                set.spawn(async move {
                    let _permit = permits.acquire_owned().await.expect("never closed");
                    let id = job.id.clone();
                    (id, fetch(&client, job).await)
                });
            }
            let mut results = Vec::with_capacity(set.len());
            while let Some(joined) = set.join_next().await {
                results.push(joined.expect("a fetch task panicked"));
            }
            results
        });
        self.in_flight.push_back(PageInFlight {
            fetches,
            segment,
            pages,
            checkpoint,
            restart: self.walk.clone(),
            also_seen,
        });
    }

    /// Waits for the oldest page in flight and submits its batch.
    async fn finish_oldest(&mut self) -> Result<(), SyncError> {
        let Some(page) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let results = match page.fetches.await {
            Ok(results) => results,
            Err(e) if e.is_cancelled() => {
                self.stopped = Some(Stopped {
                    restart: page.restart,
                    segment: page.segment,
                    fetched: Vec::new(),
                });
                return Err(SyncError::Interrupted);
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let mut fetched = Vec::with_capacity(results.len());
        let mut failed = None;
        for (id, r) in results {
            match r {
                Ok(f) => fetched.push((id, f)),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            self.stopped = Some(Stopped {
                restart: page.restart,
                segment: page.segment,
                fetched,
            });
            return Err(e.into());
        }
        let part = Part {
            segment: page.segment,
            pages: page.pages,
            checkpoint: page.checkpoint,
            also_seen: page.also_seen,
        };
        self.submit(part, fetched).await
    }

    /// Submits what a page (or the part of it that was fetched) read, as one batch.
    async fn submit(
        &mut self,
        part: Part,
        fetched: Vec<(String, Fetched)>,
    ) -> Result<(), SyncError> {
        let Part {
            segment,
            pages,
            checkpoint,
            also_seen,
        } = part;
        let mut batch = Batch {
            run_id: self.run_id,
            pages,
            initial_load: self.initial_load,
            checkpoint: Some(checkpoint),
            ..Batch::default()
        };
        for (id, fetched) in fetched {
            self.mark_seen(id.clone(), seen_bit(segment));
            batch.seen.push((id.clone(), segment));
            match fetched {
                Fetched::Gone => batch.gone.push(id),
                Fetched::Present {
                    observed,
                    transactions,
                } => {
                    if let Some(o) = observed {
                        batch.customers.push(*o);
                    }
                    if let Some(list) = transactions {
                        // What an incomplete list lacks may be a skipped record: it
                        // proves no deletion.
                        if !list.skipped.is_empty() {
                            batch.incomplete.push(id.clone());
                        }
                        let txs = list.transactions;
                        self.summary.transaction_refreshes += 1;
                        self.summary.transactions_seen += txs.len() as u64;
                        batch.transactions.push((id, txs));
                    }
                }
            }
        }
        for id in also_seen {
            batch.seen.push((id, segment));
        }
        // Keep page order stable so change rows come out in a predictable order.
        batch
            .customers
            .sort_by(|a, b| a.customer.id.cmp(&b.customer.id));
        batch.transactions.sort_by(|a, b| a.0.cmp(&b.0));
        match &mut self.writer {
            Some(w) => w.submit(batch).await,
            None => {
                self.summary.applied.pages += pages as u64;
                Ok(())
            }
        }
    }

    /// Submits every page in flight, in order.
    async fn drain(&mut self) -> Result<(), SyncError> {
        while !self.in_flight.is_empty() {
            self.finish_oldest().await?;
        }
        Ok(())
    }

    /// Submits the pages in flight and waits until the store has committed them.
    async fn flush(&mut self) -> Result<(), SyncError> {
        self.drain().await?;
        match &mut self.writer {
            Some(w) => w.flush().await,
            None => Ok(()),
        }
    }

    /// Confirms, one by one, the mirrored customers the walk did not see.
    async fn confirm(&mut self) -> Result<(), SyncError> {
        loop {
            self.check_cancel()?;
            self.flush().await?;
            let ids = match &self.reader {
                Some(r) => r.unseen_live_customers(self.walk.page_size as usize)?,
                None => return Ok(()),
            };
            if ids.is_empty() {
                return Ok(());
            }
            tracing::info!(
                customers = ids.len(),
                "confirming customers the walk did not see"
            );
            let checkpoint = self.walk.clone();
            self.start_chunked(
                transaction_jobs(ids, true),
                "confirm",
                0,
                checkpoint,
                Vec::new(),
            )
            .await?;
            self.drain().await?;
            self.report("confirm");
        }
    }

    /// Re-reads the transactions of the customers longest unread.
    async fn rolling(&mut self) -> Result<(), SyncError> {
        self.flush().await?;
        let Some(reader) = &self.reader else {
            return Ok(());
        };
        let full_every = self.opts.settings.full_every.0;
        let last = reader.last_success_started_at()?;
        let elapsed = last
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                    .to_std()
                    .unwrap_or_default()
            })
            .unwrap_or(full_every)
            .min(full_every);
        let (eligible, overdue) = reader.rolling_counts(&ago(full_every))?;
        let share =
            ((eligible as f64) * elapsed.as_secs_f64() / full_every.as_secs_f64()).ceil() as u64;
        let mut want = share.max(overdue);
        if let Some(left) = self.budget {
            want = want.min(left);
        }
        tracing::info!(
            eligible,
            share,
            overdue,
            refreshing = want,
            "rolling refresh of transactions"
        );
        // One ordered read of every candidate, then pages of them in flight like list
        // pages. Asking the mirror for the next page each time meant a scan and sort
        // of every customer per page, behind a commit: 45 s, now 11 s, to re-read 59k
        // customers at 100k. A resumed run re-reads none of these twice: each one
        // re-read has its `tx_checked_at` past the walk's start.
        let ids = reader.rolling_candidates(&self.walk.started_at, want as usize)?;
        self.spend(ids.len() as u64);
        let mut ids = ids.into_iter();
        loop {
            self.check_cancel()?;
            let page: Vec<String> = ids.by_ref().take(self.walk.page_size as usize).collect();
            if page.is_empty() {
                break;
            }
            let checkpoint = self.walk.clone();
            self.start_chunked(
                transaction_jobs(page, false),
                "rolling",
                0,
                checkpoint,
                Vec::new(),
            )
            .await?;
        }
        self.drain().await?;
        self.report("rolling");
        Ok(())
    }

    fn report(&self, phase: &'static str) {
        self.progress.update(&ProgressInfo {
            phase,
            customers_seen: self.summary.customers_seen,
            customers_total: self.segment_totals.values().sum(),
            requests: self.client.counters().requests.load(Ordering::Relaxed),
        });
    }
}

impl Drop for Engine<'_> {
    /// A run that stops early leaves no requests behind: aborting a page's task drops
    /// its `JoinSet`, which aborts the fetches.
    fn drop(&mut self) {
        for page in &self.in_flight {
            page.fetches.abort();
        }
    }
}

/// Cuts `jobs` into chunks of about `budget` requests each (a job costs one request per
/// read it makes; an unchanged customer costs none and rides along). Always at least
/// one chunk, possibly empty.
fn chunk_jobs(jobs: Vec<Job>, budget: u64) -> Vec<Vec<Job>> {
    let mut chunks = vec![Vec::new()];
    let mut spent = 0u64;
    for job in jobs {
        let cost = u64::from(job.details) + u64::from(job.transactions);
        if spent > 0 && spent + cost > budget {
            chunks.push(Vec::new());
            spent = 0;
        }
        spent += cost;
        chunks.last_mut().expect("never empty").push(job);
    }
    chunks
}

/// Jobs that re-read the transactions (and with `details`, the record) of known ids.
fn transaction_jobs(ids: Vec<String>, details: bool) -> Vec<Job> {
    ids.into_iter()
        .map(|id| Job {
            id,
            customer: None,
            details,
            transactions: true,
        })
        .collect()
}

/// Fetches what one job needs. A 404 on any read means the customer is gone.
async fn fetch(client: &ApiClient, job: Job) -> Result<Fetched, ApiError> {
    let mut observed = job.customer.map(|c| Observed {
        customer: c,
        partial: true,
    });
    if job.details {
        match client.get_customer(&job.id).await? {
            CustomerRead::Found(c) => {
                observed = Some(Observed {
                    customer: *c,
                    partial: false,
                })
            }
            CustomerRead::Gone => return Ok(Fetched::Gone),
            // Logged and counted by the client; the list item, if any, stands in.
            CustomerRead::Unreadable => {}
        }
    }
    let transactions = if job.transactions {
        match client.customer_transactions(&job.id).await? {
            Some(t) => Some(t),
            None => return Ok(Fetched::Gone),
        }
    } else {
        None
    };
    Ok(Fetched::Present {
        observed: observed.map(Box::new),
        transactions,
    })
}

/// One cheap request before anything is opened or written: a rejected key or a wrong
/// base URL fails here, leaving the mirror (or its absence) exactly as it was.
async fn preflight(client: &ApiClient) -> Result<(), SyncError> {
    match client.list_customers(1, 1, StatusFilter::All).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_cancelled() => Err(SyncError::Interrupted),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: usize, details: bool, transactions: bool) -> Job {
        Job {
            customer: None,
            id: id.to_string(),
            details,
            transactions,
        }
    }

    fn sizes(chunks: &[Vec<Job>]) -> Vec<usize> {
        chunks.iter().map(Vec::len).collect()
    }

    #[test]
    fn chunks_hold_about_the_request_budget() {
        // 10 jobs of one request each, 4 requests a chunk.
        let jobs = (0..10).map(|i| job(i, false, true)).collect();
        assert_eq!(sizes(&chunk_jobs(jobs, 4)), [4, 4, 2]);
        // Two reads a job: 2 jobs a chunk; a job over budget goes alone.
        let jobs = (0..5).map(|i| job(i, true, true)).collect();
        assert_eq!(sizes(&chunk_jobs(jobs, 4)), [2, 2, 1]);
        let jobs = (0..3).map(|i| job(i, true, true)).collect();
        assert_eq!(sizes(&chunk_jobs(jobs, 1)), [1, 1, 1]);
        // Jobs that read nothing ride along with the others.
        let jobs = (0..6).map(|i| job(i, false, i % 3 == 0)).collect();
        assert_eq!(sizes(&chunk_jobs(jobs, 1)), [3, 3]);
        // Unlimited: one chunk; and never no chunk at all.
        let jobs = (0..500).map(|i| job(i, true, true)).collect();
        assert_eq!(sizes(&chunk_jobs(jobs, u64::MAX)), [500]);
        assert_eq!(sizes(&chunk_jobs(Vec::new(), 4)), [0]);
    }
}
