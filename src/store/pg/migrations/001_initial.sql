-- Version 1 of the PostgreSQL mirror (issue 17): the SQLite mirror's tables, views and
-- indexes as of its version 14, in native types where they help analysts:
-- `timestamptz` (microseconds, as the API's timestamps are normalised), `numeric` for
-- the exact decimal amounts beside their integer minor units, `jsonb` for `metadata`,
-- `raw` and `changes.fields`, `boolean` for flags. Runs with `search_path` set to the
-- store's schema (`store.schema`), so every name below lands there.
-- Internal bookkeeping (`walk`, `walk_seen`, `customer_sync`, `feed_state`, `feed_stage`,
-- `webhook_events`) keeps the SQLite layout; analysts read the tables and views.

CREATE TABLE customers (
    id                 text PRIMARY KEY,     -- the API's `id` (docs) or `customer_id` (live)
    organization_id    text,
    name               text,
    email              text,
    phone_number       text,
    whatsapp_number    text,
    country            text,
    city               text,
    address            text,
    postal_code        text,
    is_business        boolean,              -- NULL if the API did not say
    metadata           jsonb,                -- NULL if unknown
    environment        text,                 -- 'live' or 'test'
    created_at         timestamptz,
    updated_at         timestamptz,
    first_seen_at      timestamptz NOT NULL, -- when the mirror first wrote the row
    synced_at          timestamptz NOT NULL, -- when the mirror last changed the row
    deleted_at         timestamptz,          -- when the mirror saw it deleted; NULL while live
    raw                jsonb NOT NULL,       -- the last JSON object received, every field kept
    -- The `updated_at` whose `GET /customers/{id}` the mirror holds (NULL: none read yet;
    -- '-infinity': read, and the customer had no `updated_at`; SQLite's '').
    details_updated_at timestamptz
);
CREATE INDEX customers_created_at ON customers (created_at);
CREATE INDEX customers_deleted_at ON customers (deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX customers_lacking_details ON customers (created_at)
    WHERE deleted_at IS NULL
      AND details_updated_at IS DISTINCT FROM coalesce(updated_at, '-infinity');

CREATE TABLE customer_sync (
    customer_id       text PRIMARY KEY,
    tx_checked_at     timestamptz NOT NULL,
    live_tx           bigint NOT NULL,      -- transactions in the customer's list
    last_tx_at        timestamptz,          -- the newest one's created_at
    newest_pending_at timestamptz           -- the newest pending one's created_at
);

CREATE TABLE currencies (
    code      text PRIMARY KEY,
    exponent  integer NOT NULL,
    factor    bigint NOT NULL               -- 10^exponent
);
INSERT INTO currencies (code, exponent, factor) VALUES
    ('XOF', 0, 1), ('XAF', 0, 1), ('GNF', 0, 1), ('RWF', 0, 1), ('UGX', 0, 1), ('JPY', 0, 1),
    ('USD', 2, 100), ('EUR', 2, 100), ('GBP', 2, 100), ('GHS', 2, 100), ('NGN', 2, 100),
    ('KES', 2, 100), ('ZAR', 2, 100), ('MAD', 2, 100), ('CDF', 2, 100), ('TZS', 2, 100),
    ('KRW', 0, 1), ('CLP', 0, 1), ('VND', 0, 1), ('BIF', 0, 1), ('DJF', 0, 1), ('KMF', 0, 1),
    ('PYG', 0, 1), ('VUV', 0, 1), ('XPF', 0, 1),
    ('BHD', 3, 1000), ('KWD', 3, 1000), ('OMR', 3, 1000), ('TND', 3, 1000), ('JOD', 3, 1000),
    ('IQD', 3, 1000), ('LYD', 3, 1000);

-- A transaction is keyed by its customer and its id, as in SQLite (where the customer is
-- its rowid): the same id under two customers is two rows.
CREATE TABLE transactions (
    customer_id          text NOT NULL,
    transaction_id       text NOT NULL,
    description          text,
    gross_amount         numeric,            -- the exact decimal as received
    amount_minor         bigint,             -- exact integer in the currency's minor unit
    currency_code        text,
    status               text,               -- pending, completed, failed, refunded, expired
    payment_method_code  text,
    provider_code        text,
    metadata             jsonb,
    created_at           timestamptz,
    first_seen_at        timestamptz NOT NULL,
    synced_at            timestamptz NOT NULL,
    deleted_at           timestamptz,        -- set when it vanished from the source
    raw                  jsonb NOT NULL,
    transaction_type     text,
    discount_amount      numeric,
    discount_minor       bigint,
    fee_amount           numeric,
    fee_minor            bigint,
    net_amount           numeric,
    net_minor            bigint,
    updated_at           timestamptz,
    PRIMARY KEY (customer_id, transaction_id)
);
CREATE INDEX transactions_pending ON transactions (created_at) WHERE status = 'pending';
-- The deferred indexes (`pg::DEFERRED_INDEXES`): dropped while a first backfill loads,
-- built at its end.
CREATE INDEX transactions_id ON transactions (transaction_id);
CREATE INDEX transactions_created_at ON transactions (created_at);
CREATE INDEX customers_email ON customers (email);

CREATE TABLE sync_runs (
    id                     bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    kind                   text NOT NULL CHECK (kind IN ('backfill', 'sync', 'full')),
    started_at             timestamptz NOT NULL,
    finished_at            timestamptz,
    outcome                text NOT NULL
                           CHECK (outcome IN ('running', 'succeeded', 'failed', 'interrupted', 'deferred')),
    resumed_walk_of        bigint,           -- the run whose unfinished walk this run continued
    pages                  bigint NOT NULL DEFAULT 0,
    requests               bigint NOT NULL DEFAULT 0,
    retries                bigint NOT NULL DEFAULT 0,
    customers_inserted     bigint NOT NULL DEFAULT 0,
    customers_updated      bigint NOT NULL DEFAULT 0,
    customers_deleted      bigint NOT NULL DEFAULT 0,
    customers_restored     bigint NOT NULL DEFAULT 0,
    transactions_inserted  bigint NOT NULL DEFAULT 0,
    transactions_updated   bigint NOT NULL DEFAULT 0,
    transactions_deleted   bigint NOT NULL DEFAULT 0,
    transactions_restored  bigint NOT NULL DEFAULT 0,
    error                  text,
    records_skipped        bigint NOT NULL DEFAULT 0,
    missing_customers      bigint NOT NULL DEFAULT 0,
    resume_at              timestamptz,      -- a deferred run: when the walk may go on
    transactions_source    text,
    source_note            text,
    CHECK ((outcome = 'deferred') = (resume_at IS NOT NULL))
);

CREATE TABLE run_route_budgets (
    run_id        bigint NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    route         text NOT NULL,
    rate_limit    bigint,
    remaining     bigint,
    reset_at      timestamptz,
    rate_limited  bigint NOT NULL DEFAULT 0,  -- 429s the run met on the route
    PRIMARY KEY (run_id, route)
);

CREATE TABLE walk (
    id          integer PRIMARY KEY CHECK (id = 1),
    run_id      bigint NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('backfill', 'sync', 'full')),
    started_at  timestamptz NOT NULL,
    phase       text NOT NULL CHECK (phase IN ('list', 'topup', 'sweep', 'confirm', 'feed', 'rolling')),
    segment     text NOT NULL CHECK (segment IN ('all', 'active', 'inactive')),
    next_page   bigint NOT NULL,
    page_size   bigint NOT NULL,
    last_total  bigint,
    initial     boolean NOT NULL DEFAULT false,
    pass        bigint NOT NULL DEFAULT 0,
    page_cap    bigint,
    list_counts text NOT NULL DEFAULT '{}', -- `ListCounts` as JSON
    feed        text                        -- `FeedCursor` as JSON, NULL in per-customer mode
);

CREATE TABLE walk_seen (
    customer_id  text NOT NULL,
    segment      text NOT NULL CHECK (segment IN ('all', 'active', 'inactive', 'confirm', 'rolling')),
    PRIMARY KEY (customer_id, segment)
);

CREATE TABLE feed_state (
    id            integer PRIMARY KEY CHECK (id = 1),
    watermark     timestamptz NOT NULL,
    rolling_end   timestamptz,
    rolling_since timestamptz
);

-- The first load's feed rows, appended as read and merged at the pass's end. Logged like
-- the rest: the walk's checkpoint, committed with each page, counts on its rows.
CREATE TABLE feed_stage (LIKE transactions);
ALTER TABLE feed_stage DROP COLUMN first_seen_at, DROP COLUMN synced_at, DROP COLUMN deleted_at,
    ADD COLUMN staged_at timestamptz NOT NULL;

CREATE TABLE webhook_events (
    id           text PRIMARY KEY,          -- the envelope's `id`
    event        text NOT NULL,             -- PAYMENT_SUCCEEDED, REFUND_COMPLETED, ...
    received_at  timestamptz NOT NULL,
    applied_at   timestamptz NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('applied', 'unchanged', 'stale', 'gone'))
);
CREATE INDEX webhook_events_received_at ON webhook_events (received_at);

CREATE TABLE changes (
    id             bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_id         bigint REFERENCES sync_runs (id),   -- NULL for a webhook's change
    observed_at    timestamptz NOT NULL,
    entity         text NOT NULL CHECK (entity IN ('customer', 'transaction')),
    entity_id      text NOT NULL,
    customer_id    text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('created', 'updated', 'deleted', 'restored')),
    fields         jsonb,
    source         text NOT NULL DEFAULT 'poll' CHECK (source IN ('poll', 'webhook')),
    webhook_event  text,
    CHECK ((source = 'poll' AND run_id IS NOT NULL AND webhook_event IS NULL)
        OR (source = 'webhook' AND webhook_event IS NOT NULL))
);
CREATE INDEX changes_entity ON changes (entity, entity_id);
CREATE INDEX changes_customer ON changes (customer_id, observed_at);
CREATE INDEX changes_observed_at ON changes (observed_at);

