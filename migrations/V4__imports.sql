-- Imports of history from a legacy order system (order-import).
--
-- 1. An imported event says where it came from: `imported_from` names the legacy record
--    ('<source>:<legacy order id>'). Events written by commands leave it NULL. Subscribers
--    read it with every event; the SQS publisher does not send imported events (history has
--    no side effects: the worker never runs a saga step for it), projections fold them like
--    any other. A NULL default is kept in the catalog: adding the column rewrites nothing.
ALTER TABLE orders.events ADD COLUMN imported_from text;
ALTER TABLE orders.events ADD CONSTRAINT events_imported_from_check
    CHECK (length(imported_from) BETWEEN 1 AND 300) NOT VALID;

-- 2. The category check, the same rule in a cheaper form. The bounded repetition of
--    '^[a-z][a-z0-9_]{0,62}$' makes PostgreSQL's regular-expression engine build a large
--    automaton that every inserted row runs through: a quarter of the server's CPU of a bulk
--    import (order-import, 500k orders: 57 s of PostgreSQL CPU, 42 s with this form) and a
--    share of every append. An unbounded class and a length check accept exactly the same
--    names. NOT VALID as before: every row written since V3 passed the stricter-looking form.
ALTER TABLE orders.events
    DROP CONSTRAINT events_category_check,
    ADD CONSTRAINT events_category_check
        CHECK (category ~ '^[a-z][a-z0-9_]*$' AND length(category) <= 63) NOT VALID;

-- 3. The progress of each import. Each batch of streams updates its row in the batch's own
--    transaction, so a run killed at any moment leaves this row and the log agreeing. A run
--    reads its whole input again (so that its rejects report is complete) and every batch
--    checks which of its streams exist already: an order is appended once whatever happened
--    to earlier runs. `orders_imported`/`events_imported` count what every run appended;
--    `orders_read`/`orders_rejected` are the latest run's.
CREATE TABLE orders.imports (
    name            text        PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,99}$'),
    runs            integer     NOT NULL DEFAULT 0 CHECK (runs >= 0),
    orders_read     bigint      NOT NULL DEFAULT 0 CHECK (orders_read >= 0),
    orders_rejected bigint      NOT NULL DEFAULT 0 CHECK (orders_rejected >= 0),
    orders_imported bigint      NOT NULL DEFAULT 0 CHECK (orders_imported >= 0),
    events_imported bigint      NOT NULL DEFAULT 0 CHECK (events_imported >= 0),
    batches         bigint      NOT NULL DEFAULT 0 CHECK (batches >= 0),
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

REVOKE ALL ON orders.imports FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON orders.imports TO orders_app;
GRANT SELECT ON orders.imports TO orders_projector, orders_readonly;
