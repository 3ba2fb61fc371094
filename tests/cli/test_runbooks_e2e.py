"""Every packaged runbook runs end to end against a seeded incident (issue 7)."""

from __future__ import annotations

from typing import Any

import pytest

from dbops.adapters.postgres import PostgresStore
from dbops.adapters.sqs import SqsQueues
from dbops.sandbox import seed as seeding
from dbops.services import runbook
from tests.helpers import invoke

INPUTS = {"rate-limit-abuse": ["--set", f"IDENTIFIER={seeding.OFFENDER_IP}"]}


@pytest.fixture
def incident(env, database_url, sqs_endpoint, tmp_path, monkeypatch) -> seeding.SeedResult:
    monkeypatch.chdir(tmp_path)  # runbooks write files such as dlq-export.jsonl to the cwd
    store = PostgresStore(database_url)
    try:
        return seeding.seed(
            store=store,
            queues=SqsQueues(region="us-east-1", endpoint=sqs_endpoint),
            main_queue_url=env.main_url,
            dlq_url=env.dlq_url,
            scenario="incident",
        )
    finally:
        store.close()


def run_book(name: str, *extra: str) -> dict[str, Any]:
    result = invoke(["runbook", "run", name, "--yes", "-o", "json", *INPUTS.get(name, []), *extra])
    summary = result.json
    assert summary["ok"] is True, result.stderr
    assert all(s["status"] == "ok" for s in summary["steps"]), summary
    return summary


def test_every_runbook_has_a_test():
    tested = {
        "dlq-alert",
        "stale-jobs",
        "queue-backlog",
        "rate-limit-abuse",
        "worker-down",
        "deploy-migrations",
    }
    assert {info.name for info in runbook.catalogue()} == tested


def test_dlq_alert(incident, env):
    before = env.visible(env.dlq_url)
    summary = run_book("dlq-alert")
    assert len(summary["steps"]) == 9
    stats_steps = [s for s in summary["steps"] if s["command"].startswith("dbops dlq stats")]
    assert [s["command"] for s in stats_steps] == [
        "dbops dlq stats --by reason --top 10",
        "dbops dlq stats --by job_status",
    ]
    moved_to_main = env.visible(env.main_url) - incident.main_queue_messages
    assert moved_to_main > 0
    assert env.visible(env.dlq_url) == before - moved_to_main
    exported = (env_cwd := __import__("pathlib").Path.cwd()) / "dlq-export.jsonl"
    assert len(exported.read_text().splitlines()) == before, env_cwd


def test_stale_jobs(incident):
    assert len(invoke(["jobs", "stale", "-o", "json"]).json) == incident.stale_jobs
    summary = run_book("stale-jobs")
    assert invoke(["jobs", "stale", "-o", "json"]).json == []
    assert [s["status"] for s in summary["steps"] if "jobs retry" in s["command"]] == ["ok"] * 2


def test_worker_down(incident):
    dead = [w for w in invoke(["workers", "--dead", "-o", "json"]).json if w["current_job_id"]]
    assert len(dead) == incident.dead_workers_holding_jobs > 0
    summary = run_book("worker-down")
    commands = [s["command"] for s in summary["steps"]]
    assert "dbops workers" in commands and "dbops workers --dead -o json" in commands
    assert invoke(["jobs", "stale", "-o", "json"]).json == []
    # Recovery re-queued the dead workers' jobs; their rows remain until forgotten.
    assert len(invoke(["workers", "--dead", "-o", "json"]).json) >= len(dead)


def test_queue_backlog(incident):
    summary = run_book("queue-backlog")
    assert summary["steps"][0]["command"] == "dbops queue depth"


def test_rate_limit_abuse(incident):
    run_book("rate-limit-abuse")
    status = invoke(["ratelimit", "status", seeding.OFFENDER_IP, "-o", "json"]).json
    assert "abuse" in str(status)


def test_dry_run_changes_nothing(incident, env):
    dlq_before = env.visible(env.dlq_url)
    summary = invoke(["runbook", "run", "stale-jobs", "--dry-run", "-o", "json"]).json
    assert summary["ok"] is True
    assert len(invoke(["jobs", "stale", "-o", "json"]).json) == incident.stale_jobs
    assert env.visible(env.dlq_url) == dlq_before
