"""`dbops jobs recover` killed with SIGKILL mid-run: the re-run sends exactly what is missing.

The child is stopped deterministically by the test-only hook in dbops.services.jobs
(DBOPS_TEST_PAUSE_AT / DBOPS_TEST_PAUSE_MARKER): it writes its pid to a FIFO at the pause
point and blocks until killed. No sleeps stand in for synchronisation.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import invoke

pytestmark = pytest.mark.reliability

HOUR = 3600


def start_dbops(args: list[str], **extra_env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dbops", *args],
        env={**os.environ, **extra_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for_pause(fifo: Path, proc: subprocess.Popen[bytes], timeout: float = 90) -> int:
    """Block until the child writes its pid to the pause FIFO; return the pid."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        waited = 0.0
        data = b""
        while waited < timeout:
            ready, _, _ = select.select([fd], [], [], 0.25)
            waited += 0.25
            if ready:
                chunk = os.read(fd, 64)
                data += chunk
                if data and not chunk:  # writer closed: the whole pid is here
                    return int(data)
            if proc.poll() is not None:
                raise AssertionError(
                    f"dbops exited early ({proc.returncode}): {proc.stderr.read().decode()}"
                )
        raise AssertionError("dbops never reached the pause point")
    finally:
        os.close(fd)


def messages_per_job(env: Any) -> Counter[str]:
    return Counter(json.loads(m["Body"])["job_id"] for m in env.drain(env.main_url))


@pytest.mark.parametrize(
    "point, on_queue_after_kill, outbox_after_kill",
    [
        ("before_claim", 0, 0),  # nothing claimed yet: the re-run claims everything
        ("after_claim", 0, 25),  # claim committed, nothing sent: the re-run sends 25
        ("after_batch", 10, 15),  # one batch sent and recorded: the re-run sends 15
    ],
)
def test_sigkill_then_rerun_sends_exactly_the_missing_messages(
    env, job_seed, db, tmp_path, point, on_queue_after_kill, outbox_after_kill
):
    ids = job_seed.many(25, idle=HOUR)
    fifo = tmp_path / "paused"
    os.mkfifo(fifo)
    proc = start_dbops(
        ["jobs", "recover", "--yes", "-o", "json"],
        DBOPS_TEST_PAUSE_AT=point,
        DBOPS_TEST_PAUSE_MARKER=str(fifo),
    )
    try:
        assert wait_for_pause(fifo, proc) == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # State right after the crash.
    unsent = db.execute(
        "select count(*) as n from dbops_job_recoveries where state = 'pending_send'"
    ).fetchone()["n"]
    assert unsent == outbox_after_kill
    assert env.visible(env.main_url) == on_queue_after_kill
    statuses = Counter(r["status"] for r in db.execute("select status from jobs").fetchall())
    assert statuses == ({"in_progress": 25} if point == "before_claim" else {"pending": 25})

    result = invoke(["jobs", "recover", "--yes", "-o", "json"]).json

    assert result["resumed"] == outbox_after_kill
    assert result["claimed"] == (25 if point == "before_claim" else 0)
    assert result["sent"] == 25 - on_queue_after_kill
    assert result["unsent_remaining"] == 0
    # Every job is pending with exactly one message on the queue: none lost, none doubled.
    assert messages_per_job(env) == Counter(ids)
    assert {
        r["state"] for r in db.execute("select state from dbops_job_recoveries").fetchall()
    } == {"sent"}
    pending = {str(r["id"]) for r in db.execute("select id from jobs where status = 'pending'")}
    assert pending == set(ids)


def test_pause_hook_is_inert_when_unset(env, job_seed):
    assert "DBOPS_TEST_PAUSE_AT" not in os.environ
    ids = job_seed.many(3, idle=HOUR)
    result = invoke(["jobs", "recover", "--yes", "-o", "json"]).json
    assert result["sent"] == 3
    assert messages_per_job(env) == Counter(ids)
