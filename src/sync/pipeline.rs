//! The in-flight pipeline: a page's jobs cut into chunks, fetched concurrently under
//! `api.concurrency`, and submitted to the writer in page order with their checkpoint;
//! what was fetched before an error or a shutdown is salvaged.

use tokio::task::{JoinHandle, JoinSet};

use super::plan::Job;
use super::walk::seen_bit;
use super::{Engine, SyncError};
use crate::api::model::TransactionList;
use crate::api::{ApiClient, ApiError, CustomerRead};
use crate::store::{Batch, Observed, SeenIn, Walk};

/// What fetching a job produced.
pub(super) enum Fetched {
    Present {
        observed: Option<Box<Observed>>,
        transactions: Option<TransactionList>,
    },
    Gone,
}

/// List pages whose fetches may overlap: while one page's slowest requests finish,
/// the next page's start, so neither the connections nor the writer wait on a page's
/// stragglers.
pub(super) const PAGES_IN_FLIGHT: usize = 4;

/// Seconds of requests, at the configured rate, that one committed unit of work holds:
/// what an interruption can lose. A page of 200 customers at 4 requests a second is
/// about 50 s of reads, so a page is cut into chunks, each committed with a checkpoint
/// that still points at its page (a resumed run reads the page again and skips the
/// customers the walk has seen).
pub(super) const CHUNK_SECS: f64 = 1.0;

/// One page's fetches, running, and what to commit with their results.
pub(super) struct PageInFlight {
    fetches: JoinHandle<Vec<(String, Result<Fetched, ApiError>)>>,
    segment: SeenIn,
    pages: u32,
    checkpoint: Walk,
    /// The walk where this page started: what a part of it commits with, so that a
    /// resumed run reads its page again (and skips the customers committed).
    restart: Walk,
    /// Customers this page lists for the first time in its segment but that were read
    /// already (listed in another segment): recorded as seen here too, nothing fetched.
    also_seen: Vec<String>,
}

/// A page whose fetches did not all succeed: what the others fetched, and where the
/// page started.
pub(super) struct Stopped {
    restart: Walk,
    segment: SeenIn,
    fetched: Vec<(String, Fetched)>,
}

/// Where a batch goes in the walk: what [`Engine::submit`] needs of a page in flight.
pub(super) struct Part {
    segment: SeenIn,
    pages: u32,
    checkpoint: Walk,
    also_seen: Vec<String>,
}

