"""DESIGN.md section 5, invariant 1: a redrive killed at any point loses no message.

`dbops dlq redrive` runs as a subprocess against the session's SQS endpoint. A test-only
hook (DBOPS_TEST_PAUSE_AT / DBOPS_TEST_PAUSE_MARKER) makes it write a marker file at a known
point and block there; the test waits for the marker, kills the process with SIGKILL (or
interrupts it with SIGINT), and then checks that every original body is in the DLQ or the
target queue (duplicates are allowed, losses are not).

DBOPS_TEST_REDRIVE_KILL_COUNT raises the number of messages (default 200; moto slows down
sharply with queue depth, LocalStack handles the issue's 1,000 easily).
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

from tests.conftest import QueuePair

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


def _env(sqs_endpoint: str, marker: Path, point: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DATABASE_URL", "SUPABASE_URL", "SQS_QUEUE_URL", "SQS_DLQ_URL", "AWS_PROFILE"):
        env.pop(name, None)
    env.update(
        {
            "AWS_ENDPOINT_URL_SQS": sqs_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "DBOPS_TEST_PAUSE_AT": point,
            "DBOPS_TEST_PAUSE_MARKER": str(marker),
            "DBOPS_TEST_REDRIVE_LEASE": str(LEASE),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            _out, err = process.communicate()
            pytest.fail(f"redrive exited {process.returncode} before the pause point:\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the redrive never reached the pause point")
        time.sleep(0.02)


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


def _redrive(dlq: str, target: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dbops",
        "dlq",
        "redrive",
        "--yes",
        "-o",
        "json",
        "--queue",
        dlq,
        "--to",
        target,
    ]


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
    marker = tmp_path / "paused"

    process = subprocess.Popen(
        _redrive(queues.dlq_url, target),
        env=_env(sqs_endpoint, marker, point),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(marker, process)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    assert process.returncode == -signal.SIGKILL

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
    marker = tmp_path / "paused"
    env = _env(sqs_endpoint, marker, "after_send:2")
    env["DBOPS_TEST_REDRIVE_LEASE"] = "300"  # a release must not rely on the lease running out

    process = subprocess.Popen(
        _redrive(queues.dlq_url, target),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(marker, process)
        process.send_signal(signal.SIGINT)
        marker.unlink()  # let the paused batch continue: it must finish, then stop
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)

    assert process.returncode == 130, err
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


def _kill_at(
    point: str, dlq: str, target: str, sqs_endpoint: str, marker: Path
) -> subprocess.CompletedProcess[str]:
    """Run a redrive with the real 5-minute lease, SIGKILL it at `point`."""
    env = _env(sqs_endpoint, marker, point)
    env.pop("DBOPS_TEST_REDRIVE_LEASE")  # the real lease: a re-run must not wait for it
    process = subprocess.Popen(
        _redrive(dlq, target), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(marker, process)
        process.send_signal(signal.SIGKILL)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    marker.unlink(missing_ok=True)
    assert process.returncode == -signal.SIGKILL
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _rerun(dlq: str, target: str, sqs_endpoint: str, marker: Path) -> dict[str, Any]:
    env = _env(sqs_endpoint, marker, "")
    env.pop("DBOPS_TEST_REDRIVE_LEASE")
    done = subprocess.run(
        _redrive(dlq, target), env=env, capture_output=True, text=True, timeout=240
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
    marker = tmp_path / "paused"
    data_dir = Path(os.environ["DBOPS_DATA_DIR"])

    _kill_at(point, queues.dlq_url, target, sqs_endpoint, marker)
    [journal] = _journal_files(data_dir)
    assert journal.stat().st_mode & 0o777 == 0o600
    assert journal.parent.stat().st_mode & 0o777 == 0o700
    held = _attrs(client, queues.dlq_url)["ApproximateNumberOfMessagesNotVisible"]
    assert held > 0  # the killed run's lease is 5 minutes: without settling they would wait

    started = time.monotonic()
    result = _rerun(queues.dlq_url, target, sqs_endpoint, marker)
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
    marker = tmp_path / "paused"

    for point in ("after_send:2", "mid_batch:2", "after_settle:1", "after_delete:3"):
        _kill_at(point, queues.dlq_url, target, sqs_endpoint, marker)
    result = _rerun(queues.dlq_url, target, sqs_endpoint, marker)

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
    marker = tmp_path / "paused"
    env = _env(sqs_endpoint, marker, "after_send:1")
    first = subprocess.Popen(
        _redrive(queues.dlq_url, target),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(marker, first)
        second = subprocess.run(
            _redrive(queues.dlq_url, target),
            env=_env(sqs_endpoint, tmp_path / "unused", ""),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 6, second.stderr
        [line] = second.stderr.strip().splitlines()[-1:]
        assert line.startswith("Error: another dbops redrive of ") and f"pid {first.pid}" in line
        marker.unlink()
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
    assert first.returncode == 0, err
    assert json.loads(out)["moved"] == 30
    assert sorted(m["Body"] for m in queues.drain(target)) == sorted(bodies)
