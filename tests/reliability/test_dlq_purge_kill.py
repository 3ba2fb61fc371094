"""DESIGN.md section 5, invariant 1, for `dbops dlq purge`: a purge killed after its backup
is written (and before PurgeQueue) leaves a complete backup and every message in the DLQ;
killed mid-backup, every message is still in the DLQ.

`dbops dlq purge` runs as a subprocess. The test-only hook DBOPS_TEST_PAUSE_AT=<point>
makes it write DBOPS_TEST_PAUSE_MARKER and block at that point; the test waits for the
marker, then SIGKILLs the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.reliability, pytest.mark.sqs]

COUNT = 60


def _seed(client: Any, url: str) -> list[str]:
    run = uuid.uuid4().hex[:8]
    bodies = [json.dumps({"job_id": f"{run}-{i:03d}", "customer_id": "acme"}) for i in range(COUNT)]
    bodies[7] = "not json: kept as is"
    for start in range(0, COUNT, 10):
        client.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": body}
                for i, body in enumerate(bodies[start : start + 10])
            ],
        )
    return bodies


def _start(point: str, marker: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.update({"DBOPS_TEST_PAUSE_AT": point, "DBOPS_TEST_PAUSE_MARKER": str(marker)})
    return subprocess.Popen(
        [sys.executable, "-m", "dbops", "dlq", "purge", "--yes", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_marker(marker: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    """Wait until the process reports it reached the pause point (or fail if it exits)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"purge exited {process.returncode} before the pause point:\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("purge never reached the pause point")
        time.sleep(0.05)


def _kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _total(queues: Any, url: str) -> int:
    attrs = queues.client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(
        int(attrs[k])
        for k in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )


def test_purge_killed_after_backup_loses_nothing(env, tmp_path):
    bodies = _seed(env.client, env.dlq_url)
    marker, backup = tmp_path / "paused", tmp_path / "backup.jsonl"
    process = _start("after_backup", marker, "--backup", str(backup))
    try:
        _wait_for_marker(marker, process)
    finally:
        _kill(process)
    lines = [json.loads(line) for line in backup.read_text().splitlines()]
    assert sorted(r["body"] for r in lines) == sorted(bodies)
    assert len({r["message_id"] for r in lines}) == COUNT
    # the backup released every message before the pause: all visible, none purged
    remaining = env.drain(env.dlq_url)
    assert sorted(m["Body"] for m in remaining) == sorted(bodies)


def test_purge_killed_mid_backup_loses_nothing(env, tmp_path):
    bodies = _seed(env.client, env.dlq_url)
    marker, backup = tmp_path / "paused", tmp_path / "backup.jsonl"
    process = _start("export_batch", marker, "--backup", str(backup), "--lease", "1m")
    try:
        _wait_for_marker(marker, process)
    finally:
        _kill(process)
    # the partial backup holds whole lines only, all of them real messages
    partial = [json.loads(line) for line in backup.read_text().splitlines()]
    assert 0 < len(partial) <= 10
    assert {r["body"] for r in partial} <= set(bodies)
    # nothing was purged: held messages are in flight until their lease ends, the rest visible
    assert _total(env, env.dlq_url) == COUNT
