//! Transactions from the org-wide feed (`GET /transactions`, issue 14; NOTES.md, "The
//! org-wide transactions feed"): choosing the source of a run, and the walk's `feed`
//! phase, which follows the customer walk in feed mode.
//!
//! The pass reads the feed newest first, offset paging, with every request after the
//! first bounded by `endDate` = the newest `created_at` on the first page: rows created
//! during the pass are newer, so they cannot shift its pages (they are the next run's).
//! An incremental pass also sets `startDate` to the previous pass's watermark less
//! `sync.status_lookback` (at least [`OVERLAP`]). Bounds come from the data, never from
//! a clock: the service's, the machine's and the simulator's clocks differ.
//!
//! Rows are upserted one by one, grouped by customer ([`crate::store::Batch::feed_rows`]):
//! a feed page is not a complete list of anyone's transactions, so no deletion is
//! inferred from it. Instead, each page finishes a window of the feed (everything
//! newer than its oldest row, [`Vanished`]); the mirror's live rows in that window the
//! pass did not show are confirmed with `GET /transactions/{id}` (404: deleted) before
//! the page's checkpoint is committed, so a pass killed and resumed confirms as much as
//! one that ran straight through (`FeedCursor::window_top`). A row whose customer the
//! mirror lacks has that customer read (`GET /customers/{id}`) into the same batch, a
//! tombstone if it is gone: no orphan.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::task::JoinSet;

use super::pipeline::{Fetched, fetch};
use super::plan::Job;
use super::walk::SEEN_READ;
use super::{Engine, SyncError};
use crate::api::model::{Customer, Transaction};
use crate::api::timestamp::{format_timestamp, parse_timestamp};
use crate::api::{ApiClient, ApiError, FeedQuery};
use crate::config::TransactionsSource;
use crate::store::{Batch, FeedCursor, FeedRolling, Observed, Phase, RunKind};

/// Rows asked for per feed page: the most the service serves (NOTES.md, the silent
/// 1,000-row cap).
pub(super) const FEED_PAGE: u32 = 1000;

/// An incremental pass reads at least this far below the previous watermark, so a row
/// the service committed late, with an earlier `created_at`, is still read (1 h of
/// data time).
pub(super) const OVERLAP: Duration = Duration::from_secs(3600);

/// Where a run reads transactions from, once `auto` is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    Feed,
    PerCustomer,
}

impl Source {
    /// As recorded in `sync_runs.transactions_source`.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Source::Feed => "feed",
            Source::PerCustomer => "per_customer",
        }
    }
}

/// Resolves `sync.transactions_source`: `auto` spends one probe (a one-row feed page);
/// a key without access to the feed (403/404/405, [`crate::api::ApiError::NoAccess`])
/// falls back to the per-customer walk, with the probe's answer as the reason
/// ([`fallback_note`]; the run logs it and records it for `status`). Any other error
/// fails the run (a 500 is not "no access").
pub(super) async fn choose_source(
    client: &ApiClient,
    setting: TransactionsSource,
) -> Result<(Source, Option<String>), SyncError> {
    match setting {
        TransactionsSource::Feed => Ok((Source::Feed, None)),
        TransactionsSource::PerCustomer => Ok((Source::PerCustomer, None)),
        TransactionsSource::Auto => match client.transactions_feed(&FeedQuery::page(1, 1)).await {
            Ok(_) => Ok((Source::Feed, None)),
            Err(e) if e.is_no_access() => Ok((Source::PerCustomer, fallback_note(&e))),
            Err(e) => Err(e.into()),
        },
    }
}

/// Why `auto` fell back, for the log and `status`: `HTTP 404 from GET /transactions?...`
/// (with the request id when the service gave one).
pub(super) fn fallback_note(e: &ApiError) -> Option<String> {
    match e {
        ApiError::NoAccess {
            endpoint,
            status,
            request_id,
        } => Some(match request_id {
            Some(rid) => format!("HTTP {status} from {endpoint}, request id {rid}"),
            None => format!("HTTP {status} from {endpoint}"),
        }),
        _ => None,
    }
}

/// Says once that `auto` fell back: a warning when the previous run did not (the first
/// run, or the key lost access), an info line on the runs after it.
pub(super) fn log_fallback(note: &str, previous: Option<&crate::store::SourceReport>) {
    if !fallback_is_news(previous) {
        tracing::info!(
            reason = note,
            "transactions read per customer: the feed is still not open to this key"
        );
    } else {
        tracing::warn!(
            reason = note,
            "the transactions feed is not open to this key: runs read transactions per \
             customer (sync.transactions_source = \"auto\"); `lomi-sync status` shows it"
        );
    }
}

