"""Direct Postgres transport (psycopg 3).

No server-side prepared statements (`prepare_threshold=None`) so that Supabase's
transaction-mode pooler (port 6543) works as well as a direct connection. The statement
timeout is a startup option on a direct connection; through a pooler (port 6543, or one
that refuses the `options` startup parameter) it is set per call with `SET LOCAL`
semantics instead, since session settings do not survive transaction pooling.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from dbops.errors import (
    ConfigError,
    DbopsError,
    NotFoundError,
    PermissionDeniedError,
    RemoteError,
    UsageError,
)
from dbops.redaction import (
    dsn_secrets,
    looks_unencoded,
    redact_urls,
    scrub_fragments,
    strip_password,
)

_FUNCTION_NAME = re.compile(r"dbops_[a-z0-9_]+")


def _secrets(dsn: str) -> list[str]:
    """What `dsn` may carry as a password: however it is written, and as libpq reads it."""
    found = dsn_secrets(dsn)
    try:
        parsed = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        parsed = None
    if parsed:
        found.append(str(parsed))
    return found


def describe_target(dsn: str) -> str:
    """host:port/dbname, without user or password, for error messages.

    The password (URL userinfo up to the last `@`, `?password=`, key=value `password=`) is
    removed before the DSN is parsed, so a password with an unencoded `@ / : ? #` or spaces
    never turns into the "host" or "dbname" shown.
    """
    try:
        info = psycopg.conninfo.conninfo_to_dict(strip_password(dsn))
    except psycopg.Error:
        return "the database"
    host = str(info.get("host") or "localhost")
    if host.startswith("/"):
        host = "local socket"
    port = info.get("port") or 5432
    target = f"{host}:{port}/{info.get('dbname') or ''}".rstrip("/")
    return scrub_fragments(target, _secrets(dsn))


def _adapt(value: Any, declared: str | None = None) -> Any:
    """dict/list -> jsonb, unless the function declares an array argument for a list."""
    if declared is not None and declared.endswith("[]") and isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, dict | list | tuple):
        return Jsonb(list(value) if isinstance(value, tuple) else value)
    return value


def _scrub(text: str, dsn: str) -> str:
    """One line of a libpq/psycopg message with the DSN and every part of its password
    removed (libpq quotes pieces of a DSN it mis-split: `failed to resolve host 'cret'`)."""
    line = " ".join(str(text).split())
    if dsn.strip():
        line = line.replace(dsn.strip(), "<DATABASE_URL>")
    # libpq quotes the part of a connection string it choked on: drop quoted URLs.
    line = re.sub(r'"[^"]*(?:@|//|password)[^"]*"', '"<redacted>"', line)
    return scrub_fragments(redact_urls(line), _secrets(dsn))


_ENCODE_HINT = (
    "percent-encode @ : / ? # % & and spaces in the password (%40 %3A %2F %3F %23 %25 %26 %20)"
)


# Input arguments of the public functions called `name`, per overload.
_SIGNATURES = """
select
    coalesce(p.proargnames, '{}'::text[]) as names,
    coalesce(p.proargmodes::text[], '{}'::text[]) as modes,
    array(
        select format_type(a.t, null)
        from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality a(t, i)
        order by a.i
    ) as types,
    p.pronargdefaults as n_defaults
