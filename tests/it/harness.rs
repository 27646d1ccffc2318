//! Helpers to run the mirror against a [`TestSim`]: in-process runs for most tests, and
//! the real binary (`lomi-sync`) for the tests that need signals, exit codes or `kill -9`.
//! A mirror is in SQLite (the default) or, with [`Mirror::on`] and
//! [`Backend::Postgres`], in a schema of its own on the test server (`pg_schema`); the
//! reading helpers (`count`, `text`, `strings`, `differences`, `runs_sum`) work on both.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use lomi_sync::app;
use lomi_sync::config::{ApiKey, Settings, TransactionsSource};
use lomi_sync::store::{Location, RunKind, Store};
use lomi_sync::sync::{NoProgress, RunRequest, RunSummary, SyncError};
use rusqlite::Connection;
use tokio_util::sync::CancellationToken;

use crate::pg_schema::PgSchema;
use crate::support::TestSim;

/// Which store a test's mirror is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `store.path`, a file in the mirror's temporary directory.
    Sqlite,
    /// `store.url`, a fresh schema on the test server ([`PgSchema`]).
    Postgres,
}

/// A mirror in a temporary directory, configured for a simulator.
pub struct Mirror {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub settings: Settings,
    pub key: String,
    /// The client's `defer_after`, as the daemon sets it (`None`: waits, as one-shot
    /// commands do).
    pub defer_after: Option<Duration>,
    /// The mirror's schema when it is in PostgreSQL (dropped with the mirror).
    pub pg: Option<PgSchema>,
}

impl Mirror {
    /// Small pages (so a few hundred customers make many pages), no rate limit, quick retries.
    pub fn new(sim: &TestSim) -> Mirror {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("mirror.db");
        let mut settings = Settings::default();
        settings.api.base_url = sim.base_url.parse().expect("the simulator's URL");
        settings.api.page_size = 25;
        settings.api.concurrency = 4;
        settings.api.requests_per_second = 0.0;
        settings.api.max_requests_per_window = 0;
        settings.api.max_backoff = Duration::from_millis(20).into();
        settings.api.timeout = Duration::from_secs(5).into();
        settings.store.path = db.clone();
        Mirror {
            dir,
            db,
            settings,
            key: sim.api_key.clone(),
            defer_after: None,
            pg: None,
        }
    }

    /// [`Mirror::new`] in `backend`: for PostgreSQL, `store.url` is the test server,
    /// `store.schema` a fresh schema and `store.password_file` a 0600 file holding the
    /// password (fails, saying how to run the tests, when there is no server).
    pub fn on(sim: &TestSim, backend: Backend) -> Mirror {
        let mut m = Mirror::new(sim);
        if backend == Backend::Postgres {
            let pg = PgSchema::new();
            m.settings.store.url = Some(pg.url.clone());
            m.settings.store.schema = pg.schema.clone();
            m.settings.store.password_file = Some(pg.password_file.path().to_owned());
            m.pg = Some(pg);
        }
        m
    }

    /// Where the mirror is, as the binary reads it from the settings.
    pub fn location(&self) -> Location {
        self.settings
            .store_location()
            .expect("the test settings name a store")
    }

    /// [`Mirror::new`] reading transactions per customer (`GET
    /// /customers/{id}/transactions`), for the tests whose point is that walk: its
    /// planner, its rolling re-read, its request counts. The default (`auto`) reads the
    /// simulator's feed.
    pub fn per_customer(sim: &TestSim) -> Mirror {
        let mut m = Mirror::new(sim);
        m.settings.sync.transactions_source = TransactionsSource::PerCustomer;
        m
    }

    /// Runs one walk in-process, as `lomi-sync backfill`/`sync` would: through the
    /// library's one wiring ([`app::Mirror::build`]), as the binary does.
    pub async fn run(&self, kind: RunKind) -> Result<RunSummary, SyncError> {
        self.run_with(kind, false, &CancellationToken::new()).await
    }

    pub async fn run_with(
        &self,
        kind: RunKind,
        restart: bool,
        cancel: &CancellationToken,
    ) -> Result<RunSummary, SyncError> {
        let mirror = app::Mirror::build_with(
            &self.settings,
            &ApiKey::new(self.key.clone()),
            cancel.clone(),
            self.defer_after,
        )
        .expect("a mirror from the test settings");
        let _lock = mirror.lock(kind.as_str(), false)?;
        mirror.run(RunRequest { kind, restart }, &NoProgress).await
    }

    /// The SQLite mirror's file (a PostgreSQL mirror has none: use the helpers below).
    pub fn conn(&self) -> Connection {
        assert!(self.pg.is_none(), "conn() opens the SQLite file");
        Connection::open(&self.db).expect("open the mirror")
    }

    /// The mirror opened read-only, as `status` and `query` open it.
    pub fn store(&self) -> Store {
        Store::open_read_only(&self.location(), Duration::from_secs(5)).expect("open the mirror")
    }

    /// Differences from the simulator's truth (empty when equal), through
    /// `lomi_sync::verify`: the one place the tests compare a mirror with the truth.
    pub fn differences(&self, sim: &TestSim) -> Vec<String> {
        lomi_sync::verify::differences(&self.store(), &sim.sim.truth(), 10).expect("compare")
    }

    pub fn assert_equals_truth(&self, sim: &TestSim) {
        let d = self.differences(sim);
        assert!(
            d.is_empty(),
            "the mirror differs from the source:\n{}",
            d.join("\n")
        );
    }

