//! The store on its own thread. SQLite calls block, so batches are committed on a
//! dedicated thread while the async side fetches the next page.
//!
//! Group commit: while more batches are already waiting, the writer applies them in
//! the transaction it has open and commits once. Every commit rewrites each B-tree page
//! it touched, and the customer-keyed indexes take random keys, so committing page by
//! page wrote the same index pages to the WAL again and again (6 GB of writes for a
//! 760 MB mirror at 100k customers). A batch is acknowledged only once committed, with
//! its walk checkpoint, so a crash loses at most the uncommitted batches, and the next
//! run resumes from the last checkpoint that was committed.

use std::collections::VecDeque;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::SyncError;
use crate::store::{Applied, Batch, Store, StoreError};

/// Batches handed over but not yet applied: what the writer's queue holds in memory.
const QUEUED: usize = 2;

/// Batches applied but not yet committed, at most: one commit's size when the writer
/// is the bottleneck. Their data is in SQLite by then, not in this process's queue.
const MAX_UNCOMMITTED: usize = 16;

type Reply = oneshot::Sender<Result<Applied, StoreError>>;

/// What the writer thread is asked to do (the planner's `Job` is what to fetch).
enum Command {
    /// A batch to apply; its reply is sent when it is committed.
    Apply(Box<Batch>, Reply),
    /// Anything else, in queue order, after a commit of what came before.
    Call(Box<dyn FnOnce(&mut Store) + Send>),
}

/// Handle to the writer thread.
pub struct Writer {
    jobs: mpsc::Sender<Command>,
    pending: VecDeque<oneshot::Receiver<Result<Applied, StoreError>>>,
    /// Counts of every batch committed so far.
    pub applied: Applied,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The batches of the open transaction, waiting for its commit.
#[derive(Default)]
struct Uncommitted {
    replies: Vec<(Reply, Applied)>,
}

impl Uncommitted {
    /// Commits the open transaction, if any, and answers its batches.
    fn commit(&mut self, store: &mut Store) {
        if self.replies.is_empty() {
            return;
        }
        match store.commit() {
            Ok(()) => {
                for (reply, applied) in self.replies.drain(..) {
                    let _ = reply.send(Ok(applied));
                }
            }
            Err(e) => self.fail(store, e),
        }
    }

    /// Rolls the open transaction back. The oldest batch carries the error, which is
    /// the one the engine waits for first; the others are told they went with it.
    fn fail(&mut self, store: &mut Store, e: StoreError) {
        store.rollback();
        let mut error = Some(e);
        for (reply, _) in self.replies.drain(..) {
            let _ = reply.send(Err(error.take().unwrap_or(StoreError::RolledBack)));
        }
    }
}

fn writer_loop(mut store: Store, mut rx: mpsc::Receiver<Command>) {
    let mut open = Uncommitted::default();
    loop {
        // Keep the transaction open only while more work is already waiting.
        let job = match rx.try_recv() {
            Ok(job) => Some(job),
            Err(TryRecvError::Empty) => {
                open.commit(&mut store);
                rx.blocking_recv()
            }
            Err(TryRecvError::Disconnected) => None,
        };
        match job {
            None => {
                open.commit(&mut store);
                return;
            }
            Some(Command::Call(f)) => {
                open.commit(&mut store);
                f(&mut store);
            }
            Some(Command::Apply(batch, reply)) => {
                if open.replies.is_empty()
                    && let Err(e) = store.begin()
                {
                    let _ = reply.send(Err(e));
                    continue;
                }
                match store.apply_open(&batch) {
                    Ok(applied) => {
                        open.replies.push((reply, applied));
                        if open.replies.len() >= MAX_UNCOMMITTED {
                            open.commit(&mut store);
                        }
                    }
                    Err(e) => {
                        open.replies.push((reply, Applied::default()));
                        open.fail(&mut store, e);
                    }
                }
            }
        }
    }
}

impl Writer {
    pub fn spawn(store: Store) -> Writer {
        let (jobs, rx) = mpsc::channel::<Command>(QUEUED);
        let thread = std::thread::Builder::new()
            .name("lomi-sync-writer".into())
            .spawn(move || writer_loop(store, rx))
            .expect("spawn the writer thread");
        Writer {
            jobs,
            pending: VecDeque::new(),
            applied: Applied::default(),
            thread: Some(thread),
        }
    }

