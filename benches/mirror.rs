//! End-to-end benchmark: `lomi-sync sim` and the mirror as separate processes on
//! loopback, as a merchant would run them.
//!
//! ```text
//! cargo bench --bench mirror                       # 100,000 customers, 10 tx each
//! BENCH_CUSTOMERS=10000 cargo bench --bench mirror
//! ```
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

fn run_row(db: &Path) -> (u64, u64, u64) {
    let conn = rusqlite::Connection::open(db).expect("open mirror");
    conn.query_row(
        "SELECT requests, customers_inserted + customers_updated + customers_deleted + customers_restored +
                transactions_inserted + transactions_updated + transactions_deleted + transactions_restored,
                pages
         FROM sync_runs ORDER BY id DESC LIMIT 1",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)),
    )
    .expect("last run")
}

/// The binary, its config and the mirror it writes: what every measured step shares.
struct Mirror<'a> {
    bin: &'a Path,
    config: &'a Path,
    db: &'a Path,
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
        let (requests, rows, _) = run_row(self.db);
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

fn main() {
    // `cargo bench` passes `--bench`; this harness has no filters.
    let customers = env_or("BENCH_CUSTOMERS", 100_000);
    let tx_per_customer = env_or("BENCH_TX_PER_CUSTOMER", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 16);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_lomi-sync"));
    let dir = tempfile::tempdir().expect("temp dir");

    let (mut sim, base_url, sim_startup) = spawn_sim(&bin, customers, tx_per_customer);

    let db = dir.path().join("bench.db");
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{base_url}\"\npage_size = 200\nconcurrency = {concurrency}\nrequests_per_second = 0\n\
             max_requests_per_window = 0\n\n[store]\npath = \"{}\"\n",
            db.display()
        ),
    )
    .expect("write config");

    let mirror = Mirror {
        bin: &bin,
        config: &config,
        db: &db,
    };
    let mut steps = Vec::new();
    let (out, wall, rss) = run_measured(&bin, &config, &["backfill", "--dry-run"], &[]);
    // "dry run: C customers, T transactions, R requests (...)"
    let nums: Vec<u64> = out
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .map(|s| s.parse().unwrap())
        .collect();
    steps.push(Step {
        name: "dry run (fetch only)",
        wall,
        customers: nums[0],
        transactions: nums[1],
        requests: nums[2],
        rows: 0,
        peak_rss_kb: rss,
    });

    steps.push(mirror.step("backfill", &[], "backfill", nums[0], nums[1]));

    steps.push(mirror.step("sync", &[], "sync, no change", nums[0], 0));

    // About 1% of customers touched: profile edits, sign-ups, deletions, payments, settlements.
    let n = customers.max(100);
    let activity = format!(
        "{{\"create\": {}, \"update\": {}, \"delete\": {}, \"add_tx\": {}, \"settle\": {}, \"delete_tx\": {}}}",
        n / 1000,
        n / 400,
        n / 1000,
        n / 250,
        n / 500,
        n / 5000
    );
    post(&format!("{base_url}/_sim/mutate"), &activity);
    steps.push(mirror.step("sync", &[], "sync after ~1% activity", nums[0], 0));
    // Compared with the truth after the last measured step: a child spawned by a
    // process that has parsed the truth reports the parent's peak RSS as its own
    // (vfork, then exec), so the bench stays small while it measures.
    let after_activity_db = dir.path().join("after-activity.db");
    snapshot(&db, &after_activity_db);

    // The staleness bound: once `sync.full_every` has passed since every customer's
    // last re-read, an ordinary sync's rolling phase re-reads them all. A 2 s bound
    // stands in for the default day.
    std::thread::sleep(Duration::from_secs(2));
    steps.push(mirror.step(
        "sync",
        &[("LOMI_SYNC__SYNC__FULL_EVERY", "2s")],
        "sync past sync.full_every",
        nums[0],
        0,
    ));
    let after_activity = differences(&base_url, &after_activity_db);
    let after_bound = differences(&base_url, &db);

    let _ = sim.kill();
    let _ = sim.wait();

    println!();
    println!(
        "lomi-sync benchmark: {customers} customers, {} transactions, concurrency {concurrency}, {} cores; simulator started in {:.2}s",
        nums[1],
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        sim_startup.as_secs_f64()
    );
    println!(
        "{:<26} {:>9} {:>12} {:>12} {:>10} {:>11} {:>10}",
        "step", "wall (s)", "customers/s", "tx/s", "requests", "rows", "peak RSS"
    );
    for s in &steps {
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
    let floor = steps[0].wall.as_secs_f64();
    println!(
        "backfill / dry-run floor: {:.2}x",
        steps[1].wall.as_secs_f64() / floor
    );
    println!(
        "incremental requests after activity: {} = {:.1}% of 1 + N = {}",
        steps[3].requests,
        100.0 * steps[3].requests as f64 / (1 + customers) as f64,
        1 + customers
    );
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
