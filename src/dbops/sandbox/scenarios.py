"""The scenarios (`incident`, `clean`): job lifecycles, DLQ shapes and rate-limit traffic,
planned with a seeded RNG, then fitted to the schema's shape (`fit`)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from dbops.sandbox.plan import (
    DEFAULT_SEED,
    DLQ_REASONS,
    ERRORS,
    HOUR,
    MIN,
    NEAR_LIMIT_ENDPOINT,
    NEAR_LIMIT_KEY,
    NEAR_LIMIT_REQUESTS,
    OFFENDER_ENDPOINT,
    OFFENDER_IP,
    OFFENDER_REQUESTS,
    RECENT_WINDOW,
    SOURCES,
    Plan,
)
from dbops.sandbox.shape import LEGACY_HISTORY_EVERY, LEGACY_TRANSITIONS, STANDARD_SHAPE, Shape


# --------------------------------------------------------------------------- lifecycles
def _finished(plan: Plan, status: str, created: float, *, error: str | None = None) -> None:
    """A job that ran to the end (completed, legacy complete, or failed)."""
    started = max(created - plan.between(3, 120), 90.0)
    ended = max(started - plan.between(20, 900), 60.0)
    job = plan.job(
        status,
        created,
        started=started,
        updated=ended,
        completed=ended if status in ("completed", "complete") else None,
        error=error,
    )
    worker = plan.uid()  # a worker that has since been recycled
    plan.enqueue_events(job)
    plan.event(job, "started", started, worker=worker)
    if status == "failed":
        plan.event(job, "failed", ended, worker=worker, details={"error": error})
        plan.result(job, "failed", ended + 5, error=error)
    else:
        plan.event(job, "completed", ended, worker=worker)
        for _ in range(plan.rng.choice([1, 1, 2, 3])):
            status_ = "skipped" if plan.rng.random() < 0.1 else "submitted"
            plan.result(job, status_, ended + plan.between(1, 10))


def _pending_enqueued(plan: Plan, created: float) -> dict[str, Any]:
    job = plan.job("pending", created)
    plan.enqueue_events(job)
    return job


def _healthy_in_progress(plan: Plan) -> None:
    created = plan.between(5 * MIN, 30 * MIN)
    started = plan.between(2 * MIN, min(created - 30, 10 * MIN))
    job = plan.job("in_progress", created, started=started, updated=plan.between(5, 90))
    worker = plan.worker("running", plan.between(0, 20), job)
    plan.enqueue_events(job)
    plan.event(job, "started", started, worker=worker)
    plan.result(job, "submitted", plan.between(60, 120))
    if plan.rng.random() < 0.5:
        plan.result(job, "submitting", plan.between(10, 120))  # in flight, not stuck


def _cancelled(plan: Plan) -> None:
    created = plan.between(2 * HOUR, 48 * HOUR)
    ended = created - plan.between(60, 1800)
    job = plan.job("cancelled", created, updated=ended, error="cancelled by operator")
    plan.enqueue_events(job)
    plan.event(job, "cancelled", ended, details={"by": "ops"})


# --------------------------------------------------------------------------- scenarios
def plan_incident(
    seed: int = DEFAULT_SEED, *, shape: Shape = STANDARD_SHAPE, id_salt: int = 0
) -> Plan:
    # Over 80 lines on purpose: the scenario *is* this sequence of RNG draws, read top to
    # bottom like the incident it tells; moving parts out risks reordering draws, which
    # would silently change every id, age and shape (DLQ and rate limits are apart already).
    plan = Plan(rng=random.Random(seed), shape=shape, id_salt=id_salt)
    rng = plan.rng

    for _ in range(200):
        _finished(plan, "completed", plan.between(15 * MIN, 72 * HOUR))
    for _ in range(12):  # legacy producers still write `complete`
        _finished(plan, "complete", plan.between(24 * HOUR, 96 * HOUR))
    failed = []
    for _ in range(25):
        _finished(plan, "failed", plan.between(20 * MIN, 48 * HOUR), error=rng.choice(ERRORS))
        failed.append(plan.jobs[-1])
    for _ in range(10):
        _cancelled(plan)

    # Pending and enqueued a moment ago: a handful are on the main queue.
    recent = [_pending_enqueued(plan, plan.between(10, 8 * MIN)) for _ in range(20)]
    for job in recent[:12]:
        body = plan.body(job)
        plan.message(plan.main, body, plan.attrs(body))
    # Pending for a while but claimed and enqueued: their messages ended in the DLQ.
    backlog = [_pending_enqueued(plan, plan.between(40 * MIN, 2 * HOUR)) for _ in range(6)]
    # Pending, old, never claimed for the queue: orphans.
    for _ in range(12):
        job = plan.job("pending", plan.between(45 * MIN, 4 * HOUR))
        plan.event(job, "created", job["created_age"], details={"source": "api"})
        plan.orphaned += 1

    # In progress and healthy, with live workers.
    for _ in range(8):
        _healthy_in_progress(plan)

    # In progress, stale: their workers died (heartbeats > 2 min old, still holding them).
    for i in range(14):
        updated = plan.between(30 * MIN, 90 * MIN)
        started = updated + plan.between(MIN, 10 * MIN)
        created = started + plan.between(10, 5 * MIN)
        job = plan.job("in_progress", created, started=started, updated=updated)
        beat = plan.between(15 * MIN, updated)
        worker = plan.worker("running", beat, job)
        plan.enqueue_events(job)
        plan.event(job, "started", started, worker=worker)
        plan.stale_jobs += 1
        if i < 6:  # died in the middle of a submission
            plan.result(job, "submitting", started - 30, updated=plan.between(20 * MIN, updated))
            plan.stuck_submitting += 1
    # In progress, stale, and nobody holds them any more (the worker row is gone).
    for _ in range(4):
        updated = plan.between(45 * MIN, 90 * MIN)
        job = plan.job(
            "in_progress", updated + 10 * MIN, started=updated + 5 * MIN, updated=updated
        )
        plan.enqueue_events(job)
        plan.event(job, "started", job["started_age"], worker=plan.uid())
        plan.stale_jobs += 1

    # One long job: its row has not changed for ~3 h, but its worker beats right now.
    # It must never be treated as stale.
    long_job = plan.job(
        "in_progress",
        3 * HOUR + 10 * MIN,
        started=3 * HOUR,
        updated=3 * HOUR - 30,
        package_size=5000,
        metadata={"source": "backfill", "note": "long-running backfill, worker alive"},
    )
    long_worker = plan.worker("running", plan.between(0, 3), long_job)
    plan.enqueue_events(long_job)
    plan.event(long_job, "started", long_job["started_age"], worker=long_worker)
    plan.result(long_job, "submitted", 2 * HOUR, directory="archive/2024")
    plan.long_running_job_id = long_job["id"]

    # Other workers: idle, starting, paused (alive); two long-dead ones holding nothing.
    for _ in range(4):
        plan.worker("idle", plan.between(0, 20))
    plan.worker("starting", plan.between(0, 10))
    plan.worker("paused", plan.between(0, 20))
    for _ in range(2):
        plan.worker("error", plan.between(3 * HOUR, 20 * HOUR))

    _incident_dlq(plan, backlog=backlog, failed=failed)
    _incident_rate_limits(plan)
    return plan


def _incident_dlq(
    plan: Plan, *, backlog: Sequence[dict[str, Any]], failed: Sequence[dict[str, Any]]
) -> None:
    """DLQ messages of every shape in architecture.md section 3."""
    rng = plan.rng
    for job in backlog:  # normal JSON with job_id/customer_id (String), priority (Number)
        body = plan.body(job)
        plan.message(plan.dlq, body, plan.attrs(body))
    for job in failed[:2]:  # re-queued once already, failed again
        body = plan.body(
            job,
            retry_attempt=2,
            requeued_by="dbops:oncall",
            requeued_at=plan.iso(plan.between(30 * MIN, 60 * MIN)),
        )
        plan.message(plan.dlq, body, plan.attrs(body, retry="2"))
    # Producers that send the priority as a string.
    body = plan.body(failed[2], priority="pro")
    plan.message(
        plan.dlq,
        body,
        {
            "job_id": ("String", body["job_id"]),
            "customer_id": ("String", body["customer_id"]),
            "priority": ("String", "pro"),
        },
    )
    body = plan.body(failed[3], priority="enterprise")
    plan.message(
        plan.dlq,
        body,
        {"job_id": ("String", body["job_id"]), "customer_id": ("String", body["customer_id"])},
    )
    # Bodies that are not JSON at all.
    plan.message(
        plan.dlq,
        "Traceback (most recent call last): worker.py line 88: KeyError: 'package_size'",
    )
    truncated = json.dumps(plan.body(failed[4]))[:48]
    plan.message(plan.dlq, truncated, {"job_id": ("String", failed[4]["id"])})
    # Moved by hand by a consumer: `_dlq_reason` and `_original_message_id` in the body.
    for job, reason in zip(failed[5:8], DLQ_REASONS, strict=True):
        body = plan.body(job, _dlq_reason=reason, _original_message_id=plan.uid())
        plan.message(plan.dlq, body, plan.attrs(body))
    # A message whose job has completed since.
    done = next(j for j in plan.jobs if j["status"] == "completed")
    body = plan.body(done)
    plan.message(plan.dlq, body, plan.attrs(body))
    # Valid JSON, attributes missing.
    for job in failed[8:10]:
        plan.message(plan.dlq, plan.body(job))
    # A job id the database has never heard of.
    body = plan.body(None, source=rng.choice(SOURCES))
    plan.message(plan.dlq, body, plan.attrs(body))


def _incident_rate_limits(plan: Plan) -> None:
    rng = plan.rng
    # Far over the public preset: 400 in the last minute, ~200/min for 15 min before that,
    # so it still shows in wider windows (and a few minutes after seeding).
    plan.requests(OFFENDER_IP, OFFENDER_ENDPOINT, OFFENDER_REQUESTS, 0, RECENT_WINDOW)
    plan.requests(OFFENDER_IP, OFFENDER_ENDPOINT, 2800, MIN, 15 * MIN)
    plan.offender = OFFENDER_IP
    # The limiter refused what it could: 300 of the last minute's 400, ~100/min before.
    plan.denials.append(
        {
            "minutes_ago": 0,
            "identifier": OFFENDER_IP,
            "endpoint": OFFENDER_ENDPOINT,
            "denied": OFFENDER_REQUESTS - 100,
        }
    )
    for minutes_ago in range(1, 15):
        plan.denials.append(
            {
                "minutes_ago": minutes_ago,
                "identifier": OFFENDER_IP,
                "endpoint": OFFENDER_ENDPOINT,
                "denied": 100,
            }
        )
    # Near the staff preset (30/min), steadily.
    plan.requests(NEAR_LIMIT_KEY, NEAR_LIMIT_ENDPOINT, NEAR_LIMIT_REQUESTS, 0, RECENT_WINDOW)
    plan.requests(NEAR_LIMIT_KEY, NEAR_LIMIT_ENDPOINT, 25 * 14, MIN, 15 * MIN)
    _background_traffic(plan, clients=30, per_client=(1, 15))
    for i in range(6):  # logins, under the auth preset (5 per 15 min)
        plan.requests(f"ip:192.0.2.{10 + i}", "/api/auth/login", rng.randint(1, 4), 0, 14 * MIN)
    for i in range(5):  # older than a day: the sliding-window log was never pruned
        plan.requests(f"ip:198.51.100.{200 + i}", "/api/public/search", 50, 25 * HOUR, 72 * HOUR)


def _background_traffic(plan: Plan, *, clients: int, per_client: tuple[int, int]) -> None:
    rng = plan.rng
    endpoints = ["/api/public/search", "/api/public/jobs", "/api/jobs/status"]
    for i in range(clients):
        plan.requests(
            f"ip:198.51.100.{i + 1}", rng.choice(endpoints), rng.randint(*per_client), 0, HOUR
        )
    plan.requests("api_key:sk_demo_partner_51c0ffee2e7a", "/api/jobs/status", 12, 0, HOUR)


def plan_clean(
    seed: int = DEFAULT_SEED, *, shape: Shape = STANDARD_SHAPE, id_salt: int = 0
) -> Plan:
    plan = Plan(rng=random.Random(seed), shape=shape, id_salt=id_salt)
    for _ in range(120):
        _finished(plan, "completed", plan.between(15 * MIN, 24 * HOUR))
    for _ in range(2):
        _finished(plan, "failed", plan.between(HOUR, 20 * HOUR), error=plan.rng.choice(ERRORS))
    for _ in range(4):
        _healthy_in_progress(plan)
    for _ in range(6):
        job = _pending_enqueued(plan, plan.between(5, 3 * MIN))
        body = plan.body(job)
        plan.message(plan.main, body, plan.attrs(body))
    for _ in range(3):
        plan.worker("idle", plan.between(0, 20))
    _background_traffic(plan, clients=15, per_client=(1, 10))
    return plan


PLANNERS = {"incident": plan_incident, "clean": plan_clean}


def fit(plan: Plan) -> tuple[dict[str, str], int]:
    """Fit a planned scenario to its shape's constraints, after planning (no RNG draws).

    Statuses the jobs check refuses become the nearest allowed one; on schemas with legacy
    history columns, every third job's lifecycle events (started, completed, failed,
    cancelled) become legacy transition rows. Returns (statuses mapped, legacy rows).
    """
    shape = plan.shape
    mapped: dict[str, str] = {}
    for job in plan.jobs:
        fitted = shape.fit_status(job["status"])
        if fitted != job["status"]:
            mapped[job["status"]] = fitted
            job["status"] = fitted
    if not shape.legacy_history:
        return dict(sorted(mapped.items())), 0
    legacy_jobs = {
        job["id"]: job for i, job in enumerate(plan.jobs) if i % LEGACY_HISTORY_EVERY == 0
    }
    legacy_rows = 0
    for event in plan.events:
        holder = legacy_jobs.get(event["job_id"])
        transition = LEGACY_TRANSITIONS.get(event["event"]) if holder else None
        if holder is None or transition is None:
            continue
        status_from, status_to = transition
        event.update(
            event=None,
            details=None,
            status_from=status_from,
            status_to=status_to or holder["status"],
        )
        legacy_rows += 1
    return dict(sorted(mapped.items())), legacy_rows
