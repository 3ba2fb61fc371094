"""`dbops dlq purge` when things fail part-way (architecture.md section 5, invariants 1 and 8):

- the backup cannot be written (a file-size limit, RLIMIT_FSIZE, on the subprocess): exit 6
  with one line naming the file and the OS error, the partial file removed, nothing
  deleted, every held message released at once;
- SQS refuses some DeleteMessageBatch calls (the fault proxy answers every second one with
  a non-retryable 403): each entry's outcome is reported, the refused ones are released
  and stay in the queue, exit 5; every deleted message is in the backup.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import QueuePair
from tests.faultproxy import FaultProxy
from tests.helpers import invoke

pytestmark = [pytest.mark.reliability, pytest.mark.sqs]

COUNT = 60


def _seed(env: QueuePair) -> list[str]:
    run = uuid.uuid4().hex[:8]
    bodies = [json.dumps({"job_id": f"{run}-{i:03d}", "pad": "p" * 300}) for i in range(COUNT)]
    for start in range(0, COUNT, 10):
        env.client.send_message_batch(
            QueueUrl=env.dlq_url,
            Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
            ],
        )
    return bodies


def _counts(env: QueuePair) -> tuple[int, int]:
    attrs = env.client.get_queue_attributes(QueueUrl=env.dlq_url, AttributeNames=["All"])[
        "Attributes"
    ]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def test_backup_write_failure_exits_6_deletes_nothing_and_removes_the_file(env, tmp_path):
    bodies = _seed(env)
    backup = tmp_path / "backup.jsonl"

    def small_files() -> None:  # in the child: files may not grow past 8 KiB
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, resource.RLIM_INFINITY))

    process = subprocess.run(
        [sys.executable, "-m", "dbops", "dlq", "purge", "--backup", str(backup), "--yes"],
        env=dict(os.environ),
        preexec_fn=small_files,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 6, process.stderr
    errors = [line for line in process.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in process.stderr
    assert str(backup) in errors[0] and "File too large" in errors[0]
    assert "nothing was deleted" in errors[0]
    assert not backup.exists()
    assert _counts(env) == (COUNT, 0)  # released at once, not left to the lease
    assert sorted(m["Body"] for m in env.drain(env.dlq_url)) == sorted(bodies)


@pytest.fixture
def proxy(
    env: QueuePair, sqs_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultProxy]:
    started = FaultProxy(sqs_endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", started.url)
    yield started
    started.stop()


def test_refused_delete_batches_are_reported_released_and_kept(
    env: QueuePair, proxy: FaultProxy, tmp_path: Path, db: Any
) -> None:
    bodies = _seed(env)
    backup = tmp_path / "backup.jsonl"
    with proxy.failing(every=2, kinds=["denied"], only={"DeleteMessageBatch"}):
        result = invoke(["dlq", "purge", "--backup", str(backup), "--yes", "-o", "json"], code=5)
    assert proxy.faults["denied"] >= 2
    summary = result.json
    assert summary["purged"] + summary["failed"] == summary["scanned"] == COUNT
    assert summary["failed"] >= 10 and summary["failures"]
    assert "access denied" in summary["failures"][0]
    error = result.stderr.splitlines()[-1]
    assert error.startswith(f"Error: {summary['failed']} message(s) could not be deleted")
    saved = [json.loads(x)["body"] for x in backup.read_text().splitlines()]
    assert sorted(saved) == sorted(bodies)
    assert _counts(env) == (summary["failed"], 0)  # refused ones released at once
    left = [m["Body"] for m in env.drain(env.dlq_url)]
    assert len(left) == summary["failed"] and set(left) <= set(saved)
    rows = db.execute("select counts from dbops_action_log where command = 'dlq purge'").fetchall()
    assert rows[0]["counts"]["failed"] == summary["failed"]
