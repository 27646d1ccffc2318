//! One writer per mirror. SQLite would serialise two writers, but two interleaved walks
//! would each mistake the other's rows for their own bookkeeping; so a run holds an
//! exclusive advisory lock on `<db>.lock` for its whole life. The kernel drops the lock
//! when the process dies, even on `kill -9`, so a crash never leaves a stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Location, StoreError};

/// Held while a process may write the mirror; dropping it releases the lock.
///
/// A run that created the lock file and ends with no mirror beside it (a rejected key,
/// a failure before the first write) removes the file again, so a failed first try
/// leaves nothing behind. Removing a lock file is safe only because [`WriterLock::acquire`]
/// checks, once it holds the lock, that the file it locked is still the one at the path
/// (else a process that waited on the removed file and one that created a new file
/// would both hold "the" lock).
#[derive(Debug)]
pub struct WriterLock {
    /// `_held` is only ever dropped (which releases it).
    _held: Held,
}

/// The lock of either store.
#[derive(Debug)]
// One per process: the size of the PostgreSQL variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Held {
    File(#[allow(dead_code)] FileLock),
    Postgres(#[allow(dead_code)] super::pg::AdvisoryLock),
}

impl WriterLock {
    /// Takes the mirror's writer lock (`<db>.lock` for SQLite, an advisory lock for
    /// PostgreSQL), or fails at once with [`StoreError::Locked`] naming the holder.
    /// With `wait`, polls until the holder releases it.
    pub fn acquire(at: &Location, purpose: &str, wait: bool) -> Result<WriterLock, StoreError> {
        let held = match at {
            Location::Sqlite(db) => Held::File(FileLock::acquire(db, purpose, wait)?),
            Location::Postgres(t) => {
                Held::Postgres(super::pg::AdvisoryLock::acquire(t, purpose, wait)?)
            }
        };
        Ok(WriterLock { _held: held })
    }
}

/// Who holds the writer lock of the mirror now, or `None` when nobody does.
pub fn holder(at: &Location) -> Option<String> {
    match at {
        Location::Sqlite(db) => file_holder(db),
        Location::Postgres(t) => super::pg::lock::holder(t),
    }
}

/// The SQLite mirror's lock file, held.
#[derive(Debug)]
struct FileLock {
    file: File,
    /// The lock file and the mirror, when this process created the lock file.
    created: Option<(PathBuf, PathBuf)>,
}

/// Opens (or creates) the lock file; `true` when this call created it.
fn open_lock(path: &Path) -> Result<(File, bool), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    match options.clone().create_new(true).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            options.open(path).map(|f| (f, false)).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

/// The locked file is still the one at `path` (not removed, nor replaced, meanwhile).
fn still_at(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

impl FileLock {
    /// Takes the lock, or fails at once naming the holder. With `wait`, polls until the
    /// holder releases it.
    fn acquire(db: &Path, purpose: &str, wait: bool) -> Result<FileLock, StoreError> {
        let path = lock_path(db);
        let (mut file, mut created) = open_lock(&path)?;
        loop {
            match file.try_lock() {
                Ok(()) if still_at(&file, &path) => break,
                // The holder removed the file as it left: lock the one at the path now.
                Ok(()) => {
                    let _ = file.unlock();
                    (file, created) = open_lock(&path)?;
                }
                Err(TryLockError::WouldBlock) if wait => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(StoreError::Locked {
                        path: db.to_owned(),
                        holder: if holder.is_empty() {
                            "another process".into()
                        } else {
                            holder.to_string()
                        },
                    });
                }
                Err(TryLockError::Error(source)) => return Err(StoreError::Io { path, source }),
            }
        }
        let holder = format!(
            "pid {} ({}) since {}",
            std::process::id(),
            purpose,
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        );
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(holder.as_bytes())?;
            f.flush()
        };
        write(&mut file).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(FileLock {
            file,
            created: created.then(|| (path, db.to_owned())),
        })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        if let Some((lock, db)) = &self.created
            && !db.exists()
        {
            // Removed while still held: see the type's comment.
            let _ = std::fs::remove_file(lock);
        }
        let _ = self.file.unlock();
    }
}

/// Who holds the writer lock of `db` now (`pid 1234 (backfill) since ...`), or `None`
/// when nobody does. Creates nothing: no lock file means no writer.
pub(super) fn file_holder(db: &Path) -> Option<String> {
    let mut file = File::open(lock_path(db)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let text = text.trim();
            Some(if text.is_empty() {
                "another process".into()
            } else {
                text.to_string()
            })
        }
        Err(TryLockError::Error(_)) => None,
    }
}

/// `<db>.lock`, beside the database.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("m.db");
        let first = WriterLock::acquire(&Location::sqlite(&db), "backfill", false).unwrap();
        let err = WriterLock::acquire(&Location::sqlite(&db), "sync", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("backfill"),
            "{err}"
        );
        drop(first);
        WriterLock::acquire(&Location::sqlite(&db), "sync", false).unwrap();
    }

    #[test]
    fn a_lock_file_created_for_a_mirror_never_written_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("m.db");
        drop(WriterLock::acquire(&Location::sqlite(&db), "backfill", false).unwrap());
        assert!(!lock_path(&db).exists(), "no mirror, no lock file left");
        let held = WriterLock::acquire(&Location::sqlite(&db), "backfill", false).unwrap();
        std::fs::write(&db, b"").unwrap();
        drop(held);
        assert!(lock_path(&db).exists(), "kept beside a mirror");
        drop(WriterLock::acquire(&Location::sqlite(&db), "sync", false).unwrap());
        assert!(lock_path(&db).exists(), "not created by that run: kept");
    }

    #[test]
    fn a_waiter_on_a_removed_lock_file_locks_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("m.db");
        let first = WriterLock::acquire(&Location::sqlite(&db), "backfill", false).unwrap();
        let db2 = db.clone();
        let waiter = std::thread::spawn(move || {
            WriterLock::acquire(&Location::sqlite(&db2), "sync", true).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        // The first run fails with no mirror: its lock file goes.
        drop(first);
        let second = waiter.join().unwrap();
        assert!(
            lock_path(&db).exists(),
            "the waiter holds a file at the path"
        );
        assert_eq!(
            holder(&Location::sqlite(&db)).map(|h| h.contains("(sync)")),
            Some(true),
            "the lock at the path is the waiter's"
        );
        drop(second);
    }
}
