//! The feed's rolling re-read (issue 14): a refund or a deletion of a payment older
//! than `sync.status_lookback` changes nothing an incremental pass reads (the feed has
//! no "updated since" filter, NOTES.md), so each incremental run in feed mode also
//! re-reads a *slice* of the feed below its pass's floor. Slices move down the feed run
//! after run; an empty page (the feed's oldest row passed) ends a *cycle*, and the next
//! slice starts again at the floor. A cycle re-reads every row once, at about
//! `N_tx / 1,000` requests, within `sync.full_every`.
//!
//! - **Bounds from the data.** A slice's `endDate` is where the previous one stopped
//!   (the oldest `created_at` it read, `feed_state.rolling_end`), or the pass's floor; it
//!   is read newest first with offset paging under that fixed bound, as a pass is
//!   ([`super::feed::feed_step`]), and stops only past that bound, so rows sharing the
//!   oldest instant are read again by the next slice, never skipped.
//! - **Size from the schedule.** The cycle's start (`feed_state.rolling_since`) is the
//!   one clock reading, on this machine: a slice reads the share of the mirror's rows
//!   below the floor that the time since then, against `sync.full_every`, calls for,
//!   less what the cycle has read already ([`slice_plan`]). Runs late or early even out,
//!   and a cycle older than `sync.full_every` reads the rest at once.
//! - **Deletions confirmed.** The mirror's live rows in the windows a slice's page
//!   finished that the slice did not show are asked for with `GET /transactions/{id}`
//!   (404: deleted) before the page is committed, as in a pass.
//! - **Checkpointed.** Each page commits its rows with the slice's new end, everything
//!   above it confirmed; a killed run's next run starts the next slice there.

use std::time::Duration;

use super::feed::{FEED_PAGE, FeedStep, Marks, Reached, Vanished, feed_query, feed_step};
use super::{Engine, SyncError};
use crate::api::model::Transaction;
use crate::api::timestamp::parse_timestamp;
use crate::store::{FeedCursor, FeedRolling, Phase};

/// How much of the feed below the floor this run re-reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slice {
    /// Nothing due yet.
    Skip,
    /// At least this many rows (whole pages), then stop past the slice's top instant.
    Rows(u64),
    /// On to the feed's end, which ends the cycle.
    ToEnd,
}

/// The slice this run reads. `old`: the mirror's live rows below the pass's floor;
/// `left`: those below the slice's top (not yet read this cycle); `elapsed`: since
/// the cycle started (`None`: no cycle ever ended, as in a mirror from before the
/// rolling re-read); `every`: `sync.full_every`.
///
/// The cycle should have read `old * elapsed / every` rows by now (rounded down: no
/// request before a row is due); the slice is what it lacks. Integer arithmetic, in
/// milliseconds.
pub(super) fn slice_plan(old: u64, left: u64, elapsed: Option<Duration>, every: Duration) -> Slice {
    let Some(elapsed) = elapsed else {
        return Slice::ToEnd;
    };
    if elapsed >= every {
        return Slice::ToEnd;
    }
    if old == 0 {
        // Nothing below the floor to re-read yet (a young feed): no request each run.
        return Slice::Skip;
    }
    if left == 0 {
        // Below every mirrored row, short of the end the feed has not shown yet.
        return Slice::ToEnd;
    }
    let done = old.saturating_sub(left);
    let due = u128::from(old) * elapsed.as_millis() / every.as_millis().max(1);
    match (due as u64).saturating_sub(done) {
        0 => Slice::Skip,
        n => Slice::Rows(n),
    }
}

/// Whether a slice that has read `read` rows of `want` stops after this page: at the
/// feed's end, or once enough rows are read and the oldest row read lies below the
/// slice's `top` (else the next slice would start where this one did).
pub(super) fn slice_stops(
    done: bool,
    read: u64,
    want: u64,
    oldest: Option<&str>,
    top: &str,
) -> bool {
    done || (read >= want && oldest.is_some_and(|o| o < top))
}

/// The oldest `created_at` of `rows` (in the mirror's form, which orders as text).
fn oldest(rows: &[Transaction]) -> Option<String> {
    rows.iter().filter_map(|t| t.created_at.clone()).min()
}

