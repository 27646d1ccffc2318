-- What the service said of each route's rate-limit budget during a run (the last
-- X-RateLimit-* headers seen) and how many 429s the run met on it, so that `status`
-- shows where each route stands without asking the service.
CREATE TABLE run_route_budgets (
    run_id        INTEGER NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    route         TEXT NOT NULL,
    rate_limit    INTEGER,
    remaining     INTEGER,
    -- When the service said the window resets (UTC, RFC 3339).
    reset_at      TEXT,
    rate_limited  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, route)
) WITHOUT ROWID;
