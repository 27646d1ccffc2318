//! The PostgreSQL server the tests mirror into (issue 17): `LOMI_TEST_PG_URL` and
//! `LOMI_TEST_PG_PASSWORD`, as `scripts/with-postgres` exports them for a throwaway
//! cluster, or set by hand for an existing server. Each test's mirror gets a schema of
//! its own ([`PgSchema`]), dropped when the test ends, so tests running in parallel
//! never see each other's rows.
//!
//! Without `LOMI_TEST_PG_URL` the PostgreSQL tests fail, saying how to run them: a
//! silently skipped test would pass CI without ever touching the store it is about.
//!
//! The blocking `postgres` client starts a runtime of its own, which tokio forbids inside
//! the tests' runtime, so every call here runs on a scoped thread ([`off_runtime`]).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lomi_sync::store::Location;
use lomi_sync::store::pg::PgTarget;
use postgres::Client;

/// The server's URL (no password in it: `store.url` refuses one).
pub const URL_ENV: &str = "LOMI_TEST_PG_URL";
/// The password of the URL's role.
pub const PASSWORD_ENV: &str = "LOMI_TEST_PG_PASSWORD";

/// Why a PostgreSQL test cannot run, and the one command that runs it.
pub fn missing_server() -> String {
    format!(
        "the PostgreSQL tests need a server: run the suite with \
         `scripts/with-postgres cargo nextest run --release` (a throwaway cluster), or point \
         it at an existing server by setting {URL_ENV} (postgres://user@host:port/db, no \
         password in it) and {PASSWORD_ENV}"
    )
}

/// Runs `f` here, or on a scoped thread when this thread is inside a tokio runtime
/// (where the blocking client may not start its own).
pub fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// A fresh schema on the test server (`t_<pid>_<n>_<random>`: unique across the
/// suite's processes, the mirrors of one test, and a schema a killed earlier run left),
/// with the password in a file of its own for `store.password_file`. The schema itself
/// is created by the store (as a user's first run does); dropping this drops it, with
/// everything in it (best effort).
pub struct PgSchema {
    /// `LOMI_TEST_PG_URL`.
    pub url: String,
    /// The schema's name, for `store.schema`.
    pub schema: String,
    password: String,
    /// The password alone, created 0600 (as a user should keep it).
    pub password_file: tempfile::NamedTempFile,
    /// The harness's own session (search_path = the schema), opened on first use.
    client: Mutex<Option<Client>>,
}

impl PgSchema {
    /// A new schema on the server the environment names; panics with
    /// [`missing_server`] when it names none, and with the server's answer when the
    /// server cannot be reached, before any test step runs.
    pub fn new() -> PgSchema {
        let (Ok(url), Ok(password)) = (std::env::var(URL_ENV), std::env::var(PASSWORD_ENV)) else {
            panic!("{}", missing_server());
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let schema = format!(
            "t_{}_{}_{:08x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        );
        let mut password_file = tempfile::NamedTempFile::new().expect("a password file");
        writeln!(password_file, "{password}").expect("write the password file");
        let pg = PgSchema {
            url,
            schema,
            password,
            password_file,
            client: Mutex::new(None),
        };
        pg.with(|c| c.batch_execute("SELECT 1"))
            .unwrap_or_else(|e| {
                panic!("the test server does not answer: {e}\n{}", missing_server())
            });
        pg
    }

    /// Where the mirror is, as `Settings::store_location` makes it from this schema.
    pub fn target(&self) -> PgTarget {
        PgTarget::new(&self.url, &self.schema, Some(&self.password)).expect("the test server's URL")
    }

    /// [`PgSchema::target`] as a store location.
    pub fn location(&self) -> Location {
        Location::Postgres(self.target())
    }

    /// The password, for the tests that check it never shows.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Runs `f` with the harness's session (its `search_path` is the schema, so SQL is
    /// unqualified, as the store's), connecting on first use, off the runtime.
    pub fn with<R: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, postgres::Error> + Send,
    ) -> Result<R, postgres::Error> {
        let mut guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let slot: &mut Option<Client> = &mut guard;
        let target = self.target();
        off_runtime(move || {
            if slot.is_none() {
                let c = target
                    .connect("it harness", Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("connect to the test server: {e}"));
                *slot = Some(c);
            }
            f(slot.as_mut().expect("connected"))
        })
    }

    /// `sql`'s one value as a bigint.
    pub fn count(&self, sql: &str) -> Result<i64, postgres::Error> {
        let sql = format!("SELECT ({sql})::bigint");
        self.with(move |c| {
            Ok(c.query_one(&sql, &[])?
                .get::<_, Option<i64>>(0)
                .unwrap_or(0))
        })
    }

    /// `sql`'s one value as text (NULL: `None`).
    pub fn text(&self, sql: &str) -> Result<Option<String>, postgres::Error> {
        let sql = format!("SELECT ({sql})::text");
        self.with(move |c| Ok(c.query_one(&sql, &[])?.get(0)))
    }

    /// The first column (of type text) of every row of `sql`.
    pub fn strings(&self, sql: &str) -> Result<Vec<String>, postgres::Error> {
        let sql = sql.to_string();
        self.with(move |c| {
            let rows = c.query(&sql, &[])?;
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })
    }

    /// Rows inserted, updated and deleted in `tables` of the schema since the server
    /// started (`pg_stat_user_tables`), once the counts have settled. The writes were
    /// made by lomi-sync's sessions, and a session hands its counts to the server's
    /// statistics at most once a second while it lives and at its exit
    /// (`pg_stat_force_next_flush()` only flushes the calling session's own), so this
    /// waits until no session of this process but the harness's is left, then reads
    /// until two snapshots agree.
    pub fn tuple_writes(&self, tables: &[&str]) -> i64 {
        let schema = self.schema.clone();
        let tables: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let ours = format!("%(pid {})", std::process::id());
        self.with(move |c| {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let others: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE application_name LIKE $1 AND pid <> pg_backend_pid()",
                        &[&ours],
                    )?
                    .get(0);
                if others == 0 || std::time::Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let read = |c: &mut Client| -> Result<i64, postgres::Error> {
                c.batch_execute("SELECT pg_stat_clear_snapshot()")?;
                Ok(c.query_one(
                    "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint
                     FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = ANY($2)",
                    &[&schema, &tables],
                )?
                .get(0))
            };
            let mut last = read(c)?;
            loop {
                std::thread::sleep(Duration::from_millis(300));
                let now = read(c)?;
                if now == last || std::time::Instant::now() > deadline {
                    return Ok(now);
                }
                last = now;
            }
        })
        .expect("read pg_stat_user_tables")
    }
}

impl Drop for PgSchema {
    /// Drops the schema and all in it; best effort (a failure is printed, never a
    /// panic in a drop), with a lock timeout so that a session a killed binary left
    /// cannot hang the test.
    fn drop(&mut self) {
        let drop_sql = format!(
            "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        );
        let client = self
            .client
            .get_mut()
            .map(Option::take)
            .unwrap_or_else(|p| p.into_inner().take());
        let target = self.target();
        let result = off_runtime(move || {
            let mut c = match client {
                Some(c) => c,
                None => target.connect("it harness", Duration::from_secs(10))?,
            };
            c.batch_execute(&drop_sql)
                .map_err(lomi_sync::store::StoreError::from)
        });
        if let Err(e) = result {
            eprintln!("could not drop the test schema {}: {e}", self.schema);
        }
    }
}
