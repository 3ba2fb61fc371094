"""dbops.services.overview: the Dashboard's pure arithmetic, and dbops_overview itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from dbops.services.overview import (
    AuditFigures,
    Dashboard,
    JobsFigures,
    Overview,
    QueueFigures,
    WorkersFigures,
)


def frame(total: int, *, age: float | None = None, full: AuditFigures | None = None) -> Overview:
    cheap = AuditFigures(scope="cheap", verdict="OK", score=100, generated_at=datetime.now(UTC))
    cheap.full = full
    return Overview(
        at=datetime.now(UTC),
        window_seconds=900,
        queues=[
            QueueFigures(
                role="main",
                queue="jobs",
                url="u",
                visible=total,
                in_flight=0,
                delayed=0,
                total=total,
                oldest_age_seconds=age,
            )
        ],
        jobs=JobsFigures(stale_after_seconds=600, orphaned_after_seconds=1800),
        workers=WorkersFigures(dead_after_seconds=120),
        audit=cheap,
    )


def test_dashboard_rates_eta_history_and_carried_values() -> None:
    dash = Dashboard(history=3, full_every=60)
    assert dash.wants_full(1000.0)
    full = AuditFigures(scope="full", verdict="WARNING", score=80, generated_at=datetime.now(UTC))
    first = dash.add(frame(100, age=42.0, full=full), at=1000.0, full=True)
    assert first.queues[0].in_rate is None and first.queues[0].time_to_empty_seconds is None
    assert not dash.wants_full(1030.0) and dash.wants_full(1060.0)
    second = dash.add(frame(80), at=1010.0)
    q = second.queues[0]
    assert (q.in_rate, q.out_rate, q.drain_rate) == (0.0, 2.0, 2.0)
    assert q.time_to_empty_seconds == 40.0
    assert q.oldest_age_seconds == 42.0  # carried from the last CloudWatch read
    assert second.audit.full is not None and second.audit.full.verdict == "WARNING"
    dash.add(frame(90), at=1020.0)
    dash.add(frame(95), at=1030.0)
    assert list(dash.depths["main"]) == [80, 90, 95]  # bounded history


def test_overview_function_is_read_only(variant_db: Any) -> None:
    with variant_db.transaction():
        variant_db.execute("select * from dbops_overview(p_audit_only => array['jobs.stale'])")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            variant_db.execute("insert into dbops_audit_runs (score, verdict) values (1, 'OK')")


def test_overview_function_refuses_bad_arguments(db: Any) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("select * from dbops_overview(p_minutes => 0)")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("select * from dbops_overview(p_dead_seconds => -1)")


def test_overview_over_both_transports(store: Any, db: Any) -> None:
    db.execute(
        """insert into worker_heartbeats (worker_id, queue_name, status, last_heartbeat)
           values (gen_random_uuid(), 'jobs', 'idle', now()),
                  (gen_random_uuid(), 'jobs', 'idle', now() - interval '5 minutes')"""
    )
    rows = store.call("dbops_overview", {"p_audit_only": ["jobs.stale"], "p_minutes": 3})
    doc = rows[0]["overview"]
    assert doc["workers"]["alive"] == 1 and doc["workers"]["dead"] == 1
    assert len(doc["jobs"]["per_minute"]) == 3
    assert doc["audit"]["jobs.stale"]["state"] == "observed"
    assert doc["errors"] == {}
