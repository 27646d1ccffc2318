//! Webhook benchmark (issue 16): `lomi-sync sim` and the daemon (`lomi-sync run`, its
//! listener on loopback) as separate processes, as a merchant would run them.
//!
//! ```text
//! cargo bench --bench webhooks            # 200 events/s for 60 s, 10,000 customers
//! BENCH_RATE=50 BENCH_SECS=10 cargo bench --bench webhooks
//! ```
//!
//! 1. A backfill, then the daemon, whose first run is a full walk paced (by
//!    `api.requests_per_second`) to outlast the burst.
//! 2. A sustained burst of payments (`/_sim/webhooks/burst`) while that run walks: the
//!    latency from each delivery's first attempt (the simulator's log, wall clock) to
//!    its commit (`webhook_events.applied_at`, the daemon's wall clock on the same
//!    machine): p50, p99, max, and how many events never reached the mirror.
//! 3. Faults: 20% of deliveries dropped, 10% duplicated, 10% reordered. After the next
//!    scheduled run the mirror must equal the truth, and no event may have written two
//!    change rows for one transaction; otherwise it panics.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{KEY, differences, env_or, get_json, post, spawn_sim};

/// A free loopback port for the daemon's listener.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn lomi(bin: &Path, config: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(envs.iter().copied())
        .env("LOMI_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run lomi-sync");
    assert!(
        out.status.success(),
        "lomi-sync {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 100 ms until it holds or `secs` pass.
fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open mirror");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy");
    conn.query_row(sql, [], |r| r.get(0)).expect("query")
}

/// Waits for the last burst to be created and every delivery to be settled.
fn wait_for_deliveries(base_url: &str) -> serde_json::Value {
    wait_until(600, "the burst", || {
        get_json(&format!("{base_url}/_sim/webhooks/burst"))["running"] == false
    });
    let mut report = serde_json::Value::Null;
    wait_until(600, "the deliveries", || {
        report = get_json(&format!("{base_url}/_sim/webhooks/deliveries"));
        report["in_flight"] == 0
    });
    report
}

/// Milliseconds since the Unix epoch of a mirror timestamp (RFC 3339).
fn millis(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 timestamp")
        .timestamp_millis()
}

/// (latencies in ms, sorted; events never committed) for the deliveries in `report`.
fn latencies(report: &serde_json::Value, db: &Path) -> (Vec<i64>, usize) {
    let mut first_sent: HashMap<String, i64> = HashMap::new();
    for a in report["log"].as_array().expect("a log") {
        let id = a["event_id"].as_str().expect("an id").to_string();
        let at = a["sent_at_ms"].as_i64().expect("sent_at_ms");
        first_sent
            .entry(id)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }
    let conn = rusqlite::Connection::open(db).expect("open mirror");
    let mut stmt = conn
        .prepare("SELECT id, applied_at FROM webhook_events")
        .expect("prepare");
    let applied: HashMap<String, i64> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .map(|(id, at)| (id, millis(&at)))
        .collect();
    let mut lat: Vec<i64> = Vec::new();
    let mut lost = 0;
    for (id, sent) in &first_sent {
        match applied.get(id) {
            Some(at) => lat.push(at - sent),
            None => lost += 1,
        }
    }
    lat.sort_unstable();
    (lat, lost)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

/// The daemon's peak RSS so far, in KiB (`VmHWM`).
fn peak_rss_kb(daemon: &Child) -> i64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", daemon.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn stop(mut daemon: Child) {
    // SAFETY: the pid is our child's, not yet reaped.
    unsafe { libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM) };
    let status = daemon.wait().expect("wait for the daemon");
    assert!(status.success(), "the daemon exited with {status}");
}

