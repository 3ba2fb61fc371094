"""Start, stop and inspect the sandbox: embedded PostgreSQL (pgserver) + moto's SQS server.

Everything lives in `dbops.settings.data_dir() / "sandbox"`:

    state.json   pids, port, URIs of the running servers, the schema variant (by `up`)
    pgdata/      the PostgreSQL cluster (owned by the `pgserver` system user when root)
    moto.log     the SQS server's output
    run/         a private XDG_RUNTIME_DIR, used when none is set
    .lock        serialises up/down/seed between processes

The `standard` schema variant lives in the cluster's `postgres` database, `legacy` in
`dbops_legacy` (`SCHEMA_DATABASES`); `up --schema` switches between them and keeps both.

Postgres is started with `cleanup_mode=None` and moto in its own session, so both keep
running after the command that started them exits. Heavy imports (pgserver, psycopg,
boto3 via the adapters) happen inside functions only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from dbops.errors import ConfigError, DbopsError, RefusedError, RemoteError
from dbops.files import private_dir
from dbops.sandbox import (
    DEFAULT_SCHEMA,
    PROFILE,
    REGION,
    SCHEMA_DATABASES,
    SCHEMA_MIGRATIONS,
    SchemaName,
)
from dbops.sandbox.processes import _terminate
from dbops.sandbox.servers import (
    MOTO_LOG,
    _create_queues,
    _dsn,
    _endpoint,
    _http_answers,
    _is_moto,
    _moto_running,
    _pg_answers,
    _Postmaster,
    _postmaster,
    _queues_client,
    _schema_dsn,
    _start_moto,
    _start_postgres,
    _stop_postgres,
)
from dbops.settings import Settings, data_dir, profile_values, write_profile

if TYPE_CHECKING:
    from dbops.adapters.postgres import PostgresStore
    from dbops.adapters.sqs import SqsQueues


# --------------------------------------------------------------------------- models
# `schema` is a BaseModel attribute: the fields are `schema_name`, read and written as
# "schema" (JSON, state.json).
_SCHEMA_ALIAS = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)


class SandboxState(BaseModel):
    """Contents of `state.json`. `schema` is the application schema variant in use."""

    model_config = _SCHEMA_ALIAS

    pgdata: str
    schema_name: SchemaName = Field(default=DEFAULT_SCHEMA, alias="schema")
    database_url: str | None = None
    postgres_pid: int | None = None
    moto_pid: int | None = None
    moto_port: int | None = None
    sqs_endpoint: str | None = None
    main_queue_url: str | None = None
    dlq_url: str | None = None
    region: str = REGION
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class ServiceStatus(BaseModel):
    name: str
    running: bool
    pid: int | None = None
    detail: str = ""


class SandboxStatus(BaseModel):
    """`dbops sandbox status -o json`.

    `schema` is the application schema variant in use (`standard` or `legacy`), and
    `database` the database holding it; both null when the sandbox is not running.
    """

    model_config = _SCHEMA_ALIAS

    running: bool
    folder: str
    profile: str = PROFILE
    schema_name: SchemaName | None = Field(default=None, alias="schema")
    database: str | None = None
    postgres: ServiceStatus
    sqs: ServiceStatus
    main_queue_url: str | None = None
    dlq_url: str | None = None


class UpResult(BaseModel):
    """`dbops sandbox up -o json`.

    `schema` is the application schema variant in use after `up`; `switched_from` is the
    variant in use before, when `--schema` switched (its database is kept), else null.
    """

    model_config = _SCHEMA_ALIAS

    already_running: bool
    schema_name: SchemaName = Field(default=DEFAULT_SCHEMA, alias="schema")
    switched_from: SchemaName | None = None
    started: list[str]
    migrations_applied: list[str]
    profile_written: bool
    profile_path: str
    status: SandboxStatus


class DownResult(BaseModel):
    """`dbops sandbox down -o json`."""

    stopped: list[str]
    not_running: list[str]


# --------------------------------------------------------------------------- folders
def sandbox_dir() -> Path:
    return data_dir() / "sandbox"


def state_path() -> Path:
    return sandbox_dir() / "state.json"


def pgdata_path() -> Path:
    return sandbox_dir() / "pgdata"


def moto_log_path() -> Path:
    return sandbox_dir() / MOTO_LOG


def prepare_environment() -> Path:
    """Create the sandbox folder; point XDG_RUNTIME_DIR at a private folder if unset.

    Must run before pgserver is imported: it reads the runtime folder at import time.
    """
    folder = sandbox_dir()
    private_dir(folder)
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = folder / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    return folder


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialise up/down/seed across processes (best effort where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_state() -> SandboxState | None:
    path = state_path()
    if not path.exists():
        return None
    try:
        return SandboxState.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def _save_state(state: SandboxState) -> None:
    path = state_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n")
    tmp.replace(path)


# --------------------------------------------------------------------------- profile
def profile_settings(state: SandboxState) -> dict[str, Any]:
    return {
        "database_url": state.database_url,
        "sqs_queue_url": state.main_queue_url,
        "sqs_dlq_url": state.dlq_url,
        "aws_endpoint_url_sqs": state.sqs_endpoint,
        "aws_region": state.region,
        "sandbox": True,
    }


def _ensure_profile(state: SandboxState, *, force: bool) -> bool:
    wanted = profile_settings(state)
    if not force:
        try:
            if profile_values(PROFILE) == wanted:
                return False
        except DbopsError:
            pass
    write_profile(PROFILE, wanted)
    return True


def _migrate(dsn: str, *, schema: SchemaName, only_if_pending: bool) -> list[str]:
    from dbops.adapters.postgres import PostgresStore
    from dbops.services import migrations

    store = PostgresStore(dsn)
    try:
        applied: list[str] = []
        for which in (SCHEMA_MIGRATIONS[schema], "dbops"):
            if only_if_pending and not migrations.pending(store=store, which=which):
                continue
            applied += migrations.migrate(store=store, which=which).applied
        return applied
    finally:
        store.close()


# --------------------------------------------------------------------------- commands
def up(schema: SchemaName | None = None) -> UpResult:
    """Start whatever is not running; create queues, migrate, write the profile.

    `schema` picks the application schema variant (default: the one in use, or standard).
    Naming another variant than the running one switches to it: its own database is
    created and migrated if needed, and state and profile point at it; the other
    variant's database is left as it is.
    """
    folder = prepare_environment()
    with _locked(folder):
        state = load_state()
        pg_info = _postmaster(pgdata_path())
        pg_running = pg_info is not None and _pg_answers(_dsn(pg_info))
        moto_running = _moto_running(state)
        running = pg_running and moto_running and pg_info is not None
        if running and state is not None and pg_info is not None and state.database_url:
            return _up_already_running(state, pg_info, schema)
        return _up_start(folder, state, schema, pg_running=pg_running, moto_running=moto_running)


def _up_already_running(
    state: SandboxState, pg_info: _Postmaster, schema: SchemaName | None
) -> UpResult:
    """Both servers run: switch the schema variant if asked, apply pending migrations."""
    from dbops.settings import config_path

    current = state.schema_name
    wanted = schema or current
    if wanted != current:
        state = state.model_copy(
            update={"schema_name": wanted, "database_url": _schema_dsn(pg_info, wanted)}
        )
    assert state.database_url
    applied = _migrate(state.database_url, schema=wanted, only_if_pending=True)
    if wanted != current:
        _save_state(state)
    written = _ensure_profile(state, force=False)
    return UpResult(
        already_running=True,
        schema=wanted,
        switched_from=current if wanted != current else None,
        started=[],
        migrations_applied=applied,
        profile_written=written,
        profile_path=str(config_path()),
        status=status(),
    )


def _up_start(
    folder: Path,
    state: SandboxState | None,
    schema: SchemaName | None,
    *,
    pg_running: bool,
    moto_running: bool,
) -> UpResult:
    """Start what is not running, create the queues, migrate, record state and profile."""
    from dbops.settings import config_path

    wanted = schema or (state.schema_name if state is not None else DEFAULT_SCHEMA)
    started: list[str] = []
    pgdata = pgdata_path()
    pg_pid, _ = _start_postgres(pgdata)
    if not pg_running:
        started.append("postgres")
    info = _postmaster(pgdata.expanduser().resolve())
    if info is None:
        raise RemoteError("embedded PostgreSQL did not report a running server")
    dsn = _schema_dsn(info, wanted)

    if moto_running and state is not None and state.moto_pid and state.moto_port:
        moto_pid, port = state.moto_pid, state.moto_port
    else:
        if state is not None and state.moto_pid and _is_moto(state.moto_pid, state.moto_port):
            _terminate(state.moto_pid)  # alive but not answering: replace it
        moto_pid, port = _start_moto(folder, state.moto_port if state else None)
        started.append("sqs")
    endpoint = _endpoint(port)
    try:
        main_url, dlq_url = _create_queues(endpoint)
        applied = _migrate(dsn, schema=wanted, only_if_pending=False)
    except BaseException:
        # Not recorded in state.json yet, so `down` could not find it: stop it now.
        # (Postgres is found again through its postmaster.pid.)
        if "sqs" in started:
            _terminate(moto_pid)
        raise
    new_state = SandboxState(
        pgdata=str(pgdata),
        schema=wanted,
        database_url=dsn,
        postgres_pid=pg_pid,
        moto_pid=moto_pid,
        moto_port=port,
        sqs_endpoint=endpoint,
        main_queue_url=main_url,
        dlq_url=dlq_url,
    )
    _save_state(new_state)
    return UpResult(
        already_running=False,
        schema=wanted,
        started=started,
        migrations_applied=applied,
        profile_written=_ensure_profile(new_state, force=True),
        profile_path=str(config_path()),
        status=status(),
    )


def down() -> DownResult:
    """Stop both servers (data in pgdata is kept; moto's queues are in memory only)."""
    folder = prepare_environment()
    stopped: list[str] = []
    not_running: list[str] = []
    with _locked(folder):
        state = load_state()
        pgdata = pgdata_path()
        info = _postmaster(pgdata)
        if info is not None:
            _stop_postgres(pgdata, info)
            stopped.append(f"postgres (pid {info.pid}, data {pgdata})")
        else:
            not_running.append("postgres")
        if state is not None and state.moto_pid and _is_moto(state.moto_pid, state.moto_port):
            if not _terminate(state.moto_pid):
                raise RemoteError(
                    f"SQS server (moto pid {state.moto_pid}) did not stop",
                    hint=f"stop it by hand: kill -9 {state.moto_pid}",
                )
            stopped.append(f"sqs (moto pid {state.moto_pid}, port {state.moto_port})")
        else:
            not_running.append("sqs")
        if state is not None:
            state_path().unlink(missing_ok=True)
    return DownResult(stopped=stopped, not_running=not_running)


def status() -> SandboxStatus:
    folder = sandbox_dir()
    state = load_state()
    info = _postmaster(pgdata_path())
    if info is not None:
        answers = _pg_answers(_dsn(info))
        where = f"socket {info.socket_dir}" if info.socket_dir else f"port {info.port}"
        pg = ServiceStatus(
            name="postgres",
            running=answers,
            pid=info.pid,
            detail=where if answers else f"process {info.pid} runs but does not answer",
        )
    else:
        pg = ServiceStatus(name="postgres", running=False, detail="not running")
    if state is not None and _is_moto(state.moto_pid, state.moto_port):
        assert state.sqs_endpoint is not None
        answers = _http_answers(state.sqs_endpoint)
        sqs = ServiceStatus(
            name="sqs",
            running=answers,
            pid=state.moto_pid,
            detail=state.sqs_endpoint if answers else "process runs but does not answer",
        )
    else:
        sqs = ServiceStatus(name="sqs", running=False, detail="not running")
    running = pg.running and sqs.running
    return SandboxStatus(
        running=running,
        folder=str(folder),
        schema=state.schema_name if state and running else None,
        database=SCHEMA_DATABASES[state.schema_name] if state and running else None,
        postgres=pg,
        sqs=sqs,
        main_queue_url=state.main_queue_url if state and running else None,
        dlq_url=state.dlq_url if state and running else None,
    )


def require_running(schema: SchemaName | None = None) -> SandboxState:
    """The state of a running sandbox, or a ConfigError saying how to start it.

    With `schema`, refuse (RefusedError) when the sandbox runs another schema variant.
    """
    state = load_state()
    info = _postmaster(pgdata_path())
    if state is None or info is None or not _moto_running(state) or not state.database_url:
        hint = f"run `dbops sandbox up --schema {schema}`" if schema else "run `dbops sandbox up`"
        raise ConfigError("the sandbox is not running", hint=hint)
    if schema is not None and schema != state.schema_name:
        raise RefusedError(
            f"the sandbox runs the {state.schema_name} schema, not {schema}",
            hint=f"switch first with `dbops sandbox up --schema {schema}` "
            f"(the {state.schema_name} schema's data is kept)",
        )
    return state


def env_vars(state: SandboxState) -> dict[str, str]:
    """Shell environment for the sandbox (its DSN has no password; the keys are dummies)."""
    values = {
        "DBOPS_PROFILE": PROFILE,
        "DATABASE_URL": state.database_url or "",
        "SQS_QUEUE_URL": state.main_queue_url or "",
        "SQS_DLQ_URL": state.dlq_url or "",
        "AWS_ENDPOINT_URL_SQS": state.sqs_endpoint or "",
        "AWS_REGION": state.region,
        # boto3 and aws-cli v1 read only AWS_DEFAULT_REGION (NoRegionError without it).
        "AWS_DEFAULT_REGION": state.region,
        # moto accepts any credentials; these let boto3/aws-cli talk to it.
        "AWS_ACCESS_KEY_ID": "sandbox",
        "AWS_SECRET_ACCESS_KEY": "sandbox",
    }
    return values


def sandbox_settings(state: SandboxState) -> Settings:
    """Settings for the sandbox alone, whatever DATABASE_URL etc. say in the environment."""
    return Settings.model_validate({**profile_settings(state), "profile": PROFILE})


@dataclass
class Connection:
    state: SandboxState
    store: PostgresStore
    queues: SqsQueues


@contextlib.contextmanager
def connected(schema: SchemaName | None = None) -> Iterator[Connection]:
    """Adapters bound to the running sandbox (never to the configured environment).

    With `schema`, refuse when the sandbox runs another schema variant.
    """
    from dbops.adapters.postgres import PostgresStore

    state = require_running(schema)
    assert state.database_url and state.sqs_endpoint
    store = PostgresStore(state.database_url, application_name="dbops-sandbox")
    try:
        yield Connection(state=state, store=store, queues=_queues_client(state.sqs_endpoint))
    finally:
        store.close()


@contextlib.contextmanager
def locked() -> Iterator[None]:
    with _locked(prepare_environment()):
        yield
