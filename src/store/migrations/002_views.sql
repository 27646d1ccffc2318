-- Version 2: the analytics surface. Views over the tables of version 1, so that the
-- common questions need no knowledge of the bookkeeping columns. Money in views is
-- exact: sums of integer minor units, shown also as decimal text.

-- Minor-unit exponent of each currency (ISO 4217); a currency missing here counts as 2.
CREATE TABLE currencies (
    code      TEXT PRIMARY KEY,
    exponent  INTEGER NOT NULL,
    factor    INTEGER NOT NULL              -- 10^exponent
);
INSERT INTO currencies (code, exponent, factor) VALUES
    ('XOF', 0, 1), ('XAF', 0, 1), ('GNF', 0, 1), ('RWF', 0, 1), ('UGX', 0, 1), ('JPY', 0, 1),
    ('USD', 2, 100), ('EUR', 2, 100), ('GBP', 2, 100), ('GHS', 2, 100), ('NGN', 2, 100),
    ('KES', 2, 100), ('ZAR', 2, 100), ('MAD', 2, 100), ('CDF', 2, 100), ('TZS', 2, 100),
    ('KRW', 0, 1), ('CLP', 0, 1), ('VND', 0, 1), ('BIF', 0, 1), ('DJF', 0, 1), ('KMF', 0, 1),
    ('PYG', 0, 1), ('VUV', 0, 1), ('XPF', 0, 1),
    ('BHD', 3, 1000), ('KWD', 3, 1000), ('OMR', 3, 1000), ('TND', 3, 1000), ('JOD', 3, 1000),
    ('IQD', 3, 1000), ('LYD', 3, 1000);
-- Keep in step with money::minor_unit_exponent (a unit test checks it).

-- Customers not deleted at the source.
CREATE VIEW live_customers AS
SELECT id, organization_id, name, email, phone_number, whatsapp_number, country, city, address,
       postal_code, is_business, metadata, environment, created_at, updated_at, first_seen_at, synced_at
FROM customers
WHERE deleted_at IS NULL;

-- Transactions still listed by their customer, with the amount's decimal form.
CREATE VIEW live_transactions AS
SELECT t.transaction_id, t.customer_id, t.description, t.gross_amount, t.amount_minor, t.currency_code,
       t.status, t.payment_method_code, t.provider_code, t.metadata, t.created_at, t.first_seen_at,
       t.synced_at, (c.deleted_at IS NOT NULL) AS customer_deleted
FROM transactions t
LEFT JOIN customers c ON c.id = t.customer_id
WHERE t.deleted_at IS NULL;

-- Per customer and currency: all payments, and the completed ones' exact total.
CREATE VIEW customer_revenue AS
SELECT t.customer_id,
       c.name AS customer_name,
       t.currency_code,
       count(*) AS transactions,
       sum(t.status = 'completed') AS completed_count,
       coalesce(sum(CASE WHEN t.status = 'completed' THEN t.amount_minor END), 0) AS completed_minor,
       printf('%s%d%s',
              CASE WHEN coalesce(sum(CASE WHEN t.status = 'completed' THEN t.amount_minor END), 0) < 0 THEN '-' ELSE '' END,
              abs(coalesce(sum(CASE WHEN t.status = 'completed' THEN t.amount_minor END), 0)) / coalesce(cur.factor, 100),
              CASE WHEN coalesce(cur.exponent, 2) = 0 THEN ''
                   ELSE printf('.%0*d', coalesce(cur.exponent, 2),
                               abs(coalesce(sum(CASE WHEN t.status = 'completed' THEN t.amount_minor END), 0)) % coalesce(cur.factor, 100))
              END) AS completed_total,
       min(CASE WHEN t.status = 'completed' THEN t.created_at END) AS first_payment_at,
       max(CASE WHEN t.status = 'completed' THEN t.created_at END) AS last_payment_at
FROM transactions t
LEFT JOIN customers c ON c.id = t.customer_id
LEFT JOIN currencies cur ON cur.code = t.currency_code
WHERE t.deleted_at IS NULL
GROUP BY t.customer_id, t.currency_code;

-- Per UTC day and currency: completed revenue and payment count.
CREATE VIEW daily_revenue AS
SELECT date(t.created_at) AS day,
       t.currency_code,
       count(*) AS completed_count,
       sum(t.amount_minor) AS revenue_minor,
       printf('%s%d%s',
              CASE WHEN sum(t.amount_minor) < 0 THEN '-' ELSE '' END,
              abs(sum(t.amount_minor)) / coalesce(cur.factor, 100),
              CASE WHEN coalesce(cur.exponent, 2) = 0 THEN ''
                   ELSE printf('.%0*d', coalesce(cur.exponent, 2), abs(sum(t.amount_minor)) % coalesce(cur.factor, 100))
              END) AS revenue
FROM transactions t
LEFT JOIN currencies cur ON cur.code = t.currency_code
WHERE t.deleted_at IS NULL AND t.status = 'completed'
GROUP BY day, t.currency_code;

-- Refunded payments with their customer.
CREATE VIEW refunds AS
SELECT t.transaction_id, t.customer_id, c.name AS customer_name, c.email AS customer_email,
       t.gross_amount, t.amount_minor, t.currency_code, t.created_at,
       (SELECT max(ch.observed_at) FROM changes ch
         WHERE ch.entity = 'transaction' AND ch.entity_id = t.transaction_id AND ch.kind = 'updated'
           AND json_extract(ch.fields, '$.status.new') = 'refunded') AS refund_observed_at
FROM transactions t
LEFT JOIN customers c ON c.id = t.customer_id
WHERE t.deleted_at IS NULL AND t.status = 'refunded';

-- How fresh the mirror is: one row.
CREATE VIEW freshness AS
SELECT (SELECT max(finished_at) FROM sync_runs WHERE outcome = 'succeeded') AS last_success_at,
       CAST(round((julianday('now') - julianday((SELECT max(finished_at) FROM sync_runs WHERE outcome = 'succeeded'))) * 86400) AS INTEGER)
           AS seconds_since_success,
       (SELECT outcome FROM sync_runs ORDER BY id DESC LIMIT 1) AS last_run_outcome,
       (SELECT count(*) FROM customers WHERE deleted_at IS NULL) AS live_customers,
       (SELECT count(*) FROM customers WHERE deleted_at IS NOT NULL) AS deleted_customers,
       (SELECT count(*) FROM transactions WHERE deleted_at IS NULL) AS live_transactions,
       (SELECT count(*) FROM transactions WHERE deleted_at IS NULL AND status = 'pending') AS pending_transactions;
