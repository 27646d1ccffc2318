//! The feed engine (issue 14): transactions read from the org-wide feed
//! (`GET /transactions`) instead of one request per customer, against the simulator's
//! truth: a backfill at a fraction of the requests, a silent row cap and drift during
//! the pass that lose nothing, a quiet customer's new payment after one incremental
//! run, a killed pass resumed to the exact mirror, and `auto` falling back when the
//! feed is closed to the key.

use std::collections::BTreeSet;

use lomi_sim::{Faults, Feed, Mutation, Stats};
use lomi_sync::config::TransactionsSource;
use lomi_sync::store::RunKind;
use lomi_sync::sync::SyncError;
use tokio_util::sync::CancellationToken;

use crate::harness::{Mirror, run_bin, text, wait_for};
use crate::support::{TestSim, small_sim_options, spawn_sim};

fn mirror(sim: &TestSim, source: TransactionsSource) -> Mirror {
    let mut m = Mirror::new(sim);
    m.settings.sync.transactions_source = source;
    m
}

/// The requests `sim` served since `before`, by route.
fn spent(sim: &TestSim, before: &Stats) -> Stats {
    let now = sim.sim.stats();
    Stats {
        requests: now.requests - before.requests,
        list: now.list - before.list,
        get: now.get - before.get,
        transactions: now.transactions - before.transactions,
        feed: now.feed - before.feed,
        feed_get: now.feed_get - before.feed_get,
        ..Stats::default()
    }
}

/// Every transaction id `/_sim/truth` holds (live customers' live transactions).
fn truth_tx_ids(sim: &TestSim) -> BTreeSet<String> {
    let truth = sim.sim.truth();
    let mut ids = BTreeSet::new();
    for list in truth["transactions"]
        .as_object()
        .expect("transactions")
        .values()
    {
        for t in list.as_array().expect("a list") {
            ids.insert(t["transaction_id"].as_str().expect("an id").to_string());
        }
    }
    ids
}

