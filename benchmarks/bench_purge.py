"""Benchmark: `dbops dlq purge` (snapshot, by receipt handles) against a bare batched boto3
receive+delete loop, and `dbops dlq replay`'s messages per SendMessageBatch call.

Run: `uv run python -m benchmarks.bench_purge` (an own moto server in a subprocess, 300
messages), or point DBOPS_BENCH_SQS_ENDPOINT at an endpoint (LocalStack from
`../shared/tools/localstack/sqs start`: 5,000 messages by default). Not part of the test
suite; nothing is asserted, the figures are printed (and written as JSON with --json FILE).

Measured, each on a fresh DLQ holding N messages (unique ~200-byte JSON bodies with two
message attributes), best of --rounds:
1. dbops purge with a backup file: snapshot scan holding every message, backup written and
   fsynced, then DeleteMessageBatch by receipt handle (4 in parallel);
2. the same without a backup (what the backup costs);
3. the floor: a bare boto3 loop, receive 10 (same visibility timeout and attribute names)
   then delete_message_batch, until N are deleted; no backup, no lease upkeep, no
   per-entry bookkeeping, no release;
4. a bare loop in dbops' order: receive all N (holding them), then delete_message_batch
   batch after batch (what holding costs on this server, without dbops around it);
5. dbops replay of the first run's backup into an empty queue: SendMessageBatch calls and
   messages per call (target >= 9.5), messages/s.

The ratio printed is dbops throughput / floor throughput (target >= 0.8x).
Options: --count N, --rounds R, --json FILE. Environment: DBOPS_BENCH_SQS_ENDPOINT,
DBOPS_BENCH_COUNT.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench_redrive import _client, drop, make_pair, sqs_endpoint
from dbops.adapters.sqs import SqsQueues
from dbops.services.dlq import purging as dlq_purge
from dbops.services.dlq import replay


@dataclass
class Run:
    name: str
    messages: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def run_purge(endpoint: str, dlq: str, backup: Path | None) -> Run:
    queues = SqsQueues(region="us-east-1", endpoint=endpoint)
    queues.get_attributes(dlq)  # warm the client outside the timing
    started = time.perf_counter()
    result = dlq_purge.purge(queues=queues, queue_url=dlq, backup=backup)
    seconds = time.perf_counter() - started
    assert result.purged == result.scanned and not result.failed, result
    return Run(
        "dbops purge" + (" + backup" if backup else ", no backup"),
        result.purged,
        seconds,
        {"snapshot": result.snapshot, "duplicates": result.duplicates},
    )


def run_floor(client: Any, dlq: str, count: int) -> Run:
    """Receive 10, delete them, repeat: the fewest calls that can empty the queue."""
    started = time.perf_counter()
    deleted = receives = deletes = 0
    while deleted < count:
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
        client.delete_message_batch(
            QueueUrl=dlq,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )
        deletes += 1
        deleted += len(got)
    seconds = time.perf_counter() - started
    return Run(
        "bare boto3 receive+delete loop (floor)",
        deleted,
        seconds,
        {"receive_calls": receives, "delete_calls": deletes},
    )


def run_held_floor(client: Any, dlq: str, count: int) -> Run:
    """The same calls in dbops' order with no safety around them: receive everything first
    (holding it), then delete_message_batch one batch after another. Separates what holding
    the messages costs on this SQS server from what dbops itself adds."""
    started = time.perf_counter()
    handles: list[str] = []
    receives = deletes = 0
    while len(handles) < count:
        got = client.receive_message(
            QueueUrl=dlq,
            MaxNumberOfMessages=min(10, count - len(handles)),
            VisibilityTimeout=300,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        receives += 1
        if not got:
            break
        handles.extend(m["ReceiptHandle"] for m in got)
    for start in range(0, len(handles), 10):
        client.delete_message_batch(
            QueueUrl=dlq,
            Entries=[
                {"Id": str(i), "ReceiptHandle": h}
                for i, h in enumerate(handles[start : start + 10])
            ],
        )
        deletes += 1
    seconds = time.perf_counter() - started
    return Run(
        "bare boto3 receive-all-then-delete loop",
        len(handles),
        seconds,
        {"receive_calls": receives, "delete_calls": deletes},
    )


def run_replay(endpoint: str, client: Any, backup: Path) -> Run:
    target = client.create_queue(QueueName=f"bench-replay-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    try:
        queues = SqsQueues(region="us-east-1", endpoint=endpoint)
        facts = replay.target_facts(queues, target)
        plan = replay.plan(backup)
        started = time.perf_counter()
        result = replay.replay(queues=queues, replay_plan=plan, target=facts)
        seconds = time.perf_counter() - started
    finally:
        client.delete_queue(QueueUrl=target)
    return Run(
        "dbops replay of the backup",
        result.sent,
        seconds,
        {"send_calls": result.send_calls, "per_call": result.per_call, "failed": result.failed},
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_purge")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
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

    with sqs_endpoint() as (endpoint, implementation), tempfile.TemporaryDirectory() as tmp:
        on_localstack = implementation.startswith("LocalStack")
        count = args.count or int(
            os.environ.get("DBOPS_BENCH_COUNT", "5000" if on_localstack else "300")
        )
        client = _client(endpoint)
        print(f"SQS implementation: {implementation} at {endpoint}")
        print(f"messages per scenario: {count}; best of {args.rounds} round(s)\n")
        best: dict[str, Run] = {}
        backup_for_replay: Path | None = None

        def keep(run: Run) -> None:
            print(f"  {run.name}: {run.messages} in {run.seconds:.2f}s", flush=True)
            if run.name not in best or run.seconds < best[run.name].seconds:
                best[run.name] = run

        for round_number in range(args.rounds):
            for scenario in ("backup", "no-backup", "floor", "held-floor"):
                pair = make_pair(client, count)
                try:
                    if scenario == "floor":
                        keep(run_floor(client, pair.dlq, count))
                    elif scenario == "held-floor":
                        keep(run_held_floor(client, pair.dlq, count))
                    elif scenario == "backup":
                        path = Path(tmp) / f"backup-{round_number}.jsonl"
                        keep(run_purge(endpoint, pair.dlq, path))
                        backup_for_replay = backup_for_replay or path
                    else:
                        keep(run_purge(endpoint, pair.dlq, None))
                finally:
                    drop(client, pair)
        assert backup_for_replay is not None
        replayed = run_replay(endpoint, client, backup_for_replay)
        keep(replayed)

        print()
        print("{:42} {:>6} {:>8} {:>9}".format("scenario", "msgs", "wall s", "msgs/s"))
        for run in best.values():
            print(f"{run.name:42} {run.messages:6d} {run.seconds:8.2f} {run.rate:9.1f}")
        floor = best["bare boto3 receive+delete loop (floor)"]
        with_backup = best["dbops purge + backup"]
        without = best["dbops purge, no backup"]
        ratio = with_backup.rate / floor.rate if floor.rate else 0.0
        ratio_plain = without.rate / floor.rate if floor.rate else 0.0
        held = best["bare boto3 receive-all-then-delete loop"]
        ratio_held = with_backup.rate / held.rate if held.rate else 0.0
        print(
            f"\npurge throughput / floor: {ratio:.2f}x with a backup, {ratio_plain:.2f}x "
            "without  (target >= 0.8x)"
        )
        print(
            f"purge throughput / receive-all-then-delete loop: {ratio_held:.2f}x (what dbops "
            "adds to holding every message until its backup is on disk)"
        )
        print(
            f"replay: {replayed.extra['send_calls']} SendMessageBatch calls for "
            f"{replayed.messages} messages = {replayed.extra['per_call']} per call "
            "(target >= 9.5)"
        )
        report = {
            "implementation": implementation,
            "count": count,
            "runs": [asdict(r) | {"rate": round(r.rate, 1)} for r in best.values()],
            "purge_over_floor": round(ratio, 3),
            "purge_no_backup_over_floor": round(ratio_plain, 3),
            "purge_over_held_floor": round(ratio_held, 3),
            "replay_per_call": replayed.extra["per_call"],
        }
        if args.json_path:
            with open(args.json_path, "w") as handle:
                json.dump(report, handle, indent=2)
        return report


if __name__ == "__main__":
    main()
