-- The feed engine (issue 14): a walk gains the `feed` phase (transactions read from
-- `GET /transactions` after the customers are listed) and its cursor, `feed`, the
-- `FeedCursor` as JSON (NULL: a walk that reads transactions per customer). SQLite
-- cannot change a CHECK constraint: the table is rebuilt as migration 9 did, its one
-- row copied, so a walk in progress survives the upgrade.
CREATE TABLE walk_new (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    run_id      INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('backfill', 'sync', 'full')),
    started_at  TEXT NOT NULL,
    phase       TEXT NOT NULL CHECK (phase IN ('list', 'topup', 'sweep', 'confirm', 'feed', 'rolling')),
    segment     TEXT NOT NULL CHECK (segment IN ('all', 'active', 'inactive')),
    next_page   INTEGER NOT NULL,
    page_size   INTEGER NOT NULL,
    last_total  INTEGER,
    initial     INTEGER NOT NULL DEFAULT 0,
    pass        INTEGER NOT NULL DEFAULT 0,
    page_cap    INTEGER,
    list_counts TEXT NOT NULL DEFAULT '{}',
    feed        TEXT                        -- `FeedCursor` as JSON, NULL in per-customer mode
);
INSERT INTO walk_new (id, run_id, kind, started_at, phase, segment, next_page, page_size, last_total,
                      initial, pass, page_cap, list_counts)
    SELECT id, run_id, kind, started_at, phase, segment, next_page, page_size, last_total,
           initial, pass, page_cap, list_counts
    FROM walk;
DROP TABLE walk;
ALTER TABLE walk_new RENAME TO walk;

-- The feed's watermark: the newest `created_at` a complete feed pass saw (from the data,
-- never from a clock). An incremental run in feed mode reads back from it.
CREATE TABLE feed_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    watermark  TEXT NOT NULL
);
