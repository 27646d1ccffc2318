//! The planner: per customer listed, what to fetch (its transactions), by the request
//! economy of ARCHITECTURE.md ("Data flow of a run"); and how many of the customers
//! lacking details a run reads (`details_quota`, the background fill).
//!
//! A list walk never reads details (`GET /customers/{id}`): a list item that hides
//! `metadata` is written as listed (metadata unknown, NULL) and the store marks the
//! customer as lacking details; the walk's last phase fills them, changed ones first,
//! within `sync.details_per_run` (issue 14: at the live service's quirks, detail reads
//! were two thirds of a backfill's requests, and with the feed nearly all of them).

use super::{Engine, SyncError};
use crate::api::{Customer, StatusFilter};
use crate::config::SyncSettings;
use crate::store::{PlanInfo, RunKind, text_hash};

/// One customer of a page and what to fetch for it.
pub(super) struct Job {
    pub(super) customer: Option<Customer>,
    pub(super) id: String,
    pub(super) details: bool,
    pub(super) transactions: bool,
}

impl Engine<'_> {
    /// Decides, per customer, whether to read its transactions ([`decide`], with this
    /// run's rules and budget).
    pub(super) fn plan(
        &mut self,
        customers: Vec<Customer>,
        seg: StatusFilter,
    ) -> Result<Vec<Job>, SyncError> {
        let rules = Rules {
            segment: seg,
            full: self.walk.kind.is_full(),
        };
        let mut jobs = Vec::with_capacity(customers.len());
        // In feed mode the feed phase reads every transaction: none per customer.
        let feed = self.walk.feed.is_some();
        for c in customers {
            let known = self.snapshot.get(c.id.as_str()).copied();
            let mut job = decide(c, known, rules, &mut self.budget);
            job.transactions &= !feed;
            jobs.push(job);
        }
        Ok(jobs)
    }

    /// Takes `n` requests from the run's optional budget.
    pub(super) fn spend(&mut self, n: u64) -> bool {
        spend(&mut self.budget, n)
    }
}

/// What [`decide`] needs of the run besides the customer and the mirror's record of it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rules {
    /// The list segment the customer was listed in.
    pub(super) segment: StatusFilter,
    /// A full walk (`backfill`, `full`): every active customer's transactions are read.
    pub(super) full: bool,
}

/// The request economy for one customer listed (ARCHITECTURE.md, "Data flow of a run"):
/// `known` is what the mirror held of it when the run started (`None`: new), `budget`
/// the run's optional requests left (`sync.max_requests_per_run`), drawn on only by the
/// re-reads that are worth it but not needed.
///
/// - details: never here (the fill phase reads them; see the module's doc);
/// - transactions: in the `inactive` segment only to mark deleted the live ones the
///   mirror still holds; elsewhere for a new, changed or restored customer, and every
///   customer of a full walk; for an unchanged one, when listed active with no
///   transaction known (needed), or, drawing on the budget, with a recent pending or
///   recent payment, or never read while listed active;
/// - the list item rides along to be written unless it is identical to what is stored.
pub(super) fn decide(
    c: Customer,
    known: Option<PlanInfo>,
    rules: Rules,
    budget: &mut Option<u64>,
) -> Job {
    let Rules { segment: seg, full } = rules;
    let i = known;
    let changed = i.is_none_or(|i| {
        i.deleted || i.updated_at_hash != text_hash(c.updated_at.as_deref().unwrap_or(""))
    });
    // An identical object needs no write: only its sighting is recorded.
    let identical = i.is_some_and(|i| !i.deleted && i.raw_hash == text_hash(&c.raw));
    let transactions = match (seg, i) {
        (StatusFilter::Inactive, _) => i.is_some_and(|i| i.live_transactions > 0),
        (_, None) => true,
        _ if full || changed => true,
        (_, Some(i)) => {
            let must = seg == StatusFilter::Active && i.live_transactions == 0;
            let worth = i.pending || i.hot || (!i.checked && seg == StatusFilter::Active);
            must || (worth && spend(budget, 1))
        }
    };
    Job {
        id: c.id.clone(),
        customer: if identical { None } else { Some(c) },
        details: false,
        transactions,
    }
}

/// Takes `n` requests from an optional budget (`None`: unlimited); false, taking
/// nothing, when fewer are left.
pub(super) fn spend(budget: &mut Option<u64>, n: u64) -> bool {
    match budget {
        None => true,
        Some(left) if *left >= n => {
            *left -= n;
            true
        }
        Some(_) => false,
    }
}

/// How many customers lacking details a run reads (`GET /customers/{id}` each, the
/// background fill): none in a backfill (it completes without waiting for them), in a
/// run that writes nothing (a dry run), or with `sync.fetch_details` off; otherwise
/// `sync.details_per_run`, at most the `lacking` ones. Which ones, in which order, is the
/// store's `details_candidates` (changed first, then newest first).
pub(super) fn details_quota(kind: RunKind, writes: bool, s: &SyncSettings, lacking: u64) -> u64 {
    if kind == RunKind::Backfill || !writes || !s.fetch_details {
        return 0;
    }
    u64::from(s.details_per_run).min(lacking)
}

