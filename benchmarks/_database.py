"""The benchmarks' Postgres: an embedded pgserver in a temp folder, or
DBOPS_BENCH_DATABASE_URL; each benchmark works in a scratch database it drops after."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql


@contextmanager
def server_url() -> Iterator[str]:
    external = os.environ.get("DBOPS_BENCH_DATABASE_URL")
    if external:
        yield external
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="dbops-bench-") as folder:
        server = pgserver.get_server(folder, cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    name = f"dbops_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo("", **{k: v for k, v in info.items() if v is not None})
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
