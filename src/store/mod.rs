//! The SQLite mirror: schema, migrations, the writer lock, and the one place rows are
//! written. It never does HTTP: the sync engine hands it checked API objects in
//! batches, and each batch (a page of customers, their transactions and the walk's
//! checkpoint) commits in one SQLite transaction, so a crash never leaves half a page.

mod apply;
mod backup;
mod budgets;
mod dispatch;
#[cfg(test)]
mod feed_tests;
#[cfg(test)]
mod layout_tests;
pub mod lock;
pub mod pg;
#[cfg(test)]
mod record_tests;
mod status;
mod v4;
mod verify_rows;
#[cfg(test)]
mod walk_tests;
mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};

pub use apply::{Applied, Batch, Observed};
pub use backup::{BackupReport, backup};
pub use budgets::RouteBudgetRow;
pub use dispatch::{Location, Store, record_unsuccessful_run};
pub use lock::WriterLock;
pub use status::{HealthFacts, NotReread, RunRow, SourceReport, StatusReport, Totals};
pub use verify_rows::{VerifyCustomer, VerifyTransaction};
pub use webhook::{
    Decision, Delivery, FINAL_STATUSES, RowFacts, WebhookBatch, WebhookResult, decide,
};

use crate::api::StatusFilter;
use crate::api::model::format_timestamp;

/// Errors of the store; messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file cannot be opened, or its connection set up (busy timeout, pragmas).
    #[error(
        "cannot open the mirror {path}: {source}; check store.path and that its directory exists and is writable"
    )]
    Open {
        /// The mirror's file (`store.path`).
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// No mirror at the path yet, for a command that only reads it (or backs it up).
    #[error(
        "the mirror {path} does not exist yet; run `lomi-sync backfill` (or `lomi-sync demo`) first"
    )]
    Missing {
        /// The mirror's file (`store.path`).
        path: PathBuf,
    },
    /// The mirror's directory does not exist.
    #[error("the directory of store.path ({path}) does not exist; create it or fix store.path")]
    NoDirectory {
        /// The directory `store.path` names.
        path: PathBuf,
    },
    /// A file next to the mirror (lock, backup) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// Another process holds the writer lock ([`WriterLock`]).
    #[error(
        "the mirror {path} is being written by {holder}; wait for that run to end or pass --wait"
    )]
    Locked {
        /// The mirror's file (`store.path`).
        path: PathBuf,
        /// Who holds the lock, as its lock file says (`pid 123 (sync) since ...`).
        holder: String,
    },
    /// The walk a killed run left cannot be read (`detail` says which value): rather
    /// than forget it silently (a resumed run would lose what the walk counted), the run
    /// stops and says how to go on.
    #[error(
        "the unfinished walk in the mirror cannot be read ({detail}); it was probably written by a newer \
         lomi-sync: run that version to finish it, or run `lomi-sync backfill --restart` to forget it and walk again"
    )]
    UnreadableWalk {
        /// Which stored value did not read, and why.
        detail: String,
    },
    /// A feed row whose customer the mirror does not hold: the engine reads every such
    /// customer before it hands the row over, so this is a bug, not a source's fault.
    #[error(
        "a transaction of customer {customer_id} reached the store before its customer; this is a bug in lomi-sync: please report it"
    )]
    OrphanTransaction {
        /// The customer the row names.
        customer_id: String,
    },
    /// A migration failed; the text is the migration library's error.
    #[error("cannot bring the mirror's schema up to date: {0}")]
    Migrate(String),
    /// The PostgreSQL server cannot be reached, or refused the connection.
    #[error(
        "cannot connect to the mirror {target}: {detail}; check store.url, the password \
         (store.password_file or PGPASSWORD) and that the server is running"
    )]
    Connect {
        /// The mirror (`store.url` without a password, and `store.schema`).
        target: String,
        /// What the server or the network said ([`pg::describe`]).
        detail: String,
    },
    /// TLS to the PostgreSQL server failed, as `store.url`'s `sslmode` asked for it
    /// (`detail` says what and what to change), or its `sslrootcert` cannot be read.
    #[error("cannot connect to the mirror {target} with sslmode={mode}: {detail}")]
    Tls {
        /// The mirror (`store.url` without a password, and `store.schema`).
        target: String,
        /// The URL's `sslmode`, as libpq spells it.
        mode: &'static str,
        /// What failed, and what to change.
        detail: String,
    },
    /// Any other PostgreSQL error ([`pg::describe`] says what the server said).
    #[error("database error: {}", pg::describe(.0))]
    Postgres(postgres::Error),
    /// Any other SQLite error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A write batched with another one was rolled back because that one failed, or a
    /// run's batch came after one of that run's batches failed: this write did not
    /// happen either.
    #[error("not written: a batch committed with this one, or before it in its run, failed")]
    RolledBack,
    /// `why`: what to do about it (the target may be the mirror itself, or a directory).
    #[error("{path} already exists{why}")]
    BackupExists {
        /// The backup target.
        path: PathBuf,
        /// What to do about it, appended to the message.
        why: &'static str,
    },
    /// The backup target's directory does not exist.
    #[error("the directory {path} for the backup does not exist; create it or choose another path")]
    NoBackupDirectory {
        /// The directory the backup was to go in.
        path: PathBuf,
    },
    /// The backup copy failed `PRAGMA quick_check`.
    #[error(
        "the copy {path} failed its check ({check}); the mirror is unchanged and no backup was written"
    )]
    BackupCheck {
        /// The backup target (nothing was written there).
        path: PathBuf,
        /// What `PRAGMA quick_check` said of the copy.
        check: String,
    },
}

/// Which kind of walk a run makes. Stored as [`RunKind::as_str`] (`walk.kind` and
/// `sync_runs.kind`); `Display` and JSON give the same word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Every customer and every active customer's transactions.
    Backfill,
    /// Incremental: the list, plus the transactions worth re-reading. The default: what
    /// `lomi-sync sync` and a daemon tick run.
    #[default]
    Sync,
    /// A scheduled full reconciliation: like a backfill, recorded as such.
    Full,
}

