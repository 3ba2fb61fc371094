"""architecture.md section 5, invariant 1: a redrive killed at any point loses no message.

`dbops dlq redrive` runs as a subprocess against the session's SQS endpoint, paused at a
known point through the one test seam (`tests.pause.start_paused`); the test kills it with
SIGKILL (or interrupts it with SIGINT), and then checks that every original body is in the
DLQ or the target queue (duplicates are allowed, losses are not). The hidden `--lease`
option shortens the visibility lease so that what a killed process held comes back soon.

DBOPS_TEST_REDRIVE_KILL_COUNT raises the number of messages (default 200; moto slows down
sharply with queue depth, LocalStack handles the issue's 1,000 easily).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import QueuePair
from tests.forkserver import run_dbops
from tests.pause import Paused, start_paused

pytestmark = [pytest.mark.reliability, pytest.mark.sqs]

COUNT = int(os.environ.get("DBOPS_TEST_REDRIVE_KILL_COUNT", "200"))
LEASE = 3  # seconds: held messages of a killed process come back this soon


def _seed(client: Any, url: str, count: int) -> list[str]:
    """Unique ~300-byte bodies: with a 1 KiB target limit a received batch of 10 is sent in
    several byte-sized sub-batches, so `mid_batch` really is mid-way through a batch."""
    run = uuid.uuid4().hex[:8]
    bodies = [json.dumps({"job_id": f"{run}-{i:05d}", "pad": "p" * 260}) for i in range(count)]
    for start in range(0, count, 10):
        client.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": body}
                for i, body in enumerate(bodies[start : start + 10])
            ],
        )
    return bodies


def _env(sqs_endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL_SQS": sqs_endpoint, "PYTHONUNBUFFERED": "1"}


def _attrs(client: Any, url: str) -> dict[str, int]:
    got = client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return {k: int(v) for k, v in got.items()}


def _wait_until_all_visible(client: Any, url: str, timeout: float = 60) -> None:
    """Messages a killed process held come back when their (short) lease ends."""
    deadline = time.monotonic() + timeout
    while _attrs(client, url)["ApproximateNumberOfMessagesNotVisible"] > 0:
        assert time.monotonic() < deadline, "held messages never became visible again"
        time.sleep(0.1)


def _redrive(dlq: str, target: str, *, lease: int | None = LEASE) -> list[str]:
    """`dlq redrive` arguments; `lease=None` keeps the real 5-minute lease."""
    args = ["dlq", "redrive", "--yes", "-o", "json", "--queue", dlq, "--to", target]
    return args + (["--lease", f"{lease}s"] if lease is not None else [])


def _start(args: list[str], point: str, folder: Path, sqs_endpoint: str) -> Paused:
    name, _, nth = point.partition(":")
    return start_paused(args, name, folder, nth=int(nth or 1), **_env(sqs_endpoint))


@pytest.mark.parametrize(
    "point",
    ["after_receive:3", "after_send:4", "mid_batch:2", "after_delete:6"],
)
def test_sigkill_at_any_point_loses_no_message(
    queues: QueuePair, sqs_endpoint: str, tmp_path: Path, point: str
) -> None:
    client = queues.client
    target = client.create_queue(
        QueueName=f"kill-{uuid.uuid4().hex[:10]}", Attributes={"MaximumMessageSize": "1024"}
    )["QueueUrl"]
    bodies = _seed(client, queues.dlq_url, COUNT)
    paused = _start(_redrive(queues.dlq_url, target), point, tmp_path, sqs_endpoint)
    try:
        paused.wait()
    finally:
        paused.kill()
    assert paused.proc.returncode == -signal.SIGKILL

    _wait_until_all_visible(client, queues.dlq_url)
    in_dlq = [m["Body"] for m in queues.drain(queues.dlq_url)]
    in_target = [m["Body"] for m in queues.drain(target)]
    missing = set(bodies) - set(in_dlq) - set(in_target)
    assert not missing, f"{len(missing)} message(s) lost after SIGKILL at {point}"
    assert set(in_dlq) | set(in_target) == set(bodies)  # nothing foreign either
    assert in_target, "the kill point should come after some messages were sent"


def test_sigint_stops_after_the_batch_in_flight(
    queues: QueuePair, sqs_endpoint: str, tmp_path: Path
) -> None:
    """Ctrl-C between a send and its delete: the batch is finished (deleted), the rest is
    released at once, nothing is lost or duplicated, exit 130."""
    client = queues.client
    target = client.create_queue(QueueName=f"int-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    bodies = _seed(client, queues.dlq_url, 60)
    # A release must not rely on the lease running out: a long lease.
    args = _redrive(queues.dlq_url, target, lease=300)
    paused = _start(args, "after_send:2", tmp_path, sqs_endpoint)
    try:
        paused.wait()
        paused.proc.send_signal(signal.SIGINT)
        paused.resume()  # let the paused batch continue: it must finish, then stop
        code, out, err = paused.finish(timeout=60)
    finally:
        paused.kill()

    assert code == 130, err
    result = json.loads(out)
    assert result["interrupted"] is True and result["stopped"] == "interrupted"
    moved = result["moved"]
    assert 20 <= moved < 60  # the paused (second) batch was finished, then it stopped
    assert err.strip().splitlines()[-1] == "Error: interrupted"
    assert _attrs(client, queues.dlq_url) == {  # the rest released at once, not leased
        "ApproximateNumberOfMessages": 60 - moved,
        "ApproximateNumberOfMessagesNotVisible": 0,
    }
    in_dlq = [m["Body"] for m in queues.drain(queues.dlq_url)]
    in_target = [m["Body"] for m in queues.drain(target)]
    assert len(in_target) == moved
    assert sorted(in_dlq + in_target) == sorted(bodies)  # exactly once each


# --------------------------------------------------------------------------- resumable redrive
RESUME_COUNT = int(os.environ.get("DBOPS_TEST_REDRIVE_RESUME_COUNT", "100"))


def _kill_at(point: str, dlq: str, target: str, sqs_endpoint: str, folder: Path) -> None:
    """Run a redrive with the real 5-minute lease, SIGKILL it at `point`."""
    # The real lease: a re-run must not wait for it.
    paused = _start(_redrive(dlq, target, lease=None), point, folder, sqs_endpoint)
    try:
        paused.wait()
    finally:
        paused.kill()
    paused.resume()  # remove the marker
    assert paused.proc.returncode == -signal.SIGKILL


def _rerun(dlq: str, target: str, sqs_endpoint: str) -> dict[str, Any]:
    done = run_dbops(
        _redrive(dlq, target, lease=None), env={**os.environ, **_env(sqs_endpoint)}, timeout=240
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _journal_files(data_dir: Path) -> list[Path]:
    folder = data_dir / "redrive-journal"
    return sorted(folder.glob("*.jsonl")) if folder.exists() else []


@pytest.mark.parametrize(
    "point", ["after_receive:3", "after_send:4", "mid_batch:2", "after_delete:6"]
)
def test_rerun_after_sigkill_settles_the_journal_exactly_once(
    queues: QueuePair, sqs_endpoint: str, tmp_path: Path, point: str
) -> None:
    """Issue 12 part 4: killed (outside a SendMessageBatch call) and re-run, every message
    arrives exactly once, and the re-run does not wait for the killed run's 5-minute lease:
    it deletes what was already sent and releases what was held."""
    client = queues.client
    target = client.create_queue(
        QueueName=f"resume-{uuid.uuid4().hex[:10]}", Attributes={"MaximumMessageSize": "1024"}
    )["QueueUrl"]
    bodies = _seed(client, queues.dlq_url, RESUME_COUNT)
    data_dir = Path(os.environ["DBOPS_DATA_DIR"])

    _kill_at(point, queues.dlq_url, target, sqs_endpoint, tmp_path)
    [journal] = _journal_files(data_dir)
    assert journal.stat().st_mode & 0o777 == 0o600
    assert journal.parent.stat().st_mode & 0o777 == 0o700
    held = _attrs(client, queues.dlq_url)["ApproximateNumberOfMessagesNotVisible"]
    assert held > 0  # the killed run's lease is 5 minutes: without settling they would wait

    started = time.monotonic()
    result = _rerun(queues.dlq_url, target, sqs_endpoint)
    elapsed = time.monotonic() - started

    settled = result["settled"]
    assert settled is not None
    assert settled["released"] + settled["deleted_already_sent"] + settled["expired"] > 0
    if point.startswith("after_send"):
        assert settled["deleted_already_sent"] >= 1  # sent, not deleted: deleted now, no resend
    else:  # at these points every sent entry was deleted already
        assert settled["deleted_already_sent"] == 0 and settled["released"] >= 1
    assert result["stopped"] == "drained" and result["failed"] == 0
    assert _attrs(client, queues.dlq_url) == {
        "ApproximateNumberOfMessages": 0,
        "ApproximateNumberOfMessagesNotVisible": 0,
    }
    assert elapsed < 240  # far below the 300 s lease the killed run took
    in_target = [m["Body"] for m in queues.drain(target)]
    assert sorted(in_target) == sorted(bodies)  # nothing lost, nothing twice
    assert _journal_files(data_dir) == []  # a finished run leaves nothing to settle


def test_many_kills_and_reruns_deliver_every_message_once(
    queues: QueuePair, sqs_endpoint: str, tmp_path: Path
) -> None:
    """Several kills in a row at different points (one right after a re-run settled), then a
    run to the end: still exactly once, and nothing left leased."""
    client = queues.client
    target = client.create_queue(
        QueueName=f"chain-{uuid.uuid4().hex[:10]}", Attributes={"MaximumMessageSize": "1024"}
    )["QueueUrl"]
    bodies = _seed(client, queues.dlq_url, RESUME_COUNT)
    for point in ("after_send:2", "mid_batch:2", "after_settle:1", "after_delete:3"):
        _kill_at(point, queues.dlq_url, target, sqs_endpoint, tmp_path)
    result = _rerun(queues.dlq_url, target, sqs_endpoint)

    assert result["settled"] is not None and result["stopped"] == "drained"
    assert _attrs(client, queues.dlq_url) == {
        "ApproximateNumberOfMessages": 0,
        "ApproximateNumberOfMessagesNotVisible": 0,
    }
    in_target = [m["Body"] for m in queues.drain(target)]
    assert sorted(in_target) == sorted(bodies)


def test_a_second_redrive_of_the_same_dlq_is_refused_while_one_runs(
    queues: QueuePair, sqs_endpoint: str, tmp_path: Path
) -> None:
    """Two redrives of one DLQ would release each other's messages and send them twice."""
    client = queues.client
    target = client.create_queue(QueueName=f"lock-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    bodies = _seed(client, queues.dlq_url, 30)
    first = _start(_redrive(queues.dlq_url, target), "after_send:1", tmp_path, sqs_endpoint)
    try:
        first.wait()
        second = run_dbops(
            _redrive(queues.dlq_url, target), env={**os.environ, **_env(sqs_endpoint)}, timeout=60
        )
        assert second.returncode == 6, second.stderr
        [line] = second.stderr.strip().splitlines()[-1:]
        assert (
            line.startswith("Error: another dbops redrive of ") and f"pid {first.proc.pid}" in line
        )
        first.resume()
        code, out, err = first.finish(timeout=120)
    finally:
        first.kill()
    assert code == 0, err
    assert json.loads(out)["moved"] == 30
    assert sorted(m["Body"] for m in queues.drain(target)) == sorted(bodies)
