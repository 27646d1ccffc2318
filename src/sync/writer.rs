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
//!
//! One thread per mirror: a one-shot command spawns its own ([`Writer::spawn`]); the
//! daemon spawns one for its whole life and each run attaches to it
//! ([`Writer::attach`]), as do webhook deliveries ([`WriterHandle::webhook`]), which are
//! jobs on the same queue and share its group commits (issue 16: the writer stays
//! single). A delivery is applied under a savepoint, so one that fails never rolls back
//! a run's batches.

use std::collections::VecDeque;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::SyncError;
use crate::store::{Applied, Batch, Store, StoreError, WebhookBatch, WebhookResult};

/// Batches handed over but not yet applied: what the writer's queue holds in memory.
const QUEUED: usize = 2;

/// Batches applied but not yet committed, at most: one commit's size when the writer
/// is the bottleneck. Their data is in SQLite by then, not in this process's queue.
const MAX_UNCOMMITTED: usize = 16;

type Reply = oneshot::Sender<Result<Applied, StoreError>>;
type WebhookReply = oneshot::Sender<Result<WebhookResult, StoreError>>;

/// What the writer thread is asked to do (the planner's `Job` is what to fetch).
enum Command {
    /// A batch to apply; its reply is sent when it is committed.
    Apply(Box<Batch>, Reply),
    /// A webhook delivery to apply; its reply is sent when it is committed.
    Webhook(Box<WebhookBatch>, WebhookReply),
    /// Anything else, in queue order, after a commit of what came before.
    Call(Box<dyn FnOnce(&mut Store) + Send>),
    /// Commit what is open and end the thread (the daemon's shutdown).
    Stop,
}

/// A cheap, cloneable way to the writer thread's queue: what a run attaches to and
/// what the webhook listener submits deliveries through.
#[derive(Clone)]
pub struct WriterHandle {
    jobs: mpsc::Sender<Command>,
}

/// Handle to the writer thread for one run: its batches in flight and their counts.
pub struct Writer {
    jobs: mpsc::Sender<Command>,
    pending: VecDeque<oneshot::Receiver<Result<Applied, StoreError>>>,
    /// Counts of every batch committed so far.
    pub applied: Applied,
    /// The thread, when this writer spawned it (a one-shot run, or the daemon's).
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A job applied in the open transaction, waiting for its commit.
enum Done {
    /// A run's batch (`sync_runs.id`), and what it wrote.
    Batch(Reply, i64, Applied),
    Webhook(WebhookReply, WebhookResult),
}

/// The jobs of the open transaction, waiting for its commit.
#[derive(Default)]
struct Uncommitted {
    replies: Vec<Done>,
    /// The run whose batch last failed (rolled back). Its later batches are refused:
    /// the engine submits ahead of the answers, and one committed after the failure
    /// would carry a checkpoint past the rows that were rolled back, so the next run
    /// would resume beyond them and never write them.
    failed_run: Option<i64>,
}

impl Uncommitted {
    /// Commits the open transaction, if any, and answers its jobs.
    fn commit(&mut self, store: &mut Store) {
        if self.replies.is_empty() {
            return;
        }
        match store.commit() {
            Ok(()) => {
                for done in self.replies.drain(..) {
                    match done {
                        Done::Batch(reply, _, applied) => {
                            let _ = reply.send(Ok(applied));
                        }
                        Done::Webhook(reply, result) => {
                            let _ = reply.send(Ok(result));
                        }
                    }
                }
            }
            Err(e) => self.fail(store, e),
        }
    }

