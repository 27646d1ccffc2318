//! What a backfill will cost, before it is spent.
//!
//! At the default `api.requests_per_second = 4` a backfill of 3,000 customers takes about
//! 12 minutes, nearly all of it one transactions read per active customer. The list
//! alone says how many of those there will be, for about one request per page of
//! customers: `backfill --estimate` walks it ([`estimate`]), and every backfill and dry
//! run starts with a two-request version ([`quick`], each segment's `totalCount`) so that
//! its first lines say how long it will take and why.
//!
//! The counts follow the engine's own rules: the same list reads ([`listing::next_step`]
//! ends a pass), a transactions read for every customer listed `active` (or every
//! customer without `sync.use_status_filter`), none for the `inactive` segment of a
//! first load. A `GET /customers/{id}` for each list item hiding its metadata when
//! `sync.fetch_details` is on is counted apart (`detail_reads`): a backfill does not
//! wait for them, later runs read them within `sync.details_per_run` each.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{SyncError, SyncOptions, listing, segments};
use crate::api::{ApiClient, StatusFilter};
use crate::config::ApiSettings;
use crate::store::Phase;

/// The requests a backfill of the whole account sends, by endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Estimate {
    /// Distinct customers listed (or counted by the list, for [`quick`]).
    pub customers: u64,
    /// `GET /customers`: the preflight, each segment's pages up to the read that ends
    /// it, and one top-up read per segment.
    pub list_reads: u64,
    /// `GET /customers/{id}/transactions`: one per customer whose payments a backfill
    /// reads.
    pub transaction_reads: u64,
    /// `GET /customers/{id}`: list items that show `metadata: null`, read one by one
    /// when `sync.fetch_details` is on, by the runs after the backfill (the background
    /// fill, `sync.details_per_run` a run); not part of [`Estimate::requests`].
    pub detail_reads: u64,
    /// Requests this estimate itself sent.
    pub spent: u64,
}

impl Estimate {
    /// Every request the backfill sends (the detail reads are left to later runs).
    pub fn requests(&self) -> u64 {
        self.list_reads + self.transaction_reads
    }

    /// The same walk as a dry run makes it: no details are read, then or later.
    pub fn for_dry_run(mut self) -> Estimate {
        self.detail_reads = 0;
        self
    }
}

/// How the client's limits pace a run (`api/limiter.rs`): an average rate, and a cap
/// per sliding window.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// `api.requests_per_second`; 0 is unlimited.
    pub rate: f64,
    /// `api.max_requests_per_window`; 0 is unlimited.
    pub cap: u32,
    /// `api.rate_window`.
    pub window: Duration,
}

impl Pace {
    /// The pace the `[api]` settings set.
    pub fn from_settings(api: &ApiSettings) -> Pace {
        Pace {
            rate: api.requests_per_second,
            cap: api.max_requests_per_window,
            window: api.rate_window.0,
        }
    }

    /// How long `n` requests take at best; `None` when nothing limits them (then the
    /// server's speed does, which no setting tells).
    pub fn duration(&self, n: u64) -> Option<Duration> {
        if !self.limited() {
            return None;
        }
        let by_rate = |k: u64| {
            if self.rate > 0.0 {
                k as f64 / self.rate
            } else {
                0.0
            }
        };
        let mut secs = by_rate(n);
        if self.cap > 0 && n > u64::from(self.cap) {
            // Each full window's worth waits for the window to slide past the first.
            let cap = u64::from(self.cap);
            let windows = (n - 1) / cap;
            let by_window = windows as f64 * self.window.as_secs_f64() + by_rate((n - 1) % cap);
            secs = secs.max(by_window);
        }
        Some(Duration::from_secs_f64(secs))
    }

    /// The setting that sets the pace of `n` requests: the window cap once it binds.
    pub fn binding_setting(&self, n: u64) -> &'static str {
        let by_rate = self.rate > 0.0 && self.duration(n) == self.rate_only(n);
        if by_rate || self.cap == 0 {
            "api.requests_per_second"
        } else {
            "api.max_requests_per_window"
        }
    }

    fn rate_only(&self, n: u64) -> Option<Duration> {
        (self.rate > 0.0).then(|| Duration::from_secs_f64(n as f64 / self.rate))
    }

    fn limited(&self) -> bool {
        self.rate > 0.0 || self.cap > 0
    }

    /// One line naming the rate, the setting behind it, the requests and the time.
    pub fn describe(&self, n: u64) -> String {
        match self.duration(n) {
            None => format!(
                "{n} requests; api.requests_per_second = 0 and api.max_requests_per_window = 0 \
                 (unlimited): the server's speed decides"
            ),
            Some(d) => {
                let cap = if self.cap > 0 {
                    format!(
                        " (at most api.max_requests_per_window = {} per {})",
                        self.cap,
                        humantime::format_duration(self.window)
                    )
                } else {
                    String::new()
                };
                format!(
                    "{n} requests at api.requests_per_second = {}{cap}: about {}, paced by {}",
                    self.rate,
                    humantime::format_duration(Duration::from_secs(d.as_secs())),
                    self.binding_setting(n)
                )
            }
        }
    }
}

