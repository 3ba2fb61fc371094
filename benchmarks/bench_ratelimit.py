"""Benchmark: the atomic `dbops_rate_limit_hit` vs the API's present count-then-insert, and
`dbops ratelimit top --since 15m`, on 1,000,000 rows of `rate_limit_requests`.

Run: `uv run python -m benchmarks.bench_ratelimit` (an embedded pgserver in a temp folder),
or point DBOPS_BENCH_DATABASE_URL at a server you own (a scratch database is created and
dropped there). Not part of the test suite; prints the figures of one run.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from benchmarks._database import scratch_database, server_url
from dbops.adapters.postgres import PostgresStore
from dbops.services import migrations
from dbops.services import ratelimit as rl

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
CALLS = int(os.environ.get("BENCH_CALLS", "3000"))
IDENTIFIERS = 20_000
ENDPOINTS = ["/api/jobs", "/api/jobs/status", "/api/results", "/api/upload", "/api/search"]


def identifier(i: int) -> str:
    return f"ip:10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" if i % 4 else f"api_key:k{i}"


def seed(conn: psycopg.Connection[Any]) -> None:
    """ROWS requests over the last 24 h, in time order (an append-only log, as the API
    writes it): 20,000 identifiers (1 in 4 an API key) spread over 5 endpoints."""
    conn.execute(
        """
        insert into rate_limit_requests (identifier, endpoint, created_at)
        select case when i %% 4 = 0 then 'api_key:k' || i
                    else 'ip:10.' || (i / 65536 %% 256) || '.' || (i / 256 %% 256) || '.'
                         || (i %% 256) end,
               (%(endpoints)s::text[])[1 + (g * 31 / 7) %% 5],
               now() - interval '24 hours' * (1 - g::float8 / %(rows)s)
        from generate_series(1, %(rows)s) g,
             lateral (select (g::bigint * 7919 %% %(identifiers)s)::int as i) x
        order by g
        """,
        {"endpoints": ENDPOINTS, "rows": ROWS, "identifiers": IDENTIFIERS},
    )
    conn.execute("vacuum analyze rate_limit_requests")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    rng = random.Random(7)
    with server_url() as url, scratch_database(url) as dsn:
        store = PostgresStore(dsn)
        migrations.migrate(store=store, which="app")
        migrations.migrate(store=store, which="dbops")
        conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row, prepare_threshold=None)
        t0 = time.perf_counter()
        seed(conn)
        print(f"seeded {ROWS:,} rows in {time.perf_counter() - t0:.1f} s")
        recent = conn.execute(
            "select count(*) as n from rate_limit_requests "
            "where created_at > now() - interval '15 minutes'"
        ).fetchone()
        print(f"rows in the last 15 min: {recent['n']:,}" if recent else "")

        def atomic() -> None:
            ident, endpoint = identifier(rng.randrange(IDENTIFIERS)), rng.choice(ENDPOINTS)
            conn.execute("select * from dbops_rate_limit_hit(%s, %s)", (ident, endpoint))

        def count_then_insert() -> None:
            # The API today: count the window, then insert if under the hard-coded limit.
            ident, endpoint = identifier(rng.randrange(IDENTIFIERS)), rng.choice(ENDPOINTS)
            row = conn.execute(
                "select count(*) as n from rate_limit_requests where identifier = %s "
                "and endpoint = %s and created_at > now() - interval '60 seconds'",
                (ident, endpoint),
            ).fetchone()
            if row and row["n"] < 100:
                conn.execute(
                    "insert into rate_limit_requests (identifier, endpoint) values (%s, %s)",
                    (ident, endpoint),
                )

        for _ in range(300):  # warm-up
            atomic()
            count_then_insert()
        a: list[float] = []
        b: list[float] = []
        for _ in range(CALLS):  # interleaved, so both see the same data and cache state
            a.append(timed(atomic))
            b.append(timed(count_then_insert))

        top_ms = []
        for _ in range(7):
            top_ms.append(timed(lambda: rl.top(store=store, since_seconds=900, limit=20)))
        entries = rl.top(store=store, since_seconds=900, limit=20)

        env = {**os.environ, "DATABASE_URL": dsn}
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "dbops", "ratelimit", "top", "--since", "15m", "-o", "json"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        cli_ms = (time.perf_counter() - start) * 1000
        conn.close()
        store.close()

    p50a, p99a = percentile(a, 0.50), percentile(a, 0.99)
    p50b, p99b = percentile(b, 0.50), percentile(b, 0.99)
    print(f"\n{ROWS:,} rows, {CALLS:,} calls each (interleaved), one connection, no prepares\n")
    print(f"{'approach':<40}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    print(
        f"{'dbops_rate_limit_hit (atomic, 1 call)':<40}{p50a:>10.3f}{p99a:>10.3f}"
        f"{statistics.mean(a):>10.3f}"
    )
    print(
        f"{'count-then-insert (2 statements)':<40}{p50b:>10.3f}{p99b:>10.3f}"
        f"{statistics.mean(b):>10.3f}"
    )
    print(f"ratio atomic / count-then-insert: p50 {p50a / p50b:.2f}x, p99 {p99a / p99b:.2f}x")
    print(
        f"\nratelimit top --since 15m (dbops_ratelimit_top, {len(entries)} rows): "
        f"median {statistics.median(top_ms):.1f} ms, max {max(top_ms):.1f} ms "
        f"(target < 200 ms)"
    )
    print(
        f"`dbops ratelimit top --since 15m -o json` as a process: {cli_ms:.0f} ms "
        "(includes Python start-up and imports)"
    )


if __name__ == "__main__":
    main()