    /// Rolls the open transaction back. The oldest job carries the error, which is
    /// the one the engine waits for first; the others are told they went with it.
    fn fail(&mut self, store: &mut Store, e: StoreError) {
        store.rollback();
        let mut error = Some(e);
        for done in self.replies.drain(..) {
            let e = error.take().unwrap_or(StoreError::RolledBack);
            match done {
                Done::Batch(reply, run_id, _) => {
                    self.failed_run = Some(run_id);
                    let _ = reply.send(Err(e));
                }
                Done::Webhook(reply, _) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }

    /// Commits once [`MAX_UNCOMMITTED`] jobs wait.
    fn push(&mut self, store: &mut Store, done: Done) {
        self.replies.push(done);
        if self.replies.len() >= MAX_UNCOMMITTED {
            self.commit(store);
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
            None | Some(Command::Stop) => {
                open.commit(&mut store);
                return;
            }
            Some(Command::Call(f)) => {
                open.commit(&mut store);
                f(&mut store);
            }
            Some(Command::Apply(batch, reply)) => {
                if open.failed_run == Some(batch.run_id) {
                    let _ = reply.send(Err(StoreError::RolledBack));
                    continue;
                }
                let Some(reply) = opened(&open, &mut store, reply) else {
                    continue;
                };
                let run_id = batch.run_id;
                match store.apply_open(&batch) {
                    Ok(applied) => open.push(&mut store, Done::Batch(reply, run_id, applied)),
                    Err(e) => {
                        let done = Done::Batch(reply, run_id, Applied::default());
                        open.replies.push(done);
                        open.fail(&mut store, e);
                    }
                }
            }
            Some(Command::Webhook(w, reply)) => {
                let Some(reply) = opened(&open, &mut store, reply) else {
                    continue;
                };
                match store.apply_webhook_open(&w) {
                    Ok(result) => open.push(&mut store, Done::Webhook(reply, result)),
                    // Its savepoint is rolled back: the run's batches stay.
                    Err(e) => {
                        if open.replies.is_empty() {
                            store.rollback();
                        }
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }
}

/// Opens the transaction for a job unless one is open; `None` when SQLite refused
/// (the job is answered with the error).
fn opened<T>(
    open: &Uncommitted,
    store: &mut Store,
    reply: oneshot::Sender<Result<T, StoreError>>,
) -> Option<oneshot::Sender<Result<T, StoreError>>> {
    if open.replies.is_empty()
        && let Err(e) = store.begin()
    {
        let _ = reply.send(Err(e));
        return None;
    }
    Some(reply)
}

impl WriterHandle {
    /// Applies one webhook delivery on the writer thread and waits until it is
    /// committed (it may share a commit with a run's batches).
    pub async fn webhook(&self, w: WebhookBatch) -> Result<WebhookResult, SyncError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Command::Webhook(Box::new(w), tx))
            .await
            .map_err(|_| SyncError::WriterGone)?;
        Ok(rx.await.map_err(|_| SyncError::WriterGone)??)
    }
}

impl Writer {
    /// Spawns a writer thread over `store`, owned by this writer (a one-shot run's, or
    /// the daemon's: then runs [`Writer::attach`] to it).
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

    /// A run's writer on a thread someone else owns (the daemon's).
    pub fn attach(handle: &WriterHandle) -> Writer {
        Writer {
            jobs: handle.jobs.clone(),
            pending: VecDeque::new(),
            applied: Applied::default(),
            thread: None,
        }
    }

    /// A handle to this writer's thread, for runs and webhook deliveries.
    pub fn handle(&self) -> WriterHandle {
        WriterHandle {
            jobs: self.jobs.clone(),
        }
    }

    /// Ends the thread this writer owns after the jobs queued before (handles left
    /// elsewhere then get [`SyncError::WriterGone`]), and waits for it: the connection
    /// is closed, and the WAL folded back, when this returns.
    pub async fn close(mut self) {
        let _ = self.jobs.send(Command::Stop).await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
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
        // Only the owner of the thread waits for it: a writer attached to the daemon's
        // leaves it running.
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
    use crate::store::{Location, Observed, RunKind};

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
            .sqlite()
            .unwrap()
            .conn()
            .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))?)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_batch_reaches_the_engine_and_rolls_back_what_was_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &Location::sqlite(dir.path().join("m.db")),
            Duration::from_secs(5),
        )
        .unwrap();
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
                Ok(s.sqlite().unwrap().conn().query_row(
                    "SELECT count(*) FROM customers WHERE id = 'c2'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(c2, 0);
    }

    /// Batches the engine submitted after one that failed are refused, never committed:
    /// their checkpoint would lie past the rows rolled back, and the next run would
    /// resume beyond them. A later run's batches are applied again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_batch_of_a_run_commits_after_one_of_its_batches_failed() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::sqlite(dir.path().join("m.db"));
        let store = Store::open(&location, Duration::from_secs(5)).unwrap();
        let run_id = store.start_run(RunKind::Backfill).unwrap();
        let next_run = store.start_run(RunKind::Sync).unwrap();
        let mut writer = Writer::spawn(store);
        let mut bad = customer_batch(run_id, "c1");
        bad.transactions.push((
            "nobody".into(),
            vec![Transaction::from_value(json!({"transaction_id": "t"})).unwrap()],
        ));
        writer.submit(bad).await.unwrap();
        writer.submit(customer_batch(run_id, "c2")).await.unwrap();
        let err = writer.flush().await.unwrap_err();
        assert!(matches!(err, SyncError::Store(_)), "{err}");
        assert_eq!(writer.call(count).await.unwrap(), 0, "c2 was committed");
        writer.submit(customer_batch(next_run, "c3")).await.unwrap();
        writer.flush().await.unwrap();
        assert_eq!(writer.call(count).await.unwrap(), 1);
    }

    /// A webhook delivery that fails in the transaction it shares with a run's batch
    /// rolls back only itself (its savepoint): the run's batch is committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_webhook_delivery_never_rolls_back_a_runs_batch() {
        use crate::store::{Delivery, WebhookBatch};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &Location::sqlite(dir.path().join("m.db")),
            Duration::from_secs(5),
        )
        .unwrap();
        let run_id = store.start_run(RunKind::Sync).unwrap();
        let mut run = Writer::spawn(store);
        let handle = run.handle();
        run.submit(customer_batch(run_id, "c1")).await.unwrap();
        run.flush().await.unwrap();
        // Every delivery record fails; the writer is held busy so that the batch and
        // the delivery queue up behind it and share one transaction.
        let mut other = Writer::attach(&handle);
        let busy = tokio::spawn(async move {
            other
                .call(|s| {
                    s.sqlite().unwrap().conn().execute_batch(
                        "CREATE TRIGGER boom BEFORE INSERT ON webhook_events
                         BEGIN SELECT RAISE(ABORT, 'boom'); END",
                    )?;
                    std::thread::sleep(Duration::from_millis(300));
                    Ok(())
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        run.submit(customer_batch(run_id, "c2")).await.unwrap();
        let delivery = WebhookBatch {
            delivery: Delivery {
                id: "evt_1".into(),
                event: "PAYMENT_SUCCEEDED".into(),
                received_at: crate::store::now(),
            },
            row: Transaction::from_value(json!({
                "transaction_id": "t1", "customer_id": "c1", "status": "completed",
                "updated_at": "2025-06-01T10:00:00Z"
            }))
            .unwrap(),
            revalidated: false,
            gone: false,
            customers: Vec::new(),
            gone_customers: Vec::new(),
        };
        let webhook = tokio::spawn(async move { handle.webhook(delivery).await });
        busy.await.unwrap().unwrap();
        let err = webhook.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        run.flush().await.unwrap();
        let other = Store::open_read_only(
            &Location::sqlite(dir.path().join("m.db")),
            Duration::from_secs(5),
        )
        .unwrap();
        let counts: (i64, i64, i64) = other
            .sqlite()
            .unwrap()
            .conn()
            .query_row(
                "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM transactions),
                        (SELECT count(*) FROM webhook_events)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            counts,
            (2, 0, 0),
            "c1 and c2 committed, nothing of the delivery"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_submitted_batch_is_committed_by_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &Location::sqlite(dir.path().join("m.db")),
            Duration::from_secs(5),
        )
        .unwrap();
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
        let other =
            Store::open_read_only(&Location::sqlite(&path), Duration::from_secs(5)).unwrap();
        let n: i64 = other
            .sqlite()
            .unwrap()
            .conn()
            .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3 * MAX_UNCOMMITTED as i64);
    }
}
