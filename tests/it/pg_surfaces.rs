//! The PostgreSQL store's surfaces against a real server (issue 17): `query`, `verify`,
//! TLS (`sslmode`), and the CLI's `status`, `backup` and `check-config`, never printing
//! the password. Each test works in a schema of its own (`t_surf_...`, dropped after).
//! The mirrors are filled with SQL here, the same rows in both stores, so what is
//! compared is the surfaces, not the sync engine.
//!
//! The server: `LOMI_TEST_PG_URL` and `LOMI_TEST_PG_PASSWORD` (`scripts/with-postgres`
//! starts a throwaway one and sets them). Without them these tests fail, saying so.

use std::process::{Command, Output};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lomi_sync::query::{self, Format, QueryError};
use lomi_sync::store::pg::{PgStore, PgTarget};
use lomi_sync::store::{Location, SqliteStore, Store, StoreError};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The test server's URL and password; panics, saying how to get one, when unset.
pub fn pg_env() -> (String, String) {
    let url = std::env::var("LOMI_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "LOMI_TEST_PG_URL is not set: the PostgreSQL tests need a server. Run the suite under \
             scripts/with-postgres (it starts a throwaway one), or export LOMI_TEST_PG_URL=\
             postgres://USER@127.0.0.1:PORT/DB and LOMI_TEST_PG_PASSWORD for an existing server"
        )
    });
    (
        url,
        std::env::var("LOMI_TEST_PG_PASSWORD").unwrap_or_default(),
    )
}

/// A schema of this test's own on the test server, dropped when it goes.
pub struct PgSchema {
    pub url: String,
    pub password: String,
    pub schema: String,
}

impl PgSchema {
    pub fn new() -> PgSchema {
        static N: AtomicU32 = AtomicU32::new(0);
        let (url, password) = pg_env();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!(
            "t_surf_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        PgSchema {
            url,
            password,
            schema,
        }
    }

    /// The mirror's address, as the settings would make it.
    pub fn target(&self) -> PgTarget {
        PgTarget::new(&self.url, &self.schema, Some(&self.password)).expect("the test URL")
    }

    /// A plain connection with `search_path` set to the schema, for filling it.
    pub fn client(&self) -> postgres::Client {
        let mut config = postgres::Config::from_str(&self.url).expect("the test URL");
        config.password(&self.password);
        config.options(&format!("-c search_path={}", self.schema));
        config
            .connect(postgres::NoTls)
            .expect("connect to the test server")
    }

    /// The binary, with the mirror in this schema (and no other environment).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lomi-sync"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOMI_SYNC__STORE__URL", &self.url)
            .env("LOMI_SYNC__STORE__SCHEMA", &self.schema)
            .env("PGPASSWORD", &self.password)
            .args(args);
        cmd
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = self.client().batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ));
    }
}