/// Whether a fallback is news, given where the previous run read from: not when that
/// run fell back too.
pub(super) fn fallback_is_news(previous: Option<&crate::store::SourceReport>) -> bool {
    !previous.is_some_and(|p| p.source == "per_customer" && p.fallback.is_some())
}

/// What the page just read means for the pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum FeedStep {
    /// No row past what the pass has read: it is complete.
    Done,
    /// Read on from this cursor.
    Next(FeedCursor),
}

/// The pass's next step after a page of `rows` rows at `c` (NOTES.md: the end is an
/// empty page; the service cuts pages at about 1,000 rows silently, the offset still
/// using the requested size).
///
/// - A page with no row past `c.read_to` ends the pass: an empty page, or a probe that
///   found nothing after a short page.
/// - A short page is never the end by itself: the next request asks for pages of its
///   length from just past it (`page = read_to / len + 1`, which starts at or before
///   `read_to`: rows read twice are written once). Rows there prove a cap of that
///   length, kept for the rest of the pass, so no row is skipped.
pub(super) fn feed_step(c: &FeedCursor, rows: usize) -> FeedStep {
    let size = u64::from(c.page_size.max(1));
    let start = c.next_page.saturating_sub(1) * size;
    let end = start + rows as u64;
    if rows == 0 || end <= c.read_to {
        return FeedStep::Done;
    }
    let mut n = c.clone();
    n.read_to = end;
    if c.probe_after.is_some() {
        // Rows past a short page: the server cut that page at this many rows.
        n.cap = Some(c.page_size);
        n.probe_after = None;
    }
    if (rows as u64) < size {
        n.probe_after = Some(rows as u32);
        n.page_size = rows as u32;
    }
    n.next_page = n.read_to / u64::from(n.page_size) + 1;
    FeedStep::Next(n)
}

/// The first cursor of a pass: the whole feed for a full walk (or with no watermark
/// yet), else from `watermark` less `lookback` (at least [`OVERLAP`]).
pub(super) fn start_cursor(full: bool, watermark: Option<&str>, lookback: Duration) -> FeedCursor {
    FeedCursor {
        floor: if full {
            None
        } else {
            watermark.and_then(|w| window_floor(w, lookback))
        },
        next_page: 1,
        page_size: FEED_PAGE,
        ..FeedCursor::default()
    }
}

/// `startDate` of an incremental pass: `watermark` less `lookback` (at least
/// [`OVERLAP`]), less 1 µs more so that a row served with nanoseconds the mirror
/// truncated is not cut off. `None` if the watermark does not read as a timestamp.
pub(super) fn window_floor(watermark: &str, lookback: Duration) -> Option<String> {
    let w = parse_timestamp(watermark)?;
    let back = chrono::Duration::from_std(lookback.max(OVERLAP)).ok()?;
    Some(format_timestamp(
        w - back - chrono::Duration::microseconds(1),
    ))
}

/// `endDate` for the pass ending at `end`: 1 µs later, since the mirror's text of the
/// newest row's instant may be truncated below what the service compares (a row at
/// the very bound would drop out and shift every page after the first).
pub(super) fn end_bound(end: &str) -> Option<String> {
    parse_timestamp(end).map(|t| format_timestamp(t + chrono::Duration::microseconds(1)))
}

/// The request for the page at `c`.
pub(super) fn feed_query(c: &FeedCursor) -> FeedQuery {
    FeedQuery {
        start_date: c.floor.clone(),
        end_date: c.end.as_deref().and_then(end_bound),
        ..FeedQuery::page(c.next_page, c.page_size)
    }
}

/// The newest `created_at` of `rows` (in the mirror's form, which orders as text).
fn newest(rows: &[Transaction]) -> Option<String> {
    rows.iter().filter_map(|t| t.created_at.clone()).max()
}

/// What a feed page moves of the feed's state besides its rows.
#[derive(Default)]
pub(super) struct Marks {
    /// A pass completed: its newest `created_at` (the next incremental run's watermark).
    pub(super) watermark: Option<String>,
    /// Where the rolling re-read stands after this page.
    pub(super) rolling: Option<FeedRolling>,
}

/// The customers a feed page needs that the mirror does not hold: what to write
/// before its rows, and those the API says are gone (written as tombstones).
#[derive(Default)]
pub(super) struct Owners {
    pub(super) customers: Vec<Observed>,
    pub(super) gone: Vec<String>,
}

