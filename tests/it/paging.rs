//! A list whose paging misbehaves, as real services' does (NOTES.md): rows tied on
//! `created_at` in a new order on every request, totals that lie, a silent row cap.
//! After each run the mirror equals the source, or the run does not succeed and says
//! how many customers it could not list.

use lomi_sim::{Paging, SimOptions};
use lomi_sync::store::RunKind;
use lomi_sync::sync::SyncError;

use crate::harness::Mirror;
use crate::support::{small_sim_options, spawn_sim};

/// Every customer created at one instant (a bulk import), returned in a new order on
/// each list request.
fn tied(customers: usize, seed: u64) -> SimOptions {
    SimOptions {
        bulk_import_share: 1.0,
        paging: Paging {
            shuffle_ties: true,
            ..Paging::default()
        },
        ..small_sim_options(customers, seed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_tied_on_created_at_in_shuffled_order_are_all_listed() {
    // (customers, page size, status segments): the 6 in pages of 2, and a
    // group large enough that a plain walk all but surely skips some.
    for (customers, page_size, segments) in
        [(6, 2, false), (6, 2, true), (60, 5, true), (60, 5, false)]
    {
        let sim = spawn_sim(tied(customers, 11)).await;
        let mut m = Mirror::new(&sim);
        m.settings.api.page_size = page_size;
        m.settings.sync.use_status_filter = segments;
        let what = format!("{customers} tied customers in pages of {page_size}");
        m.run(RunKind::Backfill).await.expect(&what);
        assert_eq!(
            m.count("SELECT count(*) FROM customers"),
            customers as i64,
            "{what}"
        );
        m.assert_equals_truth(&sim);
        m.run(RunKind::Sync).await.expect(&what);
        m.assert_equals_truth(&sim);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_that_lie_do_not_end_the_walk_early() {
    // (count delta, pages delta): under-reported, with pages matching the lie (the
    // issue's 25 customers reported as 20 in 2 pages), pages that disagree with the
    // count, and an over-reported page count.
    for (count, pages) in [(-5, 0), (-5, -1), (0, -2), (0, 7), (-24, 0)] {
        let sim = spawn_sim(small_sim_options(25, 12)).await;
        sim.sim.set_paging(Paging {
            total_count_delta: count,
            total_pages_delta: pages,
            ..Paging::default()
        });
        for segments in [false, true] {
            let mut m = Mirror::new(&sim);
            m.settings.api.page_size = 10;
            m.settings.sync.use_status_filter = segments;
            let what = format!("totalCount {count:+}, totalPages {pages:+}, segments {segments}");
            m.run(RunKind::Backfill).await.expect(&what);
            assert_eq!(m.count("SELECT count(*) FROM customers"), 25, "{what}");
            m.assert_equals_truth(&sim);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_row_cap_is_learned_and_no_row_is_skipped() {
    // The server serves at most 200 rows a page but offsets by the requested 300.
    let sim = spawn_sim(SimOptions {
        max_page_size: 1000,
        paging: Paging {
            row_cap: 200,
            ..Paging::default()
        },
        ..small_sim_options(300, 13)
    })
    .await;
    for segments in [false, true] {
        let mut m = Mirror::new(&sim);
        m.settings.api.page_size = 300;
        m.settings.sync.use_status_filter = segments;
        let s = m.run(RunKind::Backfill).await.unwrap();
        assert_eq!(m.count("SELECT count(*) FROM customers"), 300);
        m.assert_equals_truth(&sim);
        // Without status segments, the one list of 300 needs pages past the cap.
        if !segments {
            assert_eq!(s.list_page_cap, Some(200), "the cap is reported");
        }
        let s = m.run(RunKind::Sync).await.unwrap();
        assert_eq!(s.rows_written, 0);
    }
    // A short last page is the end of the list, not a cap.
    let sim = spawn_sim(small_sim_options(25, 14)).await;
    let mut m = Mirror::new(&sim);
    m.settings.api.page_size = 10;
    m.settings.sync.use_status_filter = false;
    let s = m.run(RunKind::Backfill).await.unwrap();
    assert_eq!(s.list_page_cap, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_that_counts_customers_it_never_shows_fails_the_run_and_says_how_many() {
    // (customers, count delta): 3 more counted than shown; an empty list that says it
    // holds 2 customers.
    for (customers, delta) in [(5, 3), (0, 2)] {
        let sim = spawn_sim(small_sim_options(customers, 15)).await;
        sim.sim.set_paging(Paging {
            total_count_delta: delta,
            ..Paging::default()
        });
        let mut m = Mirror::new(&sim);
        m.settings.sync.use_status_filter = false;
        let what = format!(
            "{customers} customers counted as {}",
            customers as i64 + delta
        );
        match m.run(RunKind::Backfill).await {
            Err(SyncError::Incomplete { missing, .. }) => {
                assert_eq!(missing, delta as u64, "{what}")
            }
            other => panic!("{what}: expected an incomplete run, got {other:?}"),
        }
        // What could be read is kept; the run is recorded as failed, with the count.
        assert_eq!(m.count("SELECT count(*) FROM customers"), customers as i64);
        let (outcome, missing, error): (String, i64, String) = m
            .conn()
            .query_row(
                "SELECT outcome, missing_customers, error FROM sync_runs ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((outcome.as_str(), missing), ("failed", delta), "{what}");
        assert!(
            error.contains(&format!("{delta} customers")),
            "{what}: {error}"
        );
        assert_eq!(m.count("SELECT count(*) FROM walk"), 0, "the walk is over");
        // Once the list is honest, the next run lists again, incrementally, and succeeds.
        sim.sim.set_paging(Paging::default());
        let s = m.run(RunKind::Sync).await.expect(&what);
        assert_eq!(
            s.kind, "sync",
            "{what}: the incomplete backfill loaded the mirror"
        );
        m.assert_equals_truth(&sim);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_resumed_after_listing_still_fails_for_customers_it_could_not_list() {
    // The list counts 3 customers it never shows. The walk gives up sweeping, then
    // fails while confirming (every GET /customers/{id} answers an error body): the
    // resumed run starts at confirm, lists nothing, and must still not succeed.
    let sim = spawn_sim(small_sim_options(20, 16)).await;
    let mut m = Mirror::new(&sim);
    m.settings.sync.use_status_filter = false;
    m.settings.api.max_retries = 0;
    m.run(RunKind::Backfill).await.unwrap();
    sim.sim.mutate(&lomi_sim::Mutation {
        delete: 2,
        ..Default::default()
    });
    sim.sim.set_paging(Paging {
        total_count_delta: 3,
        ..Paging::default()
    });
    sim.sim.set_faults(lomi_sim::Faults {
        p_error_body_get: 1.0,
        ..Default::default()
    });
    let e = m.run(RunKind::Sync).await.unwrap_err();
    assert!(!matches!(e, SyncError::Incomplete { .. }), "{e}");
    assert_eq!(
        m.count("SELECT count(*) FROM walk WHERE phase = 'confirm'"),
        1
    );
    sim.sim.set_faults(Default::default());
    match m.run(RunKind::Sync).await {
        Err(SyncError::Incomplete { missing, .. }) => assert_eq!(missing, 3),
        other => panic!("the resumed walk must not succeed: {other:?}"),
    }
    sim.sim.set_paging(Paging::default());
    m.run(RunKind::Sync).await.unwrap();
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_the_list_skips_but_confirm_finds_present_are_not_missing() {
    // Every customer shares one created_at, ties come back in a new order on every
    // request, and the server serves one row a page: no sweep can see them all. The
    // mirror knows them from an earlier backfill, so the confirm phase reads each
    // one the list hid, finds it present, and the run succeeds.
    let sim = spawn_sim(tied(600, 17)).await;
    sim.sim.set_paging(Paging::default());
    let mut m = Mirror::new(&sim);
    m.settings.sync.use_status_filter = false;
    m.run(RunKind::Backfill).await.unwrap();
    sim.sim.set_paging(Paging {
        shuffle_ties: true,
        row_cap: 1,
        ..Paging::default()
    });
    m.settings.api.page_size = 1;
    let s = m.run(RunKind::Sync).await.unwrap();
    assert!(s.customer_reads > 0, "the list hid some customers: {s:?}");
    m.assert_equals_truth(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_growing_during_the_walk_is_not_taken_for_a_page_cap() {
    // A customer is created at the top before every list page is served: the probe
    // after the last, short page shows rows the walk has listed, shifted down.
    let sim = spawn_sim(small_sim_options(25, 18)).await;
    sim.sim.set_drift(lomi_sim::Drift {
        insert_per_page: 1,
        delete_per_page: 0,
    });
    let mut m = Mirror::new(&sim);
    m.settings.api.page_size = 10;
    m.settings.sync.use_status_filter = false;
    let s = m.run(RunKind::Backfill).await.unwrap();
    assert_eq!(s.list_page_cap, None);
}
