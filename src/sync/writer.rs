//! The store on its own thread. SQLite calls block, so batches are committed on a
//! dedicated thread while the async side fetches the next page; at most
//! [`MAX_IN_FLIGHT`] batches wait, which bounds memory whatever the mirror's size.

use std::collections::VecDeque;

use tokio::sync::{mpsc, oneshot};

use super::SyncError;
use crate::store::{Applied, Batch, Store, StoreError};

/// Batches submitted but not yet committed, at most.
const MAX_IN_FLIGHT: usize = 2;

type Job = Box<dyn FnOnce(&mut Store) + Send>;

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
                while let Some(job) = rx.blocking_recv() {
                    job(&mut store);
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
        let job: Job = Box::new(move |store: &mut Store| {
            let _ = tx.send(store.apply(&batch));
        });
        self.jobs
            .send(job)
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
        let job: Job = Box::new(move |store: &mut Store| {
            let _ = tx.send(f(store));
        });
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
