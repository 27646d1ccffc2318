-- The first load's feed rows, staged (issue 14, measured): the feed lists transactions
-- newest first across all customers, while `transactions` is clustered by customer, so
-- writing each page in place touched about one leaf page per row, all over the table
-- (a 100,000-customer backfill took 77 s against 10 s per customer). Rows are appended
-- here page by page instead, each page committed with its checkpoint as before, and
-- moved into `transactions` in key order in the batch that completes the feed pass.
-- Empty except during a first load's feed pass.
CREATE TABLE feed_stage (
    customer_seq        INTEGER NOT NULL,
    transaction_id      TEXT NOT NULL,
    customer_id         TEXT NOT NULL,
    description         TEXT,
    gross_amount        TEXT,
    amount_minor        INTEGER,
    currency_code       TEXT,
    status              TEXT,
    payment_method_code TEXT,
    provider_code       TEXT,
    metadata            TEXT,
    created_at          TEXT,
    staged_at           TEXT NOT NULL,
    raw                 TEXT NOT NULL,
    transaction_type    TEXT,
    discount_amount     TEXT,
    discount_minor      INTEGER,
    fee_amount          TEXT,
    fee_minor           INTEGER,
    net_amount          TEXT,
    net_minor           INTEGER,
    updated_at          TEXT
);