fn mirror_tx_ids(m: &Mirror) -> BTreeSet<String> {
    let conn = m.conn();
    let mut stmt = conn
        .prepare("SELECT transaction_id FROM transactions WHERE deleted_at IS NULL")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_backfill_equals_the_truth_at_a_fraction_of_the_requests() {
    let sim = spawn_sim(small_sim_options(400, 1401)).await;
    let per_customer = mirror(&sim, TransactionsSource::PerCustomer);
    let before = sim.sim.stats();
    per_customer.run(RunKind::Backfill).await.unwrap();
    let pc = spent(&sim, &before);
    per_customer.assert_equals_truth(&sim);

    let feed = mirror(&sim, TransactionsSource::Auto);
    let before = sim.sim.stats();
    let summary = feed.run(RunKind::Backfill).await.unwrap();
    let fd = spent(&sim, &before);
    feed.assert_equals_truth(&sim);
    eprintln!("backfill of 400 customers: per customer {pc:?}; feed {fd:?}");
    // No transaction was read per customer; the feed's pages, and the probe of `auto`.
    assert_eq!(fd.transactions, 0);
    assert_eq!(fd.feed, summary.feed_pages + 1);
    assert!(
        fd.requests * 4 < pc.requests,
        "feed {} requests against per customer {}",
        fd.requests,
        pc.requests
    );
    // The feed's fields are in the mirror, and every transaction has its customer.
    assert_eq!(
        feed.count("SELECT count(*) FROM transactions WHERE transaction_type IS NULL"),
        0
    );
    assert_eq!(
        feed.count(
            "SELECT count(*) FROM transactions t WHERE NOT EXISTS
             (SELECT 1 FROM customers c WHERE c.rowid = t.customer_seq)"
        ),
        0
    );
    let watermark = feed.count("SELECT count(*) FROM feed_state");
    assert_eq!(watermark, 1, "the pass recorded its watermark");
    // The first load went through the stage (migration 11), emptied by the merge, each
    // row counted once and none recorded as a change.
    assert_eq!(feed.count("SELECT count(*) FROM feed_stage"), 0);
    assert_eq!(
        summary.applied.transactions_inserted,
        feed.count("SELECT count(*) FROM transactions") as u64
    );
    assert_eq!(
        feed.count("SELECT count(*) FROM changes WHERE entity = 'transaction'"),
        0
    );
    // `status` says where transactions came from: the feed, no fallback.
    let out = run_bin(Some(&feed.config_file("")), None, &["status", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(
        json["transactions_source"],
        serde_json::json!({"source": "feed", "fallback": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_feed_row_cap_loses_no_row() {
    let sim = spawn_sim(small_sim_options(200, 1402)).await;
    sim.sim.set_feed(Feed {
        row_cap: 40,
        ..Feed::default()
    });
    let m = mirror(&sim, TransactionsSource::Feed);
    let summary = m.run(RunKind::Backfill).await.unwrap();
    m.assert_equals_truth(&sim);
    // Pages of 40 once the cap was proven, each row once: about rows / 40 pages.
    let rows = m.count("SELECT count(*) FROM transactions") as u64;
    assert!(
        summary.feed_pages <= rows.div_ceil(40) + 3,
        "{} feed pages for {rows} rows",
        summary.feed_pages
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_during_the_feed_pass_loses_nothing_and_the_next_sync_reads_it() {
    let sim = spawn_sim(small_sim_options(200, 1403)).await;
    sim.sim.set_feed(Feed {
        row_cap: 40,
        insert_per_page: 3,
        ..Feed::default()
    });
    let before = truth_tx_ids(&sim);
    let m = mirror(&sim, TransactionsSource::Feed);
    let first = m.run(RunKind::Backfill).await.unwrap();
    // Everything created before the pass started is in; the drift is newer than its
    // fixed end, so it is the next run's.
    let read = mirror_tx_ids(&m);
    // Rows shifted by the drift were read twice, staged twice, and counted once.
    assert!(
        first.transactions_seen > read.len() as u64,
        "pages overlapped"
    );
    assert_eq!(first.applied.transactions_inserted, read.len() as u64);
    let missing: Vec<_> = before.difference(&read).collect();
    assert!(
        missing.is_empty(),
        "missing after the backfill: {missing:?}"
    );
    assert!(truth_tx_ids(&sim).len() > before.len(), "the feed drifted");
    sim.sim.set_feed(Feed::default());
    m.run(RunKind::Sync).await.unwrap();
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_customers_new_payment_is_in_the_mirror_after_one_feed_sync() {
    let sim = spawn_sim(small_sim_options(300, 1404)).await;
    let mut m = mirror(&sim, TransactionsSource::Feed);
    m.run(RunKind::Backfill).await.unwrap();
    // A round of ordinary activity: new payments (quiet customers' too), new customers.
    let report = sim.sim.mutate(&Mutation {
        add_tx: 30,
        create: 3,
        update: 3,
        ..Mutation::default()
    });
    assert_eq!(report.tx_added.len(), 30);
    let before = sim.sim.stats();
    let summary = m.run(RunKind::Sync).await.unwrap();
    let spent = spent(&sim, &before);
    m.assert_equals_truth(&sim);
    let ids = mirror_tx_ids(&m);
    assert!(report.tx_added.iter().all(|t| ids.contains(t)));
    // From the watermark on, not the whole feed again; no per-customer reads.
    assert_eq!(spent.transactions, 0);
    eprintln!(
        "incremental feed sync: {spent:?}, {} feed pages",
        summary.feed_pages
    );
    // Statuses move (pending -> completed -> refunded); `settle` picks them anywhere
    // in the seed's months, so the lookback is widened to hold them all: a change
    // within `sync.status_lookback` of the watermark is applied by the next run (older
    // ones wait for the rolling re-read, not built yet).
    m.settings.sync.status_lookback = std::time::Duration::from_secs(3650 * 24 * 3600).into();
    let settled = sim.sim.mutate(&Mutation {
        settle: 10,
        ..Mutation::default()
    });
    assert!(!settled.tx_changed.is_empty());
    m.run(RunKind::Sync).await.unwrap();
    m.assert_equals_truth(&sim);
}

/// The walk's phase and how far its feed pass has read, from another connection.
fn feed_progress(m: &Mirror) -> Option<(String, i64)> {
    let conn = rusqlite::Connection::open(&m.db).ok()?;
    conn.query_row(
        "SELECT phase, coalesce(json_extract(feed, '$.read_to'), 0) FROM walk",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_pass_interrupted_midway_resumes_to_the_exact_mirror() {
    let mut opts = small_sim_options(200, 1405);
    opts.faults = Faults {
        p_slow: 1.0,
        slow_ms: 15,
        ..Faults::default()
    };
    let sim = spawn_sim(opts).await;
    sim.sim.set_feed(Feed {
        row_cap: 20,
        ..Feed::default()
    });
    let m = mirror(&sim, TransactionsSource::Feed);
    let cancel = CancellationToken::new();
    let watch = async {
        let midway = |p: Option<(String, i64)>| p.is_some_and(|(ph, n)| ph == "feed" && n >= 100);
        assert!(wait_for(60, || midway(feed_progress(&m))).await);
        cancel.cancel();
    };
    let (first, ()) = tokio::join!(m.run_with(RunKind::Backfill, false, &cancel), watch);
    assert!(matches!(first, Err(SyncError::Interrupted)), "{first:?}");
    // The pages read so far are staged and committed; the table takes them only when
    // the pass completes (a first load's rows are merged in key order, migration 11).
    assert!(m.count("SELECT count(*) FROM feed_stage") >= 100);
    assert_eq!(m.count("SELECT count(*) FROM transactions"), 0);
    sim.sim.set_faults(Faults::default());
    let rows = truth_tx_ids(&sim).len() as u64;
    let resumed = m.run(RunKind::Backfill).await.unwrap();
    assert!(resumed.resumed_walk_of.is_some());
    m.assert_equals_truth(&sim);
    assert_eq!(m.count("SELECT count(*) FROM feed_stage"), 0);
    // It read on from its checkpoint: not the pages before it again.
    assert!(
        resumed.feed_pages < rows.div_ceil(20),
        "{} pages resumed for {rows} rows",
        resumed.feed_pages
    );
}

/// A mirror of 200 customers whose source then deleted 12 transactions anywhere in the
/// feed, and a full walk cancelled once its pass (pages of 20) has read half the feed:
/// the simulator, the mirror, the simulator's counters before that walk, and the
/// number of rows of the feed.
async fn a_full_pass_cancelled_midway(seed: u64) -> (TestSim, Mirror, Stats, i64) {
    let sim = spawn_sim(small_sim_options(200, seed)).await;
    let m = mirror(&sim, TransactionsSource::Feed);
    m.run(RunKind::Backfill).await.unwrap();
    let rows = m.count("SELECT count(*) FROM transactions");
    let report = sim.sim.mutate(&Mutation {
        delete_tx: 12,
        ..Mutation::default()
    });
    assert_eq!(report.tx_deleted.len(), 12);
    sim.sim.set_feed(Feed {
        row_cap: 20,
        ..Feed::default()
    });
    sim.sim.set_faults(Faults {
        p_slow: 1.0,
        slow_ms: 15,
        ..Faults::default()
    });
    let cancel = CancellationToken::new();
    let watch = async {
        let midway =
            |p: Option<(String, i64)>| p.is_some_and(|(ph, n)| ph == "feed" && n >= rows / 2);
        assert!(wait_for(60, || midway(feed_progress(&m))).await);
        cancel.cancel();
    };
    let before = sim.sim.stats();
    let (first, ()) = tokio::join!(m.run_with(RunKind::Full, false, &cancel), watch);
    assert!(matches!(first, Err(SyncError::Interrupted)), "{first:?}");
    sim.sim.set_faults(Faults::default());
    (sim, m, before, rows)
}

const DELETED: &str = "SELECT count(*) FROM transactions WHERE deleted_at IS NOT NULL";

/// A full pass cancelled midway ([`a_full_pass_cancelled_midway`]): each window a page
/// finished was confirmed before the page's checkpoint was committed, and the resumed
/// pass confirms on from the checkpoint's window top, so the run that completes the
/// pass leaves no deleted row live, each asked for about once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pass_interrupted_midway_still_confirms_every_deletion() {
    let (sim, m, before, _) = a_full_pass_cancelled_midway(1412).await;
    // The newer half of the feed was read: its deletions are committed already.
    assert!(
        m.count(DELETED) > 0,
        "no deletion confirmed before the cancel"
    );
    let resumed = m.run(RunKind::Full).await.unwrap();
    assert!(resumed.resumed_walk_of.is_some());
    m.assert_equals_truth(&sim);
    assert_eq!(m.count(DELETED), 12);
    // Each deletion asked for once, give or take a row sharing the checkpoint's instant.
    let asked = spent_feed_get(&sim, &before);
    assert!((12..=14).contains(&asked), "{asked} rows asked for by id");
}

/// A pass checkpointed by a version that kept no window top (it confirmed at the pass's
/// end only) cannot know what its read pages did not show: resumed, it reads the feed
/// again from the top, and the mirror ends exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_checkpointed_without_a_window_top_is_read_again_from_the_top() {
    let (sim, m, _, rows) = a_full_pass_cancelled_midway(1414).await;
    let legacy = "UPDATE walk SET feed = json_remove(feed, '$.window_top')";
    assert_eq!(m.conn().execute(legacy, []).unwrap(), 1);
    // As that version left it: nothing confirmed before the cancel.
    m.conn()
        .execute("UPDATE transactions SET deleted_at = NULL", [])
        .unwrap();
    let resumed = m.run(RunKind::Full).await.unwrap();
    assert!(resumed.resumed_walk_of.is_some());
    m.assert_equals_truth(&sim);
    assert_eq!(m.count(DELETED), 12);
    assert!(
        resumed.feed_pages as i64 >= rows / 20,
        "{} pages for {rows} rows in pages of 20",
        resumed.feed_pages
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_per_customer_when_the_feed_is_closed() {
    let sim = spawn_sim(small_sim_options(200, 1406)).await;
    sim.sim.set_feed(Feed {
        disabled: true,
        ..Feed::default()
    });
    let m = mirror(&sim, TransactionsSource::Auto);
    let before = sim.sim.stats();
    let summary = m.run(RunKind::Backfill).await.unwrap();
    let spent = spent(&sim, &before);
    m.assert_equals_truth(&sim);
    // One probe, then the per-customer walk.
    assert_eq!((spent.feed, summary.feed_pages), (1, 0));
    assert!(spent.transactions > 0);
    sim.sim.mutate(&Mutation {
        add_tx: 5,
        update: 2,
        ..Mutation::default()
    });
    m.run(RunKind::Sync).await.unwrap();
    // Said in `status`, text and JSON, with the probe's answer.
    let config = m.config_file("");
    let out = run_bin(Some(&config), None, &["status"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(
            "transactions source: per_customer (feed not available: HTTP 404 from GET /transactions?page=1&pageSize=1"
        ),
        "{stdout}"
    );
    let out = run_bin(Some(&config), None, &["status", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(json["transactions_source"]["source"], "per_customer");
    assert!(
        json["transactions_source"]["fallback"]
            .as_str()
            .is_some_and(|f| f.starts_with("HTTP 404 from GET /transactions")),
        "{json}"
    );
    // `feed` mode says so instead.
    let strict = mirror(&sim, TransactionsSource::Feed);
    let err = strict.run(RunKind::Backfill).await.unwrap_err();
    assert!(err.to_string().contains("not open to this key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_missing_from_a_complete_pass_is_confirmed_then_marked_deleted() {
    let sim = spawn_sim(small_sim_options(200, 1407)).await;
    let m = mirror(&sim, TransactionsSource::Feed);
    m.run(RunKind::Backfill).await.unwrap();
    let report = sim.sim.mutate(&Mutation {
        delete_tx: 4,
        add_tx: 5,
        ..Mutation::default()
    });
    assert_eq!(report.tx_deleted.len(), 4);
    let before = sim.sim.stats();
    // A full walk: the whole feed, so every deletion is in its window.
    let summary = m.run(RunKind::Full).await.unwrap();
    let spent = spent(&sim, &before);
    m.assert_equals_truth(&sim);
    // Only the rows the pass did not show were asked for, one by one.
    assert_eq!((spent.feed_get, summary.feed_confirmations), (4, 4));
    assert_eq!(
        m.count("SELECT count(*) FROM transactions WHERE deleted_at IS NOT NULL"),
        4
    );
    // Nothing vanished since: nothing to confirm, nothing deleted.
    let before = sim.sim.stats();
    m.run(RunKind::Full).await.unwrap();
    assert_eq!(spent_feed_get(&sim, &before), 0);
}

/// Payments deleted soon after they were made: the mirror's newest rows are newer than
/// anything the next pass shows (its first page starts below them), and they are still
/// asked for by id and marked deleted, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_transactions_deleted_at_the_source_are_marked_deleted_by_the_next_sync() {
    let sim = spawn_sim(small_sim_options(200, 1413)).await;
    let m = mirror(&sim, TransactionsSource::Feed);
    m.run(RunKind::Backfill).await.unwrap();
    let report = sim.sim.mutate(&Mutation {
        delete_newest_tx: 3,
        ..Mutation::default()
    });
    assert_eq!(report.tx_deleted.len(), 3);
    let before = sim.sim.stats();
    let summary = m.run(RunKind::Sync).await.unwrap();
    m.assert_equals_truth(&sim);
    assert_eq!(
        (spent_feed_get(&sim, &before), summary.feed_confirmations),
        (3, 3)
    );
    let deleted = m.strings("SELECT transaction_id FROM transactions WHERE deleted_at IS NOT NULL");
    assert_eq!(
        deleted.into_iter().collect::<BTreeSet<_>>(),
        report.tx_deleted.into_iter().collect()
    );
}

/// The rows a pass did not show are found window by window (each page finishes the
/// window above its oldest row, `Vanished`): over pages of 40 (a silent cap), every
/// deletion anywhere in the feed is confirmed, and nothing else is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_across_many_pages_are_each_confirmed_once() {
    let sim = spawn_sim(small_sim_options(200, 1411)).await;
    let m = mirror(&sim, TransactionsSource::Feed);
    m.run(RunKind::Backfill).await.unwrap();
    let report = sim.sim.mutate(&Mutation {
        delete_tx: 12,
        ..Mutation::default()
    });
    assert_eq!(report.tx_deleted.len(), 12);
    sim.sim.set_feed(Feed {
        row_cap: 40,
        ..Feed::default()
    });
    let before = sim.sim.stats();
    let summary = m.run(RunKind::Full).await.unwrap();
    let spent = spent(&sim, &before);
    assert!(spent.feed > 12, "{} feed pages", spent.feed);
    assert_eq!((spent.feed_get, summary.feed_confirmations), (12, 12));
    m.assert_equals_truth(&sim);
    assert_eq!(
        m.count("SELECT count(*) FROM transactions WHERE deleted_at IS NOT NULL"),
        12
    );
}

fn spent_feed_get(sim: &TestSim, before: &Stats) -> u64 {
    sim.sim.stats().feed_get - before.feed_get
}

/// The feed still lists the transactions of soft-deleted customers (NOTES.md), whom
/// the customer list never shows: each is read by id (404), kept as a tombstone, and no
/// transaction is left without its customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_rows_of_customers_the_list_does_not_show_get_their_customer_read() {
    let sim = spawn_sim(small_sim_options(200, 1408)).await;
    let report = sim.sim.mutate(&Mutation {
        delete: 6,
        ..Mutation::default()
    });
    let m = mirror(&sim, TransactionsSource::Feed);
    let before = sim.sim.stats();
    let summary = m.run(RunKind::Backfill).await.unwrap();
    let spent = spent(&sim, &before);
    m.assert_equals_truth(&sim);
    let tombstones = m.count("SELECT count(*) FROM customers WHERE deleted_at IS NOT NULL");
    assert!(tombstones > 0 && tombstones <= report.deleted.len() as i64);
    assert_eq!(
        spent.get, tombstones as u64,
        "one read per unknown customer"
    );
    assert_eq!(summary.customer_reads, spent.get);
    // Their transactions are kept, under the tombstone.
    let kept = m.count(
        "SELECT count(*) FROM transactions t JOIN customers c ON c.rowid = t.customer_seq
         WHERE c.deleted_at IS NOT NULL",
    );
    assert!(kept > 0);
}

/// Makes the mirror's rolling cycle (`feed_state.rolling_since`) `hours` old, as if its
/// start were that long ago: the slices are sized by the time elapsed against
/// `sync.full_every`, and a test cannot wait a day.
fn age_rolling_cycle(m: &Mirror, hours: u32) {
    let changed = m
        .conn()
        .execute(
            "UPDATE feed_state SET rolling_since = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)",
            [format!("-{hours} hours")],
        )
        .unwrap();
    assert_eq!(changed, 1, "a completed pass wrote the feed's state");
}

/// Refunds and deletions of payments older than `sync.status_lookback` change nothing
/// an incremental pass reads (the feed has no "updated since" filter): the rolling
/// re-read finds them, a slice of the feed per run, the whole feed within
/// `sync.full_every` (24 h here, four runs 6 h apart), each run at about a quarter of a
/// full re-read's pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_refunds_and_deletions_reach_the_mirror_within_full_every_a_slice_per_run() {
    let sim = spawn_sim(small_sim_options(400, 1409)).await;
    // Pages of 50 rows, so that the feed is many pages and a slice is a share of them.
    sim.sim.set_feed(Feed {
        row_cap: 50,
        ..Feed::default()
    });
    let m = mirror(&sim, TransactionsSource::Feed);
    m.run(RunKind::Backfill).await.unwrap();
    let rows = m.count("SELECT count(*) FROM transactions") as u64;
    let full_pages = rows.div_ceil(50);
    // Every pending payment settles, then completed ones are refunded, anywhere in the
    // seed's months; transactions are deleted anywhere too.
    let pending = m.count("SELECT count(*) FROM transactions WHERE status = 'pending'") as u32;
    let report = sim.sim.mutate(&Mutation {
        settle: pending + 15,
        delete_tx: 8,
        ..Mutation::default()
    });
    assert_eq!(report.tx_deleted.len(), 8);

    // Right after the backfill's cycle started, nothing is due below the window: the
    // old changes are not in the mirror yet.
    let before = sim.sim.stats();
    let first = m.run(RunKind::Sync).await.unwrap();
    let mut confirmations = spent(&sim, &before).feed_get;
    assert_eq!(first.feed_rolling_pages, 0);
    assert!(
        !m.differences(&sim).is_empty(),
        "old refunds or deletions the incremental window cannot see"
    );
    for quarter in 1..=4 {
        age_rolling_cycle(&m, quarter * 6);
        let before = sim.sim.stats();
        let s = m.run(RunKind::Sync).await.unwrap();
        let spent = spent(&sim, &before);
        confirmations += spent.feed_get;
        eprintln!(
            "after {}h: {} rolling pages of {full_pages}, {spent:?}",
            quarter * 6,
            s.feed_rolling_pages
        );
        // A quarter of the feed's pages, give or take a page and the end's probe.
        assert!(
            s.feed_rolling_pages >= full_pages / 4 - 2
                && s.feed_rolling_pages <= full_pages.div_ceil(4) + 3,
            "{} rolling pages in a run for {full_pages} pages of feed",
            s.feed_rolling_pages
        );
        assert_eq!(spent.transactions, 0);
    }
    m.assert_equals_truth(&sim);
    // Each deletion was confirmed by id once, when its slice passed it.
    assert_eq!(confirmations, 8);
    assert_eq!(
        m.count("SELECT count(*) FROM transactions WHERE deleted_at IS NOT NULL"),
        8
    );
    // The cycle ended with the fourth run: the next starts from the top, nothing due.
    let next = m.run(RunKind::Sync).await.unwrap();
    assert_eq!(next.feed_rolling_pages, 0);
    assert_eq!(
        m.count("SELECT count(*) FROM feed_state WHERE rolling_end IS NULL"),
        1
    );
}

/// The slice's end from another connection (`None` before a slice committed a page).
fn rolling_end(m: &Mirror) -> Option<String> {
    let conn = rusqlite::Connection::open(&m.db).ok()?;
    conn.query_row("SELECT rolling_end FROM feed_state", [], |r| r.get(0))
        .ok()
        .flatten()
}

/// The mirror's rows at or above the slice's end, from another connection: how far the
/// cycle's slices have read down the feed (0 before a slice committed a page).
fn rows_above_rolling_end(m: &Mirror) -> i64 {
    let Ok(conn) = rusqlite::Connection::open(&m.db) else {
        return 0;
    };
    conn.query_row(
        "SELECT count(*) FROM transactions WHERE created_at >= (SELECT rolling_end FROM feed_state)",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// A run killed in the middle of its rolling slice: each page committed the slice's new
/// end with its rows, the deletions above it confirmed, so the next run reads on from
/// there, not from the top again, and the cycle still ends with the mirror exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_slice_interrupted_midway_reads_on_from_its_checkpoint_and_confirms_every_deletion()
 {
    let sim = spawn_sim(small_sim_options(400, 1410)).await;
    sim.sim.set_feed(Feed {
        row_cap: 50,
        ..Feed::default()
    });
    let m = mirror(&sim, TransactionsSource::Feed);
    m.run(RunKind::Backfill).await.unwrap();
    let full_pages = (m.count("SELECT count(*) FROM transactions") as u64).div_ceil(50);
    let pending = m.count("SELECT count(*) FROM transactions WHERE status = 'pending'") as u32;
    let report = sim.sim.mutate(&Mutation {
        settle: pending + 15,
        delete_tx: 12,
        ..Mutation::default()
    });
    assert_eq!(report.tx_deleted.len(), 12);
    // The cycle is due whole: this run's slice reads to the feed's end, slowly.
    age_rolling_cycle(&m, 24);
    sim.sim.set_faults(Faults {
        p_slow: 1.0,
        slow_ms: 15,
        ..Faults::default()
    });
    let cancel = CancellationToken::new();
    let watch = async {
        // A few hundred rows (pages of 50) into the slice.
        assert!(wait_for(60, || rows_above_rolling_end(&m) >= 400).await);
        cancel.cancel();
    };
    let (first, ()) = tokio::join!(m.run_with(RunKind::Sync, false, &cancel), watch);
    assert!(matches!(first, Err(SyncError::Interrupted)), "{first:?}");
    let checkpoint = rolling_end(&m).expect("the slice's end was committed");
    // Deletions above the checkpoint were confirmed before it was committed.
    let deleted = "SELECT count(*) FROM transactions WHERE deleted_at IS NOT NULL";
    let above = m.count(&format!(
        "SELECT count(*) FROM transactions WHERE deleted_at IS NOT NULL AND created_at > '{checkpoint}'"
    ));
    assert!(
        above > 0,
        "no deletion above the checkpoint at {checkpoint}"
    );
    sim.sim.set_faults(Faults::default());
    let resumed = m.run(RunKind::Sync).await.unwrap();
    assert!(resumed.resumed_walk_of.is_some());
    // Read on from the checkpoint: fewer pages than the whole feed below the window.
    assert!(
        resumed.feed_rolling_pages > 0 && resumed.feed_rolling_pages + 5 < full_pages,
        "{} rolling pages resumed of {full_pages} (checkpoint {checkpoint})",
        resumed.feed_rolling_pages
    );
    m.assert_equals_truth(&sim);
    assert_eq!(m.count(deleted), 12);
    assert_eq!(rolling_end(&m), None, "the cycle ended");
}