impl RunKind {
    /// The stored word: `backfill`, `sync` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Backfill => "backfill",
            RunKind::Sync => "sync",
            RunKind::Full => "full",
        }
    }
    /// The kind stored as `s`; `None` for a word that is no kind.
    pub fn parse(s: &str) -> Option<RunKind> {
        match s {
            "backfill" => Some(RunKind::Backfill),
            "sync" => Some(RunKind::Sync),
            "full" => Some(RunKind::Full),
            _ => None,
        }
    }
    /// Full walks re-read every active customer's transactions.
    pub fn is_full(self) -> bool {
        !matches!(self, RunKind::Sync)
    }

    /// The run-kind rule, the one place it is written: a mirror without a completed
    /// full walk has not been loaded, so a run asked as a `sync` there is a backfill.
    /// `full_walk_done` is `None` when the mirror cannot say (no file yet). The engine
    /// applies it after migrating the file (`sync::run`); the CLI, to size a run's
    /// estimate before it starts.
    pub fn for_mirror(self, full_walk_done: Option<bool>) -> RunKind {
        match (self, full_walk_done) {
            (RunKind::Sync, Some(false) | None) => RunKind::Backfill,
            _ => self,
        }
    }
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the stored word (`"sync"`), as reports and tests read it.
impl PartialEq<&str> for RunKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Where a run stands: `sync_runs.outcome`, whose CHECK admits exactly these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Under way (or its process died: [`SqliteStore::recover_stale_runs`] says so later).
    Running,
    /// Finished with every step done.
    Succeeded,
    /// Stopped by an error; `sync_runs.error` says which.
    Failed,
    /// Stopped by a shutdown (Ctrl-C, SIGTERM) before it finished.
    Interrupted,
    /// A scheduled run that met a long rate-limit wait and stopped at a checkpoint;
    /// `sync_runs.resume_at` says when the next tick may resume it.
    Deferred,
}

impl Outcome {
    /// The stored word (`running`, `succeeded`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Deferred => "deferred",
        }
    }
}

/// The walk in progress: where a resumed run picks up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The `sync_runs` row of the run making the walk.
    pub run_id: i64,
    /// Which kind of walk it is.
    pub kind: RunKind,
    /// When the walk began: the mirror's UTC timestamp text (`YYYY-MM-DDTHH:MM:SS.ffffffZ`).
    pub started_at: String,
    /// The phase the walk is in.
    pub phase: Phase,
    /// The list segment the walk is reading (the confirm and rolling phases keep
    /// `All`). Stored as `walk.segment`.
    pub segment: StatusFilter,
    /// The next list page to read (1-based).
    pub next_page: u64,
    /// The list page size the walk reads with (a sweep raises it).
    pub page_size: u32,
    /// `totalCount` of the last non-empty page read: a fall since then means customers were
    /// deleted and pages shifted back, so earlier pages are read again.
    pub last_total: Option<u64>,
    /// Sweeps made so far: full re-reads of a segment whose listing came up short.
    pub pass: u32,
    /// The largest page the server proved it serves: a short page was followed by rows
    /// not seen before, so the page was cut, not the list's end (NOTES.md: silent cap).
    pub page_cap: Option<u32>,
    /// What the walk has counted of the list so far.
    pub counts: ListCounts,
    /// The first load into an empty mirror: no `created` change rows, and the deferred
    /// indexes are built once at the end.
    pub initial: bool,
    /// A walk that reads transactions from the org-wide feed (`Some` from its start, so
    /// a resumed walk keeps its source): where its feed pass is. `None`: per customer.
    pub feed: Option<FeedCursor>,
}

/// Where a walk's pass over `GET /transactions` is (issue 14; NOTES.md, "The org-wide
/// transactions feed"): newest first, offset paging under a fixed `endDate`, so rows
/// created during the pass cannot shift its pages. Stored as JSON in `walk.feed`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedCursor {
    /// The newest `created_at` on the pass's first page (`None` before it is read):
    /// every later page is bounded by it, and it becomes the watermark once the pass
    /// is complete.
    pub end: Option<String>,
    /// The oldest `created_at` the pass reads (`startDate`), already widened by the
    /// overlap and the status lookback; `None`: the whole feed (a backfill, or no
    /// watermark yet).
    pub floor: Option<String>,
    /// The next page to request, 1-based, of `page_size` rows.
    pub next_page: u64,
    /// Rows asked for per page (`pageSize`), lowered to a silent cap once learned.
    pub page_size: u32,
    /// Rows read from the top of the pass so far: where the next unread row is.
    pub read_to: u64,
    /// The next request is a probe after a page this many rows short of `page_size`:
    /// rows on it prove a silent cap of that many rows (NOTES.md, the 1,000-row cap).
    pub probe_after: Option<u32>,
    /// The largest page the feed proved it serves, once learned.
    pub cap: Option<u32>,
    /// The top (inclusive) of the part of the pass not yet compared with the mirror:
    /// every live row the mirror held newer than this instant (with a `created_at`)
    /// was shown by the pass or asked for by id, the answers committed before this
    /// cursor, so a resumed pass confirms from here on and no deletion above it is
    /// skipped (`sync/feed.rs`, `Vanished`). `None`: a pass that confirms nothing (a
    /// first load), or one checkpointed by a version that did not keep it (such a
    /// pass starts again from the top). Stale, and unused, once the pass is done.
    pub window_top: Option<String>,
}

/// The feed's rolling re-read across runs (`feed_state.rolling_end`, `rolling_since`,
/// migration 12): each incremental run in feed mode re-reads a slice of the feed older
/// than its lookback window, the slices moving down run after run until an empty page
/// ends a cycle, so every row is read again within `sync.full_every`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedRolling {
    /// Where the next slice starts (its `endDate`): the oldest `created_at` the cycle's
    /// slices have read, from the data. `None`: a new cycle, which starts at the
    /// incremental pass's floor.
    pub end: Option<String>,
    /// When the current cycle started, on this machine's clock (the mirror's timestamp
    /// form): it sizes the slices, never a request's bounds. `None`: no cycle ever
    /// ended (written as "unchanged" in a [`Batch::feed_rolling`]).
    pub since: Option<String>,
}

