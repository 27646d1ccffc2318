//! The walk's checkpoint is typed (issue 13, item 1): its kind, phase, segment and
//! where it saw each customer are read back as they were written, the schema refuses
//! any other word (migration 9's CHECK constraints), a walk in progress survives that
//! migration, and a walk that cannot be read is an error, never a walk silently lost.

use std::time::Duration;

use rusqlite::Connection;

use super::{Phase, RunKind, SeenIn, SqliteStore, StoreError, Walk, migrations};
use crate::api::StatusFilter;

/// A walk with every field set (the PostgreSQL store's tests start from it too).
pub(super) fn walk(run_id: i64) -> Walk {
    Walk {
        run_id,
        kind: RunKind::Sync,
        started_at: "2025-06-02T08:00:00.000000Z".into(),
        phase: Phase::Sweep,
        segment: StatusFilter::Inactive,
        next_page: 4,
        page_size: 200,
        last_total: Some(90),
        pass: 1,
        page_cap: Some(100),
        counts: Default::default(),
        initial: false,
        feed: None,
    }
}

fn store_with_walk(dir: &tempfile::TempDir) -> SqliteStore {
    let mut store = SqliteStore::open(&dir.path().join("m.db"), Duration::from_secs(1)).unwrap();
    let run_id = store.start_run(RunKind::Sync).unwrap();
    store.begin_walk(&walk(run_id)).unwrap();
    store
}

fn seen_rows(store: &SqliteStore, rows: &[(&str, &str)]) {
    for (id, seen) in rows {
        store
            .conn()
            .execute(
                "INSERT INTO walk_seen (customer_id, segment) VALUES (?1, ?2)",
                [id, seen],
            )
            .unwrap();
    }
}

#[test]
fn a_walk_reads_back_typed_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_walk(&dir);
    seen_rows(
        &store,
        &[
            ("a", "active"),
            ("b", "inactive"),
            ("c", "all"),
            ("d", "confirm"),
            ("e", "rolling"),
        ],
    );
    let run_id = store.walk().unwrap().unwrap().run_id;
    assert_eq!(store.walk().unwrap(), Some(walk(run_id)));
    let mut seen = store.walk_seen().unwrap();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let listed = |s| SeenIn::Listed(s);
    assert_eq!(
        seen,
        [
            ("a".to_string(), listed(StatusFilter::Active)),
            ("b".to_string(), listed(StatusFilter::Inactive)),
            ("c".to_string(), listed(StatusFilter::All)),
            ("d".to_string(), SeenIn::Confirm),
            ("e".to_string(), SeenIn::Rolling),
        ]
    );
}

/// Each column the engine reads as a word: CHECK refuses any other.
#[test]
fn the_schema_refuses_a_word_the_engine_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_walk(&dir);
    for (sql, what) in [
        ("UPDATE walk SET kind = 'reconcile'", "walk.kind"),
        ("UPDATE walk SET phase = 'topup2'", "walk.phase"),
        ("UPDATE walk SET segment = 'confirm'", "walk.segment"),
        (
            "INSERT INTO walk_seen VALUES ('x', 'topup')",
            "walk_seen.segment",
        ),
    ] {
        let err = store.conn().execute(sql, []).unwrap_err().to_string();
        assert!(err.contains("CHECK constraint failed"), "{what}: {err}");
    }
}

