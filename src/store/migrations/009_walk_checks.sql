-- The walk's checkpoint holds only words this version knows (issue 13): its kind, phase
-- and segment, and where it saw each customer, each under a CHECK constraint, so that
-- a value the engine cannot read is refused when it is written, not met when a killed
-- run is resumed. SQLite cannot add a CHECK to a column: both tables are rebuilt (they
-- hold one checkpoint row and the current walk's sightings), their rows copied as they
-- are, so a walk in progress survives the upgrade and the next run resumes it. Every
-- released version wrote only these words.

CREATE TABLE walk_new (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    run_id      INTEGER NOT NULL,          -- the run driving it now
    kind        TEXT NOT NULL CHECK (kind IN ('backfill', 'sync', 'full')),
    started_at  TEXT NOT NULL,
    phase       TEXT NOT NULL CHECK (phase IN ('list', 'topup', 'sweep', 'confirm', 'rolling')),
    segment     TEXT NOT NULL CHECK (segment IN ('all', 'active', 'inactive')),
    next_page   INTEGER NOT NULL,
    page_size   INTEGER NOT NULL,
    last_total  INTEGER,
    initial     INTEGER NOT NULL DEFAULT 0, -- first load into an empty mirror (bulk mode)
    pass        INTEGER NOT NULL DEFAULT 0, -- sweeps made so far
    page_cap    INTEGER,                    -- the largest page the server proved it serves
    list_counts TEXT NOT NULL DEFAULT '{}'  -- `ListCounts` as JSON
);
INSERT INTO walk_new (id, run_id, kind, started_at, phase, segment, next_page, page_size, last_total,
                      initial, pass, page_cap, list_counts)
    SELECT id, run_id, kind, started_at, phase, segment, next_page, page_size, last_total,
           initial, pass, page_cap, list_counts
    FROM walk;
DROP TABLE walk;
ALTER TABLE walk_new RENAME TO walk;

-- Where the walk saw a customer (`SeenIn`): listed in a segment, or read by the confirm
-- or rolling phase. The key stays first (see migration 3).
CREATE TABLE walk_seen_new (
    customer_id  TEXT NOT NULL,
    segment      TEXT NOT NULL CHECK (segment IN ('all', 'active', 'inactive', 'confirm', 'rolling')),
    PRIMARY KEY (customer_id, segment)
) WITHOUT ROWID;
INSERT INTO walk_seen_new (customer_id, segment) SELECT customer_id, segment FROM walk_seen;
DROP TABLE walk_seen;
ALTER TABLE walk_seen_new RENAME TO walk_seen;
