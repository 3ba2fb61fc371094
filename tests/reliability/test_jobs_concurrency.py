"""Two `dbops jobs recover` processes at once: every job is enqueued exactly once.

Both children are held at the same point (the one test seam, tests/pause.py: before the
claim, or before the outbox pass) until both are there; the test then deletes both pause
markers together, so their claims (or outbox passes) really overlap.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.pause import start_paused

pytestmark = pytest.mark.reliability

HOUR = 3600


def run_two_together(
    tmp_path: Path, args: list[str], point: str = "before_claim"
) -> list[dict[str, Any]]:
    procs = [start_paused(args, point, tmp_path) for _ in (1, 2)]
    try:
        for paused in procs:
            paused.wait()
        for paused in procs:  # both are at the same point: go
            paused.resume()
        results = []
        for paused in procs:
            code, out, err = paused.finish(timeout=240)
            assert code == 0, err
            results.append(json.loads(out))
        return results
    finally:
        for paused in procs:
            paused.kill()


def test_two_concurrent_recovers_enqueue_each_of_500_jobs_exactly_once(env, job_seed, tmp_path, db):
    ids = job_seed.many(500, idle=HOUR)

    results = run_two_together(
        tmp_path, ["jobs", "recover", "--yes", "--chunk-size", "25", "-o", "json"]
    )

    assert sum(r["claimed"] for r in results) == 500
    assert sum(r["sent"] for r in results) == 500
    assert all(r["failed_sends"] == 0 for r in results)
    messages = env.drain(env.main_url)
    per_job = Counter(json.loads(m["Body"])["job_id"] for m in messages)
    assert per_job == Counter(ids)  # all 500, each exactly once
    assert len(messages) == 500
    recoveries = db.execute(
        "select count(*) as n, count(distinct job_id) as jobs from dbops_job_recoveries"
    ).fetchone()
    assert recoveries == {"n": 500, "jobs": 500}


def test_two_concurrent_recovers_share_an_abandoned_outbox_exactly_once(
    env, job_seed, tmp_path, db
):
    # 200 jobs claimed by a run on another host whose lease has expired, plus 200 stale.
    orphaned = job_seed.many(200, idle=HOUR)
    claimed = db.execute(
        """select * from dbops_jobs_claim_stale(600, 1000, 3, 'crashed', 'elsewhere:1:x', 300)"""
    ).fetchall()
    assert len(claimed) == 200
    db.execute("update dbops_job_recoveries set sending_until = now() - interval '1 second'")
    stale = job_seed.many(200, idle=HOUR, customer_prefix="stale-")

    results = run_two_together(
        tmp_path,
        ["jobs", "recover", "--yes", "--chunk-size", "25", "-o", "json"],
        point="before_outbox",
    )

    assert sum(r["resumed"] for r in results) == 200
    assert sum(r["claimed"] for r in results) == 200
    per_job = Counter(json.loads(m["Body"])["job_id"] for m in env.drain(env.main_url))
    assert per_job == Counter(orphaned + stale)
