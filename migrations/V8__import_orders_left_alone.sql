-- The orders each run of an import left alone (order-import: imported before and changed since
-- in a way that cannot be appended, or a stream id a live order holds), one row per order and
-- run. The store finds them inside each batch's transaction, and records them there: the
-- progress row's rejected orders are `orders.imports.orders_rejected` (the importer's own
-- rejects) and the rows here of its latest run (`orders.imports.runs`), counted as each batch
-- commits, also for a run stopped or killed before its end. A row per order, not a counter: a
-- batch tried again after its commit's answer was lost, or two runs of one import at once,
-- count each order once. A release before this one writes no row here and counts them in
-- `orders_rejected` itself, as before (its `order-import status` reads `orders_rejected`
-- alone, so after a run of this release it leaves these orders out). The rows of earlier runs
-- are kept (one per order left alone and run; no role of the services may delete them).
-- The foreign key takes a brief SHARE ROW EXCLUSIVE lock on orders.imports: this migration
-- waits for an import batch in progress, and holds the next one back for as long.
CREATE TABLE orders.import_left_alone (
    import_name text    NOT NULL REFERENCES orders.imports (name),
    run         integer NOT NULL CHECK (run >= 1),
    stream_id   uuid    NOT NULL,
    PRIMARY KEY (import_name, run, stream_id)
);

REVOKE ALL ON orders.import_left_alone FROM PUBLIC;
GRANT SELECT, INSERT ON orders.import_left_alone TO orders_app;
GRANT SELECT ON orders.import_left_alone TO orders_projector, orders_readonly;
