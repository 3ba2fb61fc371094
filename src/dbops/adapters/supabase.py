"""Supabase transport: the same `dbops_*` SQL functions, called through PostgREST `rpc()`.

Errors come back in two shapes: PostgREST's `{"code", "message", "details", "hint"}`
(the SQLSTATE of the failing SQL, or a `PGRSTxxx` code), and the API gateway's
`{"message", "hint"}` without a code (a wrong or missing API key). Both become one-line
`DbopsError`s that never include the key.

Redirects are never followed: PostgREST does not redirect, so a 3xx means SUPABASE_URL
points somewhere else (a proxy, an old domain, an attacker), and following it would send
the `apikey` header (the service-role key) to that other origin (httpx drops
`Authorization` across origins, but not `apikey`). A redirect is an error (exit 5) naming
the host it pointed to; the request to it is never made.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import ssl
import time
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
from postgrest.exceptions import APIError
from supabase import Client, ClientOptions, create_client

from dbops.errors import (
    ConfigError,
    DbopsError,
    NotFoundError,
    PermissionDeniedError,
    RemoteError,
    UsageError,
)
from dbops.redaction import dsn_secrets, scrub_fragments, strip_userinfo

_FUNCTION_NAME = re.compile(r"dbops_[a-z0-9_]+")

# PostgREST / gateway codes that mean "the key was not accepted".
_REFUSED = {"401", "403", "PGRST300", "PGRST301", "PGRST302", "PGRST303"}
# The dbops objects are missing (function, or a table one of them reads).
_MISSING = {"PGRST202", "PGRST205", "42883", "42P01"}
# PostgREST cannot reach its database, or the gateway cannot reach PostgREST.
_UNAVAILABLE = {"PGRST000", "PGRST001", "PGRST002", "502", "503", "504", "520"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)  # PostgREST coerces a JSON string to the numeric/int argument
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _one_line(text: Any, secret: str | list[str] | None) -> str:
    """One line without the key (nor any 4+ character part of it, or of URL credentials)."""
    line = " ".join(str(text or "").split())
    secrets = [secret] if isinstance(secret, str) else list(secret or [])
    for value in secrets:
        if len(value) >= 4:
            line = line.replace(value, "****")
    return scrub_fragments(line, secrets)


class RedirectRefused(Exception):
    """The project answered with a redirect (raised by the response hook, never followed)."""

    def __init__(self, status: int, target: str) -> None:
        super().__init__(f"redirect {status} to {target}")
        self.status = status
        self.target = target


def _refuse_redirects(response: httpx.Response) -> None:
    """httpx response hook: a 3xx with a Location is an error, before anything follows it."""
    location = response.headers.get("location")
    if not (300 <= response.status_code < 400 and location):
        return
    try:
        target = _describe(str(response.request.url.join(location)), default="an invalid URL")
    except (httpx.InvalidURL, ValueError):
        target = "an invalid URL"
    raise RedirectRefused(response.status_code, target)


def translate_error(
    exc: Exception, host: str, *, secret: str | list[str] | None = None
) -> Exception:
    """Map a PostgREST/httpx failure to a one-line DbopsError (never the key)."""
    error = _translate(exc, host, secret=secret)
    if isinstance(error, DbopsError) and secret:
        error.message = _one_line(error.message, secret)
        error.args = (error.message,)
    return error


def _translate(exc: Exception, host: str, *, secret: str | list[str] | None = None) -> Exception:
    if isinstance(exc, APIError):
        code = str(exc.code or "").strip()
        message = _one_line(exc.message, secret) or "request failed"
        if code == "P0002" or message.startswith("not found"):
            return NotFoundError(message)
        if code.startswith("22") or code == "P0001":
            return UsageError(message)
        if code in _MISSING:
            return ConfigError(
                f"Supabase project {host} lacks dbops objects ({message})",
                hint="run `dbops db migrate --print` and paste it into the SQL editor",
            )
        if code == "42703":
            return ConfigError(
                f"Supabase project {host}: the application schema lacks a column dbops needs "
                f"({message})",
                hint="`dbops db check` lists what dbops expects",
            )
        if code == "42501":  # the key's role lacks a grant (or RLS refused a row)
            return PermissionDeniedError.from_database(
                message,
                f"Supabase {host}",
                hint="check SUPABASE_SERVICE_ROLE_KEY is the project's service-role key",
            )
        api_key_problem = not code and "api key" in message.lower()
        if code in _REFUSED or api_key_problem:
            # A rejected or under-privileged key is a credentials problem (exit 3).
            return ConfigError(
                f"Supabase {host} refused the call ({code or message})",
                hint="check SUPABASE_SERVICE_ROLE_KEY is the project's service-role key",
            )
        if code == "57014":
            return RemoteError(f"Supabase {host}: {message}", hint="retry, or narrow the request")
        if code in _UNAVAILABLE or code.startswith("08"):
            return RemoteError(
                f"Supabase {host} unavailable ({code}: {message})",
                hint="check the project's status; retry shortly",
            )
        return RemoteError(f"Supabase {host} error {code}: {message}".replace(" :", ":"))
    if isinstance(exc, RedirectRefused):
        return RemoteError(
            f"Supabase {host} answered {exc.status} redirecting to {exc.target}: dbops does not "
            "follow redirects (the service-role key would be sent along)",
            hint="set SUPABASE_URL to the project's own URL, https://<ref>.supabase.co",
        )
    if isinstance(exc, httpx.TimeoutException):
        return RemoteError(
            f"Supabase {host} did not answer in time ({type(exc).__name__})",
            hint="check SUPABASE_URL and the network; retry",
        )
    if isinstance(exc, httpx.HTTPError):
        return RemoteError(
            f"Supabase {host} unreachable ({type(exc).__name__})", hint="check SUPABASE_URL"
        )
    if isinstance(exc, httpx.InvalidURL):
        return ConfigError("SUPABASE_URL is not a valid URL", hint="e.g. https://<ref>.supabase.co")
    return exc


def _describe(url: str, *, default: str = "the Supabase project") -> str:
    """host[:port] only: no credentials, path or query from the URL. The userinfo (up to
    the last `@`) is removed first, so no part of a password can pass for the host."""
    try:
        parts = urlsplit(strip_userinfo(url.strip()))
        host = parts.hostname or ""
        return f"{host}:{parts.port}" if parts.port else host or default
    except ValueError:
        return default


@functools.cache
def _tls_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    # Loading the CA bundle costs tens of milliseconds; one verified context per process
    # (per SSL_CERT_FILE/SSL_CERT_DIR, which httpx honours) serves every client.
    return httpx.create_ssl_context()


class SupabaseStore:
    transport = "supabase"

    def __init__(self, url: str, key: str, *, timeout: float = 30) -> None:
        self._url = url
        self._key = key
        self._timeout = timeout
        self._http: httpx.Client | None = None
        self._secrets = [key, *dsn_secrets(url)]
        self.target = _describe(url)

    @functools.cached_property
    def client(self) -> Client:
        # Our own httpx client: explicit timeouts (connect fails fast), we close it, and it
        # never follows a redirect (see the module docstring).
        self._http = httpx.Client(
            timeout=httpx.Timeout(self._timeout, connect=min(10.0, self._timeout)),
            follow_redirects=False,
            event_hooks={"response": [_refuse_redirects]},
            verify=_tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")),
        )
        try:
            return create_client(
                self._url,
                self._key,
                options=ClientOptions(
                    auto_refresh_token=False, persist_session=False, httpx_client=self._http
                ),
            )
        except Exception as exc:
            self._http.close()
            self._http = None
            reason = _one_line(exc, self._secrets) or type(exc).__name__
            raise ConfigError(
                f"invalid Supabase configuration: {reason}",
                hint="check SUPABASE_URL (https://<ref>.supabase.co) and SUPABASE_SERVICE_ROLE_KEY",
            ) from None

    def call(self, function: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        if not _FUNCTION_NAME.fullmatch(function):
            raise ValueError(f"not a dbops function: {function}")
        payload = {k: _jsonable(v) for k, v in (params or {}).items()}
        try:
            response = self.client.rpc(function, payload).execute()
        except (APIError, httpx.HTTPError, httpx.InvalidURL, RedirectRefused) as exc:
            raise translate_error(exc, self.target, secret=self._secrets) from None
        data = response.data
        if data is None:
            return []
        if isinstance(data, list):
            return [row if isinstance(row, dict) else {function: row} for row in data]
        return [data if isinstance(data, dict) else {function: data}]

    def ping(self) -> float:
        start = time.perf_counter()
        self.call("dbops_ping", {})
        return (time.perf_counter() - start) * 1000

    def close(self) -> None:
        if self._http is not None:
            with contextlib.suppress(Exception):
                self._http.close()
            self._http = None
        self.__dict__.pop("client", None)
