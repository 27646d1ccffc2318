//! The sync engine: walks the API and hands the store what changed.
//!
//! A run is a *walk* in phases, each step checkpointed with the rows it wrote:
//!
//! 1. **list**: page through `GET /customers`, by default twice (`status=active`, then
//!    `status=inactive`), re-reading the transactions of the customers worth it;
//! 2. **topup**: re-read the top of each list for customers created during the walk
//!    (the list is newest first, so they land above pages already read);
//! 3. **confirm**: `GET /customers/{id}` for every mirrored customer the walk missed:
//!    404 marks it deleted, 200 means page drift hid it, and it is kept;
//! 4. **rolling** (incremental runs): re-read the transactions of the customers longest
//!    unread, enough that each is re-read within `sync.full_every`.
//!
//! A killed run leaves its walk in the `walk` table and the next run resumes it.

mod writer;

use std::collections::{HashMap, HashSet, VecDeque};
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
    Applied, Batch, Observed, Phase, PlanInfo, RunKind, Store, StoreError, Walk, now, text_hash,
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
        matches!(self, SyncError::Api(e) if e.is_fatal())
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
    /// Records skipped because their id could not be read (each time one was received).
    pub records_skipped: u64,
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

/// One page's fetches, running, and what to commit with their results.
struct PageInFlight {
    fetches: JoinHandle<Vec<(String, Result<Fetched, ApiError>)>>,
    segment: &'static str,
    pages: u32,
    checkpoint: Walk,
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
    /// Ids seen by this process during the walk (the store has those of earlier ones).
    seen: HashSet<String>,
    summary: RunSummary,
    segment_totals: HashMap<String, u64>,
    /// Optional requests left in this run's budget (`sync.max_requests_per_run`).
    budget: Option<u64>,
    /// What the mirror knew of each customer when the run started.
    snapshot: HashMap<Box<str>, PlanInfo>,
    /// Pages fetching, oldest first; their batches are submitted in this order.
    in_flight: VecDeque<PageInFlight>,
    /// `api.concurrency`: requests under way at once, over all pages in flight.
    permits: Arc<Semaphore>,
}

