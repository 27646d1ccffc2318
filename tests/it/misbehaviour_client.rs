//! Issue 12, the API client's share: an API that misbehaves must never leave a run that
//! says "succeeded" over a wrong mirror. Each test switches one misbehaviour on in the
//! simulator and asserts the value the mirror must hold (kinds 3 to 7 of the issue).

use std::time::Duration;

use lomi_sim::{Faults, FieldOverride, Mutation, RetryAfterStyle, TimestampStyle};
use lomi_sync::store::{RunKind, Store};
use serde_json::{Value, json};

use crate::harness::Mirror;
use crate::support::{TestSim, customer_id, small_sim_options, spawn_sim};

/// The first customer of the truth (the newest) with at least `n` transactions, and
/// those transactions.
fn payer(sim: &TestSim, n: usize) -> (String, Vec<Value>) {
    let truth = sim.sim.truth();
    truth["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| customer_id(c).to_string())
        .find_map(|id| {
            let txs = truth["transactions"][&id].as_array()?.clone();
            (txs.len() >= n).then_some((id, txs))
        })
        .expect("a customer with enough transactions")
}

fn set(sim: &TestSim, f: impl FnOnce(&mut Faults)) {
    let mut faults = Faults::default();
    f(&mut faults);
    sim.sim.set_faults(faults);
}

fn last_run(m: &Mirror) -> lomi_sync::store::RunRow {
    let store = Store::open_read_only(
        &lomi_sync::store::Location::sqlite(&m.db),
        Duration::from_secs(5),
    )
    .unwrap();
    store.status(1).unwrap().runs.remove(0)
}

// ---- Kind 3: HTTP 200 with an error body ---------------------------------------------

/// The case: after a backfill, `/transactions` answers 200
/// `{"data":[],"error":{"message":"statement timeout"}}`. The run must fail after its
/// retries, and nothing may be marked deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_body_on_transactions_fails_the_run_and_deletes_nothing() {
    let sim = spawn_sim(small_sim_options(30, 1201)).await;
    let m = Mirror::per_customer(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    let live = m.count("SELECT count(*) FROM transactions WHERE deleted_at IS NULL");
    assert!(live >= 2);
    set(&sim, |f| f.p_error_body_transactions = 1.0);
    let err = m.run(RunKind::Full).await.unwrap_err().to_string();
    assert!(
        err.contains("HTTP 200 with an error body") && err.contains("statement timeout"),
        "{err}"
    );
    assert_eq!(
        m.count("SELECT count(*) FROM transactions WHERE deleted_at IS NOT NULL"),
        0,
        "an error body proved no deletion"
    );
    assert_eq!(m.count("SELECT count(*) FROM changes"), 0);
    let run = last_run(&m);
    assert_eq!(run.outcome, "failed");
    assert!(run.retries > 0, "the error body was retried like a 5xx");
    sim.sim.set_faults(Faults::default());
    m.run(RunKind::Full).await.unwrap();
    m.assert_equals_truth(&sim);
    assert_eq!(
        m.count("SELECT count(*) FROM transactions WHERE deleted_at IS NULL"),
        live
    );
}

/// Error bodies now and then, on every route (lists, customers, transactions): each is
/// retried, and the run ends equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_on_every_route_are_retried_until_the_mirror_is_exact() {
    let mut opts = small_sim_options(120, 1202);
    opts.live_quirks = true; // list items hide metadata: details are read too (by the Full run)
    let sim = spawn_sim(opts).await;
    set(&sim, |f| {
        f.p_error_body_list = 0.25;
        f.p_error_body_get = 0.25;
        f.p_error_body_transactions = 0.25;
    });
    let m = Mirror::new(&sim);
    let s = m.run(RunKind::Backfill).await.unwrap();
    assert!(s.retries > 0);
    m.assert_equals_truth(&sim);
    sim.sim.mutate(&Mutation {
        update: 5,
        delete: 3,
        add_tx: 10,
        ..Mutation::default()
    });
    m.run(RunKind::Full).await.unwrap();
    assert!(sim.sim.stats().get > 0, "details were read");
    assert_eq!(lomi_sync::verify::pending_details(&m.store()).unwrap(), 0);
    m.assert_equals_truth(&sim);
}

// ---- Kind 4: Retry-After that is not a positive hint ----------------------------------