    /// Queues a batch; waits when the queue is full or [`MAX_UNCOMMITTED`] batches
    /// await their commit.
    pub async fn submit(&mut self, batch: Batch) -> Result<(), SyncError> {
        while self.pending.len() >= MAX_UNCOMMITTED {
            self.wait_oldest().await?;
        }
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Command::Apply(Box::new(batch), tx))
            .await
            .map_err(|_| SyncError::WriterGone)?;
        self.pending.push_back(rx);
        Ok(())
    }

    /// Waits until every queued batch is committed or refused; the first error is
    /// returned, after the queue is empty, so a later `call` still runs.
    pub async fn flush(&mut self) -> Result<(), SyncError> {
        let mut first = Ok(());
        while !self.pending.is_empty() {
            let r = self.wait_oldest().await;
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Runs `f` on the store after everything queued before it.
    pub async fn call<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, SyncError> {
        self.flush().await?;
        let (tx, rx) = oneshot::channel();
        let job = Command::Call(Box::new(move |store: &mut Store| {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::api::{Customer, Transaction};
    use crate::store::{Observed, RunKind};

    fn customer_batch(run_id: i64, id: &str) -> Batch {
        Batch {
            run_id,
            customers: vec![Observed {
                customer: Customer::from_value(json!({ "id": id })).unwrap(),
                partial: false,
            }],
            ..Batch::default()
        }
    }

    fn count(store: &mut Store) -> Result<i64, StoreError> {
        Ok(store
            .conn()
            .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))?)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_batch_reaches_the_engine_and_rolls_back_what_was_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db"), Duration::from_secs(5)).unwrap();
        let run_id = store.start_run(RunKind::Backfill).unwrap();
        let mut writer = Writer::spawn(store);
        writer.submit(customer_batch(run_id, "c1")).await.unwrap();
        writer.flush().await.unwrap();
        assert_eq!(writer.applied.customers_inserted, 1);

        // Transactions of a customer the mirror never stored cannot be keyed: the
        // store refuses the batch. The batch queued with it must not half-land.
        let mut bad = customer_batch(run_id, "c2");
        bad.transactions.push((
            "nobody".into(),
            vec![Transaction::from_value(json!({"transaction_id": "t"})).unwrap()],
        ));
        writer.submit(customer_batch(run_id, "c3")).await.unwrap();
        writer.submit(bad).await.unwrap();
        let err = writer.flush().await.unwrap_err();
        assert!(matches!(err, SyncError::Store(_)), "{err}");

        // The thread lives on; c1 stayed committed, c2 did not land, and c3 landed
        // only if it was committed on its own before the bad batch arrived.
        let n = writer.call(count).await.unwrap();
        assert!(n == 1 || n == 2, "{n} customers");
        let c2: i64 = writer
            .call(|s| {
                Ok(s.conn().query_row(
                    "SELECT count(*) FROM customers WHERE id = 'c2'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(c2, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_submitted_batch_is_committed_by_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db"), Duration::from_secs(5)).unwrap();
        let run_id = store.start_run(RunKind::Backfill).unwrap();
        let mut writer = Writer::spawn(store);
        for i in 0..(3 * MAX_UNCOMMITTED) {
            writer
                .submit(customer_batch(run_id, &format!("c{i}")))
                .await
                .unwrap();
        }
        writer.flush().await.unwrap();
        assert_eq!(
            writer.applied.customers_inserted,
            3 * MAX_UNCOMMITTED as u64
        );
        // A second connection sees them: committed, not just applied.
        let path = dir.path().join("m.db");
        let other = Store::open_read_only(&path, Duration::from_secs(5)).unwrap();
        let n: i64 = other
            .conn()
            .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3 * MAX_UNCOMMITTED as i64);
    }
}
