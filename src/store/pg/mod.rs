//! The PostgreSQL mirror (issue 17): the same tables, views, checkpoint and guarantees
//! as the SQLite one, in a schema of its own (`store.schema`, default `lomi`), with
//! native types where they help analysts (see `migrations/001_initial.sql`).
//!
//! The client is rust-postgres's blocking `postgres::Client`, which runs its own small
//! runtime: the store lives on the writer's thread like rusqlite's connection, so each
//! call is a plain function call there. A call made from inside the async engine (the
//! planner's reads, `/healthz`) would start a runtime inside a runtime, which tokio
//! forbids, so [`PgStore::with`] runs such a call on a scoped thread of its own.
//!
//! Timestamps are `timestamptz`, written from the mirror's one text form
//! (`$n::text::timestamptz`) and read back through the schema's `ts_text` function, so
//! the engine sees the same strings as from SQLite.

mod apply;
pub(super) mod lock;
mod query;
mod runs;
#[cfg(test)]
mod runs_tests;
mod status;
mod target;
mod tls;
mod verify_rows;
mod webhook;

use std::sync::Mutex;
use std::time::Duration;

use postgres::Client;

pub use lock::AdvisoryLock;
pub use query::{PgQueryError, TextKind, TextRow, TextRows};
pub use target::{PgTarget, SslMode};

use super::StoreError;

/// The schema's migrations, in order; the version is their count.
const MIGRATIONS: &[&str] = &[include_str!("migrations/001_initial.sql")];

/// Indexes a first backfill drops while it loads and builds at its end (as SQLite's).
pub(super) const DEFERRED_INDEXES: &str = "
    CREATE INDEX IF NOT EXISTS transactions_id ON transactions (transaction_id);
    CREATE INDEX IF NOT EXISTS transactions_created_at ON transactions (created_at);
    CREATE INDEX IF NOT EXISTS customers_email ON customers (email);";

/// The same, dropped, one table per transaction: `DROP INDEX` locks its table
/// exclusively, and a writer holding one table's lock while waiting for another's
/// deadlocks with any reader holding the second while it waits for the first (an
/// analyst's join, or a count over both tables; PostgreSQL then aborts one of them).
/// Holding one lock at a time, the writer is never part of such a cycle. A crash
/// between the statements leaves indexes missing, never wrong: every completed walk
/// builds them ([`DEFERRED_INDEXES`] in `complete_walk`).
pub(super) const DROP_DEFERRED_INDEXES: [&str; 2] = [
    "DROP INDEX IF EXISTS transactions_id; DROP INDEX IF EXISTS transactions_created_at;",
    "DROP INDEX IF EXISTS customers_email;",
];

/// An open PostgreSQL mirror: one connection, with `search_path` set to its schema.
pub struct PgStore {
    /// Behind a mutex only so that a `&self` call can hand `&mut Client` to a scoped
    /// thread ([`PgStore::with`]); one thread uses the store at a time.
    /// `None` only while dropping.
    client: Mutex<Option<Client>>,
    target: PgTarget,
    /// Opened by [`PgStore::open_read_only`]: the session is `default_transaction_read_only`.
    read_only: bool,
}

impl PgStore {
    /// Connects, creates the schema if needed and brings it up to date. The caller holds
    /// the writer lock ([`super::WriterLock`], an advisory lock for PostgreSQL).
    pub fn open(target: &PgTarget, busy_timeout: Duration) -> Result<PgStore, StoreError> {
        // All of it off the runtime: a client dropped on an error must be too.
        off_runtime(|| {
            let mut client = target.connect("lomi-sync writer", busy_timeout)?;
            migrate(&mut client, target)?;
            Ok(PgStore {
                client: Mutex::new(Some(client)),
                target: target.clone(),
                read_only: false,
            })
        })
    }

    /// Connects to an existing mirror for reading only (`status`, `query`, the planner).
    /// A schema without the mirror's tables is [`StoreError::Missing`].
    pub fn open_read_only(
        target: &PgTarget,
        busy_timeout: Duration,
    ) -> Result<PgStore, StoreError> {
        off_runtime(|| {
            let mut client = target.connect("lomi-sync reader", busy_timeout)?;
            if schema_version(&mut client, target)?.is_none() {
                return Err(StoreError::Missing {
                    path: target.shown().into(),
                });
            }
            client
                .batch_execute("SET default_transaction_read_only = on")
                .map_err(|e| target.error(e))?;
            Ok(PgStore {
                client: Mutex::new(Some(client)),
                target: target.clone(),
                read_only: true,
            })
        })
    }

