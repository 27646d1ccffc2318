//! A new user's first hour (issue 18): pacing they can see, summaries that say what a run
//! did not read, mistakes caught where they are made, logs fit for the journal, help that
//! matches what the binary does.

use std::time::Duration;

use lomi_sync::api::StatusFilter;
use lomi_sync::store::{Phase, RunKind, Store, Walk, WriterLock, lock::lock_path, now};

use crate::harness::{Mirror, command, run_bin, text};
use crate::support::{TestSim, small_sim_options, spawn_sim};

/// Runs the binary with extra environment variables.
async fn run_env(
    config: Option<&std::path::Path>,
    key: Option<&str>,
    env: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    let mut cmd = command(config, key, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("lomi-sync finished in time")
        .expect("lomi-sync ran")
}

/// The first number after `label` in `text`.
fn number_after(text: &str, label: &str) -> u64 {
    let rest = &text[text
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {text}"))
        + label.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a number after {label:?} in {text}"))
}

async fn stats(sim: &TestSim) -> serde_json::Value {
    sim.get_json("/_sim/stats").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimate_reads_only_the_list_and_predicts_the_backfill_requests() {
    let sim = spawn_sim(small_sim_options(260, 181)).await;
    let m = Mirror::per_customer(&sim);
    let config = m.config_file("");
    let out = run_bin(
        Some(&config),
        Some(&sim.api_key),
        &["backfill", "--estimate"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let s = stats(&sim).await;
    assert_eq!(s["transactions"], 0, "only list requests: {s}");
    assert_eq!(s["get"], 0, "only list requests: {s}");
    assert_eq!(s["requests"], s["list"], "{s}");
    // 260 customers in pages of 25: a dozen list pages, not hundreds of requests.
    assert!(s["list"].as_u64().unwrap() < 20, "{s}");
    assert_eq!(number_after(&stdout, "customers:"), 260, "{stdout}");
    assert!(!m.db.exists(), "an estimate writes nothing");
    let expected = number_after(&stdout, "a backfill sends about");
    let summary = m.run(RunKind::Backfill).await.unwrap();
    assert_eq!(
        summary.requests, expected,
        "the estimate is what the backfill sends: {stdout}"
    );
    let with_payments = m
        .count("SELECT count(DISTINCT customer_id) FROM transactions WHERE deleted_at IS NULL")
        as u64;
    assert_eq!(
        number_after(&stdout, "listed,"),
        with_payments,
        "customers with payments to read: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_says_its_requests_rate_and_time_before_it_starts() {
    let sim = spawn_sim(small_sim_options(120, 182)).await;
    let m = Mirror::new(&sim);
    let config = m.config_file("");
    let replaced = std::fs::read_to_string(&config)
        .unwrap()
        .replace("requests_per_second = 0", "requests_per_second = 400");
    std::fs::write(&config, replaced).unwrap();
    for args in [vec!["backfill", "--dry-run"], vec!["backfill"]] {
        let out = run_bin(Some(&config), Some(&sim.api_key), &args).await;
        let (_, err) = text(&out);
        assert!(out.status.success(), "{err}");
        let first = err
            .lines()
            .find(|l| l.contains("requests at api.requests_per_second = 400"))
            .unwrap_or_else(|| panic!("{args:?}: no pacing line in {err}"));
        assert!(
            first.contains("120 customers") && first.contains("about"),
            "{first}"
        );
        assert!(
            err.contains("walk started"),
            "no silence after the migration: {err}"
        );
        // Progress lines, off a terminal, follow requests against those expected.
        assert!(
            err.lines()
                .any(|l| l.contains("progress") && l.contains("requests_expected=")),
            "{args:?}: {err}"
        );
    }
    let err = text(&run_bin(Some(&config), Some(&sim.api_key), &["sync"]).await).1;
    assert!(
        !err.contains("requests at api.requests_per_second"),
        "an incremental run is cheap and says nothing of a backfill: {err}"
    );
    // A `sync` into an empty mirror runs a backfill, and says so first.
    std::fs::remove_file(&m.db).unwrap();
    let err = text(&run_bin(Some(&config), Some(&sim.api_key), &["sync"]).await).1;
    assert!(
        err.contains("requests at api.requests_per_second = 400"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_store_path_is_exit_2_naming_store_path_before_any_run() {
    let sim = spawn_sim(small_sim_options(10, 183)).await;
    let m = Mirror::new(&sim);
    let base = std::fs::read_to_string(m.config_file("")).unwrap();
    let path = m.dir.path().join("bad.toml");
    let db = m.db.display().to_string();
    for (store, what) in [
        ("/nonexistent-dir/m.db".to_string(), "/nonexistent-dir"),
        (m.dir.path().display().to_string(), "a directory"),
    ] {
        std::fs::write(&path, base.replace(&db, &store)).unwrap();
        for cmd in ["check-config", "backfill", "sync", "run"] {
            let out = run_bin(Some(&path), Some(&sim.api_key), &[cmd]).await;
            let err = text(&out).1;
            assert_eq!(out.status.code(), Some(2), "{cmd} {store}: {err}");
            assert!(
                err.contains("store.path") && err.contains(what),
                "{cmd}: {err}"
            );
            assert_eq!(err.matches("os error").count(), 0, "{cmd}: {err}");
        }
    }
    let s = stats(&sim).await;
    assert_eq!(s["requests"], 0, "nothing was sent: {s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_leaves_no_lock_file_and_no_mirror() {
    let sim = spawn_sim(small_sim_options(10, 184)).await;
    let m = Mirror::new(&sim);
    let config = m.config_file("");
    for cmd in ["backfill", "sync"] {
        let out = run_bin(Some(&config), Some("lomi_sk_test_WRONG"), &[cmd]).await;
        assert_eq!(out.status.code(), Some(3), "{}", text(&out).1);
        assert!(!m.db.exists());
        assert!(!lock_path(&m.db).exists(), "{cmd} left a stray .lock");
    }
    let listing: Vec<_> = std::fs::read_dir(m.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listing.len(), 1, "only the config: {listing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_off_a_terminal_carry_no_escape_codes_and_print_values() {
    let sim = spawn_sim(small_sim_options(30, 185)).await;
    let m = Mirror::new(&sim);
    // An unfinished walk, so that the run logs where it came from (`of`).
    let mut store = Store::open(
        &lomi_sync::store::Location::sqlite(&m.db),
        Duration::from_secs(5),
    )
    .unwrap();
    let run_id = store.start_run(RunKind::Backfill).unwrap();
    store
        .begin_walk(&Walk {
            run_id,
            kind: RunKind::Backfill,
            started_at: now(),
            phase: Phase::List,
            segment: StatusFilter::Active,
            next_page: 1,
            page_size: 25,
            last_total: None,
            pass: 0,
            page_cap: None,
            counts: Default::default(),
            initial: true,
            feed: None,
        })
        .unwrap();
    drop(store);
    let config = m.config_file("[log]\nformat = \"pretty\"");
    let out = run_bin(Some(&config), Some(&sim.api_key), &["backfill"]).await;
    let err = text(&out).1;
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming an unfinished walk"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "escape codes in non-terminal output: {err:?}"
    );
    assert!(
        err.contains(&format!("of={run_id}")) && !err.contains("Some("),
        "fields print as values: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_running_not_reread_and_no_successful_run_yet() {
    let sim = spawn_sim(small_sim_options(60, 186)).await;
    let m = Mirror::new(&sim);
    let config = m.config_file("");
    drop(
        Store::open(
            &lomi_sync::store::Location::sqlite(&m.db),
            Duration::from_secs(1),
        )
        .unwrap(),
    );
    let out = run_bin(Some(&config), None, &["status", "--max-age", "1h"]).await;
    assert_eq!(out.status.code(), Some(5));
    let err = text(&out).1;
    assert!(
        err.contains("no successful run yet") && !err.contains("never"),
        "{err}"
    );
    m.run(RunKind::Backfill).await.unwrap();

    // A walk under way, its writer alive: running, and who writes it.
    let mut store = Store::open(
        &lomi_sync::store::Location::sqlite(&m.db),
        Duration::from_secs(5),
    )
    .unwrap();
    let run_id = store.start_run(RunKind::Sync).unwrap();
    store
        .begin_walk(&Walk {
            run_id,
            kind: RunKind::Sync,
            started_at: now(),
            phase: Phase::List,
            segment: StatusFilter::Active,
            next_page: 3,
            page_size: 25,
            last_total: None,
            pass: 0,
            page_cap: None,
            counts: Default::default(),
            initial: false,
            feed: None,
        })
        .unwrap();
    drop(store);
    let held =
        WriterLock::acquire(&lomi_sync::store::Location::sqlite(&m.db), "sync", false).unwrap();
    let out = run_bin(Some(&config), None, &["status"]).await;
    let status = text(&out).0;
    let row = status
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{run_id} ")))
        .unwrap_or_else(|| panic!("run {run_id} in {status}"));
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        (fields[4], fields[6], fields[7]),
        ("running", "-", "-"),
        "a running run's requests are not known yet, not 0: {row}"
    );
    assert!(
        status.contains("running: sync walk")
            && status.contains(&format!("pid {} (sync)", std::process::id())),
        "{status}"
    );
    drop(held);
    let status = text(&run_bin(Some(&config), None, &["status"]).await).0;
    assert!(status.contains("stopped: sync walk"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_run_says_whose_payments_it_did_not_reread() {
    let sim = spawn_sim(small_sim_options(80, 187)).await;
    let mut m = Mirror::per_customer(&sim);
    // No hot or pending re-reads: only the rolling share is re-read.
    m.settings.sync.hot_window = Duration::from_millis(1).into();
    m.settings.sync.pending_window = Duration::from_millis(1).into();
    let backfill = m.run(RunKind::Backfill).await.unwrap();
    assert_eq!(backfill.not_reread, None, "a backfill reads everyone");
    let summary = m.run(RunKind::Sync).await.unwrap();
    let n = summary
        .not_reread
        .clone()
        .expect("an incremental run counts them");
    let with_payments = m.count(
        "SELECT count(*) FROM customer_sync s JOIN customers c ON c.id = s.customer_id
         WHERE c.deleted_at IS NULL AND s.live_tx > 0",
    ) as u64;
    assert!(with_payments > 0);
    assert_eq!(
        n.customers + summary.transaction_refreshes,
        with_payments,
        "{n:?} {summary:?}"
    );
    assert!(n.customers > 0, "{n:?}");
    let line = summary.to_string();
    assert!(
        line.contains(&format!(
            "payments of {} customers not re-read",
            n.customers
        )) && line.contains("sync.full_every")
            && line.contains(n.by.as_deref().unwrap()),
        "{line}"
    );
    let out = run_bin(Some(&m.config_file("")), None, &["status"]).await;
    let status = text(&out).0;
    assert!(
        status.contains(&format!(
            "payments of {} customers not re-read",
            n.customers
        )),
        "{status}"
    );
}

/// A valid cron expression that never fires again (the 30th of February) passes
/// `check-config`, with a warning saying `run` would stop at once and what to write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_warns_of_a_schedule_that_never_fires() {
    let sim = spawn_sim(small_sim_options(10, 189)).await;
    let m = Mirror::new(&sim);
    let config = m.config_file("[schedule]\ncron = \"0 0 0 30 2 *\"");
    let out = run_bin(Some(&config), Some(&sim.api_key), &["check-config"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("never fires again") && stderr.contains("0 */15 * * * *"),
        "{stderr}"
    );
    assert!(stdout.contains("# warning: schedule.cron"), "{stdout}");
    // One that fires has no such warning.
    let config = m.config_file("");
    let out = run_bin(Some(&config), Some(&sim.api_key), &["check-config"]).await;
    assert!(!text(&out).1.contains("never fires"), "{}", text(&out).1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_miss_and_misspelt_environment_variables_are_named() {
    let sim = spawn_sim(small_sim_options(10, 188)).await;
    let m = Mirror::new(&sim);
    let config = m.config_file("");
    let out = run_env(
        Some(&config),
        Some(&sim.api_key),
        &[("LOMI_SYNC_STORE_PATH", "/tmp/elsewhere.db")],
        &["check-config"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("LOMI_SYNC_STORE_PATH is not read")
            && stderr.contains("did you mean LOMI_SYNC__STORE__PATH?"),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("# config file: {}", config.display())),
        "{stdout}"
    );
    let out = run_env(
        Some(&config),
        Some(&sim.api_key),
        &[("LOMI_SYNC__STORE__PTH", "/tmp/elsewhere.db")],
        &["sync"],
    )
    .await;
    let err = text(&out).1;
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("did you mean LOMI_SYNC__STORE__PATH?"),
        "{err}"
    );
    // check-config names the variables it used, and a test key meeting the live URL.
    // It builds no client and sends no request, so the live host is only a string here.
    let out = run_env(
        None,
        Some("lomi_sk_test_QZXKEY"),
        &[
            ("LOMI_SYNC__API__BASE_URL", "https://api.lomi.africa"),
            ("LOMI_SYNC__STORE__PATH", &m.db.display().to_string()),
        ],
        &["check-config"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("# environment: LOMI_SYNC__API__BASE_URL, LOMI_SYNC__STORE__PATH"),
        "{stdout}"
    );
    assert!(
        stderr.contains("test key") && stderr.contains("live service"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("QZXKEY") && !stderr.contains("QZXKEY"),
        "the key never shows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_and_sim_refuse_a_config_they_would_ignore() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let present = dir.path().join("present.toml");
    std::fs::write(&present, "").unwrap();
    for config in [&missing, &present] {
        for args in [vec!["demo", "--customers", "5"], vec!["sim", "--port", "0"]] {
            let out = run_bin(Some(config), None, &args).await;
            let err = text(&out).1;
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("reads no settings") && err.contains("--config"),
                "{err}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_level_help_names_the_key_the_variables_and_the_mirror() {
    let out = run_bin(None, None, &["--help"]).await;
    let help = text(&out).0;
    for needle in [
        "LOMI_API_KEY",
        "LOMI_SYNC__SECTION__KEY",
        "store.path",
        "lomi-sync.db",
        "NO_COLOR",
    ] {
        assert!(help.contains(needle), "{needle} in {help}");
    }
}
