//! The binary as a user meets it: bad configurations, `query`, `status`, the writer
//! lock, and the API key never showing anywhere.

use lomi_sync::store::{RunKind, Store, WriterLock};

use crate::harness::{Mirror, run_bin, text};
use crate::support::{small_sim_options, spawn_sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_fail_with_one_clear_line_and_create_no_database() {
    let sim = spawn_sim(small_sim_options(20, 20)).await;
    let m = Mirror::new(&sim);
    let key = Some(sim.api_key.as_str());
    // (extra TOML appended to a valid config, the key, the command, what the message must say)
    let cases: Vec<(&str, Option<&str>, &str, &str)> = vec![
        ("", None, "sync", "no API key: set the LOMI_API_KEY"),
        ("[sync]\nfull_every = \"often\"", key, "sync", "often"),
        (
            "[sync]\nunknown_knob = 1",
            key,
            "sync",
            "unknown field `unknown_knob`",
        ),
        (
            "[schedule]\ncron = \"every minute\"",
            key,
            "run",
            "schedule.cron",
        ),
        (
            "[schedule]\ncron = \"61 * * * * *\"",
            key,
            "check-config",
            "61 * * * * *",
        ),
        (
            "[sync]\nmax_requests_per_run = -5",
            key,
            "sync",
            "max_requests_per_run",
        ),
    ];
    for (extra, key, cmd, expected) in cases {
        let config = m.config_file(extra);
        let out = run_bin(Some(&config), key, &[cmd]).await;
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(
            err.contains(expected),
            "{extra:?}: expected {expected:?} in {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!m.db.exists(), "{extra:?} created the database");
    }
    // Settings that replace a valid line of the config file.
    let base = std::fs::read_to_string(m.config_file("")).unwrap();
    let replaced: Vec<(String, &str)> = vec![
        (
            base.replace(&sim.base_url, "http://example.com"),
            "plain http",
        ),
        (base.replace(&sim.base_url, "not a url"), "is not a URL"),
        (
            base.replace("page_size = 25", "page_size = 0"),
            "api.page_size must be greater than zero",
        ),
        (
            base.replace("concurrency = 4", "concurrency = -2"),
            "concurrency",
        ),
        (base.replace("[store]", "[api2]"), "unknown field `api2`"),
    ];
    let path = m.dir.path().join("replaced.toml");
    for (config, expected) in replaced {
        std::fs::write(&path, &config).unwrap();
        let out = run_bin(Some(&path), key, &["backfill"]).await;
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{expected}: {err}");
        assert!(err.contains(expected), "expected {expected:?} in {err}");
        assert!(!m.db.exists());
    }
    // An unreadable key file, a missing config file, a store directory that is not there.
    let config = m.config_file("");
    std::fs::write(
        &path,
        format!(
            "{}\n",
            std::fs::read_to_string(&config)
                .unwrap()
                .replace("[store]", "api_key_file = \"/nonexistent/key\"\n[store]")
        ),
    )
    .unwrap();
    let out = run_bin(Some(&path), None, &["sync"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out)
            .1
            .contains("cannot read the API key file /nonexistent/key"),
        "{}",
        text(&out).1
    );
    let out = run_bin(Some(&m.dir.path().join("nope.toml")), key, &["sync"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("nope.toml does not exist"));
    std::fs::write(
        &path,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace(&m.db.display().to_string(), "/nonexistent-dir/m.db"),
    )
    .unwrap();
    let out = run_bin(Some(&path), key, &["backfill"]).await;
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out).1.contains("/nonexistent-dir"),
        "{}",
        text(&out).1
    );
    assert!(!m.db.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_prints_four_formats_and_refuses_writes() {
    let sim = spawn_sim(small_sim_options(40, 21)).await;
    let m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    let config = m.config_file("");
    let sql = "SELECT id, name FROM live_customers ORDER BY id LIMIT 3";
    let out = run_bin(Some(&config), None, &["query", sql, "--format", "json"]).await;
    assert!(out.status.success(), "{}", text(&out).1);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert!(rows[0]["id"].is_string() && rows[0]["name"].is_string());
    let out = run_bin(Some(&config), None, &["query", sql, "--format", "jsonl"]).await;
    let lines: Vec<serde_json::Value> = text(&out)
        .0
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, rows.as_array().unwrap().clone());
    let out = run_bin(Some(&config), None, &["query", sql, "--format", "csv"]).await;
    let csv = text(&out).0;
    assert_eq!(csv.lines().next(), Some("id,name"));
    assert_eq!(csv.lines().count(), 4);
    let out = run_bin(Some(&config), None, &["query", sql]).await;
    let table = text(&out).0;
    assert!(
        table.starts_with("id") && table.contains("(3 rows)"),
        "{table}"
    );
    let before = m.count("SELECT count(*) FROM customers");
    for write in [
        "DELETE FROM customers",
        "UPDATE customers SET name = 'x'",
        "DROP VIEW live_customers",
    ] {
        let out = run_bin(Some(&config), None, &["query", write]).await;
        assert_ne!(out.status.code(), Some(0), "{write}");
        assert!(
            text(&out).1.contains("only reads"),
            "{write}: {}",
            text(&out).1
        );
    }
    assert_eq!(m.count("SELECT count(*) FROM customers"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_runs_and_flags_a_stale_mirror() {
    let sim = spawn_sim(small_sim_options(30, 22)).await;
    let m = Mirror::new(&sim);
    let config = m.config_file("");
    let out = run_bin(Some(&config), None, &["status"]).await;
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out).1.contains("run `lomi-sync backfill`"),
        "{}",
        text(&out).1
    );
    drop(
        Store::open(
            &lomi_sync::store::Location::sqlite(&m.db),
            std::time::Duration::from_secs(1),
        )
        .unwrap(),
    );
    let out = run_bin(Some(&config), None, &["status", "--max-age", "1h"]).await;
    assert_eq!(out.status.code(), Some(5), "never synced is stale");
    m.run(RunKind::Backfill).await.unwrap();
    let out = run_bin(
        Some(&config),
        None,
        &["status", "--json", "--max-age", "1h"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["totals"]["live_customers"], 30);
    assert_eq!(report["runs"][0]["outcome"], "succeeded");
    assert_eq!(report["runs"][0]["kind"], "backfill");
    let out = run_bin(Some(&config), None, &["status"]).await;
    assert!(text(&out).0.contains("succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_refused_with_the_holder_named() {
    let sim = spawn_sim(small_sim_options(10, 23)).await;
    let m = Mirror::new(&sim);
    let _held = WriterLock::acquire(
        &lomi_sync::store::Location::sqlite(&m.db),
        "backfill",
        false,
    )
    .unwrap();
    let out = run_bin(Some(&m.config_file("")), Some(&sim.api_key), &["sync"]).await;
    assert_eq!(out.status.code(), Some(4));
    let err = text(&out).1;
    assert!(
        err.contains(&format!("pid {}", std::process::id())) && err.contains("--wait"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_shows_in_output_logs_or_the_database() {
    const SECRET: &str = "lomi_sk_test_TOPSECRET0123456789";
    let mut opts = small_sim_options(30, 24);
    opts.api_key = SECRET.into();
    let sim = spawn_sim(opts).await;
    let m = Mirror::new(&sim);
    let config = m.config_file("[log]\nlevel = \"trace\"");
    let mut outputs = Vec::new();
    for (key, args) in [
        (SECRET, vec!["backfill"]),
        (SECRET, vec!["sync"]),
        ("lomi_sk_test_WRONGSECRET", vec!["sync"]),
        (SECRET, vec!["check-config"]),
        (SECRET, vec!["status", "--json"]),
        (SECRET, vec!["--help"]),
        (SECRET, vec!["backfill", "--help"]),
        (SECRET, vec!["sim", "--help"]),
    ] {
        let out = run_bin(Some(&config), Some(key), &args).await;
        outputs.push((args.join(" "), out));
    }
    assert!(outputs[0].1.status.success(), "{}", text(&outputs[0].1).1);
    assert_eq!(outputs[2].1.status.code(), Some(3), "a wrong key is exit 3");
    for (args, out) in &outputs {
        let (o, e) = text(out);
        assert!(
            !o.contains("TOPSECRET") && !e.contains("TOPSECRET"),
            "`{args}` printed the key"
        );
        assert!(
            !o.contains("WRONGSECRET") && !e.contains("WRONGSECRET"),
            "`{args}` printed the key"
        );
    }
    assert!(
        text(&outputs[0].1).1.lines().count() > 10,
        "trace logging was on"
    );
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", m.db.display());
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(9).any(|w| w == b"TOPSECRET"),
                "{path} holds the key"
            );
        }
    }
}
