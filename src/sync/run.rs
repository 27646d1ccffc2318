//! A run's lifecycle: the preflight, opening (or resuming) the walk, recording the run
//! in `sync_runs` however it ends, and the dry run.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::feed::Source;
use super::walk::{seen_bit, segments};
use super::writer::{Writer, WriterHandle};
use super::{Engine, Progress, RunRequest, RunSummary, SyncError, SyncOptions};
use crate::api::{ApiClient, StatusFilter};
use crate::metrics::RunOutcome;
use crate::store::{FeedCursor, Location, Phase, RunKind, Store, StoreError, Walk, now};

/// How far a run got, for recording it if it fails (see [`run`]).
#[derive(Clone)]
pub(super) struct RunRecord {
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
///
/// Every run, however it ends, is counted in the client's [`crate::metrics::Metrics`]
/// (kind, outcome, duration) here, and the rows it committed where its writer is
/// flushed: the one place each is recorded.
pub async fn run(
    client: &ApiClient,
    db: &Location,
    opts: &SyncOptions,
    req: RunRequest,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<RunSummary, SyncError> {
    run_with(client, db, None, opts, (req, cancel), progress).await
}

/// [`run`] through the daemon's writer thread (`writer`, over the mirror at `db`),
/// which webhook deliveries share: one writer per mirror (issue 16). A failure is
/// recorded through it too.
pub async fn run_on(
    client: &ApiClient,
    db: &Location,
    writer: &WriterHandle,
    opts: &SyncOptions,
    req: RunRequest,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<RunSummary, SyncError> {
    run_with(client, db, Some(writer), opts, (req, cancel), progress).await
}

/// [`run`] on a writer of its own (`shared` `None`) or the daemon's.
async fn run_with(
    client: &ApiClient,
    db: &Location,
    shared: Option<&WriterHandle>,
    opts: &SyncOptions,
    (req, cancel): (RunRequest, &CancellationToken),
    progress: &dyn Progress,
) -> Result<RunSummary, SyncError> {
    let (wall_start, started) = (std::time::SystemTime::now(), Instant::now());
    let mut rec = RunRecord {
        kind: req.kind,
        started_at: now(),
        opened: false,
        run_id: None,
        base_requests: client.counters().requests.load(Ordering::Relaxed),
        base_retries: client.counters().retries.load(Ordering::Relaxed),
    };
    let ctx = (req, cancel, shared);
    let result = run_recorded(client, db, opts, ctx, progress, &mut rec).await;
    // The walk's kind once opened (a `sync` into an unloaded mirror is a backfill).
    let kind = rec.kind;
    let result = match result {
        Ok(summary) => Ok(summary),
        Err(e) if !rec.opened || !db.exists() => Err(e),
        Err(e) => Err(record_on(client, db, shared, opts, &rec, e).await),
    };
    let outcome = run_outcome(&result);
    client
        .metrics()
        .run(kind, outcome, wall_start, started.elapsed());
    result
}

/// Records a failed run (see [`run`]): through the daemon's writer when there is one,
/// else (or when that cannot) from a connection of its own.
async fn record_on(
    client: &ApiClient,
    db: &Location,
    shared: Option<&WriterHandle>,
    opts: &SyncOptions,
    rec: &RunRecord,
    e: SyncError,
) -> SyncError {
    let failure = rec.failure(client, &e);
    if let Some(w) = shared {
        let f = failure.clone();
        let written = Writer::attach(w)
            .call(move |s| s.record_unsuccessful(&f))
            .await;
        if written.is_ok() {
            return e;
        }
    }
    record_failure(db, opts.busy_timeout, failure, e).await
}

/// How a run's result is counted: as [`record_failure`] records it in `sync_runs`.
pub(super) fn run_outcome(result: &Result<RunSummary, SyncError>) -> RunOutcome {
    match result {
        Ok(_) => RunOutcome::Succeeded,
        Err(SyncError::Unrecorded { error, .. }) => match error.as_ref() {
            SyncError::Interrupted => RunOutcome::Interrupted,
            SyncError::Deferred { .. } => RunOutcome::Deferred,
            _ => RunOutcome::Failed,
        },
        Err(SyncError::Interrupted) => RunOutcome::Interrupted,
        Err(SyncError::Deferred { .. }) => RunOutcome::Deferred,
        Err(_) => RunOutcome::Failed,
    }
}

impl RunRecord {
    /// The run's failure, as `sync_runs` records it.
    fn failure(&self, client: &ApiClient, error: &SyncError) -> crate::store::RunFailure {
        let (outcome, resume_at) = match error {
            SyncError::Interrupted => (crate::store::Outcome::Interrupted, None),
            SyncError::Deferred { until, .. } => (
                crate::store::Outcome::Deferred,
                Some(crate::api::model::format_timestamp(*until)),
            ),
            _ => (crate::store::Outcome::Failed, None),
        };
        crate::store::RunFailure {
            run_id: self.run_id,
            kind: self.kind,
            started_at: self.started_at.clone(),
            outcome,
            error: error.to_string(),
            resume_at,
            requests: client.counters().requests.load(Ordering::Relaxed) - self.base_requests,
            retries: client.counters().retries.load(Ordering::Relaxed) - self.base_retries,
        }
    }
}

/// Writes a failed run's row (see [`run`]) from a connection of its own and returns
/// the error to report: the run's own, or [`SyncError::Unrecorded`] if the row could
/// not be written.
pub(super) async fn record_failure(
    db: &Location,
    busy_timeout: Duration,
    failure: crate::store::RunFailure,
    error: SyncError,
) -> SyncError {
    let at = db.clone();
    let written = tokio::task::spawn_blocking(move || {
        crate::store::record_unsuccessful_run(&at, busy_timeout, &failure)
    })
    .await
    .unwrap_or_else(|e| {
        Err(StoreError::Io {
            path: db.to_string().into(),
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
pub(super) async fn run_recorded(
    client: &ApiClient,
    db: &Location,
    opts: &SyncOptions,
    (req, cancel, shared): (RunRequest, &CancellationToken, Option<&WriterHandle>),
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
    let (source, fallback) =
        super::feed::choose_source(client, opts.settings.transactions_source).await?;
    rec.opened = true;
    let mut writer = match shared {
        Some(h) => Writer::attach(h),
        None => Writer::spawn(Store::open(db, opts.busy_timeout)?),
    };
    let (walk, resumed_walk_of) = begin_on(&mut writer, req, opts, rec, (source, fallback)).await?;
    let run_id = walk.run_id;
    let initial_load = walk.initial;
    let reader = Store::open_read_only(db, opts.busy_timeout)?;
    let mut engine = Engine::new(
        client,
        opts,
        cancel,
        progress,
        Some(writer),
        Some(reader),
        walk,
    );
    engine.run_id = run_id;
    engine.initial_load = initial_load;
    load_known(&mut engine, opts)?;
    engine.summary.resumed_walk_of = resumed_walk_of;
    engine.summary.run_id = Some(run_id);
    let result = engine.walk_all().await;
    if let Err(e) = &result {
        engine
            .salvage(matches!(e, SyncError::Deferred { .. }))
            .await;
    }
    engine.summary.list_page_cap = engine.walk.page_cap;
    let requests = client.counters().requests.load(Ordering::Relaxed) - base_requests;
    let retries = client.counters().retries.load(Ordering::Relaxed) - base_retries;
    let mut writer = engine.writer.take().expect("a writer for a real run");
    // Commit what was fetched before deciding the outcome: pages already complete
    // are kept even when the run stops.
    let flushed = writer.flush().await;
    client.metrics().rows_written(&writer.applied);
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
    // In feed mode every transaction is read by the feed pass, none per customer.
    if let (RunKind::Sync, Some(r), None) = (engine.walk.kind, &engine.reader, &engine.walk.feed) {
        let since = &engine.walk.started_at;
        engine.summary.not_reread = Some(r.not_reread_since(since, opts.settings.full_every.0)?);
    }
    // The run's time includes building deferred indexes at the end of a backfill.
    engine.summary.duration_secs = started.elapsed().as_secs_f64();
    Ok(std::mem::take(&mut engine.summary))
}

/// Records where the run reads transactions from (a resumed walk keeps the source it
/// started with), and says once why `auto` fell back ([`super::feed::log_fallback`]).
fn note_source(
    store: &Store,
    walk: &Walk,
    fallback: Option<String>,
    previous: Option<&crate::store::SourceReport>,
) -> Result<(), SyncError> {
    let used = match walk.feed {
        Some(_) => Source::Feed,
        None => Source::PerCustomer,
    };
    let fallback = fallback.filter(|_| used == Source::PerCustomer);
    if let Some(note) = &fallback {
        super::feed::log_fallback(note, previous);
    }
    store.note_transactions_source(walk.run_id, used.as_str(), fallback.as_deref())?;
    Ok(())
}

/// Recovers runs a dead process left `running`, opens the walk ([`open_walk`]) and
/// records its transactions source ([`note_source`]) on the writer's thread, which
/// holds the mirror's one writing connection.
async fn begin_on(
    writer: &mut Writer,
    req: RunRequest,
    opts: &SyncOptions,
    rec: &mut RunRecord,
    (source, fallback): (Source, Option<String>),
) -> Result<(Walk, Option<i64>), SyncError> {
    let (opts, mut r) = (opts.clone(), rec.clone());
    let (opened, r) = writer
        .call(move |s| {
            s.recover_stale_runs()?;
            let previous = s.last_transactions_source()?;
            let opened = open_walk(s, req, &opts, &mut r, source).and_then(|(walk, of)| {
                note_source(s, &walk, fallback, previous.as_ref())?;
                Ok((walk, of))
            });
            Ok((opened, r))
        })
        .await?;
    *rec = r;
    opened
}

/// What the engine knows before it walks: the mirror's planning snapshot (not on a
/// first load, where there is nothing to compare) and the customers a resumed walk
/// has already seen.
fn load_known(engine: &mut Engine<'_>, opts: &SyncOptions) -> Result<(), SyncError> {
    let Some(r) = &engine.reader else {
        return Ok(());
    };
    if !engine.initial_load {
        let hot = ago(opts.settings.hot_window.0);
        let pending = ago(opts.settings.pending_window.0);
        engine.snapshot = r.plan_snapshot(&hot, &pending)?;
    }
    for (id, segment) in r.walk_seen()? {
        engine.mark_seen(id, seen_bit(segment));
    }
    Ok(())
}

/// Resumes the unfinished walk (its kind and its transactions source win) or starts a
/// new one reading transactions from `source`, and the run's row: the walk, with the
/// run it resumes, if any. A `sync` into a mirror no backfill has completed runs a
/// backfill.
pub(super) fn open_walk(
    store: &mut Store,
    req: RunRequest,
    opts: &SyncOptions,
    rec: &mut RunRecord,
    source: Source,
) -> Result<(Walk, Option<i64>), SyncError> {
    // A restart never reads the walk it forgets: it is the way past one that cannot be
    // read (`StoreError::UnreadableWalk`).
    let found = if req.restart { None } else { store.walk()? };
    let resume = match found {
        Some(w) if !(req.kind == RunKind::Backfill && w.kind == RunKind::Sync) => Some(w),
        _ => None,
    };
    let has_full_walk = store.has_full_walk()?;
    let kind = match &resume {
        Some(w) => w.kind,
        None => req.kind.for_mirror(Some(has_full_walk)),
    };
    if kind != req.kind && resume.is_none() {
        tracing::info!("no completed backfill in this mirror yet: running a backfill");
    }
    rec.kind = kind;
    let run_id = store.start_run(kind)?;
    rec.run_id = Some(run_id);
    match resume {
        Some(mut w) => {
            let of = store.adopt_walk(run_id)?;
            tracing::info!(
                run = run_id,
                of,
                phase = w.phase.as_str(),
                segment = %w.segment.as_str(),
                page = w.next_page,
                "resuming an unfinished walk"
            );
            w.run_id = run_id;
            Ok((w, of))
        }
        None => {
            let initial = kind != RunKind::Sync && !has_full_walk;
            let mut w = new_walk(run_id, kind, initial, opts);
            if source == Source::Feed {
                w.feed = Some(FeedCursor::default());
            }
            store.begin_walk(&w)?;
            tracing::info!(
                run = run_id,
                kind = kind.as_str(),
                segment = %w.segment.as_str(),
                "walk started: listing customers"
            );
            Ok((w, None))
        }
    }
}

/// Ends the walk: `succeeded`, or, when it could not list everyone the list counts
/// (`incomplete`, from [`Engine::incomplete`]), `failed` with the count (the walk is
/// over either way) and that error.
pub(super) async fn complete(
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
pub(super) fn route_budget_rows(
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
    tracing::info!(
        segment = %walk.segment.as_str(),
        "dry run walk started: listing customers"
    );
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
pub(super) fn new_walk(run_id: i64, kind: RunKind, initial: bool, opts: &SyncOptions) -> Walk {
    Walk {
        run_id,
        kind,
        started_at: now(),
        phase: Phase::List,
        segment: segments(&opts.settings)[0],
        next_page: 1,
        page_size: opts.page_size,
        last_total: None,
        pass: 0,
        page_cap: None,
        counts: Default::default(),
        initial,
        feed: None,
    }
}

pub(super) fn ago(d: Duration) -> String {
    let t = chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
    crate::api::model::format_timestamp(t)
}

/// One cheap request before anything is opened or written: a rejected key or a wrong
/// base URL fails here, leaving the mirror (or its absence) exactly as it was.
pub(super) async fn preflight(client: &ApiClient) -> Result<(), SyncError> {
    match client.list_customers(1, 1, StatusFilter::All).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_cancelled() => Err(SyncError::Interrupted),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run is counted as `sync_runs` records it, also when its failure could not be
    /// recorded ([`SyncError::Unrecorded`] wraps the run's own error).
    #[test]
    fn a_run_is_counted_with_the_outcome_it_is_recorded_with() {
        let unrecorded = |e| SyncError::Unrecorded {
            error: Box::new(e),
            record: StoreError::RolledBack,
        };
        let deferred = || SyncError::Deferred {
            route: crate::api::budget::Route::ListCustomers,
            until: chrono::Utc::now(),
        };
        let incomplete = || SyncError::Incomplete {
            missing: 3,
            sweeps: 2,
        };
        for (result, outcome) in [
            (Ok(RunSummary::default()), RunOutcome::Succeeded),
            (Err(SyncError::Interrupted), RunOutcome::Interrupted),
            (Err(deferred()), RunOutcome::Deferred),
            (Err(incomplete()), RunOutcome::Failed),
            (Err(SyncError::WriterGone), RunOutcome::Failed),
            (
                Err(unrecorded(SyncError::Interrupted)),
                RunOutcome::Interrupted,
            ),
            (Err(unrecorded(deferred())), RunOutcome::Deferred),
            (Err(unrecorded(incomplete())), RunOutcome::Failed),
        ] {
            let shown = format!("{result:?}");
            assert_eq!(run_outcome(&result), outcome, "{shown}");
        }
    }
}
