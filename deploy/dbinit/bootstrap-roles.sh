#!/usr/bin/env bash
# Creates the database roles the order ledger needs, idempotently; run as a one-shot ECS
# container before `order-grpc migrate` (the migration task runs both, this one first).
#
# Connects with the RDS master user (libpq variables PGHOST, PGPORT, PGDATABASE, PGUSER,
# PGPASSWORD, PGSSLMODE, injected by ECS from the RDS-managed secret) and:
#   * creates the NOLOGIN group roles the migrations grant to, if they do not exist yet
#     (the migrations create them too, with IF NOT EXISTS semantics; whoever runs first wins);
#   * makes orders_owner the owner of the database, so the migrations (run as orders_owner)
#     can create the `orders` schema and refinery's history table;
#   * creates or updates one LOGIN user per runtime identity, each a member of exactly one
#     group role, with the password held in that service's Secrets Manager secret:
#       orders_migrator -> orders_owner      (MIGRATOR_DB_PASSWORD; sessions SET ROLE orders_owner)
#       order_grpc      -> orders_app        (GRPC_DB_PASSWORD)
#       order_projector -> orders_projector  (PROJECTOR_DB_PASSWORD)
# Re-running it rotates nothing unless the secrets changed, and it never drops anything.
set -euo pipefail

: "${PGHOST:?PGHOST must be set}"
: "${PGDATABASE:?PGDATABASE must be set}"
: "${PGUSER:?PGUSER must be set (RDS master user)}"
: "${PGPASSWORD:?PGPASSWORD must be set (RDS master password)}"
: "${MIGRATOR_DB_PASSWORD:?MIGRATOR_DB_PASSWORD must be set}"
: "${GRPC_DB_PASSWORD:?GRPC_DB_PASSWORD must be set}"
: "${PROJECTOR_DB_PASSWORD:?PROJECTOR_DB_PASSWORD must be set}"
export PGSSLMODE="${PGSSLMODE:-require}"

echo "bootstrap-roles: connecting to ${PGHOST}/${PGDATABASE} as ${PGUSER}"

# Passwords travel as psql variables (:'name' quotes them as literals); they never appear in
# the process list or in the log.
psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 \
    -v master="${PGUSER}" \
    -v dbname="${PGDATABASE}" \
    -v migrator_pw="${MIGRATOR_DB_PASSWORD}" \
    -v grpc_pw="${GRPC_DB_PASSWORD}" \
    -v projector_pw="${PROJECTOR_DB_PASSWORD}" <<'SQL'
SET client_min_messages = warning;

-- group roles (NOLOGIN), the names the migrations use
SELECT format('CREATE ROLE %I NOLOGIN', r)
  FROM unnest(ARRAY['orders_owner', 'orders_app', 'orders_projector', 'orders_readonly']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\gexec

-- the master user must be a member to hand the database over (PostgreSQL 15 does not make
-- the creator of a role a member of it)
SELECT format('GRANT orders_owner TO %I', :'master')
 WHERE NOT pg_has_role(:'master', 'orders_owner', 'MEMBER')
\gexec
SELECT format('ALTER DATABASE %I OWNER TO orders_owner', :'dbname')
\gexec
REVOKE ALL ON DATABASE :"dbname" FROM PUBLIC;

-- login users, one per runtime identity
SELECT format('CREATE ROLE %I LOGIN', u)
  FROM unnest(ARRAY['orders_migrator', 'order_grpc', 'order_projector']) AS u
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = u)
\gexec
ALTER ROLE orders_migrator WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'migrator_pw';
ALTER ROLE order_grpc      WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'grpc_pw';
ALTER ROLE order_projector WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'projector_pw';
GRANT orders_owner     TO orders_migrator;
GRANT orders_app       TO order_grpc;
GRANT orders_projector TO order_projector;
-- the projector owns the read-model tables it rebuilds and swaps (replay); the owner must be
-- a member of orders_projector to hand those tables over in migrations
SELECT 'GRANT orders_projector TO orders_owner'
 WHERE NOT pg_has_role('orders_owner', 'orders_projector', 'MEMBER')
\gexec
-- objects created by the migrations belong to orders_owner, not to the login user
ALTER ROLE orders_migrator SET role = 'orders_owner';
-- a migration may legitimately run longer than the server-wide statement_timeout
ALTER ROLE orders_migrator SET statement_timeout = 0;
GRANT CONNECT ON DATABASE :"dbname" TO orders_owner, orders_app, orders_projector, orders_readonly;
SQL

echo "bootstrap-roles: done"
