//! The planner: per customer listed, what to fetch (its details, its transactions), by
//! the request economy of ARCHITECTURE.md ("Data flow of a run").

use super::{Engine, SyncError};
use crate::api::{Customer, StatusFilter};
use crate::store::text_hash;

/// One customer of a page and what to fetch for it.
pub(super) struct Job {
    pub(super) customer: Option<Customer>,
    pub(super) id: String,
    pub(super) details: bool,
    pub(super) transactions: bool,
}

impl Engine<'_> {
    /// Decides, per customer, whether to read its details and its transactions.
    pub(super) fn plan(
        &mut self,
        customers: Vec<Customer>,
        seg: StatusFilter,
    ) -> Result<Vec<Job>, SyncError> {
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
    pub(super) fn spend(&mut self, n: u64) -> bool {
        match &mut self.budget {
            None => true,
            Some(left) if *left >= n => {
                *left -= n;
                true
            }
            Some(_) => false,
        }
    }
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
