"""Benchmark: CPU per request of the in-process moto SQS server the test suite uses.

Run: `uv run python -m benchmarks.bench_moto` (or `-m benchmarks moto`). Not part of the test
suite; nothing is asserted, the figures are printed.

Two servers, each in its own fresh interpreter (so no change leaks from one into the other),
both with `speed_up_moto_sqs()` (the queue-model changes) applied:

- `moto`: moto's own `ThreadedMotoServer`, as tests/conftest.py started it before;
- `dbops`: `dbops.sandbox.sqs_server.ThreadedSqsServer`, the server-level changes too.

A boto3 client in the main thread sends, in rounds, SendMessage, ReceiveMessage (10 at a
time), DeleteMessageBatch and GetQueueAttributes to one queue kept a few messages deep, over
one kept-alive connection. The server's CPU is the process's CPU minus the main thread's
(`time.process_time()` - `time.thread_time()`): the client runs in the main thread only, the
server in its own threads. Bytecode is compiled first (compileall on dbops; imports and a
warm-up round happen before timing), so an environment with PYTHONDONTWRITEBYTECODE does not
time compilation. Printed: server CPU seconds per 1,000 requests, best and median of
--rounds, and the ratio dbops / moto.
Options: --requests N (per round, default 2,000), --rounds R (default 5).
"""

from __future__ import annotations

import argparse
import compileall
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SERVERS = ("moto", "dbops")


def _start(kind: str) -> tuple[Any, str]:
    from dbops.sandbox.sqs_server import speed_up_moto_sqs

    speed_up_moto_sqs()
    server: Any
    if kind == "moto":
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    else:
        from dbops.sandbox.sqs_server import ThreadedSqsServer

        server = ThreadedSqsServer("127.0.0.1", 0)
    server.start()
    return server, f"http://127.0.0.1:{server.get_host_and_port()[1]}"


def _round(client: Any, url: str, requests: int) -> int:
    """About `requests` calls: send 10, receive, delete what came back, read the count."""
    made = 0
    while made < requests:
        for i in range(10):
            client.send_message(QueueUrl=url, MessageBody=f"message {made} {i}")
        got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        if entries:
            client.delete_message_batch(QueueUrl=url, Entries=entries)
        client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        made += 13 if entries else 12
    return made


def _measure(kind: str, requests: int, rounds: int) -> dict[str, Any]:
    import boto3

    server, endpoint = _start(kind)
    client = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    url = client.create_queue(QueueName=f"bench-{kind}")["QueueUrl"]
    _round(client, url, 200)  # warm-up: first-request setup, lazy imports, caches
    per_thousand: list[float] = []
    client_per_thousand: list[float] = []
    for _ in range(rounds):
        cpu, own = time.process_time(), time.thread_time()
        made = _round(client, url, requests)
        client_cpu = time.thread_time() - own
        server_cpu = (time.process_time() - cpu) - client_cpu
        per_thousand.append(server_cpu * 1000 / made)
        client_per_thousand.append(client_cpu * 1000 / made)
    server.stop()
    return {"server": kind, "per_1000": per_thousand, "client_per_1000": client_per_thousand}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_moto")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", choices=SERVERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args.child, args.requests, args.rounds)))
        return
    import dbops

    compileall.compile_dir(str(Path(dbops.__file__).parent), quiet=1)
    results: dict[str, list[float]] = {}
    sizes = ["--requests", str(args.requests), "--rounds", str(args.rounds)]
    for kind in SERVERS:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_moto", "--child", kind, *sizes],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        measured = json.loads(out.strip().splitlines()[-1])
        results[kind] = measured["per_1000"]
        best, median = min(results[kind]), statistics.median(results[kind])
        client = statistics.median(measured["client_per_1000"])
        print(
            f"{kind:>5}: server CPU per 1,000 requests: best {best:.3f} s, median {median:.3f} s"
            f" (the boto3 client's: median {client:.3f} s)"
        )
    ratio_best = min(results["dbops"]) / min(results["moto"])
    ratio_median = statistics.median(results["dbops"]) / statistics.median(results["moto"])
    print(f"ratio dbops / moto: best {ratio_best:.2f}x, median {ratio_median:.2f}x")


if __name__ == "__main__":
    main()
