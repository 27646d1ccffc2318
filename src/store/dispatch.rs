//! The boundary between the engine and the two stores (issue 17): [`Store`] is either
//! the SQLite mirror or the PostgreSQL one, with one method set. The engine, the CLI and
//! the daemon hold a `Store` and never learn a dialect; each dialect's SQL lives in its
//! own module (`SqliteStore` in this module's siblings, [`PgStore`] in `pg/`).

use std::collections::HashMap;
use std::ops::Bound;
use std::path::PathBuf;
use std::time::Duration;

use super::pg::{PgStore, PgTarget};
use super::{
    Applied, Batch, FeedRolling, HealthFacts, NotReread, Outcome, PlanInfo, RouteBudgetRow,
    RunFailure, RunKind, SeenIn, SourceReport, SqliteStore, StatusReport, StoreError,
    VerifyCustomer, VerifyTransaction, Walk, WebhookBatch, WebhookResult,
};

/// Where a mirror is: `store.path` (SQLite) or `store.url` (PostgreSQL). `Display`
/// names it for messages, never with a password.
// One per process, cloned rarely: the size of the PostgreSQL variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Location {
    /// The SQLite file.
    Sqlite(PathBuf),
    /// A schema in a PostgreSQL database.
    Postgres(PgTarget),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(t) => f.write_str(&t.shown()),
        }
    }
}

impl Location {
    /// The SQLite file at `path`.
    pub fn sqlite(path: impl AsRef<std::path::Path>) -> Location {
        Location::Sqlite(path.as_ref().to_owned())
    }

    /// Whether the mirror may exist: its SQLite file does; a PostgreSQL server is
    /// asked when connecting, so always true.
    pub fn exists(&self) -> bool {
        match self {
            Location::Sqlite(p) => p.exists(),
            Location::Postgres(_) => true,
        }
    }
}

/// Records a run that did not succeed from a connection of its own (see
/// `record_unsuccessful_in_file` for SQLite; PostgreSQL connects and records).
pub fn record_unsuccessful_run(
    at: &Location,
    busy_timeout: Duration,
    f: &RunFailure,
) -> Result<i64, StoreError> {
    match at {
        Location::Sqlite(p) => super::record_unsuccessful_in_file(p, busy_timeout, f),
        Location::Postgres(t) => PgStore::open(t, busy_timeout)?.record_unsuccessful(f),
    }
}

/// An open mirror, in either store.
// One per process or writer thread: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Store {
    /// The embedded default.
    Sqlite(SqliteStore),
    /// `store.url = "postgres://..."`.
    Postgres(PgStore),
}

impl Store {
    /// Opens (creating if needed) the mirror for writing and brings its schema up to
    /// date; the caller holds the writer lock.
    pub fn open(at: &Location, busy_timeout: Duration) -> Result<Store, StoreError> {
        Ok(match at {
            Location::Sqlite(p) => Store::Sqlite(SqliteStore::open(p, busy_timeout)?),
            Location::Postgres(t) => Store::Postgres(PgStore::open(t, busy_timeout)?),
        })
    }

    /// Opens an existing mirror for reading only ([`StoreError::Missing`] if there is none).
    pub fn open_read_only(at: &Location, busy_timeout: Duration) -> Result<Store, StoreError> {
        Ok(match at {
            Location::Sqlite(p) => Store::Sqlite(SqliteStore::open_read_only(p, busy_timeout)?),
            Location::Postgres(t) => Store::Postgres(PgStore::open_read_only(t, busy_timeout)?),
        })
    }

    /// The SQLite store, for what only it has (`backup`, tests reading the file).
    pub fn sqlite(&self) -> Option<&SqliteStore> {
        match self {
            Store::Sqlite(s) => Some(s),
            Store::Postgres(_) => None,
        }
    }

    /// Rolls back the open transaction, if any (best effort).
    pub fn rollback(&mut self) {
        match self {
            Store::Sqlite(s) => s.rollback(),
            Store::Postgres(s) => s.rollback(),
        }
    }

    /// Which of `ids` the mirror holds (live or deleted).
    pub fn known_customers<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.known_customers(ids),
            Store::Postgres(s) => s.known_customers(ids),
        }
    }
}

