"""Benchmark: `dbops dlq stats` against a bare batched boto3 receive loop.

Run: `uv run python -m benchmarks.bench_dlq_stats` (an own moto server in a subprocess, 300
messages), or point DBOPS_BENCH_SQS_ENDPOINT at an endpoint (LocalStack from
`../shared/tools/localstack/sqs start`: 10,000 messages by default). Not part of the test
suite; nothing is asserted, the figures are printed (and written as JSON with --json FILE).

One DLQ holding N messages (unique ~200-byte JSON bodies with a `_dlq_reason` that differs
only in numbers and ids, a customer, a source, two message attributes) is scanned again and
again (nothing is consumed), best of --rounds:

1. `dlq stats --by reason` (the service `group_messages`): the shared `Scan` receives with
   `stats.RECEIVERS` threads, holds every message under a lease, each body is parsed,
   filtered, its reason normalised and counted, then every message is released (visibility
   0, batches of 10, `stats.RELEASE_WORKERS` calls in flight);
2. `dlq stats --by age` (no normalisation: what the scan itself costs);
3. `dlq stats --by job_status` when a database is available (an embedded pgserver, or
   DBOPS_BENCH_DATABASE_URL): N jobs inserted, one `dbops_dlq_stats_job_status` round trip
   per 1,000 distinct job ids (counted);
4. the floor, the baseline of the target: a bare boto3 loop, one thread, receiving 10 at a
   time (same visibility timeout and attribute names) until the first empty receive, and
   nothing else: no parsing, no confirmation that the queue is drained, no release. (It is
   not a scan that leaves the queue alone: it holds the whole queue invisible for the
   lease.) Untimed, the benchmark then releases what it received, so that the next run
   finds the queue full; that release, done serially, is timed separately as a second
   reference (receive + release loop), the fewest calls a non-consuming scan can make.

The ratio printed is dbops throughput / floor throughput, target >= 0.8x, both for the best
run of each and as the median of the per-round ratios (each dbops run against the floor run
of the same round: the machine's load changes between rounds). Every run starts once the
queue reports all N messages visible, and each round starts with a different run. dbops
pays what the floor does not: the release (one call per 10 messages) and the end of scan
check (a 1 s long poll and GetQueueAttributes); it wins back time by receiving with several
threads.
Options: --count N, --rounds R, --no-database, --json FILE. Environment:
DBOPS_BENCH_SQS_ENDPOINT, DBOPS_BENCH_COUNT, DBOPS_BENCH_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.bench_redrive import _client, sqs_endpoint
from dbops.adapters.sqs import SqsQueues

FLOOR = "bare boto3 receive-only loop (floor)"
WITH_RELEASE = "bare boto3 receive + serial release loop"


@dataclass
class Run:
    name: str
    messages: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def fill(client: Any, count: int, job_ids: list[str]) -> str:
    tag = uuid.uuid4().hex[:8]
    dlq = client.create_queue(QueueName=f"bench-stats-{tag}-dlq")["QueueUrl"]
    attributes = {
        "job_id": {"DataType": "String", "StringValue": "j"},
        "priority": {"DataType": "Number", "StringValue": "3"},
    }
    reasons = [
        "timeout after {n}s calling https://api.example.com/v1/jobs/{n}",
        "customer {u} not found",
        "db error code={n} on job {u}",
        "payload too large: {n} bytes",
    ]

    def body(i: int) -> str:
        reason = reasons[i % len(reasons)].format(n=i % 97, u=uuid.uuid4())
        return json.dumps(
            {
                "job_id": job_ids[i] if job_ids else str(uuid.uuid4()),
                "customer_id": f"cust-{i % 25}",
                "source": ("api", "cron", "webhook")[i % 3],
                "_dlq_reason": reason,
                "pad": "x" * 40,
            }
        )

    def send(start: int) -> None:
        entries = [
            {"Id": str(i), "MessageBody": body(start + i), "MessageAttributes": attributes}
            for i in range(min(10, count - start))
        ]
        client.send_message_batch(QueueUrl=dlq, Entries=entries)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(0, count, 10)))
    return dlq


def run_stats(endpoint: str, dlq: str, by: str, store: Any = None) -> Run:
    from dbops.services.dlq.stats import group_messages

    queues = SqsQueues(region="us-east-1", endpoint=endpoint)
    queues.get_attributes(dlq)  # warm the client outside the timing
    started = time.perf_counter()
    result = group_messages(queues=queues, queue_url=dlq, by=by, store=store)
    seconds = time.perf_counter() - started
    return Run(
        f"dbops dlq stats --by {by}",
        result.matched,
        seconds,
        {
            "groups": result.groups,
            "released": result.released,
            "db_round_trips": result.lookups,
            "top": [(r.key, r.count) for r in result.rows[:3]],
        },
    )


def run_floor(client: Any, dlq: str, count: int) -> tuple[Run, Run]:
    """The floor: receive 10 at a time until empty, nothing else. Then the serial release of
    every message, timed on top as the receive + release reference."""
    started = time.perf_counter()
    handles: list[str] = []
    receives = 0
    while True:
        got = client.receive_message(
            QueueUrl=dlq,
            MaxNumberOfMessages=10,
            VisibilityTimeout=300,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        receives += 1
        if not got:
            break
        handles.extend(m["ReceiptHandle"] for m in got)
    received = time.perf_counter() - started
    releases = 0
    for start in range(0, len(handles), 10):
        client.change_message_visibility_batch(
            QueueUrl=dlq,
            Entries=[
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for i, h in enumerate(handles[start : start + 10])
            ],
        )
        releases += 1
    seconds = time.perf_counter() - started
    return (
        Run(FLOOR, len(handles), received, {"receive_calls": receives}),
        Run(
            WITH_RELEASE,
            len(handles),
            seconds,
            {"receive_calls": receives, "release_calls": releases},
        ),
    )


def settle(client: Any, dlq: str, count: int, timeout: float = 60) -> None:
    """Wait until the queue reports every message visible again (after a release)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = client.get_queue_attributes(
            QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        if int(attributes["ApproximateNumberOfMessages"]) >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{dlq}: not all {count} messages visible again after {timeout} s")


@contextlib.contextmanager
def database(count: int, enabled: bool) -> Iterator[tuple[Any, list[str]]]:
    """A migrated scratch database with `count` completed jobs, or (None, []) without one."""
    if not enabled:
        yield None, []
        return
    try:
        from benchmarks._database import scratch_database, server_url
        from dbops.adapters.postgres import PostgresStore
        from dbops.services import migrations
    except ImportError as exc:  # pragma: no cover - optional part
        print(f"(no database: {exc})")
        yield None, []
        return
    with server_url() as url, scratch_database(url) as scratch:
        store = PostgresStore(scratch)
        try:
            migrations.migrate(store=store, which="app")
            migrations.migrate(store=store, which="dbops")
            import psycopg

            with psycopg.connect(scratch, autocommit=True) as conn:
                rows = conn.execute(
                    "insert into jobs (customer_id, status) select 'c' || g, "
                    "(array['completed','failed','pending'])[1 + g %% 3] "
                    "from generate_series(1, %s) g returning id::text",
                    [count],
                ).fetchall()
            yield store, [r[0] for r in rows]
        finally:
            store.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_dlq_stats")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-database", action="store_true")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    # Test endpoints accept any credentials; never reuse real ones for a benchmark.
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_REGION", "us-east-1"),
    ):
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)

    with sqs_endpoint() as (endpoint, implementation):
        on_localstack = implementation.startswith("LocalStack")
        count = args.count or int(
            os.environ.get("DBOPS_BENCH_COUNT", "10000" if on_localstack else "300")
        )
        client = _client(endpoint)
        print(f"SQS implementation: {implementation} at {endpoint}")
        print(f"messages: {count}; best of {args.rounds} round(s)\n", flush=True)
        best: dict[str, Run] = {}

        def keep(run: Run) -> None:
            print(f"  {run.name}: {run.messages} in {run.seconds:.2f}s", flush=True)
            if run.name not in best or run.seconds < best[run.name].seconds:
                best[run.name] = run

        per_round: dict[str, list[float]] = {}
        with database(count, not args.no_database) as (store, job_ids):
            dlq = fill(client, count, job_ids)
            try:
                kinds = ["floor", "reason", "age"] + (["job_status"] if store else [])
                for round_number in range(args.rounds):
                    # Each round starts with a different run: a run right after another
                    # one's release finds the server still busy with it.
                    shift = round_number % len(kinds)
                    floor = None
                    runs = []
                    for kind in kinds[shift:] + kinds[:shift]:
                        settle(client, dlq, count)
                        if kind == "floor":
                            floor, with_release = run_floor(client, dlq, count)
                            keep(floor)
                            keep(with_release)
                        else:
                            run = run_stats(endpoint, dlq, kind, store)
                            keep(run)
                            runs.append(run)
                    assert floor is not None
                    for run in runs:
                        per_round.setdefault(run.name, []).append(run.rate / floor.rate)
            finally:
                with contextlib.suppress(Exception):
                    client.delete_queue(QueueUrl=dlq)
    load = os.getloadavg()

    floor = best[FLOOR]
    print("\nbest of each:")
    for run in best.values():
        print(f"  {run.name}: {run.rate:,.0f} msg/s ({run.seconds:.2f}s) {run.extra}")
    ratios = {
        name: run.rate / floor.rate if floor.rate else 0.0
        for name, run in best.items()
        if name.startswith("dbops")
    }
    medians = {name: statistics.median(values) for name, values in per_round.items()}
    print("\nratio dbops / receive-only floor throughput (target >= 0.8x):")
    for name, ratio in ratios.items():
        print(f"  {name}: {ratio:.2f}x best vs best, {medians[name]:.2f}x median per round")
    reference = best[WITH_RELEASE]
    print(
        f"  (vs the receive + serial release loop: "
        f"{best['dbops dlq stats --by reason'].rate / reference.rate:.2f}x)"
    )
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    report = {
        "implementation": implementation,
        "count": count,
        "runs": {name: {**asdict(run), "rate": run.rate} for name, run in best.items()},
        "ratios": ratios,
        "median_round_ratios": medians,
        "load_average": load,
    }
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(report, handle, indent=2)
    return report


if __name__ == "__main__":
    main()