impl Engine<'_> {
    /// Starts one page's jobs as chunks of at most [`CHUNK_SECS`] of requests: every
    /// chunk but the last commits with the walk where it is (this page is read again on
    /// resume), the last with `checkpoint`. Waits while [`PAGES_IN_FLIGHT`] are in flight.
    pub(super) async fn start_chunked(
        &mut self,
        jobs: Vec<Job>,
        segment: SeenIn,
        pages: u32,
        checkpoint: Walk,
        also_seen: Vec<String>,
    ) -> Result<(), SyncError> {
        let budget = self
            .client
            .requests_per_second()
            .map_or(u64::MAX, |rate| ((rate * CHUNK_SECS) as u64).max(1));
        let mut chunks = chunk_jobs(jobs, budget);
        let last = chunks.pop().unwrap_or_default();
        for chunk in chunks {
            let here = self.walk.clone();
            self.start(chunk, segment, 0, here, Vec::new());
            self.limit_in_flight().await?;
        }
        self.start(last, segment, pages, checkpoint, also_seen);
        self.limit_in_flight().await
    }

    pub(super) async fn limit_in_flight(&mut self) -> Result<(), SyncError> {
        while self.in_flight.len() >= PAGES_IN_FLIGHT {
            self.finish_oldest().await?;
        }
        Ok(())
    }

    /// After an error or an interruption: commits, in order, what the pages in flight
    /// fetched, so that the requests spent are not spent again. After a shutdown every
    /// fetch ends at once (its requests are cancelled), after a deferral soon (its
    /// long waits are refused too); after an error only the pages already done are
    /// taken. Once a page is incomplete, everything after it commits
    /// with that page's start as the checkpoint: the resumed run reads it again and
    /// skips the customers committed.
    pub(super) async fn salvage(&mut self, deferred: bool) {
        // Interrupted or deferred, the pages in flight end soon (their waits are cut
        // short or deferred too): wait for them, and keep what they fetched.
        let interrupted = self.cancel.is_cancelled() || deferred;
        let mut floor = None;
        if let Some(stopped) = self.stopped.take() {
            floor = Some(stopped.restart.clone());
            let part = Part {
                segment: stopped.segment,
                pages: 0,
                checkpoint: stopped.restart,
                also_seen: Vec::new(),
            };
            if self.submit(part, stopped.fetched).await.is_err() {
                return;
            }
        }
        while let Some(page) = self.in_flight.pop_front() {
            if !interrupted && !page.fetches.is_finished() {
                break;
            }
            let Ok(results) = page.fetches.await else {
                break;
            };
            let total = results.len();
            let fetched: Vec<(String, Fetched)> = results
                .into_iter()
                .filter_map(|(id, r)| r.ok().map(|f| (id, f)))
                .collect();
            let whole = fetched.len() == total && floor.is_none();
            let (pages, checkpoint, also_seen) = if whole {
                (page.pages, page.checkpoint, page.also_seen)
            } else {
                let at = floor.get_or_insert(page.restart).clone();
                (0, at, Vec::new())
            };
            let part = Part {
                segment: page.segment,
                pages,
                checkpoint,
                also_seen,
            };
            if self.submit(part, fetched).await.is_err() {
                break;
            }
        }
    }

    /// Starts fetching what the jobs need, as a page in flight.
    pub(super) fn start(
        &mut self,
        jobs: Vec<Job>,
        segment: SeenIn,
        pages: u32,
        checkpoint: Walk,
        also_seen: Vec<String>,
    ) {
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
            restart: self.walk.clone(),
            also_seen,
        });
    }

    /// Waits for the oldest page in flight and submits its batch.
    pub(super) async fn finish_oldest(&mut self) -> Result<(), SyncError> {
        let Some(page) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let results = match page.fetches.await {
            Ok(results) => results,
            Err(e) if e.is_cancelled() => {
                self.stopped = Some(Stopped {
                    restart: page.restart,
                    segment: page.segment,
                    fetched: Vec::new(),
                });
                return Err(SyncError::Interrupted);
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let mut fetched = Vec::with_capacity(results.len());
        let mut failed = None;
        for (id, r) in results {
            match r {
                Ok(f) => fetched.push((id, f)),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            self.stopped = Some(Stopped {
                restart: page.restart,
                segment: page.segment,
                fetched,
            });
            return Err(e.into());
        }
        let part = Part {
            segment: page.segment,
            pages: page.pages,
            checkpoint: page.checkpoint,
            also_seen: page.also_seen,
        };
        self.submit(part, fetched).await
    }

    /// Submits what a page (or the part of it that was fetched) read, as one batch.
    pub(super) async fn submit(
        &mut self,
        part: Part,
        fetched: Vec<(String, Fetched)>,
    ) -> Result<(), SyncError> {
        let Part {
            segment,
            pages,
            checkpoint,
            also_seen,
        } = part;
        let mut batch = Batch {
            run_id: self.run_id,
            pages,
            initial_load: self.initial_load,
            checkpoint: Some(checkpoint),
            ..Batch::default()
        };
        for (id, fetched) in fetched {
            self.mark_seen(id.clone(), seen_bit(segment));
            batch.seen.push((id.clone(), segment));
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
        for id in also_seen {
            batch.seen.push((id, segment));
        }
        // Keep page order stable so change rows come out in a predictable order.
        batch
            .customers
            .sort_by(|a, b| a.customer.id.cmp(&b.customer.id));
        batch.transactions.sort_by(|a, b| a.0.cmp(&b.0));
        match &mut self.writer {
            Some(w) => w.submit(batch).await,
            None => {
                self.summary.applied.pages += pages as u64;
                Ok(())
            }
        }
    }

    /// Submits every page in flight, in order.
    pub(super) async fn drain(&mut self) -> Result<(), SyncError> {
        while !self.in_flight.is_empty() {
            self.finish_oldest().await?;
        }
        Ok(())
    }

    /// Submits the pages in flight and waits until the store has committed them.
    pub(super) async fn flush(&mut self) -> Result<(), SyncError> {
        self.drain().await?;
        match &mut self.writer {
            Some(w) => w.flush().await,
            None => Ok(()),
        }
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

/// Cuts `jobs` into chunks of about `budget` requests each (a job costs one request per
/// read it makes; an unchanged customer costs none and rides along). Always at least
/// one chunk, possibly empty.
pub(super) fn chunk_jobs(jobs: Vec<Job>, budget: u64) -> Vec<Vec<Job>> {
    let mut chunks = vec![Vec::new()];
    let mut spent = 0u64;
    for job in jobs {
        let cost = u64::from(job.details) + u64::from(job.transactions);
        if spent > 0 && spent + cost > budget {
            chunks.push(Vec::new());
            spent = 0;
        }
        spent += cost;
        chunks.last_mut().expect("never empty").push(job);
    }
    chunks
}

/// Fetches what one job needs. A 404 on any read means the customer is gone.
pub(super) async fn fetch(client: &ApiClient, job: Job) -> Result<Fetched, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: usize, details: bool, transactions: bool) -> Job {
        Job {
            customer: None,
            id: id.to_string(),
            details,
            transactions,
        }
    }

    fn sizes(chunks: &[Vec<Job>]) -> Vec<usize> {
        chunks.iter().map(Vec::len).collect()
    }

    #[test]
    fn chunks_hold_about_the_request_budget() {
        // 10 jobs of one request each, 4 requests a chunk.
        let jobs = (0..10).map(|i| job(i, false, true)).collect();
        assert_eq!(sizes(&chunk_jobs(jobs, 4)), [4, 4, 2]);
        // Two reads a job: 2 jobs a chunk; a job over budget goes alone.
        let jobs = (0..5).map(|i| job(i, true, true)).collect();
        assert_eq!(sizes(&chunk_jobs(jobs, 4)), [2, 2, 1]);
        let jobs = (0..3).map(|i| job(i, true, true)).collect();
        assert_eq!(sizes(&chunk_jobs(jobs, 1)), [1, 1, 1]);
        // Jobs that read nothing ride along with the others.
        let jobs = (0..6).map(|i| job(i, false, i % 3 == 0)).collect();
        assert_eq!(sizes(&chunk_jobs(jobs, 1)), [3, 3]);
        // Unlimited: one chunk; and never no chunk at all.
        let jobs = (0..500).map(|i| job(i, true, true)).collect();
        assert_eq!(sizes(&chunk_jobs(jobs, u64::MAX)), [500]);
        assert_eq!(sizes(&chunk_jobs(Vec::new(), 4)), [0]);
    }
}
