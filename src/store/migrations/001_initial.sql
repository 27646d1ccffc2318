-- lomi-sync schema, version 1. Analysts write SQL against these tables: change them
-- only through a new migration, never by editing this one.
-- Timestamps are ISO-8601 UTC text (YYYY-MM-DDTHH:MM:SS.sssZ) so SQLite's date
-- functions work on every column and text order is time order.

CREATE TABLE customers (
    id               TEXT PRIMARY KEY,      -- the API's `id` (docs) or `customer_id` (live)
    organization_id  TEXT,
    name             TEXT,
    email            TEXT,
    phone_number     TEXT,
    whatsapp_number  TEXT,
    country          TEXT,
    city             TEXT,
    address          TEXT,
    postal_code      TEXT,
    is_business      INTEGER,               -- 0/1, NULL if the API did not say
    metadata         TEXT,                  -- JSON object, NULL if unknown
    environment      TEXT,                  -- 'live' or 'test'
    created_at       TEXT,                  -- as the API gave it (normalised to UTC)
    updated_at       TEXT,                  -- as the API gave it (normalised to UTC)
    first_seen_at    TEXT NOT NULL,         -- when the mirror first wrote the row
    synced_at        TEXT NOT NULL,         -- when the mirror last changed the row
    deleted_at       TEXT,                  -- when the mirror saw it deleted; NULL while live
    raw              TEXT NOT NULL          -- the last JSON object received, every field kept
);
CREATE INDEX customers_email ON customers (email);
CREATE INDEX customers_created_at ON customers (created_at);
CREATE INDEX customers_deleted_at ON customers (deleted_at) WHERE deleted_at IS NOT NULL;
-- Covers "every live customer" scans of the engine without reading whole rows.
CREATE INDEX customers_live ON customers (id) WHERE deleted_at IS NULL;

CREATE TABLE transactions (
    transaction_id       TEXT NOT NULL,
    customer_id          TEXT NOT NULL,
    description          TEXT,
    gross_amount         TEXT,              -- the exact decimal as received: '10000', '10.5'
    amount_minor         INTEGER,           -- exact integer in the currency's minor unit
    currency_code        TEXT,
    status               TEXT,              -- pending, completed, failed, refunded, expired
    payment_method_code  TEXT,
    provider_code        TEXT,
    metadata             TEXT,              -- JSON, NULL if none
    created_at           TEXT,
    first_seen_at        TEXT NOT NULL,
    synced_at            TEXT NOT NULL,
    deleted_at           TEXT,              -- set when it vanished from its customer's list
    raw                  TEXT NOT NULL,
    customer_seq         INTEGER NOT NULL,  -- internal: the customer's rowid in customers
    -- Clustered by customer, in the order customers were first stored: a customer's
    -- payments are read and written together, and a backfill appends instead of
    -- scattering inserts over the file (random ids as keys would).
    PRIMARY KEY (customer_seq, transaction_id)
) WITHOUT ROWID;
-- Pending payments are few and often queried ("stuck in pending"): a partial index.
CREATE INDEX transactions_pending ON transactions (created_at) WHERE status = 'pending';
-- transactions_id (transaction_id), transactions_customer (customer_id, created_at) and
-- transactions_created_at (created_at) are created by the store (DEFERRED_INDEXES in
-- src/store/mod.rs): a first backfill builds them once at its end instead of updating
-- them row by row.

CREATE TABLE sync_runs (
    id                     INTEGER PRIMARY KEY,
    kind                   TEXT NOT NULL CHECK (kind IN ('backfill', 'sync', 'full')),
    started_at             TEXT NOT NULL,
    finished_at            TEXT,
    outcome                TEXT NOT NULL CHECK (outcome IN ('running', 'succeeded', 'failed', 'interrupted')),
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
    error                  TEXT
);

CREATE TABLE changes (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL REFERENCES sync_runs (id),
    observed_at  TEXT NOT NULL,
    entity       TEXT NOT NULL CHECK (entity IN ('customer', 'transaction')),
    entity_id    TEXT NOT NULL,
    customer_id  TEXT NOT NULL,            -- the customer, or the transaction's customer
    kind         TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'deleted', 'restored')),
    fields       TEXT                      -- JSON {"field": {"old": ..., "new": ...}} for updated/restored
);
CREATE INDEX changes_entity ON changes (entity, entity_id);
CREATE INDEX changes_customer ON changes (customer_id, observed_at);
CREATE INDEX changes_observed_at ON changes (observed_at);

-- Bookkeeping of the sync engine (not for analytics).

-- When each customer's transactions were last read from the API, and a summary of what
-- that read found, so planning a run never has to scan the transactions table.
CREATE TABLE customer_sync (
    customer_id       TEXT PRIMARY KEY,
    tx_checked_at     TEXT NOT NULL,
    live_tx           INTEGER NOT NULL,   -- transactions in the customer's list
    last_tx_at        TEXT,               -- the newest one's created_at
    newest_pending_at TEXT                -- the newest pending one's created_at
) WITHOUT ROWID;

-- The walk in progress, if any: what a killed run resumes from.
CREATE TABLE walk (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    run_id      INTEGER NOT NULL,          -- the run driving it now
    kind        TEXT NOT NULL,             -- backfill, sync or full
    started_at  TEXT NOT NULL,
    phase       TEXT NOT NULL,             -- list, topup, confirm, rolling
    segment     TEXT NOT NULL,             -- all, active, inactive
    next_page   INTEGER NOT NULL,
    page_size   INTEGER NOT NULL,
    last_total  INTEGER,
    initial     INTEGER NOT NULL DEFAULT 0  -- first load into an empty mirror (bulk mode)
);

-- Customers the walk in progress has seen, and in which list segment.
CREATE TABLE walk_seen (
    customer_id  TEXT PRIMARY KEY,
    segment      TEXT NOT NULL
) WITHOUT ROWID;
