"""`dbops.services.audit`: every check driven to each severity it can report, against a
real Postgres and SQS over HTTP; scoring, verdicts, exit codes, storage, read-only-ness."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from psycopg import sql

from dbops.adapters.postgres import PostgresStore
from dbops.adapters.sqs import SqsQueues
from dbops.errors import ConfigError, UsageError
from dbops.services import audit
from dbops.services.audit import AuditCheck, AuditReport, run_audit
from dbops.settings import AuditThresholds, Settings
from tests.conftest import QueuePair
from tests.helpers import free_port

MIN = 60.0
HOUR = 3600.0


# --------------------------------------------------------------------------- helpers
def make_settings(
    queues: QueuePair | None = None,
    *,
    main: bool = True,
    dlq: bool = True,
    profile: str | None = None,
    **thresholds: Any,
) -> Settings:
    # A round trip is "slow" only where a test says so: under a loaded CI machine a real one
    # can pass the default 250 ms and turn an unrelated `db.reachable` into a warning.
    thresholds.setdefault("db_latency_warning_ms", 60_000)
    values: dict[str, Any] = {"audit": AuditThresholds(**thresholds)}
    if queues is not None:
        if main:
            values["sqs_queue_url"] = queues.main_url
        if dlq:
            values["sqs_dlq_url"] = queues.dlq_url
    if profile:
        values["profile"] = profile
    return Settings(**values)


def add_job(
    db: psycopg.Connection[Any],
    status: str = "pending",
    *,
    updated_ago: float = 0.0,
    created_ago: float | None = None,
    completed_ago: float | None = None,
) -> str:
    job_id = str(uuid.uuid4())
    created = updated_ago if created_ago is None else created_ago
    db.execute(
        """
        insert into jobs (id, customer_id, status, created_at, updated_at, completed_at)
        values (%(id)s, 'cust_001', %(status)s,
                now() - make_interval(secs => %(created)s),
                now() - make_interval(secs => %(updated)s),
                case when %(completed)s::float8 is null then null
                     else now() - make_interval(secs => %(completed)s::float8) end)
        """,
        {
            "id": job_id,
            "status": status,
            "created": created,
            "updated": updated_ago,
            "completed": completed_ago,
        },
    )
    return job_id


def add_jobs(db: psycopg.Connection[Any], n: int, status: str, **kwargs: Any) -> list[str]:
    return [add_job(db, status, **kwargs) for _ in range(n)]


def add_worker(
    db: psycopg.Connection[Any],
    *,
    status: str = "running",
    beat_ago: float = 5.0,
    job_id: str | None = None,
) -> str:
    worker_id = str(uuid.uuid4())
    db.execute(
        """
        insert into worker_heartbeats (worker_id, queue_name, status, current_job_id,
                                       last_heartbeat)
        values (%s, 'jobs', %s, %s, now() - make_interval(secs => %s))
        """,
        (worker_id, status, job_id, beat_ago),
    )
    return worker_id


def add_result(
    db: psycopg.Connection[Any],
    job_id: str,
    status: str = "submitted",
    *,
    updated_ago: float = 0.0,
    key: str | None = None,
) -> None:
    db.execute(
        """
        insert into job_results (job_id, directory_name, status, idempotency_key, created_at,
                                 updated_at)
        values (%s, 'inbox', %s, %s, now() - make_interval(secs => %s),
                now() - make_interval(secs => %s))
        """,
        (job_id, status, key or uuid.uuid4().hex, updated_ago, updated_ago),
    )


def add_event(db: psycopg.Connection[Any], job_id: str, event: str) -> None:
    db.execute("insert into queue_history (job_id, event) values (%s, %s)", (job_id, event))


def add_requests(db: psycopg.Connection[Any], n: int, *, ago: float) -> None:
    db.execute(
        """
        insert into rate_limit_requests (identifier, endpoint, created_at)
        select 'ip:192.0.2.' || (g %% 200), '/api/public/search',
               now() - make_interval(secs => %s)
        from generate_series(1, %s) g
        """,
        (ago, n),
    )


def send(queues: QueuePair, url: str, n: int) -> None:
    for start in range(0, n, 10):
        entries = [
            {"Id": str(i), "MessageBody": json.dumps({"job_id": str(uuid.uuid4()), "n": start + i})}
            for i in range(min(10, n - start))
        ]
        queues.client.send_message_batch(QueueUrl=url, Entries=entries)


def has_table(db: psycopg.Connection[Any], name: str) -> bool:
    row = db.execute("select to_regclass(%s) is not null as present", (name,)).fetchone()
    return bool(row and row["present"])


def has_function(db: psycopg.Connection[Any], signature: str) -> bool:
    row = db.execute("select to_regprocedure(%s) is not null as present", (signature,)).fetchone()
    return bool(row and row["present"])


@pytest.fixture
def store(database_url: str) -> Iterator[PostgresStore]:
    built = PostgresStore(database_url)
    yield built
    built.close()


@pytest.fixture
def sqs(sqs_endpoint: str) -> SqsQueues:
    return SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_attempts=2)


def run(
    store: PostgresStore | None,
    sqs: SqsQueues | None,
    settings: Settings,
    *checks: str,
    save: bool = False,
    skip: list[str] | None = None,
) -> AuditReport:
    return run_audit(
        store=store,
        queues=sqs,
        settings=settings,
        checks=list(checks) or None,
        skip=skip,
        save=save,
    )


def severity(report: AuditReport, check_id: str) -> str:
    return report.check(check_id).severity


# --------------------------------------------------------------------------- registry
def test_registry_has_the_documented_checks() -> None:
    assert audit.CHECK_IDS == (
        "db.reachable",
        "db.migrations",
        "db.schema",
        "db.legacy_status",
        "db.idempotency_keys",
        "jobs.stale",
        "jobs.orphaned",
        "jobs.error_rate",
        "jobs.stuck_submitting",
        "jobs.recovery_cap",
        "workers.dead_holding",
        "workers.none_live_with_backlog",
        "queue.backlog",
        "queue.oldest_age",
        "queue.dlq_depth",
        "queue.dlq_growth",
        "queue.config.dlq_attached",
        "queue.config.max_receive",
        "queue.config.retention",
        "queue.config.visibility",
        "ratelimit.rules",
        "ratelimit.429_ratio",
        "ratelimit.blocks_overrides",
        "ratelimit.cleanup_overdue",
    )
    for spec in audit.CHECKS:
        assert spec.weight > 0 and spec.remedy.startswith("dbops "), spec.id


def test_docs_list_every_check_and_weight() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "audit.md").read_text()
    for spec in audit.CHECKS:
        assert f"| `{spec.id}` |" in text, spec.id
        row = next(line for line in text.splitlines() if line.startswith(f"| `{spec.id}` |"))
        assert f"| {spec.weight} |" in row, spec.id


def test_select_checks_by_id_and_prefix() -> None:
    ids = [c.id for c in audit.select_checks(["queue"], ["queue.config"])]
    assert ids == ["queue.backlog", "queue.oldest_age", "queue.dlq_depth", "queue.dlq_growth"]
    assert [c.id for c in audit.select_checks(["jobs.stale", "db.reachable"])] == [
        "db.reachable",
        "jobs.stale",
    ]
    assert len(audit.select_checks(None, None)) == len(audit.CHECKS)
    with pytest.raises(UsageError, match="unknown audit check --check 'queu'"):
        audit.select_checks(["queu"])
    with pytest.raises(UsageError, match="--skip"):
        audit.select_checks(None, ["jobs.nope"])


# --------------------------------------------------------------------------- scoring
def _check(sev: str, weight: int = 10) -> AuditCheck:
    return AuditCheck(
        id=f"x.{uuid.uuid4().hex[:6]}",
        area="jobs",
        title="t",
        severity=sev,  # type: ignore[arg-type]
        explanation="e",
        weight=weight,
    )


@pytest.mark.parametrize(
    ("severities", "score", "verdict"),
    [
        (["ok", "ok"], 100, "OK"),
        (["ok", "skipped"], 100, "OK"),
        (["ok", "warning"], 75, "WARNING"),
        (["ok", "critical"], 50, "CRITICAL"),
        (["ok", "unknown"], 87, "UNKNOWN"),
        (["unknown", "warning"], 62, "WARNING"),
        (["unknown", "critical", "warning"], 41, "CRITICAL"),
        (["skipped", "skipped"], 0, "UNKNOWN"),
        ([], 0, "UNKNOWN"),
    ],
)
def test_score_and_verdict(severities: list[str], score: int, verdict: str) -> None:
    checks = [_check(s) for s in severities]
    assert audit.score_of(checks) == score
    assert audit.verdict_of(checks) == verdict


def test_score_uses_weights() -> None:
    checks = [_check("ok", 30), _check("critical", 10)]
    assert audit.score_of(checks) == 75
    assert audit.score_of([_check("ok", 1)] * 99 + [_check("warning", 1)]) == 99  # never rounds up


@pytest.mark.parametrize(
    ("verdict", "fail_on", "fail_under", "score", "code"),
    [
        ("OK", "warning", None, 100, 0),
        ("WARNING", "warning", None, 80, 1),
        ("CRITICAL", "warning", None, 40, 2),
        ("UNKNOWN", "warning", None, 90, 3),
        ("OK", "critical", None, 100, 0),
        ("WARNING", "critical", None, 80, 0),
        ("CRITICAL", "critical", None, 40, 2),
        ("UNKNOWN", "critical", None, 90, 3),
        ("WARNING", "critical", 90, 80, 1),
        ("WARNING", "critical", 80, 80, 0),
        ("CRITICAL", "warning", 90, 40, 2),
        ("OK", "warning", 100, 100, 0),
    ],
)
def test_exit_code_for(
    verdict: str, fail_on: str, fail_under: int | None, score: int, code: int
) -> None:
    got = audit.exit_code_for(
        verdict,  # type: ignore[arg-type]
        fail_on=fail_on,  # type: ignore[arg-type]
        fail_under=fail_under,
        score=score,
    )
    assert got == code


def test_invalid_thresholds_are_a_config_error(store: PostgresStore) -> None:
    with pytest.raises(ConfigError, match="worker_dead_minutes"):
        run(store, None, make_settings(worker_dead_minutes=0))
    with pytest.raises(ConfigError, match="critical level is below"):
        run(store, None, make_settings(error_rate_warning=20, error_rate_critical=10))


# --------------------------------------------------------------------------- configuration
def test_nothing_configured_skips_everything_with_reasons() -> None:
    report = run(None, None, Settings(), save=True)
    assert {c.severity for c in report.checks} == {"skipped"}
    assert report.verdict == "UNKNOWN" and report.score == 0 and report.exit_code == 3
    assert "no database configured" in report.check("jobs.stale").explanation
    assert "no queues configured" in report.check("queue.backlog").explanation
    assert not report.saved and report.save_error


def test_no_database_skips_database_checks(queues: QueuePair, sqs: SqsQueues) -> None:
    report = run(None, sqs, make_settings(queues))
    for check in report.checks:
        if check.area in ("database", "jobs", "workers", "ratelimit"):
            assert check.severity == "skipped", check.id
            assert "no database configured" in check.explanation
    assert severity(report, "queue.backlog") == "ok"
    assert severity(report, "queue.dlq_depth") == "ok"


def test_no_queues_skips_queue_checks(store: PostgresStore) -> None:
    report = run(store, None, make_settings(None))
    for check in report.checks:
        if check.area == "queue":
            assert check.severity == "skipped", check.id
            assert "no queues configured" in check.explanation
    assert severity(report, "db.reachable") == "ok"
    assert severity(report, "jobs.stale") == "ok"


def test_remedies_carry_the_profile(store: PostgresStore) -> None:
    report = run(store, None, make_settings(None, profile="prod"), "jobs.stale")
    assert report.check("jobs.stale").remedy == "dbops jobs recover --profile prod"


# --------------------------------------------------------------------------- database checks
def test_db_reachable_ok_warning_critical(store: PostgresStore) -> None:
    ok = run(store, None, make_settings(), "db.reachable").check("db.reachable")
    assert ok.severity == "ok" and isinstance(ok.observed, float)
    slow = run(store, None, make_settings(db_latency_warning_ms=0), "db.reachable")
    assert severity(slow, "db.reachable") == "warning"

    down = PostgresStore(f"postgresql://nobody@127.0.0.1:{free_port()}/nothing", connect_timeout=2)
    report = run(down, None, make_settings(), "db", "jobs")
    assert severity(report, "db.reachable") == "critical"
    assert "unreachable" in report.check("db.reachable").explanation
    for check in report.checks[1:]:
        assert check.severity == "unknown", check.id
        assert "database unreachable" in check.explanation
    assert report.verdict == "CRITICAL"


def test_db_migrations_ok_warning(store: PostgresStore, db: psycopg.Connection[Any]) -> None:
    assert severity(run(store, None, make_settings(), "db.migrations"), "db.migrations") == "ok"
    db.execute("delete from dbops_schema_migrations where version = '0001'")
    check = run(store, None, make_settings(), "db.migrations").check("db.migrations")
    assert check.severity == "warning"
    assert "0001" in check.explanation and check.remedy == "dbops db migrate"
    db.execute("update dbops_schema_migrations set checksum = 'x' where version = '0007'")
    db.execute("insert into dbops_schema_migrations (version, checksum) values ('0001', 'x')")
    check = run(store, None, make_settings(), "db.migrations").check("db.migrations")
    assert check.severity == "warning" and "differ" in check.explanation


def test_db_migrations_critical_when_dbops_is_not_installed(empty_database_url: str) -> None:
    bare = PostgresStore(empty_database_url)
    try:
        from dbops.services import migrations

        migrations.migrate(store=bare, which="app")  # the backend, without dbops
        report = run(bare, None, make_settings(), "db", "jobs.stale")
    finally:
        bare.close()
    assert severity(report, "db.reachable") == "ok"
    assert severity(report, "db.migrations") == "critical"
    assert "not installed" in report.check("db.migrations").explanation
    stale = report.check("jobs.stale")
    assert stale.severity == "unknown" and "dbops db migrate" in stale.explanation


def test_db_schema_ok_warning_critical(store: PostgresStore, db: psycopg.Connection[Any]) -> None:
    check = run(store, None, make_settings(), "db.schema").check("db.schema")
    assert check.severity == "ok", check.explanation
    db.execute("drop index rate_limit_requests_lookup_idx")
    check = run(store, None, make_settings(), "db.schema").check("db.schema")
    assert check.severity == "warning"
    assert "rate_limit_requests (identifier, endpoint, created_at)" in check.explanation
    db.execute("alter table jobs drop column metadata")  # optional: shown empty
    check = run(store, None, make_settings(), "db.schema").check("db.schema")
    assert check.severity == "warning"
    db.execute("alter table jobs drop column error_message")
    check = run(store, None, make_settings(), "db.schema").check("db.schema")
    assert check.severity == "critical" and "jobs.error_message" in check.explanation


def test_db_schema_reports_missing_recommended_dbops_indexes(
    store: PostgresStore, db: psycopg.Connection[Any]
) -> None:
    recommended = audit.recommended_indexes()
    if not recommended:
        pytest.skip("no dbops migration creates an index on an application table yet")
    _table, name, _migration = recommended[0]
    db.execute(sql.SQL("drop index {}").format(sql.Identifier(name)))
    check = run(store, None, make_settings(), "db.schema").check("db.schema")
    assert check.severity == "warning" and name in check.explanation
    assert check.remedy == "dbops db migrate"


def test_db_legacy_status_ok_warning(store: PostgresStore, db: psycopg.Connection[Any]) -> None:
    add_jobs(db, 3, "completed", completed_ago=60)
    assert (
        severity(run(store, None, make_settings(), "db.legacy_status"), "db.legacy_status") == "ok"
    )
    add_jobs(db, 2, "complete", completed_ago=60)
    check = run(store, None, make_settings(), "db.legacy_status").check("db.legacy_status")
    assert check.severity == "warning" and check.observed == 2
    assert "legacy status 'complete'" in check.explanation
    db.execute("alter table jobs drop constraint jobs_status_check")
    add_job(db, "done", updated_ago=MIN)  # a value no current producer should write
    db.execute("drop index jobs_status_idx")  # the plain scan gives the same answer
    check = run(store, None, make_settings(), "db.legacy_status").check("db.legacy_status")
    assert check.severity == "warning" and check.observed == 3
    assert check.details["unknown_statuses"] == {"done": 1}


def test_db_idempotency_keys_ok_warning_critical(
    store: PostgresStore, db: psycopg.Connection[Any]
) -> None:
    job = add_job(db, "completed", completed_ago=60)
    add_result(db, job, key="k1")
    assert (
        severity(run(store, None, make_settings(), "db.idempotency_keys"), "db.idempotency_keys")
        == "ok"
    )
    db.execute("alter table job_results drop constraint job_results_idempotency_key_key")
    check = run(store, None, make_settings(), "db.idempotency_keys").check("db.idempotency_keys")
    assert check.severity == "warning" and "no unique index" in check.explanation
    add_result(db, job, key="k1")
    check = run(store, None, make_settings(), "db.idempotency_keys").check("db.idempotency_keys")
    assert check.severity == "critical" and check.observed == 1
    assert check.remedy == f"dbops jobs show {job}"


# --------------------------------------------------------------------------- jobs checks
def test_jobs_stale_ok_warning_critical(store: PostgresStore, db: psycopg.Connection[Any]) -> None:
    add_job(db, "in_progress", updated_ago=30)  # fresh row
    long_job = add_job(db, "in_progress", updated_ago=3 * HOUR)  # old row, live worker
    add_worker(db, beat_ago=5, job_id=long_job)
    check = run(store, None, make_settings(), "jobs.stale").check("jobs.stale")
    assert check.severity == "ok" and check.observed == 0

    stale = add_job(db, "in_progress", updated_ago=11 * MIN)
    check = run(store, None, make_settings(), "jobs.stale").check("jobs.stale")
    assert check.severity == "warning" and check.observed == 1
    assert check.details["sample"] == [stale] and check.remedy == "dbops jobs recover"

    add_jobs(db, 2, "in_progress", updated_ago=HOUR)
    check = run(store, None, make_settings(stale_jobs_critical=3), "jobs.stale").check("jobs.stale")
    assert check.severity == "critical" and check.observed == 3


def test_jobs_stale_follows_the_stale_threshold(
    store: PostgresStore, db: psycopg.Connection[Any]
) -> None:
    add_job(db, "in_progress", updated_ago=11 * MIN)
    settings = make_settings()
    settings.stale_threshold_minutes = 20
    assert run(store, None, settings, "jobs.stale").check("jobs.stale").observed == 0


def test_jobs_orphaned_ok_warning_critical(
    store: PostgresStore, db: psycopg.Connection[Any]
) -> None:
    add_job(db, "pending", updated_ago=MIN)  # young
    claimed = add_job(db, "pending", updated_ago=2 * HOUR)  # old but claimed for the queue
    add_event(db, claimed, "queue_claimed")
    assert severity(run(store, None, make_settings(), "jobs.orphaned"), "jobs.orphaned") == "ok"

    orphan = add_job(db, "pending", updated_ago=45 * MIN)
    add_event(db, orphan, "created")
    check = run(store, None, make_settings(), "jobs.orphaned").check("jobs.orphaned")
    assert check.severity == "warning" and check.details["sample"] == [orphan]

    add_jobs(db, 2, "pending", updated_ago=HOUR)
    report = run(store, None, make_settings(stale_jobs_critical=3), "jobs.orphaned")
    assert severity(report, "jobs.orphaned") == "critical"
    report = run(store, None, make_settings(orphaned_minutes=90), "jobs.orphaned")
    assert report.check("jobs.orphaned").observed == 0  # the 2 h one was claimed


def test_jobs_error_rate_ok_warning_critical(
    store: PostgresStore, db: psycopg.Connection[Any]
) -> None:
    check = run(store, None, make_settings(), "jobs.error_rate").check("jobs.error_rate")
    assert check.severity == "ok" and "no job finished" in check.explanation
    add_jobs(db, 95, "completed", updated_ago=HOUR, completed_ago=HOUR)
    add_jobs(db, 20, "failed", updated_ago=30 * HOUR)  # outside the 24 h window
    add_jobs(db, 5, "failed", updated_ago=HOUR)
    check = run(store, None, make_settings(), "jobs.error_rate").check("jobs.error_rate")
    assert check.severity == "ok" and check.observed == 5.0  # not above 5 %
    add_jobs(db, 1, "complete", completed_ago=MIN)  # legacy counts as completed
    add_jobs(db, 2, "failed", updated_ago=HOUR)
    check = run(store, None, make_settings(), "jobs.error_rate").check("jobs.error_rate")
    assert check.severity == "warning" and check.details == {"finished": 103, "failed": 7}
    add_jobs(db, 5, "failed", updated_ago=HOUR)
    check = run(store, None, make_settings(), "jobs.error_rate").check("jobs.error_rate")
    assert check.severity == "critical" and check.observed > 10


def test_jobs_stuck_submitting_ok_warning(
    store: PostgresStore, db: psycopg.Connection[Any]
) -> None:
    job = add_job(db, "in_progress", updated_ago=10)
    add_result(db, job, "submitting", updated_ago=2 * MIN)
    add_result(db, job, "submitted", updated_ago=HOUR)
    check = run(store, None, make_settings(), "jobs.stuck_submitting").check(
        "jobs.stuck_submitting"
    )
    assert check.severity == "ok"
    add_result(db, job, "submitting", updated_ago=20 * MIN)
    check = run(store, None, make_settings(), "jobs.stuck_submitting").check(
        "jobs.stuck_submitting"
    )
    assert check.severity == "warning" and check.observed == 1
    assert check.details["sample_job_ids"] == [job]
    report = run(store, None, make_settings(submitting_minutes=30), "jobs.stuck_submitting")
    assert severity(report, "jobs.stuck_submitting") == "ok"


def add_recovery(
    db: psycopg.Connection[Any], job_id: str, action: str = "requeued", *, ago: float = MIN
) -> None:
    db.execute(
        """
        insert into dbops_job_recoveries (job_id, kind, action, attempt, operator, state,
                                          created_at)
        values (%s, 'stale', %s, 1, 'test', 'sent', now() - make_interval(secs => %s))
        """,
        (job_id, action, ago),
    )


def test_jobs_recovery_cap_ok_warning(store: PostgresStore, db: psycopg.Connection[Any]) -> None:
    cid = "jobs.recovery_cap"
    twice = add_job(db, "pending", updated_ago=MIN)
    for _ in range(2):
        add_recovery(db, twice)
    done = add_job(db, "completed", completed_ago=MIN)  # capped, but completed since
    for _ in range(3):
        add_recovery(db, done)
    old = add_job(db, "failed", updated_ago=3 * 86400.0)  # capped long ago
    for _ in range(3):
        add_recovery(db, old, ago=2 * 86400.0)
    check = run(store, None, make_settings(), cid).check(cid)
    assert check.severity == "ok" and check.observed == 0

    add_recovery(db, twice)  # third re-queue: at the cap
    abandoned = add_job(db, "failed", updated_ago=MIN)
    add_recovery(db, abandoned, "abandoned")
    check = run(store, None, make_settings(), cid).check(cid)
    assert check.severity == "warning" and check.observed == 2
    assert check.details["abandoned"] == 1 and check.details["sample"][0] == twice
    assert check.remedy == f"dbops jobs show {twice}"
    assert run(store, None, make_settings(recovery_cap=4), cid).check(cid).observed == 1


def test_jobs_recovery_cap_skipped_without_the_jobs_feature(
    store: PostgresStore, db: psycopg.Connection[Any]
) -> None:
    db.execute("drop table dbops_job_recoveries cascade")
    add_job(db, "pending", updated_ago=HOUR)
    report = run(store, None, make_settings(), "jobs.recovery_cap", "jobs.orphaned")
    check = report.check("jobs.recovery_cap")
    assert check.severity == "skipped" and "not installed" in check.explanation
    assert report.check("jobs.orphaned").observed == 1  # still observed without the table


# --------------------------------------------------------------------------- workers
def test_workers_dead_holding_ok_warning_critical(
    store: PostgresStore, db: psycopg.Connection[Any]
) -> None:
    running = add_job(db, "in_progress", updated_ago=10)
    add_worker(db, beat_ago=5, job_id=running)  # alive
    add_worker(db, status="error", beat_ago=5 * HOUR)  # dead, holds nothing
    check = run(store, None, make_settings(), "workers.dead_holding").check("workers.dead_holding")
    assert check.severity == "ok"

    done = add_job(db, "completed", completed_ago=MIN)
    add_worker(db, beat_ago=10 * MIN, job_id=done)
    check = run(store, None, make_settings(), "workers.dead_holding").check("workers.dead_holding")
    assert check.severity == "warning" and check.details["holding_other"] == 1

    held = add_job(db, "in_progress", updated_ago=MIN)
    add_worker(db, beat_ago=3 * MIN, job_id=held)
    check = run(store, None, make_settings(), "workers.dead_holding").check("workers.dead_holding")
    assert check.severity == "critical" and check.details["jobs"] == [held]
    report = run(store, None, make_settings(worker_dead_minutes=5), "workers.dead_holding")
    assert severity(report, "workers.dead_holding") == "warning"


def test_workers_none_live_with_backlog(
    store: PostgresStore, db: psycopg.Connection[Any], queues: QueuePair, sqs: SqsQueues
) -> None:
    settings = make_settings(queues)
    check_id = "workers.none_live_with_backlog"
    check = run(store, sqs, settings, check_id).check(check_id)
    assert check.severity == "ok" and "no backlog" in check.explanation
    send(queues, queues.main_url, 3)
    add_worker(db, status="error", beat_ago=HOUR)
    add_worker(db, status="paused", beat_ago=5)  # alive but not working
    check = run(store, sqs, settings, check_id).check(check_id)
    assert check.severity == "critical" and check.details["backlog"] == 3
    assert "messages on the main queue" in check.explanation
    add_worker(db, status="idle", beat_ago=5)
    assert severity(run(store, sqs, settings, check_id), check_id) == "ok"


def test_workers_none_live_uses_pending_jobs_without_queues(
    store: PostgresStore, db: psycopg.Connection[Any]
) -> None:
    add_jobs(db, 2, "pending", updated_ago=MIN)
    check_id = "workers.none_live_with_backlog"
    check = run(store, None, make_settings(), check_id).check(check_id)
    assert check.severity == "critical" and check.details["backlog_source"] == "pending jobs"


# --------------------------------------------------------------------------- queues
def test_queue_backlog_ok_warning_critical(queues: QueuePair, sqs: SqsQueues) -> None:
    settings = make_settings(queues, backlog_warning=2, backlog_critical=4)
    check = run(None, sqs, settings, "queue.backlog").check("queue.backlog")
    assert check.severity == "ok" and check.observed == 0
    send(queues, queues.main_url, 3)
    assert severity(run(None, sqs, settings, "queue.backlog"), "queue.backlog") == "warning"
    send(queues, queues.main_url, 2)
    check = run(None, sqs, settings, "queue.backlog").check("queue.backlog")
    assert check.severity == "critical" and check.observed == 5
    assert check.remedy == "dbops queue watch"


def test_queue_backlog_default_thresholds(queues: QueuePair, sqs: SqsQueues) -> None:
    send(queues, queues.main_url, 101)
    check = run(None, sqs, make_settings(queues), "queue.backlog").check("queue.backlog")
    assert check.severity == "warning" and check.observed == 101


def _put_age(queues: QueuePair, sqs_endpoint: str, seconds: float) -> None:
    import boto3

    cloudwatch = boto3.client(
        "cloudwatch",
        endpoint_url=sqs_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        cloudwatch.put_metric_data(
            Namespace="AWS/SQS",
            MetricData=[
                {
                    "MetricName": "ApproximateAgeOfOldestMessage",
                    "Dimensions": [{"Name": "QueueName", "Value": queues.main_name}],
                    "Value": seconds,
                    "Unit": "Seconds",
                    "Timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30),
                }
            ],
        )
    except Exception as exc:  # LocalStack's SQS-only install has no CloudWatch
        pytest.skip(f"this endpoint has no CloudWatch: {type(exc).__name__}")


@pytest.mark.parametrize(
    ("age", "expected"), [(60, "ok"), (15 * MIN, "warning"), (2 * HOUR, "critical")]
)
def test_queue_oldest_age_from_cloudwatch(
    queues: QueuePair, sqs: SqsQueues, sqs_endpoint: str, age: float, expected: str
) -> None:
    _put_age(queues, sqs_endpoint, age)
    check = run(None, sqs, make_settings(queues), "queue.oldest_age").check("queue.oldest_age")
    if check.severity == "skipped":
        pytest.skip("the endpoint accepted the metric but does not serve it back")
    assert check.severity == expected and check.observed == age


def test_queue_oldest_age_skipped_without_metric(queues: QueuePair, sqs: SqsQueues) -> None:
    check = run(None, sqs, make_settings(queues), "queue.oldest_age").check("queue.oldest_age")
    assert check.severity == "skipped" and "CloudWatch" in check.explanation


def test_queue_dlq_depth_ok_warning_critical(queues: QueuePair, sqs: SqsQueues) -> None:
    settings = make_settings(queues)
    assert severity(run(None, sqs, settings, "queue.dlq_depth"), "queue.dlq_depth") == "ok"
    send(queues, queues.dlq_url, 1)
    check = run(None, sqs, settings, "queue.dlq_depth").check("queue.dlq_depth")
    assert check.severity == "warning" and check.observed == 1
    assert check.remedy == "dbops dlq list"
    send(queues, queues.dlq_url, 9)
    check = run(None, sqs, settings, "queue.dlq_depth").check("queue.dlq_depth")
    assert check.severity == "critical" and check.observed == 10


def test_queue_dlq_warning_follows_dlq_alert_threshold(queues: QueuePair, sqs: SqsQueues) -> None:
    send(queues, queues.dlq_url, 2)
    settings = make_settings(queues)
    settings.dlq_alert_threshold = 3
    assert severity(run(None, sqs, settings, "queue.dlq_depth"), "queue.dlq_depth") == "ok"
    settings = make_settings(queues, dlq_warning=2)  # an explicit audit threshold wins
    settings.dlq_alert_threshold = 3
    assert severity(run(None, sqs, settings, "queue.dlq_depth"), "queue.dlq_depth") == "warning"


def test_queue_dlq_found_from_redrive_policy(queues: QueuePair, sqs: SqsQueues) -> None:
    send(queues, queues.dlq_url, 1)
    report = run(None, sqs, make_settings(queues, dlq=False), "queue.dlq_depth")
    check = report.check("queue.dlq_depth")
    assert check.severity == "warning" and check.details["queue"] == queues.dlq_name


def test_queue_dlq_growth_against_stored_runs(
    store: PostgresStore, queues: QueuePair, sqs: SqsQueues
) -> None:
    settings = make_settings(queues)
    first = run(store, sqs, settings, "queue.dlq_depth", "queue.dlq_growth", save=True)
    assert first.saved and first.check("queue.dlq_growth").severity == "skipped"
    assert "no previous" in first.check("queue.dlq_growth").explanation

    second = run(store, sqs, settings, "queue.dlq_depth", "queue.dlq_growth", save=True)
    assert second.check("queue.dlq_growth").severity == "ok"
    assert second.previous is not None and second.previous.id == first.run_id

    send(queues, queues.dlq_url, 2)
    third = run(store, sqs, settings, "queue.dlq_depth", "queue.dlq_growth", save=True)
    growth = third.check("queue.dlq_growth")
    assert growth.severity == "warning" and growth.observed == 2
    assert [(c.id, c.before, c.after) for c in third.changes] == [
        ("queue.dlq_depth", "ok", "warning"),
        ("queue.dlq_growth", "ok", "warning"),
    ]

    send(queues, queues.dlq_url, 10)
    fourth = run(store, sqs, settings, "queue.dlq_depth", "queue.dlq_growth", save=False)
    assert fourth.check("queue.dlq_growth").severity == "critical"
    assert not fourth.saved


def test_changes_list_a_notable_move_at_the_same_severity(
    store: PostgresStore, queues: QueuePair, sqs: SqsQueues
) -> None:
    settings = make_settings(queues, dlq_critical=1000)  # 12, 40 and 45 are all warnings
    send(queues, queues.dlq_url, 12)
    first = run(store, sqs, settings, "queue.dlq_depth", "jobs.stale", save=True)
    assert first.changes == []
    send(queues, queues.dlq_url, 28)
    second = run(store, sqs, settings, "queue.dlq_depth", "jobs.stale", save=True)
    assert second.check("queue.dlq_depth").severity == "warning"
    assert [c.model_dump() for c in second.changes] == [
        {
            "id": "queue.dlq_depth",
            "title": second.check("queue.dlq_depth").title,
            "before": "warning",
            "after": "warning",
            "kind": "value",
            "observed_before": 12,
            "observed_after": 40,
        }
    ]
    send(queues, queues.dlq_url, 5)  # 40 -> 45: not notable
    third = run(store, sqs, settings, "queue.dlq_depth", "jobs.stale", save=True)
    assert third.changes == []


@pytest.mark.parametrize(
    ("before", "after", "notable"),
    [
        (19, 140, True),
        (140, 19, True),
        (0, 10, True),
        (20, 30, True),  # +10, +50 %: both limits met exactly
        (20, 29, False),  # under the absolute minimum
        (100, 149, False),  # +49 %
        (2, 9, False),  # +350 % but only 7
        (12.5, 40.0, True),
        (True, 40, False),
        ("none", "sqs-dlq", False),
        (None, 40, False),
        (float("nan"), 40, False),
    ],
)
def test_moved_notably(before: Any, after: Any, notable: bool) -> None:
    from dbops.services.audit.runs import moved_notably

    assert moved_notably(before, after) is notable


def test_queue_dlq_growth_without_a_comparable_previous_run(
    store: PostgresStore, queues: QueuePair, sqs: SqsQueues
) -> None:
    run(store, sqs, make_settings(queues), "jobs.stale", save=True)  # no DLQ depth stored
    check = run(store, sqs, make_settings(queues), "queue.dlq_growth").check("queue.dlq_growth")
    assert check.severity == "skipped" and "measured the DLQ depth" in check.explanation


def test_previous_run_is_the_last_with_the_same_selection(
    store: PostgresStore, queues: QueuePair, sqs: SqsQueues
) -> None:
    settings = make_settings(queues)
    full = run(store, sqs, settings, save=True)
    send(queues, queues.dlq_url, 1)
    only_queue = run(store, sqs, settings, "queue", save=True)
    assert only_queue.previous is None  # no earlier `--check queue` run
    assert only_queue.check("queue.dlq_growth").observed == 1  # vs the full run's depth
    again = run(store, sqs, settings, save=False)
    assert again.previous is not None and again.previous.id == full.run_id
    growth = again.check("queue.dlq_growth")  # vs the latest run that measured the DLQ
    assert growth.severity == "ok" and growth.details["previous_run_id"] == only_queue.run_id
    same = run(store, sqs, settings, "QUEUE.", save=False)  # normalised like `queue`
    assert same.previous is not None and same.previous.id == only_queue.run_id


def test_config_checks_ok_on_the_team_setup(queues: QueuePair, sqs: SqsQueues) -> None:
    report = run(None, sqs, make_settings(queues, job_timeout_seconds=300), "queue.config")
    assert {c.id: c.severity for c in report.checks} == {
        "queue.config.dlq_attached": "ok",
        "queue.config.max_receive": "ok",
        "queue.config.retention": "ok",
        "queue.config.visibility": "ok",
    }


def _queue(queues: QueuePair, name: str, attributes: dict[str, str]) -> str:
    url: str = queues.client.create_queue(
        QueueName=f"{queues.main_name}-{name}", Attributes=attributes
    )["QueueUrl"]
    return url


def _arn(queues: QueuePair, url: str) -> str:
    attrs = queues.client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])


def test_config_dlq_attached_critical_and_warning(queues: QueuePair, sqs: SqsQueues) -> None:
    bare = _queue(queues, "bare", {})
    settings = make_settings(queues)
    settings.sqs_queue_url = bare
    report = run(None, sqs, settings, "queue.config")
    assert severity(report, "queue.config.dlq_attached") == "critical"
    assert "no redrive policy" in report.check("queue.config.dlq_attached").explanation
    assert severity(report, "queue.config.max_receive") == "skipped"

    other_dlq = _queue(queues, "other-dlq", {"MessageRetentionPeriod": "1209600"})
    policy = json.dumps({"deadLetterTargetArn": _arn(queues, other_dlq), "maxReceiveCount": "3"})
    elsewhere = _queue(queues, "elsewhere", {"RedrivePolicy": policy})
    settings.sqs_queue_url = elsewhere
    check = run(None, sqs, settings, "queue.config.dlq_attached").check("queue.config.dlq_attached")
    assert check.severity == "warning" and "not the configured DLQ" in check.explanation


@pytest.mark.parametrize(("count", "expected"), [("1", "warning"), ("3", "ok"), ("25", "warning")])
def test_config_max_receive(queues: QueuePair, sqs: SqsQueues, count: str, expected: str) -> None:
    policy = json.dumps(
        {"deadLetterTargetArn": _arn(queues, queues.dlq_url), "maxReceiveCount": count}
    )
    url = _queue(queues, f"mrc{count}", {"RedrivePolicy": policy})
    settings = make_settings(queues)
    settings.sqs_queue_url = url
    check = run(None, sqs, settings, "queue.config.max_receive").check("queue.config.max_receive")
    assert check.severity == expected and check.observed == int(count)


def test_config_retention_warning(queues: QueuePair, sqs: SqsQueues) -> None:
    short_dlq = _queue(queues, "short-dlq", {"MessageRetentionPeriod": "345600"})
    settings = make_settings(queues)
    settings.sqs_dlq_url = short_dlq  # 4 days, same as the main queue's default
    check = run(None, sqs, settings, "queue.config.retention").check("queue.config.retention")
    assert check.severity == "warning" and check.details == {
        "main_seconds": 345600,
        "dlq_seconds": 345600,
    }


def test_config_visibility_skipped_ok_warning(queues: QueuePair, sqs: SqsQueues) -> None:
    cid = "queue.config.visibility"
    check = run(None, sqs, make_settings(queues), cid).check(cid)
    assert check.severity == "skipped" and "job_timeout_seconds" in check.explanation
    assert (
        severity(run(None, sqs, make_settings(queues, job_timeout_seconds=300), cid), cid) == "ok"
    )
    check = run(None, sqs, make_settings(queues, job_timeout_seconds=900), cid).check(cid)
    assert check.severity == "warning" and check.observed == 300


def test_missing_queue_makes_queue_checks_unknown(queues: QueuePair, sqs: SqsQueues) -> None:
    settings = make_settings(queues)
    settings.sqs_queue_url = queues.main_url + "-does-not-exist"
    report = run(None, sqs, settings, "queue")
    backlog = report.check("queue.backlog")
    assert backlog.severity == "unknown" and "does not exist" in backlog.explanation
    assert severity(report, "queue.dlq_depth") == "ok"  # the DLQ is still read


def test_unreachable_sqs_endpoint_makes_queue_checks_unknown(queues: QueuePair) -> None:
    dead = SqsQueues(
        region="us-east-1",
        endpoint=f"http://127.0.0.1:{free_port()}",
        max_attempts=1,
        connect_timeout=1,
    )
    report = run(None, dead, make_settings(queues), "queue")
    for check in report.checks:
        assert check.severity == "unknown", check.id
        assert "cannot reach SQS endpoint" in check.explanation
    assert report.verdict == "UNKNOWN" and report.exit_code == 3


class _Refuse(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"__type": "AccessDenied", "message": "refused by test"}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("x-amzn-query-error", "AccessDenied;Sender")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_refusing_sqs_endpoint_makes_queue_checks_unknown(
    queues: QueuePair, refusing_endpoint: str
) -> None:
    refused = SqsQueues(region="us-east-1", endpoint=refusing_endpoint, max_attempts=1)
    report = run(None, refused, make_settings(queues), "queue")
    for check in report.checks:
        assert check.severity == "unknown", check.id
        assert "access denied" in check.explanation.lower()


# --------------------------------------------------------------------------- rate limits
def test_ratelimit_cleanup_overdue_ok_warning(
    store: PostgresStore, db: psycopg.Connection[Any]
) -> None:
    add_requests(db, 20, ago=HOUR)
    cid = "ratelimit.cleanup_overdue"
    assert severity(run(store, None, make_settings(), cid), cid) == "ok"
    add_requests(db, 7, ago=25 * HOUR)
    check = run(store, None, make_settings(), cid).check(cid)
    assert check.severity == "warning" and check.observed == 7
    assert check.remedy == "dbops ratelimit cleanup --older-than 24h"
    assert severity(run(store, None, make_settings(cleanup_overdue_hours=48), cid), cid) == "ok"


def test_ratelimit_rules_ok_warning(store: PostgresStore, db: psycopg.Connection[Any]) -> None:
    cid = "ratelimit.rules"
    assert severity(run(store, None, make_settings(), cid), cid) == "ok"
    db.execute("update dbops_rate_limit_rules set enabled = false where name = 'auth'")
    check = run(store, None, make_settings(), cid).check(cid)
    assert check.severity == "warning" and "disabled: auth" in check.explanation
    assert check.remedy == "dbops ratelimit enable auth"
    db.execute("delete from dbops_rate_limit_rules where name = 'staff'")
    check = run(store, None, make_settings(), cid).check(cid)
    assert check.observed == 2 and "no rule for: staff" in check.explanation


def test_ratelimit_429_ratio_ok_warning(store: PostgresStore, db: psycopg.Connection[Any]) -> None:
    cid = "ratelimit.429_ratio"
    check = run(store, None, make_settings(), cid).check(cid)
    assert check.severity == "ok" and "no requests" in check.explanation
    add_requests(db, 100, ago=10 * MIN)
    add_requests(db, 500, ago=2 * HOUR)  # outside the hour
    db.execute(
        "insert into dbops_rate_limit_denials (minute, identifier, endpoint, denied) "
        "values (date_trunc('minute', now()), 'ip:192.0.2.1', '/api/public/search', 5)"
    )
    check = run(store, None, make_settings(), cid).check(cid)
    assert check.severity == "ok" and check.details == {"requests": 105, "denied": 5}
    db.execute("update dbops_rate_limit_denials set denied = 10")
    check = run(store, None, make_settings(), cid).check(cid)
    assert check.severity == "warning" and check.observed == pytest.approx(9.09, abs=0.01)
    assert check.remedy == "dbops ratelimit top --since 1h"
    assert severity(run(store, None, make_settings(ratio_429_warning=10), cid), cid) == "ok"


def test_ratelimit_blocks_overrides_ok_warning(
    store: PostgresStore, db: psycopg.Connection[Any]
) -> None:
    cid = "ratelimit.blocks_overrides"
    db.execute(
        "insert into dbops_rate_limit_blocks (identifier, reason, created_by, expires_at) "
        "values ('ip:192.0.2.9', 'old', 'test', now() - interval '1 minute')"
    )
    assert severity(run(store, None, make_settings(), cid), cid) == "ok"
    db.execute(
        "insert into dbops_rate_limit_blocks (identifier, reason, created_by, expires_at) "
        "values ('ip:192.0.2.9', 'abuse', 'test', now() + interval '1 hour')"
    )
    db.execute(
        "insert into dbops_rate_limit_overrides (rule_name, max_requests, window_seconds, "
        "created_by, expires_at) values ('public', 300, 60, 'test', now() + interval '2 hours')"
    )
    check = run(store, None, make_settings(), cid).check(cid)
    assert check.severity == "warning" and check.details["blocks"] == 1
    assert check.details["overrides"] == 1 and check.observed == 2


def test_ratelimit_checks_skipped_without_the_ratelimit_feature(
    store: PostgresStore, db: psycopg.Connection[Any]
) -> None:
    db.execute("drop function dbops_ratelimit_429_ratio(integer)")
    db.execute("drop table dbops_rate_limit_overrides, dbops_rate_limit_blocks cascade")
    db.execute("drop table dbops_rate_limit_rules cascade")
    report = run(store, None, make_settings(), "ratelimit")
    for cid in ("ratelimit.rules", "ratelimit.429_ratio", "ratelimit.blocks_overrides"):
        check = report.check(cid)
        assert check.severity == "skipped" and "not installed" in check.explanation, cid
    assert severity(report, "ratelimit.cleanup_overdue") == "ok"  # the app table is still read


def test_every_remedy_is_a_valid_dbops_command() -> None:
    from tests.helpers import invoke

    commands = {spec.remedy for spec in audit.CHECKS} | {
        "dbops db status",
        "dbops jobs show 00000000-0000-0000-0000-000000000000",
        "dbops ratelimit enable auth",
        "dbops ratelimit cleanup --older-than 24h",
        "dbops jobs stale",
    }
    for command in sorted(commands):
        words = command.split()
        assert words[0] == "dbops"
        invoke([*words[1:], "--help"], code=0)


# --------------------------------------------------------------------------- privileges
@pytest.fixture
def role_dsn(database_url: str, db: psycopg.Connection[Any]) -> Iterator[Any]:
    """DSNs for new login roles: in service_role (dbops objects, no app tables) or bare;
    with BYPASSRLS like Supabase's service role, or without (RLS then hides dbops rows)."""
    created: list[str] = []

    def make(member_of_service_role: bool, *, bypass_rls: bool = False) -> str:
        role = f"audit_t_{uuid.uuid4().hex[:8]}"
        attributes = "login bypassrls" if bypass_rls else "login"
        try:
            db.execute(
                sql.SQL("create role {} " + attributes + " password 'audit-test'").format(
                    sql.Identifier(role)
                )
            )
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test server does not let us create roles")
        created.append(role)
        if member_of_service_role:
            db.execute(sql.SQL("grant service_role to {}").format(sql.Identifier(role)))
        info = psycopg.conninfo.conninfo_to_dict(database_url)
        info.update(user=role, password="audit-test")
        return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})

    yield make
    for role in created:
        db.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", (role,)
        )
        db.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