/// Reads customer `id` (`GET /customers/{id}`) into `owners`, as a feed row's unknown
/// customer is read: the customer, or a row holding only its id if it is gone (also a
/// webhook's, `sync/webhook.rs`).
pub(super) async fn read_owner(
    client: &ApiClient,
    id: String,
    owners: &mut Owners,
) -> Result<(), crate::api::ApiError> {
    let job = Job {
        id: id.clone(),
        customer: None,
        details: true,
        transactions: false,
    };
    let fetched = fetch(client, job).await?;
    owner(owners, id, fetched);
    Ok(())
}

/// The 128-bit hash of a transaction id: what [`Vanished`] keeps of each id it saw.
/// Two SipHash-1-3 digests (std's `DefaultHasher`, fixed keys) over distinct prefixes.
/// Collision odds: a live id wrongly taken as seen needs its hash to equal one of the
/// `k` hashes kept, `m * k / 2^128` for `m` live ids; even one window of a whole pass of
/// 10^6 rows gives `10^12 / 3.4 * 10^38`, about `3 * 10^-27`. A collision would only
/// leave one deleted row unconfirmed until the next cycle re-reads it. The hashes live
/// in memory only, so the hasher may change between Rust releases.
fn id_hash(id: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// A window of the feed a newest-first read has finished: the mirror's live rows
/// created in `(above, to]` (`above` `None`: everything up to `to`; `included`: `above`
/// itself too) that are not in `seen` are the ones to confirm by id.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Window {
    pub(super) lower: std::ops::Bound<String>,
    pub(super) upper: String,
    seen: std::collections::HashSet<u128>,
}

/// The rows a newest-first read of the feed (a pass, or a rolling slice) did not show,
/// found window by window so that memory holds about one page of ids, never the whole
/// read (a `HashSet<String>` of a pass of 1,000,000 rows took ~100 MB).
///
/// The feed is ordered by `created_at`, newest first, under a fixed `endDate`: once a
/// page reaches an instant `low`, no later page shows a row newer than `low`. So after
/// each page the window `(low, hi]` is complete: it is compared with the mirror
/// ([`Vanished::missing_in`]) and forgotten, and `low` becomes the next window's `hi`.
/// Rows *at* `low` may go on over the next page (ties): their hashes ([`id_hash`]) are
/// kept until a page reaches below `low`. A row shown after its window was compared
/// (paging drift) costs one needless confirmation, never a wrong deletion: deletion is
/// decided by `GET /transactions/{id}` alone.
#[derive(Debug)]
pub(super) struct Vanished {
    /// The top of the next window (inclusive): everything above it was compared.
    pub(super) hi: String,
    /// The oldest `created_at` read so far.
    low: Option<String>,
    /// Hashes of the ids read at `low` (or, before any, at `hi`).
    at_low: std::collections::HashSet<u128>,
    /// Live ids the compared windows lacked: to confirm before the page that finished
    /// them is committed ([`Engine::close_windows`] takes them).
    pub(super) missing: Vec<String>,
}

impl Vanished {
    /// For a read going down from `top` (inclusive).
    pub(super) fn new(top: String) -> Vanished {
        Vanished {
            hi: top,
            low: None,
            at_low: Default::default(),
            missing: Vec::new(),
        }
    }

    /// Takes in a page's rows; the window they finished, if the page reached below the
    /// oldest instant read before.
    pub(super) fn observe(&mut self, rows: &[Transaction]) -> Option<Window> {
        let page_low = rows.iter().filter_map(|t| t.created_at.as_deref()).min()?;
        let reached_below = self.low.as_deref().is_none_or(|l| page_low < l);
        if !reached_below {
            let low = self.low.as_deref();
            let at = rows.iter().filter(|t| t.created_at.as_deref() == low);
            self.at_low.extend(at.map(|t| id_hash(&t.transaction_id)));
            return None;
        }
        let new_low = page_low.to_string();
        let mut seen = std::mem::take(&mut self.at_low);
        for t in rows {
            match t.created_at.as_deref() {
                Some(c) if c == new_low => self.at_low.insert(id_hash(&t.transaction_id)),
                Some(c) if c <= self.hi.as_str() => seen.insert(id_hash(&t.transaction_id)),
                _ => false,
            };
        }
        self.low = Some(new_low.clone());
        let upper = std::mem::replace(&mut self.hi, new_low.clone());
        let lower = std::ops::Bound::Excluded(new_low);
        Some(Window { lower, upper, seen })
    }

