//! End-to-end benchmark: `lomi-sync sim` and the mirror as separate processes on
//! loopback, as a merchant would run them.
//!
//! ```text
//! cargo bench --bench mirror                       # 100,000 customers, 10 tx each
//! BENCH_CUSTOMERS=10000 cargo bench --bench mirror
//! scripts/with-postgres cargo bench --bench mirror -- --store postgres
//! ```
//!
//! With `--store postgres` the mirror is a schema of its own (dropped at the end) on the
//! server the tests use (`LOMI_TEST_PG_URL`, `LOMI_TEST_PG_PASSWORD`; `scripts/with-postgres`
//! starts a throwaway one), and the same data is first backfilled into SQLite as the
//! reference: issue 17's target is the PostgreSQL backfill's wall time at most twice
//! SQLite's in the same run, and its peak RSS at most 100 MB.
//!
//! For each step (dry run, backfill, sync with no change, sync after ~1% activity, and
//! a sync once `sync.full_every` has passed) it prints wall time, customers/s,
//! transactions/s, requests, rows written and the mirror process's peak RSS (from
//! `wait4`'s rusage). It then checks the mirror against the simulator's ground truth:
//! every customer change must be caught by the activity sync, and the mirror must be
//! exact once the staleness bound has passed; otherwise it panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lomi_sync::store::Location;
use lomi_sync::store::pg::PgTarget;

mod common;

use common::{KEY, differences, env_or, post, spawn_sim};

struct Step {
    name: &'static str,
    wall: Duration,
    customers: u64,
    transactions: u64,
    requests: u64,
    rows: u64,
    peak_rss_kb: i64,
}

/// Runs the binary to completion and returns (stdout, wall time, peak RSS in KiB).
// The child is reaped with wait4 (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_measured(
    bin: &Path,
    config: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (String, Duration, i64) {
    let started = Instant::now();
    let child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(envs.iter().copied())
        .env("LOMI_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start lomi-sync");
    let pid = child.id() as libc::pid_t;
    let mut stdout = String::new();
    let mut out = child.stdout.expect("stdout");
    std::io::Read::read_to_string(&mut out, &mut stdout).expect("read stdout");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped; status and usage are valid pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    let wall = started.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "lomi-sync {args:?} failed"
    );
    (stdout, wall, usage.ru_maxrss)
}

/// The last run's (requests, rows written, pages), in SQL both stores read.
const LAST_RUN: &str = "SELECT CAST(requests AS BIGINT),
        CAST(customers_inserted + customers_updated + customers_deleted + customers_restored +
             transactions_inserted + transactions_updated + transactions_deleted +
             transactions_restored AS BIGINT),
        CAST(pages AS BIGINT)
     FROM sync_runs ORDER BY id DESC LIMIT 1";

/// Where the benchmark's mirror is.
enum Store {
    /// `store.path`.
    Sqlite(PathBuf),
    /// `store.url`, `store.schema` and `store.password_file` (`--store postgres`).
    Postgres {
        url: String,
        schema: String,
        password: String,
        password_file: PathBuf,
    },
}

