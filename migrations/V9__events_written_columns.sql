-- The application inserts events with the columns a writer gives; the writing transaction's id
-- (transaction_id, DEFAULT pg_current_xact_id()) and the log position (global_position, an
-- identity) are the database's own. The gap-safe read rests on transaction_id being the
-- writer's real transaction: an event inserted under an old id would sort behind every
-- subscriber's checkpoint and never be delivered, and a position set ahead of the sequence
-- (OVERRIDING SYSTEM VALUE) would make every append fail once the sequence reached it. A
-- column privilege keeps both out of a writer's hands, whatever bug or compromise it has.
-- GRANT and REVOKE change the catalog only: no rewrite, milliseconds on any size of log.
REVOKE INSERT ON orders.events FROM orders_app;
GRANT INSERT (stream_id, stream_version, event_id, event_type, schema_version, payload,
              command_id, correlation_id, causation_id, traceparent, tracestate, actor,
              recorded_at, category, imported_from)
    ON orders.events TO orders_app;