impl Engine<'_> {
    /// The rolling slice of an incremental run in feed mode, after its pass
    /// (`self.walk.feed` holds the pass's cursor, with its floor).
    pub(super) async fn feed_slice(&mut self) -> Result<(), SyncError> {
        let pass = self.walk.feed.clone().unwrap_or_default();
        // A pass with no floor read the whole feed: it started a new cycle itself.
        let (Some(floor), true) = (pass.floor, self.writer.is_some()) else {
            return Ok(());
        };
        self.flush().await?;
        let Some(reader) = &self.reader else {
            return Ok(());
        };
        let state = reader.feed_rolling()?;
        let top = match state.end {
            Some(end) if end < floor => end,
            _ => floor.clone(),
        };
        let (old, left) = reader.live_transactions_before(&floor, &top)?;
        let elapsed = state
            .since
            .as_deref()
            .and_then(parse_timestamp)
            .map(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default());
        let plan = slice_plan(old, left, elapsed, self.opts.settings.full_every.0);
        tracing::info!(old, left, ?plan, top = %top, "rolling re-read of the feed");
        let want = match plan {
            Slice::Skip => return Ok(()),
            Slice::Rows(n) => n,
            Slice::ToEnd => u64::MAX,
        };
        let cursor = FeedCursor {
            end: Some(top.clone()),
            next_page: 1,
            page_size: pass.cap.unwrap_or(FEED_PAGE),
            cap: pass.cap,
            ..FeedCursor::default()
        };
        self.read_slice(cursor, want).await
    }

    /// Reads the slice from `cursor` (its `end` the slice's top) until [`slice_stops`],
    /// confirming page by page the rows of the windows it read whole that it did not
    /// show; rows at the oldest instant read are the next slice's.
    async fn read_slice(&mut self, mut cursor: FeedCursor, want: u64) -> Result<(), SyncError> {
        let top = cursor.end.clone().unwrap_or_default();
        self.feed_seen = Some(Vanished::new(top.clone()));
        let (mut read, mut low) = (0u64, None::<String>);
        loop {
            self.check_cancel()?;
            let page = self.client.transactions_feed(&feed_query(&cursor)).await?;
            self.summary.feed_pages += 1;
            self.summary.feed_rolling_pages += 1;
            let rows = page.transactions.len() + page.skipped.len();
            read += rows as u64;
            low = match (low, oldest(&page.transactions)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let step = feed_step(&cursor, rows);
            let done = step == FeedStep::Done;
            let reached = if done {
                Reached::End(None)
            } else {
                Reached::Page
            };
            self.close_windows(&page.transactions, reached).await?;
            let rolling = if done {
                FeedRolling {
                    end: None,
                    since: Some(crate::store::now()),
                }
            } else {
                FeedRolling {
                    end: low.clone().or_else(|| Some(top.clone())),
                    since: None,
                }
            };
            let marks = Marks {
                watermark: None,
                rolling: Some(rolling),
            };
            let walk = self.walk.clone();
            self.feed_batch(page.transactions, walk, marks).await?;
            self.report(Phase::Rolling);
            match step {
                FeedStep::Next(c) if !slice_stops(done, read, want, low.as_deref(), &top) => {
                    cursor = c
                }
                _ => break,
            }
        }
        self.feed_seen = None;
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    fn plan(old: u64, left: u64, hours: Option<u64>) -> Slice {
        let elapsed = hours.map(|h| Duration::from_secs(h * H));
        slice_plan(old, left, elapsed, Duration::from_secs(24 * H))
    }

    #[test]
    fn a_slice_is_the_share_of_the_cycle_the_time_calls_for() {
        // 1,000,000 rows, a run every 6 h: a quarter each time.
        assert_eq!(plan(1_000_000, 1_000_000, Some(6)), Slice::Rows(250_000));
        assert_eq!(plan(1_000_000, 750_000, Some(12)), Slice::Rows(250_000));
        // A run came late: the next reads more; one came early, less or nothing.
        assert_eq!(plan(1_000_000, 750_000, Some(18)), Slice::Rows(500_000));
        assert_eq!(plan(1_000_000, 500_000, Some(12)), Slice::Skip);
        // Rounded down: no request before a whole row is due.
        assert_eq!(plan(10, 10, Some(1)), Slice::Skip);
        assert_eq!(plan(24, 24, Some(1)), Slice::Rows(1));
    }

    #[test]
    fn a_cycle_ends_within_full_every() {
        // The cycle is as old as sync.full_every: the rest, to the feed's end.
        assert_eq!(plan(1_000_000, 900_000, Some(24)), Slice::ToEnd);
        assert_eq!(plan(1_000_000, 900_000, Some(30)), Slice::ToEnd);
        // Below every mirrored row but short of the end: one more page ends it.
        assert_eq!(plan(1_000_000, 0, Some(2)), Slice::ToEnd);
        // No cycle ever ended (a mirror from before the rolling re-read): all of it.
        assert_eq!(plan(1_000_000, 1_000_000, None), Slice::ToEnd);
    }

    #[test]
    fn nothing_below_the_floor_costs_no_request_until_the_cycle_is_due() {
        assert_eq!(plan(0, 0, Some(1)), Slice::Skip);
        assert_eq!(plan(0, 0, Some(24)), Slice::ToEnd);
    }

    #[test]
    fn a_slice_stops_past_its_top_instant_only() {
        let top = "2025-03-01T00:00:00.000000Z";
        let below = "2025-02-01T00:00:00.000000Z";
        assert!(slice_stops(false, 1000, 1000, Some(below), top));
        assert!(!slice_stops(false, 999, 1000, Some(below), top));
        // Enough rows, but all at the top instant: the next slice would start here again.
        assert!(!slice_stops(false, 5000, 1000, Some(top), top));
        assert!(!slice_stops(false, 5000, 1000, None, top));
        // The feed's end stops it whatever was read.
        assert!(slice_stops(true, 0, u64::MAX, None, top));
    }
}
