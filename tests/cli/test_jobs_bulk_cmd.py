"""`dbops jobs retry` and `dbops jobs fail` by filter through the CLI: JSON contracts, the
destructive flow (preview, refusal, dry run, action log), bad input."""

from __future__ import annotations

import functools
import json
from collections import Counter
from typing import Any

import pytest

from tests.helpers import invoke, one_line_error

HOUR = 3600


def _log(command: str) -> list[dict]:
    return [e for e in invoke(["log", "-o", "json"]).json if e["command"] == command]


def _statuses(db) -> dict[str, str]:
    return {str(r["id"]): r["status"] for r in db.execute("select id, status from jobs")}


def test_retry_by_filter_end_to_end(env, job_seed, db):
    hits = [
        job_seed.job(status="failed", idle=HOUR, customer="acme", error=f"timeout after {n}s")
        for n in (30, 31, 32)
    ]
    others = [
        job_seed.job(status="failed", idle=HOUR, customer="acme", error="out of memory"),
        job_seed.job(status="failed", idle=HOUR, customer="beta", error="timeout"),
        job_seed.job(status="pending", idle=HOUR, customer="acme", error="timeout"),
    ]
    args = ["jobs", "retry", "--customer", "acme", "--error-like", "TimeOut", "--since", "2h"]

    refused = invoke([*args, "-o", "json"], code=6)  # no preview for json off a terminal
    assert "--yes" in one_line_error(refused.stderr) and refused.stdout == ""
    dry = invoke([*args, "--dry-run", "-o", "json"]).json
    assert (dry["dry_run"], dry["matched"], dry["retried"], dry["sent"]) == (True, 3, 3, 0)
    assert env.visible(env.main_url) == 0 and set(_statuses(db).values()) == {"failed", "pending"}

    result = invoke([*args, "--yes", "-o", "json"]).json

    assert {"matched", "retried", "sent", "skipped_changed"} <= set(result)
    assert (result["matched"], result["retried"], result["sent"]) == (3, 3, 3)
    assert (result["skipped"], result["skipped_changed"], result["more_matched"]) == (0, 0, False)
    assert result["filter"] == {
        "status": None,
        "customer": "acme",
        "error_like": "TimeOut",
        "since_seconds": 7200,
        "until_seconds": None,
        "limit": 1000,
    }
    bodies = [json.loads(m["Body"]) for m in env.drain(env.main_url)]
    assert Counter(b["job_id"] for b in bodies) == Counter(hits)
    assert all(b["retry_attempt"] == 1 and b["requeued_by"].startswith("dbops:") for b in bodies)
    statuses = _statuses(db)
    assert {statuses[h] for h in hits} == {"pending"}
    assert [statuses[o] for o in others] == ["failed", "failed", "pending"]
    log = _log("jobs retry")
    assert [e["outcome"] for e in log] == ["ok", "dry_run", "refused"]
    assert log[0]["arguments"]["filter"]["customer"] == "acme"
    assert log[0]["counts"]["matched"] == 3 and log[0]["counts"]["sent"] == 3
    # Nothing left to retry: an empty result, no action-log row.
    again = invoke([*args, "--yes", "-o", "json"]).json
    assert (again["matched"], again["sent"]) == (0, 0) and len(_log("jobs retry")) == 3


def test_retry_by_filter_round_trips_counting_everything(env, job_seed, monkeypatch):
    """The whole command, counted where the adapters really talk: every statement the
    Postgres adapter sends (the preview, one step per chunk, the finish, the action-log
    row; a re-bind by declared types would count twice) and every SQS API call."""
    from dbops.adapters.postgres import PostgresStore
    from dbops.adapters.sqs import SqsQueues

    database: Counter[str] = Counter()
    sqs: Counter[str] = Counter()

    def counted(name: str) -> Any:
        real = getattr(PostgresStore, name)

        def call(self: Any, function: str, *args: Any) -> Any:
            database[function if name == "_call" else f"{name}:{function}"] += 1
            return real(self, function, *args)

        return call

    for name in ("_call", "_declared_types"):
        monkeypatch.setattr(PostgresStore, name, counted(name))
    real_client = SqsQueues.client.func

    def client(self: Any) -> Any:
        built = real_client(self)
        built.meta.events.register(
            "before-call.sqs", lambda event_name, **_: sqs.update([event_name.split(".")[-1]])
        )
        return built

    counting_client = functools.cached_property(client)
    counting_client.__set_name__(SqsQueues, "client")
    monkeypatch.setattr(SqsQueues, "client", counting_client)
    ids = job_seed.many(50, status="failed", customer_prefix="acme")
    args = ["jobs", "retry", "--status", "failed", "--chunk-size", "20", "--yes", "-o", "json"]

    result = invoke(args).json

    assert (result["matched"], result["retried"], result["sent"]) == (50, 50, 50)
    assert database == {
        "dbops_jobs_retry_preview": 1,
        "dbops_jobs_retry_step": 3,  # 20, 20, 10
        "dbops_jobs_outbox_finish": 1,
        "dbops_action_log_write": 1,
    }
    assert sqs == {"GetQueueAttributes": 1, "SendMessageBatch": 5}  # a queue check, 50 / 10
    assert Counter(json.loads(m["Body"])["job_id"] for m in env.drain(env.main_url)) == Counter(ids)


