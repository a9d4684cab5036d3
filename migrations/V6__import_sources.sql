-- The legacy source each import derives its ids from (`order-import run --source`). Every
-- stream, customer and event id of an imported order is derived from the source's name, so a
-- run that continued an import under another source would append every order a second time
-- under new ids. `EventStore::import_begin` records the source at an import's first run and
-- refuses a run of the same import that names another, before anything is written.
--
-- NULL: an import begun before this migration; its next run records the source it names.
-- Adding a nullable column rewrites nothing and takes only a brief lock of this small table.
ALTER TABLE orders.imports ADD COLUMN source text
    CHECK (length(source) BETWEEN 1 AND 100 AND source !~ '[[:cntrl:]]');
