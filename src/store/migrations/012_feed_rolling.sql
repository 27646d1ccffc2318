-- The feed's rolling re-read (issue 14): each incremental run in feed mode also re-reads
-- a slice of the feed older than its lookback window, so that a refund or a deletion of
-- an old payment reaches the mirror within `sync.full_every`.
--
-- `rolling_end`: where the next slice starts (its `endDate`), the oldest `created_at`
-- the slices of this cycle have read so far, from the data; NULL: the next slice starts
-- at the incremental pass's floor (a new cycle). `rolling_since`: when the current
-- cycle started, on this machine's clock (UTC, the mirror's timestamp form): it sizes
-- the slices (a share of the cycle's rows proportional to the time elapsed against
-- `sync.full_every`), never a request's bounds. NULL: no cycle was ever completed.
ALTER TABLE feed_state ADD COLUMN rolling_end TEXT;
ALTER TABLE feed_state ADD COLUMN rolling_since TEXT;

-- Where each run read transactions from (`feed` or `per_customer`), and, when
-- `sync.transactions_source = "auto"` fell back, why (the probe's error). NULL for runs
-- before this version.
ALTER TABLE sync_runs ADD COLUMN transactions_source TEXT;
ALTER TABLE sync_runs ADD COLUMN source_note TEXT;
