-- Version 8 (appended after the parallel branch's 7; renumbered at merge if needed):
-- the org-wide transactions feed's extra fields (`GET /transactions`, NOTES.md "The
-- org-wide transactions feed"), and net revenue and fees in the views.
--
-- The new columns are NULL for rows read through `GET /customers/{id}/transactions`,
-- which does not show them: NULL means "not known", never zero. Amounts are stored as
-- `gross_amount`/`amount_minor` are: the exact decimal text as received and the exact
-- integer in the currency's minor unit. `updated_at` is the feed's last change of the
-- transaction, in the mirror's one timestamp form (microseconds, `Z`).
--
-- ADD COLUMN appends, so the WITHOUT ROWID table keeps its key columns first.

ALTER TABLE transactions ADD COLUMN transaction_type TEXT;     -- payment, refund, payout
ALTER TABLE transactions ADD COLUMN discount_amount TEXT;      -- exact decimal as received
ALTER TABLE transactions ADD COLUMN discount_minor INTEGER;    -- exact, in minor units
ALTER TABLE transactions ADD COLUMN fee_amount TEXT;
ALTER TABLE transactions ADD COLUMN fee_minor INTEGER;
ALTER TABLE transactions ADD COLUMN net_amount TEXT;           -- gross - discount - fee
ALTER TABLE transactions ADD COLUMN net_minor INTEGER;
ALTER TABLE transactions ADD COLUMN updated_at TEXT;

-- The views gain columns at their end only: queries naming the old ones read the same.

DROP VIEW live_transactions;
CREATE VIEW live_transactions AS
SELECT t.transaction_id, t.customer_id, t.description, t.gross_amount, t.amount_minor, t.currency_code,
       t.status, t.payment_method_code, t.provider_code, t.metadata, t.created_at, t.first_seen_at,
       t.synced_at, (c.deleted_at IS NOT NULL) AS customer_deleted,
       t.transaction_type, t.discount_amount, t.discount_minor, t.fee_amount, t.fee_minor,
       t.net_amount, t.net_minor, t.updated_at
FROM transactions t
LEFT JOIN customers c ON c.id = t.customer_id
WHERE t.deleted_at IS NULL;

-- Net revenue and fees sum the completed payments whose figures the feed gave
-- (`completed_net_count` of `completed_count`): they cover the whole total only when
-- the two counts are equal. NULL when none is known.
DROP VIEW customer_revenue;
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
                   ELSE printf('.%0*d', coalesce(cur.exponent, 2), abs(coalesce(sum(CASE WHEN t.status = 'completed' THEN t.amount_minor END), 0)) % coalesce(cur.factor, 100))
              END) AS completed_total,
       min(CASE WHEN t.status = 'completed' THEN t.created_at END) AS first_payment_at,
       max(CASE WHEN t.status = 'completed' THEN t.created_at END) AS last_payment_at,
       count(CASE WHEN t.status = 'completed' THEN t.net_minor END) AS completed_net_count,
       sum(CASE WHEN t.status = 'completed' THEN t.net_minor END) AS completed_net_minor,
       CASE WHEN count(CASE WHEN t.status = 'completed' THEN t.net_minor END) > 0 THEN printf('%s%d%s',
              CASE WHEN sum(CASE WHEN t.status = 'completed' THEN t.net_minor END) < 0 THEN '-' ELSE '' END,
              abs(sum(CASE WHEN t.status = 'completed' THEN t.net_minor END)) / coalesce(cur.factor, 100),
              CASE WHEN coalesce(cur.exponent, 2) = 0 THEN ''
                   ELSE printf('.%0*d', coalesce(cur.exponent, 2), abs(sum(CASE WHEN t.status = 'completed' THEN t.net_minor END)) % coalesce(cur.factor, 100))
              END) END AS completed_net_total,
       sum(CASE WHEN t.status = 'completed' THEN t.fee_minor END) AS completed_fees_minor,
       CASE WHEN count(CASE WHEN t.status = 'completed' THEN t.fee_minor END) > 0 THEN printf('%s%d%s',
              CASE WHEN sum(CASE WHEN t.status = 'completed' THEN t.fee_minor END) < 0 THEN '-' ELSE '' END,
              abs(sum(CASE WHEN t.status = 'completed' THEN t.fee_minor END)) / coalesce(cur.factor, 100),
              CASE WHEN coalesce(cur.exponent, 2) = 0 THEN ''
                   ELSE printf('.%0*d', coalesce(cur.exponent, 2), abs(sum(CASE WHEN t.status = 'completed' THEN t.fee_minor END)) % coalesce(cur.factor, 100))
              END) END AS completed_fees_total
FROM transactions t
LEFT JOIN customers c ON c.id = t.customer_id
LEFT JOIN currencies cur ON cur.code = t.currency_code
WHERE t.deleted_at IS NULL
GROUP BY t.customer_id, t.currency_code;

-- Per UTC day and currency: completed revenue, and its net and fees where known
-- (`net_count` of `completed_count` payments).
DROP VIEW daily_revenue;
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
              END) AS revenue,
       count(t.net_minor) AS net_count,
       sum(t.net_minor) AS net_revenue_minor,
       CASE WHEN count(t.net_minor) > 0 THEN printf('%s%d%s',
              CASE WHEN sum(t.net_minor) < 0 THEN '-' ELSE '' END,
              abs(sum(t.net_minor)) / coalesce(cur.factor, 100),
              CASE WHEN coalesce(cur.exponent, 2) = 0 THEN ''
                   ELSE printf('.%0*d', coalesce(cur.exponent, 2), abs(sum(t.net_minor)) % coalesce(cur.factor, 100))
              END) END AS net_revenue,
       sum(t.fee_minor) AS fees_minor,
       CASE WHEN count(t.fee_minor) > 0 THEN printf('%s%d%s',
              CASE WHEN sum(t.fee_minor) < 0 THEN '-' ELSE '' END,
              abs(sum(t.fee_minor)) / coalesce(cur.factor, 100),
              CASE WHEN coalesce(cur.exponent, 2) = 0 THEN ''
                   ELSE printf('.%0*d', coalesce(cur.exponent, 2), abs(sum(t.fee_minor)) % coalesce(cur.factor, 100))
              END) END AS fees
FROM transactions t
LEFT JOIN currencies cur ON cur.code = t.currency_code
WHERE t.deleted_at IS NULL AND t.status = 'completed'
GROUP BY day, t.currency_code;
