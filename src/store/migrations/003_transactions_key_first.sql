-- Version 3: `transactions` laid out with its primary-key columns first.
--
-- Why: SQLite 3.40.1 (Debian 12's `sqlite3`, and the library its Python links) misreads
-- the NOT NULL columns of a WITHOUT ROWID table whose primary-key columns are not its
-- first columns: `PRAGMA integrity_check` on a healthy mirror reported
-- `NULL value in transactions.customer_id` (and first_seen_at, synced_at, raw), because
-- version 1 declared `customer_seq` last. With the key columns first it reports `ok`.
-- Every WITHOUT ROWID table must keep its key columns first (a unit test checks it).
--
-- Same columns, names, types and rows; only their order changes. Every statement of
-- the code and the views names its columns, so none depends on the order.
--
-- The views of version 2 name `transactions`, so the table is swapped in under that
-- name with `legacy_alter_table` on: a modern RENAME would re-parse (and reject) the
-- views while no `transactions` exists. The deferred indexes (transactions_id,
-- transactions_customer, transactions_created_at) are rebuilt by the migration's hook
-- in src/store/mod.rs, unless a first backfill in progress will build them at its end.

CREATE TABLE transactions_v3 (
    customer_seq         INTEGER NOT NULL,  -- internal: the customer's rowid in customers
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
    -- Clustered by customer, in the order customers were first stored (see version 1).
    PRIMARY KEY (customer_seq, transaction_id)
) WITHOUT ROWID;

INSERT INTO transactions_v3 (customer_seq, transaction_id, customer_id, description, gross_amount,
                             amount_minor, currency_code, status, payment_method_code, provider_code,
                             metadata, created_at, first_seen_at, synced_at, deleted_at, raw)
SELECT customer_seq, transaction_id, customer_id, description, gross_amount,
       amount_minor, currency_code, status, payment_method_code, provider_code,
       metadata, created_at, first_seen_at, synced_at, deleted_at, raw
FROM transactions;

DROP TABLE transactions;
PRAGMA legacy_alter_table = ON;
ALTER TABLE transactions_v3 RENAME TO transactions;
PRAGMA legacy_alter_table = OFF;

CREATE INDEX transactions_pending ON transactions (created_at) WHERE status = 'pending';
