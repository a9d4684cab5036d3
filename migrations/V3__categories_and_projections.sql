-- Event categories and the projection registry.
--
-- 1. Each event records its stream's type, the aggregate's category (`order`, `store_credit`,
--    ...), so that one store can hold several aggregates and a subscriber can follow only the
--    types it handles.
--
--    Every event written before this migration is an order's. The column's default gives them
--    'order' without rewriting the log: PostgreSQL keeps a constant default once in the catalog
--    and returns it for rows written before the column existed (no row is updated, so the
--    append-only triggers are not involved, and the migration takes milliseconds on any size
--    of log). The default also covers appends of a binary older than this migration during a
--    rolling deployment: those only write orders. Current binaries always name the category.
ALTER TABLE orders.events ADD COLUMN category text NOT NULL DEFAULT 'order';

-- Lowercase letters, digits and '_', starting with a letter, at most 63 characters (the store
-- checks the same before it sends an append). NOT VALID: enforced for every new row at once;
-- the existing rows all hold the default, which passes, and validating them would scan the
-- whole log while the migration holds its lock.
ALTER TABLE orders.events ADD CONSTRAINT events_category_check
    CHECK (category ~ '^[a-z][a-z0-9_]{0,62}$') NOT VALID;

-- 2. The projections whose tables the projector owns: which version of each projection built
--    its tables, and which tables they are. A projector whose code has a newer version rebuilds
--    the projection (shadow tables, atomic swap) before it projects into it; one with an older
--    version leaves it alone. Rows are written by the projector (order-projector), in the same
--    transaction that creates or swaps the tables.
CREATE TABLE orders.projections (
    name        text        PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    version     integer     NOT NULL CHECK (version > 0),
    -- The projection's live tables in schema orders.
    tables      text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    rebuilt_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON orders.projections FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON orders.projections TO orders_projector;
GRANT SELECT ON orders.projections TO orders_app, orders_readonly;

-- The read model's tables were created by V2__read_models.sql, at the read model's version 1.
INSERT INTO orders.projections (name, version, tables)
VALUES ('read_model', 1, ARRAY['order_summaries', 'customer_totals']);
