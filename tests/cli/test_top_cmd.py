"""`dbops top` (one frame: --once, -o json) and the overview behind it, on a seeded
database and real queues, on both app schema variants and both transports."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import pytest

from dbops.cli.charts import bar, sparkline
from tests.conftest import QueuePair
from tests.helpers import invoke, one_line_error

API_KEY = "sk_live_topsecret0123456789"


def seed(conn: Any, variant: str = "standard") -> dict[str, Any]:
    """2 stale jobs (one held by a dead worker), 1 fresh job with a live worker, 1 orphan,
    completed and failed jobs in the current minute, 1 idle live worker, rate-limit
    traffic with denials for an API key. One transaction: every row is aged from the same
    now() (separate autocommit statements could straddle a minute boundary)."""
    with conn.transaction():
        return _seed_rows(conn, variant)


def _seed_rows(conn: Any, variant: str) -> dict[str, Any]:
    done = "complete" if variant == "legacy" else "completed"

    def job(status: str, idle: float, *, completed: float | None = None) -> str:
        row = conn.execute(
            """insert into jobs (customer_id, status, created_at, updated_at, completed_at)
               values (gen_random_uuid(), %s, now() - make_interval(secs => %s + 60),
                       now() - make_interval(secs => %s),
                       now() - make_interval(secs => %s))
               returning id""",
            [status, idle, idle, completed],
        ).fetchone()
        return str(row["id"])

    def worker(job_id: str | None, age: float, status: str = "running") -> None:
        conn.execute(
            """insert into worker_heartbeats (worker_id, queue_name, status, current_job_id,
                   last_heartbeat)
               values (gen_random_uuid(), 'jobs', %s, %s, now() - make_interval(secs => %s))""",
            [status, job_id, age],
        )

    stale = [job("in_progress", 3600), job("in_progress", 1800)]
    worker(stale[0], 900)  # dead, holding a stale job
    fresh = job("in_progress", 5)
    worker(fresh, 5)  # alive
    worker(None, 10, "idle")  # alive
    job("pending", 7200)  # orphaned
    job("pending", 5)  # young pending: not orphaned
    job(done, 1, completed=1)
    job(done, 1, completed=1)
    job("failed", 1, completed=1)
    conn.execute(
        """insert into rate_limit_requests (identifier, endpoint, created_at)
           select %s, '/api/jobs', now() - make_interval(secs => g) from generate_series(1, 7) g
           union all
           select 'ip:10.0.0.9', '/api/jobs', now() - make_interval(secs => g)
             from generate_series(1, 12) g""",
        [f"api_key:{API_KEY}"],
    )
    conn.execute(
        """insert into dbops_rate_limit_denials (minute, identifier, endpoint, denied)
           values (date_trunc('minute', now()), %s, '/api/jobs', 4)""",
        [f"api_key:{API_KEY}"],
    )
    # The clock may cross a minute between this seed and the frame: tests find the
    # finished jobs' bucket by its minute, not by position. (All three finished jobs share
    # that minute: the seed is one transaction, so every row's now() is the same instant.)
    finished_minute = conn.execute(
        "select date_trunc('minute', completed_at) as m from jobs where status = %s limit 1",
        [done],
    ).fetchone()["m"]
    return {
        "stale": stale,
        "completed": 2,
        "failed": 1,
        "done": done,
        "finished_minute": finished_minute,
    }


def put(queues: QueuePair, url: str, n: int) -> None:
    for i in range(n):
        queues.client.send_message(QueueUrl=url, MessageBody=f'{{"job_id": "{i}"}}')


# --------------------------------------------------------------------------- charts
def test_bar_and_sparkline_are_pure_and_sized() -> None:
    assert bar(0, 10, 5) == "     "
    assert bar(10, 10, 5) == "█████"
    assert bar(50, 10, 5) == "█████"  # clipped
    assert len(bar(3, 10, 7)) == 7
    assert bar(0.001, 10, 5).strip() != ""  # a positive value is never invisible
    assert bar(5, 0, 3) == "   "
    assert sparkline([]) == ""
    assert sparkline([0, 1, 2, 3]) == "▁▃▆█"
    assert sparkline([None, 4]) == " ▁"
    assert sparkline([2, 2]) == "▁▁"  # a flat series lies at the bottom


def test_read_key_returns_a_key_or_none() -> None:
    from dbops.cli.top_cmd import QUIT_KEYS, read_key

    r, w = os.pipe()
    try:
        assert read_key(r, 0) is None
        os.write(w, b"q")
        assert read_key(r, 1) in QUIT_KEYS
        os.close(w)
        w = -1
        assert read_key(r, 1) == ""  # end of input
    finally:
        os.close(r)
        if w != -1:
            os.close(w)


# --------------------------------------------------------------------------- one frame
def test_top_once_json_matches_what_was_arranged(
    variant_env: QueuePair, variant_db: Any, schema_variant: str
) -> None:
    arranged = seed(variant_db, schema_variant)
    put(variant_env, variant_env.dlq_url, 3)
    put(variant_env, variant_env.main_url, 2)
    frame = invoke(["top", "--once", "-o", "json"]).json
    assert set(frame) >= {"queues", "jobs", "workers", "ratelimit", "audit", "errors"}
    assert frame["errors"] == {}
    queues = {q["role"]: q for q in frame["queues"]}
    assert queues["dlq"]["visible"] == 3 and queues["dlq"]["queue"] == variant_env.dlq_name
    assert queues["main"]["visible"] == 2
    jobs = frame["jobs"]
    assert jobs["stale"] == 2
    assert jobs["orphaned"] == 1
    assert jobs["by_status"]["in_progress"] == 3
    assert jobs["by_status"][arranged["done"]] == 2
    assert len(jobs["per_minute"]) == 15
    by_minute = {datetime.fromisoformat(m["minute"]): m for m in jobs["per_minute"]}
    finished = by_minute[arranged["finished_minute"]]
    assert (finished["completed"], finished["failed"]) == (2, 1)
    assert sum(m["completed"] + m["failed"] for m in jobs["per_minute"]) == 3
    workers = frame["workers"]
    assert (workers["alive"], workers["dead"], workers["dead_holding_jobs"]) == (2, 1, 1)
    top = frame["ratelimit"]
    assert top[0]["denied"] == 4 and top[0]["requests"] == 11  # 7 allowed + 4 denied
    assert API_KEY not in str(frame) and top[0]["identifier"].startswith("api_key:****")
    assert top[1]["identifier"] == "ip:10.0.0.9" and top[1]["denied"] == 0
    rules = {r["rule"]: r for r in frame["ratelimit_rules"]}
    assert rules["public"]["requests"] == 23 and rules["public"]["denied"] == 4
    audit = frame["audit"]
    checks = {c["id"]: c["severity"] for c in audit["checks"]}
    assert checks["jobs.stale"] == "warning"
    assert checks["queue.dlq_depth"] == "warning"
    assert checks["workers.dead_holding"] == "critical"
    assert audit["verdict"] == "CRITICAL" and audit["scope"] == "cheap"
    assert frame["calls"]["database"] == 1 and frame["calls"]["sqs"] == 2
    # the same rules as `jobs stale` and `jobs orphans`
    stale_ids = {j["id"] for j in invoke(["jobs", "stale", "-o", "json"]).json}
    assert stale_ids == set(arranged["stale"])
    assert len(invoke(["jobs", "orphans", "-o", "json"]).json) == jobs["orphaned"]


def test_top_once_over_supabase_transport(
    supabase_env: str, db: Any, queues: QueuePair, sqs_endpoint: str, monkeypatch: Any
) -> None:
    seed(db)
    monkeypatch.setenv("SQS_DLQ_URL", queues.dlq_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", sqs_endpoint)
    frame = invoke(["top", "--once", "-o", "json"]).json
    assert frame["transport"] == "supabase"
    assert frame["errors"] == {}
    assert frame["jobs"]["stale"] == 2 and frame["workers"]["dead"] == 1


def test_top_once_table_renders_every_panel(env: QueuePair, db: Any) -> None:
    seed(db)
    put(env, env.dlq_url, 1)
    out = invoke(["top", "--once"]).stdout
    for title in ("Queues", "Jobs", "Workers", "rate-limit offenders", "Audit"):
        assert title in out
    assert env.dlq_name in out and "stale" in out and "CRITICAL" in out
    assert API_KEY not in out


def test_not_a_terminal_means_one_frame(env: QueuePair, db: Any) -> None:
    # CliRunner's stdout is not a terminal: no --once needed, and it returns.
    out = invoke(["top", "--interval", "1s"]).stdout
    assert "Queues" in out


def test_failing_database_is_reported_while_queues_still_show(
    env: QueuePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:pw-secret-x@127.0.0.1:1/none")
    put(env, env.dlq_url, 2)
    frame = invoke(["top", "--once", "-o", "json"]).json
    assert "database" in frame["errors"]
    assert "pw-secret-x" not in str(frame)
    assert {q["role"]: q["visible"] for q in frame["queues"]}["dlq"] == 2
    checks = {c["id"]: c["severity"] for c in frame["audit"]["checks"]}
    assert checks["db.reachable"] == "critical" and checks["queue.dlq_depth"] == "warning"
    table = invoke(["top", "--once"]).stdout
    assert "database:" in table and env.dlq_name in table


def test_failing_queue_is_reported_while_the_database_still_shows(
    db_env: str, db: Any, monkeypatch: pytest.MonkeyPatch, sqs_endpoint: str
) -> None:
    seed(db)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", sqs_endpoint)
    monkeypatch.setenv("SQS_DLQ_URL", f"{sqs_endpoint}/123456789012/no-such-queue-top")
    frame = invoke(["top", "--once", "-o", "json"]).json
    assert "dlq" in frame["errors"] and frame["queues"] == []
    assert frame["jobs"]["stale"] == 2


def test_sections_fail_alone(env: QueuePair, db: Any) -> None:
    seed(db)
    db.execute("drop table dbops_rate_limit_denials cascade")
    frame = invoke(["top", "--once", "-o", "json"]).json
    assert "ratelimit" in frame["errors"] and frame["ratelimit"] == []
    assert frame["jobs"]["stale"] == 2 and frame["workers"]["alive"] == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--interval", "0s"], "--interval"),
        (["--interval", "fast"], "--interval"),
        (["--window", "1x"], "--window"),
        (["--minutes", "0"], "--minutes"),
        (["-o", "csv"], "-o table or -o json"),
    ],
)
def test_bad_input_is_one_line_usage_error(db_env: str, args: list[str], needle: str) -> None:
    result = invoke(["top", "--once", *args], code=2)
    assert needle in one_line_error(result.stderr)
    assert result.stdout == ""
