"""Benchmark: `dbops top --once -o json` and `dbops metrics` on the seeded sandbox.

Run: `uv run python -m benchmarks.bench_top` (or `uv run python -m benchmarks top`). It
starts a private sandbox (`dbops sandbox up` + `seed --scenario incident`, in a temp
DBOPS_DATA_DIR), then prints, for one frame:

- remote calls, counted in-process on the real adapters: database round trips per
  function (the Store port) and SQS / CloudWatch API calls (botocore's before-call
  events); target: 1 database round trip and 1 SQS call per queue;
- the frame's gather time in-process (median of several), and the wall time of each
  command as a subprocess with precompiled bytecode (median of several), next to
  `dbops --help` (interpreter + CLI start-up) and `dbops queue depth -o json` (the
  same SQS reads, no database) for comparison;
- what the frame contains (so a run on empty data is noticed).

Not part of the test suite. The sandbox is stopped and its folder removed at the end.
"""

from __future__ import annotations

import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RUNS = int(os.environ.get("BENCH_RUNS", "7"))
SRC = Path(__file__).parents[1] / "src"


def dbops(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dbops", *args],
        env=env,
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def wall_ms(args: list[str], env: dict[str, str]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        dbops(*args, env=env)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


class CountingStore:
    """The Store port, counting round trips per function."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.transport = inner.transport
        self.calls: Counter[str] = Counter()

    def call(self, function: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        self.calls[function] += 1
        return list(self.inner.call(function, params))

    def ping(self) -> float:
        self.calls["(ping)"] += 1
        return float(self.inner.ping())

    def close(self) -> None:
        self.inner.close()


def in_process(env: dict[str, str]) -> None:
    os.environ.update(env)
    from dbops.adapters.postgres import PostgresStore
    from dbops.adapters.sqs import SqsQueues
    from dbops.services import overview
    from dbops.settings import load_settings

    settings, _origins = load_settings(profile="sandbox", flags={}, env_file_values={})
    assert settings.database_url is not None
    store = CountingStore(PostgresStore(settings.database_url.get_secret_value()))
    queues = SqsQueues(
        region=settings.aws_region,
        endpoint=settings.aws_endpoint_url_sqs,
        profile=settings.aws_profile,
        sandbox=settings.sandbox,
    )
    api: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        service, operation = event_name.split(".")[1:3]
        api[f"{service}.{operation}"] += 1

    # On the session, before any client exists: every client it makes (SQS, and the
    # CloudWatch client made per call) reports its API calls.
    queues._session.events.register("before-call.*", count)
    kwargs = {
        "store": store,
        "queues": queues,
        "settings": settings,
        "main_url": settings.sqs_queue_url,
        "dlq_url": settings.sqs_dlq_url,
    }
    overview.gather(**kwargs)  # warm-up (connections, clients)
    store.calls.clear()
    api.clear()
    frame = overview.gather(**kwargs)
    print("one frame (`top --once`, `metrics`):")
    print(f"  database round trips: {sum(store.calls.values())} {dict(store.calls)}")
    sqs = {k: v for k, v in api.items() if k.startswith("sqs.")}
    print(f"  SQS calls: {sum(sqs.values())} for {len(frame.queues)} queues {sqs}")
    cw = {k: v for k, v in api.items() if not k.startswith("sqs.")}
    print(f"  CloudWatch calls: {sum(cw.values())} {cw}")
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        overview.gather(**kwargs)
        times.append((time.perf_counter() - started) * 1000)
    print(
        f"  gather, in-process: median {statistics.median(times):.1f} ms "
        f"(database {frame.database_ms:.1f} ms of it on the counted frame)"
    )
    store.calls.clear()
    api.clear()
    overview.gather(**kwargs, full_audit=True)
    print(
        f"  with the full audit (top, once a minute): {sum(store.calls.values())} round trips "
        f"{dict(store.calls)}, {sum(v for k, v in api.items() if k.startswith('sqs.'))} SQS"
    )
    print(
        f"  frame: {len(frame.queues)} queues, stale {frame.jobs.stale}, orphaned "
        f"{frame.jobs.orphaned}, workers alive {frame.workers.alive} / dead "
        f"{frame.workers.dead}, {len(frame.ratelimit)} offenders, audit "
        f"{frame.audit.verdict} {frame.audit.score}, errors {frame.errors or 'none'}"
    )
    store.close()


def main() -> None:
    compileall.compile_dir(str(SRC), quiet=1)
    with tempfile.TemporaryDirectory(prefix="dbops-bench-top-") as folder:
        env = dict(os.environ)
        env.update(
            {
                "DBOPS_DATA_DIR": str(Path(folder) / "data"),
                "DBOPS_CONFIG_DIR": str(Path(folder) / "config"),
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
                "DBOPS_PROFILE": "sandbox",
            }
        )
        for name in ("DATABASE_URL", "SQS_QUEUE_URL", "SQS_DLQ_URL", "AWS_ENDPOINT_URL_SQS"):
            env.pop(name, None)
        started = time.perf_counter()
        dbops("sandbox", "up", env=env)
        try:
            dbops("sandbox", "seed", "--scenario", "incident", env=env)
            print(f"sandbox up and seeded (incident) in {time.perf_counter() - started:.1f} s")
            in_process(env)
            frame = json.loads(dbops("top", "--once", "-o", "json", env=env).stdout)
            assert frame["calls"]["database"] == 1, frame["calls"]
            help_ms = wall_ms(["--help"], env)
            depth_ms = wall_ms(["queue", "depth", "-o", "json"], env)
            top_ms = wall_ms(["top", "--once", "-o", "json"], env)
            metrics_ms = wall_ms(["metrics"], env)
            print(f"wall time as a subprocess (precompiled), median of {RUNS}:")
            print(f"  dbops --help                 {help_ms:8.1f} ms")
            print(f"  dbops queue depth -o json    {depth_ms:8.1f} ms (for comparison)")
            print(f"  dbops top --once -o json     {top_ms:8.1f} ms ({top_ms / depth_ms:.2f}x)")
            print(
                f"  dbops metrics                {metrics_ms:8.1f} ms "
                f"({metrics_ms / depth_ms:.2f}x)"
            )
        finally:
            dbops("sandbox", "down", env=env, check=False)


if __name__ == "__main__":
    main()
