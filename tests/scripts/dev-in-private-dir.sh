#!/usr/bin/env bash
# scripts/dev from a checkout that only its owner may enter, as a home directory is (issue 19,
# item 5): a clone inside a mode-0700 folder starts PostgreSQL and the SQS emulator, answers a
# query through the settings it wrote, survives `up` twice, `down` and `up` again with its data,
# starts a synchronous hot standby (`up --standby`) and stops it without leaving the primary
# waiting for it, and `reset` leaves nothing behind. scripts/check runs it.
#
#   tests/scripts/dev-in-private-dir.sh [--rev REV]
#
# The clone is of this checkout's HEAD with the working tree's changes laid over it, or of REV
# (`--rev main`: show what an older scripts/dev does). Ports: ORDER_TEST_PG_PORT,
# ORDER_TEST_PG_STANDBY_PORT and ORDER_TEST_SQS_PORT (default: free ports chosen now). Whatever it started is stopped and
# deleted on exit, pass or fail.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REV=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rev) REV="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: tests/scripts/dev-in-private-dir.sh [--rev REV]" >&2; exit 2 ;;
  esac
done

say() { printf '[dev-in-private-dir] %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PG_PORT="${ORDER_TEST_PG_PORT:-$(free_port)}"
SQS_PORT="${ORDER_TEST_SQS_PORT:-$(free_port)}"
STANDBY_PORT="${ORDER_TEST_PG_STANDBY_PORT:-$(free_port)}"
[ "$PG_PORT" != "$SQS_PORT" ] || fail "the PostgreSQL and SQS test ports are the same ($PG_PORT)"

PRIVATE="$(mktemp -d "${TMPDIR:-/tmp}/order-ledger-home.XXXXXX")"
chmod 700 "$PRIVATE"
CLONE="$PRIVATE/order-ledger"
OUT="$PRIVATE/out"
STATE=""

# From inside the clone, as its owner would, with only this test's settings: not those of the
# checkout running it (scripts/check sourced its .dev/env, which names its own cluster).
dev() {
  (cd "$CLONE" &&
    env -u ORDER_PG_ADMIN_URL -u ORDER_PG_DIR ORDER_PG_PORT="$PG_PORT" ORDER_SQS_PORT="$SQS_PORT" \
      ORDER_PG_STANDBY_PORT="$STANDBY_PORT" scripts/dev "$@")
}

# `scripts/dev status` as a new shell in the clone runs it (no port settings, no .dev/env
# sourced), into $OUT; $1 is what to say when it fails.
status_in_new_shell() {
  (cd "$CLONE" && env -u ORDER_PG_ADMIN_URL -u ORDER_PG_DIR -u ORDER_PG_PORT -u ORDER_SQS_PORT \
    -u ORDER_PG_STANDBY_PORT scripts/dev status) >"$OUT" 2>&1 || { cat "$OUT" >&2; fail "$1"; }
}

# A process whose pid file is $1, if it is still the program $2.
kill_pid_file() {
  local pid
  [ -f "$1" ] || return 0
  pid="$(head -n 1 "$1" 2>/dev/null || true)"
  case "$pid" in ''|*[!0-9]*) return 0 ;; esac
  if grep -q "$2" "/proc/$pid/cmdline" 2>/dev/null; then
    say "cleanup: stopping $2 (pid $pid) that scripts/dev left running"
    kill -TERM "$pid" 2>/dev/null || true
  fi
}

