"""A small, test-only HTTP endpoint that follows PostgREST's RPC convention.

It lets the Supabase transport be tested end to end through supabase-py over real HTTP
(architecture.md section 6) without a Supabase project:

- `POST /<project>/rest/v1/rpc/<fn>` with a JSON object of named arguments (and
  `GET` with the arguments in the query string, as `rpc(..., get=True)` sends them).
  `<project>` is a token handed out by `PostgrestStub.project(dsn)`: it selects the
  Postgres database the call runs in, so every test gets its own (thread-safe, no
  shared mutable "current database").
- Both the `apikey` header and `Authorization: Bearer <key>` must equal the service
  key. A wrong or missing `apikey` gets the gateway's 401 (`{"message": "Invalid API
  key", ...}`, no code, as Supabase's API gateway answers); a wrong bearer token gets
  PostgREST's 401 `PGRST301`.
- Like PostgREST, arguments are bound by the function's declared types from the
  catalog (its "schema cache"): the call is
  `select ... from public.<fn>(a => _args.a, ...)` over
  `json_to_record(<body>::json) as _args(a <type>, ...)`, so int, bigint, text, uuid,
  timestamptz, jsonb, boolean, int[] and text[] arguments all arrive as Postgres
  would coerce them from JSON, and the body is one bound parameter. Omitted arguments
  fall back to their defaults. The function name must match `^dbops_[a-z0-9_]+$` and
  argument names must be the function's own, so nothing from the request reaches
  SQL text except catalog names.
- Results are JSON built by Postgres (`json_agg`): a set-returning function gives an
  array of rows, a non-set composite gives one object, a scalar gives the bare value,
  `void` gives 204. Timestamps are ISO 8601 (session time zone UTC), uuids strings.
- Errors are PostgREST-shaped: `{"code", "message", "details", "hint"}` with
  PostgREST's status for the SQLSTATE (400 by default, 403 for 42501, 409 for unique
  violations, 500 for P0xxx other than P0001, ...); an unknown function is 404
  `PGRST202`; an ambiguous overload 300 `PGRST203`; a bad schema profile 406
  `PGRST106`; invalid JSON 400 `PGRST102`; a database that cannot be reached 503
  `PGRST000`.

Tests can also queue a canned raw response (`inject`) to see how the client copes
with, say, a proxy's 502 HTML page; and every request is recorded (`requests`).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg
from psycopg import sql

FUNCTION_NAME = re.compile(r"^dbops_[a-z0-9_]+$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH = re.compile(r"^/(?P<project>[A-Za-z0-9_-]+)/rest/v1/rpc/(?P<fn>[^/?]+)/?$")

_SIGNATURES = """
select
    p.oid::int as oid,
    p.proretset as retset,
    p.prorettype = 'void'::regtype as returns_void,
    rt.typtype = 'c' as returns_composite,
    p.pronargdefaults as n_defaults,
    array(
        select json_build_object(
            'name', coalesce(p.proargnames[a.i], ''),
            'type', format_type(a.t, null),
            'mode', coalesce(p.proargmodes[a.i]::text, 'i')
        )
        from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality a(t, i)
        order by a.i
    ) as args
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
join pg_type rt on rt.oid = p.prorettype
where n.nspname = 'public' and p.proname = %s and p.prokind = 'f'
"""


class StubError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.status = status
        self.body = body


def _pgrst(
    status: int, code: str | None, message: str, details: Any = None, hint: Any = None
) -> StubError:
    return StubError(status, {"code": code, "details": details, "hint": hint, "message": message})


def status_for_sqlstate(code: str) -> int:
    """PostgREST's HTTP status for a Postgres error (the cases that matter here)."""
    exact = {
        "23503": 409,
        "23505": 409,
        "25006": 405,
        "53400": 500,
        "57P01": 503,
        "P0001": 400,
        "42883": 404,
        "42P01": 404,
        "42P17": 500,
        "42501": 403,
    }
    if code in exact:
        return exact[code]
    if code.startswith("PT") and code[2:].isdigit():
        return int(code[2:])
    prefixes = {
        "08": 503,
        "09": 500,
        "0L": 403,
        "0P": 403,
        "25": 500,
        "28": 403,
        "2D": 500,
        "38": 500,
        "39": 500,
        "3B": 500,
        "40": 500,
        "53": 503,
        "54": 500,
        "55": 500,
        "57": 500,
        "58": 500,
        "F0": 500,
        "HV": 500,
        "P0": 500,
        "XX": 500,
    }
    return prefixes.get(code[:2], 400)