def test_role_without_table_privileges_gives_unknown_not_ok(role_dsn: Any) -> None:
    limited = PostgresStore(role_dsn(True, bypass_rls=True))
    try:
        report = run(
            limited, None, make_settings(), "db", "jobs", "workers", "ratelimit", save=True
        )
    finally:
        limited.close()
    assert severity(report, "db.reachable") == "ok"
    assert severity(report, "db.migrations") == "ok"  # dbops' own tables are granted
    assert severity(report, "db.schema") == "ok"  # the catalog is readable by anyone
    for cid in (
        "jobs.stale",
        "jobs.orphaned",
        "jobs.error_rate",
        "workers.dead_holding",
        "db.legacy_status",
        "ratelimit.cleanup_overdue",
        "ratelimit.429_ratio",
    ):
        check = report.check(cid)
        assert check.severity == "unknown", cid
        assert "permission denied" in check.explanation, cid
    assert report.verdict == "UNKNOWN", [
        (c.id, c.explanation) for c in report.checks if c.severity not in ("ok", "unknown")
    ]
    assert report.saved  # service_role may write dbops_audit_runs


def test_row_level_security_gives_unknown_not_ok(database_url: str, db: Any) -> None:
    """An API role (anon) whose grants slipped back still sees no row of dbops' tables:
    RLS admits operator roles only. The audit says so instead of reporting "no rules"."""
    db.execute(
        "grant execute on all functions in schema public to anon; "
        "grant select, insert on all tables in schema public to anon; "
        "grant usage on all sequences in schema public to anon"
    )
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    info["options"] = "-c role=anon"
    hidden = PostgresStore(
        psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})
    )
    try:
        report = run(
            hidden,
            None,
            make_settings(),
            "db.migrations",
            "ratelimit.rules",
            "ratelimit.blocks_overrides",
            save=True,
        )
    finally:
        hidden.close()
    for check in report.checks:  # never "not installed" or "no rules"
        assert check.severity == "unknown", check.id
        assert "row-level security" in check.explanation, check.id
    assert not report.saved and "row-level security" in (report.save_error or "")


