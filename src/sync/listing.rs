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
//!   a shortfall means rows were skipped, and the segment is **swept** again with larger
//!   pages (a tie group inside one page cannot be cut by a page boundary), up to
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
    /// Read page `page` of `size` rows next. `probe`: the page just read came back
    /// short, so this read tells the list's end from a cap.
    Next { page: u64, size: u32, probe: bool },
}

/// The next read after page `page` of `size` came back with `rows` rows, `fresh` of
/// them not seen before in this walk.
///
/// Only an empty page ends a list or sweep pass; a top-up also ends at a page with
/// nothing new (what was created during the walk sits at the top). A short page asks
/// for the rows right after it, in pages of its own length: offsets are
/// `(page - 1) * size`, so the next page may start a little before them (rows seen
/// twice are harmless, rows skipped are not).
pub fn next_step(phase: Phase, page: u64, size: u32, rows: usize, fresh: usize) -> ListStep {
    if rows == 0 || (phase == Phase::Topup && fresh == 0) {
        return ListStep::Done;
    }
    let size = size.max(1);
    if rows < size as usize {
        let next_offset = (page - 1) * u64::from(size) + rows as u64;
        let short = rows as u32;
        return ListStep::Next {
            page: next_offset / u64::from(short) + 1,
            size: short,
            probe: true,
        };
    }
    ListStep::Next {
        page: page + 1,
        size,
        probe: false,
    }
}

/// The page size of sweep number `pass` (1-based): the base size doubled each pass, so
/// a group of tied rows soon fits in one page, but never past what the server serves.
pub fn sweep_page_size(base: u32, pass: u32, cap: Option<u32>) -> u32 {
    let grown = base.saturating_mul(1u32 << pass.min(16));
    let limit = cap.unwrap_or(MAX_SWEEP_PAGE.max(base));
    grown.min(limit).max(1)
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

    fn next(page: u64, size: u32, probe: bool) -> ListStep {
        ListStep::Next { page, size, probe }
    }

    #[test]
    fn only_an_empty_page_ends_a_pass() {
        let cases = [
            // (phase, page, size, rows, fresh) -> step
            ((Phase::List, 1, 10, 10, 10), next(2, 10, false)),
            // A full page that the totals call the last one is not the end.
            ((Phase::List, 2, 10, 10, 10), next(3, 10, false)),
            // A short page asks for the rows right after it, in pages of its length.
            ((Phase::List, 3, 10, 5, 5), next(6, 5, true)),
            ((Phase::List, 6, 5, 0, 0), ListStep::Done),
            // A cap of 200 rows under pages of 300: the next read starts at row 200.
            ((Phase::List, 1, 300, 200, 200), next(2, 200, true)),
            // ... and at row 500 (page 3 of 200 starts at 400: a 100-row overlap).
            ((Phase::List, 2, 300, 200, 200), next(3, 200, true)),
            ((Phase::Sweep, 1, 8, 6, 2), next(2, 6, true)),
            ((Phase::Sweep, 1, 8, 8, 0), next(2, 8, false)),
            // A top-up stops at the first page with nothing new...
            ((Phase::Topup, 1, 10, 10, 0), ListStep::Done),
            ((Phase::Topup, 1, 10, 10, 3), next(2, 10, false)),
            // ... or at the end.
            ((Phase::Topup, 2, 10, 0, 0), ListStep::Done),
        ];
        for ((phase, page, size, rows, fresh), want) in cases {
            assert_eq!(
                next_step(phase, page, size, rows, fresh),
                want,
                "{phase:?} page {page} of {size}: {rows} rows, {fresh} fresh"
            );
        }
    }

    #[test]
    fn a_short_page_never_skips_a_row() {
        // Whatever the sizes, the next page starts at or before the first unread row.
        for size in 1..40u32 {
            for page in 1..6u64 {
                for rows in 1..size as usize {
                    let ListStep::Next { page: p, size: s, .. } =
                        next_step(Phase::List, page, size, rows, rows)
                    else {
                        panic!("a page with rows is not the end");
                    };
                    let unread = (page - 1) * u64::from(size) + rows as u64;
                    let start = (p - 1) * u64::from(s);
                    assert!(start <= unread && unread < start + u64::from(s));
                }
            }
        }
    }

    #[test]
    fn sweeps_grow_the_page_up_to_what_the_server_serves() {
        assert_eq!(sweep_page_size(2, 1, None), 4);
        assert_eq!(sweep_page_size(2, 2, None), 8);
        assert_eq!(sweep_page_size(200, 1, None), 400);
        assert_eq!(sweep_page_size(200, 3, None), 1000);
        assert_eq!(sweep_page_size(200, 3, Some(300)), 300);
        assert_eq!(sweep_page_size(1500, 1, None), 1500);
        assert_eq!(sweep_page_size(200, 40, None), 1000);
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
