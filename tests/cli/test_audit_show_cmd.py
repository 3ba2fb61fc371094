"""`dbops audit show RUN` and the run ids of `dbops audit history` through the CLI: every
output format, short ids, `latest`, exit codes, both transports."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from tests.cli.test_audit_cmd import _latency_never_warns
from tests.conftest import QueuePair
from tests.helpers import invoke, one_line_error
from tests.services.test_audit import send
from tests.services.test_audit_show import check, sharing, stored_run


def test_history_shows_run_ids_and_show_prints_the_stored_report(
    env: QueuePair, isolated_env: Any
) -> None:
    _latency_never_warns(isolated_env)
    first = invoke(["audit", "-o", "json"], code=0).json
    send(env, env.dlq_url, 1)
    second = invoke(["audit", "-o", "json"], code=1).json
    assert uuid.UUID(first["run_uuid"]) and isinstance(second["run_id"], int)
    assert second["previous"]["run_uuid"] == first["run_uuid"]

    runs = invoke(["audit", "history", "-o", "json"], code=0).json
    assert [r["run_uuid"] for r in runs] == [second["run_uuid"], first["run_uuid"]]
    assert [r["id"] for r in runs] == [second["run_id"], first["run_id"]]
    table = invoke(["audit", "history"], code=0).stdout
    assert second["run_uuid"][:8] in table and second["run_uuid"][:9] not in table
    assert first["run_uuid"][:8] in table

    # -o json: the report as `dbops audit -o json` printed it (read back, exit 0)
    for given in (second["run_uuid"], second["run_uuid"][:8], second["run_uuid"][:6], "latest"):
        shown = invoke(["audit", "show", given, "-o", "json"], code=0).json
        assert set(shown) == set(second), given
        for key in ("run_uuid", "run_id", "score", "verdict", "exit_code", "checks", "changes"):
            assert shown[key] == second[key], (given, key)
        assert shown["previous"] == second["previous"] and shown["saved"] is True
        assert shown["database_ms"] is None and shown["transport"] is None
    assert any(c["id"] == "queue.dlq_depth" and c["after"] == "warning" for c in shown["changes"])

    out = invoke(["audit", "show", second["run_uuid"][:8]], code=0).stdout
    assert "dbops audit" in out and "WARNING" in out and f"run {second['run_uuid'][:8]}" in out
    assert f"(run {first['run_uuid'][:8]})" in out
    assert "queue.dlq_depth: ok -> warning" in out
    md = invoke(["audit", "show", "latest", "-o", "md"], code=0).stdout
    assert md.startswith("## dbops audit: WARNING") and "### Changed since the previous run" in md
    lines = invoke(["audit", "show", "latest", "-o", "jsonl"], code=0).stdout.splitlines()
    assert len(lines) == len(second["checks"])
    csv = invoke(["audit", "show", "latest", "-o", "csv"], code=0).stdout.splitlines()
    assert csv[0].startswith("id,area,severity") and len(csv) == len(second["checks"]) + 1
    older = invoke(["audit", "show", first["run_uuid"][:10], "-o", "json"], code=0).json
    assert older["verdict"] == "OK" and older["previous"] is None and older["changes"] == []


def test_ambiguous_unknown_and_malformed_run_ids(db_env: str, db: psycopg.Connection[Any]) -> None:
    many = sharing("abcdef", 6)
    for n, run_id in enumerate(many):
        stored_run(db, run_id, hours_ago=n + 1, checks=[check("jobs.stale", "ok", 0)])

    result = invoke(["audit", "show", "abcdef"], code=2)
    line = one_line_error(result.stderr)
    assert "audit run id prefix 'abcdef' is ambiguous" in line and "and more" in line
    assert sum(r in line for r in many) == 5 and result.stdout == ""

    result = invoke(["audit", "show", "fedcba98"], code=4)
    assert "no audit run id starts with 'fedcba98'" in one_line_error(result.stderr)
    result = invoke(["audit", "show", str(uuid.uuid4())], code=4)
    assert "no audit run" in one_line_error(result.stderr)
    for bad in ("abcde", "run-1", "abcdefgh", "42"):
        result = invoke(["audit", "show", bad], code=2)
        assert "invalid audit run id" in one_line_error(result.stderr), bad

    shown = invoke(["audit", "show", many[2][:16], "-o", "json"], code=0).json
    assert shown["run_uuid"] == many[2] and shown["checks"][0]["id"] == "jobs.stale"
    assert invoke(["audit", "show", "LATEST", "-o", "json"], code=0).json["run_uuid"] == many[0]


def test_latest_without_runs_and_without_database(db_env: str, monkeypatch: Any) -> None:
    result = invoke(["audit", "show", "latest"], code=4)
    assert "no stored audit runs" in one_line_error(result.stderr)
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("DBOPS_DATABASE_URL", raising=False)
    result = invoke(["audit", "show", "latest"], code=3)
    assert "no database configured" in one_line_error(result.stderr)


@pytest.mark.usefixtures("supabase_env")
def test_over_supabase(db: psycopg.Connection[Any]) -> None:
    run_id = sharing("0badc0de", 1)[0]
    stored_run(db, run_id, hours_ago=2, checks=[check("jobs.stale", "ok", 0)])
    invoke(["audit", "--check", "jobs", "-o", "json"], code=0)
    runs = invoke(["audit", "history", "-o", "json"], code=0).json
    assert runs[-1]["run_uuid"] == run_id and len(runs) == 2
    shown = invoke(["audit", "show", "0badc0", "-o", "json"], code=0).json
    assert shown["run_uuid"] == run_id and shown["checks"][0]["observed"] == 0
    latest = invoke(["audit", "show", "latest", "-o", "json"], code=0).json
    assert latest["run_uuid"] == runs[0]["run_uuid"]
    assert invoke(["audit", "show", "0badc0"], code=0).stdout.startswith("dbops audit")
    result = invoke(["audit", "show", "0bad"], code=2)
    assert "at least 6 hex characters" in one_line_error(result.stderr)
    result = invoke(["audit", "show", "fedcba"], code=4)
    assert "no audit run id starts with" in one_line_error(result.stderr)


def test_diff(db_env: str, db: psycopg.Connection[Any]) -> None:
    a, b = sharing("aaaaaa", 1)[0], sharing("bbbbbb", 1)[0]
    stored_run(db, a, hours_ago=3, checks=[check("jobs.stale", "ok", 0)])
    stored_run(db, b, hours_ago=1, score=40, verdict="CRITICAL",
               checks=[check("jobs.stale", "critical", 18)])  # fmt: skip
    data = invoke(["audit", "diff", a[:8], "latest", "-o", "json"], code=0).json
    assert set(data) == {"before", "after", "changes", "only_before", "only_after"}
    assert data["before"]["run_uuid"] == a and data["after"]["run_uuid"] == b
    assert data["changes"] == [
        {
            "id": "jobs.stale",
            "title": "jobs.stale",
            "before": "ok",
            "after": "critical",
            "kind": "severity",
            "observed_before": 0,
            "observed_after": 18,
        }
    ]
    out = invoke(["audit", "diff", a[:8], b[:8]], code=0).stdout
    assert f"before: run {a[:8]}  OK 100/100" in out and f"after : run {b[:8]}  CRITICAL" in out
    assert "jobs.stale" in out and "0 -> 18" in out
    same = invoke(["audit", "diff", b[:8], "latest"], code=0).stdout
    assert "No check changed" in same
    csv = invoke(["audit", "diff", a[:8], b[:8], "-o", "csv"], code=0).stdout.splitlines()
    assert csv[0] == "id,kind,before,after,observed_before,observed_after,title"
    assert csv[1].startswith("jobs.stale,severity,ok,critical,0,18")
    assert invoke(["audit", "diff", a[:8], "abcde"], code=2).stdout == ""
    assert "no audit run id starts with" in one_line_error(
        invoke(["audit", "diff", "cccccc", b], code=4).stderr
    )