def test_role_without_any_privileges_gives_unknown(role_dsn: Any) -> None:
    bare = PostgresStore(role_dsn(False))
    try:
        report = run(bare, None, make_settings(), "db", "jobs", save=True)
    finally:
        bare.close()
    assert severity(report, "db.reachable") == "ok"
    for check in report.checks[1:]:
        assert check.severity == "unknown", check.id
        assert "permission denied" in check.explanation, check.id
    assert not report.saved and "permission denied" in (report.save_error or "")


# --------------------------------------------------------------------------- storage
def test_runs_are_stored_and_listed(store: PostgresStore, db: psycopg.Connection[Any]) -> None:
    first = run(store, None, make_settings(), "jobs", save=True)
    add_job(db, "in_progress", updated_ago=HOUR)
    second = run(store, None, make_settings(), "jobs", save=True)
    assert first.saved and second.saved and second.run_id != first.run_id
    assert second.previous is not None and second.previous.score == first.score
    assert [(c.id, c.before, c.after) for c in second.changes] == [("jobs.stale", "ok", "warning")]
    runs = audit.history(store=store, limit=10)
    assert [r.id for r in runs] == [second.run_id, first.run_id]
    assert runs[0].warning == 1 and runs[0].verdict == "WARNING"
    assert runs[0].selection == {"check": ["jobs"], "skip": []}
    assert len(audit.history(store=store, limit=1)) == 1
    stored = db.execute(
        "select checks from dbops_audit_runs where id = %s", (second.run_id,)
    ).fetchone()
    assert stored is not None
    assert {c["id"] for c in stored["checks"]} == {c.id for c in second.checks}


