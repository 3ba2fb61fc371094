"""The sandbox's two servers: embedded PostgreSQL (pgserver) and moto's SQS server.

Heavy imports (pgserver, psycopg, boto3 via the adapters) happen inside functions only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dbops.errors import RemoteError
from dbops.sandbox import DLQ, MAIN_QUEUE, REGION, SCHEMA_DATABASES, SchemaName
from dbops.sandbox.processes import (
    _CHILDREN,
    POLL_INTERVAL,
    STOP_TIMEOUT,
    _cmdline,
    _free_port,
    _port_free,
    _terminate,
    _wait_gone,
    pid_alive,
)

if TYPE_CHECKING:
    from dbops.adapters.sqs import SqsQueues
    from dbops.sandbox.runtime import SandboxState

MOTO_START_TIMEOUT = 60.0
MOTO_LOG = "moto.log"  # in the sandbox folder (`runtime.moto_log_path()`)

# Attributes of the sandbox queues (architecture.md section 3).
DLQ_ATTRIBUTES = {"MessageRetentionPeriod": "1209600"}
MAIN_ATTRIBUTES = {"VisibilityTimeout": "300", "ReceiveMessageWaitTimeSeconds": "20"}
MAX_RECEIVE_COUNT = 3


# --------------------------------------------------------------------------- postgres
@dataclass
class _Postmaster:
    pid: int
    port: int | None
    socket_dir: Path | None


def _postmaster(pgdata: Path) -> _Postmaster | None:
    """What `postmaster.pid` says, if the file exists and its process runs."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0].strip())
    except (OSError, ValueError, IndexError):
        return None
    if not pid_alive(pid):
        return None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    sock = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
    return _Postmaster(pid=pid, port=port, socket_dir=sock)


def _dsn(info: _Postmaster, database: str = "postgres") -> str:
    # The same form as pgserver's `get_uri()`: a unix socket, user postgres, no password.
    if info.socket_dir is not None:
        return f"postgresql://postgres:@/{database}?host={info.socket_dir}"
    return f"postgresql://postgres:@127.0.0.1:{info.port or 5432}/{database}"


def _schema_dsn(info: _Postmaster, schema: SchemaName) -> str:
    """The DSN of `schema`'s database, created first when missing (under the lock)."""
    database = SCHEMA_DATABASES[schema]
    if database != "postgres":
        import psycopg
        from psycopg import sql

        with psycopg.connect(_dsn(info), connect_timeout=10, autocommit=True) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (database,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    return _dsn(info, database)


def _pg_answers(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
            conn.execute("select 1")
        return True
    except psycopg.Error:
        return False


def _system_user() -> str | None:
    # As root, pgserver runs postgres as the `pgserver` system user (pg refuses root).
    return "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def _start_postgres(pgdata: Path) -> tuple[int, str]:
    import pgserver

    resolved = pgdata.expanduser().resolve()
    # pgserver caches one handle per folder per process; a handle whose server was
    # stopped since would be returned as is, so always build a fresh one.
    _forget_handle(resolved)
    try:
        server = pgserver.get_server(resolved, cleanup_mode=None)
    except Exception as exc:
        log = resolved / "log"
        raise RemoteError(
            f"embedded PostgreSQL failed to start ({type(exc).__name__})",
            hint=f"see {log}" if log.exists() else "re-run with --debug",
        ) from None
    pid = server.get_pid()
    info = _postmaster(resolved)
    if pid is None or info is None:
        raise RemoteError("embedded PostgreSQL did not report a running server")
    return int(pid), _dsn(info)


def _stop_postgres(pgdata: Path, info: _Postmaster) -> None:
    from pgserver import _commands

    # pgserver generates its command wrappers at import time.
    try:
        _commands.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"],
            pgdata=pgdata,
            user=_system_user(),
            timeout=STOP_TIMEOUT,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        # pg_ctl failed: ask the postmaster for a fast shutdown, then an immediate one.
        for sig in (signal.SIGINT, signal.SIGQUIT):
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, sig)
            if _wait_gone(info.pid, STOP_TIMEOUT / 2):
                break
    if not _wait_gone(info.pid, STOP_TIMEOUT):
        raise RemoteError(
            f"embedded PostgreSQL (pid {info.pid}) did not stop",
            hint=f"stop it by hand: kill {info.pid}",
        )
    _forget_handle(pgdata.expanduser().resolve())


def _forget_handle(resolved: Path) -> None:
    """Drop this process's cached pgserver handle for `resolved`, and its exit hook."""
    import atexit

    import pgserver

    handle = pgserver.PostgresServer._instances.pop(resolved, None)
    if handle is not None:
        atexit.unregister(handle._cleanup)


# --------------------------------------------------------------------------- moto
def _endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _http_answers(endpoint: str, timeout: float = 1.0) -> bool:
    import urllib.error
    import urllib.request

    # Bypass any HTTP(S)_PROXY: the server is on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{endpoint}/moto-api/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, whatever it said
    except (urllib.error.URLError, OSError):
        return False


def _is_moto(pid: int | None, port: int | None) -> bool:
    if not pid or not port or not pid_alive(pid):
        return False
    cmd = _cmdline(pid)
    # A command line without the server module means the pid was reused by something else
    # (moto.server: a sandbox started before dbops.sandbox.sqs_server existed).
    return not cmd or any(part in {"moto.server", "dbops.sandbox.sqs_server"} for part in cmd)


def _moto_running(state: SandboxState | None) -> bool:
    if state is None or not _is_moto(state.moto_pid, state.moto_port):
        return False
    assert state.moto_port is not None
    return _http_answers(_endpoint(state.moto_port))


def _start_moto(folder: Path, preferred_port: int | None) -> tuple[int, int]:
    """Start moto's server (`python -m dbops.sandbox.sqs_server`) detached; wait (bounded)
    until it answers."""
    last_error = "did not start"
    for attempt in range(3):
        use_preferred = attempt == 0 and preferred_port and _port_free(preferred_port)
        port = preferred_port if use_preferred and preferred_port else _free_port()
        log_path = folder / MOTO_LOG
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dbops.sandbox.sqs_server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=folder,
            )
        _CHILDREN[proc.pid] = proc
        deadline = time.monotonic() + MOTO_START_TIMEOUT
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                _CHILDREN.pop(proc.pid, None)
                last_error = f"exited with code {code}"
                break  # most likely the port was taken meanwhile: try another
            if _http_answers(_endpoint(port), timeout=0.5):
                return proc.pid, port
            time.sleep(POLL_INTERVAL)
        else:
            _terminate(proc.pid)
            raise RemoteError(
                f"SQS server (moto) did not answer within {MOTO_START_TIMEOUT:.0f} s",
                hint=f"see {log_path}",
            )
    raise RemoteError(f"SQS server (moto) {last_error}", hint=f"see {folder / MOTO_LOG}")


def _queues_client(endpoint: str) -> SqsQueues:
    from dbops.adapters.sqs import SqsQueues

    return SqsQueues(region=REGION, endpoint=endpoint, sandbox=True)


def _create_queues(endpoint: str) -> tuple[str, str]:
    sqs = _queues_client(endpoint)
    dlq_url = sqs.create_queue(DLQ, DLQ_ATTRIBUTES)
    dlq_arn = sqs.get_attributes(dlq_url)["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
    main_url = sqs.create_queue(MAIN_QUEUE, {**MAIN_ATTRIBUTES, "RedrivePolicy": redrive})
    return main_url, dlq_url
