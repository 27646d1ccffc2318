-- Webhooks into the mirror (issue 16): deliveries are deduplicated by their envelope
-- `id` (stable across the vendor's retries, NOTES.md "Webhooks"), and each change a
-- webhook makes is recorded in `changes` as coming from it.
--
-- `changes.run_id` was NOT NULL: a webhook's change belongs to no run. SQLite cannot drop
-- a NOT NULL in place, so the table is rebuilt as migration 7 rebuilt `sync_runs`
-- (https://sqlite.org/lang_altertable.html, "making other kinds of table schema
-- changes"), every row kept with `source = 'poll'`. The `refunds` view names the table
-- and is re-created as 002_views.sql has it; the hook checks the foreign keys.

-- One row per verified payment or refund delivery, written in the transaction that
-- applies it: a replayed id finds its row and writes nothing.
CREATE TABLE webhook_events (
    id           TEXT PRIMARY KEY,          -- the envelope's `id`
    event        TEXT NOT NULL,             -- PAYMENT_SUCCEEDED, REFUND_COMPLETED, ...
    received_at  TEXT NOT NULL,
    applied_at   TEXT NOT NULL,             -- when its transaction committed it
    outcome      TEXT NOT NULL CHECK (outcome IN ('applied', 'unchanged', 'stale', 'gone'))
) WITHOUT ROWID;
CREATE INDEX webhook_events_received_at ON webhook_events (received_at);

DROP VIEW refunds;

CREATE TABLE changes_new (
    id             INTEGER PRIMARY KEY,
    run_id         INTEGER REFERENCES sync_runs (id),   -- NULL for a webhook's change
    observed_at    TEXT NOT NULL,
    entity         TEXT NOT NULL CHECK (entity IN ('customer', 'transaction')),
    entity_id      TEXT NOT NULL,
    customer_id    TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'deleted', 'restored')),
    fields         TEXT,
    source         TEXT NOT NULL DEFAULT 'poll' CHECK (source IN ('poll', 'webhook')),
    webhook_event  TEXT,                                -- webhook_events.id, for source 'webhook'
    CHECK ((source = 'poll' AND run_id IS NOT NULL AND webhook_event IS NULL)
        OR (source = 'webhook' AND webhook_event IS NOT NULL))
);

INSERT INTO changes_new (id, run_id, observed_at, entity, entity_id, customer_id, kind, fields)
SELECT id, run_id, observed_at, entity, entity_id, customer_id, kind, fields FROM changes;

DROP TABLE changes;
ALTER TABLE changes_new RENAME TO changes;
CREATE INDEX changes_entity ON changes (entity, entity_id);
CREATE INDEX changes_customer ON changes (customer_id, observed_at);
CREATE INDEX changes_observed_at ON changes (observed_at);

CREATE VIEW refunds AS
SELECT t.transaction_id, t.customer_id, c.name AS customer_name, c.email AS customer_email,
       t.gross_amount, t.amount_minor, t.currency_code, t.created_at,
       (SELECT max(ch.observed_at) FROM changes ch
         WHERE ch.entity = 'transaction' AND ch.entity_id = t.transaction_id AND ch.kind = 'updated'
           AND json_extract(ch.fields, '$.status.new') = 'refunded') AS refund_observed_at
FROM transactions t
LEFT JOIN customers c ON c.id = t.customer_id
WHERE t.deleted_at IS NULL AND t.status = 'refunded';