def test_retry_by_ids_is_requeue_of_failed_jobs_only(env, job_seed):
    failed = job_seed.job(status="failed", idle=60)
    pending = job_seed.job(status="pending", idle=60)

    result = invoke(["jobs", "retry", failed, pending, "--yes", "-o", "json"]).json

    assert (result["matched"], result["retried"], result["skipped"], result["sent"]) == (2, 1, 1, 1)
    skipped = next(j for j in result["jobs"] if j["job_id"] == pending)
    assert "jobs requeue" in skipped["error"] and result["filter"] is None
    assert [json.loads(m["Body"])["job_id"] for m in env.drain(env.main_url)] == [failed]


def test_retry_limit_and_preview_on_stderr(env, job_seed):
    job_seed.many(12, status="failed", customer_prefix="acme")
    result = invoke(["jobs", "retry", "--status", "failed", "--limit", "5", "--dry-run"])
    assert "5+ job(s) match" in result.stderr and "sample: first 5 of 5" in result.stderr
    data = invoke(["jobs", "retry", "--status", "failed", "--limit", "5", "--yes", "-o", "json"])
    assert (data.json["matched"], data.json["more_matched"], data.json["sent"]) == (5, True, 5)


def test_fail_by_filter(env, job_seed, db):
    pending = job_seed.many(3, status="pending", idle=HOUR, customer_prefix="acme")
    fresh = job_seed.job(status="in_progress", idle=5, customer="acme1")
    job_seed.job(status="pending", idle=HOUR, customer="beta")
    args = ["jobs", "fail", "--customer", "acme1", "--reason", "account closed"]

    dry = invoke([*args, "--dry-run", "-o", "json"]).json
    assert (dry["matched"], dry["failed"], dry["skipped"]) == (2, 1, 1)
    result = invoke([*args, "--yes", "-o", "json"]).json

    assert (result["matched"], result["failed"], result["skipped_changed"]) == (2, 1, 0)
    statuses = _statuses(db)
    assert statuses[pending[0]] == "failed" and statuses[fresh] == "in_progress"
    assert statuses[pending[1]] == "pending"
    (entry, _dry) = _log("jobs fail")
    assert entry["arguments"]["filter"]["customer"] == "acme1"
    assert entry["counts"] == {
        "matched": 2,
        "requested": 2,
        "failed": 1,
        "skipped": 1,
        "skipped_changed": 0,
    }


@pytest.mark.parametrize(
    "args, words",
    [
        (["jobs", "retry", "--yes"], "at least one filter"),
        (["jobs", "retry", "--limit", "10", "--yes"], "at least one filter"),
        (["jobs", "retry", "--status", "bogus", "--yes"], "status check allows only"),
        (["jobs", "retry", "--status", "completed", "--yes"], "failed jobs only"),
        (["jobs", "retry", "--status", "", "--yes"], "--status"),
        (["jobs", "retry", "--customer", " ", "--yes"], "--customer"),
        (["jobs", "retry", "--since", "10x", "--yes"], "--since"),
        (["jobs", "retry", "--since", "1h", "--until", "2h", "--yes"], "window is empty"),
        (["jobs", "retry", "--until", "0s", "--yes"], "--until"),
        (
            ["jobs", "retry", "00000000-0000-0000-0000-000000000001", "--status", "failed"],
            "not both",
        ),
        (["jobs", "fail", "--status", "failed", "--reason", "x", "--yes"], "in_progress"),
        (["jobs", "fail", "--reason", "x", "--yes"], "at least one filter"),
        (["jobs", "fail", "--error-like", "", "--reason", "x", "--yes"], "--error-like"),
    ],
)
def test_bad_input(env, args, words):
    result = invoke(args, code=2)
    assert words in one_line_error(result.stderr)
    assert _log("jobs retry") == [] and _log("jobs fail") == []