cleanup() {
  local status=$?
  trap - EXIT
  if [ -x "$CLONE/scripts/dev" ]; then
    [ -n "$STATE" ] || STATE="$(state_dir)"
    dev reset >/dev/null 2>&1 || true
  fi
  # Belt and braces: whatever survived a broken reset.
  local pid_file
  while IFS= read -r -d '' pid_file; do
    kill_pid_file "$pid_file" postgres
  done < <(find "$PRIVATE" ${STATE:+"$STATE"} -name postmaster.pid -print0 2>/dev/null)
  kill_pid_file "$CLONE/.dev/sqs/pid" node
  rm -rf "$PRIVATE"
  if [ -n "$STATE" ] && [ "$STATE" != / ]; then rm -rf "$STATE"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Where the cluster lives, as `scripts/dev status` tells it ("... (data DIR/data, log ...)").
state_dir() {
  dev status 2>/dev/null | sed -n 's/^postgresql: .*(data \(.*\)\/data, log .*/\1/p'
}

# The settings of .dev/env, in a subshell: a query, its answer.
query() { # variable-holding-the-url sql
  (
    # shellcheck disable=SC1091
    . "$CLONE/.dev/env"
    psql "${!1}" -XAtqc "$2"
  )
}

say "clone into $CLONE (folder mode 700; ports pg $PG_PORT, sqs $SQS_PORT)"
git clone --quiet --no-hardlinks "$ROOT" "$CLONE"
if [ -n "$REV" ]; then
  git -C "$CLONE" checkout --quiet --detach "$(git -C "$ROOT" rev-parse --verify "$REV^{commit}")"
else
  git -C "$CLONE" checkout --quiet --detach "$(git -C "$ROOT" rev-parse HEAD)"
  # The working tree's changes, so that an edited scripts/dev is what gets tested.
  (cd "$ROOT" && git ls-files -z --modified --others --exclude-standard) |
    while IFS= read -r -d '' file; do
      if [ -e "$ROOT/$file" ]; then
        mkdir -p "$CLONE/$(dirname "$file")"
        cp -p "$ROOT/$file" "$CLONE/$file"
      else
        rm -f "$CLONE/$file"
      fi
    done
fi
# The pinned SQS emulator, when this checkout has it installed, spares a download (scripts/dev
# still checks that it matches the lock file).
if [ -d "$ROOT/.dev/sqs/node_modules/fauxqs" ]; then
  mkdir -p "$CLONE/.dev/sqs"
  cp -a "$ROOT/.dev/sqs/node_modules" "$ROOT/.dev/sqs/package.json" \
    "$ROOT/.dev/sqs/package-lock.json" "$CLONE/.dev/sqs/"
fi

say "scripts/dev status on a fresh clone in a new shell (no cluster, no .dev/env, no port settings)"
# Nothing to remember a port from yet: the defaults, and an answer (it once exited 2 without a
# word, so `up` failed on every fresh machine that did not name its ports).
status_in_new_shell "scripts/dev status on a fresh clone without port settings failed"
grep -q "^postgresql: " "$OUT" || { cat "$OUT" >&2; fail "scripts/dev status on a fresh clone says nothing of PostgreSQL"; }

say "scripts/dev up"
dev up >"$OUT" 2>&1 || { tail -n 20 "$OUT" >&2; fail "scripts/dev up failed in a clone inside a mode-700 folder"; }
if grep -i 'permission denied' "$OUT" >&2; then fail "scripts/dev up was refused somewhere on the way"; fi
STATE="$(state_dir)"
[ -n "$STATE" ] || { dev status >&2; fail "scripts/dev status does not say where the cluster lives"; }
case "$STATE" in "$PRIVATE"/*) fail "the cluster lives inside the checkout ($STATE)" ;; esac

[ -f "$CLONE/.dev/env" ] || fail "scripts/dev up wrote no .dev/env"
grep -q "@127.0.0.1:$PG_PORT/" "$CLONE/.dev/env" || fail ".dev/env does not name port $PG_PORT"
[ "$(query ORDER_PG_ADMIN_URL 'SELECT 1')" = 1 ] || fail "no answer through ORDER_PG_ADMIN_URL"
[ "$(query ORDER_GRPC_DATABASE_URL 'SELECT current_user')" = order_grpc ] \
  || fail "ORDER_GRPC_DATABASE_URL does not log in as order_grpc"
(
  # shellcheck disable=SC1091
  . "$CLONE/.dev/env"
  curl -sf -o /dev/null "$AWS_ENDPOINT_URL_SQS/health"
) || fail "the SQS emulator does not answer at the AWS_ENDPOINT_URL_SQS of .dev/env"
[ "$(stat -c %a "$PRIVATE")" = 700 ] || fail "scripts/dev changed the mode of the private folder"
if [ "$(id -u)" -eq 0 ] && [ -n "$(find "$CLONE" -user postgres -print -quit)" ]; then
  fail "scripts/dev gave files of the checkout to the postgres user"
fi
query ORDER_PG_ADMIN_URL 'CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)' >/dev/null

say "scripts/dev status in a new shell (no port settings)"
# The ports the cluster and the emulator were set up with, not the defaults (another user's
# servers may listen there).
status_in_new_shell "scripts/dev status in a new shell failed"
grep -q "^postgresql: *running on 127.0.0.1:$PG_PORT " "$OUT" \
  || { cat "$OUT" >&2; fail "scripts/dev status without ORDER_PG_PORT does not name the cluster's port $PG_PORT"; }
grep -q "^sqs: *running on http://127.0.0.1:$SQS_PORT " "$OUT" \
  || { cat "$OUT" >&2; fail "scripts/dev status without ORDER_SQS_PORT does not name the emulator's port $SQS_PORT"; }

say "scripts/dev up again"
dev up >"$OUT" 2>&1 || { tail -n 20 "$OUT" >&2; fail "a second scripts/dev up failed"; }
grep -q "PostgreSQL already running" "$OUT" || fail "a second scripts/dev up did not find the running cluster"

say "scripts/dev down"
dev down >"$OUT" 2>&1 || { tail -n 20 "$OUT" >&2; fail "scripts/dev down failed"; }
dev status >"$OUT" 2>&1
if ! grep -q '^postgresql: stopped' "$OUT" || ! grep -q '^sqs: *stopped' "$OUT"; then
  cat "$OUT" >&2
  fail "scripts/dev status after down does not say stopped"
fi
! listening "$PG_PORT" || fail "PostgreSQL still listens on $PG_PORT after down"
! listening "$SQS_PORT" || fail "the SQS emulator still listens on $SQS_PORT after down"

say "scripts/dev up after down (the data stays)"
dev up >"$OUT" 2>&1 || { tail -n 20 "$OUT" >&2; fail "scripts/dev up after down failed"; }
[ "$(query ORDER_PG_ADMIN_URL 'SELECT n FROM kept')" = 42 ] || fail "the data did not survive down and up"

say "scripts/dev up --standby"
dev up --standby >"$OUT" 2>&1 || { tail -n 20 "$OUT" >&2; fail "scripts/dev up --standby failed"; }
dev status >"$OUT" 2>&1
grep -q "^standby: *running on 127.0.0.1:$STANDBY_PORT" "$OUT" || { cat "$OUT" >&2; fail "scripts/dev status does not show the standby"; }
# In a new shell too: the standby's own port, not the primary's next.
status_in_new_shell "scripts/dev status in a new shell failed with the standby up"
grep -q "^standby: *running on 127.0.0.1:$STANDBY_PORT " "$OUT" \
  || { cat "$OUT" >&2; fail "scripts/dev status without ORDER_PG_STANDBY_PORT does not name the standby's port $STANDBY_PORT"; }
grep -q '^replication: streaming, sync; replay lag [0-9]* bytes' "$OUT" \
  || { cat "$OUT" >&2; fail "scripts/dev status does not show synchronous streaming with its lag"; }
[ "$(query ORDER_GRPC_READ_DATABASE_URL 'SELECT pg_is_in_recovery()')" = t ] \
  || fail "ORDER_GRPC_READ_DATABASE_URL does not lead to the standby"
[ "$(query ORDER_GRPC_READ_DATABASE_URL 'SELECT current_user')" = order_grpc ] \
  || fail "ORDER_GRPC_READ_DATABASE_URL does not log in as order_grpc on the standby"
on_standby="$(
  # shellcheck disable=SC1091
  . "$CLONE/.dev/env"
  psql "${ORDER_PG_ADMIN_URL/:$PG_PORT\//:$STANDBY_PORT/}" -XAtqc 'SELECT n FROM kept'
)" || true
[ "$on_standby" = 42 ] || fail "the standby lacks the primary's data"
grep -q "ORDER_GRPC_DATABASE_URL='postgres://order_grpc:[0-9a-f]*@127.0.0.1:$PG_PORT,127.0.0.1:$STANDBY_PORT/" "$CLONE/.dev/env" \
  || fail "ORDER_GRPC_DATABASE_URL does not name the primary and the standby"
[ "$(query ORDER_PG_ADMIN_URL 'SHOW synchronous_standby_names')" = order_standby ] \
  || fail "the primary does not wait for the standby"

say "scripts/dev down standby: the primary no longer waits for it"
dev down standby >"$OUT" 2>&1 || { tail -n 20 "$OUT" >&2; fail "scripts/dev down standby failed"; }
! listening "$STANDBY_PORT" || fail "the standby still listens on $STANDBY_PORT after down standby"
[ "$(query ORDER_PG_ADMIN_URL 'SHOW synchronous_standby_names')" = "" ] \
  || fail "the primary still names a synchronous standby that is down: every commit would hang"
committed="$(
  # shellcheck disable=SC1091
  . "$CLONE/.dev/env"
  timeout 20 psql "$ORDER_PG_ADMIN_URL" -XAtqc 'INSERT INTO kept VALUES (43) RETURNING n'
)" || true
[ "$committed" = 43 ] || fail "a commit does not go through with the standby down"

say "scripts/dev reset"
dev reset >"$OUT" 2>&1 || { tail -n 20 "$OUT" >&2; fail "scripts/dev reset failed"; }
[ ! -e "$STATE" ] || fail "scripts/dev reset left $STATE"
[ ! -e "$CLONE/.dev/env" ] || fail "scripts/dev reset left .dev/env"
! listening "$PG_PORT" || fail "PostgreSQL still listens on $PG_PORT after reset"
dev status >"$OUT" 2>&1
grep -q '^postgresql: stopped' "$OUT" || { cat "$OUT" >&2; fail "scripts/dev status after reset does not say stopped"; }

say "ok: up, up, down, up, up --standby, down standby, reset from a clone inside a mode-700 folder"
