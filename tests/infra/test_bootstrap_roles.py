"""deploy/dbinit/bootstrap-roles.sh against a real PostgreSQL that logs every statement
(log_statement = all, stricter than the RDS parameter group's ddl): no password may reach the
server log, a command line, or the script's output, and every login user must then be able to
log in with its password (the SCRAM verifiers the script computes are right).

Starts a private cluster (initdb in a temporary folder, its own port, loopback only) and stops
and deletes it afterwards. Needs PostgreSQL's server binaries (ORDER_PG_BIN, default the newest
/usr/lib/postgresql/*/bin) and psql and perl on PATH, as the dbinit image has them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(os.environ.get("BOOTSTRAP_ROLES_SCRIPT", REPO / "deploy/dbinit/bootstrap-roles.sh"))
ADMIN = "orders_admin"
SUPERUSER = "cluster_superuser"


def _pg_bin() -> Path:
    if os.environ.get("ORDER_PG_BIN"):
        return Path(os.environ["ORDER_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        pytest.fail("no PostgreSQL server binaries (set ORDER_PG_BIN or install postgresql)")
    return found[-1].parent


def _as_postgres(args: list[str]) -> None:
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        args = ["runuser", "-u", "postgres", "--", *args]
    run = subprocess.run(args, capture_output=True, text=True)
    assert run.returncode == 0, f"{args[0]} ... failed: {run.stdout}{run.stderr}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    # not under pytest's tmp folder: the postgres user must be able to reach it
    base = Path(tempfile.mkdtemp(prefix="order-bootstrap-roles-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, log, socket_dir = base / "data", base / "server.log", base / "socket"
    admin_password = "admin-" + secrets.token_hex(16)
    pwfile = base / "pw"
    pwfile.write_text(admin_password + "\n")
    socket_dir.mkdir()
    for p in (pwfile, socket_dir):
        if os.geteuid() == 0:
            shutil.chown(p, "postgres", "postgres")
    bin_dir = _pg_bin()
    port = _free_port()
    # The cluster's own superuser exists only to set the test up. The script runs as ADMIN,
    # which, like the master user of RDS (rds_superuser, not a superuser), may create roles
    # and databases but not touch the superuser attribute.
    _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions"])
    options = (f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={socket_dir} "
               "-c log_statement=all -c log_min_error_statement=error -c logging_collector=off "
               "-c password_encryption=scram-sha-256 -c fsync=off")
    _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"])
    try:
        env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": ADMIN,
               "PGPASSWORD": admin_password, "PGSSLMODE": "disable", "PGDATABASE": "postgres"}
        subprocess.run(["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-h", str(socket_dir), "-U", SUPERUSER,
                        "-qc", "SET log_statement = 'none'",  # this set-up's own password stays out of the log
                        "-qc", f"CREATE ROLE {ADMIN} LOGIN CREATEROLE CREATEDB NOSUPERUSER PASSWORD '{admin_password}'"],
                       env=env, check=True, capture_output=True)
        subprocess.run(["psql", "--no-psqlrc", "-qc", "CREATE DATABASE orders"], env=env, check=True,
                       capture_output=True)
        yield {"port": port, "log": log, "admin_password": admin_password, "base": base}
    finally:
        subprocess.run((["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else [])
                       + [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _recording_psql(folder: Path, record: Path) -> Path:
    """A psql on PATH that records its command line (what `ps` shows) and runs the real one."""
    real = shutil.which("psql")
    assert real, "psql not found"
    folder.mkdir()
    wrapper = folder / "psql"
    wrapper.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "{record}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return folder


def test_no_password_reaches_the_server_log_or_a_command_line(cluster, tmp_path):
    passwords = {
        "MIGRATOR_DB_PASSWORD": secrets.token_hex(20),
        "GRPC_DB_PASSWORD": secrets.token_hex(20),
        "PROJECTOR_DB_PASSWORD": secrets.token_hex(20),
        "CONSOLE_DB_PASSWORD": secrets.token_hex(20),
    }
    argv_record = tmp_path / "argv"
    path = f"{_recording_psql(tmp_path / 'bin', argv_record)}:{os.environ['PATH']}"
    env = {**os.environ, **passwords, "PATH": path, "PGHOST": "127.0.0.1", "PGPORT": str(cluster["port"]),
           "PGDATABASE": "orders", "PGUSER": ADMIN, "PGPASSWORD": cluster["admin_password"],
           "PGSSLMODE": "disable"}

    outputs = []
    for _ in range(2):  # idempotent: a second run (a redeploy) changes nothing but the salts
        run = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout + run.stderr)

    log = cluster["log"].read_text()
    assert "ALTER ROLE order_grpc" in log, "the server did not log the statements (test is blind)"
    argv = argv_record.read_text()
    for name, password in passwords.items():
        assert password not in log, f"{name} is in the server log (log_statement = all)"
        assert password not in argv, f"{name} is on psql's command line (visible in ps)"
        for text in outputs:
            assert password not in text, f"{name} is in the script's output"
    assert cluster["admin_password"] not in log
    assert "SCRAM-SHA-256$4096:" in log, "the ALTER ROLE statements carry no SCRAM verifier"

    # the verifiers are right: each user logs in with its password, and only with it
    for user, var in (("orders_migrator", "MIGRATOR_DB_PASSWORD"), ("order_grpc", "GRPC_DB_PASSWORD"),
                      ("order_projector", "PROJECTOR_DB_PASSWORD"), ("order_console", "CONSOLE_DB_PASSWORD")):
        login = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster["port"]), "PGDATABASE": "orders",
                 "PGUSER": user, "PGSSLMODE": "disable"}
        ok = subprocess.run(["psql", "--no-psqlrc", "-tAc", "SELECT session_user"],
                            env={**login, "PGPASSWORD": passwords[var]}, capture_output=True, text=True)
        assert ok.returncode == 0 and ok.stdout.strip() == user, f"{user} cannot log in: {ok.stderr}"
        wrong = subprocess.run(["psql", "--no-psqlrc", "-tAc", "SELECT 1"],
                               env={**login, "PGPASSWORD": "wrong-" + passwords[var]}, capture_output=True, text=True)
        assert wrong.returncode != 0, f"{user} logs in with a wrong password"

    # the console's user reads only: a member of orders_readonly and of nothing else, its
    # sessions read-only
    admin = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster["port"]), "PGDATABASE": "orders",
             "PGUSER": ADMIN, "PGPASSWORD": cluster["admin_password"], "PGSSLMODE": "disable"}
    roles = subprocess.run(["psql", "--no-psqlrc", "-tAc",
                            "SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m "
                            "JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
                            "WHERE u.rolname = 'order_console'"], env=admin, capture_output=True, text=True)
    assert roles.stdout.strip() == "orders_readonly", roles.stdout + roles.stderr
    login = {**admin, "PGUSER": "order_console", "PGPASSWORD": passwords["CONSOLE_DB_PASSWORD"]}
    read_only = subprocess.run(["psql", "--no-psqlrc", "-tAc", "SHOW default_transaction_read_only"],
                               env=login, capture_output=True, text=True)
    assert read_only.stdout.strip() == "on", read_only.stdout + read_only.stderr


def test_the_console_password_is_optional(cluster, tmp_path):
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster["port"]), "PGDATABASE": "postgres",
           "PGUSER": ADMIN, "PGPASSWORD": cluster["admin_password"], "PGSSLMODE": "disable",
           "MIGRATOR_DB_PASSWORD": "m" * 20, "GRPC_DB_PASSWORD": "g" * 20, "PROJECTOR_DB_PASSWORD": "p" * 20}
    env.pop("CONSOLE_DB_PASSWORD", None)
    subprocess.run(["psql", "--no-psqlrc", "-qc", "CREATE DATABASE orders_no_console"], env=env, check=True,
                   capture_output=True)
    run = subprocess.run(["bash", str(SCRIPT)], env={**env, "PGDATABASE": "orders_no_console"},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_a_password_sasl_prep_could_change_is_refused(cluster, tmp_path):
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster["port"]), "PGDATABASE": "orders",
           "PGUSER": ADMIN, "PGPASSWORD": cluster["admin_password"], "PGSSLMODE": "disable",
           "MIGRATOR_DB_PASSWORD": "caf\u00e9-not-ascii", "GRPC_DB_PASSWORD": "x" * 20,
           "PROJECTOR_DB_PASSWORD": "y" * 20}
    run = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "must be printable ascii" in run.stderr
    assert "caf\u00e9" not in run.stderr + run.stdout
