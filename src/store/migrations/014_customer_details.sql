-- Customer details as a budgeted background fill (issue 14): the live list hides
-- `metadata` (`metadata: null` in list items, NOTES.md), so a customer written from a
-- list item does not know its metadata until `GET /customers/{id}` is read. A backfill
-- no longer waits for those reads; later runs fill them within `sync.details_per_run`.
--
-- `details_updated_at`: the customer's `updated_at` (`''` when it has none) as of the
-- last object known to carry its metadata (a `GET /customers/{id}` read, or a list item
-- that showed `metadata`). NULL: never known. A customer lacks details while this differs
-- from its `updated_at` (NULL, or the customer changed since): its `metadata` column is
-- then NULL (never read) or the last one read, never a guess.
ALTER TABLE customers ADD COLUMN details_updated_at TEXT;

-- Mirrors written before this version read details inline (`sync.fetch_details`): a
-- customer with metadata known counts as read at its current `updated_at`; one without
-- is filled by the next runs (its metadata may be hidden, not empty).
UPDATE customers SET details_updated_at = COALESCE(updated_at, '') WHERE metadata IS NOT NULL;

-- The fill's candidates, newest first, without scanning every customer.
CREATE INDEX customers_lacking_details ON customers (created_at)
    WHERE deleted_at IS NULL
      AND (details_updated_at IS NULL OR details_updated_at <> COALESCE(updated_at, ''));
