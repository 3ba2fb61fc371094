"""SIGKILL `dbops ratelimit cleanup` between batches: only old rows go, a re-run finishes."""

from __future__ import annotations

import signal

import pytest

from tests.helpers import invoke
from tests.pause import start_paused

pytestmark = pytest.mark.reliability

OLD, NEW = 2500, 300


def counts(db):
    return db.execute(
        "select count(*) filter (where created_at < now() - interval '24 hours') as old, "
        "count(*) filter (where created_at >= now() - interval '24 hours') as new "
        "from rate_limit_requests"
    ).fetchone()


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

    cleanup = start_paused(
        ["ratelimit", "cleanup", "--older-than", "24h", "--batch-size", "1000", "--yes"],
        "after_batch",
        tmp_path,
        nth=1,
    )
    try:
        cleanup.wait()
    finally:
        cleanup.kill()
    assert cleanup.proc.returncode == -signal.SIGKILL

    # Exactly one committed batch: 1,000 of the old rows are gone, every newer row is there.
    assert counts(db) == {"old": OLD - 1000, "new": NEW}
    oldest_left_new = db.execute(
        "select count(*) as n from rate_limit_requests where created_at > %s", (newest_old,)
    ).fetchone()["n"]
    assert oldest_left_new == NEW

    # Re-running (no pause) finishes the job.
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
