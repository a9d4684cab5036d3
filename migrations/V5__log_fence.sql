-- The gap-safe fence of this database's log, as a function every reader shares (the store,
-- the console, an operator at a psql prompt: `SELECT orders.log_fence()`).
--
-- Subscribers read only events whose writing transaction is older than every transaction
-- that may still commit events here: `transaction_id < orders.log_fence()`. Until now that
-- bound was `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction open anywhere
-- in the *cluster*. Transaction ids are cluster-wide, so a long write transaction in another
-- database of the same server (another service sharing an RDS instance, a bulk job, a test
-- suite's other tests) held back every projector and event stream here for as long as it
-- ran, with nothing in this database to show why.
--
-- A transaction can only write to the database its session is connected to. So the fence is
-- the oldest transaction in flight (in the snapshot of the calling statement) that is not
-- known to belong to another database; if there is none, the snapshot's xmax (every id below
-- it has finished). An id in flight counts as "ours" unless pg_stat_activity shows a session
-- of another database running it (a fact that cannot go stale: a transaction never changes
-- database). Whatever cannot be attributed (a session that finished in between, a
-- subtransaction's id, a prepared transaction, a standby's replayed transactions) keeps
-- holding the fence, as before. The calling transaction's own id counts too, as it did in
-- pg_snapshot_xmin. pg_stat_activity shows `datid` and `backend_xid` of every session to
-- every role, so no extra privilege is needed.
--
-- STABLE: it reads the calling statement's snapshot (a STABLE function takes no snapshot of
-- its own). PL/pgSQL so that its query is planned once per session (about 40 microseconds a
-- call with transactions in flight, next to 200 for a SQL function, which is planned on every
-- call). Callers write `(SELECT orders.log_fence())`: evaluated once per statement.
CREATE FUNCTION orders.log_fence() RETURNS xid8
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    snapshot pg_snapshot := pg_current_snapshot();
    oldest xid8;
BEGIN
    SELECT min(running) INTO oldest
      FROM pg_snapshot_xip(snapshot) AS running
     WHERE (running::text::int8 % 4294967296) NOT IN (
           SELECT session.backend_xid::text::int8
             FROM pg_stat_get_activity(NULL) AS session
            WHERE session.backend_xid IS NOT NULL
              AND session.datid <> (SELECT oid FROM pg_database
                                     WHERE datname = current_database()));
    RETURN least(coalesce(oldest, pg_snapshot_xmax(snapshot)), pg_current_xact_id_if_assigned());
END
$$;

REVOKE ALL ON FUNCTION orders.log_fence() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orders.log_fence() TO orders_app, orders_projector, orders_readonly;