/// Runs one walk against the mirror at `db` (the caller holds its writer lock).
pub async fn run(
    client: &ApiClient,
    db: &Path,
    opts: &SyncOptions,
    req: RunRequest,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<RunSummary, SyncError> {
    let started = Instant::now();
    // Counters are per client and a daemon reuses its client: report this run's share.
    let base_requests = client.counters().requests.load(Ordering::Relaxed);
    let base_retries = client.counters().retries.load(Ordering::Relaxed);
    let base_skipped = client.counters().skipped.load(Ordering::Relaxed);
    preflight(client).await?;
    let mut store = Store::open(db, opts.busy_timeout)?;
    store.recover_stale_runs()?;
    let existing = store.walk()?;
    let resume = match existing {
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
    let run_id = store.start_run(kind)?;
    let initial = kind != RunKind::Sync && !has_full_walk;
    let mut resumed_walk_of = None;
    let walk = match resume {
        Some(mut w) => {
            resumed_walk_of = store.adopt_walk(run_id)?;
            tracing::info!(run = run_id, of = ?resumed_walk_of, phase = w.phase.as_str(), segment = %w.segment, page = w.next_page, "resuming an unfinished walk");
            w.run_id = run_id;
            w
        }
        None => {
            let w = Walk {
                run_id,
                kind,
                started_at: now(),
                phase: Phase::List,
                segment: segments(&opts.settings)[0].as_str().to_string(),
                next_page: 1,
                page_size: opts.page_size,
                last_total: None,
                initial,
            };
            store.begin_walk(&w)?;
            w
        }
    };
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
        engine.seen.extend(r.walk_seen()?);
    }
    engine.summary.resumed_walk_of = resumed_walk_of;
    engine.summary.run_id = Some(run_id);
    let result = engine.walk_all().await;
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
    let noted = writer
        .call(move |s| s.note_records_skipped(run_id, skipped))
        .await;
    let result = result.and(flushed).and(noted);
    match result {
        Ok(()) => {
            writer
                .call(move |s| s.complete_walk(run_id, requests, retries))
                .await?;
            // The run's time includes building deferred indexes at the end of a backfill.
            engine.summary.duration_secs = started.elapsed().as_secs_f64();
            Ok(std::mem::take(&mut engine.summary))
        }
        Err(e) => {
            let outcome = if matches!(e, SyncError::Interrupted) {
                crate::store::Outcome::Interrupted
            } else {
                crate::store::Outcome::Failed
            };
            let msg = e.to_string();
            // Best effort: the run's own error is what the caller must see.
            let _ = writer
                .call(move |s| s.finish_run(run_id, outcome, Some(&msg), requests, retries))
                .await;
            Err(e)
        }
    }
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
    let walk = Walk {
        run_id: 0,
        kind: RunKind::Backfill,
        started_at: now(),
        phase: Phase::List,
        segment: segments(&opts.settings)[0].as_str().to_string(),
        next_page: 1,
        page_size: opts.page_size,
        last_total: None,
        initial: true,
    };
    let mut engine = Engine::new(client, opts, cancel, progress, None, None, walk);
    engine.walk_all().await?;
    engine.summary.requests = client.counters().requests.load(Ordering::Relaxed);
    engine.summary.retries = client.counters().retries.load(Ordering::Relaxed);
    engine.summary.records_skipped = client.counters().skipped.load(Ordering::Relaxed);
    engine.summary.duration_secs = started.elapsed().as_secs_f64();
    Ok(std::mem::take(&mut engine.summary))
}

fn segments(s: &SyncSettings) -> Vec<StatusFilter> {
    if s.use_status_filter {
        vec![StatusFilter::Active, StatusFilter::Inactive]
    } else {
        vec![StatusFilter::All]
    }
}

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
            seen: HashSet::new(),
            segment_totals: HashMap::new(),
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
                Phase::List | Phase::Topup => {
                    let seg = StatusFilter::parse(&self.walk.segment).unwrap_or(StatusFilter::All);
                    self.list_segment(seg, self.walk.phase == Phase::Topup)
                        .await?;
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

    /// The walk's state once the current list segment is done: the next segment, or
    /// the next phase.
    fn advanced(&self) -> Walk {
        let segs = segments(&self.opts.settings);
        let mut w = self.walk.clone();
        w.next_page = 1;
        w.last_total = None;
        match segs.iter().position(|s| s.as_str() == w.segment) {
            Some(i) if i + 1 < segs.len() => w.segment = segs[i + 1].as_str().into(),
            _ => {
                w.phase = if w.phase == Phase::List {
                    Phase::Topup
                } else {
                    Phase::Confirm
                };
                w.segment = if w.phase == Phase::Topup {
                    segs[0].as_str().into()
                } else {
                    "all".into()
                };
            }
        }
        w
    }

    /// Pages through one segment of the list. In `topup` mode it stops at the first
    /// page with nothing new: what was created during the walk sits at the top.
    async fn list_segment(&mut self, seg: StatusFilter, topup: bool) -> Result<(), SyncError> {
        // The next page is requested while this one is processed: an incremental run is
        // otherwise a chain of sequential round trips.
        let mut prefetch: Option<(u64, JoinHandle<Result<CustomerPage, ApiError>>)> = None;
        let result = loop {
            if let Err(e) = self.check_cancel() {
                break Err(e);
            }
            let page_no = self.walk.next_page;
            let fetched = match prefetch.take() {
                Some((p, handle)) if p == page_no => handle.await.expect("a list task panicked"),
                stale => {
                    if let Some((_, handle)) = stale {
                        handle.abort();
                    }
                    self.client
                        .list_customers(page_no, self.walk.page_size, seg)
                        .await
                }
            };
            let page = match fetched {
                Ok(p) => p,
                Err(e) => break Err(e.into()),
            };
            if !topup && !page.customers.is_empty() && page_no < page.total_pages {
                let client = self.client.clone();
                let size = self.walk.page_size;
                let next =
                    tokio::spawn(
                        async move { client.list_customers(page_no + 1, size, seg).await },
                    );
                prefetch = Some((page_no + 1, next));
            }
            match self.list_page(seg, topup, page_no, page).await {
                Ok(true) => break Ok(()),
                Ok(false) => {}
                Err(e) => break Err(e),
            }
        };
        if let Some((_, handle)) = prefetch {
            handle.abort();
        }
        result
    }

    /// Processes one list page; `Ok(true)` when the segment is done.
    async fn list_page(
        &mut self,
        seg: StatusFilter,
        topup: bool,
        page_no: u64,
        page: CustomerPage,
    ) -> Result<bool, SyncError> {
        if !topup {
            self.segment_totals
                .insert(seg.as_str().into(), page.total_count);
        }
        let mut customers = page.customers.clone();
        // Customers deleted above our position since the previous page shift the
        // rest up, so the start of this page slid onto the previous one: read it
        // again to catch them (only the unseen ones cost anything).
        if let Some(last) = self.walk.last_total
            && page.total_count < last
            && page_no > 1
            && !topup
        {
            let back = (last - page.total_count)
                .div_ceil(self.walk.page_size as u64)
                .min(3);
            for p in page_no.saturating_sub(back).max(1)..page_no {
                let again = self
                    .client
                    .list_customers(p, self.walk.page_size, seg)
                    .await?;
                customers.extend(again.customers);
            }
        }
        if topup {
            self.flush().await?;
        }
        let fresh = self.unseen(customers);
        let done =
            page.customers.is_empty() || page_no >= page.total_pages || (topup && fresh.is_empty());
        // The checkpoint committed with this page is where a resumed run starts.
        let next = if done {
            self.advanced()
        } else {
            let mut w = self.walk.clone();
            w.next_page = page_no + 1;
            w.last_total = Some(page.total_count);
            w
        };
        let jobs = self.plan(fresh, seg)?;
        self.start(jobs, seg.as_str(), 1, next.clone());
        if done {
            self.drain().await?;
        } else {
            while self.in_flight.len() >= PAGES_IN_FLIGHT {
                self.finish_oldest().await?;
            }
        }
        self.walk = next;
        self.report("list");
        Ok(done)
    }

    /// The customers not yet seen by this walk, deduplicated; they count as seen from
    /// now on, so a customer the list shifts onto the next page (which may be planned
    /// before this one's fetches finish) is not read twice.
    fn unseen(&mut self, customers: Vec<Customer>) -> Vec<Customer> {
        let out: Vec<Customer> = customers
            .into_iter()
            .filter(|c| self.seen.insert(c.id.clone()))
            .collect();
        self.summary.customers_seen += out.len() as u64;
        out
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

    /// Starts fetching what the jobs need, as a page in flight.
    fn start(&mut self, jobs: Vec<Job>, segment: &'static str, pages: u32, checkpoint: Walk) {
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
        });
    }

    /// Waits for the oldest page in flight and submits its batch.
    async fn finish_oldest(&mut self) -> Result<(), SyncError> {
        let Some(page) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let results = match page.fetches.await {
            Ok(results) => results,
            Err(e) if e.is_cancelled() => return Err(SyncError::Interrupted),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let mut batch = Batch {
            run_id: self.run_id,
            pages: page.pages,
            initial_load: self.initial_load,
            checkpoint: Some(page.checkpoint),
            ..Batch::default()
        };
        for (id, r) in results {
            let fetched = match r {
                Ok(f) => f,
                Err(e) if e.is_cancelled() => return Err(SyncError::Interrupted),
                Err(e) => return Err(e.into()),
            };
            self.seen.insert(id.clone());
            batch.seen.push((id.clone(), page.segment));
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
        // Keep page order stable so change rows come out in a predictable order.
        batch
            .customers
            .sort_by(|a, b| a.customer.id.cmp(&b.customer.id));
        batch.transactions.sort_by(|a, b| a.0.cmp(&b.0));
        match &mut self.writer {
            Some(w) => w.submit(batch).await,
            None => {
                self.summary.applied.pages += page.pages as u64;
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
            self.start(transaction_jobs(ids, true), "confirm", 0, checkpoint);
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
            self.start(
                transaction_jobs(page, false),
                "rolling",
                0,
                self.walk.clone(),
            );
            while self.in_flight.len() >= PAGES_IN_FLIGHT {
                self.finish_oldest().await?;
            }
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