-- Views: the same names and columns as the SQLite mirror's; money as `numeric`.
CREATE VIEW live_customers AS
SELECT id, organization_id, name, email, phone_number, whatsapp_number, country, city, address,
       postal_code, is_business, metadata, environment, created_at, updated_at, first_seen_at, synced_at
FROM customers
WHERE deleted_at IS NULL;

CREATE VIEW live_transactions AS
SELECT t.transaction_id, t.customer_id, t.description, t.gross_amount, t.amount_minor, t.currency_code,
       t.status, t.payment_method_code, t.provider_code, t.metadata, t.created_at, t.first_seen_at,
       t.synced_at, (c.deleted_at IS NOT NULL) AS customer_deleted,
       t.transaction_type, t.discount_amount, t.discount_minor, t.fee_amount, t.fee_minor,
       t.net_amount, t.net_minor, t.updated_at
FROM transactions t
LEFT JOIN customers c ON c.id = t.customer_id
WHERE t.deleted_at IS NULL;

-- Minor units over the currency's factor, exact, with the currency's decimals.
CREATE FUNCTION minor_to_decimal(minor numeric, exponent integer) RETURNS numeric
    LANGUAGE sql IMMUTABLE AS
$$ SELECT round(minor / (10::numeric ^ coalesce(exponent, 2)), coalesce(exponent, 2)) $$;