@dataclass
class Signature:
    oid: int
    retset: bool
    returns_void: bool
    returns_row: bool
    inputs: list[tuple[str, str]]  # (name, type) of IN/INOUT/VARIADIC args, in order
    required: set[str]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Signature:
        inputs = [(a["name"], a["type"]) for a in row["args"] if a["mode"] in ("i", "b", "v")]
        n_required = len(inputs) - int(row["n_defaults"] or 0)
        return cls(
            oid=row["oid"],
            retset=row["retset"],
            returns_void=row["returns_void"],
            # Named outputs (OUT/INOUT/TABLE columns) or a composite: rows as objects.
            returns_row=row["returns_composite"]
            or any(a["mode"] in ("o", "b", "t") for a in row["args"]),
            inputs=inputs,
            required={name for name, _ in inputs[:n_required]},
        )

    @property
    def single_unnamed_json(self) -> bool:
        return (
            len(self.inputs) == 1
            and self.inputs[0][0] == ""
            and self.inputs[0][1] in ("json", "jsonb")
        )


@dataclass
class Project:
    token: str
    dsn: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    injected: deque[tuple[int, bytes, str]] = field(default_factory=deque)


class PostgrestStub:
    """Start with `start()`; `project(dsn)` gives a Supabase URL bound to one database."""

    def __init__(self, service_key: str, *, host: str = "127.0.0.1") -> None:
        self.service_key = service_key
        self._host = host
        self._lock = threading.Lock()
        self._projects: dict[str, Project] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> PostgrestStub:
        handler = type("Handler", (_Handler,), {"stub": self})
        server = ThreadingHTTPServer((self._host, 0), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="postgrest-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        """The server root (not usable as SUPABASE_URL by itself: see `project`)."""
        assert self._server is not None, "stub not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- projects --------------------------------------------------------------
    def register(self, dsn: str) -> Project:
        project = Project(token=f"p{secrets.token_hex(6)}", dsn=dsn)
        with self._lock:
            self._projects[project.token] = project
        return project

    def unregister(self, token: str) -> None:
        with self._lock:
            self._projects.pop(token, None)

    def project_url(self, project: Project) -> str:
        return f"{self.url}/{project.token}"

    @contextmanager
    def project(self, dsn: str) -> Iterator[str]:
        """A SUPABASE_URL whose RPC calls run in the database `dsn`."""
        project = self.register(dsn)
        try:
            yield self.project_url(project)
        finally:
            self.unregister(project.token)

    def lookup(self, token: str) -> Project | None:
        with self._lock:
            return self._projects.get(token)

    def lookup_url(self, url: str) -> Project | None:
        return self.lookup(urlsplit(url).path.strip("/").split("/")[0])

    def inject(self, url: str, status: int, body: str, content_type: str = "text/html") -> None:
        """Answer the next request to this project with a canned response."""
        project = self.lookup_url(url)
        assert project is not None, f"unknown stub project: {url}"
        with self._lock:
            project.injected.append((status, body.encode(), content_type))

    def requests(self, url: str) -> list[dict[str, Any]]:
        project = self.lookup_url(url)
        assert project is not None, f"unknown stub project: {url}"
        with self._lock:
            return list(project.requests)

    # -- the RPC itself ----------------------------------------------------------
    def execute(
        self, project: Project, function: str, args: dict[str, Any] | Any, *, read_only: bool
    ) -> tuple[int, bytes]:
        if not FUNCTION_NAME.match(function):
            raise _not_found(function, args)
        try:
            conn = psycopg.connect(project.dsn, connect_timeout=5)
        except psycopg.Error:
            raise _pgrst(
                503,
                "PGRST000",
                "Could not connect with the database due to an incorrect db-uri or due to "
                "the PostgreSQL service not running.",
            ) from None
        try:
            with conn, conn.cursor() as cur:
                cur.execute(_SIGNATURES, [function])
                cols = [d.name for d in cur.description or []]
                signatures = [Signature.from_row(dict(zip(cols, r, strict=True))) for r in cur]
                signature, body = _choose(function, signatures, args)
                query, params = _build_query(function, signature, body)
                if read_only:
                    cur.execute("set transaction read only")
                cur.execute("set local time zone 'UTC'")
                cur.execute(query, params)
                row = cur.fetchone()
                payload = row[0] if row else None
        except psycopg.Error as exc:
            diag = exc.diag
            code = diag.sqlstate or "XX000"
            raise _pgrst(
                status_for_sqlstate(code),
                code,
                diag.message_primary or type(exc).__name__,
                diag.message_detail,
                diag.message_hint,
            ) from None
        finally:
            conn.close()
        if signature.returns_void:
            return 204, b""
        if payload is None:
            payload = "null"
        return 200, payload.encode()


def _not_found(function: str, args: Any) -> StubError:
    names = ", ".join(sorted(args)) if isinstance(args, dict) else ""
    with_params = f"with parameters {names}" if names else "without parameters"
    return _pgrst(
        404,
        "PGRST202",
        f"Could not find the function public.{function}({names}) in the schema cache",
        f"Searched for the function public.{function} {with_params} or with a single "
        "unnamed json/jsonb parameter, but no matches were found in the schema cache.",
        None,
    )


def _choose(function: str, signatures: list[Signature], args: Any) -> tuple[Signature, Any]:
    if not isinstance(args, dict):
        raise _pgrst(400, "PGRST102", "Empty or invalid json")
    for name in args:
        if not IDENTIFIER.match(name):
            raise _not_found(function, args)
    keys = set(args)
    matches = [s for s in signatures if keys <= {n for n, _ in s.inputs} and s.required <= keys]
    if not matches:
        single = [s for s in signatures if s.single_unnamed_json]
        if len(single) == 1:
            return single[0], args
        raise _not_found(function, args)
    if len(matches) > 1:
        exact = [s for s in matches if {n for n, _ in s.inputs} == keys]
        if len(exact) != 1:
            raise _pgrst(
                300,
                "PGRST203",
                "Could not choose the best candidate function between: "
                + ", ".join(
                    f"public.{function}({', '.join(f'{n} => {t}' for n, t in s.inputs)})"
                    for s in matches
                ),
                None,
                "Try renaming the parameters or the function itself in the database so "
                "function overloading can be resolved",
            )
        matches = exact
    return matches[0], args


def _build_query(
    function: str, signature: Signature, args: dict[str, Any]
) -> tuple[sql.Composed, list[Any]]:
    """The SQL for one call, and its parameters (at most one: the JSON body)."""
    fn = sql.SQL("public.{}").format(sql.Identifier(function))
    params: list[Any] = []
    if signature.single_unnamed_json and not (set(args) & {n for n, _ in signature.inputs}):
        items = sql.SQL("{}(%s::{}) as _f").format(fn, sql.SQL(signature.inputs[0][1]))
        params.append(json.dumps(args))
    else:
        # Only the arguments the request names are passed (in declaration order), so the
        # others take their defaults. Names and types come from the catalog.
        passed = [(n, t) for n, t in signature.inputs if n in args]
        if passed:
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in passed
            )
            named = sql.SQL(", ").join(
                sql.SQL("{name} => _args.{name}").format(name=sql.Identifier(n)) for n, _ in passed
            )
            items = sql.SQL(
                "json_to_record(%s::json) as _args({columns}), lateral {fn}({named}) as _f"
            ).format(columns=columns, fn=fn, named=named)
            params.append(json.dumps(args))
        else:
            items = sql.SQL("{}() as _f").format(fn)
    if signature.returns_row:
        # Rows as objects keyed by the output column names (RETURNS TABLE, OUT, composite).
        source = sql.SQL("(select _f.* from {}) as _r").format(items)
        value = sql.SQL("_r")
    else:
        # A scalar (or set of scalars): the bare value, as PostgREST returns it.
        source, value = items, sql.SQL("_f")
    if signature.retset:
        select = sql.SQL("select coalesce(json_agg({}), '[]'::json)::text from {}")
    else:
        select = sql.SQL("select to_json({})::text from {}")
    return select.format(value, source), params


_GATEWAY_401 = {
    "message": "Invalid API key",
    "hint": "Double check your Supabase `anon` or `service_role` API key.",
}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "details": None, "hint": None, "message": message}


class _Handler(BaseHTTPRequestHandler):
    stub: PostgrestStub
    protocol_version = "HTTP/1.1"
    server_version = "postgrest-stub"
    timeout = 30  # idle keep-alive connections end their thread
    wbufsize = -1  # headers and body leave in one write (flushed per request) ...
    disable_nagle_algorithm = True  # ... and without the Nagle/delayed-ACK 40 ms stall

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self._handle(read_only=False)

    def do_GET(self) -> None:
        self._handle(read_only=True)

    def do_PATCH(self) -> None:
        self._send_json(405, _error("PGRST117", "Unsupported HTTP method: PATCH"))

    def _handle(self, *, read_only: bool) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        match = _PATH.match(split.path)
        project = self.stub.lookup(match["project"]) if match else None
        if match is None or project is None:
            self._send_json(404, {"message": "no Route matched with those values"})
            return
        with self.stub._lock:
            project.requests.append(
                {
                    "method": self.command,
                    "path": split.path,
                    "query": split.query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": raw.decode(errors="replace"),
                }
            )
            injected = project.injected.popleft() if project.injected else None
        if injected is not None:
            status, body, content_type = injected
            self._send(status, body, content_type)
            return
        key = self.stub.service_key
        if self.headers.get("apikey") != key:
            self._send_json(401, _GATEWAY_401)
            return
        if self.headers.get("Authorization") != f"Bearer {key}":
            self._send_json(401, _error("PGRST301", "No suitable key or wrong key type"))
            return
        profile = self.headers.get("Accept-Profile" if read_only else "Content-Profile")
        if profile not in (None, "public"):
            self._send_json(
                406, _error("PGRST106", "The schema must be one of the following: public")
            )
            return
        try:
            if read_only:
                args: Any = dict(parse_qsl(split.query, keep_blank_values=True))
            else:
                args = json.loads(raw) if raw.strip() else {}
        except ValueError:
            self._send_json(400, _error("PGRST102", "Empty or invalid json"))
            return
        try:
            status, body = self.stub.execute(project, match["fn"], args, read_only=read_only)
        except StubError as exc:
            self._send_json(exc.status, exc.body)
            return
        self._send(status, body, "application/json; charset=utf-8")

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        if status == 204:
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
