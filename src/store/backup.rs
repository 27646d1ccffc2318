//! `lomi-sync backup PATH`: a whole, consistent copy of the mirror, safe while a run or
//! the daemon writes it. Copying `mirror.db` with `cp` while it is open can miss the
//! commits still in its WAL, or catch a checkpoint halfway.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::StoreError;

/// What a backup wrote, read back from the copy.
#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    /// The backup file written.
    pub path: PathBuf,
    /// Its size, in bytes.
    pub bytes: u64,
    /// Rows in the copy's `customers` table.
    pub customers: i64,
    /// Rows in the copy's `transactions` table.
    pub transactions: i64,
    /// Rows in the copy's `sync_runs` table.
    pub runs: i64,
    /// `PRAGMA quick_check` of the copy: "ok".
    pub check: String,
}

/// Copies the mirror at `mirror` to `target` with `VACUUM INTO`, and checks the copy.
///
/// `VACUUM INTO` reads in one read transaction, so the copy is the mirror as of its last
/// commit, with the WAL's commits folded in, even while a writer goes on (WAL lets it);
/// it takes no writer lock. The copy is compact and one self-contained file (rollback
/// journal, no `-wal`). It is written under a temporary name beside `target` and renamed
/// once complete, so a failed backup leaves no partial file at `target`. An existing
/// `target` is refused unless `overwrite` (and never the mirror itself); when replaced,
/// a stale `-wal`/`-shm` beside it goes too (SQLite would apply it to the new copy).
pub fn backup(
    mirror: &Path,
    target: &Path,
    overwrite: bool,
    busy_timeout: Duration,
) -> Result<BackupReport, StoreError> {
    check_target(mirror, target, overwrite)?;
    let conn = Connection::open_with_flags(
        mirror,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: mirror.to_owned(),
        source,
    })?;
    conn.busy_timeout(busy_timeout)?;
    let partial = sibling(target, &format!(".partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let written = conn
        .execute("VACUUM INTO ?1", [partial.to_string_lossy()])
        .map_err(StoreError::from)
        .and_then(|_| report(&partial));
    let report = match written {
        Ok(r) if r.check == "ok" => r,
        Ok(r) => {
            let _ = std::fs::remove_file(&partial);
            return Err(StoreError::BackupCheck {
                path: target.to_owned(),
                check: r.check,
            });
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(sibling(target, suffix));
    }
    let io = |source| StoreError::Io {
        path: target.to_owned(),
        source,
    };
    // `VACUUM INTO` does not sync its output: make the copy durable before it replaces
    // anything, and the rename durable after.
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&partial, target).map_err(io)?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(BackupReport {
        path: target.to_owned(),
        ..report
    })
}

/// Refuses a target that exists (unless `overwrite`), is the mirror, or is in a
/// directory that does not exist.
fn check_target(mirror: &Path, target: &Path, overwrite: bool) -> Result<(), StoreError> {
    if !mirror.exists() {
        return Err(StoreError::Missing {
            path: mirror.to_owned(),
        });
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(StoreError::NoBackupDirectory {
            path: dir.to_owned(),
        });
    }
    if target.exists() {
        let why = if std::fs::canonicalize(target).ok() == std::fs::canonicalize(mirror).ok() {
            " and is the mirror itself; choose another path"
        } else if target.is_dir() {
            " and is a directory; name the backup file, e.g. DIR/mirror-backup.db"
        } else if !overwrite {
            "; choose another path, or pass --force to replace it"
        } else {
            return Ok(());
        };
        return Err(StoreError::BackupExists {
            path: target.to_owned(),
            why,
        });
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Row counts and a quick check of a finished copy.
fn report(copy: &Path) -> Result<BackupReport, StoreError> {
    let conn = Connection::open_with_flags(
        copy,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    let (customers, transactions, runs) = conn.query_row(
        "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM transactions),
                (SELECT count(*) FROM sync_runs)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let bytes = std::fs::metadata(copy).map_or(0, |m| m.len());
    Ok(BackupReport {
        path: copy.to_owned(),
        bytes,
        customers,
        transactions,
        runs,
        check,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn mirror(dir: &Path) -> PathBuf {
        let path = dir.join("m.db");
        let store = SqliteStore::open(&path, Duration::from_secs(5)).unwrap();
        store
            .conn()
            .execute_batch(
                "INSERT INTO customers (id, first_seen_at, synced_at, raw) VALUES ('c1', 'x', 'x', '{}');
                 INSERT INTO sync_runs (kind, started_at, outcome) VALUES ('backfill', 'x', 'succeeded');",
            )
            .unwrap();
        path
    }

    #[test]
    fn a_backup_is_one_checked_file_and_an_existing_one_needs_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let m = mirror(dir.path());
        let target = dir.path().join("b.db");
        let r = backup(&m, &target, false, Duration::from_secs(1)).unwrap();
        assert_eq!((r.customers, r.transactions, r.runs), (1, 0, 1));
        assert_eq!(r.check, "ok");
        assert_eq!(r.path, target);
        assert!(r.bytes > 0);
        let mode: String = Connection::open(&target)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete", "one self-contained file");
        let err = backup(&m, &target, false, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        std::fs::write(sibling(&target, "-wal"), b"stale").unwrap();
        backup(&m, &target, true, Duration::from_secs(1)).unwrap();
        assert!(!sibling(&target, "-wal").exists(), "a stale WAL is removed");
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".partial-")
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn the_mirror_itself_and_missing_places_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = mirror(dir.path());
        let err = backup(&m, &m, true, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("is the mirror itself"), "{err}");
        let err = backup(&m, dir.path(), true, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let err = backup(
            &m,
            &dir.path().join("no/such/dir/b.db"),
            false,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::NoBackupDirectory { .. }), "{err}");
        let err = backup(
            &dir.path().join("none.db"),
            &dir.path().join("b.db"),
            false,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::Missing { .. }), "{err}");
        assert!(!dir.path().join("b.db").exists());
    }
}
