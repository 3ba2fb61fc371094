"""`dbops workers`: list, show and forget, on both application schema variants."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dbops.sandbox import seed as seeding
from tests.helpers import invoke, one_line_error

ROW_KEYS = {
    "worker_id",
    "queue",
    "status",
    "last_heartbeat",
    "age_seconds",
    "alive",
    "current_job_id",
    "current_job_status",
}


class Arrange:
    """Rows that fit either schema variant (customer ids of the column's type)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        kind = conn.execute(
            "select data_type from information_schema.columns where table_schema = "
            "current_schema() and table_name = 'jobs' and column_name = 'customer_id'"
        ).fetchone()["data_type"]
        self.customer = seeding.customer_uuid("acme") if kind == "uuid" else "acme"

    def job(self, status: str = "in_progress", *, idle: float = 600) -> str:
        row = self.conn.execute(
            """insert into jobs (customer_id, status, created_at, updated_at)
               values (%s, %s, now() - make_interval(secs => %s + 60),
                       now() - make_interval(secs => %s))
               returning id::text as id""",
            [self.customer, status, idle, idle],
        ).fetchone()
        return str(row["id"])

    def worker(
        self,
        age: float,
        *,
        status: str = "running",
        queue: str = "dbops-jobs",
        job: str | None = None,
    ) -> str:
        row = self.conn.execute(
            """insert into worker_heartbeats (worker_id, queue_name, status, current_job_id,
                   last_heartbeat)
               values (gen_random_uuid(), %s, %s, %s, now() - make_interval(secs => %s))
               returning worker_id::text as id""",
            [queue, status, job, age],
        ).fetchone()
        return str(row["id"])

    def event(self, job: str, event: str, *, worker: str | None, age: float = 0) -> None:
        self.conn.execute(
            """insert into queue_history (job_id, event, details, worker_id, created_at)
               values (%s, %s, '{"note": "mail ops@example.com"}'::jsonb, %s,
                       now() - make_interval(secs => %s))""",
            [job, event, worker, age],
        )

    def exists(self, worker: str) -> bool:
        row = self.conn.execute(
            "select count(*) as n from worker_heartbeats where worker_id = %s", [worker]
        ).fetchone()
        return bool(row["n"])


@pytest.fixture
def arrange(variant_db_env: str, variant_db: Any) -> Arrange:
    return Arrange(variant_db)


def _log(command: str) -> list[dict[str, Any]]:
    return [e for e in invoke(["log", "-o", "json"]).json if e["command"] == command]


# --------------------------------------------------------------------------- list
def test_list_every_worker_alive_or_dead_with_its_job(arrange: Arrange) -> None:
    busy = arrange.job("in_progress")
    held = arrange.job("in_progress")
    live = arrange.worker(5, job=busy)
    dead = arrange.worker(900, job=held)
    idle = arrange.worker(7200, status="error", queue="other")

    rows = invoke(["workers", "list", "-o", "json"]).json

    assert all(set(r) == ROW_KEYS for r in rows)
    by_id = {r["worker_id"]: r for r in rows}
    assert set(by_id) == {live, dead, idle}
    assert [r["worker_id"] for r in rows] == [idle, dead, live]  # oldest beat first
    assert by_id[live]["alive"] is True and by_id[live]["current_job_id"] == busy
    assert by_id[live]["current_job_status"] == "in_progress"
    assert by_id[dead]["alive"] is False and by_id[dead]["current_job_id"] == held
    assert 890 <= by_id[dead]["age_seconds"] < 1000
    assert by_id[idle] | {"age_seconds": 0, "last_heartbeat": ""} == {
        "worker_id": idle,
        "queue": "other",
        "status": "error",
        "last_heartbeat": "",
        "age_seconds": 0,
        "alive": False,
        "current_job_id": None,
        "current_job_status": None,
    }


