//! How a walk pages through the customer list, as pure decisions.
//!
//! The list is offset-paged and ordered by `created_at` alone (NOTES.md), and the
//! numbers around it cannot be trusted: `totalCount` is read from one row, `totalPages`
//! may disagree with it, a page can come back short while more rows exist (a silent row
//! cap), and customers sharing a `created_at` can come back in a new order on every
//! request. So:
//!
//! - only an **empty page** ends a pass: a short page is followed by a read that proves
//!   the end, and if that read shows rows not seen before, the short page was a cap and
//!   the page size drops to it;
//! - after the top-up, the customers listed are counted against what the list counts;
//!   a shortfall means rows were skipped, and the segment is **swept** again in the
//!   largest pages the server serves (a tie group inside one page cannot be cut by a
//!   page boundary, and each request draws a new order of the ties), up to
//!   [`MAX_SWEEPS`] times. A shortfall left after that fails the run.

use crate::store::Phase;

/// Sweeps a walk may make before it gives up and reports what it could not list.
pub const MAX_SWEEPS: u32 = 4;

/// The largest page a sweep asks for: the live service's database layer very likely
/// cuts any result at 1,000 rows (NOTES.md), so larger pages only come back short.
pub const MAX_SWEEP_PAGE: u32 = 1000;

/// What to read after one list page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStep {
    /// The pass over the segment is over.
    Done,
    /// Read page `page` of `size` rows next; the rows from offset `from` on are unread.
    /// `probe`: the page just read came back short, so this read tells the list's end
    /// from a cap.
    Next {
        /// The page number to read (1-based).
        page: u64,
        /// Rows to ask for on it.
        size: u32,
        /// The offset of the first row not yet read.
        from: u64,
        /// True when this read checks whether a short page was the end or a cap.
        probe: bool,
    },
}

/// One list page as read, for [`next_step`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PageRead {
    /// The page number read (1-based).
    pub page: u64,
    /// The page size it was asked with.
    pub size: u32,
    /// Rows it held, records skipped for an unreadable id included.
    pub rows: usize,
    /// Customers on it not seen before in this walk.
    pub fresh: usize,
    /// The first offset of the pass not read yet when it was asked for.
    pub from: u64,
    /// It was asked for after a short page, to tell the list's end from a cap.
    pub probe: bool,
    /// Customers on it, at offsets from `from` on, not listed before in its segment.
    pub unlisted_past: usize,
}

/// The next read after a page.
///
/// A pass ends only when a page holds nothing past `from`: an empty page, a probe whose
/// rows all lie before it, or a probe whose rows past it were all listed already (the
/// list grew during the walk and shifted them down; taking them for more of the list
/// would chase its growth row by row). A top-up also ends at a page with nothing new
/// (what was created during the walk sits at the top). A short page asks for the rows
/// right after it, in pages of its own length: offsets are `(page - 1) * size`, so the
/// next page may start a little before them (rows seen twice are harmless, rows skipped
/// are not).
pub fn next_step(phase: Phase, r: &PageRead) -> ListStep {
    let size = r.size.max(1);
    let end = (r.page - 1) * u64::from(size) + r.rows as u64;
    let nothing_past = end <= r.from || (r.probe && r.unlisted_past == 0);
    if r.rows == 0 || nothing_past || (phase == Phase::Topup && r.fresh == 0) {
        return ListStep::Done;
    }
    if r.rows < size as usize {
        let short = r.rows as u32;
        return ListStep::Next {
            page: end / u64::from(short) + 1,
            size: short,
            from: end,
            probe: true,
        };
    }
    ListStep::Next {
        page: r.page + 1,
        size,
        from: end,
        probe: false,
    }
}

/// The first offset of page `page` of `size`.
pub fn page_start(page: u64, size: u32) -> u64 {
    (page - 1) * u64::from(size.max(1))
}

/// The page size of a sweep: the largest page the server is believed to serve. Large
/// pages cost the fewest requests, and a group of tied rows inside one page cannot be
/// cut by a page boundary; a server that serves less is caught by the short-page check
/// and its cap learned.
pub fn sweep_page_size(cap: Option<u32>) -> u32 {
    cap.unwrap_or(MAX_SWEEP_PAGE).max(1)
}

/// The page size a new pass starts with: the configured one, unless the server proved
/// it serves less.
pub fn base_page_size(configured: u32, cap: Option<u32>) -> u32 {
    cap.map_or(configured, |c| configured.min(c)).max(1)
}

/// How many customers the list counts that a walk did not see, over all segments.
///
/// `segments` holds, per segment, the count the list reported at the start of its
/// latest pass (`None`: unknown) and the customers listed in it. A customer can be
/// listed in two segments (an inactive customer who pays moves to `active`): it is
/// listed once in `distinct`, so the two segments' counts, taken as one, still
/// balance, and the walk does not sweep for a customer it has seen.
pub fn shortfall(segments: &[(Option<u64>, u64)], distinct: u64) -> u64 {
    let counted: u64 = segments.iter().filter_map(|(total, _)| *total).sum();
    counted.saturating_sub(distinct)
}