    /// `sql`'s one integer value (SQL both stores read: `count(*)`, `sum(..)`).
    pub fn count(&self, sql: &str) -> i64 {
        match &self.pg {
            None => self.conn().query_row(sql, [], |r| r.get(0)).expect(sql),
            Some(pg) => pg.count(sql).unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// `sql`'s one value as text (`None` for NULL).
    pub fn text(&self, sql: &str) -> Option<String> {
        match &self.pg {
            None => self
                .conn()
                .query_row(&format!("SELECT CAST(({sql}) AS TEXT)"), [], |r| r.get(0))
                .expect(sql),
            Some(pg) => pg.text(sql).unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// The first column, of type text, of each row of `sql`.
    pub fn strings(&self, sql: &str) -> Vec<String> {
        match &self.pg {
            None => {
                let conn = self.conn();
                let mut stmt = conn.prepare(sql).expect(sql);
                stmt.query_map([], |r| r.get(0))
                    .expect(sql)
                    .map(|r| r.expect(sql))
                    .collect()
            }
            Some(pg) => pg.strings(sql).unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// `PRAGMA integrity_check`: "ok" for a sound file. PostgreSQL checks its own pages
    /// (a killed client cannot tear them), so there it is "ok" once the mirror reads.
    pub fn integrity(&self) -> String {
        match &self.pg {
            None => self
                .conn()
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .expect("integrity_check"),
            Some(pg) => {
                pg.count("SELECT count(*) FROM customers")
                    .expect("the mirror reads");
                "ok".into()
            }
        }
    }

    /// Whether the mirror has been created (its `sync_runs` table exists).
    pub fn exists(&self) -> bool {
        match &self.pg {
            None => {
                self.db.exists()
                    && self.count(
                        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'sync_runs'",
                    ) > 0
            }
            Some(pg) => pg
                .count(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() \
                     AND tablename = 'sync_runs'",
                )
                .expect("read pg_tables")
                > 0,
        }
    }

    /// [`runs_sum`] of this mirror, in either store: 0 while it has no `sync_runs` yet.
    pub fn runs_sum(&self, expr: &str) -> i64 {
        match &self.pg {
            None => runs_sum(&self.db, expr),
            Some(pg) => pg
                .count(&format!("SELECT coalesce({expr}, 0) FROM sync_runs"))
                .unwrap_or(0),
        }
    }

    /// Writes the settings as a TOML file for the binary, and returns its path. A
    /// `sync.transactions_source` other than the default goes into `extra`'s `[sync]`
    /// section (or one of its own).
    pub fn config_file(&self, extra: &str) -> PathBuf {
        let s = &self.settings;
        let source = match s.sync.transactions_source {
            TransactionsSource::Auto => None,
            TransactionsSource::PerCustomer => Some("per_customer"),
            TransactionsSource::Feed => Some("feed"),
        };
        let extra = match source {
            None => extra.to_string(),
            Some(v) => {
                let line = format!("transactions_source = \"{v}\"\n");
                if extra.contains("[sync]\n") {
                    extra.replacen("[sync]\n", &format!("[sync]\n{line}"), 1)
                } else {
                    format!("{extra}\n[sync]\n{line}")
                }
            }
        };
        let store = match &s.store.url {
            None => format!("path = \"{}\"", self.db.display()),
            Some(url) => {
                let mut t = format!("url = \"{url}\"\nschema = \"{}\"", s.store.schema);
                if let Some(f) = &s.store.password_file {
                    t.push_str(&format!("\npassword_file = \"{}\"", f.display()));
                }
                t
            }
        };
        let text = format!(
            "[api]\nbase_url = \"{}\"\npage_size = {}\nconcurrency = {}\nrequests_per_second = 0\n\
             max_requests_per_window = 0\nmax_backoff = \"20ms\"\ntimeout = \"5s\"\n\n[store]\n{store}\n\n{extra}\n",
            s.api.base_url, s.api.page_size, s.api.concurrency,
        );
        let path = self.dir.path().join("lomi-sync.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lomi-sync")
}

/// A command for the binary with a clean environment: only PATH, the key and `envs`.
pub fn command(config: Option<&Path>, key: Option<&str>, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .kill_on_drop(true);
    if let Some(k) = key {
        cmd.env("LOMI_API_KEY", k);
    }
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(args);
    cmd
}

/// Runs the binary to completion (with a generous timeout) and returns its output.
pub async fn run_bin(config: Option<&Path>, key: Option<&str>, args: &[&str]) -> Output {
    let fut = command(config, key, args).output();
    tokio::time::timeout(Duration::from_secs(120), fut)
        .await
        .expect("lomi-sync finished in time")
        .expect("lomi-sync ran")
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A sum over `sync_runs` (e.g. `sum(pages)`) read from another connection, as a
/// watcher would; 0 while the database or its schema does not exist yet.
pub fn runs_sum(db: &Path, expr: &str) -> i64 {
    if !db.exists() {
        return 0;
    }
    Connection::open(db)
        .and_then(|c| {
            c.query_row(
                &format!("SELECT coalesce({expr}, 0) FROM sync_runs"),
                [],
                |r| r.get(0),
            )
        })
        .unwrap_or(0)
}

/// A simulator that answers every request `slow_ms` late, so runs last long enough to
/// be interrupted.
pub fn slow_sim_options(customers: usize, seed: u64, slow_ms: u64) -> lomi_sim::SimOptions {
    let mut opts = crate::support::small_sim_options(customers, seed);
    opts.faults = lomi_sim::Faults {
        p_slow: 1.0,
        slow_ms,
        ..Default::default()
    };
    opts
}

/// Polls `cond` every 20 ms for up to `secs` seconds.
pub async fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