def test_no_save_stores_nothing(store: PostgresStore, db: psycopg.Connection[Any]) -> None:
    report = run(store, None, make_settings(), save=False)
    assert not report.saved and report.run_id is None
    row = db.execute("select count(*) as n from dbops_audit_runs").fetchone()
    assert row is not None and row["n"] == 0


def test_history_rejects_bad_limit(store: PostgresStore) -> None:
    with pytest.raises(UsageError):
        audit.history(store=store, limit=0)


def test_old_runs_are_pruned_on_save(store: PostgresStore, db: psycopg.Connection[Any]) -> None:
    db.execute(
        "insert into dbops_audit_runs (generated_at, score, verdict) "
        "values (now() - interval '200 days', 50, 'WARNING')"
    )
    run(store, None, make_settings(), "db.reachable", save=True)
    row = db.execute("select count(*) as n from dbops_audit_runs").fetchone()
    assert row is not None and row["n"] == 1


# --------------------------------------------------------------------------- read-only
def test_observe_function_is_stable_and_makes_the_transaction_read_only(
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select provolatile from pg_proc where proname = 'dbops_audit_observe'"
        ).fetchone()
        assert row == ("s",)
        conn.rollback()
        conn.execute("select count(*) from dbops_audit_observe()")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("insert into rate_limit_requests (identifier, endpoint) values ('a', 'b')")
        conn.rollback()