/// Jobs that read the details (`GET /customers/{id}`) of known ids, nothing else.
pub(super) fn detail_jobs(ids: Vec<String>) -> Vec<Job> {
    ids.into_iter()
        .map(|id| Job {
            id,
            customer: None,
            details: true,
            transactions: false,
        })
        .collect()
}

/// Jobs that re-read the transactions (and with `details`, the record) of known ids.
pub(super) fn transaction_jobs(ids: Vec<String>, details: bool) -> Vec<Job> {
    ids.into_iter()
        .map(|id| Job {
            id,
            customer: None,
            details,
            transactions: true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPDATED: &str = "2025-03-01T09:00:00.000000Z";

    /// A list item; `metadata_null`: the live list's way of not showing metadata.
    fn item(metadata_null: bool) -> Customer {
        let metadata = if metadata_null {
            serde_json::Value::Null
        } else {
            serde_json::json!({"tier": "gold"})
        };
        Customer::from_value(serde_json::json!({
            "id": "c1", "name": "Awa", "updated_at": UPDATED,
            "created_at": "2025-01-01T00:00:00Z", "metadata": metadata,
        }))
        .unwrap()
    }

    /// What the mirror knows of a customer.
    #[derive(Clone, Copy)]
    enum Known {
        New,
        /// Same `updated_at` and same object; `live` transactions, last read at some point.
        Same {
            live: u32,
        },
        /// Same `updated_at`, the object differs (a field the API changed silently).
        SameDate,
        /// `updated_at` moved.
        Changed,
        /// Soft-deleted in the mirror, listed again.
        Deleted,
        Pending,
        Hot,
        NeverRead,
    }

    fn known(k: Known, c: &Customer) -> Option<PlanInfo> {
        let same = PlanInfo {
            raw_hash: text_hash(&c.raw),
            updated_at_hash: text_hash(UPDATED),
            deleted: false,
            live_transactions: 2,
            hot: false,
            pending: false,
            checked: true,
        };
        Some(match k {
            Known::New => return None,
            Known::Same { live } => PlanInfo {
                live_transactions: live,
                ..same
            },
            Known::SameDate => PlanInfo {
                raw_hash: text_hash("{}"),
                ..same
            },
            Known::Changed => PlanInfo {
                raw_hash: text_hash("{}"),
                updated_at_hash: text_hash("2025-02-01T00:00:00.000000Z"),
                ..same
            },
            Known::Deleted => PlanInfo {
                deleted: true,
                ..same
            },
            Known::Pending => PlanInfo {
                pending: true,
                ..same
            },
            Known::Hot => PlanInfo { hot: true, ..same },
            Known::NeverRead => PlanInfo {
                checked: false,
                live_transactions: 0,
                ..same
            },
        })
    }

    const ACTIVE: StatusFilter = StatusFilter::Active;
    const INACTIVE: StatusFilter = StatusFilter::Inactive;
    const ALL: StatusFilter = StatusFilter::All;
    const SYNC: bool = false;
    const FULL: bool = true;

    /// One rule of the request economy a row: the customer listed (`metadata: null`?),
    /// what the mirror knows, the segment, the walk, the budget before; then the job
    /// decided (details, never read by the walk; transactions; the item written) and
    /// the budget after.
    type Row = (
        &'static str,
        (bool, Known, StatusFilter, bool, Option<u64>),
        (bool, bool, bool, Option<u64>),
    );

    #[rustfmt::skip]
    const ROWS: &[Row] = &[
        ("a new customer: its transactions, and the item written",
            (false, Known::New, ACTIVE, SYNC, Some(5)), (false, true, true, Some(5))),
        ("a new customer whose item hides its metadata: no detail read in the walk (the fill phase's)",
            (true, Known::New, ACTIVE, SYNC, Some(5)), (false, true, true, Some(5))),
        ("no details either in a run without a budget",
            (true, Known::New, ACTIVE, SYNC, None), (false, true, true, None)),
        ("a changed customer: its transactions again; hidden details left to the fill",
            (true, Known::Changed, ACTIVE, SYNC, Some(0)), (false, true, true, Some(0))),
        ("a restored customer counts as changed",
            (false, Known::Deleted, ALL, SYNC, Some(0)), (false, true, true, Some(0))),
        ("an unchanged customer: no details even if hidden, nothing to read, nothing to write",
            (true, Known::Same { live: 2 }, ACTIVE, SYNC, Some(5)), (false, false, false, Some(5))),
        ("same updated_at but another object: written, not re-read",
            (false, Known::SameDate, ACTIVE, SYNC, Some(5)), (false, false, true, Some(5))),
        ("a full walk re-reads every unchanged customer's transactions, free of the budget",
            (false, Known::Same { live: 2 }, ACTIVE, FULL, Some(0)), (false, true, false, Some(0))),
        ("listed active with no transaction known: must be read, free of the budget",
            (false, Known::Same { live: 0 }, ACTIVE, SYNC, Some(0)), (false, true, false, Some(0))),
        ("...but only when listed active: in `all` it is not a must",
            (false, Known::Same { live: 0 }, ALL, SYNC, Some(5)), (false, false, false, Some(5))),
        ("a recent pending payment: worth a re-read, from the budget",
            (false, Known::Pending, ALL, SYNC, Some(5)), (false, true, false, Some(4))),
        ("a recent payment (hot): worth a re-read, from the budget",
            (false, Known::Hot, ALL, SYNC, None), (false, true, false, None)),
        ("never read and listed active: no transaction known, so a must, free of the budget",
            (false, Known::NeverRead, ACTIVE, SYNC, Some(1)), (false, true, false, Some(1))),
        ("never read, listed in `all`: not worth it",
            (false, Known::NeverRead, ALL, SYNC, Some(5)), (false, false, false, Some(5))),
        ("worth it, but the budget is spent: not read",
            (false, Known::Hot, ACTIVE, SYNC, Some(0)), (false, false, false, Some(0))),
        ("inactive segment, live transactions in the mirror: read, to mark them deleted",
            (false, Known::Same { live: 2 }, INACTIVE, FULL, Some(0)), (false, true, false, Some(0))),
        ("inactive segment, none in the mirror: nothing to read, even in a full walk",
            (false, Known::Same { live: 0 }, INACTIVE, FULL, Some(5)), (false, false, false, Some(5))),
        ("inactive segment, a new customer: no transactions to read",
            (false, Known::New, INACTIVE, FULL, Some(5)), (false, false, true, Some(5))),
        ("inactive segment, a changed customer: transactions only for the live ones",
            (true, Known::Changed, INACTIVE, SYNC, Some(5)), (false, true, true, Some(5))),
    ];

    #[test]
    fn each_rule_of_the_request_economy_decides_its_jobs() {
        for (rule, (null, k, segment, full, budget), want) in ROWS {
            let c = item(*null);
            let known = known(*k, &c);
            let mut left = *budget;
            let rules = Rules {
                segment: *segment,
                full: *full,
            };
            let job = decide(c.clone(), known, rules, &mut left);
            assert_eq!(job.id, "c1", "{rule}");
            let written = job.customer.as_ref().map(|w| w == &c);
            let got = (job.details, job.transactions, written.is_some(), left);
            assert_eq!(got, *want, "{rule}");
            assert_ne!(written, Some(false), "{rule}: the item as listed");
        }
    }

    /// One rule of the background fill's quota a row: the run's kind, whether it
    /// writes, `sync.fetch_details`, `sync.details_per_run`, the customers lacking
    /// details; then the customers it reads.
    type Quota = (&'static str, (RunKind, bool, bool, u32, u64), u64);

    #[rustfmt::skip]
    const QUOTAS: &[Quota] = &[
        ("an incremental run reads its share", (RunKind::Sync, true, true, 100, 500), 100),
        ("a full run too", (RunKind::Full, true, true, 100, 500), 100),
        ("no more than are lacking", (RunKind::Sync, true, true, 100, 7), 7),
        ("nothing lacking, nothing read", (RunKind::Sync, true, true, 100, 0), 0),
        ("a backfill completes without them", (RunKind::Backfill, true, true, 100, 500), 0),
        ("a dry run writes nothing, so reads none", (RunKind::Sync, false, true, 100, 500), 0),
        ("sync.fetch_details off", (RunKind::Sync, true, false, 100, 500), 0),
        ("sync.details_per_run = 0", (RunKind::Full, true, true, 0, 500), 0),
    ];

    #[test]
    fn each_rule_of_the_details_fill_decides_its_quota() {
        for (rule, (kind, writes, fetch_details, per_run, lacking), want) in QUOTAS {
            let s = SyncSettings {
                fetch_details: *fetch_details,
                details_per_run: *per_run,
                ..SyncSettings::default()
            };
            assert_eq!(details_quota(*kind, *writes, &s, *lacking), *want, "{rule}");
        }
        let jobs = detail_jobs(vec!["a".into()]);
        assert!(jobs[0].details && !jobs[0].transactions && jobs[0].customer.is_none());
    }

    #[test]
    fn spending_takes_only_what_is_left() {
        let mut unlimited = None;
        assert!(spend(&mut unlimited, 1000));
        let mut left = Some(2);
        assert!(spend(&mut left, 2));
        assert_eq!(left, Some(0));
        assert!(!spend(&mut left, 1));
        assert_eq!(left, Some(0));
        assert!(spend(&mut left, 0));
    }
}
