"""The database connection dropped mid-command (architecture.md section 5.2): exit 5, one clear
line, and nothing half-applied outside a transaction; re-running converges.

dbops runs as a subprocess; the test terminates its backend from another session
(`pg_terminate_backend` on the `dbops` application_name) at a known point:

- `jobs recover`: the one test seam (tests/pause.py, dbops.cli._checkpoint) stops it at a
  named point; the test terminates the connection, then resumes it (deletes the marker)
  so its next statement meets the dropped connection.
- `ratelimit cleanup`: the test holds a row lock on the last old row, so the batch that
  reaches it waits inside its DELETE; the test sees it waiting (pg_stat_activity) and
  terminates it mid-statement. Earlier batches were committed; this one rolls back.

Synchronisation is by the pause marker and by bounded polling of observable state
(pg_stat_activity).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.forkserver import DbopsProcess
from tests.helpers import invoke, one_line_error
from tests.pause import start_paused

HOUR = 3600
JOBS = 25  # three SQS batches


def start_dbops(args: list[str], **extra_env: str) -> DbopsProcess:
    return DbopsProcess(args, env={**os.environ, **extra_env}, text=True)


def terminate_dbops_backends(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity "
            "where application_name = 'dbops' and datname = current_database() "
            "and pid <> pg_backend_pid()"
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def assert_database_error_line(stderr: str) -> str:
    line = one_line_error(stderr)
    assert "database" in line.lower(), line
    assert "password" not in line.lower() and "postgresql://" not in line, line
    return line


# --------------------------------------------------------------------------- jobs recover
def job_states(db: Any, ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """job -> (status, outbox state or None)."""
    status = {str(r["id"]): r["status"] for r in db.execute("select id, status from jobs")}
    outbox = {
        str(r["job_id"]): r["state"]
        for r in db.execute("select job_id, state from dbops_job_recoveries")
    }
    return {job: (status[job], outbox.get(job)) for job in ids}


@pytest.mark.parametrize(
    "point, claimed",
    [
        ("before_claim", False),  # dropped before the claim: the claim fails, nothing changes
        ("after_batch", True),  # dropped after batch 1 was sent and recorded
    ],
)
def test_connection_dropped_during_jobs_recover(
    env: Any,
    job_seed: Any,
    db: Any,
    database_url: str,
    tmp_path: Path,
    point: str,
    claimed: bool,
) -> None:
    ids = job_seed.many(JOBS, idle=HOUR)
    paused = start_paused(["jobs", "recover", "--yes", "-o", "json"], point, tmp_path)
    try:
        assert paused.wait() == paused.proc.pid
        assert terminate_dbops_backends(database_url) >= 1
        paused.resume()
        returncode, stdout, stderr = paused.finish(timeout=90)
    finally:
        paused.kill()

    assert returncode == 5, f"exit {returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    line = assert_database_error_line(stderr)
    if claimed:
        assert "re-run `dbops jobs recover`" in line, line
    assert stdout == ""

    # Nothing half-applied: each job is untouched (in progress, no outbox row) or re-queued
    # with its outbox row; a row marked sent has its message on the queue.
    on_queue = Counter(json.loads(m["Body"])["job_id"] for m in env.drain(env.main_url))
    states = job_states(db, ids)
    for job, (status, outbox) in states.items():
        assert (status, outbox) in {
            ("in_progress", None),
            ("pending", "pending_send"),
            ("pending", "sent"),
        }, (job, status, outbox)
        if outbox == "sent":
            assert on_queue[job] == 1, f"job {job} is marked sent but not on the queue"
    if not claimed:
        assert set(states.values()) == {("in_progress", None)} and not on_queue
    else:
        assert Counter(s for _st, s in states.values())["sent"] >= 10  # batch 1 was recorded
    # The failed run is in the action log (written on a fresh connection).
    (entry,) = db.execute(
        "select outcome, error from dbops_action_log where command = 'jobs recover'"
    ).fetchall()
    assert entry["outcome"] == "error"

    # Re-running converges: every job pending, its outbox row sent, its message queued.
    invoke(["jobs", "recover", "--yes", "-o", "json"])
    assert set(job_states(db, ids).values()) == {("pending", "sent")}
    on_queue += Counter(json.loads(m["Body"])["job_id"] for m in env.drain(env.main_url))
    assert set(on_queue) == set(ids)
    # A batch SQS accepted but the dropped connection could not record is sent again.
    assert sum(on_queue.values()) <= len(ids) + 10


# --------------------------------------------------------------------------- ratelimit cleanup
OLD, NEW, BATCH = 3000, 200, 1000


def test_connection_dropped_mid_statement_during_ratelimit_cleanup(
    db_env: str, db: Any, database_url: str
) -> None:
    db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "select 'ip:192.0.2.' || (g %% 200), '/api/jobs', "
        "       now() - interval '3 days' + make_interval(secs => g) "
        "from generate_series(1, %s) g",
        (OLD,),
    )
    db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "select 'ip:198.51.100.' || (g %% 50), '/api/jobs', now() - make_interval(secs => g) "
        "from generate_series(1, %s) g",
        (NEW,),
    )
    last_old = db.execute(
        "select max(id) as id from rate_limit_requests where created_at < now() - interval '1 day'"
    ).fetchone()["id"]

    with psycopg.connect(database_url) as locker:
        # Batches take old rows in physical (insertion) order: the third batch reaches the
        # last old row, which this open transaction holds, and waits there.
        locker.execute("select id from rate_limit_requests where id = %s for update", [last_old])
        proc = start_dbops(
            ["ratelimit", "cleanup", "--older-than", "2d", "--batch-size", str(BATCH), "--yes"]
        )
        try:
            waiting = wait_for_lock_wait(db, proc)
            assert terminate_dbops_backends(database_url) >= 1, waiting
            locker.rollback()
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert proc.returncode == 5, f"exit {proc.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    # stderr: the preview line, then the error (the progress lines are for a terminal).
    assert "Traceback" not in stderr
    assert_database_error_line(stderr.strip().splitlines()[-1])
    assert stdout == ""
    # Two batches were committed; the one cut off rolled back entirely; no newer row went.
    left = db.execute(
        "select count(*) filter (where created_at < now() - interval '1 day') as old, "
        "count(*) filter (where created_at >= now() - interval '1 day') as new "
        "from rate_limit_requests"
    ).fetchone()
    assert (left["old"], left["new"]) == (OLD - 2 * BATCH, NEW)
    (entry,) = db.execute(
        "select outcome, counts from dbops_action_log where command = 'ratelimit cleanup'"
    ).fetchall()
    assert entry["outcome"] == "error" and entry["counts"]["deleted"] == 2 * BATCH

    rerun = invoke(["ratelimit", "cleanup", "--older-than", "2d", "--yes", "-o", "json"]).json
    assert rerun["deleted_requests"] == OLD - 2 * BATCH
    left = db.execute("select count(*) as n from rate_limit_requests").fetchone()
    assert left["n"] == NEW


def wait_for_lock_wait(db: Any, proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """Poll until the dbops backend waits on a lock (bounded); return its query."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db.execute(
            "select query from pg_stat_activity where application_name = 'dbops' "
            "and datname = current_database() and wait_event_type = 'Lock'"
        ).fetchone()
        if row is not None:
            return str(row["query"])
        if proc.poll() is not None:
            _out, err = proc.communicate()
            raise AssertionError(f"cleanup exited {proc.returncode} without waiting:\n{err}")
        time.sleep(0.05)  # bounded polling of an observable condition
    raise AssertionError("cleanup never waited on the locked row")