def table_snapshot(db: psycopg.Connection[Any]) -> dict[str, tuple[int, str]]:
    names = [
        r["relname"]
        for r in db.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'public' and c.relkind = 'r' order by 1"
        ).fetchall()
    ]
    out = {}
    for name in names:
        row = db.execute(
            sql.SQL(
                "select count(*) as n, coalesce(md5(string_agg(t::text, '|' order by t::text)), '')"
                " as h from {} t"
            ).format(sql.Identifier(name))
        ).fetchone()
        assert row is not None
        out[name] = (row["n"], row["h"])
    return out


def queue_snapshot(queues: QueuePair) -> dict[str, dict[str, str]]:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    return {
        url: queues.client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        for url in (queues.main_url, queues.dlq_url)
    }


def arrange_everything(db: psycopg.Connection[Any], queues: QueuePair) -> None:
    """A bit of every kind of problem, so every check has something to read."""
    add_jobs(db, 3, "in_progress", updated_ago=HOUR)
    held = add_job(db, "in_progress", updated_ago=HOUR)
    add_worker(db, beat_ago=HOUR, job_id=held)
    add_jobs(db, 2, "pending", updated_ago=2 * HOUR)
    add_jobs(db, 5, "completed", completed_ago=HOUR)
    add_jobs(db, 2, "complete", completed_ago=HOUR)
    add_jobs(db, 2, "failed", updated_ago=HOUR)
    add_result(db, held, "submitting", updated_ago=HOUR)
    add_requests(db, 30, ago=30 * HOUR)
    add_requests(db, 30, ago=MIN)
    send(queues, queues.main_url, 5)
    send(queues, queues.dlq_url, 3)


