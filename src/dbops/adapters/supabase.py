"""Supabase transport: the same `dbops_*` SQL functions, called through PostgREST `rpc()`."""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from postgrest.exceptions import APIError
from supabase import Client, ClientOptions, create_client

from dbops.errors import ConfigError, NotFoundError, RemoteError, UsageError


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def translate_error(exc: Exception, host: str) -> Exception:
    if isinstance(exc, APIError):
        code = str(exc.code or "")
        message = " ".join(str(exc.message or "").split()) or "request failed"
        if code == "P0002" or message.startswith("not found"):
            return NotFoundError(message)
        if code in {"22023", "22P02", "22007", "22008", "P0001"}:
            return UsageError(message)
        if code in {"PGRST202", "42883", "42P01"}:
            return ConfigError(
                f"Supabase project {host} lacks dbops objects ({message})",
                hint="run `dbops db migrate --print` and paste it into the SQL editor",
            )
        if code in {"42501", "401", "403", "PGRST301", "PGRST302"}:
            return RemoteError(
                f"Supabase {host} refused the call ({code})",
                hint="check SUPABASE_SERVICE_ROLE_KEY is the service-role key",
            )
        return RemoteError(f"Supabase {host} error {code}: {message}".replace(" :", ":"))
    if isinstance(exc, httpx.HTTPError):
        return RemoteError(
            f"Supabase {host} unreachable ({type(exc).__name__})", hint="check SUPABASE_URL"
        )
    return exc


class SupabaseStore:
    transport = "supabase"

    def __init__(self, url: str, key: str, *, timeout: float = 30) -> None:
        self._url = url
        self._key = key
        self._timeout = timeout
        self.target = urlsplit(url).netloc or url

    @functools.cached_property
    def client(self) -> Client:
        try:
            return create_client(
                self._url,
                self._key,
                options=ClientOptions(
                    postgrest_client_timeout=self._timeout, auto_refresh_token=False
                ),
            )
        except Exception as exc:
            raise ConfigError(
                f"invalid Supabase configuration: {type(exc).__name__}", hint="check SUPABASE_URL"
            ) from None

    def call(self, function: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        payload = {k: _jsonable(v) for k, v in (params or {}).items()}
        try:
            response = self.client.rpc(function, payload).execute()
        except (APIError, httpx.HTTPError) as exc:
            raise translate_error(exc, self.target) from None
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
        if "client" in self.__dict__:
            with contextlib.suppress(Exception):
                self.client.postgrest.session.close()