/// Every request gets 429 for about a second with a `Retry-After` that is no usable
/// hint: the run backs off (it does not burn its retries at once) and succeeds once the
/// storm ends, with the mirror exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_429_with_useless_retry_after_is_outlasted() {
    for style in [
        RetryAfterStyle::Zero,
        RetryAfterStyle::Negative,
        RetryAfterStyle::Garbage,
        RetryAfterStyle::PastDate,
    ] {
        let sim = spawn_sim(small_sim_options(20, 1203)).await;
        let mut m = Mirror::new(&sim);
        // The production backoff base (250 ms) with a cap that keeps the test short.
        m.settings.api.max_backoff = Duration::from_secs(2).into();
        set(&sim, |f| {
            f.p429 = 1.0;
            f.retry_after_style = style;
        });
        let run = tokio::spawn(async move {
            let r = m.run(RunKind::Backfill).await;
            (m, r)
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let storm = sim.sim.stats().faults_injected;
        sim.sim.set_faults(Faults::default());
        let (m, r) = run.await.unwrap();
        let s = r.unwrap_or_else(|e| panic!("{style:?}: {e}"));
        assert!(s.retries > 0, "{style:?}");
        // Backing off, the client sent a handful of requests in the storm's second, not
        // a burst (with `Retry-After: 0` taken literally: 9 in 0.31 s, then a failure).
        assert!(storm <= 12, "{style:?}: {storm} requests during the storm");
        m.assert_equals_truth(&sim);
    }
}

// ---- Kind 5: one record of an unexpected type ------------------------------------------

/// The case: the newest customer's `postal_code` becomes the number 75001. Every
/// later run must succeed, mirror the other changes, keep the number in `raw` and its
/// text in the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_field_costs_that_field_not_the_run() {
    let sim = spawn_sim(small_sim_options(60, 1204)).await;
    let mut m = Mirror::new(&sim);
    // Runs spaced by more than full_every re-read every payer: an exact mirror each time.
    m.settings.sync.full_every = Duration::from_millis(1).into();
    m.run(RunKind::Backfill).await.unwrap();
    let newest = customer_id(&sim.sim.truth()["customers"][0]).to_string();
    let (_, txs) = payer(&sim, 2);
    let (t1, t2) = (
        txs[0]["transaction_id"].as_str().unwrap().to_string(),
        txs[1]["transaction_id"].as_str().unwrap().to_string(),
    );
    let over = |id: &str, field: &str, value: Value| FieldOverride {
        id: id.into(),
        field: field.into(),
        value,
    };
    set(&sim, |f| {
        f.mistyped = vec![
            over(&newest, "postal_code", json!(75001)),
            over(&newest, "is_business", json!("yes")),
            over(&newest, "metadata", json!([1, 2])),
            over(&t1, "gross_amount", json!("twelve")),
            over(&t1, "status", json!(3)),
            over(&t2, "created_at", json!("not a date")),
            over(&t2, "description", json!({"text": "x"})),
        ]
    });
    sim.sim.mutate(&Mutation {
        update: 6,
        create: 3,
        add_tx: 8,
        ..Mutation::default()
    });
    for kind in [RunKind::Sync, RunKind::Full, RunKind::Sync] {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let s = m.run(kind).await.unwrap();
        assert_eq!(s.records_skipped, 0);
        m.assert_equals_truth(&sim);
    }
    let row: (Option<String>, Option<i64>, Option<String>, String) = m
        .conn()
        .query_row(
            "SELECT postal_code, is_business, metadata, json_type(raw, '$.postal_code') FROM customers WHERE id = ?1",
            [&newest],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(row, (Some("75001".into()), None, None, "integer".into()));
    // Text forms of the typed columns (NULL stays None), one transaction at a time.
    let tx = |id: &str| -> Vec<Option<String>> {
        m.conn()
            .query_row(
                "SELECT gross_amount, CAST(amount_minor AS TEXT), status, created_at, description
                 FROM transactions WHERE transaction_id = ?1",
                [id],
                |r| (0..5).map(|i| r.get(i)).collect(),
            )
            .unwrap()
    };
    assert_eq!(tx(&t1)[..3], [None, None, Some("3".to_string())]);
    let t2_row = tx(&t2);
    let (created, description) = (&t2_row[3], &t2_row[4]);
    assert_eq!((created, description), (&None, &None));
}

/// A customer whose id cannot be read is skipped with a warning and counted in the run
/// (`sync_runs.records_skipped`, `status`); everyone else is mirrored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_without_a_usable_id_is_skipped_and_counted() {
    let sim = spawn_sim(small_sim_options(40, 1205)).await;
    let truth = sim.sim.truth();
    let ghost = customer_id(&truth["customers"][5]).to_string();
    set(&sim, |f| {
        f.mistyped = vec![FieldOverride {
            id: ghost.clone(),
            field: "id".into(),
            value: json!({"oops": true}),
        }]
    });
    let m = Mirror::new(&sim);
    let s = m.run(RunKind::Backfill).await.unwrap();
    assert!(s.records_skipped >= 1, "{s:?}");
    assert_eq!(m.count("SELECT count(*) FROM customers"), 39);
    let run = last_run(&m);
    assert_eq!(run.outcome, "succeeded");
    assert_eq!(run.records_skipped as u64, s.records_skipped);
    assert!(s.to_string().contains("records skipped"));
    // The id comes back: the next run mirrors the customer, and counts nothing.
    sim.sim.set_faults(Faults::default());
    let s = m.run(RunKind::Sync).await.unwrap();
    assert_eq!(s.records_skipped, 0);
    m.assert_equals_truth(&sim);
}

