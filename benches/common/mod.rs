//! What the benchmarks share: the simulator as a separate process, its control
//! endpoints (through curl, as a user would call them), and the comparison with its
//! ground truth through the one definition the tests use (`lomi_sync::verify`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The API key the simulator is started with.
pub const KEY: &str = "bench_key";

/// `name` from the environment as a number, else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `lomi-sync sim` on a free loopback port: the process, its base URL and how long it
/// took to generate its data.
pub fn spawn_sim(bin: &Path, customers: u64, tx_per_customer: u64) -> (Child, String, Duration) {
    let started = Instant::now();
    let mut sim = Command::new(bin)
        .args(["sim", "--port", "0", "--seed", "1", "--api-key", KEY])
        .args(["--customers", &customers.to_string()])
        .args(["--tx-per-customer", &tx_per_customer.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the simulator");
    let mut line = String::new();
    BufReader::new(sim.stdout.take().expect("sim stdout"))
        .read_line(&mut line)
        .expect("sim banner");
    let base_url = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("base URL")
        .to_string();
    (sim, base_url, started.elapsed())
}

/// `POST url` with a JSON body; panics unless it answers 2xx.
pub fn post(url: &str, body: &str) {
    let status = Command::new("curl")
        .args(["-sf", "-X", "POST", "-H", "content-type: application/json"])
        .args(["-d", body, url, "-o", "/dev/null"])
        .status()
        .expect("curl");
    assert!(status.success(), "POST {url}");
}

/// `GET url` as JSON; panics unless it answers 2xx.
pub fn get_json(url: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", url])
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET {url}");
    serde_json::from_slice(&out.stdout).expect("a JSON answer")
}

/// The mirror at `at` (either store) against the simulator's ground truth: (customer
/// differences, transaction differences).
pub fn differences(base_url: &str, at: &lomi_sync::store::Location) -> (usize, usize) {
    let truth = get_json(&format!("{base_url}/_sim/truth"));
    let store = lomi_sync::store::Store::open_read_only(at, std::time::Duration::from_secs(10))
        .expect("open mirror");
    let diffs = lomi_sync::verify::differences(&store, &truth, usize::MAX).expect("compare");
    let customers = diffs.iter().filter(|d| d.starts_with("customer")).count();
    (customers, diffs.len() - customers)
}
