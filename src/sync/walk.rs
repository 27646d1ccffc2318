//! The walk's phases: paging through the list segments (list, top-up, sweep), the
//! walk's advance from one segment or phase to the next, what the walk has seen, and
//! the confirm and rolling phases.

use std::collections::HashMap;

use tokio::task::JoinHandle;

use super::plan::{detail_jobs, details_quota, transaction_jobs};
use super::run::ago;
use super::{Engine, SyncError, listing};
use crate::api::{ApiError, Customer, CustomerPage, StatusFilter};
use crate::config::SyncSettings;
use crate::store::{Phase, RunKind, SeenIn, Walk};

pub(super) fn segments(s: &SyncSettings) -> Vec<StatusFilter> {
    if s.use_status_filter {
        vec![StatusFilter::Active, StatusFilter::Inactive]
    } else {
        vec![StatusFilter::All]
    }
}

/// The segments a customer can be listed in, in [`segment_index`] order.
pub(super) const SEGMENTS: [StatusFilter; 3] = [
    StatusFilter::All,
    StatusFilter::Active,
    StatusFilter::Inactive,
];

pub(super) fn segment_index(s: StatusFilter) -> usize {
    match s {
        StatusFilter::All => 0,
        StatusFilter::Active => 1,
        StatusFilter::Inactive => 2,
    }
}

/// Where a walk saw a customer, as bits: listed in a segment, or read by a later phase.
pub(super) fn seen_bit(seen: SeenIn) -> u8 {
    match seen {
        SeenIn::Listed(s) => 1 << segment_index(s),
        SeenIn::Confirm | SeenIn::Rolling => SEEN_READ,
    }
}

/// Bits of [`seen_bit`] that are list segments.
pub(super) const SEEN_LISTED: u8 = 0b111;

/// Read by the confirm or rolling phase, not listed.
pub(super) const SEEN_READ: u8 = 0b1000;