impl Store {
    /// A fresh schema on the test server, its password in a 0600 file in `dir`.
    fn postgres(dir: &Path) -> Store {
        let (Ok(url), Ok(password)) = (
            std::env::var("LOMI_TEST_PG_URL"),
            std::env::var("LOMI_TEST_PG_PASSWORD"),
        ) else {
            panic!(
                "--store postgres needs a server: run `scripts/with-postgres cargo bench --bench \
                 mirror -- --store postgres`, or set LOMI_TEST_PG_URL and LOMI_TEST_PG_PASSWORD"
            );
        };
        let password_file = dir.join("pg-password");
        std::fs::write(&password_file, format!("{password}\n")).expect("write the password");
        std::fs::set_permissions(
            &password_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod 600 the password file");
        Store::Postgres {
            url,
            schema: format!("bench_{}", std::process::id()),
            password,
            password_file,
        }
    }

    /// The `[store]` section of the config file.
    fn section(&self) -> String {
        match self {
            Store::Sqlite(db) => format!("[store]\npath = \"{}\"\n", db.display()),
            Store::Postgres {
                url,
                schema,
                password_file,
                ..
            } => format!(
                "[store]\nurl = \"{url}\"\nschema = \"{schema}\"\npassword_file = \"{}\"\n",
                password_file.display()
            ),
        }
    }

    fn client(&self) -> postgres::Client {
        self.target()
            .connect("lomi-sync bench", Duration::from_secs(10))
            .expect("connect to the server")
    }

    /// The last run's (requests, rows written, pages).
    fn last_run(&self) -> (u64, u64, u64) {
        match self {
            Store::Sqlite(db) => rusqlite::Connection::open(db)
                .expect("open mirror")
                .query_row(LAST_RUN, [], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map(|(a, b, c)| (a as u64, b as u64, c as u64))
                .expect("last run"),
            Store::Postgres { .. } => {
                let row = self.client().query_one(LAST_RUN, &[]).expect("last run");
                let get = |i| row.get::<_, i64>(i) as u64;
                (get(0), get(1), get(2))
            }
        }
    }

    /// The mirror against the simulator's truth: (customer, transaction) differences.
    fn differences(&self, base_url: &str) -> (usize, usize) {
        differences(base_url, &self.location())
    }

    /// Where the mirror is, as the binary's settings make it.
    fn location(&self) -> Location {
        match self {
            Store::Sqlite(db) => Location::sqlite(db),
            Store::Postgres { .. } => Location::Postgres(self.target()),
        }
    }

    fn target(&self) -> PgTarget {
        let Store::Postgres {
            url,
            schema,
            password,
            ..
        } = self
        else {
            unreachable!("SQLite has no server")
        };
        PgTarget::new(url, schema, Some(password)).expect("the server's URL")
    }

    /// Drops the benchmark's schema (best effort).
    fn remove(&self) {
        if let Store::Postgres { schema, .. } = self {
            let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            if let Err(e) = self.client().batch_execute(&sql) {
                eprintln!("could not drop the schema {schema}: {e}");
            }
        }
    }
}

/// The binary, its config and the mirror it writes: what every measured step shares.
struct Mirror<'a> {
    bin: &'a Path,
    config: &'a Path,
    store: &'a Store,
}

impl Mirror<'_> {
    /// Runs one mirror command and reads its counts from the run it recorded.
    fn step(
        &self,
        command: &str,
        envs: &[(&str, &str)],
        name: &'static str,
        customers: u64,
        transactions: u64,
    ) -> Step {
        let (_, wall, peak_rss_kb) = run_measured(self.bin, self.config, &[command], envs);
        let (requests, rows, _) = self.store.last_run();
        Step {
            name,
            wall,
            customers,
            transactions,
            requests,
            rows,
            peak_rss_kb,
        }
    }
}

/// Copies a mirror no process has open (its WAL too, if one was left).
fn snapshot(db: &Path, to: &Path) {
    for suffix in ["", "-wal"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            std::fs::copy(&from, format!("{}{suffix}", to.display())).expect("copy the mirror");
        }
    }
}

/// `--store sqlite|postgres` (or `--store=...`) from the command line; SQLite by default.
fn store_arg() -> String {
    let args: Vec<String> = std::env::args().collect();
    let mut store = "sqlite".to_string();
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--store=") {
            store = v.to_string();
        } else if a == "--store" {
            store = args.get(i + 1).cloned().unwrap_or_default();
        }
    }
    assert!(
        store == "sqlite" || store == "postgres",
        "--store {store}: sqlite or postgres"
    );
    store
}

/// Stops the simulator and drops the PostgreSQL benchmark's schema however `main`
/// ends (a failed step panics: the simulator must not outlive it).
struct Cleanup<'a>(std::process::Child, &'a Store);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        self.1.remove();
    }
}

/// Writes the benchmark's config for `store` at `path`.
fn write_config(path: &Path, base_url: &str, concurrency: u64, store: &Store) {
    std::fs::write(
        path,
        format!(
            "[api]\nbase_url = \"{base_url}\"\npage_size = 200\nconcurrency = {concurrency}\nrequests_per_second = 0\n\
             max_requests_per_window = 0\n\n{}",
            store.section()
        ),
    )
    .expect("write config");
}

/// The dry run (fetch only, nothing written): the floor, and the counts of the data.
fn dry_run(bin: &Path, config: &Path) -> Step {
    let (out, wall, rss) = run_measured(bin, config, &["backfill", "--dry-run"], &[]);
    // "dry run: C customers, T transactions, R requests (...)"
    let nums: Vec<u64> = out
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .map(|s| s.parse().unwrap())
        .collect();
    Step {
        name: "dry run (fetch only)",
        wall,
        customers: nums[0],
        transactions: nums[1],
        requests: nums[2],
        rows: 0,
        peak_rss_kb: rss,
    }
}

