"""architecture.md section 5, invariants 1 and 8, for `dbops dlq purge`: a purge SIGKILLed at
any point leaves every message in the DLQ or in the backup (and every deleted one in the
backup).

`dbops dlq purge` runs as a subprocess paused at a checkpoint (the one test seam:
`tests/pause.py`, `dbops.cli._checkpoint`); the test waits until it is there, then SIGKILLs
the process. Points: `backup_batch` (a received batch was written to
the backup), `after_backup` (the backup is complete and fsynced, nothing deleted yet),
`mid_delete` (the first DeleteMessageBatch answered). A short `--lease` lets the messages
the killed process held come back quickly.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import QueuePair
from tests.pause import Paused, start_paused

pytestmark = [pytest.mark.reliability, pytest.mark.sqs]

COUNT = 60
LEASE = "3s"  # held messages of a killed purge come back this soon


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


def _start(point: str, tmp_path: Path, *args: str) -> Paused:
    return start_paused(["dlq", "purge", "--yes", *args], point, tmp_path)


def _kill(paused: Paused) -> None:
    paused.kill()
    assert paused.proc.returncode == -signal.SIGKILL


def _counts(client: Any, url: str) -> tuple[int, int]:
    attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def _after_the_lease(client: Any, url: str, timeout: float = 60) -> list[str]:
    """The bodies left in the queue, once the killed process's leases have run out."""
    deadline = time.monotonic() + timeout
    while _counts(client, url)[1] > 0:
        assert time.monotonic() < deadline, "held messages never became visible again"
        time.sleep(0.1)
    return [m["Body"] for m in QueuePair("", url, "", "", client).drain(url)]


def _backup(path: Path) -> list[str]:
    return [json.loads(line)["body"] for line in path.read_text().splitlines()]


def _run(env: Any, tmp_path: Path, point: str) -> tuple[list[str], list[str], list[str]]:
    bodies = _seed(env.client, env.dlq_url)
    backup = tmp_path / "backup.jsonl"
    paused = _start(point, tmp_path, "--backup", str(backup), "--lease", LEASE)
    try:
        paused.wait()
    finally:
        _kill(paused)
    return bodies, _backup(backup), _after_the_lease(env.client, env.dlq_url)


def test_purge_killed_mid_backup_loses_nothing(env, tmp_path):
    bodies, partial, left = _run(env, tmp_path, "backup_batch")
    # the partial backup holds whole lines only, all of them real messages; nothing deleted
    assert 0 < len(partial) <= 10
    assert set(partial) <= set(bodies)
    assert sorted(left) == sorted(bodies)


def test_purge_killed_after_backup_loses_nothing(env, tmp_path):
    bodies, saved, left = _run(env, tmp_path, "after_backup")
    assert sorted(saved) == sorted(bodies)  # complete (and fsynced) before any delete
    assert sorted(left) == sorted(bodies)  # nothing deleted: all back once the lease ends


def test_purge_killed_mid_delete_loses_nothing(env, tmp_path):
    bodies, saved, left = _run(env, tmp_path, "mid_delete")
    assert sorted(saved) == sorted(bodies)
    deleted = set(bodies) - set(left)
    assert 10 <= len(deleted) < COUNT  # killed part-way through the deletes
    assert deleted <= set(saved)  # every deleted message is in the backup
    assert sorted(left) == sorted(set(bodies) - deleted)  # the rest once each


def test_purge_interrupted_mid_delete_releases_the_rest_at_once(env, db, tmp_path):
    """Ctrl-C (SIGINT) during the deletes: exit 130, what was deleted is in the backup, and
    every other held message is released at once (visible, not left to a 5-minute lease).
    The action-log row says `interrupted` with the counts of the partial result."""
    bodies = _seed(env.client, env.dlq_url)
    backup = tmp_path / "backup.jsonl"
    paused = _start("mid_delete", tmp_path, "--backup", str(backup), "--lease", "5m")
    try:
        paused.wait()
        paused.proc.send_signal(signal.SIGINT)
        code, _out, err = paused.finish(timeout=60)
    finally:
        paused.kill()
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "Error: interrupted"
    visible, in_flight = _counts(env.client, env.dlq_url)
    assert in_flight == 0 and 0 < visible <= COUNT - 10
    left = [m["Body"] for m in env.drain(env.dlq_url)]
    saved = _backup(backup)
    assert sorted(saved) == sorted(bodies)
    assert set(bodies) - set(left) <= set(saved) and len(left) == visible
    [row] = db.execute(
        "select outcome, error, counts from dbops_action_log where command = 'dlq purge'"
    ).fetchall()
    assert (row["outcome"], row["error"]) == ("interrupted", "interrupted by operator")
    assert row["counts"] == {
        "snapshot": COUNT,
        "scanned": COUNT,
        "backed_up": COUNT,
        "purged": COUNT - visible,
        "failed": 0,
        "left_in_place": None,
    }
