"""Direct Postgres transport (psycopg 3).

No server-side prepared statements (`prepare_threshold=None`) so that Supabase's
transaction-mode pooler (port 6543) works as well as a direct connection.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from dbops.errors import ConfigError, NotFoundError, RemoteError, UsageError

_FUNCTION_NAME = re.compile(r"dbops_[a-z0-9_]+")


def describe_target(dsn: str) -> str:
    """host:port/dbname, without user or password, for error messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the database"
    host = str(info.get("host") or "localhost")
    if host.startswith("/"):
        host = "local socket"
    port = info.get("port") or 5432
    return f"{host}:{port}/{info.get('dbname') or ''}".rstrip("/")


def _adapt(value: Any) -> Any:
    if isinstance(value, dict | list):
        return Jsonb(value)
    return value


def translate_error(exc: Exception, target: str) -> Exception:
    """Map a psycopg exception to a one-line DbopsError (no DSN, no password)."""
    if isinstance(exc, psycopg.errors.RaiseException):
        text = (exc.diag.message_primary or "").strip()
        code = exc.diag.sqlstate or ""
        # Our SQL functions raise with stable SQLSTATEs: P0002 not found, 22023 bad input.
        if code == "P0002" or text.startswith("not found"):
            return NotFoundError(text)
        return UsageError(text)
    if isinstance(exc, psycopg.errors.NoDataFound):
        return NotFoundError((exc.diag.message_primary or "not found").strip())
    if isinstance(exc, psycopg.errors.InvalidParameterValue | psycopg.errors.DataException):
        return UsageError((exc.diag.message_primary or str(exc)).strip())
    if isinstance(exc, psycopg.errors.UndefinedFunction | psycopg.errors.UndefinedTable):
        return ConfigError(
            f"database {target} lacks dbops objects ({(exc.diag.message_primary or '').strip()})",
            hint="run `dbops db migrate`",
        )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return RemoteError(
            f"permission denied on {target}: {(exc.diag.message_primary or '').strip()}"
        )
    if isinstance(exc, psycopg.OperationalError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = re.sub(r"password=\S+", "password=****", first)
        return RemoteError(
            f"database {target} unreachable: {first}",
            hint="check DATABASE_URL and that the server is up",
        )
    if isinstance(exc, psycopg.Error):
        primary = getattr(getattr(exc, "diag", None), "message_primary", None) or type(exc).__name__
        return RemoteError(f"database {target} error: {primary.strip()}")
    return exc


class PostgresStore:
    transport = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: int = 5,
        statement_timeout_ms: int = 30000,
        application_name: str = "dbops",
    ) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._application_name = application_name
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self.target = describe_target(dsn)

    # -- connection -------------------------------------------------------------
    def connection(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(
                    self._dsn,
                    autocommit=True,
                    row_factory=dict_row,
                    prepare_threshold=None,
                    connect_timeout=self._connect_timeout,
                    application_name=self._application_name,
                    options=f"-c statement_timeout={self._statement_timeout_ms}",
                )
            except psycopg.Error as exc:
                raise translate_error(exc, self.target) from None
            except ValueError as exc:  # malformed DSN
                raise ConfigError(f"DATABASE_URL is not a valid connection string: {exc}") from None
        return self._conn

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    # -- Store -----------------------------------------------------------------
    def call(self, function: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        if not _FUNCTION_NAME.fullmatch(function):
            raise ValueError(f"not a dbops function: {function}")
        params = dict(params or {})
        args = sql.SQL(", ").join(
            sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name))
            for name in params
        )
        query = sql.SQL("select * from {}({})").format(sql.Identifier(function), args)
        values = {k: _adapt(v) for k, v in params.items()}
        try:
            with self.connection().cursor() as cur:
                cur.execute(query, values)
                rows = cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise translate_error(exc, self.target) from None
        return [dict(r) for r in rows]

    def ping(self) -> float:
        start = time.perf_counter()
        try:
            with self.connection().cursor() as cur:
                cur.execute("select 1")
        except psycopg.Error as exc:
            raise translate_error(exc, self.target) from None
        return (time.perf_counter() - start) * 1000

    # -- SqlStore --------------------------------------------------------------
    def execute_script(self, script: str, *, transactional: bool = True) -> None:
        conn = self.connection()
        try:
            if transactional:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute("select pg_advisory_xact_lock(hashtext('dbops_migrate'))")
                    cur.execute(script.encode())
            else:
                with conn.cursor() as cur:
                    for statement in _split_statements(script):
                        cur.execute(statement.encode())
        except psycopg.Error as exc:
            raise translate_error(exc, self.target) from None

    def applied_migrations(self) -> dict[str, str]:
        try:
            with self.connection().cursor() as cur:
                cur.execute("select to_regclass('public.dbops_schema_migrations') as t")
                row = cur.fetchone()
                if not row or row["t"] is None:
                    return {}
                cur.execute("select version, checksum from public.dbops_schema_migrations")
                return {r["version"]: r["checksum"] for r in cur.fetchall()}
        except psycopg.Error as exc:
            raise translate_error(exc, self.target) from None

    def query(self, text: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Raw, parameterised SQL: for the sandbox, tests and benchmarks only."""
        try:
            with self.connection().cursor() as cur:
                cur.execute(text.encode(), {k: _adapt(v) for k, v in (params or {}).items()})
                return [dict(r) for r in cur.fetchall()] if cur.description else []
        except psycopg.Error as exc:
            raise translate_error(exc, self.target) from None


def _split_statements(script: str) -> list[str]:
    """Split a no-transaction script on lines that end with `;` (no $$ bodies there)."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if line.strip().startswith("--") and not current:
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current))
            current = []
    if "".join(current).strip():
        statements.append("\n".join(current))
    return statements


def to_jsonable(value: Any) -> Any:
    """Make a row value JSON-friendly the way PostgREST would."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return json.loads(json.dumps(value, default=str))