def test_filters_and_the_bare_group(arrange: Arrange) -> None:
    live = arrange.worker(5)
    dead = arrange.worker(600)
    other = arrange.worker(600, queue="other")

    assert {r["worker_id"] for r in invoke(["workers", "--dead", "-o", "json"]).json} == {
        dead,
        other,
    }
    everyone = invoke(["workers", "-o", "json"]).json
    assert {r["worker_id"] for r in everyone} == {dead, other, live}
    assert everyone[-1]["worker_id"] == live  # the freshest beat comes last
    found = invoke(["workers", "list", "--dead", "--queue", "other", "-o", "json"]).json
    assert [r["worker_id"] for r in found] == [other]
    assert invoke(["workers", "list", "--queue", "none-such", "-o", "json"]).json == []
    assert len(invoke(["workers", "list", "--limit", "1", "-o", "json"]).json) == 1


def test_dead_after_boundary(arrange: Arrange) -> None:
    fresh = arrange.worker(100)  # within 2 minutes: alive
    stale = arrange.worker(140)  # past 2 minutes: dead

    alive = {r["worker_id"]: r["alive"] for r in invoke(["workers", "-o", "json"]).json}
    assert alive == {fresh: True, stale: False}
    shorter = invoke(["workers", "--dead-after", "90s", "-o", "json"]).json
    assert {r["worker_id"]: r["alive"] for r in shorter} == {fresh: False, stale: False}
    longer = invoke(["workers", "list", "--dead-after", "3m", "-o", "json"]).json
    assert {r["worker_id"]: r["alive"] for r in longer} == {fresh: True, stale: True}


def test_table_prints_short_ids_json_full_ones(arrange: Arrange) -> None:
    job = arrange.job()
    worker = arrange.worker(900, job=job)

    listed = invoke(["workers"])
    table = listed.stdout
    assert worker[:8] in table and worker not in table
    assert job[:8] in table and job not in table
    assert "1 worker(s), 1 dead" in listed.stderr  # off a terminal, titles go to stderr
    assert invoke(["workers", "-o", "json"]).json[0]["worker_id"] == worker


def test_empty_list(arrange: Arrange) -> None:
    assert invoke(["workers", "-o", "json"]).json == []
    assert "no workers match" in invoke(["workers"]).stderr


# --------------------------------------------------------------------------- show
def test_show_held_jobs_and_history(arrange: Arrange) -> None:
    current = arrange.job()
    started = arrange.job()
    finished = arrange.job("failed")
    worker = arrange.worker(900, job=current)
    other = arrange.worker(5)
    arrange.event(current, "started", worker=worker, age=700)
    arrange.event(started, "started", worker=worker, age=800)
    arrange.event(finished, "started", worker=worker, age=850)
    arrange.event(finished, "failed", worker=other, age=840)  # its last event: not held

    detail = invoke(["workers", "show", worker, "-o", "json"]).json

    assert detail["worker"]["worker_id"] == worker and detail["worker"]["alive"] is False
    held = {j["id"]: j["current"] for j in detail["jobs"]}
    assert held == {current: True, started: False}
    assert [e["job_id"] for e in detail["history"]] == [current, started, finished]
    assert detail["history"][0]["event"] == "started"
    assert "ops@example.com" not in str(detail["history"]) and detail["masked"] is True
    revealed = invoke(["workers", "show", worker, "--reveal", "-o", "json"]).json
    assert "ops@example.com" in str(revealed["history"])
    shown = invoke(["workers", "show", worker])
    assert worker in shown.stdout and "jobs it holds" in shown.stderr


def test_show_unknown_and_malformed_ids(arrange: Arrange) -> None:
    missing = invoke(["workers", "show", str(uuid.uuid4())], code=4)
    assert "not found: worker" in one_line_error(missing.stderr)
    bad = invoke(["workers", "show", "not-a-uuid"], code=2)
    assert "not a UUID" in one_line_error(bad.stderr)