CREATE VIEW customer_revenue AS
SELECT t.customer_id,
       c.name AS customer_name,
       t.currency_code,
       count(*) AS transactions,
       count(*) FILTER (WHERE t.status = 'completed') AS completed_count,
       coalesce(sum(t.amount_minor) FILTER (WHERE t.status = 'completed'), 0) AS completed_minor,
       minor_to_decimal(coalesce(sum(t.amount_minor) FILTER (WHERE t.status = 'completed'), 0), cur.exponent)
           AS completed_total,
       min(t.created_at) FILTER (WHERE t.status = 'completed') AS first_payment_at,
       max(t.created_at) FILTER (WHERE t.status = 'completed') AS last_payment_at,
       count(t.net_minor) FILTER (WHERE t.status = 'completed') AS completed_net_count,
       sum(t.net_minor) FILTER (WHERE t.status = 'completed') AS completed_net_minor,
       minor_to_decimal(sum(t.net_minor) FILTER (WHERE t.status = 'completed'), cur.exponent)
           AS completed_net_total,
       sum(t.fee_minor) FILTER (WHERE t.status = 'completed') AS completed_fees_minor,
       minor_to_decimal(sum(t.fee_minor) FILTER (WHERE t.status = 'completed'), cur.exponent)
           AS completed_fees_total