from pg_proc p
where p.pronamespace = 'public'::regnamespace and p.proname = %s
"""


def translate_error(exc: Exception, target: str, *, dsn: str | None = None) -> Exception:
    """Map a psycopg exception to a one-line DbopsError (no DSN, no password).

    With `dsn`, the message and hint are scrubbed of every part of its password as well.
    """
    error = _translate(exc, target)
    if dsn is not None and isinstance(error, DbopsError):
        error.message = _scrub(error.message, dsn)
        if error.hint:
            error.hint = scrub_fragments(error.hint, _secrets(dsn))
        error.args = (error.message,)
    return error


def _translate(exc: Exception, target: str) -> Exception:
    if isinstance(exc, psycopg.errors.RaiseException):
        text = (exc.diag.message_primary or "").strip()
        code = exc.diag.sqlstate or ""
        # Our SQL functions raise with stable SQLSTATEs: P0002 not found, 22023 bad input.
        if code == "P0002" or text.startswith("not found"):
            return NotFoundError(text)
        return UsageError(text)
    if isinstance(exc, psycopg.Error) and exc.sqlstate == "25000":
        # dbops_rate_limit_hit refuses to run above READ COMMITTED (docs/rate-limiting.md).
        text = " ".join((exc.diag.message_primary or "invalid transaction state").split())
        return ConfigError(
            text, hint="check default_transaction_isolation (PGOPTIONS, the DSN, role defaults)"
        )
    if isinstance(exc, psycopg.errors.NoDataFound):
        return NotFoundError((exc.diag.message_primary or "not found").strip())
    if isinstance(exc, psycopg.DataError):  # SQLSTATE class 22: bad input (22023, 22P02...)
        return UsageError((exc.diag.message_primary or str(exc)).strip())
    if isinstance(exc, psycopg.errors.UndefinedFunction | psycopg.errors.UndefinedTable):
        return ConfigError(
            f"database {target} lacks dbops objects ({(exc.diag.message_primary or '').strip()})",
            hint="run `dbops db migrate`",
        )
    if isinstance(exc, psycopg.errors.UndefinedColumn):
        return ConfigError(
            f"database {target}: the application schema lacks a column dbops needs "
            f"({(exc.diag.message_primary or '').strip()})",
            hint="`dbops db check` lists what dbops expects",
        )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):  # a grant: exit 3, not 5
        return PermissionDeniedError.from_database(exc.diag.message_primary or "", target)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return RemoteError(
            f"database {target}: {(exc.diag.message_primary or 'statement canceled').strip()}",
            hint="raise DBOPS_STATEMENT_TIMEOUT_MS or narrow the request",
        )
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = redact_urls(first)
        return RemoteError(
            f"database {target} unreachable: {first}",
            hint="check DATABASE_URL and that the server is up",
        )
    if isinstance(exc, psycopg.Error):
        primary = getattr(getattr(exc, "diag", None), "message_primary", None) or type(exc).__name__
        return RemoteError(f"database {target} error: {' '.join(primary.split())}")
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
        timeout_per_call: bool | None = None,
    ) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._application_name = application_name
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self.target = describe_target(dsn)
        # None = decide: Supabase's transaction pooler listens on 6543 and ignores options.
        self._timeout_per_call = (
            self.target.split("/")[0].endswith(":6543")
            if timeout_per_call is None
            else timeout_per_call
        )

    @property
    def holds_sessions(self) -> bool:
        """True when our session is ours alone (not shared through a transaction pooler),
        so session-level advisory locks mean what they say."""
        return not self._timeout_per_call

    def _error(self, exc: Exception) -> Exception:
        error = translate_error(exc, self.target, dsn=self._dsn)
        unreachable = isinstance(error, RemoteError) and "unreachable" in error.message
        if unreachable and looks_unencoded(self._dsn):
            assert isinstance(error, RemoteError)
            hint = f"{error.hint}; {_ENCODE_HINT}" if error.hint else _ENCODE_HINT
            error.hint = scrub_fragments(hint, _secrets(self._dsn))
        return error

    # -- connection -------------------------------------------------------------
    def _connect(self, *, with_options: bool) -> psycopg.Connection[dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        if with_options:
            given = psycopg.conninfo.conninfo_to_dict(self._dsn).get("options")
            mine = f"-c statement_timeout={self._statement_timeout_ms}"
            kwargs["options"] = f"{given} {mine}" if given else mine
        return psycopg.connect(
            self._dsn,
            autocommit=True,
            row_factory=dict_row,
            prepare_threshold=None,
            connect_timeout=self._connect_timeout,
            application_name=self._application_name,
            **kwargs,
        )

    def connection(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            try:
                try:
                    self._conn = self._connect(with_options=not self._timeout_per_call)
                except psycopg.OperationalError as exc:
                    if "unsupported startup parameter" not in str(exc):
                        raise
                    # PgBouncer refuses `options`: set the timeout per call instead.
                    self._timeout_per_call = True
                    self._conn = self._connect(with_options=False)
            except (psycopg.ProgrammingError, ValueError) as exc:  # libpq could not parse it
                reason = _scrub(str(exc), self._dsn)
                raise ConfigError(
                    f"DATABASE_URL is not a valid connection string ({reason})",
                    hint=self._dsn_hint(),
                ) from None
            except psycopg.OperationalError as exc:
                reason = _scrub(str(exc), self._dsn).removeprefix("connection is bad: ")
                if reason.startswith("invalid "):  # libpq refused an option's value
                    raise ConfigError(
                        f"DATABASE_URL is not a valid connection string ({reason})",
                        hint=self._dsn_hint(),
                    ) from None
                raise self._error(exc) from None
            except psycopg.Error as exc:
                raise self._error(exc) from None
        return self._conn

    def _dsn_hint(self) -> str:
        hint = "use postgresql://user:password@host:port/dbname"
        if looks_unencoded(self._dsn):
            hint = f"{hint}; {_ENCODE_HINT}"
        return scrub_fragments(hint, _secrets(self._dsn))

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    # -- Store -----------------------------------------------------------------
    def call(self, function: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        if not _FUNCTION_NAME.fullmatch(function):
            raise ValueError(f"not a dbops function: {function}")
        params = dict(params or {})
        try:
            try:
                return self._call(function, params, None)
            except psycopg.errors.UndefinedFunction:
                # No overload took the arguments as typed (a list for an int[] argument, an
                # int too big for int2...): bind them by the declared types, as PostgREST does.
                declared = self._declared_types(function, params)
                if declared is None:
                    raise
                return self._call(function, params, declared)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _call(
        self, function: str, params: dict[str, Any], declared: dict[str, str] | None
    ) -> list[dict[str, Any]]:
        def placeholder(name: str) -> sql.Composable:
            if declared is None:
                return sql.Placeholder(name)
            # The type name comes from the catalog (format_type), never from the caller.
            return sql.SQL("{}::{}").format(sql.Placeholder(name), sql.SQL(declared[name]))

        args = sql.SQL(", ").join(
            sql.SQL("{} => {}").format(sql.Identifier(name), placeholder(name)) for name in params
        )
        query = sql.SQL("select * from {}({})").format(sql.Identifier(function), args)
        values = {k: _adapt(v, declared[k] if declared else None) for k, v in params.items()}
        conn = self.connection()
        if self._timeout_per_call:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "select set_config('statement_timeout', %s, true)",
                    [str(self._statement_timeout_ms)],
                )
                cur.execute(query, values)
                rows = cur.fetchall() if cur.description else []
        else:
            with conn.cursor() as cur:
                cur.execute(query, values)
                rows = cur.fetchall() if cur.description else []
        return [dict(r) for r in rows]

    def _declared_types(self, function: str, params: dict[str, Any]) -> dict[str, str] | None:
        """name -> type of the one public overload these named arguments fit, else None."""
        with self.connection().cursor() as cur:
            cur.execute(_SIGNATURES, [function])
            overloads = cur.fetchall()
        fits = []
        for row in overloads:
            modes = row["modes"] or ["i"] * len(row["types"])
            inputs = [
                (name, type_)
                for name, type_, mode in zip(row["names"], row["types"], modes, strict=False)
                if mode in ("i", "b", "v")
            ]
            names = {name for name, _ in inputs}
            required = {name for name, _ in inputs[: len(inputs) - int(row["n_defaults"] or 0)]}
            if set(params) <= names and required <= set(params):
                fits.append({name: type_ for name, type_ in inputs if name in params})
        return fits[0] if len(fits) == 1 else None

    def ping(self) -> float:
        start = time.perf_counter()
        try:
            with self.connection().cursor() as cur:
                cur.execute("select 1")
        except psycopg.Error as exc:
            raise self._error(exc) from None
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
            raise self._error(exc) from None

    def probe(self, script: str, queries: Sequence[str]) -> list[list[dict[str, Any]]]:
        conn = self.connection()
        results: list[list[dict[str, Any]]] = []
        try:
            with conn.cursor() as cur:
                cur.execute("begin")
                try:
                    cur.execute(script.encode())
                    for text in queries:
                        cur.execute(text.encode())
                        results.append([dict(r) for r in cur.fetchall()] if cur.description else [])
                finally:
                    cur.execute("rollback")
        except psycopg.Error as exc:
            raise self._error(exc) from None
        return results

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
            raise self._error(exc) from None

    def query(self, text: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Raw, parameterised SQL: for the sandbox, tests and benchmarks only."""
        try:
            with self.connection().cursor() as cur:
                cur.execute(text.encode(), {k: _adapt(v) for k, v in (params or {}).items()})
                return [dict(r) for r in cur.fetchall()] if cur.description else []
        except psycopg.Error as exc:
            raise self._error(exc) from None


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
