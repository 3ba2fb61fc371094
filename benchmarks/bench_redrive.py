"""Benchmark: `dbops dlq redrive` (copy) against the API floor, one run, figures and ratios.

Run: `uv run python -m benchmarks.bench_redrive` (an own moto server in a subprocess,
1,000 messages), or point DBOPS_BENCH_SQS_ENDPOINT at an endpoint (LocalStack from
`../shared/tools/localstack/sqs start`: 10,000 messages by default). Not part of the test
suite; nothing is asserted, the figures are printed (and written as JSON with --json FILE).

Measured, each on fresh queues holding N messages (unique ~200-byte JSON bodies with two
message attributes):
1. dbops copy redrive, one worker, with its resumable journal as the CLI keeps it (two
   fsynced appends per batch of 10): wall time, messages/s, messages per receive/send/delete;
2. the floor: a bare boto3 loop making the same batched calls (receive 10 with the same
   long poll, send_message_batch, delete_message_batch) with no safety features;
3. a one-message-at-a-time loop (receive 1, send 1, delete 1), timed on its first
   `--single` messages at the same depth (it is far too slow to run to the end);
4. peak Python memory (tracemalloc) of a redrive at each `--memory` size (1,000 vs 10,000);
5. throughput with `--workers` 4 and 8.

Options: --count N, --memory 1000,10000, --workers 4,8, --single 200, --json FILE.
Environment: DBOPS_BENCH_SQS_ENDPOINT, DBOPS_BENCH_COUNT.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from dbops.adapters.sqs import SqsQueues
from dbops.services import redrive

WAIT = redrive.RECEIVE_WAIT_SECONDS  # the same long poll for dbops and the floor


# --------------------------------------------------------------------------- endpoint
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _implementation(endpoint: str) -> str:
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=3) as response:
            data = json.loads(response.read() or b"{}")
        version = data.get("version", "")
        return f"LocalStack {version}".strip()
    except Exception:
        return "custom endpoint"


@contextmanager
def sqs_endpoint() -> Iterator[tuple[str, str]]:
    external = os.environ.get("DBOPS_BENCH_SQS_ENDPOINT")
    if external:
        endpoint = external.rstrip("/")
        yield endpoint, _implementation(endpoint)
        return
    import moto

    port = _free_port()
    # A subprocess, so that the server's own memory and CPU stay out of the measurements.
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _client(endpoint).list_queues()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield endpoint, f"moto {moto.__version__} server (subprocess)"
    finally:
        process.terminate()
        process.wait(10)


def _client(endpoint: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(max_pool_connections=32, retries={"mode": "standard", "max_attempts": 5}),
    )


# --------------------------------------------------------------------------- fixtures
@dataclass
class Pair:
    dlq: str
    target: str


def make_pair(client: Any, count: int) -> Pair:
    tag = uuid.uuid4().hex[:8]
    dlq = client.create_queue(QueueName=f"bench-{tag}-dlq")["QueueUrl"]
    target = client.create_queue(QueueName=f"bench-{tag}")["QueueUrl"]
    attributes = {
        "job_id": {"DataType": "String", "StringValue": "j"},
        "priority": {"DataType": "Number", "StringValue": "3"},
    }

    def send(start: int) -> None:
        entries = [
            {
                "Id": str(i),
                "MessageBody": json.dumps(
                    {"job_id": f"{tag}-{start + i:06d}", "customer_id": "bench", "pad": "x" * 120}
                ),
                "MessageAttributes": attributes,
            }
            for i in range(min(10, count - start))
        ]
        client.send_message_batch(QueueUrl=dlq, Entries=entries)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(0, count, 10)))
    return Pair(dlq, target)


def drop(client: Any, pair: Pair) -> None:
    for url in (pair.dlq, pair.target):
        with suppress(Exception):
            client.delete_queue(QueueUrl=url)


def depth(client: Any, url: str) -> int:
    attrs = client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


# --------------------------------------------------------------------------- scenarios
@dataclass
class Run:
    name: str
    messages: int
    seconds: float
    receive_calls: int = 0
    send_calls: int = 0
    delete_calls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def run_dbops(endpoint: str, pair: Pair, *, workers: int = 1) -> Run:
    queues = SqsQueues(region="us-east-1", endpoint=endpoint)
    queues.get_attributes(pair.dlq)  # warm the client outside the timing
    with tempfile.TemporaryDirectory(prefix="dbops-bench-journal-") as journal:
        started = time.perf_counter()
        result = redrive.copy_redrive(
            queues=queues,
            dlq_url=pair.dlq,
            target_url=pair.target,
            workers=workers,
            journal_dir=Path(journal),
        )
        seconds = time.perf_counter() - started
    return Run(
        f"dbops copy, {workers} worker(s)",
        result.moved,
        seconds,
        result.calls.receive_calls,
        result.calls.send_calls,
        result.calls.delete_calls,
        {
            "per_receive": round(result.calls.per_receive, 2),
            "per_send": round(result.calls.per_send, 2),
            "per_delete": round(result.calls.per_delete, 2),
            "failed": result.failed,
        },
    )


def run_floor(client: Any, pair: Pair) -> Run:
    """The same batched calls, no safety: no filter, no per-entry bookkeeping, no release,
    no byte sizing, no drain confirmation beyond one empty long poll."""
    started = time.perf_counter()
    moved = receives = sends = deletes = 0
    while True:
        got = client.receive_message(
            QueueUrl=pair.dlq,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=WAIT,
            VisibilityTimeout=300,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        receives += 1
        if not got:
            break
        client.send_message_batch(
            QueueUrl=pair.target,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": m["Body"],
                    "MessageAttributes": m.get("MessageAttributes", {}),
                }
                for i, m in enumerate(got)
            ],
        )
        sends += 1
        client.delete_message_batch(
            QueueUrl=pair.dlq,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )
        deletes += 1
        moved += len(got)
    seconds = time.perf_counter() - started
    return Run("bare boto3 batched loop (floor)", moved, seconds, receives, sends, deletes)


def run_single(client: Any, pair: Pair, limit: int) -> Run:
    started = time.perf_counter()
    moved = 0
    while moved < limit:
        got = client.receive_message(
            QueueUrl=pair.dlq,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=WAIT,
            VisibilityTimeout=300,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            break
        m = got[0]
        client.send_message(
            QueueUrl=pair.target,
            MessageBody=m["Body"],
            MessageAttributes=m.get("MessageAttributes", {}),
        )
        client.delete_message(QueueUrl=pair.dlq, ReceiptHandle=m["ReceiptHandle"])
        moved += 1
    seconds = time.perf_counter() - started
    return Run("one message at a time", moved, seconds, moved, moved, moved)


def run_memory(endpoint: str, pair: Pair) -> tuple[Run, int]:
    queues = SqsQueues(region="us-east-1", endpoint=endpoint)
    queues.get_attributes(pair.dlq)
    queues.get_attributes(pair.target)
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    result = redrive.copy_redrive(queues=queues, dlq_url=pair.dlq, target_url=pair.target)
    seconds = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Run("dbops copy under tracemalloc", result.moved, seconds), peak


# --------------------------------------------------------------------------- main
def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_redrive")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--memory", type=_ints, default=[1000, 10000])
    parser.add_argument("--workers", type=_ints, default=[4, 8])
    parser.add_argument("--single", type=int, default=200)
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
            os.environ.get("DBOPS_BENCH_COUNT", "10000" if on_localstack else "1000")
        )
        client = _client(endpoint)
        print(f"SQS implementation: {implementation} at {endpoint}")
        print(f"messages per scenario: {count}; long poll {WAIT}s for dbops and the floor\n")
        report: dict[str, Any] = {"implementation": implementation, "count": count}

        def scenario(label: str, n: int, fn: Any) -> Any:
            seeded = time.perf_counter()
            pair = make_pair(client, n)
            try:
                print(
                    f"  {label}: {n} messages seeded in {time.perf_counter() - seeded:.1f}s ...",
                    end=" ",
                    flush=True,
                )
                got = fn(pair)
                run = got[0] if isinstance(got, tuple) else got
                print(f"{run.messages} moved in {run.seconds:.2f}s", flush=True)
                return got
            finally:
                drop(client, pair)

        dbops_run = scenario("dbops copy", count, lambda p: run_dbops(endpoint, p))
        floor_run = scenario("floor", count, lambda p: run_floor(client, p))
        single_run = scenario(
            "one at a time", count, lambda p: run_single(client, p, min(args.single, count))
        )
        worker_runs = [
            scenario(
                f"dbops --workers {w}", count, lambda p, w=w: run_dbops(endpoint, p, workers=w)
            )
            for w in args.workers
        ]
        memory: list[tuple[int, int, float]] = []
        for n in args.memory:
            run, peak = scenario(f"memory at {n}", n, lambda p: run_memory(endpoint, p))
            memory.append((n, peak, run.seconds))

        print()
        rows = [dbops_run, floor_run, single_run, *worker_runs]
        header = ("scenario", "msgs", "wall s", "msgs/s", "rcv", "send", "del")
        print("{:38} {:>6} {:>8} {:>8} {:>6} {:>6} {:>6}".format(*header))
        for r in rows:
            print(
                f"{r.name:38} {r.messages:6d} {r.seconds:8.2f} {r.rate:8.1f} "
                f"{r.receive_calls:6d} {r.send_calls:6d} {r.delete_calls:6d}"
            )
        per = dbops_run.extra
        print(
            f"\nmessages per call (dbops, 1 worker): receive {per['per_receive']}, "
            f"send {per['per_send']}, delete {per['per_delete']}  (target >= 9.5)"
        )
        vs_floor = dbops_run.seconds / floor_run.seconds if floor_run.seconds else 0.0
        vs_single = dbops_run.rate / single_run.rate if single_run.rate else 0.0
        print(f"wall time dbops / floor: {vs_floor:.2f}x  (target <= 1.25x)")
        print(f"throughput dbops / one-at-a-time: {vs_single:.1f}x  (target >= 10x)")
        for r in worker_runs:
            print(
                f"{r.name}: {r.rate:.0f} msgs/s = {r.rate / dbops_run.rate:.2f}x one worker, "
                f"{r.rate / floor_run.rate:.2f}x the single-threaded floor"
            )
        for n, peak, seconds in memory:
            print(f"peak traced memory at {n:6d} messages: {peak / 1024:9.0f} KiB ({seconds:.1f}s)")
        if len(memory) >= 2:
            (n1, p1, _), (n2, p2, _) = memory[0], memory[-1]
            print(
                f"memory ratio {n2}/{n1} messages: {p2 / p1:.2f}x for {n2 / n1:.0f}x the messages"
            )

        report.update(
            {
                "runs": [asdict(r) | {"rate": round(r.rate, 1)} for r in rows],
                "dbops_over_floor": round(vs_floor, 3),
                "dbops_over_single": round(vs_single, 2),
                "memory": [{"messages": n, "peak_bytes": p, "seconds": s} for n, p, s in memory],
            }
        )
        if args.json_path:
            with open(args.json_path, "w") as handle:
                json.dump(report, handle, indent=2)
        return report


if __name__ == "__main__":
    main()
