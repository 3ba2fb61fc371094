"""`dbops db roles`: least-privilege roles, exercised through real LOGIN users.

Each test applies the roles to its own database (grants are per database; the two roles
are cluster-wide and may already exist), creates a LOGIN user that is a member of one
of them, points DATABASE_URL at that user and runs real commands.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import JobSeed, QueuePair
from tests.helpers import invoke, one_line_error

IDENTIFIER = "ip:203.0.113.7"
ENDPOINT = "/api/auth/login"


@pytest.fixture
def login_in(database_url: str, db: psycopg.Connection[Any]) -> Iterator[Callable[[str], str]]:
    """`login_in("dbops_readonly")` -> a DSN for a new LOGIN user in that role.

    The test server (pgserver) trusts local connections; a password is set anyway so the
    same DSN works against a DBOPS_TEST_DATABASE_URL server that checks passwords.
    """
    created: list[str] = []

    def make(group: str) -> str:
        role = f"ci_{uuid.uuid4().hex[:10]}"
        try:
            db.execute(
                sql.SQL("create role {} login password 'ci-test-pw' in role {}").format(
                    sql.Identifier(role), sql.Identifier(group)
                )
            )
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test server does not let us create roles")
        created.append(role)
        info = psycopg.conninfo.conninfo_to_dict(database_url)
        info.update(user=role, password="ci-test-pw")
        return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})

    yield make
    for role in created:
        db.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", [role]
        )
        db.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


def _seed(job_seed: JobSeed, db: psycopg.Connection[Any]) -> dict[str, str]:
    stale = job_seed.job(status="in_progress", idle=3600)
    job_seed.heartbeat(stale, age=3600)
    job_seed.event(stale, "queue_claimed", age=3500)
    job_seed.result(stale, "submitted", age=3500)
    failed = job_seed.job(status="failed", idle=1800, error="boom")
    pending = job_seed.job(status="pending", idle=7200)
    for _ in range(3):
        db.execute("select * from dbops_rate_limit_hit(%s, %s)", [IDENTIFIER, ENDPOINT])
    return {"stale": stale, "failed": failed, "pending": pending}


def _statuses(db: psycopg.Connection[Any]) -> dict[str, str]:
    return {str(r["id"]): r["status"] for r in db.execute("select id, status from jobs")}


def _grantees(db: psycopg.Connection[Any], function: str) -> set[str]:
    rows = db.execute(
        "select r.rolname from pg_proc p, aclexplode(p.proacl) a "
        "join pg_roles r on r.oid = a.grantee where p.proname = %s",
        [function],
    ).fetchall()
    return {r["rolname"] for r in rows}


# --------------------------------------------------------------------------- printing
def test_prints_sql_without_a_database() -> None:
    printed = invoke(["db", "roles"]).stdout
    assert "create role %I nologin" in printed
    assert "provolatile in ('s', 'i')" in printed  # the read-only rule, from the catalog
    report = invoke(["db", "roles", "-o", "json"]).json
    assert [r["name"] for r in report["roles"]] == ["dbops_readonly", "dbops_operator"]
    assert report["sql"] == printed and report["resolved"] is False
    readonly = report["roles"][0]
    assert {g["object_type"] for g in readonly["grants"]} == {"schema", "table", "function"}
    assert all(g["privileges"] in (["USAGE"], ["SELECT"], ["EXECUTE"]) for g in readonly["grants"])
    rows = invoke(["db", "roles", "-o", "jsonl"]).jsonl
    assert {r["role"] for r in rows} == {"dbops_readonly", "dbops_operator"}


def test_printed_sql_runs_as_pasted_twice(database_url: str, db: Any) -> None:
    printed = invoke(["db", "roles"]).stdout
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(printed.encode())
        conn.execute(printed.encode())
    assert "dbops_readonly" in _grantees(db, "dbops_jobs_list")
    assert "dbops_readonly" not in _grantees(db, "dbops_jobs_fail")
    assert "dbops_operator" in _grantees(db, "dbops_jobs_fail")


def test_apply_needs_a_direct_connection(supabase_env: str) -> None:
    result = invoke(["db", "roles", "--apply", "--yes"], code=3)
    assert "direct Postgres connection" in one_line_error(result.stderr)


# --------------------------------------------------------------------------- applying
def test_apply_previews_confirms_logs_and_is_idempotent(db_env: str, db: Any) -> None:
    invoke(["db", "roles", "--apply"], code=6)  # not confirmed off a TTY
    dry = invoke(["db", "roles", "--apply", "--dry-run", "-o", "json"]).json
    assert dry["dry_run"] is True and dry["resolved"] is True and dry["applied"] is False
    grants = {(r["name"], g["object_type"]): g for r in dry["roles"] for g in r["grants"]}
    functions = grants[("dbops_readonly", "function")]["objects"]
    assert any(f.startswith("dbops_jobs_list(") for f in functions)
    assert not any(f.startswith("dbops_jobs_fail(") for f in functions)
    assert "dbops_readonly" not in _grantees(db, "dbops_jobs_list")  # dry run: no grant

    first = invoke(["db", "roles", "--apply", "--yes", "-o", "json"]).json
    second = invoke(["db", "roles", "--apply", "--yes", "-o", "json"]).json
    assert first["applied"] and second["applied"] and second["created"] == []
    assert all(r["exists"] for r in second["roles"])
    assert first["roles"] == second["roles"]
    assert "dbops_readonly" in _grantees(db, "dbops_jobs_list")
    rows = db.execute(
        "select outcome, dry_run from dbops_action_log where command = 'db roles' order by id"
    ).fetchall()
    assert [(r["outcome"], r["dry_run"]) for r in rows] == [
        ("refused", False),
        ("dry_run", True),
        ("ok", False),
        ("ok", False),
    ]


def test_readonly_role_runs_every_read_command(
    env: QueuePair,
    monkeypatch: pytest.MonkeyPatch,
    db: Any,
    job_seed: JobSeed,
    login_in: Callable[[str], str],
) -> None:
    jobs = _seed(job_seed, db)
    invoke(["audit", "-o", "json"], code=None)  # a stored run, as the service role would
    invoke(["db", "roles", "--apply", "--yes"])
    monkeypatch.setenv("DATABASE_URL", login_in("dbops_readonly"))

    listed = invoke(["jobs", "list", "-o", "json"]).json
    assert {j["id"] for j in listed} == set(jobs.values())
    assert invoke(["jobs", "show", jobs["stale"], "-o", "json"]).json["job"]["id"] == jobs["stale"]
    invoke(["jobs", "stats", "-o", "json"])
    assert [j["id"] for j in invoke(["jobs", "stale", "-o", "json"]).json] == [jobs["stale"]]
    orphans = invoke(["jobs", "orphans", "--older-than", "1h", "-o", "json"]).json
    assert [j["id"] for j in orphans] == [jobs["pending"]]
    assert {r["name"] for r in invoke(["ratelimit", "list", "-o", "json"]).json} >= {"auth"}
    top = invoke(["ratelimit", "top", "-o", "json"]).json
    assert [(t["endpoint"], t["requests"]) for t in top] == [(ENDPOINT, 3)]
    status = invoke(["ratelimit", "status", IDENTIFIER, "-o", "json"]).json
    assert json.dumps(status).count('"used": 3') == 1
    assert invoke(["log", "-o", "json"]).json  # the service role's `db roles` run
    assert {s["status"] for s in invoke(["db", "status", "-o", "json"]).json} == {"applied"}
    assert invoke(["db", "check", "-o", "json"]).json["compatible"] is True

    assert invoke(["audit", "history", "-o", "json"]).json  # the stored run
    env.client.send_message(
        QueueUrl=env.dlq_url, MessageBody=json.dumps({"job_id": jobs["failed"]})
    )
    dlq = invoke(["dlq", "list", "-o", "json"]).json  # job status looked up in the database
    assert [(m["job_id"], m["job_status"]) for m in dlq] == [(jobs["failed"], "failed")]
    doctor = invoke(["doctor", "-o", "json"]).json
    # no check fails for lack of privileges (an endpoint may skip what it does not implement)
    assert doctor["ok"] and "fail" not in {c["status"] for c in doctor["checks"]}

    report = invoke(["audit", "-o", "json"], code=None).json
    unknown = [(c["id"], c["explanation"]) for c in report["checks"] if c["severity"] == "unknown"]
    assert unknown == []
    assert report["checks"] and report["previous"] is not None  # reads dbops_audit_runs
    assert report["saved"] is False  # writes nothing
    assert "EXECUTE on function dbops_audit_run_save" in report["save_error"]


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        (["jobs", "fail", "{failed_or_pending}", "--reason", "x", "--yes"], "dbops_jobs_fail"),
        # requeue first registers its run and sends what the outbox holds: refused there
        (["jobs", "requeue", "{failed}", "--yes"], r"dbops_jobs_(run_start|outbox_take|requeue)"),
        (["jobs", "retry", "{failed}", "--yes"], r"dbops_jobs_retry_step"),
        (
            ["jobs", "fail", "--status", "pending", "--reason", "x", "--yes"],
            "dbops_jobs_fail_bulk",
        ),
        (["ratelimit", "set", "auth", "--limit", "50", "--yes"], "dbops_ratelimit_set"),
        (
            ["ratelimit", "block", IDENTIFIER, "--for", "1h", "--reason", "abuse", "--yes"],
            "dbops_ratelimit_block",
        ),
        (["ratelimit", "reset", IDENTIFIER, "--yes"], "dbops_ratelimit_reset_batch"),
        (["ratelimit", "cleanup", "--older-than", "7d", "--yes"], "dbops_ratelimit_cleanup_batch"),
    ],
    ids=[
        "jobs fail",
        "jobs requeue",
        "jobs retry",
        "jobs fail by filter",
        "ratelimit set",
        "ratelimit block",
        "ratelimit reset",
        "ratelimit cleanup",
    ],
)
def test_readonly_role_is_refused_every_change_in_one_line(
    args: list[str],
    missing: str,
    env: QueuePair,
    monkeypatch: pytest.MonkeyPatch,
    db: Any,
    job_seed: JobSeed,
    login_in: Callable[[str], str],
    isolated_env: Path,
) -> None:
    jobs = _seed(job_seed, db)
    db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "values ('ip:198.51.100.1', '/api/x', now() - interval '30 days')"
    )
    invoke(["db", "roles", "--apply", "--yes"])
    before = _statuses(db)
    tables = [
        "rate_limit_requests",
        "dbops_rate_limit_rules",
        "dbops_rate_limit_overrides",
        "dbops_rate_limit_blocks",
        "dbops_job_recoveries",
        "queue_history",
    ]
    counts = {t: db.execute(f"select count(*) as n from {t}").fetchone()["n"] for t in tables}
    logged = db.execute("select count(*) as n from dbops_action_log").fetchone()["n"]
    monkeypatch.setenv("DATABASE_URL", login_in("dbops_readonly"))
    fill = {"{failed}": jobs["failed"], "{failed_or_pending}": jobs["pending"]}

    result = invoke([fill.get(a, a) for a in args], code=3)

    # The preview may come first (stderr); the failure is one `Error:` line, last.
    assert "Traceback" not in result.stderr
    errors = [x for x in result.stderr.splitlines() if x.startswith("Error: ")]
    assert len(errors) == 1 and result.stderr.rstrip("\n").endswith(errors[0]), result.stderr
    line = errors[0]
    assert re.search(rf"lacks EXECUTE on function {missing}\b", line), line
    assert "ci-test-pw" not in result.stderr + result.stdout
    assert _statuses(db) == before  # nothing half-done
    assert {
        t: db.execute(f"select count(*) as n from {t}").fetchone()["n"] for t in tables
    } == counts
    assert env.visible(env.main_url) == 0
    # The action log row cannot go to the database under this role: it goes to the file.
    assert db.execute("select count(*) as n from dbops_action_log").fetchone()["n"] == logged
    fallback = isolated_env.parent / "data" / "action-log.jsonl"
    records = [json.loads(x) for x in fallback.read_text().splitlines()]
    assert records[-1]["outcome"] == "error" and re.search(missing, records[-1]["error"])


def test_operator_role_recovers_requeues_and_fails(
    env: QueuePair,
    monkeypatch: pytest.MonkeyPatch,
    db: Any,
    job_seed: JobSeed,
    login_in: Callable[[str], str],
) -> None:
    jobs = _seed(job_seed, db)
    invoke(["db", "roles", "--apply", "--yes"])
    monkeypatch.setenv("DATABASE_URL", login_in("dbops_operator"))

    recovered = invoke(["jobs", "recover", "--older-than", "15m", "--yes", "-o", "json"]).json
    assert json.dumps(recovered).count(jobs["stale"]) >= 1
    invoke(["jobs", "requeue", jobs["failed"], "--yes", "-o", "json"])
    invoke(["jobs", "fail", jobs["pending"], "--reason", "bad input", "--yes", "-o", "json"])
    statuses = _statuses(db)
    assert statuses[jobs["stale"]] == "pending" and statuses[jobs["failed"]] == "pending"
    assert statuses[jobs["pending"]] == "failed"
    sent = {json.loads(m["Body"])["job_id"] for m in env.drain(env.main_url)}
    assert sent == {jobs["stale"], jobs["failed"]}
    invoke(["ratelimit", "block", IDENTIFIER, "--for", "1h", "--reason", "abuse", "--yes"])
    invoke(["ratelimit", "reset", IDENTIFIER, "--yes"])
    invoke(["audit", "-o", "json"], code=None)
    rows = db.execute(
        "select command, outcome from dbops_action_log where command <> 'db roles' order by id"
    ).fetchall()
    assert [(r["command"], r["outcome"]) for r in rows] == [
        ("jobs recover", "ok"),
        ("jobs requeue", "ok"),
        ("jobs fail", "ok"),
        ("ratelimit block", "ok"),
        ("ratelimit reset", "ok"),
    ]
    assert db.execute("select count(*) as n from dbops_audit_runs").fetchone()["n"] == 1


def test_application_tables_with_row_level_security_get_a_policy(
    db_env: str,
    monkeypatch: pytest.MonkeyPatch,
    db: Any,
    job_seed: JobSeed,
    login_in: Callable[[str], str],
) -> None:
    job_seed.job(status="pending", idle=60)
    db.execute("alter table jobs enable row level security")  # no policy: hides every row
    preview = invoke(["db", "roles", "--apply", "--dry-run", "-o", "json"]).json
    assert preview["policies"] == ["jobs"]
    invoke(["db", "roles", "--apply", "--yes"])
    monkeypatch.setenv("DATABASE_URL", login_in("dbops_readonly"))
    assert len(invoke(["jobs", "list", "-o", "json"]).json) == 1
    monkeypatch.setenv("DATABASE_URL", db_env)
    assert invoke(["db", "roles", "--apply", "--dry-run", "-o", "json"]).json["policies"] == []