    /// Where this store is (no password).
    pub fn target(&self) -> &PgTarget {
        &self.target
    }

    /// Whether it was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Runs `f` with the connection, off any tokio runtime (see the module's doc).
    /// `postgres::Error`s become [`StoreError::Postgres`].
    pub(crate) fn with<R: Send, E: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, E> + Send,
    ) -> Result<R, StoreError>
    where
        StoreError: From<E>,
    {
        let mut guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let client: &mut Client = guard.as_mut().expect("the connection is open until drop");
        off_runtime(move || f(client)).map_err(StoreError::from)
    }

    /// Opens the transaction a batch (or a group of them) is applied in.
    pub fn begin(&mut self) -> Result<(), StoreError> {
        self.with(|c| c.batch_execute("BEGIN"))
    }

    /// Commits the transaction [`PgStore::begin`] opened.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.with(|c| c.batch_execute("COMMIT"))
    }

    /// Rolls back the open transaction, if any. Best effort: the error that led here is
    /// what gets reported.
    pub fn rollback(&mut self) {
        let _ = self.with(|c| c.batch_execute("ROLLBACK"));
    }

    /// SQLite folds its WAL here; PostgreSQL has nothing to fold: always true.
    pub fn checkpoint(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
}

impl Drop for PgStore {
    /// The blocking client drops its own runtime, which tokio forbids inside another.
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .map(Option::take)
            .unwrap_or_else(|p| p.into_inner().take());
        if let Some(c) = client {
            off_runtime(move || drop(c));
        }
    }
}

/// Runs `f` here, or on a scoped thread when this thread is inside a tokio runtime
/// (where the blocking client's own runtime may not start).
pub(crate) fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// What a rust-postgres error says, in one line: the server's message (with its detail
/// and hint) for a database error, else the error and its causes (`db error` alone, its
/// `Display`, says nothing). Never holds the password: neither the server nor the
/// client quotes it.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = db.message().to_string();
        if let Some(d) = db.detail() {
            s.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

/// The schema's version, `None` when the schema has no mirror yet.
fn schema_version(client: &mut Client, target: &PgTarget) -> Result<Option<i64>, StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass(quote_ident($1) || '.schema_version') IS NOT NULL",
            &[&target.schema()],
        )
        .map_err(|e| target.error(e))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let v: i64 = client
        .query_one("SELECT max(version)::bigint FROM schema_version", &[])
        .map_err(|e| target.error(e))?
        .get::<_, Option<i64>>(0)
        .unwrap_or(0);
    Ok(Some(v))
}

/// Creates the schema if needed and applies the migrations it lacks, each in one
/// transaction under a transaction-scoped advisory lock (two processes starting at once
/// migrate one after the other). A schema newer than this build is refused.
fn migrate(client: &mut Client, target: &PgTarget) -> Result<(), StoreError> {
    let schema = target.quoted_schema();
    let err = |e| StoreError::Migrate(format!("{}: {}", target.shown(), describe(&e)));
    let mut tx = client.transaction().map_err(err)?;
    // Seed 1: not the writer's lock (seed 0), which the migrating writer holds already.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 1))",
        &[&target.lock_key()],
    )
    .map_err(err)?;
    // `CREATE SCHEMA IF NOT EXISTS` checks the right to create schemas (CREATE on the
    // database) before it looks for one: a role that owns a schema made for it by an
    // administrator (the README's setup) has no such right, and needs none.
    let exists = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)";
    let exists: bool = tx
        .query_one(exists, &[&target.schema()])
        .map_err(err)?
        .get(0);
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {schema}"))
            .map_err(err)?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {schema}.schema_version (
             version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .map_err(err)?;
    let current: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {schema}.schema_version"),
            &[],
        )
        .map_err(err)?
        .get(0);
    if current as usize > MIGRATIONS.len() {
        return Err(StoreError::Migrate(format!(
            "the schema {} is at version {current}, newer than this lomi-sync knows ({}); run a newer lomi-sync",
            target.schema(),
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql).map_err(err)?;
        tx.execute(
            &format!("INSERT INTO {schema}.schema_version (version) VALUES ($1)"),
            &[&(i as i32 + 1)],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)
}