fn main() {
    let customers = env_or("BENCH_CUSTOMERS", 10_000);
    let rate = env_or("BENCH_RATE", 200);
    let secs = env_or("BENCH_SECS", 60);
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_lomi-sync"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut sim, base_url, _) = spawn_sim(&bin, customers, 10);
    let db = dir.path().join("bench.db");
    let port = free_port();
    let config = dir.path().join("bench.toml");
    // The walk's pace: its list and feed pages take about 1.5x the burst at this rate.
    let pages = customers / 200 + customers * 10 / 1000;
    let rps = (pages as f64 / (secs as f64 * 1.5)).max(0.5);
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{base_url}\"\npage_size = 200\nrequests_per_second = {rps}\n\
             max_requests_per_window = 0\n\n[store]\npath = \"{}\"\n\n\
             [schedule]\ncron = \"*/20 * * * * *\"\nrun_on_start = true\nfull_every = \"1s\"\n\n\
             [server]\nlisten = \"127.0.0.1:{port}\"\n\n[webhooks]\nsecret_file = \"{}\"\n",
            db.display(),
            dir.path().join("webhook-secret").display()
        ),
    )
    .expect("write config");
    let unpaced = [("LOMI_SYNC__API__REQUESTS_PER_SECOND", "0")];
    lomi(&bin, &config, &["backfill"], &unpaced);
    let url = format!("http://127.0.0.1:{port}/webhooks/lomi");
    lomi(&bin, &config, &["webhooks", "register", "--url", &url], &[]);
    std::thread::sleep(Duration::from_secs(1));

    let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log file");
    let daemon = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("LOMI_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the daemon");
    wait_until(60, "a walking run", || {
        db.exists()
            && count(
                &db,
                "SELECT count(*) FROM sync_runs WHERE outcome = 'running' AND kind = 'full'",
            ) == 1
    });

    // 2. The burst while the full walk runs.
    post(
        &format!("{base_url}/_sim/webhooks/burst"),
        &format!("{{\"count\": {}, \"per_second\": {rate}}}", rate * secs),
    );
    let started = Instant::now();
    let report = wait_for_deliveries(&base_url);
    let burst_wall = started.elapsed();
    let walking = count(
        &db,
        "SELECT count(*) FROM sync_runs WHERE outcome = 'running'",
    ) == 1;
    let (lat, lost) = latencies(&report, &db);
    let rss = peak_rss_kb(&daemon);

    // 3. Faults, then the next scheduled run.
    post(
        &format!("{base_url}/_sim/webhooks"),
        "{\"p_drop\": 0.2, \"p_duplicate\": 0.1, \"p_reorder\": 0.1, \"reorder_delay_ms\": 500, \
          \"retry_base_ms\": 200, \"max_retries\": 5, \"timeout_ms\": 4000, \"p_bad_signature\": 0.0}",
    );
    post(
        &format!("{base_url}/_sim/webhooks/burst"),
        &format!("{{\"count\": {}, \"per_second\": {rate}}}", rate * 10),
    );
    let faulty = wait_for_deliveries(&base_url);
    let settled = lomi_sync::store::now();
    wait_until(900, "a scheduled run after the faulty burst", || {
        count(
            &db,
            &format!(
                "SELECT count(*) FROM sync_runs WHERE outcome = 'succeeded' AND started_at > '{settled}'"
            ),
        ) >= 1
    });
    stop(daemon);
    let diffs = differences(&base_url, &lomi_sync::store::Location::sqlite(&db));
    let doubled = count(
        &db,
        "SELECT count(*) FROM (SELECT 1 FROM changes WHERE source = 'webhook'
                               GROUP BY webhook_event, entity_id HAVING count(*) > 1)",
    );
    let _ = sim.kill();
    let _ = sim.wait();

    println!();
    println!(
        "lomi-sync webhook benchmark: {customers} customers; burst of {} payments at {rate}/s \
         (delivered in {:.1} s) while a full walk ran at {rps:.1} requests/s",
        rate * secs,
        burst_wall.as_secs_f64()
    );
    println!(
        "delivery -> commit latency over {} events: p50 {} ms, p99 {} ms, max {} ms; \
         {lost} never committed; the walk was {} when the burst ended; daemon peak RSS {:.1} MB",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        if walking { "still running" } else { "over" },
        rss as f64 / 1024.0
    );
    println!(
        "faults (20% dropped, 10% duplicated, 10% reordered): {} dropped, {} duplicated, {} reordered; \
         after the next scheduled run: {} customer and {} transaction differences, \
         {doubled} events with two change rows for one transaction",
        faulty["dropped"], faulty["duplicated"], faulty["reordered"], diffs.0, diffs.1
    );
    assert_eq!(lost, 0, "deliveries acknowledged but not in the mirror");
    assert_eq!(diffs, (0, 0), "the mirror is not exact after the next run");
    assert_eq!(
        doubled, 0,
        "an event wrote two change rows for one transaction"
    );
}
