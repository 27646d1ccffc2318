-- A scheduled run that meets a long rate-limit wait (the live service's 429 asks for
-- 900 s) commits its checkpoint and ends `deferred`, with the time it may resume, so the
-- daemon stays calm and the next tick after that time resumes the walk (issue 15).
--
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt as its docs
-- describe (https://sqlite.org/lang_altertable.html, "making other kinds of table
-- schema changes"). Foreign keys are off while migrations run (src/store/mod.rs), so
-- dropping the old table neither fails nor cascades into `changes` and
-- `run_route_budgets`, whose REFERENCES name the table and so follow the new one; the
-- hook checks them afterwards. The `freshness` view names the table too and is
-- re-created as 002_views.sql has it.
DROP VIEW freshness;

CREATE TABLE sync_runs_new (
    id                     INTEGER PRIMARY KEY,
    kind                   TEXT NOT NULL CHECK (kind IN ('backfill', 'sync', 'full')),
    started_at             TEXT NOT NULL,
    finished_at            TEXT,
    outcome                TEXT NOT NULL
                           CHECK (outcome IN ('running', 'succeeded', 'failed', 'interrupted', 'deferred')),
    resumed_walk_of        INTEGER,         -- the run whose unfinished walk this run continued
    pages                  INTEGER NOT NULL DEFAULT 0,
    requests               INTEGER NOT NULL DEFAULT 0,
    retries                INTEGER NOT NULL DEFAULT 0,
    customers_inserted     INTEGER NOT NULL DEFAULT 0,
    customers_updated      INTEGER NOT NULL DEFAULT 0,
    customers_deleted      INTEGER NOT NULL DEFAULT 0,
    customers_restored     INTEGER NOT NULL DEFAULT 0,
    transactions_inserted  INTEGER NOT NULL DEFAULT 0,
    transactions_updated   INTEGER NOT NULL DEFAULT 0,
    transactions_deleted   INTEGER NOT NULL DEFAULT 0,
    transactions_restored  INTEGER NOT NULL DEFAULT 0,
    error                  TEXT,
    records_skipped        INTEGER NOT NULL DEFAULT 0,
    missing_customers      INTEGER NOT NULL DEFAULT 0,
    -- A deferred run: when the service's rate limit lets the walk go on (UTC).
    resume_at              TEXT,
    CHECK ((outcome = 'deferred') = (resume_at IS NOT NULL))
);

INSERT INTO sync_runs_new (id, kind, started_at, finished_at, outcome, resumed_walk_of, pages, requests,
                           retries, customers_inserted, customers_updated, customers_deleted,
                           customers_restored, transactions_inserted, transactions_updated,
                           transactions_deleted, transactions_restored, error, records_skipped,
                           missing_customers)
SELECT id, kind, started_at, finished_at, outcome, resumed_walk_of, pages, requests,
       retries, customers_inserted, customers_updated, customers_deleted,
       customers_restored, transactions_inserted, transactions_updated,
       transactions_deleted, transactions_restored, error, records_skipped,
       missing_customers
FROM sync_runs;

DROP TABLE sync_runs;
ALTER TABLE sync_runs_new RENAME TO sync_runs;

CREATE VIEW freshness AS
SELECT (SELECT max(finished_at) FROM sync_runs WHERE outcome = 'succeeded') AS last_success_at,
       CAST(round((julianday('now') - julianday((SELECT max(finished_at) FROM sync_runs WHERE outcome = 'succeeded'))) * 86400) AS INTEGER)
           AS seconds_since_success,
       (SELECT outcome FROM sync_runs ORDER BY id DESC LIMIT 1) AS last_run_outcome,
       (SELECT count(*) FROM customers WHERE deleted_at IS NULL) AS live_customers,
       (SELECT count(*) FROM customers WHERE deleted_at IS NOT NULL) AS deleted_customers,
       (SELECT count(*) FROM transactions WHERE deleted_at IS NULL) AS live_transactions,
       (SELECT count(*) FROM transactions WHERE deleted_at IS NULL AND status = 'pending') AS pending_transactions;