/// A transaction whose id cannot be read makes its customer's list incomplete: the
/// transaction the mirror knows is not marked deleted for being absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unidentifiable_transaction_proves_no_deletion() {
    let sim = spawn_sim(small_sim_options(30, 1206)).await;
    let m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    let (_, txs) = payer(&sim, 2);
    let t = txs[0]["transaction_id"].as_str().unwrap().to_string();
    set(&sim, |f| {
        f.mistyped = vec![FieldOverride {
            id: t.clone(),
            field: "transaction_id".into(),
            value: Value::Null,
        }]
    });
    let s = m.run(RunKind::Full).await.unwrap();
    assert!(s.records_skipped >= 1);
    assert_eq!(
        m.count(&format!(
            "SELECT count(*) FROM transactions WHERE transaction_id = '{t}' AND deleted_at IS NULL"
        )),
        1
    );
    assert_eq!(
        m.count("SELECT count(*) FROM transactions WHERE deleted_at IS NOT NULL"),
        0
    );
}

// ---- Kind 6: timestamp forms ------------------------------------------------------------

/// Every style a real service writes gives the same instants, to the microsecond, in
/// the mirror's one form; the verifier checks the typed columns against the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_timestamp_style_mirrors_the_same_instants_to_the_microsecond() {
    for style in [
        TimestampStyle::PgMicro,
        TimestampStyle::OffsetNoColon,
        TimestampStyle::NegativeOffset,
        TimestampStyle::Space,
        TimestampStyle::ZNanos,
        TimestampStyle::ZMillis,
    ] {
        let mut opts = small_sim_options(40, 1207);
        opts.faults.timestamp_style = style;
        let sim = spawn_sim(opts).await;
        let m = Mirror::new(&sim);
        m.run(RunKind::Backfill)
            .await
            .unwrap_or_else(|e| panic!("{style:?}: {e}"));
        m.assert_equals_truth(&sim);
        let odd = m.count(
            "SELECT (SELECT count(*) FROM customers WHERE length(created_at) <> 27 OR length(updated_at) <> 27
                        OR length(first_seen_at) <> 27 OR created_at NOT LIKE '____-__-__T__:__:__.______Z')
                  + (SELECT count(*) FROM transactions WHERE length(created_at) <> 27 OR length(synced_at) <> 27)
                  + (SELECT count(*) FROM sync_runs WHERE length(started_at) <> 27 OR length(finished_at) <> 27)
                  + (SELECT count(*) FROM customer_sync WHERE length(tx_checked_at) <> 27)",
        );
        assert_eq!(odd, 0, "{style:?}: every timestamp in the one form");
    }
}

/// The two examples, end to end: `+0100` is the instant an hour earlier, and the
/// live service's microseconds are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_and_live_microseconds_reach_the_columns_exactly() {
    let sim = spawn_sim(small_sim_options(10, 1208)).await;
    let truth = sim.sim.truth();
    let (a, b) = (
        customer_id(&truth["customers"][0]).to_string(),
        customer_id(&truth["customers"][1]).to_string(),
    );
    set(&sim, |f| {
        f.mistyped = vec![
            FieldOverride {
                id: a.clone(),
                field: "created_at".into(),
                value: json!("2025-03-01T10:00:00+0100"),
            },
            FieldOverride {
                id: b.clone(),
                field: "created_at".into(),
                value: json!("2025-06-01T10:00:00.123456+00:00"),
            },
        ]
    });
    let m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    let created = |id: &str| -> String {
        m.conn()
            .query_row(
                "SELECT created_at FROM customers WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(created(&a), "2025-03-01T09:00:00.000000Z");
    assert_eq!(created(&b), "2025-06-01T10:00:00.123456Z");
    m.assert_equals_truth(&sim);
}

/// A style change at the source between runs is no data change to the verifier, and
/// the next runs still end equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_changes_timestamp_style_stays_mirrored() {
    let sim = spawn_sim(small_sim_options(50, 1209)).await;
    let m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    set(&sim, |f| f.timestamp_style = TimestampStyle::PgMicro);
    sim.sim.mutate(&Mutation {
        update: 4,
        add_tx: 6,
        ..Mutation::default()
    });
    m.run(RunKind::Full).await.unwrap();
    m.assert_equals_truth(&sim);
}