def test_audit_changes_no_row_and_no_message(
    store: PostgresStore, db: psycopg.Connection[Any], queues: QueuePair, sqs: SqsQueues
) -> None:
    arrange_everything(db, queues)
    before_tables, before_queues = table_snapshot(db), queue_snapshot(queues)
    report = run(store, sqs, make_settings(queues, job_timeout_seconds=60), save=False)
    assert report.verdict == "CRITICAL"
    assert table_snapshot(db) == before_tables
    assert queue_snapshot(queues) == before_queues
    # Nothing was received: every message is delivered now for the first time.
    for url in (queues.main_url, queues.dlq_url):
        for message in queues.drain(url):
            assert message["Attributes"]["ApproximateReceiveCount"] == "1"


def test_saving_writes_only_the_audit_run(
    store: PostgresStore, db: psycopg.Connection[Any], queues: QueuePair, sqs: SqsQueues
) -> None:
    arrange_everything(db, queues)
    before = table_snapshot(db)
    run(store, sqs, make_settings(queues), save=True)
    after = table_snapshot(db)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"dbops_audit_runs"}
    assert after["dbops_audit_runs"][0] == 1


# --------------------------------------------------------------------------- whole report
def test_clean_backend_is_ok(
    store: PostgresStore, db: psycopg.Connection[Any], queues: QueuePair, sqs: SqsQueues
) -> None:
    add_jobs(db, 20, "completed", completed_ago=HOUR)
    running = add_job(db, "in_progress", updated_ago=20)
    add_worker(db, beat_ago=3, job_id=running)
    add_worker(db, status="idle", beat_ago=10)
    add_requests(db, 10, ago=MIN)
    send(queues, queues.main_url, 2)
    report = run(store, sqs, make_settings(queues))
    bad = {c.id: c.explanation for c in report.checks if c.severity not in ("ok", "skipped")}
    assert bad == {}
    assert report.verdict == "OK" and report.score == 100 and report.exit_code == 0
    assert report.database_ms is not None and report.transport == "postgres"
    for check in report.checks:
        if check.severity == "skipped":
            assert check.explanation, check.id


