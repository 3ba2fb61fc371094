"""architecture.md section 5, invariant 8, for `dbops dlq replay`: killed (SIGKILL) and re-run,
a replay sends each line of its file once.

`dbops dlq replay` runs as a subprocess with one worker (so batches go in file order),
paused the n-th time it reaches a checkpoint (the one test seam: `tests/pause.py`,
`dbops.cli._checkpoint`), then SIGKILLed there. Points: `replay_after_progress` (a batch
was sent and its entries recorded in FILE.replay-progress, fsynced) or `replay_after_send`
(a batch was sent, not yet recorded: the one window in which a re-run sends a batch again,
which a FIFO target absorbs through the deterministic MessageDeduplicationId).
"""

from __future__ import annotations

import json
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import QueuePair
from tests.forkserver import run_dbops
from tests.pause import start_paused

pytestmark = [pytest.mark.reliability, pytest.mark.sqs]

COUNT = 60


def _backup_file(path: Path, queue: str, *, fifo: bool = False) -> list[str]:
    """A purge-backup-shaped file of COUNT messages (three FIFO groups when `fifo`)."""
    run = uuid.uuid4().hex[:8]
    bodies = [json.dumps({"job_id": f"{run}-{i:03d}"}) for i in range(COUNT)]
    with path.open("w") as out:
        for i, body in enumerate(bodies):
            system = {"MessageGroupId": f"g{i % 3}"} if fifo else {}
            line = {
                "message_id": str(uuid.uuid4()),
                "queue": queue,
                "body": body,
                "message_attributes": {"n": {"DataType": "Number", "StringValue": str(i)}},
                "system_attributes": system,
            }
            out.write(json.dumps(line) + "\n")
    return bodies


def _args(path: Path, target: str) -> list[str]:
    return ["dlq", "replay", str(path), "--to", target, "--workers", "1", "--yes", "-o", "json"]


def _kill_at(path: Path, target: str, pause: str, tmp_path: Path) -> None:
    point, _, nth = pause.partition(":")
    paused = start_paused(_args(path, target), point, tmp_path, nth=int(nth or 1))
    try:
        paused.wait()
    finally:
        paused.kill()
    assert paused.proc.returncode == -signal.SIGKILL


def _rerun(path: Path, target: str, tmp_path: Path) -> dict[str, Any]:
    process = run_dbops(_args(path, target), timeout=120)
    assert process.returncode == 0, process.stderr
    return dict(json.loads(process.stdout))


def _received(client: Any, url: str) -> Counter[str]:
    return Counter(m["Body"] for m in QueuePair("", url, "", "", client).drain(url))


def test_killed_after_recording_progress_then_rerun_sends_each_line_once(env, tmp_path):
    path = tmp_path / "backup.jsonl"
    bodies = _backup_file(path, env.dlq_name)
    _kill_at(path, env.main_name, "replay_after_progress:3", tmp_path)
    result = _rerun(path, env.main_name, tmp_path)
    assert (result["already_sent"], result["sent"]) == (30, 30)
    assert _received(env.client, env.main_url) == Counter(bodies)  # each exactly once


def test_killed_between_send_and_progress_a_fifo_target_still_gets_each_once(env, tmp_path):
    fifo_name = f"t-{uuid.uuid4().hex[:8]}.fifo"
    fifo = env.client.create_queue(QueueName=fifo_name, Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    path = tmp_path / "backup.jsonl"
    bodies = _backup_file(path, env.dlq_name, fifo=True)
    _kill_at(path, fifo_name, "replay_after_send:3", tmp_path)
    result = _rerun(path, fifo_name, tmp_path)
    assert (result["already_sent"], result["sent"]) == (20, 40)  # batch 3 sent again...
    assert _received(env.client, fifo) == Counter(bodies)  # ...and dropped by SQS as a repeat


def test_killed_between_send_and_progress_a_standard_target_loses_nothing(env, tmp_path):
    """The documented window: at most the one unrecorded batch is sent twice."""
    path = tmp_path / "backup.jsonl"
    bodies = _backup_file(path, env.dlq_name)
    _kill_at(path, env.main_name, "replay_after_send:3", tmp_path)
    _rerun(path, env.main_name, tmp_path)
    got = _received(env.client, env.main_url)
    assert set(got) == set(bodies)
    twice = [b for b, n in got.items() if n > 1]
    assert len(twice) == 10 and all(got[b] == 2 for b in twice)