/// What a walk has counted of the customer list, kept with its checkpoint so that a
/// resumed walk checks its completeness as an uninterrupted one would.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ListCounts {
    /// `totalCount` at the first page of each segment's latest top-up or sweep: what
    /// the customers listed are checked against.
    pub totals: PerSegment,
    /// Records without a readable id in each segment's latest whole pass: the list
    /// counts them, the walk cannot list them.
    pub unreadable: PerSegment,
    /// Customers the list counts that the walk could not list, once it gave up sweeping.
    pub missing: Option<u64>,
}

/// A count per list segment. Stored as a JSON object keyed by segment (`{"active":
/// 120}`, as versions before typed segments wrote it); a key that is no segment does
/// not read (the walk is then [`StoreError::UnreadableWalk`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerSegment([Option<u64>; 3]);

impl PerSegment {
    const SEGMENTS: [StatusFilter; 3] = [
        StatusFilter::All,
        StatusFilter::Active,
        StatusFilter::Inactive,
    ];

    fn index(s: StatusFilter) -> usize {
        match s {
            StatusFilter::All => 0,
            StatusFilter::Active => 1,
            StatusFilter::Inactive => 2,
        }
    }
    /// The count of segment `s`, if one was recorded.
    pub fn get(&self, s: StatusFilter) -> Option<u64> {
        self.0[Self::index(s)]
    }
    /// Records `n` for segment `s`, replacing any earlier count.
    pub fn insert(&mut self, s: StatusFilter, n: u64) {
        self.0[Self::index(s)] = Some(n);
    }
}

impl serde::Serialize for PerSegment {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, u64> = Self::SEGMENTS
            .iter()
            .filter_map(|s| Some((s.as_str(), self.get(*s)?)))
            .collect();
        serde::Serialize::serialize(&map, ser)
    }
}

impl<'de> serde::Deserialize<'de> for PerSegment {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let map: BTreeMap<String, u64> = serde::Deserialize::deserialize(de)?;
        let mut out = PerSegment::default();
        for (k, n) in map {
            let s = StatusFilter::parse(&k)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown segment {k:?}")))?;
            out.insert(s, n);
        }
        Ok(out)
    }
}

impl ListCounts {
    /// As stored in `walk.list_counts`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("maps of numbers serialize")
    }
}

/// The phases of a walk, in order. Stored as [`Phase::as_str`] in `walk.phase` (a CHECK
/// constraint keeps it to these words); `Display` gives the same word, as progress shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Paging through the customer list, segment by segment.
    List,
    /// Re-reading the top of each segment for customers created during the walk.
    Topup,
    /// A full re-read of one segment, with larger pages, when the list showed fewer
    /// customers than it counts.
    Sweep,
    /// `GET /customers/{id}` for mirrored customers the walk did not see.
    Confirm,
    /// Reading transactions from the org-wide feed (a walk in feed mode, issue 14).
    Feed,
    /// Re-reading the transactions of customers due on the rolling schedule.
    Rolling,
}

impl Phase {
    /// The stored word (`list`, `topup`, `sweep`, `confirm`, `rolling`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::List => "list",
            Phase::Topup => "topup",
            Phase::Sweep => "sweep",
            Phase::Confirm => "confirm",
            Phase::Feed => "feed",
            Phase::Rolling => "rolling",
        }
    }
    fn parse(s: &str) -> Option<Phase> {
        match s {
            "list" => Some(Phase::List),
            "topup" => Some(Phase::Topup),
            "sweep" => Some(Phase::Sweep),
            "confirm" => Some(Phase::Confirm),
            "feed" => Some(Phase::Feed),
            "rolling" => Some(Phase::Rolling),
            _ => None,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a walk saw a customer: listed in a segment, or read one by one by a later
/// phase. Stored as [`SeenIn::as_str`] in `walk_seen.segment` (a CHECK constraint keeps
/// it to these words). The completeness check counts the listings; the rolling phase
/// skips customers listed `inactive`; the confirm phase's reads of customers still
/// present are not missing ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeenIn {
    /// Listed in this segment of `GET /customers` (by a list pass, a top-up or a sweep).
    Listed(StatusFilter),
    /// Read by the confirm phase (`GET /customers/{id}`): the walk had not listed it.
    Confirm,
    /// Its transactions re-read by the rolling phase.
    Rolling,
}

impl SeenIn {
    /// The stored word: the segment's name (`all`, `active`, `inactive`), `confirm` or `rolling`.
    pub fn as_str(self) -> &'static str {
        match self {
            SeenIn::Listed(s) => s.as_str(),
            SeenIn::Confirm => "confirm",
            SeenIn::Rolling => "rolling",
        }
    }
    /// The place stored as `s`; `None` for a word that is none.
    pub fn parse(s: &str) -> Option<SeenIn> {
        match s {
            "confirm" => Some(SeenIn::Confirm),
            "rolling" => Some(SeenIn::Rolling),
            _ => StatusFilter::parse(s).map(SeenIn::Listed),
        }
    }
}

/// What the mirror knows of a customer, for planning a run: compact, because a run
/// holds one per customer in memory (see [`SqliteStore::plan_snapshot`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanInfo {
    /// Hash of the stored `raw` JSON text: an identical list item needs no write.
    pub raw_hash: u64,
    /// Hash of the stored `updated_at`.
    pub updated_at_hash: u64,
    /// The customer is soft-deleted in the mirror (`deleted_at` is set).
    pub deleted: bool,
    /// Transactions in the customer's list when last read.
    pub live_transactions: u32,
    /// The newest of them is recent (`sync.hot_window`).
    pub hot: bool,
    /// A recent (`sync.pending_window`) one is still pending.
    pub pending: bool,
    /// Its transactions were read at least once.
    pub checked: bool,
}

/// The hash [`PlanInfo`] uses; stable within a process, which is all it needs.
pub fn text_hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Postgres(e)
    }
}

/// An open mirror.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// Opened by [`SqliteStore::open`]: folds the WAL back as it closes (see `Drop`).
    writable: bool,
}

