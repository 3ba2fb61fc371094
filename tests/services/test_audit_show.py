"""Audit run ids (migration 0019) and `dbops.services.audit.show_run`: stored runs read back
by whole run id, unique prefix or `latest`, over both transports and both schema variants."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from dbops.adapters.postgres import PostgresStore
from dbops.errors import NotFoundError, UsageError
from dbops.services import audit, ids
from tests.services.test_audit import HOUR, add_job, make_settings, run


def stored_run(
    db: psycopg.Connection[Any],
    run_id: str,
    *,
    hours_ago: float = 1.0,
    score: int = 100,
    verdict: str = "OK",
    checks: list[dict[str, Any]] | None = None,
    selection: dict[str, Any] | None = None,
) -> int:
    """A stored run with this run id, as `dbops audit` would have saved it; returns its id."""
    row = db.execute(
        "insert into dbops_audit_runs (run_id, generated_at, score, verdict, checks, "
        "duration_ms, selection) values (%s, now() - make_interval(secs => %s), %s, %s, "
        "%s::jsonb, 12.5, %s::jsonb) returning id",
        (
            run_id,
            hours_ago * HOUR,
            score,
            verdict,
            json.dumps(checks or []),
            json.dumps(selection or {}),
        ),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def sharing(prefix: str, n: int) -> list[str]:
    """n run ids that all start with `prefix` (hex digits), in id order."""
    return sorted(str(uuid.UUID(prefix + uuid.uuid4().hex[len(prefix) :])) for _ in range(n))


def check(check_id: str, severity: str, observed: Any) -> dict[str, Any]:
    return {
        "id": check_id,
        "area": "jobs",
        "title": check_id,
        "severity": severity,
        "observed": observed,
        "explanation": f"{check_id} is {severity}",
        "weight": 10,
    }


def test_migration_gives_existing_runs_a_unique_run_id(db: psycopg.Connection[Any]) -> None:
    for score in (40, 70, 100):
        db.execute(
            "insert into dbops_audit_runs (score, verdict) values (%s, 'OK')",  # no run_id given
            (score,),
        )
    rows = db.execute("select run_id from dbops_audit_runs").fetchall()
    assert len({r["run_id"] for r in rows}) == 3 and all(r["run_id"] for r in rows)
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "insert into dbops_audit_runs (run_id, score, verdict) values (%s, 1, 'OK')",
            (rows[0]["run_id"],),
        )


def test_save_history_and_show_carry_the_run_id(store: Any, db: psycopg.Connection[Any]) -> None:
    first = run(store, None, make_settings(), "jobs", save=True)
    add_job(db, "in_progress", updated_ago=HOUR)
    second = run(store, None, make_settings(), "jobs", save=True)
    assert first.run_uuid and second.run_uuid and first.run_uuid != second.run_uuid
    assert uuid.UUID(second.run_uuid)
    assert second.previous is not None and second.previous.run_uuid == first.run_uuid
    runs = audit.history(store=store, limit=5)
    assert [r.run_uuid for r in runs] == [second.run_uuid, first.run_uuid]
    assert [r.id for r in runs] == [second.run_id, first.run_id]

    # whole id, prefix (with and without hyphens, any case) and latest: the same stored run
    for given in (second.run_uuid, second.run_uuid[:8].upper(), second.run_uuid[:13], "latest"):
        shown = audit.show_run(store=store, run=given)
        assert shown.run_uuid == second.run_uuid and shown.run_id == second.run_id, given
    assert shown.saved and shown.score == second.score and shown.verdict == second.verdict
    assert shown.exit_code == second.exit_code
    assert shown.generated_at == second.generated_at
    assert [c.model_dump() for c in shown.checks] == [c.model_dump() for c in second.checks]
    # compared with the run before it, as the run itself was
    assert shown.previous is not None and shown.previous.run_uuid == first.run_uuid
    assert shown.changes == second.changes
    assert [(c.id, c.before, c.after) for c in shown.changes] == [("jobs.stale", "ok", "warning")]
    older = audit.show_run(store=store, run=first.run_uuid[:6])
    assert older.run_uuid == first.run_uuid and older.previous is None and older.changes == []


def test_previous_is_the_earlier_run_with_the_same_selection(db: psycopg.Connection[Any]) -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    stored_run(db, a, hours_ago=3, checks=[check("jobs.stale", "ok", 0)], selection={"x": 1})
    stored_run(db, b, hours_ago=2, checks=[check("jobs.stale", "critical", 30)])
    stored_run(
        db, c, hours_ago=1, score=50, verdict="WARNING",
        checks=[check("jobs.stale", "warning", 4)], selection={"x": 1},
    )  # fmt: skip
    store = PostgresStore(db.info.dsn)
    try:
        shown = audit.show_run(store=store, run=c)
        assert shown.previous is not None and shown.previous.run_uuid == a
        moves = [(x.before, x.after, x.observed_before, x.observed_after) for x in shown.changes]
        assert moves == [("ok", "warning", 0, 4)]
        assert audit.show_run(store=store, run=b).previous is None
    finally:
        store.close()


def test_ambiguous_unknown_and_malformed_run_ids(store: Any, db: psycopg.Connection[Any]) -> None:
    many = sharing("abcdef", 7)
    for n, run_id in enumerate(many):
        stored_run(db, run_id, hours_ago=n + 1)
    lone = sharing("123456", 1)[0]
    stored_run(db, lone)
    assert audit.show_run(store=store, run="123456").run_uuid == lone

    with pytest.raises(UsageError) as caught:
        audit.show_run(store=store, run="abcdef")
    line = caught.value.one_line()
    assert "audit run id prefix 'abcdef' is ambiguous" in line and "and more" in line
    assert sum(r in line for r in many) == ids.MAX_CANDIDATES and many[0] in line
    assert audit.show_run(store=store, run=many[3][:20]).run_uuid == many[3]

    with pytest.raises(NotFoundError, match="no audit run id starts with '000000'"):
        audit.show_run(store=store, run="000000")
    with pytest.raises(NotFoundError, match="no audit run"):
        audit.show_run(store=store, run=str(uuid.uuid4()))
    for bad in ("abcde", "not-a-run", "12", "", "latest-1", "abcdefg"):
        with pytest.raises(UsageError, match="invalid audit run id"):
            audit.show_run(store=store, run=bad)


def test_latest_without_runs_is_not_found(store: Any) -> None:
    with pytest.raises(NotFoundError, match="no stored audit runs"):
        audit.show_run(store=store, run="latest")


def test_resolve_ids_knows_audit_runs_and_keeps_kinds_apart(
    store: Any, db: psycopg.Connection[Any]
) -> None:
    run_id = sharing("fedcba", 1)[0]
    stored_run(db, run_id)
    assert ids.resolve_ids(store=store, kind="audit_run", values=[run_id[:10]]) == [run_id]
    with pytest.raises(NotFoundError, match="no job id"):
        ids.resolve_ids(store=store, kind="job", values=[run_id[:10]])


def test_show_on_both_schema_variants(
    schema_variant: str, variant_db: Any, variant_database_url: str
) -> None:
    store = PostgresStore(variant_database_url)
    try:
        saved = run(store, None, make_settings(), "jobs", "db.legacy_status", save=True)
        shown = audit.show_run(store=store, run=(saved.run_uuid or "")[:6])
    finally:
        store.close()
    assert shown.run_uuid == saved.run_uuid and shown.verdict == saved.verdict
    assert {c.id: c.severity for c in shown.checks} == {c.id: c.severity for c in saved.checks}


def test_diff_between_two_stored_runs(store: Any, db: psycopg.Connection[Any]) -> None:
    a, b = sharing("aaaaaa", 1)[0], sharing("bbbbbb", 1)[0]
    stored_run(
        db, a, hours_ago=3,
        checks=[check("jobs.stale", "ok", 0), check("queue.dlq_depth", "warning", 19),
                check("workers.live", "ok", 2), check("db.reachable", "ok", 1.0)],
    )  # fmt: skip
    stored_run(
        db, b, hours_ago=1, score=40, verdict="CRITICAL",
        checks=[check("jobs.stale", "critical", 18), check("queue.dlq_depth", "warning", 140),
                check("workers.live", "ok", 3), check("jobs.orphaned", "ok", 0)],
    )  # fmt: skip
    diff = audit.diff_runs(store=store, before=a[:6], after="latest")
    assert (diff.before.run_uuid, diff.after.run_uuid) == (a, b)
    assert (diff.after.verdict, diff.after.score) == ("CRITICAL", 40)
    assert [(c.id, c.kind, c.before, c.after) for c in diff.changes] == [
        ("jobs.stale", "severity", "ok", "critical"),
        ("queue.dlq_depth", "value", "warning", "warning"),
    ]
    assert diff.only_before == ["db.reachable"] and diff.only_after == ["jobs.orphaned"]
    backwards = audit.diff_runs(store=store, before=b, after=a)
    first = backwards.changes[0]
    assert (first.id, first.before, first.after) == ("jobs.stale", "critical", "ok")
    assert audit.diff_runs(store=store, before=a, after=a).changes == []
    with pytest.raises(NotFoundError):
        audit.diff_runs(store=store, before=a, after="cccccc")
    with pytest.raises(UsageError):
        audit.diff_runs(store=store, before="abc", after=b)


def test_diff_parses_both_ids_before_looking_either_up(store: Any) -> None:
    with pytest.raises(UsageError, match="invalid audit run id 'not-a-run'"):
        audit.diff_runs(store=store, before="latest", after="not-a-run")  # no runs stored
