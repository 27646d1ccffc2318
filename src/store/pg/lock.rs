//! One writer per PostgreSQL mirror: a session-level advisory lock keyed by the schema
//! ([`PgTarget::lock_key`]), held by a connection of its own for the writer's life. The
//! server releases it when that session ends, even when the process is killed, so a
//! crash never leaves a stale lock.

use std::time::Duration;

use postgres::Client;

use super::{PgTarget, off_runtime};
use crate::store::StoreError;

/// Held while a process may write the mirror; dropping it ends the session and so
/// releases the lock.
pub struct AdvisoryLock {
    client: Option<Client>,
}

impl std::fmt::Debug for AdvisoryLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdvisoryLock")
    }
}

impl AdvisoryLock {
    /// Takes the lock, or fails at once with [`StoreError::Locked`] naming the holder
    /// (its `application_name`, address and since when). With `wait`, polls until free.
    pub fn acquire(t: &PgTarget, purpose: &str, wait: bool) -> Result<AdvisoryLock, StoreError> {
        off_runtime(|| {
            let mut client = t.connect(&format!("lomi-sync {purpose}"), Duration::from_secs(10))?;
            loop {
                let got: bool = client
                    .query_one(
                        "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                        &[&t.lock_key()],
                    )?
                    .get(0);
                if got {
                    return Ok(AdvisoryLock {
                        client: Some(client),
                    });
                }
                if !wait {
                    return Err(StoreError::Locked {
                        path: t.shown().into(),
                        holder: holder_on(&mut client, t)
                            .unwrap_or_else(|| "another session".into()),
                    });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            off_runtime(move || drop(c));
        }
    }
}

/// Who holds `t`'s lock now, or `None`.
pub fn holder(t: &PgTarget) -> Option<String> {
    off_runtime(|| {
        let mut client = t
            .connect("lomi-sync status", Duration::from_secs(10))
            .ok()?;
        holder_on(&mut client, t)
    })
}

/// The session holding `t`'s advisory lock, from `pg_locks` and `pg_stat_activity`
/// (a bigint key is `classid` high and `objid` low), as `lomi-sync sync (pid 12) from
/// 10.0.0.5 since 2026-...`.
fn holder_on(client: &mut Client, t: &PgTarget) -> Option<String> {
    let row = client
        .query_opt(
            "SELECT a.application_name, coalesce(host(a.client_addr), 'local socket'),
                    to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended($1, 0)
             LIMIT 1",
            &[&t.lock_key()],
        )
        .ok()??;
    let (app, from, since): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    Some(format!("{app} from {from} since {since}"))
}