FROM transactions t
LEFT JOIN customers c ON c.id = t.customer_id
LEFT JOIN currencies cur ON cur.code = t.currency_code
WHERE t.deleted_at IS NULL
GROUP BY t.customer_id, c.name, t.currency_code, cur.exponent;

CREATE VIEW daily_revenue AS
SELECT (t.created_at AT TIME ZONE 'UTC')::date AS day,
       t.currency_code,
       count(*) AS completed_count,
       sum(t.amount_minor) AS revenue_minor,
       minor_to_decimal(sum(t.amount_minor), cur.exponent) AS revenue,
       count(t.net_minor) AS net_count,
       sum(t.net_minor) AS net_revenue_minor,
       minor_to_decimal(sum(t.net_minor), cur.exponent) AS net_revenue,
       sum(t.fee_minor) AS fees_minor,
       minor_to_decimal(sum(t.fee_minor), cur.exponent) AS fees
FROM transactions t
LEFT JOIN currencies cur ON cur.code = t.currency_code
WHERE t.deleted_at IS NULL AND t.status = 'completed'
GROUP BY 1, t.currency_code, cur.exponent;

CREATE VIEW refunds AS
SELECT t.transaction_id, t.customer_id, c.name AS customer_name, c.email AS customer_email,
       t.gross_amount, t.amount_minor, t.currency_code, t.created_at,
       (SELECT max(ch.observed_at) FROM changes ch
         WHERE ch.entity = 'transaction' AND ch.entity_id = t.transaction_id AND ch.kind = 'updated'
           AND ch.fields -> 'status' ->> 'new' = 'refunded') AS refund_observed_at
FROM transactions t
LEFT JOIN customers c ON c.id = t.customer_id
WHERE t.deleted_at IS NULL AND t.status = 'refunded';

CREATE VIEW freshness AS
SELECT (SELECT max(finished_at) FROM sync_runs WHERE outcome = 'succeeded') AS last_success_at,
       round(extract(epoch FROM now() - (SELECT max(finished_at) FROM sync_runs WHERE outcome = 'succeeded')))::bigint
           AS seconds_since_success,
       (SELECT outcome FROM sync_runs ORDER BY id DESC LIMIT 1) AS last_run_outcome,
       (SELECT count(*) FROM customers WHERE deleted_at IS NULL) AS live_customers,
       (SELECT count(*) FROM customers WHERE deleted_at IS NOT NULL) AS deleted_customers,
       (SELECT count(*) FROM transactions WHERE deleted_at IS NULL) AS live_transactions,
       (SELECT count(*) FROM transactions WHERE deleted_at IS NULL AND status = 'pending') AS pending_transactions;

-- The mirror's one text form of a timestamp (`api::timestamp`): UTC, microseconds, `Z`.
-- The store reads timestamps back through it, so the engine sees what SQLite gives it.
CREATE FUNCTION ts_text(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE AS
$$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;