fn output(mut cmd: Command) -> (Output, String, String) {
    let out = cmd.output().expect("lomi-sync ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// The same rows in either dialect: three customers (c3 deleted, c2 with its details
/// pending) and three transactions, one with an amount past `f64`'s exact digits.
/// `seq` gives SQLite's `customer_seq` column and its value, empty for PostgreSQL.
fn fixture(seq: impl Fn(&str) -> (String, String)) -> Vec<String> {
    let customers = [
        (
            "c1",
            r#"{"id":"c1","name":"Aïssatou","metadata":{"tier":"gold"},"environment":"live","created_at":"2025-01-02T03:04:05.123456Z","updated_at":"2025-03-01T00:00:00Z"}"#,
            "'2025-01-02T03:04:05.123456Z'",
            "'2025-03-01T00:00:00.000000Z'",
            "'2025-03-01T00:00:00.000000Z'",
            "NULL",
            "true",
            r#"'{"tier":"gold"}'"#,
        ),
        (
            "c2",
            r#"{"id":"c2","name":"Bo","created_at":"2025-02-03T04:05:06Z","updated_at":"2025-02-03T04:05:06Z"}"#,
            "'2025-02-03T04:05:06.000000Z'",
            "'2025-02-03T04:05:06.000000Z'",
            "NULL",
            "NULL",
            "NULL",
            "NULL",
        ),
        (
            "c3",
            r#"{"id":"c3","name":"Gone"}"#,
            "NULL",
            "NULL",
            "NULL",
            "'2025-04-01T00:00:00.000000Z'",
            "false",
            "NULL",
        ),
    ];
    let mut sql: Vec<String> = customers
        .iter()
        .map(|(id, raw, created, updated, details, deleted, business, meta)| {
            format!(
                "INSERT INTO customers (id, name, raw, created_at, updated_at, details_updated_at,
                   deleted_at, is_business, metadata, first_seen_at, synced_at)
                 VALUES ('{id}', '{}', '{raw}', {created}, {updated}, {details}, {deleted},
                   {business}, {meta}, '2025-05-01T00:00:00.000000Z', '2025-05-01T00:00:00.000000Z')",
                serde_json::from_str::<serde_json::Value>(raw).unwrap()["name"]
                    .as_str()
                    .unwrap()
            )
        })
        .collect();
    let transactions = [
        (
            "t1",
            "c1",
            "1234567.10",
            "123456710",
            "EUR",
            "completed",
            "2025-01-05T06:07:08.000001Z",
        ),
        (
            "t2",
            "c1",
            "5000",
            "5000",
            "XOF",
            "pending",
            "2025-01-06T00:00:00.000000Z",
        ),
        (
            "t3",
            "c3",
            "7.5",
            "750",
            "USD",
            "completed",
            "2025-04-01T00:00:00.000000Z",
        ),
    ];
    for (tid, cid, gross, minor, currency, status, created) in transactions {
        let raw = json_raw(tid, gross, currency, status, created);
        let (col, val) = seq(cid);
        sql.push(format!(
            "INSERT INTO transactions ({col}transaction_id, customer_id, gross_amount, amount_minor,
               currency_code, status, created_at, first_seen_at, synced_at, raw)
             VALUES ({val}'{tid}', '{cid}', '{gross}', {minor}, '{currency}', '{status}', '{created}',
               '2025-05-01T00:00:00.000000Z', '2025-05-01T00:00:00.000000Z', '{raw}')"
        ));
    }
    sql
}

/// A transaction's raw JSON as the per-customer endpoint shows it (the amount a JSON
/// number with its digits, the currency in lower case as some services send it).
fn json_raw(tid: &str, gross: &str, currency: &str, status: &str, created: &str) -> String {
    format!(
        r#"{{"transaction_id":"{tid}","gross_amount":{gross},"currency_code":"{}","status":"{status}","created_at":"{created}"}}"#,
        currency.to_lowercase()
    )
}