/// Compares a PostgreSQL mirror with the truth in a process of its own (see
/// [`compare_in_child`]): `BENCH_COMPARE` is `<schema> <base_url>`, the server comes from
/// `LOMI_TEST_PG_URL`/`LOMI_TEST_PG_PASSWORD`; prints the customer and transaction
/// difference counts.
fn compare_only(spec: &str) {
    let (schema, base_url) = spec
        .split_once(' ')
        .expect("BENCH_COMPARE: <schema> <base_url>");
    let url = std::env::var("LOMI_TEST_PG_URL").expect("LOMI_TEST_PG_URL");
    let password = std::env::var("LOMI_TEST_PG_PASSWORD").expect("LOMI_TEST_PG_PASSWORD");
    let target = PgTarget::new(&url, schema, Some(&password)).expect("the server's URL");
    let (c, t) = differences(base_url, &Location::Postgres(target));
    println!("{c} {t}");
}

/// The differences of the PostgreSQL mirror in `schema`, counted by a child process: a
/// comparison of a million rows here would stay in this process's peak RSS, which Linux
/// carries across `exec` into every child spawned after it, so `wait4` would report it
/// as the next step's (5.1 GB at 100,000 customers, while lomi-sync, sampled from
/// `/proc`, stayed near 53 MB).
fn compare_in_child(schema: &str, base_url: &str) -> (usize, usize) {
    let out = Command::new(std::env::current_exe().expect("the benchmark's path"))
        .env("BENCH_COMPARE", format!("{schema} {base_url}"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run the comparison");
    assert!(out.status.success(), "the comparison failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut n = text.split_whitespace().map(|x| x.parse().expect("a count"));
    (
        n.next().expect("customers"),
        n.next().expect("transactions"),
    )
}

fn main() {
    if let Ok(spec) = std::env::var("BENCH_COMPARE") {
        return compare_only(&spec);
    }
    // `cargo bench` passes `--bench`; this harness has no filters.
    let customers = env_or("BENCH_CUSTOMERS", 100_000);
    let tx_per_customer = env_or("BENCH_TX_PER_CUSTOMER", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 16);
    let postgres = store_arg() == "postgres";
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_lomi-sync"));
    let dir = tempfile::tempdir().expect("temp dir");

    let (sim, base_url, sim_startup) = spawn_sim(&bin, customers, tx_per_customer);

    let db = dir.path().join("bench.db");
    let sqlite = Store::Sqlite(db.clone());
    let store = if postgres {
        Store::postgres(dir.path())
    } else {
        Store::Sqlite(db.clone())
    };
    let cleanup = Cleanup(sim, &store);
    let config = dir.path().join("bench.toml");
    write_config(&config, &base_url, concurrency, &store);
    let mirror = Mirror {
        bin: &bin,
        config: &config,
        store: &store,
    };
    let mut steps = vec![dry_run(&bin, &config)];
    let (c, t) = (steps[0].customers, steps[0].transactions);

    if postgres {
        // The reference: the same backfill into SQLite, in the same run.
        let sqlite_config = dir.path().join("sqlite.toml");
        write_config(&sqlite_config, &base_url, concurrency, &sqlite);
        let reference = Mirror {
            bin: &bin,
            config: &sqlite_config,
            store: &sqlite,
        };
        steps.push(reference.step("backfill", &[], "backfill (sqlite)", c, t));
    }
    let backfill = steps.len();
    let name = if postgres {
        "backfill (postgres)"
    } else {
        "backfill"
    };
    steps.push(mirror.step("backfill", &[], name, c, t));

    steps.push(mirror.step("sync", &[], "sync, no change", c, 0));

    post(&format!("{base_url}/_sim/mutate"), &activity(customers));
    let after_activity_step = steps.len();
    steps.push(mirror.step("sync", &[], "sync after ~1% activity", c, 0));
    // Compared with the truth after the last measured step: a child spawned by a
    // process that has parsed the truth reports the parent's peak RSS as its own
    // (vfork, then exec), so the bench stays small while it measures. PostgreSQL has
    // no file to copy, so it is compared now, by a child process (`compare_in_child`).
    let after_activity_db = dir.path().join("after-activity.db");
    let mut after_activity = None;
    match &store {
        Store::Sqlite(db) => snapshot(db, &after_activity_db),
        Store::Postgres { schema, .. } => {
            after_activity = Some(compare_in_child(schema, &base_url))
        }
    }

    // The staleness bound: once `sync.full_every` has passed since every customer's
    // last re-read, an ordinary sync's rolling phase re-reads them all. A 2 s bound
    // stands in for the default day.
    std::thread::sleep(Duration::from_secs(2));
    steps.push(mirror.step(
        "sync",
        &[("LOMI_SYNC__SYNC__FULL_EVERY", "2s")],
        "sync past sync.full_every",
        c,
        0,
    ));
    let after_activity =
        after_activity.unwrap_or_else(|| Store::Sqlite(after_activity_db).differences(&base_url));
    let after_bound = store.differences(&base_url);

    drop(cleanup);

    print_header(postgres, (customers, t, concurrency), sim_startup);
    print_steps(&steps);
    print_ratios(&steps, (backfill, after_activity_step), postgres, customers);
    check_exact(after_activity, after_bound);
}

/// The line above the table: the store, the data, the machine.
fn print_header(postgres: bool, shape: (u64, u64, u64), sim_startup: Duration) {
    let (customers, t, concurrency) = shape;
    println!();
    println!(
        "lomi-sync benchmark ({}): {customers} customers, {t} transactions, concurrency {concurrency}, {} cores; simulator started in {:.2}s",
        if postgres { "postgres" } else { "sqlite" },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        sim_startup.as_secs_f64()
    );
}

/// About 1% of `customers` touched: profile edits, sign-ups, deletions, payments,
/// settlements (the simulator's `/_sim/mutate` body).
fn activity(customers: u64) -> String {
    let n = customers.max(100);
    format!(
        "{{\"create\": {}, \"update\": {}, \"delete\": {}, \"add_tx\": {}, \"settle\": {}, \"delete_tx\": {}}}",
        n / 1000,
        n / 400,
        n / 1000,
        n / 250,
        n / 500,
        n / 5000
    )
}

/// The backfill against the dry-run floor (and SQLite's, for PostgreSQL), and the
/// activity sync's requests against 1 + N. `at`: the backfill's and the activity
/// sync's indexes in `steps`.
fn print_ratios(steps: &[Step], at: (usize, usize), postgres: bool, customers: u64) {
    let (backfill, after_activity_step) = at;
    let floor = steps[0].wall.as_secs_f64();
    println!(
        "backfill / dry-run floor: {:.2}x",
        steps[backfill].wall.as_secs_f64() / floor
    );
    if postgres {
        let (pg, lite) = (&steps[backfill], &steps[backfill - 1]);
        println!(
            "postgres backfill / sqlite backfill: {:.2}x wall (target <= 2x); postgres peak RSS {:.1} MB (target <= 100 MB)",
            pg.wall.as_secs_f64() / lite.wall.as_secs_f64(),
            pg.peak_rss_kb as f64 / 1024.0
        );
    }
    let requests = steps[after_activity_step].requests;
    println!(
        "incremental requests after activity: {requests} = {:.1}% of 1 + N = {}",
        100.0 * requests as f64 / (1 + customers) as f64,
        1 + customers
    );
}

/// Prints the differences from the truth after the activity sync and after the sync past
/// `sync.full_every`, and fails the run unless both are as promised.
fn check_exact(after_activity: (usize, usize), after_bound: (usize, usize)) {
    println!(
        "after the activity sync: {} customer differences, {} transaction differences \
         (on customers left to the rolling schedule)",
        after_activity.0, after_activity.1
    );
    println!(
        "after the sync past sync.full_every: {} customer differences, {} transaction differences",
        after_bound.0, after_bound.1
    );
    assert_eq!(
        after_activity.0, 0,
        "the activity sync missed a customer change"
    );
    assert_eq!(
        after_bound,
        (0, 0),
        "the mirror is not exact within sync.full_every"
    );
}

/// The table of steps: wall time, throughput, requests, rows written, peak RSS.
fn print_steps(steps: &[Step]) {
    println!(
        "{:<26} {:>9} {:>12} {:>12} {:>10} {:>11} {:>10}",
        "step", "wall (s)", "customers/s", "tx/s", "requests", "rows", "peak RSS"
    );
    for s in steps {
        let secs = s.wall.as_secs_f64();
        println!(
            "{:<26} {:>9.2} {:>12.0} {:>12.0} {:>10} {:>11} {:>7.1} MB",
            s.name,
            secs,
            s.customers as f64 / secs,
            s.transactions as f64 / secs,
            s.requests,
            s.rows,
            s.peak_rss_kb as f64 / 1024.0
        );
    }
}
