-- Version 4 (issue 12). The hook that runs after this file (store::v4) rewrites every
-- timestamp the mirror holds to the one form with microseconds,
-- YYYY-MM-DDTHH:MM:SS.ffffffZ (versions 1 to 3 wrote milliseconds, and cut the live
-- service's microseconds): created_at and updated_at are read again from `raw`, which
-- has kept what the API sent, and the mirror's own timestamps are padded. It also
-- upper-cases transactions.currency_code, so that `xof` joins `currencies` as `XOF`
-- in the views, as amount_minor already did.

-- Records a run skipped because their id could not be read (counted each time one
-- was received).
ALTER TABLE sync_runs ADD COLUMN records_skipped INTEGER NOT NULL DEFAULT 0;
