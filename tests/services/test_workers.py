"""dbops.services.workers: forget re-checks liveness on the locked row, on both transports."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from dbops.errors import NotFoundError, RefusedError, UsageError
from dbops.services import workers


def _worker(db: Any, age: float) -> str:
    row = db.execute(
        """insert into worker_heartbeats (worker_id, queue_name, status, last_heartbeat)
           values (gen_random_uuid(), 'dbops-jobs', 'running', now() - make_interval(secs => %s))
           returning worker_id::text as id""",
        [age],
    ).fetchone()
    return str(row["id"])


def _exists(db: Any, worker: str) -> bool:
    row = db.execute(
        "select count(*) as n from worker_heartbeats where worker_id = %s", [worker]
    ).fetchone()
    return bool(row["n"])


def test_a_worker_that_beats_after_the_preview_is_kept(store: Any, db: Any) -> None:
    worker = _worker(db, 900)
    plan = workers.forget_plan(store=store, worker_id=worker)
    assert plan.worker.alive is False

    db.execute("update worker_heartbeats set last_heartbeat = now() where worker_id = %s", [worker])

    with pytest.raises(RefusedError, match="is alive"):
        workers.forget(store=store, plan=plan)
    assert _exists(db, worker)


def test_forget_twice_is_not_found_the_second_time(store: Any, db: Any) -> None:
    worker = _worker(db, 900)
    plan = workers.forget_plan(store=store, worker_id=worker)
    assert workers.forget(store=store, plan=plan).forgotten is True
    with pytest.raises(NotFoundError):
        workers.forget(store=store, plan=plan)
    with pytest.raises(NotFoundError):
        workers.forget_plan(store=store, worker_id=worker)


def test_a_beat_committed_while_forget_waits_for_the_row_lock(database_url: str, db: Any) -> None:
    """The worker's heartbeat holds the row lock; forget waits, then sees it alive."""
    from dbops.adapters.postgres import PostgresStore

    worker = _worker(db, 900)
    store = PostgresStore(database_url, application_name="dbops-forget-test")
    plan = workers.forget_plan(store=store, worker_id=worker)
    outcome: dict[str, Any] = {}

    with psycopg.connect(database_url) as beat:
        beat.execute(
            "update worker_heartbeats set last_heartbeat = clock_timestamp() + interval '1 minute'"
            " where worker_id = %s",
            [worker],
        )

        def run() -> None:
            try:
                outcome["result"] = workers.forget(store=store, plan=plan)
            except Exception as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        # Wait (bounded) until forget is blocked on the row lock, then commit the beat.
        for _ in range(600):
            waiting = db.execute(
                "select count(*) as n from pg_stat_activity where application_name = "
                "'dbops-forget-test' and wait_event_type = 'Lock'"
            ).fetchone()["n"]
            if waiting:
                break
            thread.join(timeout=0.05)
        assert waiting, "forget never waited for the row lock"
        beat.commit()
    thread.join(timeout=30)
    store.close()

    assert isinstance(outcome.get("error"), RefusedError), outcome
    assert _exists(db, worker)


def test_inputs() -> None:
    assert workers.parse_worker_id(" 6F1C2A7E-0B7D-4C1E-9A51-1D2E3F405060 ") == (
        "6f1c2a7e-0b7d-4c1e-9a51-1d2e3f405060"
    )
    for bad in ("", "6f1c2a7e", "x" * 10_000):
        with pytest.raises(UsageError, match="not a UUID"):
            workers.parse_worker_id(bad)


def test_forget_needs_the_two_minute_rule(store: Any, db: Any) -> None:
    worker = _worker(db, 100)
    with pytest.raises(UsageError, match="at least 2m"):
        workers.forget_plan(store=store, worker_id=worker, dead_after_seconds=60)
    with pytest.raises(UsageError):
        workers.list_workers(store=store, dead_after_seconds=0)
    with pytest.raises(UsageError, match="must not be empty"):
        workers.list_workers(store=store, queue=" ")
