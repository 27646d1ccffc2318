//! One writer per mirror. SQLite would serialise two writers, but two interleaved walks
//! would each mistake the other's rows for their own bookkeeping; so a run holds an
//! exclusive advisory lock on `<db>.lock` for its whole life. The kernel drops the lock
//! when the process dies, even on `kill -9`, so a crash never leaves a stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::StoreError;

/// Held while a process may write the mirror; dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    file: File,
}

impl WriterLock {
    /// Takes the lock, or fails at once naming the holder. With `wait`, polls until the
    /// holder releases it.
    pub fn acquire(db: &Path, purpose: &str, wait: bool) -> Result<WriterLock, StoreError> {
        let path = lock_path(db);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        loop {
            match file.try_lock() {
                Ok(()) => break,
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
        Ok(WriterLock { file })
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Who holds the writer lock of `db` now (`pid 1234 (backfill) since ...`), or `None`
/// when nobody does. Creates nothing: no lock file means no writer.
pub fn holder(db: &Path) -> Option<String> {
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
        let first = WriterLock::acquire(&db, "backfill", false).unwrap();
        let err = WriterLock::acquire(&db, "sync", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("backfill"),
            "{err}"
        );
        drop(first);
        WriterLock::acquire(&db, "sync", false).unwrap();
    }
}