impl Engine<'_> {
    pub(super) async fn walk_all(&mut self) -> Result<(), SyncError> {
        loop {
            tracing::debug!(
                phase = self.walk.phase.as_str(),
                segment = %self.walk.segment.as_str(),
                page = self.walk.next_page,
                "walk step"
            );
            match self.walk.phase {
                Phase::List | Phase::Topup | Phase::Sweep => {
                    self.list_segment(self.walk.segment).await?;
                }
                Phase::Confirm => {
                    if self.writer.is_none() {
                        return Ok(());
                    }
                    self.confirm().await?;
                    self.walk.phase = match self.walk.feed {
                        Some(_) => Phase::Feed,
                        None => Phase::Rolling,
                    };
                }
                Phase::Feed => {
                    if self.walk.feed.is_some() {
                        self.feed_pass().await?;
                    }
                    self.walk.phase = Phase::Rolling;
                }
                Phase::Rolling => {
                    // In feed mode the pass re-read the recent transactions, and a
                    // slice of the feed below it the older ones (`feed_slice.rs`).
                    if self.walk.kind == RunKind::Sync {
                        match self.walk.feed {
                            None => self.rolling().await?,
                            Some(_) => self.feed_slice().await?,
                        }
                    }
                    self.fill_details().await?;
                    return Ok(());
                }
            }
        }
    }

    /// The walk's state once a pass over the current segment is done ([`advanced`]);
    /// the next pass starts with no probe and no offset read.
    pub(super) fn advanced(&mut self) -> Walk {
        self.probing = false;
        self.read_to = None;
        let tally = Tally {
            totals: &self.segment_totals,
            listed: self.listed,
            distinct: self.listed_distinct,
        };
        let segs = segments(&self.opts.settings);
        advanced(&self.walk, &segs, self.opts.page_size, &tally)
    }

    /// Pages through one segment of the list (a list pass, a top-up or a sweep).
    pub(super) async fn list_segment(&mut self, seg: StatusFilter) -> Result<(), SyncError> {
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
    pub(super) async fn list_page(
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
            self.walk.counts.unreadable.insert(seg, unreadable);
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
        self.start_chunked(jobs, SeenIn::Listed(seg), 1, next.clone(), also_seen)
            .await?;
        if done {
            self.drain().await?;
        }
        self.walk = next;
        self.report(phase);
        Ok(done)
    }

    /// Counts the unreadable records of a list or sweep pass, from its first page on.
    pub(super) fn count_unreadable(&mut self, phase: Phase, page_no: u64, skipped: usize) {
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
    pub(super) fn note_total(&mut self, seg: StatusFilter, page_no: u64, rows: usize, total: u64) {
        if rows == 0 && page_no > 1 {
            return;
        }
        self.segment_totals.insert(seg, total);
        if page_no == 1 && self.walk.phase != Phase::List {
            self.walk.counts.totals.insert(seg, total);
        }
    }

    /// Customers deleted above our position since the previous page shift the rest
    /// up, so the start of this page slid onto the previous one: reads those again to
    /// catch them (only the unseen ones cost anything beyond the request).
    pub(super) async fn reread_shifted(
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
    pub(super) fn learn_cap(&mut self, size: u32) {
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
    pub(super) fn unseen(
        &mut self,
        customers: Vec<Customer>,
        seg: StatusFilter,
    ) -> (Vec<Customer>, Vec<String>) {
        let bit = seen_bit(SeenIn::Listed(seg));
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
    pub(super) fn listed_in(&self, id: &str, seg: StatusFilter) -> bool {
        self.seen
            .get(id)
            .is_some_and(|m| m & seen_bit(SeenIn::Listed(seg)) != 0)
    }

    /// Customers the list counts that the walk could not list, less those the confirm
    /// phase found present one by one: an error to end the run with, if any are left.
    pub(super) fn incomplete(&self) -> Result<Option<SyncError>, SyncError> {
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
    pub(super) fn mark_seen(&mut self, id: String, bit: u8) {
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
            if bit & seen_bit(SeenIn::Listed(*s)) != 0 {
                self.listed[i] += 1;
            }
        }
    }

    /// Confirms, one by one, the mirrored customers the walk did not see.
    pub(super) async fn confirm(&mut self) -> Result<(), SyncError> {
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
                SeenIn::Confirm,
                0,
                checkpoint,
                Vec::new(),
            )
            .await?;
            self.drain().await?;
            self.report(Phase::Confirm);
        }
    }

    /// Re-reads the transactions of the customers longest unread.
    pub(super) async fn rolling(&mut self) -> Result<(), SyncError> {
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
        self.read_in_pages(ids, |page| transaction_jobs(page, false))
            .await
    }

    /// Reads `ids` a list page's worth at a time, each page's jobs (`jobs`) in flight
    /// like a list page's, then reports the rolling phase: what the rolling re-read and
    /// the details fill share.
    async fn read_in_pages(
        &mut self,
        ids: Vec<String>,
        jobs: impl Fn(Vec<String>) -> Vec<super::plan::Job>,
    ) -> Result<(), SyncError> {
        let mut ids = ids.into_iter();
        loop {
            self.check_cancel()?;
            let page: Vec<String> = ids.by_ref().take(self.walk.page_size as usize).collect();
            if page.is_empty() {
                break;
            }
            let checkpoint = self.walk.clone();
            self.start_chunked(jobs(page), SeenIn::Rolling, 0, checkpoint, Vec::new())
                .await?;
        }
        self.drain().await?;
        self.report(Phase::Rolling);
        Ok(())
    }
}

impl Engine<'_> {
    /// The background fill of customer details (issue 14): reads `GET /customers/{id}`
    /// of up to [`details_quota`] customers lacking details, changed ones first, then
    /// newest first, in pages in flight like the rolling re-read. Each read replaces the
    /// stored object whole and marks its details known; a 404 marks the customer
    /// deleted. A resumed run reads none twice: a filled customer lacks nothing.
    pub(super) async fn fill_details(&mut self) -> Result<(), SyncError> {
        self.flush().await?;
        let Some(reader) = &self.reader else {
            return Ok(());
        };
        let lacking = reader.lacking_details()?;
        let s = &self.opts.settings;
        let want = details_quota(self.walk.kind, self.writer.is_some(), s, lacking);
        if want == 0 {
            return Ok(());
        }
        let ids = reader.details_candidates(want as usize)?;
        tracing::info!(
            lacking,
            reading = ids.len(),
            "filling customer details (sync.details_per_run)"
        );
        self.read_in_pages(ids, detail_jobs).await
    }
}

/// What the walk has listed so far: the inputs of [`after_listing`]'s count.
pub(super) struct Tally<'a> {
    /// The latest `totalCount` of each segment, for a segment the walk's own counts
    /// (`Walk::counts`) lack.
    pub(super) totals: &'a HashMap<StatusFilter, u64>,
    /// Customers listed in each segment, indexed by [`segment_index`].
    pub(super) listed: [u64; 3],
    /// Customers listed in any segment, each once.
    pub(super) distinct: u64,
}