/// How long a closing writer waits for other connections to fold the WAL back: not the
/// whole busy timeout, since a run that failed on a busy database would wait once more
/// before it can record its failure, and an analyst's long read would hold it anyway.
const FOLD_WAIT: Duration = Duration::from_secs(1);

impl Drop for SqliteStore {
    /// A writer closing folds the WAL back into the main file (a truncating checkpoint),
    /// so a stopped mirror is whole in `mirror.db` alone and a copy of that file has
    /// every run. SQLite does this itself only when the last connection to close can
    /// write, and a run's read-only planner connection often closes last. Best effort:
    /// another program reading or writing the file may keep the WAL for now; this waits
    /// for it at most [`FOLD_WAIT`], and the next writer's checkpoints fold the rest.
    fn drop(&mut self) {
        if !self.writable || std::thread::panicking() {
            return;
        }
        let _ = self.conn.busy_timeout(FOLD_WAIT);
        match self.checkpoint() {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                path = %self.path.display(),
                "another connection kept part of the WAL from being folded into the mirror file"
            ),
            Err(e) => tracing::info!(
                path = %self.path.display(),
                "the WAL was not folded into the mirror file: {e}"
            ),
        }
    }
}

/// The customers the rolling schedule covers: live ones the walk in progress did not
/// list as inactive (those have no transaction to re-read).
const ROLLING_ELIGIBLE: &str = "FROM customers c INDEXED BY customers_live
    LEFT JOIN customer_sync s ON s.customer_id = c.id
    WHERE c.deleted_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM walk_seen w WHERE w.customer_id = c.id AND w.segment = 'inactive')";

/// Indexes a first backfill does without while it loads, and builds at its end: sorting
/// a million keys once is far cheaper than a million random B-tree inserts.
const DEFERRED_INDEXES: &str = "
    CREATE INDEX IF NOT EXISTS transactions_id ON transactions (transaction_id);
    CREATE INDEX IF NOT EXISTS transactions_customer ON transactions (customer_id, created_at);
    CREATE INDEX IF NOT EXISTS transactions_created_at ON transactions (created_at);
    CREATE INDEX IF NOT EXISTS customers_email ON customers (email);";

/// The writer connection's page cache, as SQLite's `cache_size` (negative: KiB).
/// Large enough that a group commit's dirty pages do not spill to the WAL before the
/// commit; 32 MiB was no faster at 100k customers and raised the peak RSS by ~10 MB.
pub(super) const WRITER_CACHE_KIB: i64 = -24 * 1024;

/// The page cache while the deferred indexes are built: SQLite's sorter sizes its
/// in-memory runs by the cache, and with a 32 MiB cache the build took 70 MB of
/// memory and longer than with 4 MiB (external merge passes are cheap here).
pub(super) const INDEX_BUILD_CACHE_KIB: i64 = -4 * 1024;

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("migrations/001_initial.sql")),
        M::up(include_str!("migrations/002_views.sql")),
        M::up_with_hook(
            include_str!("migrations/003_transactions_key_first.sql"),
            rebuild_deferred_indexes,
        ),
        M::up_with_hook(
            include_str!("migrations/004_micros_currency_skipped.sql"),
            v4::rewrite,
        ),
        M::up(include_str!("migrations/005_list_sweeps.sql")),
        M::up(include_str!("migrations/006_route_budgets.sql")),
        M::up_with_hook(
            include_str!("migrations/007_deferred_runs.sql"),
            check_foreign_keys,
        ),
        M::up(include_str!("migrations/008_feed_columns.sql")),
        M::up(include_str!("migrations/009_walk_checks.sql")),
        M::up(include_str!("migrations/010_feed_walk.sql")),
        M::up(include_str!("migrations/011_feed_stage.sql")),
        M::up(include_str!("migrations/012_feed_rolling.sql")),
        M::up_with_hook(
            include_str!("migrations/013_webhooks.sql"),
            check_foreign_keys,
        ),
        M::up(include_str!("migrations/014_customer_details.sql")),
    ])
}

/// After migration 3 rebuilt `transactions`: its deferred indexes went with the old
/// table. They are built again now, unless a first backfill is in progress (it dropped
/// them on purpose, and [`SqliteStore::complete_walk`] builds them at its end).
fn rebuild_deferred_indexes(tx: &rusqlite::Transaction) -> rusqlite_migration::HookResult {
    let initial_walk: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM walk WHERE initial = 1)",
        [],
        |r| r.get(0),
    )?;
    if !initial_walk {
        tx.execute_batch(DEFERRED_INDEXES)?;
    }
    Ok(())
}

/// Fails a migration that rebuilt a table (with foreign keys off) if a reference no
/// longer holds, so the transaction rolls back and the mirror stays as it was.
fn check_foreign_keys(tx: &rusqlite::Transaction) -> rusqlite_migration::HookResult {
    let broken: i64 = tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
        r.get(0)
    })?;
    if broken > 0 {
        return Err(rusqlite_migration::HookError::Hook(format!(
            "{broken} rows refer to missing rows after rebuilding a table"
        )));
    }
    Ok(())
}

/// A run that did not succeed, as [`record_unsuccessful_run`] writes it.
#[derive(Clone, Debug)]
pub struct RunFailure {
    /// The run's `sync_runs` row, if [`SqliteStore::start_run`] wrote one; else one is inserted.
    pub run_id: Option<i64>,
    /// The run's kind.
    pub kind: RunKind,
    /// When the run began (for an inserted row).
    pub started_at: String,
    /// `Failed`, `Interrupted` or `Deferred`.
    pub outcome: Outcome,
    /// The error's message, stored in `sync_runs.error`.
    pub error: String,
    /// For `Deferred`: when the walk may go on (the mirror's timestamp format).
    pub resume_at: Option<String>,
    /// HTTP requests the run sent, retries included.
    pub requests: u64,
    /// Of those, the retries.
    pub retries: u64,
}

/// How many busy timeouts [`record_unsuccessful_run`] waits for the database: the
/// failure it records is often a database busy for a whole timeout already, and a
/// write held by another program usually ends soon after.
pub const RECORD_PATIENCE: u32 = 3;

