//! Customer details as a budgeted background fill (issue 14): the live list hides
//! `metadata` (`metadata: null` in list items, NOTES.md), so each customer's details
//! cost one `GET /customers/{id}`. A backfill completes without them (metadata stays
//! unknown, NULL, never `{}`); later runs read them, `sync.details_per_run` each,
//! changed customers first, then newest first; `status` counts what is left. With
//! metadata in list items no detail read is spent at all.

use lomi_sim::Mutation;
use lomi_sync::store::RunKind;

use crate::harness::{Mirror, run_bin, text};
use crate::support::{TestSim, small_sim_options, spawn_sim};

const LACKING: &str = "SELECT count(*) FROM customers WHERE deleted_at IS NULL
     AND (details_updated_at IS NULL OR details_updated_at <> COALESCE(updated_at, ''))";

async fn live_sim(customers: usize, seed: u64) -> TestSim {
    let mut opts = small_sim_options(customers, seed);
    opts.live_quirks = true;
    spawn_sim(opts).await
}

/// `GET /customers/{id}` requests `sim` served since `before`.
fn gets_since(sim: &TestSim, before: u64) -> u64 {
    sim.sim.stats().get - before
}

/// The ids whose details the mirror holds, sorted.
fn filled(m: &Mirror) -> Vec<String> {
    let conn = m.conn();
    let mut stmt = conn
        .prepare("SELECT id FROM customers WHERE details_updated_at IS NOT NULL ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The `n` newest customers of the mirror (its `created_at`, as the source's), sorted.
fn newest(m: &Mirror, n: usize) -> Vec<String> {
    let conn = m.conn();
    let mut stmt = conn
        .prepare("SELECT id FROM customers ORDER BY created_at DESC, id DESC LIMIT ?1")
        .unwrap();
    let mut ids: Vec<String> = stmt
        .query_map([n as i64], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    ids.sort();
    ids
}

async fn status_json(m: &Mirror) -> serde_json::Value {
    let out = run_bin(Some(&m.config_file("")), None, &["status", "--json"]).await;
    serde_json::from_slice(&out.stdout).expect("status --json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_spends_no_detail_reads_and_leaves_metadata_unknown() {
    let sim = live_sim(120, 1401).await;
    let m = Mirror::new(&sim);
    let s = m.run(RunKind::Backfill).await.unwrap();
    assert_eq!(
        sim.sim.stats().get,
        0,
        "no GET /customers/{{id}} in a backfill"
    );
    assert_eq!(s.customer_reads, 0);
    assert_eq!(m.count(LACKING), 120);
    // Unknown, not empty: NULL until read, never "{}" (nor an environment guessed).
    assert_eq!(
        m.count("SELECT count(*) FROM customers WHERE metadata IS NOT NULL"),
        0
    );
    assert_eq!(
        m.count("SELECT count(*) FROM customers WHERE environment IS NOT NULL"),
        0
    );
    assert_eq!(
        m.count("SELECT count(*) FROM sync_runs WHERE outcome = 'succeeded'"),
        1
    );
    // Everything but the details pending equals the source.
    m.assert_equals_truth(&sim);
    assert_eq!(lomi_sync::verify::pending_details(&m.store()).unwrap(), 120);
    // `status` says so, in words and in JSON.
    let json = status_json(&m).await;
    assert_eq!(json["totals"]["customers_lacking_details"], 120);
    let out = run_bin(Some(&m.config_file("")), None, &["status"]).await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("120 customers lack details; filled by later runs"),
        "{stdout}"
    );
    // With the fill off, `status` does not promise it.
    let off = m.config_file("[sync]\ndetails_per_run = 0\n");
    let (stdout, _) = text(&run_bin(Some(&off), None, &["status"]).await);
    assert!(
        stdout.contains("120 customers lack details; no run reads them"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_runs_fill_details_within_their_share_newest_first() {
    let sim = live_sim(120, 1402).await;
    let mut m = Mirror::new(&sim);
    m.settings.sync.details_per_run = 50;
    m.run(RunKind::Backfill).await.unwrap();
    let mut filled_before = 0;
    for (left, reads) in [(70, 50), (20, 50), (0, 20)] {
        let before = sim.sim.stats().get;
        let s = m.run(RunKind::Sync).await.unwrap();
        assert_eq!(gets_since(&sim, before), reads, "the run's share");
        assert_eq!(s.customer_reads, reads);
        assert_eq!(m.count(LACKING), left);
        filled_before += reads;
        assert_eq!(
            filled(&m),
            newest(&m, filled_before as usize),
            "newest first"
        );
        // A run that read all it had budget for still succeeded.
        assert_eq!(
            m.count("SELECT outcome = 'succeeded' FROM sync_runs ORDER BY id DESC LIMIT 1"),
            1
        );
        m.assert_equals_truth(&sim);
    }
    // Filled: the mirror equals the source exactly, metadata and environment included.
    assert_eq!(lomi_sync::verify::pending_details(&m.store()).unwrap(), 0);
    assert_eq!(
        m.count("SELECT count(*) FROM customers WHERE metadata IS NULL OR environment IS NULL"),
        0
    );
    let json = status_json(&m).await;
    assert_eq!(json["totals"]["customers_lacking_details"], 0);
    // Nothing lacking: the next run spends no detail read and writes nothing.
    let before = sim.sim.stats().get;
    let s = m.run(RunKind::Sync).await.unwrap();
    assert_eq!((gets_since(&sim, before), s.rows_written), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_customers_get_their_details_read_before_new_ones() {
    let sim = live_sim(60, 1403).await;
    let mut m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    m.run(RunKind::Sync).await.unwrap();
    assert_eq!(m.count(LACKING), 0);
    // Five new customers (the newest of all) and five changed ones.
    let report = sim.sim.mutate(&Mutation {
        create: 5,
        update: 5,
        ..Mutation::default()
    });
    m.settings.sync.details_per_run = 5;
    let before = sim.sim.stats().get;
    m.run(RunKind::Sync).await.unwrap();
    assert_eq!(gets_since(&sim, before), 5);
    let lacking_ids = |m: &Mirror| -> Vec<String> {
        let conn = m.conn();
        let mut stmt = conn
            .prepare(&LACKING.replace("count(*)", "id").replace('\n', " "))
            .unwrap();
        let mut ids: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        ids.sort();
        ids
    };
    let mut created = report.created.clone();
    created.sort();
    assert_eq!(lacking_ids(&m), created, "the changed ones were read first");
    // The new ones hold no guessed metadata meanwhile.
    assert_eq!(
        m.count("SELECT count(*) FROM customers WHERE metadata IS NULL"),
        5
    );
    m.assert_equals_truth(&sim);
    m.run(RunKind::Sync).await.unwrap();
    assert!(lacking_ids(&m).is_empty());
    m.assert_equals_truth(&sim);
    assert_eq!(lomi_sync::verify::pending_details(&m.store()).unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_items_that_carry_metadata_cost_no_detail_read() {
    // Without live quirks, list items show metadata (and environment) in full.
    let sim = spawn_sim(small_sim_options(80, 1404)).await;
    let m = Mirror::new(&sim);
    m.run(RunKind::Backfill).await.unwrap();
    assert_eq!(m.count(LACKING), 0);
    sim.sim.mutate(&Mutation {
        create: 5,
        update: 5,
        ..Mutation::default()
    });
    m.run(RunKind::Sync).await.unwrap();
    m.run(RunKind::Full).await.unwrap();
    assert_eq!(sim.sim.stats().get, 0, "no GET /customers/{{id}} at all");
    assert_eq!(m.count(LACKING), 0);
    m.assert_equals_truth(&sim);
    let json = status_json(&m).await;
    assert_eq!(json["totals"]["customers_lacking_details"], 0);
}