/// The walk's state once a pass over the current segment (of `segs`, the segments a
/// walk lists, in order) is done: the next segment, a sweep, or the next phase; each
/// starts at page 1 in pages of `page_size` (`api.page_size`), or of the cap learned.
pub(super) fn advanced(walk: &Walk, segs: &[StatusFilter], page_size: u32, tally: &Tally) -> Walk {
    let i = segs.iter().position(|s| *s == walk.segment).unwrap_or(0);
    let mut w = walk.clone();
    w.next_page = 1;
    w.last_total = None;
    w.page_size = listing::base_page_size(page_size, w.page_cap);
    match (w.phase, segs.get(i + 1)) {
        (Phase::List | Phase::Topup, Some(next)) => w.segment = *next,
        (Phase::List, None) => {
            w.phase = Phase::Topup;
            w.segment = segs[0];
        }
        _ => after_listing(&mut w, segs, tally),
    }
    w
}

/// After the top-ups, and after each sweep: counts the customers listed against
/// what the list counts, and sweeps the segment furthest short, or gives up after
/// [`listing::MAX_SWEEPS`] and goes on (the run will then not succeed).
pub(super) fn after_listing(w: &mut Walk, segs: &[StatusFilter], tally: &Tally) {
    // Records the list counts but whose id cannot be read were skipped (and
    // counted as such), not missed.
    let unreadable = |s: &StatusFilter| w.counts.unreadable.get(*s).unwrap_or(0);
    let counts: Vec<(Option<u64>, u64)> = segs
        .iter()
        .map(|s| {
            let total = w.counts.totals.get(*s).or(tally.totals.get(s).copied());
            (total, tally.listed[segment_index(*s)] + unreadable(s))
        })
        .collect();
    let skipped: u64 = segs.iter().map(unreadable).sum();
    let missing = listing::shortfall(&counts, tally.distinct + skipped);
    match listing::segment_to_sweep(&counts) {
        Some(t) if missing > 0 && w.pass < listing::MAX_SWEEPS => {
            w.pass += 1;
            w.phase = Phase::Sweep;
            w.segment = segs[t];
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
            w.segment = StatusFilter::All;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIVE: StatusFilter = StatusFilter::Active;
    const INACTIVE: StatusFilter = StatusFilter::Inactive;
    const ALL: StatusFilter = StatusFilter::All;
    const FILTERED: &[StatusFilter] = &[ACTIVE, INACTIVE];
    const UNFILTERED: &[StatusFilter] = &[ALL];
    const MAX: u32 = listing::MAX_SWEEPS;

    /// The walk at the end of a pass: `(phase, segment, pass, page_cap)`, what it
    /// counted (`totalCount` per segment, records with an unreadable id per segment).
    struct At {
        segs: &'static [StatusFilter],
        walk: (Phase, StatusFilter, u32, Option<u32>),
        counted: &'static [(StatusFilter, u64)],
        unreadable: &'static [(StatusFilter, u64)],
        /// Only progress's `totalCount`s (the walk counted none itself).
        progress: &'static [(StatusFilter, u64)],
        /// Customers listed per segment (all, active, inactive), and in any.
        listed: [u64; 3],
        distinct: u64,
    }

    /// The walk advanced: `(phase, segment, page_size, pass, missing)`.
    type Then = (Phase, StatusFilter, u32, u32, Option<u64>);

    const fn at(segs: &'static [StatusFilter], phase: Phase, seg: StatusFilter) -> At {
        At {
            segs,
            walk: (phase, seg, 0, None),
            counted: &[],
            unreadable: &[],
            progress: &[],
            listed: [0; 3],
            distinct: 0,
        }
    }

    /// Page size `api.page_size` in these rows.
    const PAGE: u32 = 100;

    /// Short: the list counts 10 active and 5 inactive; 8 and 5 listed.
    const SHORT: At = At {
        counted: &[(ACTIVE, 10), (INACTIVE, 5)],
        listed: [0, 8, 5],
        distinct: 13,
        ..at(FILTERED, Phase::Topup, INACTIVE)
    };

    #[rustfmt::skip]
    fn rows() -> Vec<(&'static str, At, Then)> {
        vec![
            ("a list pass goes on to the next segment",
                at(FILTERED, Phase::List, ACTIVE), (Phase::List, INACTIVE, PAGE, 0, None)),
            ("after the last segment's list pass, the top-ups start at the first",
                at(FILTERED, Phase::List, INACTIVE), (Phase::Topup, ACTIVE, PAGE, 0, None)),
            ("without status filter: one segment, `all`",
                at(UNFILTERED, Phase::List, ALL), (Phase::Topup, ALL, PAGE, 0, None)),
            ("a top-up goes on to the next segment",
                at(FILTERED, Phase::Topup, ACTIVE), (Phase::Topup, INACTIVE, PAGE, 0, None)),
            ("after the top-ups, everyone counted was listed: confirm",
                At { listed: [0, 10, 5], distinct: 15, ..SHORT },
                (Phase::Confirm, ALL, PAGE, 0, None)),
            ("after the top-ups, a segment came up short: sweep it in the largest pages",
                SHORT, (Phase::Sweep, ACTIVE, listing::MAX_SWEEP_PAGE, 1, None)),
            ("a sweep still short sweeps again",
                At { walk: (Phase::Sweep, ACTIVE, 1, None), ..SHORT },
                (Phase::Sweep, ACTIVE, listing::MAX_SWEEP_PAGE, 2, None)),
            ("after the last sweep, what is still short is missing, and the walk goes on",
                At { walk: (Phase::Sweep, ACTIVE, MAX, None), ..SHORT },
                (Phase::Confirm, ALL, PAGE, MAX, Some(2))),
            ("records with an unreadable id were skipped, not missed",
                At { unreadable: &[(ACTIVE, 2)], ..SHORT },
                (Phase::Confirm, ALL, PAGE, 0, None)),
            ("a customer listed in both segments counts once",
                At { counted: &[(ACTIVE, 10), (INACTIVE, 6)], listed: [0, 10, 6], distinct: 15, ..SHORT },
                (Phase::Confirm, ALL, PAGE, 0, Some(1))),
            ("no segment short of its own count: nothing to sweep, what is short is missing",
                At { listed: [0, 10, 5], distinct: 14, ..SHORT },
                (Phase::Confirm, ALL, PAGE, 0, Some(1))),
            ("a count the walk did not keep is taken from the latest page",
                At { counted: &[], progress: &[(ACTIVE, 10), (INACTIVE, 5)], ..SHORT },
                (Phase::Sweep, ACTIVE, listing::MAX_SWEEP_PAGE, 1, None)),
            ("a learned page cap sizes the next pass",
                At { walk: (Phase::List, ACTIVE, 0, Some(40)), ..at(FILTERED, Phase::List, ACTIVE) },
                (Phase::List, INACTIVE, 40, 0, None)),
            ("...and the sweeps",
                At { walk: (Phase::Topup, INACTIVE, 0, Some(40)), ..SHORT },
                (Phase::Sweep, ACTIVE, 40, 1, None)),
        ]
    }

    fn walk_at(a: &At) -> Walk {
        let (phase, segment, pass, page_cap) = a.walk;
        let mut counts = crate::store::ListCounts::default();
        for (s, n) in a.counted {
            counts.totals.insert(*s, *n);
        }
        for (s, n) in a.unreadable {
            counts.unreadable.insert(*s, *n);
        }
        Walk {
            run_id: 1,
            kind: RunKind::Sync,
            started_at: "2025-03-01T09:00:00.000000Z".into(),
            phase,
            segment,
            next_page: 7,
            page_size: 25,
            last_total: Some(300),
            pass,
            page_cap,
            counts,
            initial: false,
            feed: None,
        }
    }

    #[test]
    fn each_rule_of_the_walks_advance() {
        for (rule, a, (phase, segment, page_size, pass, missing)) in rows() {
            let walk = walk_at(&a);
            let totals = a.progress.iter().copied().collect();
            let tally = Tally {
                totals: &totals,
                listed: a.listed,
                distinct: a.distinct,
            };
            let w = advanced(&walk, a.segs, PAGE, &tally);
            assert_eq!(
                (w.phase, w.segment, w.page_size, w.pass, w.counts.missing),
                (phase, segment, page_size, pass, missing),
                "{rule}"
            );
            // Every pass starts over at page 1; the rest of the walk is kept.
            assert_eq!((w.next_page, w.last_total), (1, None), "{rule}");
            assert_eq!((w.run_id, w.page_cap), (1, walk.page_cap), "{rule}");
            assert_eq!(w.counts.totals, walk.counts.totals, "{rule}");
        }
    }
}