def test_report_json_schema_is_stable(store: PostgresStore) -> None:
    data = run(store, None, make_settings()).model_dump(mode="json")
    assert set(data) >= {
        "score",
        "verdict",
        "checks",
        "generated_at",
        "duration_ms",
        "previous",
        "changes",
        "exit_code",
    }
    assert set(data["checks"][0]) >= {
        "id",
        "title",
        "severity",
        "observed",
        "threshold",
        "explanation",
        "remedy",
        "area",
        "weight",
    }


def test_supabase_transport_gives_the_same_report(
    store: PostgresStore, db: psycopg.Connection[Any], supabase_url: str, supabase_key: str
) -> None:
    from dbops.adapters.supabase import SupabaseStore

    add_jobs(db, 2, "in_progress", updated_ago=HOUR)
    add_jobs(db, 1, "complete", completed_ago=HOUR)
    add_requests(db, 3, ago=30 * HOUR)
    direct = run(store, None, make_settings())
    over_rpc = SupabaseStore(supabase_url, supabase_key)
    try:
        first = run(over_rpc, None, make_settings(), save=True)
        second = run(over_rpc, None, make_settings(), save=True)
        runs = audit.history(store=over_rpc, limit=5)
    finally:
        over_rpc.close()
    assert first.transport == "supabase" and first.saved and second.saved
    as_dict = {c.id: (c.severity, c.observed) for c in direct.checks if c.id != "db.reachable"}
    assert {c.id: (c.severity, c.observed) for c in first.checks if c.id != "db.reachable"} == (
        as_dict
    )
    assert second.previous is not None and second.previous.id == first.run_id
    assert [r.id for r in runs] == [second.run_id, first.run_id]


