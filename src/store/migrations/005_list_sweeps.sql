-- Sweeps: a walk that finds fewer customers in a list segment than the list counts
-- re-reads the segment with larger pages (ties in `created_at` come back in a new order
-- on each request on the live service; a silent row cap hides rows).

-- How many sweeps this walk has made, and the largest page the server proved it serves
-- (NULL until a short page is followed by unseen rows).
ALTER TABLE walk ADD COLUMN pass INTEGER NOT NULL DEFAULT 0;
ALTER TABLE walk ADD COLUMN page_cap INTEGER;
-- What the walk has counted of the list (`ListCounts` as JSON): the totals its
-- completeness check compares with, so that a resumed walk checks as an uninterrupted
-- one would.
ALTER TABLE walk ADD COLUMN list_counts TEXT NOT NULL DEFAULT '{}';

-- A customer can be listed in more than one segment during one walk (an inactive
-- customer who pays moves to `active`): every segment's sightings count for its
-- completeness check, so the key is the pair.
CREATE TABLE walk_seen_new (
    customer_id  TEXT NOT NULL,
    segment      TEXT NOT NULL,
    PRIMARY KEY (customer_id, segment)
) WITHOUT ROWID;
INSERT INTO walk_seen_new (customer_id, segment) SELECT customer_id, segment FROM walk_seen;
DROP TABLE walk_seen;
ALTER TABLE walk_seen_new RENAME TO walk_seen;

-- Customers a run's walk could not list although the list counted them: such a run is
-- `failed` (never `succeeded`), but its walk did complete.
ALTER TABLE sync_runs ADD COLUMN missing_customers INTEGER NOT NULL DEFAULT 0;