/// A value this version does not know (as a newer version could write, or a hand
/// edit) makes `walk()` / `walk_seen()` fail loudly, saying what to run.
#[test]
fn an_unreadable_walk_is_an_error_that_says_what_to_run() {
    for (sql, detail) in [
        ("UPDATE walk SET kind = 'reconcile'", "kind \"reconcile\""),
        ("UPDATE walk SET phase = 'replay'", "phase \"replay\""),
        ("UPDATE walk SET segment = 'dormant'", "segment \"dormant\""),
        (
            "INSERT INTO walk_seen VALUES ('x', 'replay')",
            "walk_seen.segment \"replay\"",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_walk(&dir);
        store
            .conn()
            .execute_batch(&format!("PRAGMA ignore_check_constraints = ON; {sql};"))
            .unwrap();
        let err = match store.walk().and_then(|_| store.walk_seen()) {
            Err(e @ StoreError::UnreadableWalk { .. }) => e.to_string(),
            other => panic!("{sql}: {other:?}"),
        };
        assert!(err.contains(detail), "{err}");
        assert!(err.contains("`lomi-sync backfill --restart`"), "{err}");
        assert!(err.contains("newer lomi-sync"), "{err}");
    }
}

/// A mirror at version 6 (no CHECK on the walk tables) with a walk in progress: the
/// upgrade keeps the walk and its sightings, then refuses unknown words.
#[test]
fn a_walk_in_progress_survives_the_walk_checks_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let mut c = Connection::open(&path).unwrap();
        migrations().to_version(&mut c, 6).unwrap();
        c.execute_batch(
            "INSERT INTO sync_runs (id, kind, started_at, outcome) VALUES (7, 'backfill', '2025-06-02T08:00:00.000000Z', 'interrupted');
             INSERT INTO walk (id, run_id, kind, started_at, phase, segment, next_page, page_size, last_total, initial,
                               pass, page_cap, list_counts)
                 VALUES (1, 7, 'backfill', '2025-06-02T08:00:00.000000Z', 'topup', 'active', 3, 50, 120, 1,
                         0, 40, '{\"totals\":{\"active\":120}}');
             INSERT INTO walk_seen VALUES ('a', 'active'), ('a', 'inactive'), ('b', 'confirm');",
        )
        .unwrap();
        let sql: String = c
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'walk'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!sql.contains("CHECK (phase"), "an old schema: {sql}");
    }
    let store = SqliteStore::open(&path, Duration::from_secs(1)).unwrap();
    let w = store.walk().unwrap().expect("the walk survives");
    assert_eq!(
        (
            w.run_id,
            w.kind,
            w.phase,
            w.segment,
            w.next_page,
            w.page_size
        ),
        (
            7,
            RunKind::Backfill,
            Phase::Topup,
            StatusFilter::Active,
            3,
            50
        )
    );
    assert_eq!(
        (w.last_total, w.page_cap, w.initial),
        (Some(120), Some(40), true)
    );
    assert_eq!(w.counts.totals.get(StatusFilter::Active), Some(120));
    let mut seen = store.walk_seen().unwrap();
    seen.sort_by_key(|(id, s)| (id.clone(), s.as_str()));
    assert_eq!(
        seen,
        [
            ("a".to_string(), SeenIn::Listed(StatusFilter::Active)),
            ("a".to_string(), SeenIn::Listed(StatusFilter::Inactive)),
            ("b".to_string(), SeenIn::Confirm),
        ]
    );
    let err = store
        .conn()
        .execute("UPDATE walk SET phase = 'replay'", [])
        .unwrap_err();
    assert!(err.to_string().contains("CHECK constraint failed"), "{err}");
}

/// The walk's counts keep the JSON shape earlier versions wrote, and a key that is no
/// segment makes the walk unreadable, not a count silently dropped.
#[test]
fn the_walks_counts_are_per_segment_and_read_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_walk(&dir);
    let json = r#"{"totals":{"active":120,"inactive":7},"unreadable":{"all":2},"missing":3}"#;
    store
        .conn()
        .execute("UPDATE walk SET list_counts = ?1", [json])
        .unwrap();
    let counts = store.walk().unwrap().unwrap().counts;
    assert_eq!(counts.totals.get(StatusFilter::Active), Some(120));
    assert_eq!(counts.totals.get(StatusFilter::Inactive), Some(7));
    assert_eq!(counts.totals.get(StatusFilter::All), None);
    assert_eq!(counts.unreadable.get(StatusFilter::All), Some(2));
    assert_eq!(counts.missing, Some(3));
    assert_eq!(counts.to_json(), json);
    store
        .conn()
        .execute(
            "UPDATE walk SET list_counts = ?1",
            [r#"{"totals":{"dormant":1}}"#],
        )
        .unwrap();
    match store.walk() {
        Err(e @ StoreError::UnreadableWalk { .. }) => {
            assert!(e.to_string().contains("unknown segment \"dormant\""), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
