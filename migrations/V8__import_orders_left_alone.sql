-- The orders the latest run of an import left alone (order-import: imported before and changed
-- since in a way that cannot be appended, or a stream id a live order holds). The store finds
-- them inside each batch's transaction, after the batch's progress figures were computed, and
-- adds them here in that transaction: the progress row (`orders_rejected` + this) then counts
-- them as each batch commits, also for a run stopped or killed before its end. A run's start
-- clears it; its end writes the whole figure to `orders_rejected` and clears it.
--
-- A constant default is kept in the catalog: adding the column rewrites nothing and takes only
-- a brief lock of this small table. A release before this one never writes it (0): its rows
-- read as before.
ALTER TABLE orders.imports ADD COLUMN orders_diverged bigint NOT NULL DEFAULT 0
    CHECK (orders_diverged >= 0);
