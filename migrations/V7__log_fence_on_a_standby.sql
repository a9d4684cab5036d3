-- The gap-safe fence (V5) read on a hot standby: an RDS read replica, a reader endpoint, a
-- console or client pointed at one (`ServerRole::Any`).
--
-- On a standby, the transactions in flight on the primary are not in the xip list that
-- pg_snapshot_xip reads: a standby's snapshot keeps them, replayed from the WAL, in its
-- subtransaction list, which pg_current_snapshot() does not expose. V5's fence found no
-- transaction in flight there and answered the snapshot's xmax: past a transaction still
-- open on the primary. A subscriber reading the standby then delivered the younger events
-- committed after it and, once the old transaction committed, never delivered its event
-- (it sorts before the checkpoint). The standby's snapshot xmin does account for them (the
-- oldest transaction that the standby knows to be running, or xmax), so on a standby the
-- fence is that: as conservative as pg_snapshot_xmin always was (a transaction of another
-- database of the primary holds it back; a standby cannot tell them apart, its
-- pg_stat_activity shows only its own sessions). On a primary nothing changes.
CREATE OR REPLACE FUNCTION orders.log_fence() RETURNS xid8
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    snapshot pg_snapshot := pg_current_snapshot();
    oldest xid8;
BEGIN
    IF pg_is_in_recovery() THEN
        RETURN pg_snapshot_xmin(snapshot);
    END IF;
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