    /// The last window once the read is complete: down to `floor` (inclusive), or to
    /// the feed's end.
    pub(super) fn finish(&mut self, floor: Option<&str>) -> Window {
        let lower = match floor {
            Some(f) => std::ops::Bound::Included(f.to_string()),
            None => std::ops::Bound::Unbounded,
        };
        let seen = std::mem::take(&mut self.at_low);
        Window {
            lower,
            upper: self.hi.clone(),
            seen,
        }
    }

    /// Records the ids of `live` (the mirror's live rows in `w`) that `w` did not see.
    pub(super) fn missing_in(&mut self, w: &Window, live: Vec<String>) {
        let unseen = live.into_iter().filter(|id| !w.seen.contains(&id_hash(id)));
        self.missing.extend(unseen);
    }
}

/// How far a page took a newest-first read of the feed.
#[derive(Clone, Copy, Debug)]
pub(super) enum Reached<'a> {
    /// More pages follow.
    Page,
    /// The read is complete, down to this floor (inclusive; `None`: the feed's end).
    End(Option<&'a str>),
}

/// The top of a new pass's first window: above every instant the mirror's text form
/// can hold, so rows newer than the feed's newest are compared too.
const ABOVE_ALL: &str = "9999-12-31T23:59:59.999999Z";

impl Engine<'_> {
    /// The feed phase: one pass, page by page, each page committed with the cursor
    /// after it, so a killed run resumes at the next page; the windows a page finished
    /// are confirmed before it is committed ([`Engine::close_windows`]). The batch that
    /// completes the pass records its watermark.
    pub(super) async fn feed_pass(&mut self) -> Result<(), SyncError> {
        // The customers listed are committed before rows that reference them.
        self.flush().await?;
        let mut cursor = self.feed_cursor()?;
        // The first load into an empty mirror has nothing older to confirm.
        let track = !self.initial_load;
        if track && cursor.read_to > 0 && cursor.window_top.is_none() {
            // Checkpointed by a version that confirmed at the pass's end only: what its
            // read pages did not show is unknown, so the pass is read again.
            tracing::info!("the feed pass of the interrupted walk starts again from its top");
            cursor = cursor.from_top();
        }
        // A new pass compares from above every instant: a mirror row newer than the
        // feed's newest (deleted since, or written by a webhook) is in its first window.
        let top = cursor.window_top.as_deref().unwrap_or(ABOVE_ALL);
        self.feed_seen = track.then(|| Vanished::new(top.to_string()));
        self.walk.phase = Phase::Feed;
        loop {
            self.check_cancel()?;
            let page = self.client.transactions_feed(&feed_query(&cursor)).await?;
            self.summary.feed_pages += 1;
            if cursor.end.is_none() {
                cursor.end = newest(&page.transactions);
            }
            let rows = page.transactions.len() + page.skipped.len();
            let step = feed_step(&cursor, rows);
            let reached = match step {
                FeedStep::Next(_) => Reached::Page,
                FeedStep::Done => Reached::End(cursor.floor.as_deref()),
            };
            self.close_windows(&page.transactions, reached).await?;
            let (next, marks) = self.pass_step(&cursor, &step);
            self.feed_batch(page.transactions, next, marks).await?;
            self.report(Phase::Feed);
            match step {
                FeedStep::Next(c) => cursor = c,
                FeedStep::Done => break,
            }
        }
        if let Some(c) = &cursor.cap {
            tracing::warn!(
                rows = c,
                "the transactions feed cut pages at {c} rows while more followed: the pass read on in pages of {c}"
            );
        }
        self.flush().await
    }

    /// The walk after a pass's page at `cursor` took `step`, and what it moves of the
    /// feed's state: the next cursor (with the top of the window not yet confirmed), or,
    /// at the pass's end, the rolling phase with the pass's watermark.
    fn pass_step(&self, cursor: &FeedCursor, step: &FeedStep) -> (crate::store::Walk, Marks) {
        let mut next = self.walk.clone();
        match step {
            FeedStep::Next(c) => {
                let window_top = self.feed_seen.as_ref().map(|s| s.hi.clone());
                next.feed = Some(FeedCursor {
                    window_top,
                    ..c.clone()
                });
                (next, Marks::default())
            }
            FeedStep::Done => {
                next.phase = Phase::Rolling;
                next.feed = Some(cursor.clone());
                // A pass over the whole feed re-read every row: the rolling re-read
                // starts a new cycle from here.
                let whole_feed = cursor.floor.is_none().then(|| FeedRolling {
                    end: None,
                    since: Some(crate::store::now()),
                });
                let marks = Marks {
                    watermark: cursor.end.clone(),
                    rolling: whole_feed,
                };
                (next, marks)
            }
        }
    }

    /// Compares the windows of the current read that `rows` (a page) finished, and at
    /// the read's end the last one, with the mirror, and confirms by id the live rows
    /// they did not show, before the caller commits the page's checkpoint: a killed run
    /// resumes below confirmed windows only (the pass's `window_top`, the slice's
    /// `rolling_end`), so no deletion above its checkpoint is left unconfirmed.
    pub(super) async fn close_windows(
        &mut self,
        rows: &[Transaction],
        reached: Reached<'_>,
    ) -> Result<(), SyncError> {
        let Some(mut seen) = self.feed_seen.take() else {
            return Ok(());
        };
        let mut closed: Vec<Window> = seen.observe(rows).into_iter().collect();
        if let Reached::End(floor) = reached {
            closed.push(seen.finish(floor));
        }
        let compared = closed
            .iter()
            .try_for_each(|w| self.compare_window(&mut seen, w));
        let missing = std::mem::take(&mut seen.missing);
        if matches!(reached, Reached::Page) {
            self.feed_seen = Some(seen);
        }
        compared?;
        self.confirm_vanished(missing).await
    }

    /// Compares the window `w` a read finished with the mirror's live rows in it.
    pub(super) fn compare_window(&self, seen: &mut Vanished, w: &Window) -> Result<(), SyncError> {
        let Some(reader) = &self.reader else {
            return Ok(());
        };
        let lower = match &w.lower {
            std::ops::Bound::Included(l) => std::ops::Bound::Included(l.as_str()),
            std::ops::Bound::Excluded(l) => std::ops::Bound::Excluded(l.as_str()),
            std::ops::Bound::Unbounded => std::ops::Bound::Unbounded,
        };
        seen.missing_in(w, reader.live_transactions_between(lower, &w.upper)?);
        Ok(())
    }

    /// The mirror's live transactions in windows a read (a pass, or a slice) finished
    /// that it did not show ([`Vanished`]) are asked for one by one (issue 14: never
    /// inferred from absence alone): 404 marks one deleted, a row found (hidden from the
    /// read by paging drift) is written. Submitted with the walk before the page that
    /// finished the windows.
    pub(super) async fn confirm_vanished(&mut self, ids: Vec<String>) -> Result<(), SyncError> {
        if self.reader.is_none() {
            return Ok(());
        }
        if !ids.is_empty() {
            tracing::debug!(
                transactions = ids.len(),
                "confirming transactions the feed read did not show"
            );
        }
        for chunk in ids.chunks(FEED_PAGE as usize) {
            self.check_cancel()?;
            let mut set = JoinSet::new();
            for id in chunk {
                let (client, permits, id) = (self.client.clone(), self.permits.clone(), id.clone());
                set.spawn(async move {
                    let _permit = permits.acquire_owned().await.expect("never closed");
                    let read = client.get_transaction(&id).await;
                    (id, read)
                });
            }
            let (mut found, mut gone) = (Vec::new(), Vec::new());
            while let Some(joined) = set.join_next().await {
                let (id, read) = joined.expect("a transaction read panicked");
                self.summary.feed_confirmations += 1;
                match self.unreadable_is_present(read)? {
                    Some(Some(t)) if t.customer_id.is_some() => found.push(t),
                    Some(_) => {}
                    None => gone.push(id),
                }
            }
            gone.sort();
            self.confirmed_batch(found, gone).await?;
        }
        Ok(())
    }

    /// A by-id read's answer for confirming: `Some(Some(row))` found, `None` gone (404).
    /// A 200 whose body cannot be read (a record without a usable id, NOTES.md) proves
    /// the row is there: `Some(None)`, the mirror's row kept as it is, the record counted
    /// as skipped and logged, never a deletion and never a failed run.
    fn unreadable_is_present(
        &self,
        read: Result<Option<Transaction>, ApiError>,
    ) -> Result<Option<Option<Transaction>>, ApiError> {
        match read {
            Ok(Some(t)) => Ok(Some(Some(t))),
            Ok(None) => Ok(None),
            Err(e @ ApiError::BadResponse { status: 200, .. }) => {
                let skipped = &self.client.counters().skipped;
                skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %e, "a transaction to confirm could not be read; the mirror keeps it");
                Ok(Some(None))
            }
            Err(e) => Err(e),
        }
    }

    /// Submits what confirming transactions found: rows still there, ids gone.
    async fn confirmed_batch(
        &mut self,
        found: Vec<Transaction>,
        gone: Vec<String>,
    ) -> Result<(), SyncError> {
        let owners = self.feed_owners(&found).await?;
        let batch = Batch {
            run_id: self.run_id,
            initial_load: self.initial_load,
            customers: owners.customers,
            gone: owners.gone,
            feed_rows: found,
            gone_transactions: gone,
            checkpoint: Some(self.walk.clone()),
            ..Batch::default()
        };
        match &mut self.writer {
            Some(w) => w.submit(batch).await,
            None => Ok(()),
        }
    }

    /// The pass's cursor: the walk's own when it is resuming one, else a new one from
    /// the mirror's watermark.
    fn feed_cursor(&self) -> Result<FeedCursor, SyncError> {
        if self.walk.phase == Phase::Feed
            && let Some(c) = &self.walk.feed
            && c.next_page > 0
        {
            return Ok(c.clone());
        }
        let watermark = match &self.reader {
            Some(r) => r.feed_watermark()?,
            None => None,
        };
        let full = self.walk.kind != RunKind::Sync;
        let lookback = self.opts.settings.status_lookback.0;
        Ok(start_cursor(full, watermark.as_deref(), lookback))
    }

    /// Submits one feed page's rows, with the customers they need, the walk after it
    /// and what the page moved of the feed's state.
    pub(super) async fn feed_batch(
        &mut self,
        rows: Vec<Transaction>,
        next: crate::store::Walk,
        marks: Marks,
    ) -> Result<(), SyncError> {
        let (placed, orphans): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|t| t.customer_id.is_some());
        if !orphans.is_empty() {
            tracing::warn!(
                rows = orphans.len(),
                "feed rows without a customer_id were skipped"
            );
        }
        let owners = self.feed_owners(&placed).await?;
        self.summary.transactions_seen += placed.len() as u64;
        let batch = Batch {
            run_id: self.run_id,
            initial_load: self.initial_load,
            customers: owners.customers,
            gone: owners.gone,
            feed_rows: placed,
            feed_watermark: marks.watermark,
            feed_rolling: marks.rolling,
            checkpoint: Some(next.clone()),
            ..Batch::default()
        };
        self.walk = next;
        match &mut self.writer {
            Some(w) => w.submit(batch).await,
            None => Ok(()),
        }
    }

    /// Reads the customers of `rows` that neither this walk nor the mirror holds
    /// (created after the customer walk, or soft-deleted: the feed still lists their
    /// transactions), `api.concurrency` at a time.
    async fn feed_owners(&mut self, rows: &[Transaction]) -> Result<Owners, SyncError> {
        let ids: BTreeSet<&str> = rows
            .iter()
            .filter_map(|t| t.customer_id.as_deref())
            .filter(|id| !self.seen.contains_key(*id))
            .collect();
        let known = match &self.reader {
            Some(r) => r.known_customers(ids.iter().copied())?,
            None => Default::default(),
        };
        let unknown: Vec<String> = ids
            .into_iter()
            .filter(|id| !known.contains(*id))
            .map(str::to_string)
            .collect();
        let mut set = JoinSet::new();
        for id in unknown {
            let client = self.client.clone();
            let permits = self.permits.clone();
            set.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                let job = Job {
                    id: id.clone(),
                    customer: None,
                    details: true,
                    transactions: false,
                };
                (id, fetch(&client, job).await)
            });
        }
        let mut owners = Owners::default();
        while let Some(joined) = set.join_next().await {
            let (id, fetched) = joined.expect("a customer read panicked");
            self.summary.customer_reads += 1;
            self.mark_seen(id.clone(), SEEN_READ);
            owner(&mut owners, id, fetched?);
        }
        owners
            .customers
            .sort_by(|a, b| a.customer.id.cmp(&b.customer.id));
        Ok(owners)
    }
}

