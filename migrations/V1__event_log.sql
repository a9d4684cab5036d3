-- The event log, the command (idempotency) records, subscription checkpoints, and the roles
-- that may use them.
--
-- Roles are NOLOGIN groups, created only when missing (on RDS a bootstrap step creates them
-- and the login users that belong to them; see deploy/dbinit):
--   orders_owner      owns the schema and runs migrations
--   orders_app        the gRPC service: appends to and reads the log, nothing more there
--   orders_projector  follows the log, writes read tables and checkpoints
--   orders_readonly   reads everything, writes nothing

DO $roles$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['orders_owner', 'orders_app', 'orders_projector', 'orders_readonly'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                -- Another migration run created it at the same moment.
                NULL;
            END;
        END IF;
    END LOOP;
END
$roles$;

-- The schema exists already: the migration runner creates it for its history table.
CREATE SCHEMA IF NOT EXISTS orders;
REVOKE ALL ON SCHEMA orders FROM PUBLIC;
GRANT USAGE ON SCHEMA orders TO orders_app, orders_projector, orders_readonly;
-- Readiness checks compare the applied migrations with the binary's.
GRANT SELECT ON orders.refinery_schema_history TO orders_app, orders_projector, orders_readonly;

-- ---------------------------------------------------------------------------- events

CREATE TABLE orders.events (
    -- Position in the global log: unique and increasing in insertion order. Transactions may
    -- commit out of position order; readers use (transaction_id, global_position) instead.
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       uuid        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version > 0),
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL CHECK (length(event_type) BETWEEN 1 AND 100),
    schema_version  smallint    NOT NULL CHECK (schema_version > 0),
    payload         jsonb       NOT NULL,
    -- Metadata of the command that wrote the event.
    command_id      uuid,
    correlation_id  text        CHECK (length(correlation_id) <= 128),
    causation_id    uuid,
    traceparent     text        CHECK (length(traceparent) <= 512),
    tracestate      text        CHECK (length(tracestate) <= 512),
    actor           text        CHECK (length(actor) <= 128),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The writing transaction: the gap-safe read order is (transaction_id, global_position).
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- The optimistic-concurrency guard.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

CREATE INDEX events_transaction_order ON orders.events (transaction_id, global_position);

-- Append-only for everyone, the owner included.
CREATE FUNCTION orders.reject_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'orders.events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'OL001';
END
$$;

CREATE TRIGGER events_append_only_rows
    BEFORE UPDATE OR DELETE ON orders.events
    FOR EACH ROW EXECUTE FUNCTION orders.reject_event_change();

CREATE TRIGGER events_append_only_truncate
    BEFORE TRUNCATE ON orders.events
    FOR EACH STATEMENT EXECUTE FUNCTION orders.reject_event_change();

REVOKE ALL ON orders.events FROM PUBLIC;
GRANT SELECT, INSERT ON orders.events TO orders_app;
GRANT SELECT ON orders.events TO orders_projector, orders_readonly;

-- ---------------------------------------------------------------------------- commands

-- One row per command that changed something: a retry with the same command id returns the
-- recorded result instead of running again.
CREATE TABLE orders.commands (
    command_id      uuid        PRIMARY KEY,
    stream_id       uuid        NOT NULL,
    -- sha-256 of the request, so that a reused id with a different request is refused.
    fingerprint     bytea       NOT NULL CHECK (length(fingerprint) = 32),
    stream_version  bigint      NOT NULL,
    global_position bigint      NOT NULL,
    status          text        NOT NULL CHECK (length(status) <= 64),
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON orders.commands FROM PUBLIC;
GRANT SELECT, INSERT ON orders.commands TO orders_app;
GRANT SELECT ON orders.commands TO orders_readonly;

-- ---------------------------------------------------------------------------- subscriptions

-- A subscriber's checkpoint over the gap-safe log, and the lease that makes one instance its
-- only writer: every checkpoint write names the lease token it holds.
CREATE TABLE orders.subscriptions (
    name                text        PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    checkpoint_xid      xid8        NOT NULL DEFAULT '0',
    checkpoint_position bigint      NOT NULL DEFAULT 0,
    owner               text,
    lease_token         bigint      NOT NULL DEFAULT 0,
    lease_expires_at    timestamptz,
    events_processed    bigint      NOT NULL DEFAULT 0,
    last_event_at       timestamptz,
    last_error          text,
    last_error_at       timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON orders.subscriptions FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON orders.subscriptions TO orders_projector;
GRANT SELECT ON orders.subscriptions TO orders_app, orders_readonly;