def test_short_worker_ids_resolve_or_say_why_not(arrange: Arrange) -> None:
    worker = arrange.worker(900)
    shown = invoke(["workers", "show", worker[:8], "-o", "json"]).json
    assert shown["worker"]["worker_id"] == worker
    dry = invoke(["workers", "forget", worker[:6], "--dry-run", "-o", "json"]).json
    assert dry["worker"]["worker_id"] == worker and arrange.exists(worker)
    missing = invoke(["workers", "show", "ffffff" if worker[0] != "f" else "000000"], code=4)
    assert "no worker id starts with" in one_line_error(missing.stderr)
    short = invoke(["workers", "show", worker[:5]], code=2)
    assert "needs at least 6 hex characters" in one_line_error(short.stderr)


# --------------------------------------------------------------------------- forget
def test_forget_a_dead_worker(arrange: Arrange) -> None:
    job = arrange.job()
    dead = arrange.worker(900, job=job)
    keep = arrange.worker(900)

    refused = invoke(["workers", "forget", dead], code=6)  # not a TTY, no --yes
    preview, error = refused.stderr.strip().splitlines()
    assert dead in preview and job in preview and "will be removed" in preview
    assert error.startswith("Error: ") and "without confirmation" in error
    dry = invoke(["workers", "forget", dead, "--dry-run", "-o", "json"]).json
    assert dry["dry_run"] is True and dry["forgotten"] is False and arrange.exists(dead)

    done = invoke(["workers", "forget", dead, "--yes", "-o", "json"]).json

    assert done["forgotten"] is True and done["worker"]["current_job_id"] == job
    assert not arrange.exists(dead) and arrange.exists(keep)
    again = invoke(["workers", "forget", dead, "--yes"], code=4)  # idempotent: already gone
    assert "not found: worker" in one_line_error(again.stderr)
    outcomes = [(e["outcome"], e["counts"]) for e in _log("workers forget")]
    assert ("ok", {"forgotten": 1}) in outcomes
    assert ("dry_run", {"forgotten": 0}) in outcomes
    assert "refused" in {o for o, _ in outcomes}
    # The job it held stays as it was: recovering it is `jobs recover`'s work.
    assert invoke(["jobs", "show", job, "-o", "json"]).json["job"]["status"] == "in_progress"


def test_forget_refuses_a_live_worker(arrange: Arrange) -> None:
    live = arrange.worker(10)

    refused = invoke(["workers", "forget", live, "--yes"], code=6)

    assert "is alive" in one_line_error(refused.stderr)
    assert arrange.exists(live)
    assert invoke(["workers", "forget", live, "--dry-run"], code=6).code == 6
    logged = _log("workers forget")
    assert logged and {e["outcome"] for e in logged} == {"refused"}


def test_forget_bad_input(arrange: Arrange) -> None:
    dead = arrange.worker(900)
    short = invoke(["workers", "forget", dead, "--dead-after", "1m", "--yes"], code=2)
    assert "at least 2m" in one_line_error(short.stderr)
    malformed = invoke(["workers", "forget", dead, "--dead-after", "10x", "--yes"], code=2)
    one_line_error(malformed.stderr)
    invoke(["workers", "forget", "nope", "--yes"], code=2)
    assert arrange.exists(dead)


# --------------------------------------------------------------------------- transports
def test_list_and_show_over_supabase(supabase_env: str, db: Any) -> None:
    arrange = Arrange(db)
    job = arrange.job()
    dead = arrange.worker(900, job=job)
    live = arrange.worker(3)

    rows = invoke(["workers", "-o", "json"]).json
    assert {r["worker_id"]: r["alive"] for r in rows} == {dead: False, live: True}
    assert all(set(r) == ROW_KEYS for r in rows)
    assert invoke(["workers", "show", dead, "-o", "json"]).json["jobs"][0]["id"] == job
    invoke(["workers", "forget", live, "--yes"], code=6)
    assert invoke(["workers", "forget", dead, "--yes", "-o", "json"]).json["forgotten"] is True
    assert not arrange.exists(dead)