// ---- Kind 7: currency code case ----------------------------------------------------------

/// The case: a completed payment `{"gross_amount": 25000, "currency_code":
/// "xof"}` is 25000 XOF in `amount_minor` and in every view, not 250.00.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_case_currency_counts_in_its_own_unit_in_every_view() {
    let sim = spawn_sim(small_sim_options(20, 1210)).await;
    let (customer, txs) = payer(&sim, 1);
    let t = txs[0]["transaction_id"].as_str().unwrap().to_string();
    let day = txs[0]["created_at"].as_str().unwrap()[..10].to_string();
    let over = |field: &str, value: Value| FieldOverride {
        id: t.clone(),
        field: field.into(),
        value,
    };
    set(&sim, |f| {
        f.mistyped = vec![
            over("currency_code", json!("xof")),
            over("gross_amount", json!(25000)),
            over("status", json!("completed")),
        ]
    });
    let m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    m.assert_equals_truth(&sim);
    let (code, minor): (String, i64) = m
        .conn()
        .query_row(
            "SELECT currency_code, amount_minor FROM transactions WHERE transaction_id = ?1",
            [&t],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((code.as_str(), minor), ("XOF", 25000));
    // Every view groups it with XOF and shows whole francs.
    let (minor, total): (i64, String) = m
        .conn()
        .query_row(
            "SELECT completed_minor, completed_total FROM customer_revenue WHERE customer_id = ?1 AND currency_code = 'XOF'",
            [&customer],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(minor >= 25000);
    assert_eq!(total, minor.to_string(), "XOF has no minor unit");
    let (minor, total): (i64, String) = m
        .conn()
        .query_row(
            "SELECT revenue_minor, revenue FROM daily_revenue WHERE day = ?1 AND currency_code = 'XOF'",
            [&day],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(minor >= 25000);
    assert_eq!(total, minor.to_string());
    assert_eq!(
        m.count(
            "SELECT count(*) FROM customer_revenue WHERE currency_code <> upper(currency_code)"
        ) + m.count(
            "SELECT count(*) FROM daily_revenue WHERE currency_code <> upper(currency_code)"
        ),
        0
    );
}

/// What a user sees, through the binary: a warning naming the record and the field, one
/// for the skipped record, the count in the summary line, and `status` showing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_warns_about_the_record_and_field_and_status_counts_skips() {
    let sim = spawn_sim(small_sim_options(12, 1211)).await;
    let truth = sim.sim.truth();
    let (odd, ghost) = (
        customer_id(&truth["customers"][0]).to_string(),
        customer_id(&truth["customers"][3]).to_string(),
    );
    set(&sim, |f| {
        f.mistyped = vec![
            FieldOverride {
                id: odd.clone(),
                field: "postal_code".into(),
                value: json!(75001),
            },
            FieldOverride {
                id: ghost.clone(),
                field: "id".into(),
                value: Value::Null,
            },
        ]
    });
    let m = Mirror::new(&sim);
    let config = m.config_file("");
    let out = crate::harness::run_bin(Some(&config), Some(&m.key), &["backfill"]).await;
    let (_, stderr) = crate::harness::text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&odd) && l.contains("postal_code")),
        "{stderr}"
    );
    assert!(
        stderr.contains("record skipped, its identity cannot be read"),
        "{stderr}"
    );
    assert!(
        stderr.contains("records skipped (unreadable id"),
        "{stderr}"
    );
    assert!(!stderr.contains(&m.key), "the key never shows");
    let out = crate::harness::run_bin(Some(&config), None, &["status", "--json"]).await;
    let (stdout, stderr) = crate::harness::text(&out);
    assert!(out.status.success(), "{stderr}");
    let status: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        status["runs"][0]["records_skipped"].as_i64().unwrap() >= 1,
        "{status}"
    );
    let out = crate::harness::run_bin(Some(&config), None, &["status"]).await;
    assert!(crate::harness::text(&out).0.contains("skipped"));
}