/// `read name(args) -> T;` / `write ...;`: a method of both stores, taking `&self` or
/// `&mut self`, documented on `SqliteStore` (the reference behaviour).
macro_rules! dispatch {
    ($($kind:ident $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        impl Store { $(dispatch!(@one $kind $name($($arg: $ty),*) -> $ret);)* }
    };
    (@one read $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[doc = concat!("See `SqliteStore::", stringify!($name), "`.")]
        pub fn $name(&self, $($arg: $ty),*) -> $ret {
            match self {
                Store::Sqlite(s) => s.$name($($arg),*),
                Store::Postgres(s) => s.$name($($arg),*),
            }
        }
    };
    (@one write $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[doc = concat!("See `SqliteStore::", stringify!($name), "`.")]
        pub fn $name(&mut self, $($arg: $ty),*) -> $ret {
            match self {
                Store::Sqlite(s) => s.$name($($arg),*),
                Store::Postgres(s) => s.$name($($arg),*),
            }
        }
    };
}

dispatch! {
    read record_unsuccessful(f: &RunFailure) -> Result<i64, StoreError>;
    read recover_stale_runs() -> Result<usize, StoreError>;
    read start_run(kind: RunKind) -> Result<i64, StoreError>;
    read finish_run(run_id: i64, outcome: Outcome, error: Option<&str>, requests: u64, retries: u64) -> Result<(), StoreError>;
    read note_records_skipped(run_id: i64, skipped: u64) -> Result<(), StoreError>;
    read deferred_until() -> Result<Option<String>, StoreError>;
    read has_full_walk() -> Result<bool, StoreError>;
    read last_success_started_at() -> Result<Option<String>, StoreError>;
    read note_transactions_source(run_id: i64, source: &str, note: Option<&str>) -> Result<(), StoreError>;
    read last_transactions_source() -> Result<Option<SourceReport>, StoreError>;
    read last_success_times() -> Result<Option<(String, String)>, StoreError>;
    read last_full_walk_started_at() -> Result<Option<String>, StoreError>;
    read walk() -> Result<Option<Walk>, StoreError>;
    write begin_walk(w: &Walk) -> Result<(), StoreError>;
    read adopt_walk(run_id: i64) -> Result<Option<i64>, StoreError>;
    write begin() -> Result<(), StoreError>;
    write commit() -> Result<(), StoreError>;
    read checkpoint() -> Result<bool, StoreError>;
    write complete_walk(run_id: i64, requests: u64, retries: u64, missing: Option<(u64, &str)>) -> Result<(), StoreError>;
    read plan_snapshot(hot_after: &str, pending_after: &str) -> Result<HashMap<Box<str>, PlanInfo>, StoreError>;
    read feed_watermark() -> Result<Option<String>, StoreError>;
    read feed_rolling() -> Result<FeedRolling, StoreError>;
    read live_transactions_before(floor: &str, top: &str) -> Result<(u64, u64), StoreError>;
    read live_transactions_between(lower: Bound<&str>, upper: &str) -> Result<Vec<String>, StoreError>;
    read confirmed_present() -> Result<u64, StoreError>;
    read walk_seen() -> Result<Vec<(String, SeenIn)>, StoreError>;
    read unseen_live_customers(limit: usize) -> Result<Vec<String>, StoreError>;
    read rolling_candidates(before: &str, limit: usize) -> Result<Vec<String>, StoreError>;
    read rolling_counts(overdue_before: &str) -> Result<(u64, u64), StoreError>;
    read lacking_details() -> Result<u64, StoreError>;
    read details_candidates(limit: usize) -> Result<Vec<String>, StoreError>;
    write apply(b: &Batch) -> Result<Applied, StoreError>;
    write apply_open(b: &Batch) -> Result<Applied, StoreError>;
    read note_route_budgets(run_id: i64, rows: &[RouteBudgetRow]) -> Result<(), StoreError>;
    read route_budgets(runs: usize) -> Result<Vec<RouteBudgetRow>, StoreError>;
    read status(limit: usize) -> Result<StatusReport, StoreError>;
    read not_reread_since(since: &str, full_every: Duration) -> Result<NotReread, StoreError>;
    read not_reread_by_last_success(full_every: Duration) -> Result<Option<NotReread>, StoreError>;
    read health_facts() -> Result<HealthFacts, StoreError>;
    read webhook_seen(id: &str) -> Result<bool, StoreError>;
    write apply_webhook_open(w: &WebhookBatch) -> Result<WebhookResult, StoreError>;
    read verify_customers() -> Result<Vec<VerifyCustomer>, StoreError>;
    read verify_transactions() -> Result<Vec<VerifyTransaction>, StoreError>;
}
