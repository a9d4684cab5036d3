#!/usr/bin/env bash
# Creates the database roles the order ledger needs, idempotently; run as a one-shot ECS
# container before `order-grpc migrate` (the migration task runs both, this one first).
#
# Connects with the RDS master user (libpq variables PGHOST, PGPORT, PGDATABASE, PGUSER,
# PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, injected by ECS from the RDS-managed secret) and:
#   * creates the NOLOGIN group roles the migrations grant to, if they do not exist yet
#     (the migrations create them too, with IF NOT EXISTS semantics; whoever runs first wins);
#   * makes orders_owner the owner of the database, so the migrations (run as orders_owner)
#     can create the `orders` schema and refinery's history table;
#   * creates or updates one LOGIN user per runtime identity, each a member of exactly one
#     group role, with the password held in that service's Secrets Manager secret:
#       orders_migrator -> orders_owner      (MIGRATOR_DB_PASSWORD; sessions SET ROLE orders_owner)
#       order_grpc      -> orders_app        (GRPC_DB_PASSWORD)
#       order_projector -> orders_projector  (PROJECTOR_DB_PASSWORD)
#       order_console   -> orders_readonly   (CONSOLE_DB_PASSWORD; only when it is set: the
#                                             health board, order-console, reads and writes nothing)
# Re-running it changes no password unless the secrets changed, and it never drops anything.
#
# No password ever reaches the server as text: the server logs DDL (and exports the log to
# CloudWatch), so `ALTER ROLE ... PASSWORD` carries a SCRAM-SHA-256 verifier computed here
# (salted, 4096 iterations: what `\password` in psql sends). The passwords stay in this
# process's environment; they are never arguments of a command (visible in `ps`) and never
# printed. Tested against a server logging every statement: tests/infra/test_bootstrap_roles.py.
set -euo pipefail

: "${PGHOST:?PGHOST must be set}"
: "${PGDATABASE:?PGDATABASE must be set}"
: "${PGUSER:?PGUSER must be set (RDS master user)}"
: "${PGPASSWORD:?PGPASSWORD must be set (RDS master password)}"
: "${MIGRATOR_DB_PASSWORD:?MIGRATOR_DB_PASSWORD must be set}"
: "${GRPC_DB_PASSWORD:?GRPC_DB_PASSWORD must be set}"
: "${PROJECTOR_DB_PASSWORD:?PROJECTOR_DB_PASSWORD must be set}"
export PGSSLMODE="${PGSSLMODE:-verify-full}"

# SCRAM-SHA-256 verifier (RFC 5802/7677, PostgreSQL's format) of the password in the
# environment variable named $1. The password must be printable ASCII, where SASLprep (which
# the server applies to the password at login) changes nothing.
scram_verifier() {
    VAR="$1" perl -MDigest::SHA=hmac_sha256,sha256 -MMIME::Base64=encode_base64 -e '
        use strict; use warnings;
        my $password = $ENV{$ENV{VAR}};
        die "bootstrap-roles: $ENV{VAR} must be printable ascii\n"
            unless defined $password && $password =~ /\A[\x20-\x7e]+\z/;
        open(my $random, "<:raw", "/dev/urandom") or die "bootstrap-roles: /dev/urandom: $!\n";
        read($random, my $salt, 16) == 16 or die "bootstrap-roles: short read from /dev/urandom\n";
        my $iterations = 4096;
        # PBKDF2-HMAC-SHA-256, one 32-byte block
        my $u = hmac_sha256($salt . pack("N", 1), $password);
        my $salted = $u;
        for (2 .. $iterations) { $u = hmac_sha256($u, $password); $salted ^= $u; }
        my $stored_key = sha256(hmac_sha256("Client Key", $salted));
        my $server_key = hmac_sha256("Server Key", $salted);
        my $b64 = sub { encode_base64($_[0], "") };
        printf "SCRAM-SHA-256\$%d:%s\$%s:%s\n",
            $iterations, $b64->($salt), $b64->($stored_key), $b64->($server_key);
    '
}

migrator_verifier=$(scram_verifier MIGRATOR_DB_PASSWORD)
grpc_verifier=$(scram_verifier GRPC_DB_PASSWORD)
projector_verifier=$(scram_verifier PROJECTOR_DB_PASSWORD)
# The console's user is optional: an environment without order-console has no such login.
console_verifier=""
if [ -n "${CONSOLE_DB_PASSWORD:-}" ]; then
    console_verifier=$(scram_verifier CONSOLE_DB_PASSWORD)
fi

echo "bootstrap-roles: connecting to ${PGHOST}/${PGDATABASE} as ${PGUSER} (sslmode ${PGSSLMODE})"

# The verifiers reach psql on its standard input, as \set lines ahead of the script (single
# quotes: base64 has none, and nothing inside is interpolated).
{
    printf '%s\n' "\\set migrator_verifier '${migrator_verifier}'"
    printf '%s\n' "\\set grpc_verifier '${grpc_verifier}'"
    printf '%s\n' "\\set projector_verifier '${projector_verifier}'"
    printf '%s\n' "\\set console_verifier '${console_verifier}'"
    cat <<'SQL'
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
-- SCRAM verifiers, never the passwords (the server stores a verifier as given). No
-- NOSUPERUSER: only a superuser may name that attribute, and the master user of RDS is not
-- one; a role created by this script is never a superuser anyway.
ALTER ROLE orders_migrator WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD :'migrator_verifier';
ALTER ROLE order_grpc      WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD :'grpc_verifier';
ALTER ROLE order_projector WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD :'projector_verifier';
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
-- the console's login user, when CONSOLE_DB_PASSWORD is set: a member of orders_readonly only
SELECT :'console_verifier' <> '' AS with_console
\gset
\if :with_console
SELECT 'CREATE ROLE order_console LOGIN'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'order_console')
\gexec
ALTER ROLE order_console WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD :'console_verifier';
GRANT orders_readonly TO order_console;
-- every session of the console is read-only, whatever it asks for
ALTER ROLE order_console SET default_transaction_read_only = on;
\endif
SQL
} | psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 -v master="${PGUSER}" -v dbname="${PGDATABASE}"

echo "bootstrap-roles: done"