/// Adds what reading customer `id` gave to `owners`: the customer, or, when it is gone
/// (or its record cannot be read), a row holding only its id, so its transactions have
/// a customer; a gone one is then marked deleted, as the views expect.
fn owner(owners: &mut Owners, id: String, fetched: Fetched) {
    let gone = match fetched {
        Fetched::Present {
            observed: Some(o), ..
        } => {
            owners.customers.push(*o);
            return;
        }
        Fetched::Present { observed: None, .. } => false,
        Fetched::Gone => true,
    };
    let stub = serde_json::json!({ "id": id });
    if let Ok(customer) = Customer::from_value(stub) {
        owners.customers.push(Observed {
            customer,
            partial: true,
        });
    }
    if gone {
        owners.gone.push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(next_page: u64, page_size: u32, read_to: u64) -> FeedCursor {
        FeedCursor {
            end: Some("2025-03-01T09:00:00.000000Z".into()),
            next_page,
            page_size,
            read_to,
            ..FeedCursor::default()
        }
    }

    fn next(c: &FeedCursor, rows: usize) -> FeedCursor {
        match feed_step(c, rows) {
            FeedStep::Next(n) => n,
            FeedStep::Done => panic!("the pass ended at {c:?} with {rows} rows"),
        }
    }

    fn row(id: &str, at: &str) -> Transaction {
        let created_at = format!("2025-03-01T09:00:{at}.000000Z");
        Transaction::from_value(serde_json::json!({"transaction_id": id, "created_at": created_at}))
            .unwrap()
    }

    fn t(at: &str) -> String {
        format!("2025-03-01T09:00:{at}.000000Z")
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn vanished_rows_are_found_window_by_window_and_ties_wait_for_the_next_page() {
        use std::ops::Bound;
        let mut v = Vanished::new(t("50"));
        // Page 1 goes down to :40, with one of two rows at :40 (the other on page 2).
        let w = v
            .observe(&[row("a", "50"), row("b", "45"), row("c", "40")])
            .unwrap();
        assert_eq!(
            (&w.lower, w.upper.as_str()),
            (&Bound::Excluded(t("40")), t("50").as_str())
        );
        // The mirror's live rows in (:40, :50]: `x` was not shown.
        v.missing_in(&w, ids(&["a", "b", "x"]));
        assert_eq!(v.missing, ids(&["x"]));
        // Page 2 stays at :40 (the tied row): no window is finished yet.
        assert_eq!(v.observe(&[row("d", "40")]), None);
        // Page 3 reaches :30: (:30, :40] holds both rows at :40, seen over two pages.
        let w = v.observe(&[row("e", "35"), row("f", "30")]).unwrap();
        assert_eq!(
            (&w.lower, w.upper.as_str()),
            (&Bound::Excluded(t("30")), t("40").as_str())
        );
        v.missing_in(&w, ids(&["c", "d", "e", "y"]));
        assert_eq!(v.missing, ids(&["x", "y"]));
        // A page without rows finishes nothing; the read's end takes the rest, down to
        // the floor (inclusive), with the rows at the oldest instant read as seen.
        assert_eq!(v.observe(&[]), None);
        let w = v.finish(Some(&t("10")));
        assert_eq!(
            (&w.lower, w.upper.as_str()),
            (&Bound::Included(t("10")), t("30").as_str())
        );
        v.missing_in(&w, ids(&["f", "z"]));
        assert_eq!(v.missing, ids(&["x", "y", "z"]));
    }

    #[test]
    fn vanished_keeps_about_a_page_of_hashes_not_the_whole_read() {
        let mut v = Vanished::new(t("59"));
        let (mut kept, mut above) = (0, Vec::new());
        for s in (0..59).rev() {
            let page: Vec<_> = (0..100)
                .map(|i| row(&format!("tx_{s}_{i}"), &format!("{s:02}")))
                .collect();
            // This page reaches below the last: the window of the previous page's instant.
            let w = v.observe(&page).unwrap();
            kept = kept.max(w.seen.len() + v.at_low.len());
            v.missing_in(&w, std::mem::take(&mut above));
            above = page.iter().map(|r| r.transaction_id.clone()).collect();
        }
        // Each page's rows share one instant: held until the next page passes it.
        assert!(kept <= 200, "{kept} hashes held");
        assert!(v.missing.is_empty(), "{:?}", v.missing);
        // A row shown before its window on a later page (drift) is only re-confirmed.
        assert_ne!(id_hash("tx_1"), id_hash("tx_2"));
        assert_eq!(id_hash("tx_1"), id_hash("tx_1"));
    }

    #[test]
    fn a_fallback_is_said_loudly_once_then_quietly() {
        use crate::store::SourceReport;
        let report = |source: &str, fallback: Option<&str>| SourceReport {
            source: source.into(),
            fallback: fallback.map(Into::into),
        };
        assert!(fallback_is_news(None));
        assert!(fallback_is_news(Some(&report("feed", None))));
        // Asked per customer before (not a fallback): the first fallback is news.
        assert!(fallback_is_news(Some(&report("per_customer", None))));
        assert!(!fallback_is_news(Some(&report(
            "per_customer",
            Some("HTTP 404")
        ))));
        let closed = ApiError::NoAccess {
            endpoint: "GET /transactions?page=1&pageSize=1".into(),
            status: 404,
            request_id: Some("req_1".into()),
        };
        assert_eq!(
            fallback_note(&closed).as_deref(),
            Some("HTTP 404 from GET /transactions?page=1&pageSize=1, request id req_1")
        );
        assert_eq!(
            report("per_customer", Some("HTTP 404 from GET /transactions")).to_string(),
            "per_customer (feed not available: HTTP 404 from GET /transactions)"
        );
    }

    #[test]
    fn full_pages_read_on_and_an_empty_page_ends() {
        let c = next(&at(1, 1000, 0), 1000);
        assert_eq!((c.next_page, c.page_size, c.read_to), (2, 1000, 1000));
        assert_eq!(feed_step(&c, 0), FeedStep::Done);
    }

    #[test]
    fn a_short_page_is_probed_not_trusted() {
        // 1,500 rows, no cap: the short page is followed by a probe at its end.
        let c = next(&at(2, 1000, 1000), 500);
        assert_eq!((c.next_page, c.page_size, c.read_to), (4, 500, 1500));
        assert_eq!(c.probe_after, Some(500));
        assert_eq!(feed_step(&c, 0), FeedStep::Done);
        assert_eq!(c.cap, None);
    }

    #[test]
    fn a_silent_cap_is_learned_and_no_row_skipped() {
        // The server serves 50 of the 1,000 asked; the offset still used 1,000.
        let c = next(&at(1, 1000, 0), 50);
        // The probe asks for rows 50..100: exactly past the short page.
        assert_eq!((c.next_page, c.page_size, c.read_to), (2, 50, 50));
        let c = next(&c, 50);
        assert_eq!(
            (c.cap, c.probe_after, c.read_to, c.next_page),
            (Some(50), None, 100, 3)
        );
        // A cap that does not divide what was read: the page starts at or before it.
        let odd = FeedCursor {
            probe_after: Some(30),
            ..at(35, 30, 1030)
        };
        let c = next(&odd, 30);
        assert_eq!((c.read_to, c.next_page, c.page_size), (1050, 36, 30));
    }

    #[test]
    fn a_page_of_rows_already_read_ends_the_pass() {
        // Pages of 30 from 1,030: page 35 starts at 1,020; 5 rows end at 1,025.
        let c = FeedCursor {
            probe_after: Some(30),
            ..at(35, 30, 1030)
        };
        assert_eq!(feed_step(&c, 5), FeedStep::Done);
    }

    #[test]
    fn windows_come_from_the_watermark() {
        let w = "2025-03-08T12:00:00.000000Z";
        let week = Duration::from_secs(7 * 24 * 3600);
        assert_eq!(
            window_floor(w, week).as_deref(),
            Some("2025-03-01T11:59:59.999999Z")
        );
        // The overlap is the least lookback.
        assert_eq!(
            window_floor(w, Duration::from_secs(60)).as_deref(),
            Some("2025-03-08T10:59:59.999999Z")
        );
        assert_eq!(window_floor("yesterday", week), None);
        assert_eq!(
            end_bound("2025-03-08T12:00:00.123456Z").as_deref(),
            Some("2025-03-08T12:00:00.123457Z")
        );
        // A full walk reads everything; an incremental one from the watermark.
        assert_eq!(start_cursor(true, Some(w), week).floor, None);
        assert_eq!(start_cursor(false, None, week).floor, None);
        let c = start_cursor(false, Some(w), week);
        assert_eq!((c.next_page, c.page_size, c.read_to), (1, FEED_PAGE, 0));
        assert!(c.floor.is_some() && c.end.is_none());
    }

    #[test]
    fn the_first_page_has_no_end_bound_and_later_ones_do() {
        let mut c = start_cursor(true, None, OVERLAP);
        assert_eq!(feed_query(&c).end_date, None);
        c.end = Some("2025-03-08T12:00:00.000000Z".into());
        assert_eq!(
            feed_query(&c).end_date.as_deref(),
            Some("2025-03-08T12:00:00.000001Z")
        );
    }
}
