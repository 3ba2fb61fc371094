"""`dbops audit` and `dbops audit history` through the CLI: outputs, exit codes, flags."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from dbops.services.audit import CHECK_IDS
from tests.conftest import QueuePair
from tests.helpers import free_port, invoke, one_line_error
from tests.services.test_audit import (  # noqa: F401 - refusing_endpoint is a fixture
    HOUR,
    add_job,
    add_jobs,
    add_worker,
    arrange_everything,
    queue_snapshot,
    refusing_endpoint,
    send,
    table_snapshot,
)


def _severities(data: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["severity"] for c in data["checks"]}


def test_audit_is_the_default_action_and_json_is_stable(env: QueuePair) -> None:
    result = invoke(["audit", "-o", "json"], code=0)
    data = result.json
    assert data["verdict"] == "OK" and data["score"] == 100 and data["exit_code"] == 0
    assert [c["id"] for c in data["checks"]] == list(CHECK_IDS)
    assert set(data) >= {
        "score",
        "verdict",
        "checks",
        "generated_at",
        "duration_ms",
        "previous",
        "changes",
    }
    assert data["previous"] is None and data["changes"] == []
    assert data["saved"] is True and isinstance(data["run_id"], int)
    skipped = [c for c in data["checks"] if c["severity"] == "skipped"]
    assert all(c["explanation"] for c in skipped)


def test_help_lists_history() -> None:
    result = invoke(["audit", "--help"], code=0)
    assert "history" in result.stdout and "--fail-on" in result.stdout


def test_exit_code_follows_verdict_and_flags(env: QueuePair, db: psycopg.Connection[Any]) -> None:
    add_job(db, "in_progress", updated_ago=HOUR)  # one stale job: WARNING
    data = invoke(["audit", "--no-save", "-o", "json"], code=1).json
    assert data["verdict"] == "WARNING" and _severities(data)["jobs.stale"] == "warning"
    invoke(["audit", "--no-save", "-o", "json", "--fail-on", "critical"], code=0)
    invoke(
        [
            "audit",
            "--no-save",
            "-o",
            "json",
            "--fail-on",
            "critical",
            "--fail-under",
            str(data["score"] + 1),
        ],
        code=1,
    )
    invoke(
        [
            "audit",
            "--no-save",
            "-o",
            "json",
            "--fail-on",
            "critical",
            "--fail-under",
            str(data["score"]),
        ],
        code=0,
    )

    send(env, env.dlq_url, 10)  # CRITICAL
    data = invoke(["audit", "--no-save", "-o", "json"], code=2).json
    assert data["verdict"] == "CRITICAL" and _severities(data)["queue.dlq_depth"] == "critical"
    invoke(["audit", "--no-save", "-o", "json", "--fail-on", "critical"], code=2)


def test_unknown_verdict_exits_3_even_with_fail_on_critical(
    env: QueuePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQS_QUEUE_URL", env.main_url + "-missing")
    data = invoke(["audit", "--no-save", "-o", "json", "--check", "queue.backlog"], code=3).json
    assert data["verdict"] == "UNKNOWN"
    invoke(["audit", "--no-save", "--check", "queue.backlog", "--fail-on", "critical"], code=3)


def test_nothing_configured_is_unknown_with_every_check_skipped() -> None:
    result = invoke(["audit", "-o", "json"], code=3)
    data = result.json
    assert data["verdict"] == "UNKNOWN" and data["score"] == 0
    assert set(_severities(data).values()) == {"skipped"}
    assert "not saved" in result.stderr


def test_database_down_is_critical_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://nobody@127.0.0.1:{free_port()}/x")
    data = invoke(["audit", "-o", "json", "--check", "db", "--check", "jobs"], code=2).json
    sev = _severities(data)
    assert sev["db.reachable"] == "critical"
    assert {sev[c] for c in sev if c != "db.reachable"} == {"unknown"}


def test_check_and_skip_with_jsonl(env: QueuePair) -> None:
    result = invoke(
        ["audit", "--no-save", "--check", "queue", "--skip", "queue.config", "-o", "jsonl"],
        code=0,
    )
    assert [c["id"] for c in result.jsonl] == [
        "queue.backlog",
        "queue.oldest_age",
        "queue.dlq_depth",
        "queue.dlq_growth",
    ]


def test_unknown_check_is_a_usage_error(env: QueuePair) -> None:
    result = invoke(["audit", "--check", "jobz"], code=2)
    line = one_line_error(result.stderr)
    assert "unknown audit check --check 'jobz'" in line and result.stdout == ""


def test_fail_under_out_of_range_is_a_usage_error() -> None:
    invoke(["audit", "--fail-under", "101"], code=2)


def test_table_output_groups_and_shows_remedies(
    env: QueuePair, db: psycopg.Connection[Any]
) -> None:
    add_jobs(db, 2, "in_progress", updated_ago=HOUR)
    result = invoke(["audit", "--no-save"], code=1)
    out = result.stdout
    for title in ("Database", "Jobs", "Workers", "Queues", "Rate limits"):
        assert title in out
    assert "WARNING" in out and "Next steps" in out
    assert "jobs.stale: dbops jobs recover" in out
    assert "score" in out


def test_piped_table_keeps_every_value_whole(env: QueuePair, db: psycopg.Connection[Any]) -> None:
    """Off a terminal no value is folded over lines (issue 16): grep finds whole remedies."""
    add_jobs(db, 2, "in_progress", updated_ago=HOUR)
    out = invoke(["audit", "--no-save"], code=1).stdout
    stale = next(line for line in out.splitlines() if "jobs.stale " in line)
    report = invoke(["audit", "--no-save", "-o", "json"], code=1).json
    explanation = next(c["explanation"] for c in report["checks"] if c["id"] == "jobs.stale")
    assert len(explanation) > 60 and explanation in stale
    assert max(len(line) for line in out.splitlines()) > 80


def test_markdown_shows_changes_since_previous_run(env: QueuePair) -> None:
    invoke(["audit", "-o", "json"], code=0)
    send(env, env.dlq_url, 1)
    result = invoke(["audit", "-o", "md"], code=1)
    md = result.stdout
    assert md.startswith("## dbops audit: WARNING (score ")
    assert "### Queues" in md and "| Severity | Check |" in md
    assert "### Changed since the previous run" in md
    assert "`queue.dlq_depth`" in md and "`dbops dlq list`" in md
    changes = md.split("### Changed since the previous run", 1)[1]
    assert "`queue.dlq_depth`" in changes and "🟢 ok (0) | 🟡 warning (1)" in changes


def _latency_never_warns(config: Any) -> None:
    """These tests compare verdicts across runs: a slow round trip on a loaded CI machine
    (the db.reachable warning) must not change them."""
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text(
        'default_profile = "t"\n\n[profiles.t.audit]\ndb_latency_warning_ms = 600000\n'
    )


def test_table_shows_changes_since_previous_run(env: QueuePair, isolated_env: Any) -> None:
    _latency_never_warns(isolated_env)
    invoke(["audit", "-o", "json"], code=0)
    send(env, env.dlq_url, 1)
    out = invoke(["audit"], code=1).stdout
    assert "previous run: OK 100/100" in out
    assert "Changed since the previous run" in out and "queue.dlq_depth: ok -> warning" in out


def test_csv_output(env: QueuePair) -> None:
    out = invoke(["audit", "--no-save", "-o", "csv"], code=0).stdout
    header, *rows = out.splitlines()
    assert header.startswith("id,area,severity,observed,threshold,explanation,remedy")
    assert len(rows) == len(CHECK_IDS)


def test_history(env: QueuePair, isolated_env: Any) -> None:
    _latency_never_warns(isolated_env)
    invoke(["audit", "-o", "json"], code=0)
    send(env, env.dlq_url, 1)
    invoke(["audit", "-o", "json"], code=1)
    runs = invoke(["audit", "history", "-o", "json"], code=0).json
    assert [r["verdict"] for r in runs] == ["WARNING", "OK"]
    assert runs[0]["warning"] == 2 and runs[1]["score"] == 100  # DLQ depth and growth
    assert len(invoke(["audit", "history", "--limit", "1", "-o", "json"], code=0).json) == 1
    table = invoke(["audit", "history"], code=0).stdout
    assert "WARNING" in table and "OK" in table


def test_history_empty_and_without_database(db_env: str) -> None:
    assert invoke(["audit", "history", "-o", "json"], code=0).json == []
    result = invoke(["audit", "history"], code=0)
    assert "no stored audit runs" in result.stderr


def test_history_needs_a_database() -> None:
    result = invoke(["audit", "history"], code=3)
    assert "no database configured" in one_line_error(result.stderr)


def test_no_save_changes_no_row_and_no_message(env: QueuePair, db: psycopg.Connection[Any]) -> None:
    arrange_everything(db, env)
    before_tables, before_queues = table_snapshot(db), queue_snapshot(env)
    data = invoke(["audit", "--no-save", "-o", "json"], code=2).json
    assert data["saved"] is False
    assert table_snapshot(db) == before_tables
    assert queue_snapshot(env) == before_queues
    for url in (env.main_url, env.dlq_url):
        for message in env.drain(url):
            assert message["Attributes"]["ApproximateReceiveCount"] == "1"


def test_profile_thresholds(env: QueuePair, isolated_env: Any) -> None:
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "config.toml").write_text(
        "[profiles.ci]\nstale_threshold_minutes = 10\n\n"
        "[profiles.ci.audit]\nbacklog_warning = 1\nbacklog_critical = 50\n"
    )
    send(env, env.main_url, 2)
    data = invoke(
        ["audit", "--no-save", "--profile", "ci", "--check", "queue.backlog", "-o", "json"], code=1
    ).json
    check = data["checks"][0]
    assert check["severity"] == "warning" and check["threshold"].startswith("warning > 1,")
    assert check["remedy"] == "dbops queue watch --profile ci"
    invoke(["audit", "--no-save", "--check", "queue.backlog", "-o", "json"], code=0)


def test_refusing_sqs_endpoint_is_unknown_not_a_crash(
    env: QueuePair,
    monkeypatch: pytest.MonkeyPatch,
    refusing_endpoint: str,  # noqa: F811
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", refusing_endpoint)
    data = invoke(["audit", "--no-save", "-o", "json"], code=3).json
    sev = _severities(data)
    assert {sev[c] for c in sev if c.startswith("queue.")} == {"unknown"}
    assert sev["db.reachable"] == "ok" and sev["jobs.stale"] == "ok"


def test_render_report_for_demo(
    env: QueuePair, db: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from dbops.adapters.postgres import PostgresStore
    from dbops.adapters.sqs import SqsQueues
    from dbops.cli.audit_cmd import render_report
    from dbops.services.audit import run_audit
    from dbops.settings import load_settings

    add_worker(db, status="idle", beat_ago=1)
    settings, _ = load_settings()
    assert settings.database_url is not None
    store = PostgresStore(settings.database_url.get_secret_value())
    try:
        report = run_audit(
            store=store,
            queues=SqsQueues(region="us-east-1", endpoint=settings.aws_endpoint_url_sqs),
            settings=settings,
            save=False,
        )
    finally:
        store.close()
    render_report(report, "md")
    assert capsys.readouterr().out.startswith("## dbops audit: OK")
    render_report(report, "json")
    assert '"verdict": "OK"' in capsys.readouterr().out
    render_report(report, "table")
    assert "Workers" in capsys.readouterr().out


def test_history_table_draws_the_score_trend_and_json_csv_do_not(db_env: str, db: Any) -> None:
    for hours_ago, score, verdict in ((3, 40, "CRITICAL"), (2, 70, "WARNING"), (1, 100, "OK")):
        db.execute(
            "insert into dbops_audit_runs (generated_at, score, verdict) "
            "values (now() - make_interval(hours => %s), %s, %s)",
            (hours_ago, score, verdict),
        )
    table = invoke(["audit", "history"], code=0).stdout
    assert "score trend (oldest to newest): ▁▅█  40 -> 100" in table
    runs = invoke(["audit", "history", "-o", "json"], code=0).json
    assert [r["score"] for r in runs] == [100, 70, 40]
    for fmt in ("json", "csv", "md"):
        out = invoke(["audit", "history", "-o", fmt], code=0).stdout
        assert "█" not in out and "▁" not in out and "trend" not in out


def _variant_job(db: Any, status: str) -> str:
    import uuid

    job_id = str(uuid.uuid4())
    db.execute(
        "insert into jobs (id, customer_id, status, created_at, updated_at) "
        "values (%s, %s, %s, now() - interval '2 hours', now() - interval '1 hour')",
        (job_id, str(uuid.uuid4()), status),  # a uuid customer fits both schema variants
    )
    return job_id


def test_recovery_cap_names_the_cap_a_job_was_failed_at(
    variant_env: QueuePair, variant_db: Any
) -> None:
    from tests.services.test_audit import add_recovery

    at_five = _variant_job(variant_db, "in_progress")
    for _ in range(5):
        add_recovery(variant_db, at_five, ago=2 * HOUR)
    result = invoke(["jobs", "recover", "--max-recoveries", "5", "--yes", "-o", "json"]).json
    assert result["abandoned"] == 1
    by_hand = _variant_job(variant_db, "failed")  # abandoned with no history event
    add_recovery(variant_db, by_hand, "abandoned")

    data = invoke(["audit", "--no-save", "--check", "jobs.recovery_cap", "-o", "json"], code=1).json
    check = data["checks"][0]
    assert check["severity"] == "warning" and check["observed"] == 2
    assert check["details"]["cap"] == 3  # the audit's own threshold
    assert check["details"]["abandoned_caps"] == [
        {"cap": 5, "count": 1},
        {"cap": None, "count": 1},
    ]
    assert "1 failed at a cap of 5" in check["explanation"]
    assert "1 failed at a cap not recorded in the history" in check["explanation"]
    assert "cap of 3" not in check["explanation"]


def test_table_and_md_show_a_notable_move_at_the_same_severity(
    env: QueuePair, isolated_env: Any
) -> None:
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "config.toml").write_text(
        'default_profile = "t"\n\n[profiles.t.audit]\ndlq_critical = 1000\n'
    )
    only = ["--check", "queue.dlq_depth"]
    send(env, env.dlq_url, 12)
    invoke(["audit", *only, "-o", "json"], code=1)
    send(env, env.dlq_url, 28)
    out = invoke(["audit", *only, "--no-save"], code=1).stdout
    assert "queue.dlq_depth: warning, observed 12 -> 40" in out
    md = invoke(["audit", *only, "--no-save", "-o", "md"], code=1).stdout
    assert "🟡 warning (12) | 🟡 warning (40)" in md
    data = invoke(["audit", *only, "-o", "json"], code=1).json
    assert [(c["id"], c["kind"]) for c in data["changes"]] == [("queue.dlq_depth", "value")]