/// The source's truth for [`fixture`]: c1 and c2 live (c2's metadata, which a list hides,
/// only here), c3 deleted.
fn truth() -> serde_json::Value {
    let tx = |tid, gross, currency, status, created| -> serde_json::Value {
        serde_json::from_str(&json_raw(tid, gross, currency, status, created)).unwrap()
    };
    json!({
        "customers": [
            serde_json::from_str::<serde_json::Value>(r#"{"id":"c1","name":"Aïssatou","metadata":{"tier":"gold"},"environment":"live","created_at":"2025-01-02T03:04:05.123456Z","updated_at":"2025-03-01T00:00:00Z"}"#).unwrap(),
            serde_json::from_str::<serde_json::Value>(r#"{"id":"c2","name":"Bo","metadata":{"x":1},"created_at":"2025-02-03T04:05:06Z","updated_at":"2025-02-03T04:05:06Z"}"#).unwrap(),
        ],
        "deleted_customer_ids": ["c3"],
        "transactions": {
            "c1": [
                tx("t1", "1234567.10", "EUR", "completed", "2025-01-05T06:07:08.000001Z"),
                tx("t2", "5000", "XOF", "pending", "2025-01-06T00:00:00.000000Z"),
            ],
            "c2": [],
        },
    })
}

/// A PostgreSQL mirror in `s`'s schema (migrated by `PgStore::open`) holding [`fixture`].
fn filled_pg(s: &PgSchema) {
    drop(PgStore::open(&s.target(), TIMEOUT).expect("create the PostgreSQL mirror"));
    let mut c = s.client();
    for sql in fixture(|_| (String::new(), String::new())) {
        c.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A SQLite mirror in `dir` holding [`fixture`].
fn filled_sqlite(dir: &std::path::Path) -> std::path::PathBuf {
    let db = dir.join("mirror.db");
    drop(SqliteStore::open(&db, TIMEOUT).expect("create the SQLite mirror"));
    let c = rusqlite::Connection::open(&db).unwrap();
    let seq = |cid: &str| {
        (
            "customer_seq, ".to_string(),
            format!("(SELECT rowid FROM customers WHERE id = '{cid}'), "),
        )
    };
    for sql in fixture(seq) {
        c.execute_batch(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    db
}

fn pg_reader(s: &PgSchema) -> Store {
    Store::open_read_only(&Location::Postgres(s.target()), TIMEOUT).expect("open read-only")
}

fn run_query(store: &Store, sql: &str, format: Format) -> Result<String, QueryError> {
    let mut out = Vec::new();
    query::run(store, sql, format, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn query_prints_the_same_text_from_both_stores() {
    let s = PgSchema::new();
    filled_pg(&s);
    let dir = tempfile::tempdir().unwrap();
    let db = filled_sqlite(dir.path());
    let pg = pg_reader(&s);
    let lite = Store::open_read_only(&Location::sqlite(&db), TIMEOUT).unwrap();
    let sql = "SELECT transaction_id, customer_id, gross_amount, amount_minor, currency_code, \
               created_at FROM transactions ORDER BY transaction_id";
    let csv = run_query(&pg, sql, Format::Csv).unwrap();
    assert_eq!(
        csv,
        "transaction_id,customer_id,gross_amount,amount_minor,currency_code,created_at\n\
         t1,c1,1234567.10,123456710,EUR,2025-01-05T06:07:08.000001Z\n\
         t2,c1,5000,5000,XOF,2025-01-06T00:00:00.000000Z\n\
         t3,c3,7.5,750,USD,2025-04-01T00:00:00.000000Z\n"
    );
    assert_eq!(run_query(&lite, sql, Format::Csv).unwrap(), csv);
    assert_eq!(
        run_query(&pg, sql, Format::Table).unwrap(),
        run_query(&lite, sql, Format::Table).unwrap()
    );
}

#[test]
fn query_renders_postgres_types_exactly_in_json() {
    let s = PgSchema::new();
    filled_pg(&s);
    let pg = pg_reader(&s);
    let out = run_query(
        &pg,
        "SELECT id, is_business, metadata, details_updated_at, deleted_at,
                (SELECT gross_amount FROM transactions WHERE transaction_id = 't1') AS gross,
                (SELECT sum(amount_minor) FROM transactions) AS minor,
                (created_at AT TIME ZONE 'UTC')::date AS day
         FROM customers WHERE id IN ('c1', 'c2') ORDER BY id",
        Format::Jsonl,
    )
    .unwrap();
    assert_eq!(
        out,
        "{\"id\":\"c1\",\"is_business\":true,\"metadata\":\"{\\\"tier\\\": \\\"gold\\\"}\",\
         \"details_updated_at\":\"2025-03-01T00:00:00.000000Z\",\"deleted_at\":null,\
         \"gross\":1234567.10,\"minor\":123462460,\"day\":\"2025-01-02\"}\n\
         {\"id\":\"c2\",\"is_business\":null,\"metadata\":null,\"details_updated_at\":null,\
         \"deleted_at\":null,\"gross\":1234567.10,\"minor\":123462460,\"day\":\"2025-02-03\"}\n"
    );
    let table = run_query(
        &pg,
        "SELECT is_business FROM customers ORDER BY id",
        Format::Table,
    );
    assert_eq!(
        table.unwrap(),
        "is_business\n-----------\ntrue\n\nfalse\n(3 rows)\n"
    );
}

#[test]
fn query_on_postgres_refuses_writes_and_second_statements() {
    let s = PgSchema::new();
    filled_pg(&s);
    let pg = pg_reader(&s);
    for write in [
        "DELETE FROM customers",
        "UPDATE customers SET name = 'x'",
        "DROP VIEW live_customers",
        "CREATE TABLE x (a int)",
        "SELECT nextval('sync_runs_id_seq')",
    ] {
        let e = run_query(&pg, write, Format::Table).unwrap_err();
        assert!(matches!(e, QueryError::Write), "{write}: {e}");
        assert!(e.to_string().contains("only reads"), "{e}");
    }
    let e = run_query(&pg, "SELECT 1; DELETE FROM customers", Format::Csv).unwrap_err();
    assert!(e.to_string().contains("one SQL statement"), "{e}");
    let e = run_query(&pg, "SELECT nope FROM customers", Format::Csv).unwrap_err();
    assert!(
        e.to_string().contains("column \"nope\" does not exist"),
        "{e}"
    );
    // The session is still usable after a refusal, and nothing was written.
    let n = run_query(&pg, "SELECT count(*) AS n FROM customers", Format::Csv).unwrap();
    assert_eq!(n, "n\n3\n");
}

#[test]
fn verify_finds_the_same_differences_in_both_stores() {
    let s = PgSchema::new();
    filled_pg(&s);
    let dir = tempfile::tempdir().unwrap();
    let db = filled_sqlite(dir.path());
    let truth = truth();
    let lite = || Store::open_read_only(&Location::sqlite(&db), TIMEOUT).unwrap();
    for store in [pg_reader(&s), lite()] {
        let d = lomi_sync::verify::differences(&store, &truth, 10).unwrap();
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(lomi_sync::verify::pending_details(&store).unwrap(), 1);
    }
    let changes = [
        "UPDATE customers SET deleted_at = NULL WHERE id = 'c3'",
        "UPDATE transactions SET currency_code = 'USD' WHERE transaction_id = 't2'",
        "DELETE FROM transactions WHERE transaction_id = 't1'",
        "UPDATE customers SET raw = '{\"id\":\"c2\",\"name\":\"Robert\",\"created_at\":\"2025-02-03T04:05:06Z\",\"updated_at\":\"2025-02-03T04:05:06Z\"}' WHERE id = 'c2'",
    ];
    let mut c = s.client();
    let sqlite = rusqlite::Connection::open(&db).unwrap();
    for sql in changes {
        c.batch_execute(sql).unwrap();
        sqlite.execute_batch(sql).unwrap();
    }
    let expected = [
        "customer c2 differs: mirror {\"id\":\"c2\",\"name\":\"Robert\",",
        "customer c3 is live in the mirror but not at the source",
        "customer c3 was deleted at the source but is live in the mirror",
        "transaction t2: columns [\"created_at\", \"currency_code\"] hold [Some(\"2025-01-06T00:00:00.000000Z\"), Some(\"USD\")], expected [Some(\"2025-01-06T00:00:00.000000Z\"), Some(\"XOF\")]",
        "transaction t1 of customer c1 is missing from the mirror",
    ];
    let from_pg = lomi_sync::verify::differences(&pg_reader(&s), &truth, 10).unwrap();
    let from_lite = lomi_sync::verify::differences(&lite(), &truth, 10).unwrap();
    assert_eq!(from_pg.len(), expected.len(), "{from_pg:#?}");
    for (d, e) in from_pg.iter().zip(expected) {
        assert!(d.starts_with(e), "{d}\n  expected {e}");
    }
    // The raw JSON prints differently (jsonb's spacing), the verdicts do not.
    let verdict = |d: &String| d.split(": mirror").next().unwrap().to_string();
    assert_eq!(
        from_pg.iter().map(verdict).collect::<Vec<_>>(),
        from_lite.iter().map(verdict).collect::<Vec<_>>()
    );
    assert_eq!(
        lomi_sync::verify::pending_details(&pg_reader(&s)).unwrap(),
        2
    );
    assert_eq!(lomi_sync::verify::pending_details(&lite()).unwrap(), 2);
}

#[test]
fn sslmode_require_fails_naming_it_when_the_server_offers_no_tls() {
    let s = PgSchema::new();
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = format!("{}?sslmode={mode}", s.url);
        let t = PgTarget::new(&url, &s.schema, Some(&s.password)).unwrap();
        let e = match PgStore::open(&t, TIMEOUT) {
            Err(e) => e,
            Ok(_) => panic!("{mode}: connected without TLS"),
        };
        assert!(matches!(e, StoreError::Tls { .. }), "{mode}: {e:?}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("sslmode={mode}")) && text.contains("does not offer TLS"),
            "{text}"
        );
        assert!(!text.contains(&s.password), "{text}");
    }
    // `prefer` (the default) and `disable` connect in plain text.
    for url in [
        format!("{}?sslmode=prefer", s.url),
        s.url.clone(),
        format!("{}?sslmode=disable", s.url),
    ] {
        let t = PgTarget::new(&url, &s.schema, Some(&s.password)).unwrap();
        PgStore::open(&t, TIMEOUT).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn query_and_status_run_from_the_binary_against_postgres() {
    let s = PgSchema::new();
    // No mirror in the schema yet: status says how to make one.
    let (out, _, err) = output(s.command(&["status"]));
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("does not exist yet") && err.contains(&s.schema),
        "{err}"
    );
    filled_pg(&s);
    let sql = "SELECT id, is_business FROM live_customers ORDER BY id";
    let (out, stdout, err) = output(s.command(&["query", sql, "--format", "csv"]));
    assert!(out.status.success(), "{err}");
    assert_eq!(stdout, "id,is_business\nc1,true\nc2,\n");
    let (out, _, err) = output(s.command(&["query", "DELETE FROM customers"]));
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("only reads"), "{err}");
    let (out, _, err) = output(s.command(&["query", "SELECT count(*) FROM customers"]));
    assert!(out.status.success(), "{err}");
}

#[test]
fn backup_of_a_postgres_mirror_points_to_pg_dump() {
    let s = PgSchema::new();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("copy.db");
    let (out, _, err) = output(s.command(&["backup", target.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("pg_dump") && err.contains(&format!("--schema={}", s.schema)),
        "{err}"
    );
    assert!(!target.exists());
    assert!(!err.contains(&s.password), "{err}");
}

#[test]
fn check_config_refuses_bad_store_urls_naming_the_key() {
    let s = PgSchema::new();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-password-file");
    let cases: [(&str, Option<&std::path::Path>, &str); 4] = [
        ("mysql://lomi@127.0.0.1/db", None, "store.url"),
        (
            "postgres://lomi:hunter2-secret@127.0.0.1/db",
            None,
            "store.url",
        ),
        (
            "postgres://lomi@127.0.0.1/db?sslmode=sometimes",
            None,
            "store.url",
        ),
        (&s.url, Some(&missing), "store.password_file"),
    ];
    for (url, password_file, key) in cases {
        let mut cmd = s.command(&["check-config"]);
        cmd.env("LOMI_SYNC__STORE__URL", url);
        if let Some(p) = password_file {
            cmd.env("LOMI_SYNC__STORE__PASSWORD_FILE", p);
        }
        let (out, stdout, err) = output(cmd);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(err.contains(key), "{url}: {err}");
        assert!(!format!("{stdout}{err}").contains("hunter2"), "{err}");
    }
    // A good one: where the store is and where its password comes from, not the password.
    let (out, stdout, err) = output(s.command(&["check-config"]));
    assert!(out.status.success(), "{err}");
    assert!(
        stdout.contains("# store: PostgreSQL") && stdout.contains("password from PGPASSWORD"),
        "{stdout}"
    );
    assert!(!stdout.contains(&s.password) && !err.contains(&s.password));
}

#[test]
fn no_command_prints_the_password_whatever_fails() {
    let s = PgSchema::new();
    let marker = "pw-Zq81x-never-printed";
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = s.url.split('?').next().unwrap().to_string();
    let (host_part, db) = base.rsplit_once('/').unwrap();
    let user = host_part
        .trim_start_matches("postgres://")
        .split('@')
        .next()
        .unwrap();
    let urls = [
        // Nothing listens there.
        format!("postgres://{user}@127.0.0.1:{closed}/{db}"),
        // The server, with the marker as a wrong password.
        s.url.clone(),
        // TLS asked of a server without it.
        format!("{}?sslmode=require", s.url),
    ];
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    for url in &urls {
        for args in [
            vec!["status"],
            vec!["status", "--json"],
            vec!["query", "SELECT 1"],
            vec!["check-config"],
            vec!["backup", copy.to_str().unwrap()],
        ] {
            let mut cmd = s.command(&args);
            cmd.env("LOMI_SYNC__STORE__URL", url)
                .env("PGPASSWORD", marker)
                .env("RUST_LOG", "trace");
            let (out, stdout, err) = output(cmd);
            assert!(
                !stdout.contains(marker) && !err.contains(marker),
                "{url} {args:?} printed the password:\n{stdout}\n{err}"
            );
            if args[0] != "check-config" {
                assert_ne!(out.status.code(), Some(0), "{url} {args:?}: {stdout}");
            }
        }
    }
}