/// Which segment to sweep: the one furthest below its own count, if any is below.
pub fn segment_to_sweep(segments: &[(Option<u64>, u64)]) -> Option<usize> {
    segments
        .iter()
        .enumerate()
        .filter_map(|(i, (total, listed))| {
            let missing = total.unwrap_or(0).saturating_sub(*listed);
            (missing > 0).then_some((i, missing))
        })
        .max_by_key(|&(i, missing)| (missing, std::cmp::Reverse(i)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(page: u64, size: u32, from: u64, probe: bool) -> ListStep {
        ListStep::Next {
            page,
            size,
            from,
            probe,
        }
    }

    /// Page `page` of `size` with `rows` rows, `fresh` new to the walk, read when the
    /// rows from `from` on were unread; `past`: `Some(n)` for a probe showing `n`
    /// unlisted customers past `from`.
    fn read(
        page: u64,
        size: u32,
        rows: usize,
        fresh: usize,
        from: u64,
        past: Option<usize>,
    ) -> PageRead {
        PageRead {
            page,
            size,
            rows,
            fresh,
            from,
            probe: past.is_some(),
            unlisted_past: past.unwrap_or(0),
        }
    }

    #[test]
    fn only_a_page_with_nothing_past_the_unread_rows_ends_a_pass() {
        use Phase::{List, Sweep, Topup};
        let cases = [
            ((List, read(1, 10, 10, 10, 0, None)), next(2, 10, 10, false)),
            // A full page that the totals call the last one is not the end.
            (
                (List, read(2, 10, 10, 10, 10, None)),
                next(3, 10, 20, false),
            ),
            // A short page asks for the rows right after it, in pages of its length.
            ((List, read(3, 10, 5, 5, 20, None)), next(6, 5, 25, true)),
            ((List, read(6, 5, 0, 0, 25, Some(0))), ListStep::Done),
            // 39 rows in pages of 5: the probe for row 39 starts at 36 and its rows all
            // lie before 39 (new ones, if ties shuffle): the end, not a cap.
            ((List, read(8, 5, 4, 4, 35, None)), next(10, 4, 39, true)),
            ((List, read(10, 4, 3, 3, 39, Some(0))), ListStep::Done),
            // The list grew by one while the walk read its end: the probe shows the old
            // last row again, past 39. The end, not a cap, and not a chase.
            ((List, read(10, 4, 4, 0, 39, Some(0))), ListStep::Done),
            // A cap of 200 rows under pages of 300: the next read starts at row 200...
            (
                (List, read(1, 300, 200, 200, 0, None)),
                next(2, 200, 200, true),
            ),
            // ... and after page 2 of 300 (rows 300..500), at row 500: page 3 of 200
            // starts at 400, and unlisted rows past 500 prove the cap.
            (
                (List, read(2, 300, 200, 200, 300, None)),
                next(3, 200, 500, true),
            ),
            (
                (List, read(3, 200, 200, 100, 500, Some(100))),
                next(4, 200, 600, false),
            ),
            ((Sweep, read(1, 8, 6, 2, 0, None)), next(2, 6, 6, true)),
            ((Sweep, read(1, 8, 8, 0, 0, None)), next(2, 8, 8, false)),
            // A top-up stops at the first page with nothing new...
            ((Topup, read(1, 10, 10, 0, 0, None)), ListStep::Done),
            ((Topup, read(1, 10, 10, 3, 0, None)), next(2, 10, 10, false)),
            // ... or at the end.
            ((Topup, read(2, 10, 0, 0, 10, None)), ListStep::Done),
        ];
        for ((phase, r), want) in cases {
            assert_eq!(next_step(phase, &r), want, "{phase:?} {r:?}");
        }
    }

    #[test]
    fn a_short_page_never_skips_a_row() {
        // Whatever the sizes, the next page starts at or before the first unread row.
        for size in 1..40u32 {
            for page in 1..6u64 {
                for rows in 1..size as usize {
                    let start = page_start(page, size);
                    let r = read(page, size, rows, rows, start, None);
                    let ListStep::Next {
                        page: p,
                        size: s,
                        from,
                        ..
                    } = next_step(Phase::List, &r)
                    else {
                        panic!("a page with rows is not the end");
                    };
                    assert_eq!(from, start + rows as u64);
                    let next = page_start(p, s);
                    assert!(next <= from && from < next + u64::from(s));
                }
            }
        }
    }

    #[test]
    fn sweeps_use_the_largest_page_the_server_serves() {
        assert_eq!(sweep_page_size(None), MAX_SWEEP_PAGE);
        assert_eq!(sweep_page_size(Some(300)), 300);
        assert_eq!(base_page_size(200, None), 200);
        assert_eq!(base_page_size(300, Some(200)), 200);
        assert_eq!(base_page_size(100, Some(200)), 100);
    }

    #[test]
    fn shortfall_counts_each_customer_once() {
        // Ties skipped two of six.
        assert_eq!(shortfall(&[(Some(6), 4)], 4), 2);
        // Totals that under-report: more seen than counted is no shortfall.
        assert_eq!(shortfall(&[(Some(20), 25)], 25), 0);
        // A customer listed inactive, then active after paying: seen once, counted
        // once (in `active` now), so no sweep.
        assert_eq!(shortfall(&[(Some(10), 9), (Some(5), 6)], 15), 0);
        // The same move, and one active customer skipped.
        assert_eq!(shortfall(&[(Some(10), 8), (Some(5), 6)], 14), 1);
        assert_eq!(segment_to_sweep(&[(Some(10), 8), (Some(5), 6)]), Some(0));
        // Unknown counts check nothing.
        assert_eq!(shortfall(&[(None, 3)], 3), 0);
        assert_eq!(segment_to_sweep(&[(None, 3), (Some(4), 4)]), None);
        assert_eq!(segment_to_sweep(&[(Some(4), 3), (Some(9), 1)]), Some(1));
    }
}