def test_supabase_without_dbops_is_reachable_but_not_installed(
    postgrest_stub: Any, empty_database_url: str, supabase_key: str
) -> None:
    from dbops.adapters.supabase import SupabaseStore
    from dbops.services import migrations

    bare = PostgresStore(empty_database_url)
    try:
        migrations.migrate(store=bare, which="app")
    finally:
        bare.close()
    with postgrest_stub.project(empty_database_url) as url:
        over_rpc = SupabaseStore(url, supabase_key)
        try:
            report = run(over_rpc, None, make_settings(), "db", save=True)
        finally:
            over_rpc.close()
    assert severity(report, "db.reachable") == "ok"
    assert severity(report, "db.migrations") == "critical"
    assert severity(report, "db.schema") == "unknown"
    assert not report.saved and report.save_error


# --------------------------------------------------------------------------- seeded sandbox
def _seed(store: PostgresStore, sqs: SqsQueues, queues: QueuePair, scenario: str) -> Any:
    seed_module = pytest.importorskip("dbops.sandbox.seed")
    return seed_module.seed(
        store=store,
        queues=sqs,
        main_queue_url=queues.main_url,
        dlq_url=queues.dlq_url,
        scenario=scenario,
    )


def test_clean_seeded_sandbox_is_ok(
    store: PostgresStore, queues: QueuePair, sqs: SqsQueues
) -> None:
    _seed(store, sqs, queues, "clean")
    report = run(store, sqs, make_settings(queues))
    bad = {c.id: c.explanation for c in report.checks if c.severity not in ("ok", "skipped")}
    assert bad == {}
    assert report.verdict == "OK"


def test_incident_seeded_sandbox_is_critical_and_names_each_problem(
    store: PostgresStore, queues: QueuePair, sqs: SqsQueues
) -> None:
    seeded = _seed(store, sqs, queues, "incident")
    report = run(store, sqs, make_settings(queues))
    assert report.verdict == "CRITICAL" and report.exit_code == 2
    stale = report.check("jobs.stale")
    assert stale.severity == "critical" and stale.observed == seeded.stale_jobs
    assert seeded.long_running_job_id not in stale.details["sample"]
    dead = report.check("workers.dead_holding")
    assert dead.severity == "critical"
    assert dead.details["holding_in_progress"] == seeded.dead_workers_holding_jobs
    assert report.check("jobs.orphaned").observed == seeded.orphaned_pending_jobs
    assert report.check("jobs.orphaned").severity == "critical"
    stuck = report.check("jobs.stuck_submitting")
    assert stuck.severity == "warning" and stuck.observed == seeded.results_stuck_submitting
    legacy = report.check("db.legacy_status")
    assert legacy.severity == "warning"
    assert legacy.observed == seeded.jobs_by_status.get("complete")
    dlq = report.check("queue.dlq_depth")
    assert dlq.severity == "critical" and dlq.observed == seeded.dlq_messages
    assert report.check("ratelimit.cleanup_overdue").severity == "warning"
    assert report.check("ratelimit.429_ratio").severity in ("warning", "critical")
    assert report.check("jobs.error_rate").severity in ("warning", "critical")
    assert report.check("workers.none_live_with_backlog").severity == "ok"
    assert report.check("queue.backlog").severity == "ok"
    for check in report.problems:
        assert check.remedy and check.remedy.startswith("dbops "), check.id
