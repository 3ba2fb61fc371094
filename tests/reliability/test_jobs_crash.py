"""`dbops jobs recover` killed with SIGKILL mid-run: the re-run sends exactly what is missing.

The child is stopped deterministically by the one test seam (tests/pause.py; the
`checkpoint` that dbops.cli._checkpoint passes to `jobs.recover`): at the pause point it
writes its pid to a marker file and blocks until the test kills it. No sleeps stand in
for synchronisation.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from typing import Any

import pytest

from tests.forkserver import DbopsProcess
from tests.helpers import invoke
from tests.pause import start_paused

pytestmark = pytest.mark.reliability

HOUR = 3600


def start_dbops(args: list[str], **extra_env: str) -> DbopsProcess:
    return DbopsProcess(args, env={**os.environ, **extra_env})


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
    paused = start_paused(["jobs", "recover", "--yes", "-o", "json"], point, tmp_path)
    try:
        assert paused.wait() == paused.proc.pid
    finally:
        paused.kill()
    assert paused.proc.returncode == -signal.SIGKILL

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
    assert result["limit"] == 1000  # the limit given (default), also on a resume-only run
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


@pytest.mark.parametrize(
    "point, nth, on_queue_after_kill, duplicated",
    [
        # chunk 1 sent; chunk 2 claimed in the call that recorded chunk 1, nothing of it sent
        ("after_claim", 2, 20, 0),
        # chunk 2's first batch sent, not recorded yet: the re-run sends it again
        ("after_send", 3, 30, 10),
    ],
)
def test_bulk_retry_killed_mid_way_then_rerun_loses_no_job(
    env, job_seed, db, tmp_path, point, nth, on_queue_after_kill, duplicated
):
    ids = job_seed.many(60, status="failed", idle=HOUR)
    args = ["jobs", "retry", "--status", "failed", "--chunk-size", "20", "--yes", "-o", "json"]
    paused = start_paused(args, point, tmp_path, nth=nth)
    try:
        assert paused.wait() == paused.proc.pid
    finally:
        paused.kill()

    def count(query: str) -> int:
        return int(db.execute(query).fetchone()["n"])

    # Chunk 1 recorded as sent, chunk 2 waiting in the outbox, chunk 3 still failed.
    assert count("select count(*) as n from dbops_job_recoveries where state = 'sent'") == 20
    assert (
        count("select count(*) as n from dbops_job_recoveries where state = 'pending_send'") == 20
    )
    assert count("select count(*) as n from jobs where status = 'failed'") == 20
    assert env.visible(env.main_url) == on_queue_after_kill

    result = invoke(args).json

    assert (result["resumed"], result["matched"], result["retried"]) == (20, 20, 20)
    assert (result["sent"], result["unsent_remaining"]) == (40, 0)
    per_job = messages_per_job(env)
    assert set(per_job) == set(ids)  # every job enqueued: none lost
    assert sum(per_job.values()) == 60 + duplicated  # at least once: only the unrecorded batch
    assert count("select count(*) as n from jobs where status <> 'pending'") == 0
    assert {
        r["state"] for r in db.execute("select state from dbops_job_recoveries").fetchall()
    } == {"sent"}
