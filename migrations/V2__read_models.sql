-- Read models the projector maintains from the log. They belong to orders_projector, which
-- rebuilds them into shadow tables and swaps those in (order-projector replay), so it may
-- also create tables in the schema. order-grpc only reads them.

-- One row per order, as of the stream version it reflects.
CREATE TABLE orders.order_summaries (
    order_id        uuid        PRIMARY KEY,
    customer_id     uuid        NOT NULL,
    status          text        NOT NULL,
    currency        text        NOT NULL,
    total_minor     bigint      NOT NULL,
    captured_minor  bigint      NOT NULL,
    refunded_minor  bigint      NOT NULL,
    line_count      integer     NOT NULL,
    stream_version  bigint      NOT NULL,
    last_position   bigint      NOT NULL,
    placed_at       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- ListOrders: newest first, by customer and/or status.
CREATE INDEX order_summaries_placed ON orders.order_summaries (placed_at DESC, order_id DESC);
CREATE INDEX order_summaries_customer ON orders.order_summaries (customer_id, placed_at DESC, order_id DESC);
CREATE INDEX order_summaries_status ON orders.order_summaries (status, placed_at DESC, order_id DESC);

-- Per customer and currency: how many orders, and the money kept (captured minus refunded).
-- Always equal to the sum over order_summaries; the projector changes it by exactly what the
-- order rows it changed contribute, in the same transaction.
CREATE TABLE orders.customer_totals (
    customer_id          uuid   NOT NULL,
    currency             text   NOT NULL,
    order_count          bigint NOT NULL,
    lifetime_total_minor bigint NOT NULL,
    PRIMARY KEY (customer_id, currency)
);

-- A table's new owner needs CREATE on its schema, so the grant comes first.
GRANT CREATE ON SCHEMA orders TO orders_projector;
ALTER TABLE orders.order_summaries OWNER TO orders_projector;
ALTER TABLE orders.customer_totals OWNER TO orders_projector;
GRANT SELECT ON orders.order_summaries, orders.customer_totals TO orders_app, orders_readonly;