/// Records a run that did not succeed, from a connection of its own, so that it works
/// whatever state the run's connections were left in, and when the run failed before
/// its row was written or before the schema was migrated (only `sync_runs` as version 1
/// created it is needed). Updates the run's row, or inserts one if it has none. Waits
/// up to [`RECORD_PATIENCE`] busy timeouts for a database another program is writing.
/// Never creates a file: the caller checks the mirror exists.
pub fn record_unsuccessful_in_file(
    path: &Path,
    busy_timeout: Duration,
    f: &RunFailure,
) -> Result<i64, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    conn.busy_timeout(busy_timeout.saturating_mul(RECORD_PATIENCE))
        .map_err(open_err)?;
    record_on(&conn, f)
}

impl SqliteStore {
    /// [`record_unsuccessful_run`] on this connection: the daemon's, whose one writer
    /// thread outlives its runs.
    pub fn record_unsuccessful(&self, f: &RunFailure) -> Result<i64, StoreError> {
        record_on(&self.conn, f)
    }
}

/// Writes `f` (see [`record_unsuccessful_run`]) through `conn`.
fn record_on(conn: &Connection, f: &RunFailure) -> Result<i64, StoreError> {
    let (requests, retries) = (f.requests as i64, f.retries as i64);
    if let Some(id) = f.run_id {
        // Only a deferral names `resume_at`, which needs migration 7; a deferred run
        // opened (so migrated) the mirror. The CHECK ties the outcome to the time.
        let updated = match &f.resume_at {
            Some(at) => conn.execute(
                "UPDATE sync_runs SET outcome = ?2, finished_at = ?3, error = ?4, requests = ?5, retries = ?6,
                                      resume_at = ?7
                 WHERE id = ?1",
                params![id, f.outcome.as_str(), now(), f.error, requests, retries, at],
            )?,
            None => conn.execute(
                "UPDATE sync_runs SET outcome = ?2, finished_at = ?3, error = ?4, requests = ?5, retries = ?6
                 WHERE id = ?1",
                params![id, f.outcome.as_str(), now(), f.error, requests, retries],
            )?,
        };
        if updated == 1 {
            return Ok(id);
        }
    }
    conn.execute(
        "INSERT INTO sync_runs (kind, started_at, finished_at, outcome, error, requests, retries)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            f.kind.as_str(),
            f.started_at,
            now(),
            f.outcome.as_str(),
            f.error,
            requests,
            retries
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Now, in the mirror's timestamp format.
pub fn now() -> String {
    format_timestamp(chrono::Utc::now())
}

impl SqliteStore {
    /// Opens (creating if needed) the mirror for writing and brings its schema up to date.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<SqliteStore, StoreError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(StoreError::NoDirectory {
                path: dir.to_owned(),
            });
        }
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(busy_timeout).map_err(open_err)?;
        // Larger pages mean fewer B-tree splits for the randomly keyed indexes. It only
        // takes effect on a new file (before WAL is switched on), which is when it matters.
        conn.pragma_update(None, "page_size", 16384)
            .map_err(open_err)?;
        // WAL lets analysts read while a run writes; NORMAL sync keeps every commit
        // atomic and survives a process crash (kill -9), at the cost of the last
        // commits on power loss, which the next run re-fetches anyway.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        // A group commit dirties a few thousand pages (the appended rows, and the leaves
        // of every randomly keyed index): with SQLite's default 2 MiB cache they spill to
        // the WAL mid-transaction and are written again at the commit.
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)
            .map_err(open_err)?;
        // Checkpoint every 64 MiB of WAL instead of 16: a page rewritten by several
        // commits is copied into the database once per checkpoint.
        conn.pragma_update(None, "wal_autocheckpoint", 4096)
            .map_err(open_err)?;
        // Foreign keys are enforced from here on, not during migrations (the bundled
        // SQLite turns them on by default): a table rebuild (migration 7) drops the
        // old table, which with them on would fail or cascade into the tables that
        // refer to it. Its hook checks them instead.
        conn.pragma_update(None, "foreign_keys", "OFF")
            .map_err(open_err)?;
        migrations()
            .to_latest(&mut conn)
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        Ok(SqliteStore {
            conn,
            path: path.to_owned(),
            writable: true,
        })
    }

    /// Opens an existing mirror for reading only: `status`, `query` and the planner.
    pub fn open_read_only(path: &Path, busy_timeout: Duration) -> Result<SqliteStore, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_owned(),
            });
        }
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(open_err)?;
        conn.busy_timeout(busy_timeout).map_err(open_err)?;
        conn.pragma_update(None, "query_only", true)
            .map_err(open_err)?;
        Ok(SqliteStore {
            conn,
            path: path.to_owned(),
            writable: false,
        })
    }

    /// The mirror file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw connection, for read-only SQL (the `query` command) and tests.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Marks runs left `running` by a process that died as `interrupted`. Only call
    /// with the writer lock held, when no other run can be live.
    pub fn recover_stale_runs(&self) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE sync_runs SET outcome = ?2, finished_at = ?1,
                    error = coalesce(error, 'the process stopped before the run ended')
             WHERE outcome = ?3",
            params![
                now(),
                Outcome::Interrupted.as_str(),
                Outcome::Running.as_str()
            ],
        )?)
    }

    /// Records the start of a run and returns its id.
    pub fn start_run(&self, kind: RunKind) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO sync_runs (kind, started_at, outcome) VALUES (?1, ?2, ?3)",
            params![kind.as_str(), now(), Outcome::Running.as_str()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records how a run ended, with its request counters.
    pub fn finish_run(
        &self,
        run_id: i64,
        outcome: Outcome,
        error: Option<&str>,
        requests: u64,
        retries: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sync_runs SET outcome = ?2, finished_at = ?3, error = ?4, requests = ?5, retries = ?6 WHERE id = ?1",
            params![run_id, outcome.as_str(), now(), error, requests as i64, retries as i64],
        )?;
        Ok(())
    }

    /// Records how many records the run skipped for an unreadable id (see
    /// `RunSummary::records_skipped`), whatever its outcome.
    pub fn note_records_skipped(&self, run_id: i64, skipped: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sync_runs SET records_skipped = ?2 WHERE id = ?1",
            params![run_id, skipped as i64],
        )?;
        Ok(())
    }

    /// When the last run may resume, if it was deferred (`sync_runs.resume_at`, the
    /// mirror's timestamp format); `None` when the last run was not deferred.
    pub fn deferred_until(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT resume_at FROM sync_runs ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// True once a backfill (or a full walk) has completed: later runs can be incremental.
    pub fn has_full_walk(&self) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                // A walk that completed without listing everyone still loaded the
                // mirror: the next run lists again, incrementally.
                "SELECT EXISTS (SELECT 1 FROM sync_runs
                                WHERE (outcome = 'succeeded' OR missing_customers > 0) AND kind IN ('backfill', 'full'))",
                [],
                |r| r.get(0),
            )?)
    }

    /// Start time of the last successful run of any kind.
    pub fn last_success_started_at(&self) -> Result<Option<String>, StoreError> {
        Ok(self.conn.query_row(
            "SELECT max(started_at) FROM sync_runs WHERE outcome = 'succeeded'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Records where run `run_id` reads transactions from (`feed` or `per_customer`)
    /// and, when `sync.transactions_source = "auto"` fell back, why (`note`).
    pub fn note_transactions_source(
        &self,
        run_id: i64,
        source: &str,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sync_runs SET transactions_source = ?2, source_note = ?3 WHERE id = ?1",
            params![run_id, source, note],
        )?;
        Ok(())
    }

    /// Where the latest run that recorded it read transactions from; `None` before any.
    pub fn last_transactions_source(&self) -> Result<Option<SourceReport>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT transactions_source, source_note FROM sync_runs
                 WHERE transactions_source IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(SourceReport {
                        source: r.get(0)?,
                        fallback: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Start and end times of the last successful run of any kind (the mirror's
    /// timestamp format): where a restarted daemon's metrics take the mirror's lag from.
    pub fn last_success_times(&self) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT started_at, finished_at FROM sync_runs
                 WHERE outcome = 'succeeded' AND finished_at IS NOT NULL
                 ORDER BY started_at DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Start time of the last successful full walk.
    pub fn last_full_walk_started_at(&self) -> Result<Option<String>, StoreError> {
        Ok(self.conn.query_row(
            "SELECT max(started_at) FROM sync_runs WHERE outcome = 'succeeded' AND kind IN ('backfill', 'full')",
            [],
            |r| r.get(0),
        )?)
    }

    /// The walk in progress, if a run stopped before finishing one. A walk whose kind,
    /// phase or segment this version does not know is [`StoreError::UnreadableWalk`],
    /// never `None`: dropping it would lose what it had counted and read.
    pub fn walk(&self) -> Result<Option<Walk>, StoreError> {
        self.conn
            .query_row(
                "SELECT run_id, kind, started_at, phase, segment, next_page, page_size, last_total, initial,
                        pass, page_cap, list_counts, feed
                 FROM walk WHERE id = 1",
                [],
                |r| {
                    Ok(StoredWalk {
                        run_id: r.get(0)?,
                        kind: r.get(1)?,
                        started_at: r.get(2)?,
                        phase: r.get(3)?,
                        segment: r.get(4)?,
                        next_page: r.get(5)?,
                        page_size: r.get(6)?,
                        last_total: r.get(7)?,
                        initial: r.get(8)?,
                        pass: r.get(9)?,
                        page_cap: r.get(10)?,
                        counts: r.get(11)?,
                        feed: r.get(12)?,
                    })
                },
            )
            .optional()?
            .map(StoredWalk::read)
            .transpose()
    }

    /// Starts a new walk, forgetting any unfinished one.
    pub fn begin_walk(&mut self, w: &Walk) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM walk", [])?;
        tx.execute("DELETE FROM walk_seen", [])?;
        if w.initial {
            tx.execute_batch(
                "DROP INDEX IF EXISTS transactions_id; DROP INDEX IF EXISTS transactions_customer;
                 DROP INDEX IF EXISTS transactions_created_at; DROP INDEX IF EXISTS customers_email;",
            )?;
        }
        tx.execute(
            "INSERT INTO walk (id, run_id, kind, started_at, phase, segment, next_page, page_size, last_total, initial,
                               pass, page_cap, list_counts, feed)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                w.run_id,
                w.kind.as_str(),
                w.started_at,
                w.phase.as_str(),
                w.segment.as_str(),
                w.next_page as i64,
                w.page_size,
                w.last_total.map(|t| t as i64),
                w.initial,
                w.pass,
                w.page_cap,
                w.counts.to_json(),
                w.feed.as_ref().map(FeedCursor::to_json)
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Hands an unfinished walk to a new run.
    pub fn adopt_walk(&self, run_id: i64) -> Result<Option<i64>, StoreError> {
        let previous: Option<i64> = self
            .conn
            .query_row("SELECT run_id FROM walk WHERE id = 1", [], |r| r.get(0))
            .optional()?;
        self.conn
            .execute("UPDATE walk SET run_id = ?1 WHERE id = 1", params![run_id])?;
        self.conn.execute(
            "UPDATE sync_runs SET resumed_walk_of = ?2 WHERE id = ?1",
            params![run_id, previous],
        )?;
        Ok(previous)
    }

    /// Opens a write transaction, taking SQLite's write lock now rather than at the
    /// first write, so a busy database fails here and not halfway through a batch.
    pub fn begin(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Commits the transaction [`SqliteStore::begin`] opened.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    /// Rolls back the open transaction, if SQLite has not already done so after an
    /// error. Best effort: the error that led here is what gets reported.
    pub fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// Copies the WAL into the database and truncates it, so a finished run leaves no
    /// WAL behind (readers, copies and backups then see one whole file). False if
    /// another connection's read or write kept it from completing.
    pub fn checkpoint(&self) -> Result<bool, StoreError> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }

    /// Ends the walk and marks the run succeeded, atomically: a crash between the two
    /// would otherwise leave a finished walk that the next run would resume.
    ///
    /// `missing` customers counted by the list could not be read: the run then ends
    /// `failed` with `error`, never `succeeded`, though its walk is over.
    pub fn complete_walk(
        &mut self,
        run_id: i64,
        requests: u64,
        retries: u64,
        missing: Option<(u64, &str)>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM walk", [])?;
        tx.execute("DELETE FROM walk_seen", [])?;
        tx.pragma_update(None, "cache_size", INDEX_BUILD_CACHE_KIB)?;
        tx.execute_batch(DEFERRED_INDEXES)?;
        tx.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
        let (outcome, count, error) = match missing {
            None => (Outcome::Succeeded, 0, None),
            Some((n, e)) => (Outcome::Failed, n, Some(e)),
        };
        tx.execute(
            "UPDATE sync_runs SET outcome = ?5, finished_at = ?2, error = ?6, requests = ?3, retries = ?4,
                                  missing_customers = ?7
             WHERE id = ?1",
            params![run_id, now(), requests as i64, retries as i64, outcome.as_str(), error, count as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// What the mirror knows of every customer, read in one pass at the start of a
    /// run. Per-page queries would be cheaper in memory but not in time: every commit
    /// of the writer invalidates a reader's page cache, so each page's lookups would
    /// re-read their B-tree pages from the file.
    pub fn plan_snapshot(
        &self,
        hot_after: &str,
        pending_after: &str,
    ) -> Result<HashMap<Box<str>, PlanInfo>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT c.id, c.raw, c.updated_at, c.deleted_at IS NOT NULL, coalesce(s.live_tx, 0),
                    coalesce(s.last_tx_at >= ?1, 0), coalesce(s.newest_pending_at >= ?2, 0), s.customer_id IS NOT NULL
             FROM customers c LEFT JOIN customer_sync s ON s.customer_id = c.id",
        )?;
        let mut rows = stmt.query(params![hot_after, pending_after])?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let raw = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let updated_at: Option<String> = r.get(2)?;
            let info = PlanInfo {
                raw_hash: text_hash(raw),
                updated_at_hash: text_hash(updated_at.as_deref().unwrap_or("")),
                deleted: r.get(3)?,
                live_transactions: r.get::<_, i64>(4)?.clamp(0, u32::MAX as i64) as u32,
                hot: r.get(5)?,
                pending: r.get(6)?,
                checked: r.get(7)?,
            };
            out.insert(id.into_boxed_str(), info);
        }
        Ok(out)
    }

    /// The feed's watermark: the newest `created_at` a complete feed pass saw.
    pub fn feed_watermark(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT watermark FROM feed_state WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// The rolling re-read's state ([`FeedRolling`]); the default before any feed pass.
    pub fn feed_rolling(&self) -> Result<FeedRolling, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT rolling_end, rolling_since FROM feed_state WHERE id = 1",
                [],
                |r| {
                    Ok(FeedRolling {
                        end: r.get(0)?,
                        since: r.get(1)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    /// The mirror's live transactions created before `floor`, and of those, before
    /// `top` (text order is time order in the mirror's form): the rolling re-read's
    /// rows in all, and those its cycle has yet to read. One scan.
    pub fn live_transactions_before(
        &self,
        floor: &str,
        top: &str,
    ) -> Result<(u64, u64), StoreError> {
        let (all, left): (Option<i64>, Option<i64>) = self.conn.query_row(
            "SELECT sum(created_at < ?1), sum(created_at < ?2) FROM transactions
             WHERE deleted_at IS NULL AND created_at < ?1",
            params![floor, top],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        Ok((n(all), n(left)))
    }

    /// The live transactions created in the window from `lower` up to `upper`
    /// (inclusive), as timestamps in the mirror's form compare as text: what a complete
    /// feed read of that window should have shown. The feed checks one window per page
    /// (`sync::feed::Vanished`), so each query is a range of the `created_at` index,
    /// about a page of ids, never the whole pass; one SQL text per kind of bound, since
    /// `?1 IS NULL OR ...` would keep SQLite from bounding the index range.
    pub fn live_transactions_between(
        &self,
        lower: std::ops::Bound<&str>,
        upper: &str,
    ) -> Result<Vec<String>, StoreError> {
        use std::ops::Bound;
        const LIVE: &str =
            "SELECT transaction_id FROM transactions WHERE deleted_at IS NULL AND created_at <= ?1";
        let (sql, low) = match lower {
            Bound::Unbounded => (LIVE.to_string(), None),
            Bound::Included(l) => (format!("{LIVE} AND created_at >= ?2"), Some(l)),
            Bound::Excluded(l) => (format!("{LIVE} AND created_at > ?2"), Some(l)),
        };
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let id = |r: &rusqlite::Row| r.get::<_, String>(0);
        let ids: rusqlite::Result<Vec<String>> = match low {
            None => stmt.query_map(params![upper], id)?.collect(),
            Some(l) => stmt.query_map(params![upper, l], id)?.collect(),
        };
        Ok(ids?)
    }

    /// Which of `ids` the mirror holds a customer row for (live or deleted).
    pub fn known_customers<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM customers WHERE id = ?1")?;
        let mut out = std::collections::HashSet::new();
        for id in ids {
            if stmt.exists(params![id])? {
                out.insert(id.to_string());
            }
        }
        Ok(out)
    }

    /// Customers the walk missed in the list but found present when it asked for them
    /// one by one (the confirm phase): the list counted them, so they are not missing.
    pub fn confirmed_present(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM walk_seen w JOIN customers c ON c.id = w.customer_id
             WHERE w.segment = 'confirm' AND c.deleted_at IS NULL",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Customers the unfinished walk had seen before this process took it over, with
    /// where. A place this version does not know is [`StoreError::UnreadableWalk`].
    pub fn walk_seen(&self) -> Result<Vec<(String, SeenIn)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT customer_id, segment FROM walk_seen")?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        seen_rows(rows)
    }

    /// Live mirrored customers the walk in progress has not seen yet.
    pub fn unseen_live_customers(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM customers c INDEXED BY customers_live
             WHERE deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM walk_seen w WHERE w.customer_id = c.id)
             ORDER BY id LIMIT ?1",
        )?;
        let ids = stmt
            .query_map(params![limit as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// Customers whose transactions may hold something new, for the rolling schedule:
    /// live, not listed as inactive by this walk, not re-read since `before`; the
    /// longest unread first.
    pub fn rolling_candidates(
        &self,
        before: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT c.id {ROLLING_ELIGIBLE} AND (s.tx_checked_at IS NULL OR s.tx_checked_at < ?1)
             ORDER BY s.tx_checked_at IS NOT NULL, s.tx_checked_at, c.id LIMIT ?2"
        ))?;
        let ids = stmt
            .query_map(params![before, limit as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// How many customers the rolling schedule covers, and how many of them have not
    /// been re-read since `overdue_before` (one pass over the customers).
    pub fn rolling_counts(&self, overdue_before: &str) -> Result<(u64, u64), StoreError> {
        let (eligible, overdue): (i64, i64) = self.conn.query_row(
            &format!(
                "SELECT count(*), coalesce(sum(s.tx_checked_at IS NULL OR s.tx_checked_at < ?1), 0) {ROLLING_ELIGIBLE}"
            ),
            params![overdue_before],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((eligible as u64, overdue as u64))
    }
}

/// Live customers whose details are not known at their current `updated_at`
/// (`customers.details_updated_at`, migration 13): the index `customers_lacking_details`
/// covers exactly this condition.
const LACKING_DETAILS: &str = "FROM customers INDEXED BY customers_lacking_details
     WHERE deleted_at IS NULL
       AND (details_updated_at IS NULL OR details_updated_at <> COALESCE(updated_at, ''))";

impl SqliteStore {
    /// How many live customers lack details (metadata unknown, or read before their
    /// last change): what the background fill has left (`status`).
    pub fn lacking_details(&self) -> Result<u64, StoreError> {
        let n: i64 =
            self.conn
                .query_row(&format!("SELECT count(*) {LACKING_DETAILS}"), [], |r| {
                    r.get(0)
                })?;
        Ok(n as u64)
    }

    /// The next `limit` customers the background fill reads (`GET /customers/{id}`):
    /// changed ones first (details read before, `updated_at` moved since: the mirror
    /// holds stale metadata for them), then never read; newest first within each.
    pub fn details_candidates(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id {LACKING_DETAILS}
             ORDER BY details_updated_at IS NULL, created_at DESC, id DESC LIMIT ?1"
        ))?;
        let ids = stmt
            .query_map(params![limit as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }
}

/// The `walk` row as either store reads it (SQLite's text and integers; PostgreSQL's
/// through `ts_text` and `bigint`), before it is checked into a [`Walk`].
pub(super) struct StoredWalk {
    pub(super) run_id: i64,
    pub(super) kind: String,
    pub(super) started_at: String,
    pub(super) phase: String,
    pub(super) segment: String,
    pub(super) next_page: i64,
    pub(super) page_size: i64,
    pub(super) last_total: Option<i64>,
    pub(super) initial: bool,
    pub(super) pass: i64,
    pub(super) page_cap: Option<i64>,
    /// `walk.list_counts`, JSON.
    pub(super) counts: String,
    /// `walk.feed`, JSON.
    pub(super) feed: Option<String>,
}

impl StoredWalk {
    /// The walk, or [`StoreError::UnreadableWalk`] for a word or JSON this version does
    /// not know (never `None`: dropping it would lose what it had counted and read).
    pub(super) fn read(self) -> Result<Walk, StoreError> {
        let StoredWalk {
            run_id,
            kind,
            started_at,
            phase,
            segment,
            next_page,
            page_size,
            last_total,
            initial,
            pass,
            page_cap,
            counts,
            feed,
        } = self;
        Ok(Walk {
            run_id,
            kind: RunKind::parse(&kind).ok_or_else(|| unreadable("kind", &kind))?,
            started_at,
            phase: Phase::parse(&phase).ok_or_else(|| unreadable("phase", &phase))?,
            segment: StatusFilter::parse(&segment)
                .ok_or_else(|| unreadable("segment", &segment))?,
            next_page: next_page.max(1) as u64,
            page_size: page_size as u32,
            last_total: last_total.map(|t| t as u64),
            pass: pass as u32,
            page_cap: page_cap.map(|c| c as u32),
            counts: list_counts(&counts)?,
            initial,
            feed: feed.as_deref().map(feed_cursor).transpose()?,
        })
    }
}

/// `walk_seen` rows (customer, stored word) checked into [`SeenIn`]s; a word this
/// version does not know is [`StoreError::UnreadableWalk`].
pub(super) fn seen_rows(rows: Vec<(String, String)>) -> Result<Vec<(String, SeenIn)>, StoreError> {
    rows.into_iter()
        .map(|(id, s)| match SeenIn::parse(&s) {
            Some(seen) => Ok((id, seen)),
            None => Err(unreadable("walk_seen.segment", &s)),
        })
        .collect()
}

/// The error for a walk column holding a value this version does not know.
fn unreadable(column: &str, value: &str) -> StoreError {
    StoreError::UnreadableWalk {
        detail: format!("{column} {value:?}"),
    }
}

/// Reads `walk.feed`; a value that does not parse is an error, never a pass silently
/// restarted or skipped.
fn feed_cursor(text: &str) -> Result<FeedCursor, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::UnreadableWalk {
        detail: format!("feed {text:?}: {e}"),
    })
}

impl FeedCursor {
    /// The same pass started again from the top of the feed, keeping what it learned
    /// of the feed's pages (their size, a silent cap) and its floor.
    pub fn from_top(&self) -> FeedCursor {
        FeedCursor {
            end: None,
            next_page: 1,
            read_to: 0,
            probe_after: None,
            window_top: None,
            ..self.clone()
        }
    }

    /// The cursor as stored in `walk.feed` (JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a cursor of numbers and strings serializes")
    }
}

/// Reads `walk.list_counts`; a value that does not parse is an error, never a silent
/// "nothing counted" (which could let an incomplete walk pass its check).
fn list_counts(text: &str) -> Result<ListCounts, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::UnreadableWalk {
        detail: format!("list_counts {text:?}: {e}"),
    })
}
