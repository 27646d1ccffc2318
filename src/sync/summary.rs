//! The one line a run ends with: `Display` for [`RunSummary`], printed by the CLI and
//! the demo, logged by the daemon, matched by the tests and the README's examples.

use std::fmt;

use super::RunSummary;

/// `KIND run ID finished in S.Ss: P pages, R requests (N retries), customers +I ~U -D ↺R,
/// transactions +I ~U -D ↺R[, feed P pages (R rolling), C confirmed by id][, N records
/// skipped ...][; payments note]`. An incremental
/// run also says whose payments it did not re-read (the store's `NotReread`), so nobody
/// takes its revenue figures as checked.
impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.applied;
        write!(f, "{} run ", self.kind)?;
        match self.run_id {
            Some(id) => write!(f, "{id}")?,
            None => f.write_str("(dry)")?,
        }
        write!(
            f,
            " finished in {:.1}s: {} pages, {} requests ({} retries), customers +{} ~{} -{} ↺{}, transactions +{} ~{} -{} ↺{}",
            self.duration_secs,
            a.pages,
            self.requests,
            self.retries,
            a.customers_inserted,
            a.customers_updated,
            a.customers_deleted,
            a.customers_restored,
            a.transactions_inserted,
            a.transactions_updated,
            a.transactions_deleted,
            a.transactions_restored
        )?;
        if self.feed_pages > 0 {
            write!(
                f,
                ", feed {} pages ({} rolling), {} confirmed by id",
                self.feed_pages, self.feed_rolling_pages, self.feed_confirmations
            )?;
        }
        if self.records_skipped > 0 {
            write!(
                f,
                ", {} records skipped (unreadable id, see the warnings)",
                self.records_skipped
            )?;
        }
        if let Some(n) = &self.not_reread {
            write!(f, "; {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Applied, NotReread};
    use crate::sync::RunSummary;

    fn summary() -> RunSummary {
        RunSummary {
            run_id: Some(7),
            kind: crate::store::RunKind::Sync,
            duration_secs: 1.26,
            requests: 40,
            retries: 2,
            applied: Applied {
                pages: 3,
                customers_inserted: 1,
                customers_updated: 2,
                customers_deleted: 3,
                customers_restored: 4,
                transactions_inserted: 5,
                transactions_updated: 6,
                transactions_deleted: 7,
                transactions_restored: 8,
            },
            ..RunSummary::default()
        }
    }

    #[test]
    fn the_summary_line_reads_as_the_readme_shows_it() {
        assert_eq!(
            summary().to_string(),
            "sync run 7 finished in 1.3s: 3 pages, 40 requests (2 retries), \
             customers +1 ~2 -3 ↺4, transactions +5 ~6 -7 ↺8"
        );
        let dry = RunSummary {
            run_id: None,
            records_skipped: 2,
            ..summary()
        };
        assert!(
            dry.to_string().starts_with("sync run (dry) finished")
                && dry
                    .to_string()
                    .ends_with(", 2 records skipped (unreadable id, see the warnings)"),
            "{dry}"
        );
        let partial = RunSummary {
            not_reread: Some(NotReread {
                customers: 5,
                oldest_read_at: Some("2025-06-01T00:00:00.000000Z".into()),
                by: None,
            }),
            ..summary()
        };
        assert!(
            partial.to_string().ends_with(
                "↺8; payments of 5 customers not re-read by this run \
                 (oldest read 2025-06-01T00:00:00.000000Z); sync.full_every re-reads them all by unknown"
            ),
            "{partial}"
        );
        let feed = RunSummary {
            feed_pages: 12,
            feed_rolling_pages: 9,
            feed_confirmations: 1,
            ..summary()
        };
        assert!(
            feed.to_string()
                .ends_with("↺8, feed 12 pages (9 rolling), 1 confirmed by id"),
            "{feed}"
        );
        let none_left = RunSummary {
            not_reread: Some(NotReread::default()),
            ..summary()
        };
        assert!(
            none_left
                .to_string()
                .ends_with("↺8; every customer's payments re-read")
        );
    }
}
