"""SIGKILL `dbops ratelimit cleanup` between batches: only old rows go, a re-run finishes."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import invoke

pytestmark = pytest.mark.reliability

OLD, NEW = 2500, 300


def counts(db):
    return db.execute(
        "select count(*) filter (where created_at < now() - interval '24 hours') as old, "
        "count(*) filter (where created_at >= now() - interval '24 hours') as new "
        "from rate_limit_requests"
    ).fetchone()


def wait_for_pause(fifo: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Block until the child writes the pause marker (a FIFO: no polling, no sleeping)."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        waited = 0.0
        while waited < timeout:
            ready, _, _ = select.select([fd], [], [], 0.5)
            waited += 0.5
            if ready and os.read(fd, 64):
                return
            if proc.poll() is not None:
                raise AssertionError(f"cleanup exited early: {proc.stderr.read().decode()}")
        raise AssertionError("cleanup never reached the pause point")
    finally:
        os.close(fd)


def test_sigkill_mid_cleanup_deletes_only_old_rows_and_rerun_finishes(
    db_env, db, tmp_path, monkeypatch
):
    db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "select 'ip:192.0.2.' || (g %% 200), '/api/jobs', "
        "       now() - interval '25 hours' - make_interval(secs => g) "
        "from generate_series(1, %s) g",
        (OLD,),
    )
    db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "select 'ip:198.51.100.' || (g %% 50), '/api/jobs', "
        "       now() - interval '23 hours' + make_interval(secs => g * 60) "
        "from generate_series(1, %s) g",
        (NEW,),
    )
    newest_old = db.execute(
        "select max(created_at) as t from rate_limit_requests "
        "where created_at < now() - interval '24 hours'"
    ).fetchone()["t"]
    assert counts(db) == {"old": OLD, "new": NEW}

    fifo = tmp_path / "paused"
    os.mkfifo(fifo)
    child_env = {
        **os.environ,
        "DBOPS_TEST_PAUSE_AT": "after_batch:1",
        "DBOPS_TEST_PAUSE_FILE": str(fifo),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dbops",
            "ratelimit",
            "cleanup",
            "--older-than",
            "24h",
            "--batch-size",
            "1000",
            "--yes",
        ],
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_pause(fifo, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # Exactly one committed batch: 1,000 of the old rows are gone, every newer row is there.
    assert counts(db) == {"old": OLD - 1000, "new": NEW}
    oldest_left_new = db.execute(
        "select count(*) as n from rate_limit_requests where created_at > %s", (newest_old,)
    ).fetchone()["n"]
    assert oldest_left_new == NEW

    # Re-running (no hook) finishes the job.
    monkeypatch.delenv("DBOPS_TEST_PAUSE_AT", raising=False)
    out = invoke(
        [
            "ratelimit",
            "cleanup",
            "--older-than",
            "24h",
            "--batch-size",
            "1000",
            "--yes",
            "-o",
            "json",
        ]
    ).json
    assert out["deleted_requests"] == OLD - 1000
    assert counts(db) == {"old": 0, "new": NEW}