/// Walks the customer list, and only the list, counting what a backfill would read.
pub async fn estimate(
    client: &ApiClient,
    opts: &SyncOptions,
    cancel: &CancellationToken,
) -> Result<Estimate, SyncError> {
    // The backfill's preflight (`GET /customers?pageSize=1`).
    let mut e = Estimate {
        list_reads: 1,
        ..Estimate::default()
    };
    let mut seen = HashSet::new();
    for seg in segments(&opts.settings) {
        let walked = walk_segment(client, opts.page_size, seg, &mut seen, cancel).await?;
        // Its pages, and the top-up's one read of page 1.
        e.list_reads += walked.reads + 1;
        e.spent += walked.reads;
        if seg != StatusFilter::Inactive {
            e.transaction_reads += walked.listed;
        }
        if opts.settings.fetch_details {
            e.detail_reads += walked.hidden;
        }
    }
    e.customers = seen.len() as u64;
    Ok(e)
}

/// What one pass over a segment found.
struct Walked {
    reads: u64,
    /// Customers not listed before in this walk.
    listed: u64,
    /// Of those, list items showing `metadata: null`.
    hidden: u64,
}

async fn walk_segment(
    client: &ApiClient,
    page_size: u32,
    seg: StatusFilter,
    seen: &mut HashSet<String>,
    cancel: &CancellationToken,
) -> Result<Walked, SyncError> {
    let mut w = Walked {
        reads: 0,
        listed: 0,
        hidden: 0,
    };
    let (mut page_no, mut size, mut from, mut probe) = (1, page_size, 0, false);
    loop {
        if cancel.is_cancelled() {
            return Err(SyncError::Interrupted);
        }
        let page = client.list_customers(page_no, size, seg).await?;
        w.reads += 1;
        // A probe's first rows were read on the short page before it.
        let overlap = (from - listing::page_start(page_no, size)) as usize;
        let (mut fresh, mut unlisted_past) = (0, 0);
        for (i, c) in page.customers.iter().enumerate() {
            if seen.insert(c.id.to_string()) {
                fresh += 1;
                unlisted_past += usize::from(i >= overlap);
                w.hidden += u64::from(c.metadata_null);
            }
        }
        w.listed += fresh as u64;
        let read = listing::PageRead {
            page: page_no,
            size,
            rows: page.customers.len() + page.skipped.len(),
            fresh,
            from,
            probe,
            unlisted_past,
        };
        match listing::next_step(Phase::List, &read) {
            listing::ListStep::Done => return Ok(w),
            listing::ListStep::Next {
                page,
                size: s,
                from: f,
                probe: p,
            } => (page_no, size, from, probe) = (page, s, f, p),
        }
    }
}

/// Two requests (page 1 of each segment, one row): the counts the list gives, turned
/// into the requests a backfill sends. What a backfill logs before it starts.
pub async fn quick(client: &ApiClient, opts: &SyncOptions) -> Result<Estimate, SyncError> {
    let mut e = Estimate {
        list_reads: 1,
        ..Estimate::default()
    };
    let size = u64::from(opts.page_size.max(1));
    for seg in segments(&opts.settings) {
        let page = client.list_customers(1, 1, seg).await?;
        e.spent += 1;
        let n = page.total_count;
        e.customers += n;
        e.list_reads += n.div_ceil(size) + 1 + 1;
        if seg != StatusFilter::Inactive {
            e.transaction_reads += n;
        }
        // One item stands for the rest: the live list hides every item's metadata.
        if opts.settings.fetch_details && page.customers.first().is_some_and(|c| c.metadata_null) {
            e.detail_reads += n;
        }
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(rate: f64, cap: u32) -> Pace {
        Pace {
            rate,
            cap,
            window: Duration::from_secs(900),
        }
    }

    #[test]
    fn the_rate_paces_a_run_under_the_window_cap() {
        // The trial: 3,000 customers, ~2,970 requests at 4/s is 12 min 23 s.
        let p = pace(4.0, 3000);
        assert_eq!(p.duration(2970), Some(Duration::from_secs_f64(742.5)));
        assert_eq!(p.binding_setting(2970), "api.requests_per_second");
        assert!(p.describe(2970).contains("12m 22s"), "{}", p.describe(2970));
    }

    #[test]
    fn the_window_cap_paces_a_long_run() {
        let p = pace(4.0, 3000);
        // 9,000 requests: two full windows wait, then 2,999 more at 4/s.
        let d = p.duration(9000).unwrap();
        assert_eq!(d, Duration::from_secs_f64(2.0 * 900.0 + 2999.0 / 4.0));
        assert_eq!(p.binding_setting(9000), "api.max_requests_per_window");
        // Only a window cap: bursts of 3,000 a window.
        assert_eq!(
            pace(0.0, 3000).duration(6001),
            Some(Duration::from_secs(1800))
        );
    }

    #[test]
    fn nothing_limits_an_unlimited_run() {
        let p = pace(0.0, 0);
        assert_eq!(p.duration(100), None);
        assert!(p.describe(100).contains("unlimited"));
    }

    #[test]
    fn a_backfill_leaves_its_detail_reads_to_later_runs() {
        let e = Estimate {
            customers: 10,
            list_reads: 4,
            transaction_reads: 6,
            detail_reads: 10,
            spent: 3,
        };
        assert_eq!(e.requests(), 10);
        assert_eq!(e.clone().for_dry_run().requests(), 10);
        assert_eq!(e.for_dry_run().detail_reads, 0);
    }
}
