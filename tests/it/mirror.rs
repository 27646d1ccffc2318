//! The mirror against the simulator: backfill, incremental sync, drift, resume, errors.

use std::time::Duration;

use lomi_sim::{Drift, Faults, IdField, IdFormat, Mutation};
use lomi_sync::config::TransactionsSource;
use lomi_sync::store::RunKind;
use lomi_sync::sync::SyncError;

use crate::harness::{Mirror, slow_sim_options};
use crate::support::{small_sim_options, spawn_sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_equals_the_source() {
    let sim = spawn_sim(small_sim_options(300, 1)).await;
    let m = Mirror::new(&sim);
    let s = m.run(RunKind::Backfill).await.unwrap();
    m.assert_equals_truth(&sim);
    assert_eq!(s.applied.customers_inserted, 300);
    assert_eq!(m.count("SELECT count(*) FROM customers"), 300);
    // The first load is not a change: no change rows, but the run is recorded.
    assert_eq!(m.count("SELECT count(*) FROM changes"), 0);
    assert_eq!(
        m.count("SELECT count(*) FROM sync_runs WHERE outcome = 'succeeded' AND kind = 'backfill'"),
        1
    );
    assert_eq!(
        m.count("SELECT count(*) FROM walk"),
        0,
        "a finished walk leaves no checkpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_skips_transaction_requests_for_customers_who_never_paid() {
    let sim = spawn_sim(small_sim_options(300, 2)).await;
    let m = Mirror::per_customer(&sim);
    let s = m.run(RunKind::Backfill).await.unwrap();
    let truth = sim.sim.truth();
    let payers = truth["transactions"]
        .as_object()
        .unwrap()
        .values()
        .filter(|t| !t.as_array().unwrap().is_empty())
        .count();
    assert!(payers < 300, "some customers never pay");
    assert_eq!(s.transaction_refreshes as usize, payers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_sync_reconciles_rounds_of_random_changes() {
    let sim = spawn_sim(small_sim_options(250, 3)).await;
    let mut m = Mirror::new(&sim);
    // Runs spaced by more than full_every re-read every paying customer: exact truth.
    m.settings.sync.full_every = Duration::from_millis(1).into();
    m.run(RunKind::Backfill).await.unwrap();
    for round in 0..3 {
        sim.sim.mutate(&Mutation {
            create: 7,
            update: 9,
            delete: 5,
            restore: 2,
            add_tx: 30,
            settle: 10,
            delete_tx: 3,
            delete_newest_tx: 0,
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let s = m.run(RunKind::Sync).await.unwrap();
        assert!(s.rows_written > 0, "round {round} found the changes");
        m.assert_equals_truth(&sim);
    }
    let kinds: Vec<(String, i64)> = m
        .conn()
        .prepare("SELECT kind, count(*) FROM changes WHERE entity = 'customer' GROUP BY kind ORDER BY kind")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let names: Vec<&str> = kinds.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        names.contains(&"created") && names.contains(&"updated") && names.contains(&"deleted"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_record_old_and_new_values() {
    let sim = spawn_sim(small_sim_options(60, 4)).await;
    let m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    let report = sim.sim.mutate(&Mutation {
        update: 1,
        ..Mutation::default()
    });
    let id = &report.updated[0];
    m.run(RunKind::Sync).await.unwrap();
    let fields: String = m
        .conn()
        .query_row(
            "SELECT fields FROM changes WHERE entity = 'customer' AND entity_id = ?1 AND kind = 'updated'",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    let fields: serde_json::Value = serde_json::from_str(&fields).unwrap();
    let updated_at = &fields["updated_at"];
    assert!(
        updated_at["old"].is_string()
            && updated_at["new"].is_string()
            && updated_at["old"] != updated_at["new"],
        "{fields}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_source_writes_no_row() {
    for source in [TransactionsSource::PerCustomer, TransactionsSource::Auto] {
        unchanged_source_writes_no_row_with(source).await;
    }
}

/// An incremental run and a full one over an unchanged simulator, reading transactions
/// from `source` (`Auto`: the feed).
async fn unchanged_source_writes_no_row_with(source: TransactionsSource) {
    let sim = spawn_sim(small_sim_options(200, 5)).await;
    let mut m = Mirror::new(&sim);
    m.settings.sync.transactions_source = source;
    m.run(RunKind::Backfill).await.unwrap();
    let fingerprint = |m: &Mirror| {
        m.conn()
            .query_row(
                "SELECT (SELECT count(*) || ':' || max(synced_at) FROM customers) || '/' ||
                        (SELECT count(*) || ':' || max(synced_at) FROM transactions) || '/' ||
                        (SELECT count(*) FROM changes)",
                [],
                |r| r.get::<_, String>(0),
            )
            .unwrap()
    };
    let before = fingerprint(&m);
    // Both an incremental run and a full re-read of every transaction list.
    let s = m.run(RunKind::Sync).await.unwrap();
    assert_eq!(s.rows_written, 0);
    m.settings.sync.full_every = Duration::from_millis(1).into();
    let s = m.run(RunKind::Full).await.unwrap();
    assert_eq!(s.rows_written, 0);
    // Every transaction was read again, per customer or from the whole feed.
    match source {
        TransactionsSource::PerCustomer => assert!(s.transaction_refreshes > 0),
        _ => assert!(s.feed_pages > 0 && s.transaction_refreshes == 0),
    }
    assert_eq!(fingerprint(&m), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_sync_spends_few_requests_and_catches_every_customer_change() {
    let sim = spawn_sim(small_sim_options(1000, 6)).await;
    let mut m = Mirror::new(&sim);
    m.settings.api.page_size = 200;
    m.run(RunKind::Backfill).await.unwrap();
    // About 1% of customers touched.
    sim.sim.mutate(&Mutation {
        create: 2,
        update: 4,
        delete: 2,
        add_tx: 5,
        settle: 2,
        ..Mutation::default()
    });
    let s = m.run(RunKind::Sync).await.unwrap();
    let naive = 1 + 1000;
    assert!(
        s.requests * 10 <= naive,
        "{} requests, more than 10% of {naive}",
        s.requests
    );
    let diffs = m.differences(&sim);
    assert!(
        diffs.iter().all(|d| d.starts_with("transaction")),
        "customer changes missed: {diffs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_run_caps_the_optional_re_reads_and_later_runs_catch_up() {
    let sim = spawn_sim(small_sim_options(300, 12)).await;
    let mut m = Mirror::per_customer(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    sim.sim.mutate(&Mutation {
        update: 5,
        add_tx: 20,
        settle: 5,
        ..Mutation::default()
    });
    // Every paying customer is overdue for its rolling re-read: far more than 40.
    m.settings.sync.full_every = Duration::from_millis(1).into();
    m.settings.sync.max_requests_per_run = 40;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let capped = m.run(RunKind::Sync).await.unwrap();
    // Changed customers are re-read whatever the cap: at most 5 beyond it.
    assert!(
        capped.transaction_refreshes <= 40 + 5,
        "{} transaction re-reads under a cap of 40",
        capped.transaction_refreshes
    );
    assert!(capped.transaction_refreshes >= 40, "the cap was not spent");
    let diffs = m.differences(&sim);
    assert!(
        diffs.iter().all(|d| d.starts_with("transaction")),
        "customer changes missed: {diffs:?}"
    );
    // Without the cap, the next run past the bound reaches the exact truth.
    m.settings.sync.max_requests_per_run = 0;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let uncapped = m.run(RunKind::Sync).await.unwrap();
    assert!(uncapped.transaction_refreshes > capped.transaction_refreshes);
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_drift_never_deletes_a_live_customer() {
    let mut opts = small_sim_options(300, 7);
    opts.drift = Drift {
        insert_per_page: 2,
        delete_per_page: 2,
    };
    let sim = spawn_sim(opts).await;
    let m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    m.run(RunKind::Sync).await.unwrap();
    let truth = sim.sim.truth();
    let deleted: std::collections::HashSet<&str> = truth["deleted_customer_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let conn = m.conn();
    let mut stmt = conn
        .prepare("SELECT id FROM customers WHERE deleted_at IS NOT NULL")
        .unwrap();
    let marked: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        !marked.is_empty(),
        "drift deleted customers the mirror had seen"
    );
    for id in &marked {
        assert!(
            deleted.contains(id.as_str()),
            "customer {id} was marked deleted but is live"
        );
    }
    // Once the source holds still, the next run equals it.
    sim.sim.set_drift(Drift::default());
    let mut m = m;
    m.settings.sync.full_every = Duration::from_millis(1).into();
    m.run(RunKind::Sync).await.unwrap();
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_variant_with_uuid_ids_and_list_quirks_is_mirrored_whole() {
    // As the live service: `customer_id` keys, UUID ids, list items hiding metadata.
    let mut opts = small_sim_options(120, 8);
    opts.id_field = IdField::CustomerId;
    opts.id_format = IdFormat::Uuid;
    opts.live_quirks = true;
    let sim = spawn_sim(opts).await;
    let mut m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    m.assert_equals_truth(&sim);
    // Metadata and environment come from GET /customers/{id}, read by the run after
    // the backfill (the background fill); later list items that hide them must not
    // erase them.
    m.run(RunKind::Sync).await.unwrap();
    assert_eq!(
        m.count("SELECT count(*) FROM customers WHERE environment IS NULL OR metadata IS NULL"),
        0
    );
    let s = m.run(RunKind::Sync).await.unwrap();
    assert_eq!(s.rows_written, 0);
    assert_eq!(
        s.customer_reads, 0,
        "unchanged customers need no detail reads"
    );
    m.assert_equals_truth(&sim);
    assert_eq!(
        m.count("SELECT count(*) FROM customers WHERE length(id) <> 36"),
        0
    );
    // Deletions (404 on a UUID path), restores and payments reach the mirror too.
    sim.sim.mutate(&Mutation {
        create: 5,
        update: 5,
        delete: 5,
        add_tx: 10,
        settle: 3,
        delete_tx: 2,
        ..Mutation::default()
    });
    sim.sim.mutate(&Mutation {
        restore: 2,
        ..Mutation::default()
    });
    m.settings.sync.full_every = Duration::from_millis(1).into();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let s = m.run(RunKind::Sync).await.unwrap();
    // Five deleted; a restore may bring back two of them before the mirror looks.
    assert!(
        (3..=5).contains(&s.applied.customers_deleted),
        "{} deletions",
        s.applied.customers_deleted
    );
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_backfill_resumes_without_repeating_pages() {
    let sim = spawn_sim(slow_sim_options(400, 9, 5)).await;
    let m = Mirror::new(&sim);
    interrupted_backfill(&sim, &m).await;
    assert_eq!(
        m.count("SELECT count(*) FROM sync_runs WHERE outcome = 'interrupted'"),
        1
    );
    let pages_before = m.count("SELECT next_page FROM walk");
    assert!(pages_before > 1);
    let s = m.run(RunKind::Backfill).await.unwrap();
    assert!(s.resumed_walk_of.is_some());
    assert!(
        s.applied.pages < 400 / 25 * 2,
        "resumed, not restarted: {} pages",
        s.applied.pages
    );
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_key_stops_at_once_and_touches_nothing() {
    let sim = spawn_sim(small_sim_options(50, 10)).await;
    let mut m = Mirror::new(&sim);
    m.key = "wrong_key".into();
    let err = m.run(RunKind::Backfill).await.unwrap_err();
    assert!(err.is_fatal(), "{err}");
    assert!(err.to_string().contains("rejected"), "{err}");
    assert!(!m.db.exists(), "no database is created for a rejected key");
    m.key = sim.api_key.clone();
    m.run(RunKind::Backfill).await.unwrap();
    let runs = m.count("SELECT count(*) FROM sync_runs");
    m.key = "wrong_key".into();
    m.run(RunKind::Sync).await.unwrap_err();
    assert_eq!(
        m.count("SELECT count(*) FROM sync_runs"),
        runs,
        "not even a run row"
    );
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_responses_fail_the_run_with_the_endpoint_and_keep_the_mirror() {
    let sim = spawn_sim(small_sim_options(80, 11)).await;
    let mut m = Mirror::new(&sim);
    m.settings.api.max_retries = 1;
    m.run(RunKind::Backfill).await.unwrap();
    sim.sim.mutate(&Mutation {
        update: 5,
        ..Mutation::default()
    });
    let before = m.count("SELECT count(*) FROM changes");
    for faults in [
        Faults {
            p_truncate: 1.0,
            ..Faults::default()
        },
        Faults {
            p502_html: 1.0,
            ..Faults::default()
        },
        Faults {
            p500: 1.0,
            ..Faults::default()
        },
    ] {
        sim.sim.set_faults(faults.clone());
        let err = m.run(RunKind::Sync).await.unwrap_err().to_string();
        assert!(err.contains("GET /customers"), "{faults:?}: {err}");
        assert_eq!(
            m.count("SELECT count(*) FROM changes"),
            before,
            "{faults:?}"
        );
        assert_eq!(m.integrity(), "ok");
    }
    sim.sim.set_faults(Faults::default());
    m.run(RunKind::Sync).await.unwrap();
    assert!(
        m.differences(&sim)
            .iter()
            .all(|d| d.starts_with("transaction"))
    );
}

/// Stops a slow backfill once a few pages are committed: a mirror with a walk in
/// progress.
async fn interrupted_backfill(sim: &crate::support::TestSim, m: &Mirror) {
    let cancel = tokio_util::sync::CancellationToken::new();
    let c = cancel.clone();
    let db = m.db.clone();
    tokio::spawn(async move {
        crate::harness::wait_for(30, || crate::harness::runs_sum(&db, "sum(pages)") >= 3).await;
        c.cancel();
    });
    let err = m
        .run_with(RunKind::Backfill, false, &cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Interrupted), "{err}");
    assert_eq!(m.count("SELECT count(*) FROM walk"), 1);
    sim.sim.set_faults(Faults::default());
}

/// A mirror written before migration 9 (the walk tables without CHECK constraints),
/// killed mid-walk: the upgrade keeps the walk, and the next run resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_in_progress_survives_the_upgrade_and_resumes() {
    let sim = spawn_sim(slow_sim_options(400, 91, 5)).await;
    let m = Mirror::per_customer(&sim);
    interrupted_backfill(&sim, &m).await;
    let walk_before: (String, String, i64) = m
        .conn()
        .query_row("SELECT phase, segment, next_page FROM walk", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    let seen_before = m.count("SELECT count(*) FROM walk_seen");
    // Back to the walk tables of version 8 (as migration 5 made them), as an older lomi-sync left them.
    m.conn()
        .execute_batch(
            "CREATE TABLE walk_old (
                 id INTEGER PRIMARY KEY CHECK (id = 1), run_id INTEGER NOT NULL, kind TEXT NOT NULL,
                 started_at TEXT NOT NULL, phase TEXT NOT NULL, segment TEXT NOT NULL,
                 next_page INTEGER NOT NULL, page_size INTEGER NOT NULL, last_total INTEGER,
                 initial INTEGER NOT NULL DEFAULT 0, pass INTEGER NOT NULL DEFAULT 0, page_cap INTEGER,
                 list_counts TEXT NOT NULL DEFAULT '{}');
             INSERT INTO walk_old SELECT id, run_id, kind, started_at, phase, segment, next_page, page_size,
                                         last_total, initial, pass, page_cap, list_counts FROM walk;
             DROP TABLE walk;
             ALTER TABLE walk_old RENAME TO walk;
             DROP TABLE feed_state;
             DROP TABLE feed_stage;
             ALTER TABLE sync_runs DROP COLUMN transactions_source;
             ALTER TABLE sync_runs DROP COLUMN source_note;
             DROP TABLE webhook_events;
             DROP INDEX customers_lacking_details;
             ALTER TABLE customers DROP COLUMN details_updated_at;
             CREATE TABLE walk_seen_old (customer_id TEXT NOT NULL, segment TEXT NOT NULL,
                                         PRIMARY KEY (customer_id, segment)) WITHOUT ROWID;
             INSERT INTO walk_seen_old SELECT * FROM walk_seen;
             DROP TABLE walk_seen;
             ALTER TABLE walk_seen_old RENAME TO walk_seen;
             PRAGMA user_version = 8;",
        )
        .unwrap();
    assert_eq!(m.count("SELECT count(*) FROM walk_seen"), seen_before);
    let s = m.run(RunKind::Backfill).await.unwrap();
    assert!(s.resumed_walk_of.is_some(), "the walk was resumed");
    assert!(
        s.applied.pages < 400 / 25 * 2,
        "resumed at {walk_before:?}, not restarted: {} pages",
        s.applied.pages
    );
    let schema: String = m
        .conn()
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'walk'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(schema.contains("CHECK (phase IN"), "{schema}");
    m.assert_equals_truth(&sim);
    // Customers written with their metadata before migration 13 count as read.
    assert_eq!(lomi_sync::verify::pending_details(&m.store()).unwrap(), 0);
}

/// A walk whose phase this version does not know stops the run with an error that says
/// what to run (before, it was silently dropped and a new walk started); `backfill
/// --restart` then forgets it and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_walk_stops_the_run_and_restart_gets_past_it() {
    let sim = spawn_sim(slow_sim_options(400, 92, 5)).await;
    let m = Mirror::new(&sim);
    interrupted_backfill(&sim, &m).await;
    m.conn()
        .execute_batch("PRAGMA ignore_check_constraints = ON; UPDATE walk SET phase = 'replay';")
        .unwrap();
    let err = m.run(RunKind::Backfill).await.unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Store(lomi_sync::store::StoreError::UnreadableWalk { .. })
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("phase \"replay\"") && text.contains("`lomi-sync backfill --restart`"),
        "{text}"
    );
    assert_eq!(m.count("SELECT count(*) FROM walk"), 1, "the walk is kept");
    let s = m
        .run_with(
            RunKind::Backfill,
            true,
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(s.resumed_walk_of.is_none());
    m.assert_equals_truth(&sim);
}

/// Progress names each phase as the walk is in it, with today's words: a top-up
/// reports `topup`, not `list`; the confirm phase `confirm`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reports_each_phase_of_the_walk() {
    use lomi_sync::store::Phase;
    use lomi_sync::sync::{Progress, ProgressInfo};

    #[derive(Default)]
    struct Phases(std::sync::Mutex<Vec<Phase>>);
    impl Progress for Phases {
        fn update(&self, p: &ProgressInfo) {
            let mut v = self.0.lock().unwrap();
            if v.last() != Some(&p.phase) {
                v.push(p.phase);
            }
        }
    }

    let sim = spawn_sim(small_sim_options(60, 93)).await;
    let m = Mirror::per_customer(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    // Deleted customers the list no longer shows: the next walk confirms them.
    sim.sim.mutate(&Mutation {
        delete: 3,
        ..Mutation::default()
    });
    let cancel = tokio_util::sync::CancellationToken::new();
    let opts = lomi_sync::api::ClientOptions::from_settings(&m.settings.api).unwrap();
    let client = lomi_sync::api::ApiClient::new(
        opts,
        &lomi_sync::config::ApiKey::new(m.key.clone()),
        cancel.clone(),
    )
    .unwrap();
    let sync_opts = lomi_sync::sync::SyncOptions {
        page_size: m.settings.api.page_size,
        concurrency: m.settings.api.concurrency as usize,
        settings: m.settings.sync.clone(),
        busy_timeout: m.settings.store.busy_timeout.0,
    };
    let phases = Phases::default();
    let req = lomi_sync::sync::RunRequest {
        kind: RunKind::Sync,
        restart: false,
    };
    let s = lomi_sync::sync::run(
        &client,
        &lomi_sync::store::Location::sqlite(&m.db),
        &sync_opts,
        req,
        &cancel,
        &phases,
    )
    .await
    .unwrap();
    assert_eq!(s.kind, RunKind::Sync);
    assert_eq!(s.kind.to_string(), "sync");
    let seen = phases.0.into_inner().unwrap();
    assert_eq!(
        seen,
        [Phase::List, Phase::Topup, Phase::Confirm, Phase::Rolling],
        "{seen:?}"
    );
    let words: Vec<String> = seen.iter().map(ToString::to_string).collect();
    assert_eq!(words, ["list", "topup", "confirm", "rolling"]);
}
