"""N operators at once (N = 2, 4, 8), each running `jobs requeue`, `jobs recover` and
`jobs fail` over the same 200 jobs, as separate `dbops` processes.

Each job is enqueued at most once per state change: a failed job re-queued by one operator
is skipped by the others (its status changed since their preview, or dbops already
enqueued it), a stale job is claimed by one run only, and the action log accounts for
every job of every run.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from typing import Any

import pytest

from tests.reliability.test_jobs_crash import start_dbops

pytestmark = pytest.mark.reliability

HOUR = 3600


@pytest.mark.parametrize("operators", [2, 4, 8])
def test_concurrent_operators_enqueue_each_job_at_most_once_per_state_change(
    env, job_seed, db, operators: int
) -> None:
    failed = job_seed.many(80, status="failed", idle=HOUR, customer_prefix="f-")
    stale = job_seed.many(60, status="in_progress", idle=HOUR, customer_prefix="s-")
    pending = job_seed.many(60, status="pending", idle=30, customer_prefix="p-")

    commands = [
        ["jobs", "requeue", *failed, "--yes", "-o", "json"],
        ["jobs", "recover", "--older-than", "15m", "--yes", "-o", "json"],
        ["jobs", "fail", *pending, "--reason", "operator drill", "--yes", "-o", "json"],
    ]
    procs = []
    try:
        for n in range(operators):
            for args in commands:
                procs.append((args[1], start_dbops(args, DBOPS_OPERATOR=f"op{n}")))
        results: dict[str, list[dict[str, Any]]] = {"requeue": [], "recover": [], "fail": []}
        for command, proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, (command, err.decode())
            results[command].append(json.loads(out))
    finally:
        for _command, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

    messages = env.drain(env.main_url)
    per_job = Counter(json.loads(m["Body"])["job_id"] for m in messages)
    # One state change to pending per failed or stale job, so one message each; none for
    # the jobs that were failed.
    assert per_job == Counter(failed + stale)
    per_recovery = Counter(
        (json.loads(m["Body"])["job_id"], json.loads(m["Body"])["retry_attempt"]) for m in messages
    )
    assert set(per_recovery.values()) == {1}

    requeues = results["requeue"]
    assert sum(r["requeued"] for r in requeues) == 80
    assert all(r["requeued"] + r["skipped"] == r["requested"] == 80 for r in requeues)
    assert sum(r["skipped_changed"] + r["skipped_enqueued"] for r in requeues) <= 80 * (
        operators - 1
    )
    assert sum(r["claimed"] for r in results["recover"]) == 60
    assert sum(r["failed"] for r in results["fail"]) == 60
    assert all(r["failed"] + r["skipped"] == r["requested"] for r in results["fail"])
    statuses = db.execute(
        "select status, count(*) as n from jobs group by status order by status"
    ).fetchall()
    assert {r["status"]: r["n"] for r in statuses} == {"failed": 60, "pending": 140}

    # The action log accounts for every job of every run.
    log = db.execute(
        "select command, counts, outcome from dbops_action_log where not dry_run"
    ).fetchall()
    assert len(log) == 3 * operators and {r["outcome"] for r in log} == {"ok"}
    requeue_rows = [r["counts"] for r in log if r["command"] == "jobs requeue"]
    assert sum(c["requeued"] for c in requeue_rows) == 80
    assert all(c["requeued"] + c["skipped"] == 80 for c in requeue_rows)
    assert sum(c["claimed"] for c in log_counts(log, "jobs recover")) == 60
    fail_rows = log_counts(log, "jobs fail")
    assert sum(c["failed"] for c in fail_rows) == 60
    assert all(c["failed"] + c["skipped"] == 60 for c in fail_rows)


def log_counts(log: list[dict[str, Any]], command: str) -> list[dict[str, Any]]:
    return [r["counts"] for r in log if r["command"] == command]
