//! The store on its own thread. SQLite calls block, so batches are committed on a
//! dedicated thread while the async side fetches the next page; at most
//! [`MAX_IN_FLIGHT`] batches wait, which bounds memory whatever the mirror's size.

use std::collections::VecDeque;

use tokio::sync::{mpsc, oneshot};

use super::SyncError;
use crate::store::{Applied, Batch, Store, StoreError};

/// Batches submitted but not yet committed, at most.
const MAX_IN_FLIGHT: usize = 2;

type Reply = oneshot::Sender<Result<Applied, StoreError>>;

enum Job {
    /// A batch to commit. Batches queued together commit in one transaction.
    Apply(Box<Batch>, Reply),
    /// Anything else, in queue order.
    Call(Box<dyn FnOnce(&mut Store) + Send>),
}

/// Handle to the writer thread.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    pending: VecDeque<oneshot::Receiver<Result<Applied, StoreError>>>,
    /// Counts of every batch committed so far.
    pub applied: Applied,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn spawn(mut store: Store) -> Writer {
        let (jobs, mut rx) = mpsc::channel::<Job>(MAX_IN_FLIGHT + 1);
        let thread = std::thread::Builder::new()
            .name("lomi-sync-writer".into())
            .spawn(move || {
                let mut next = None;
                while let Some(job) = next.take().or_else(|| rx.blocking_recv()) {
                    match job {
                        Job::Call(f) => f(&mut store),
                        Job::Apply(batch, reply) => {
                            // Group commit: whatever else is already queued goes in the
                            // same SQLite transaction, so pages touched by several
                            // batches are written to the WAL once.
                            let mut group = vec![(batch, reply)];
                            while let Ok(job) = rx.try_recv() {
                                match job {
                                    Job::Apply(b, r) => group.push((b, r)),
                                    call => {
                                        next = Some(call);
                                        break;
                                    }
                                }
                            }
                            commit(&mut store, group);
                        }
                    }
                }
            })
            .expect("spawn the writer thread");
        Writer {
            jobs,
            pending: VecDeque::new(),
            applied: Applied::default(),
            thread: Some(thread),
        }
    }

    /// Queues a batch; waits only when [`MAX_IN_FLIGHT`] are already queued.
    pub async fn submit(&mut self, batch: Batch) -> Result<(), SyncError> {
        while self.pending.len() >= MAX_IN_FLIGHT {
            self.wait_oldest().await?;
        }
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Apply(Box::new(batch), tx))
            .await
            .map_err(|_| SyncError::WriterGone)?;
        self.pending.push_back(rx);
        Ok(())
    }

    /// Waits until every queued batch is committed.
    pub async fn flush(&mut self) -> Result<(), SyncError> {
        while !self.pending.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(())
    }

    /// Runs `f` on the store after everything queued before it.
    pub async fn call<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, SyncError> {
        self.flush().await?;
        let (tx, rx) = oneshot::channel();
        let job = Job::Call(Box::new(move |store: &mut Store| {
            let _ = tx.send(f(store));
        }));
        self.jobs
            .send(job)
            .await
            .map_err(|_| SyncError::WriterGone)?;
        Ok(rx.await.map_err(|_| SyncError::WriterGone)??)
    }

    async fn wait_oldest(&mut self) -> Result<(), SyncError> {
        if let Some(rx) = self.pending.pop_front() {
            let applied = rx.await.map_err(|_| SyncError::WriterGone)??;
            self.applied.add(&applied);
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the queued jobs; joining makes
        // sure the connection is closed (and the WAL checkpointed) before we return.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Commits a group of batches in one transaction; if that fails, each batch alone, so
/// that every batch gets its own result.
fn commit(store: &mut Store, group: Vec<(Box<Batch>, Reply)>) {
    let batches: Vec<&Batch> = group.iter().map(|(b, _)| b.as_ref()).collect();
    match store.apply_all(&batches) {
        Ok(applied) => {
            for ((_, reply), a) in group.into_iter().zip(applied) {
                let _ = reply.send(Ok(a));
            }
        }
        Err(_) if group.len() > 1 => {
            for (batch, reply) in group {
                let _ = reply.send(store.apply(&batch));
            }
        }
        Err(e) => {
            if let Some((_, reply)) = group.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
    }
}
