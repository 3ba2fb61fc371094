"""Deterministic sandbox scenarios: `incident` (everything that goes wrong) and `clean`.

A scenario is planned in Python with a seeded RNG (ids, ages, shapes) and written in a
handful of bulk statements: every table's rows go in as one `jsonb_to_recordset`
parameter, in one transaction. Times are ages in seconds applied to the database's
`now()`, so the data is always fresh relative to the moment it is seeded. Queue
messages go out in batches of 10.

Seeding wipes the application tables and both sandbox queues. It only ever runs
against the sandbox's own servers (see `run()`), never the configured environment.

The scenarios fit whichever application schema the database has (`read_shape()` reads it
from the catalog): on the production-shaped `legacy` variant, customer ids are UUIDs
(uuid5 of the readable name, which goes to `business_name`), statuses the jobs check
constraint does not allow become the nearest one it does (`cancelled` -> `failed`), some
history rows are legacy transitions (`status_from`/`status_to`, no event, no details), and
the extra columns get plausible values. The standard variant's data is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dbops.errors import ConfigError, RemoteError
from dbops.ports import OutgoingMessage, Queues
from dbops.sandbox import MAIN_QUEUE, SchemaName

if TYPE_CHECKING:
    from dbops.adapters.postgres import PostgresStore

Scenario = Literal["incident", "clean"]
DEFAULT_SEED = 20240611
MIN = 60.0
HOUR = 3600.0

APP_TABLES = "job_results, worker_heartbeats, queue_history, rate_limit_requests, jobs"

# The incident's rate-limit offenders (architecture.md s.3 presets: public 100/min, staff 30/min).
OFFENDER_IP = "ip:203.0.113.66"
OFFENDER_ENDPOINT = "/api/public/search"
OFFENDER_REQUESTS = 400
NEAR_LIMIT_KEY = "api_key:sk_demo_staff_7d41c9e2a8b6"
NEAR_LIMIT_ENDPOINT = "/api/staff/reports"
NEAR_LIMIT_REQUESTS = 27
RECENT_WINDOW = 40.0  # recent traffic is at most this old, so it stays "in the last minute"

ERRORS = [
    "TimeoutError: upstream did not respond within 120 s",
    "ValueError: package_size must be positive",
    "ConnectionResetError: connection reset by peer",
    "PermissionError: destination directory is read-only",
    "RuntimeError: checksum mismatch after upload",
]
DLQ_REASONS = [
    "maxReceiveCount exceeded",
    "worker crashed: OOMKilled",
    "validation failed: unknown customer",
]
DIRECTORIES = ["inbox", "exports/daily", "exports/weekly", "archive/2024", "reports", "raw"]
SOURCES = ["api", "scheduler", "backfill", "webhook"]

# Legacy customers are UUIDs: derived from the readable name, so they are stable.
CUSTOMER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://dbops.dev/sandbox/customers")

# A status the jobs check constraint refuses becomes the first of these it allows.
STATUS_FALLBACKS: dict[str, tuple[str, ...]] = {
    "cancelled": ("failed",),
    "completed": ("complete",),
    "complete": ("completed",),
}
# History events that legacy rows record as a status transition (status_from, status_to);
# None stands for the job's own (final) status.
LEGACY_TRANSITIONS: dict[str, tuple[str, str | None]] = {
    "started": ("pending", "in_progress"),
    "completed": ("in_progress", None),
    "failed": ("in_progress", "failed"),
    "cancelled": ("pending", None),
}
LEGACY_HISTORY_EVERY = 3  # every third job's lifecycle is recorded the legacy way

# Optional application columns the seeder fills when the table has them: name -> type.
JOB_EXTRAS = {
    "business_name": "text",
    "email": "text",
    "directory_limit": "int",
    "package_type": "text",
}
RESULT_EXTRAS = {"payload": "jsonb", "response_log": "jsonb"}
WORKER_EXTRAS = {"queue_depth": "int", "processing_count": "int", "metadata": "jsonb"}


class SeedResult(BaseModel):
    """`dbops sandbox seed -o json`: what was written (counts by construction).

    `schema` is the sandbox's schema variant (`standard` or `legacy`; null when seeded
    outside the sandbox); `customer_ids` is `text` or `uuid` (jobs.customer_id's type);
    `statuses_mapped` names the scenario statuses the jobs check constraint does not allow
    and what was written instead (e.g. `{"cancelled": "failed"}`); `legacy_history_rows`
    counts history rows written as `status_from`/`status_to` transitions without an event.
    """

    model_config = ConfigDict(
        serialize_by_alias=True, validate_by_name=True, validate_by_alias=True
    )

    scenario: Scenario
    schema_name: SchemaName | None = Field(default=None, alias="schema")
    customer_ids: Literal["text", "uuid"] = "text"
    statuses_mapped: dict[str, str] = {}
    legacy_history_rows: int = 0
    seed: int
    jobs: int
    jobs_by_status: dict[str, int]
    job_results: int
    results_stuck_submitting: int
    workers: int
    live_workers: int
    dead_workers_holding_jobs: int
    stale_jobs: int
    orphaned_pending_jobs: int
    long_running_job_id: str | None = None
    queue_history_events: int
    rate_limit_requests: int
    rate_limit_offender: str | None = None
    main_queue_messages: int
    dlq_messages: int
    elapsed_seconds: float


def result_factors(customer_id: str, package_size: int | None) -> dict[str, Any]:
    """The idempotency factors the sandbox's workers use for a job's submissions."""
    return {"customer_id": customer_id, "package_size": package_size, "schema_version": 2}


def idempotency_key(job_id: str, directory: str, factors: Mapping[str, Any]) -> str:
    """SHA-256 hex of `"{job_id}:{directory}:{json}"`, json sorted-key and compact."""
    payload = json.dumps(factors, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{job_id}:{directory}:{payload}".encode()).hexdigest()


# --------------------------------------------------------------------------- shape
@dataclass(frozen=True)
class Shape:
    """The application schema as the catalog describes it: what the seeder adapts to."""

    customer_type: Literal["text", "uuid"] = "text"
    # Statuses the jobs check constraint allows; None when it does not restrict them.
    statuses: frozenset[str] | None = None
    # table -> its columns, and the nullable ones
    columns: Mapping[str, frozenset[str]] = field(default_factory=dict)
    nullable: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def has(self, table: str, column: str) -> bool:
        return column in self.columns.get(table, frozenset())

    @property
    def legacy_history(self) -> bool:
        """queue_history takes legacy rows: status_from/status_to, event and details null."""
        return (
            self.has("queue_history", "status_from")
            and self.has("queue_history", "status_to")
            and "event" in self.nullable.get("queue_history", frozenset())
            and "details" in self.nullable.get("queue_history", frozenset())
        )

    def fit_status(self, status: str) -> str:
        """`status`, or the nearest one the jobs check constraint allows."""
        if self.statuses is None or status in self.statuses:
            return status
        for alternative in STATUS_FALLBACKS.get(status, ()):
            if alternative in self.statuses:
                return alternative
        allowed = ", ".join(sorted(self.statuses))
        raise ConfigError(
            f"cannot seed '{status}' jobs: the jobs status check allows only {allowed}"
        )


STANDARD_SHAPE = Shape()
_CHECK_LITERAL = re.compile(r"'((?:[^']|'')*)'")

_SHAPE_COLUMNS = """
select c.table_name::text as table_name, c.column_name::text as column_name,
       c.udt_name::text as udt_name, c.is_nullable = 'YES' as nullable
from information_schema.columns c
where c.table_schema = current_schema()
  and c.table_name in ('jobs', 'job_results', 'worker_heartbeats', 'queue_history')
"""

_SHAPE_STATUS_CHECKS = """
select pg_get_constraintdef(k.oid) as definition
from pg_constraint k
join pg_attribute a on a.attrelid = k.conrelid and a.attnum = any(k.conkey)
where k.conrelid = to_regclass('jobs') and k.contype = 'c' and a.attname = 'status'
"""


def read_shape(store: PostgresStore) -> Shape:
    """The application tables' columns, customer id type and allowed job statuses."""
    rows = store.query(_SHAPE_COLUMNS)
    columns: dict[str, set[str]] = {}
    nullable: dict[str, set[str]] = {}
    types: dict[tuple[str, str], str] = {}
    for row in rows:
        table, column = str(row["table_name"]), str(row["column_name"])
        columns.setdefault(table, set()).add(column)
        if row["nullable"]:
            nullable.setdefault(table, set()).add(column)
        types[(table, column)] = str(row["udt_name"])
    if "jobs" not in columns:
        raise ConfigError(
            "this database has no jobs table (is DATABASE_URL right?)",
            hint="the sandbox creates it: `dbops sandbox up`",
        )
    customer = types.get(("jobs", "customer_id"), "text")
    if customer not in ("text", "varchar", "uuid"):
        raise ConfigError(f"cannot seed jobs.customer_id of type {customer} (text or uuid)")
    statuses: frozenset[str] | None = None
    for row in store.query(_SHAPE_STATUS_CHECKS):
        definition = str(row["definition"])
        if "ANY (ARRAY[" not in definition.upper():
            continue  # not a list of values: it does not restrict which statuses exist
        values = frozenset(v.replace("''", "'") for v in _CHECK_LITERAL.findall(definition))
        statuses = values if statuses is None else statuses & values
    return Shape(
        customer_type="uuid" if customer == "uuid" else "text",
        statuses=statuses,
        columns={t: frozenset(c) for t, c in columns.items()},
        nullable={t: frozenset(c) for t, c in nullable.items()},
    )


def customer_uuid(name: str) -> str:
    """The legacy schema's customer id for the readable customer `name` (stable)."""
    return str(uuid.uuid5(CUSTOMER_NAMESPACE, name))


def _package_type(package_size: int | None) -> str:
    size = package_size or 0
    return "enterprise" if size >= 50 else "pro" if size >= 10 else "starter"


# --------------------------------------------------------------------------- planning
@dataclass
class Plan:
    rng: random.Random
    shape: Shape = STANDARD_SHAPE
    jobs: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    rate: list[dict[str, Any]] = field(default_factory=list)
    # 429s the limiter answered, per minute (dbops_rate_limit_denials), as minutes ago.
    denials: list[dict[str, Any]] = field(default_factory=list)
    main: list[OutgoingMessage] = field(default_factory=list)
    dlq: list[OutgoingMessage] = field(default_factory=list)
    stale_jobs: int = 0
    orphaned: int = 0
    stuck_submitting: int = 0
    long_running_job_id: str | None = None
    offender: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    # -- small helpers ---------------------------------------------------------
    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def between(self, low: float, high: float) -> float:
        return round(self.rng.uniform(low, high), 3)

    def customer(self) -> str:
        return f"cust_{self.rng.randint(1, 40):03d}"

    def customer_id(self, name: str) -> str:
        """The id the jobs table stores for customer `name` (a UUID on legacy schemas)."""
        return customer_uuid(name) if self.shape.customer_type == "uuid" else name

    def iso(self, age: float) -> str:
        return (self.now - timedelta(seconds=age)).isoformat().replace("+00:00", "Z")

    # -- rows ------------------------------------------------------------------
    def job(
        self,
        status: str,
        created: float,
        *,
        started: float | None = None,
        updated: float | None = None,
        completed: float | None = None,
        error: str | None = None,
        metadata: dict[str, Any] | None = None,
        package_size: int | None = None,
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self.uid(),
            "customer_id": self.customer(),
            "package_size": package_size or self.rng.choice([1, 2, 5, 10, 25, 50, 100]),
            "priority_level": self.rng.choices([1, 2, 3, 4, 5], weights=[1, 2, 6, 2, 1])[0],
            "status": status,
            "created_age": created,
            "updated_age": updated if updated is not None else created,
            "started_age": started,
            "completed_age": completed,
            "error_message": error,
            "metadata": metadata or {"source": self.rng.choice(SOURCES)},
        }
        # Legacy-only columns (ignored where the table lacks them); no RNG draws here, so
        # both schema variants get the same ids, ages and shapes.
        name = row["customer_id"]
        row["customer_id"] = self.customer_id(name)
        row["business_name"] = name
        row["email"] = f"{name.replace('_', '-')}@customers.example.com"
        row["directory_limit"] = len(DIRECTORIES)
        row["package_type"] = _package_type(row["package_size"])
        self.jobs.append(row)
        return row

    def event(
        self,
        job: dict[str, Any],
        name: str,
        age: float,
        *,
        worker: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.events.append(
            {
                "job_id": job["id"],
                "event": name,
                "details": details or {},
                "worker_id": worker,
                "age": max(age, 0.0),
            }
        )

    def enqueue_events(self, job: dict[str, Any]) -> None:
        created = job["created_age"]
        self.event(job, "created", created, details={"source": job["metadata"].get("source")})
        self.event(job, "queue_claimed", created - 1, details={"queue": MAIN_QUEUE})
        self.event(job, "enqueued", created - 2, details={"message_id": self.uid()})

    def result(
        self,
        job: dict[str, Any],
        status: str,
        created: float,
        *,
        updated: float | None = None,
        error: str | None = None,
        directory: str | None = None,
    ) -> None:
        taken = {r["directory_name"] for r in self.results if r["job_id"] == job["id"]}
        choices = [d for d in DIRECTORIES if d not in taken]
        directory = directory or self.rng.choice(choices)
        factors = result_factors(job["customer_id"], job["package_size"])
        self.results.append(
            {
                "id": self.uid(),
                "job_id": job["id"],
                "directory_name": directory,
                "status": status,
                "idempotency_key": idempotency_key(job["id"], directory, factors),
                "error_message": error,
                "created_age": created,
                "updated_age": updated if updated is not None else created,
                # legacy-only columns
                "payload": {"directory": directory, "factors": factors},
                "response_log": (
                    [{"status": 500 if status == "failed" else 200, "message": error or "ok"}]
                    if status in ("submitted", "failed")
                    else None
                ),
            }
        )

    def worker(self, status: str, beat: float, job: dict[str, Any] | None = None) -> str:
        worker_id = self.uid()
        self.workers.append(
            {
                "worker_id": worker_id,
                "queue_name": MAIN_QUEUE,
                "status": status,
                "current_job_id": job["id"] if job else None,
                "beat_age": beat,
                # legacy-only columns
                "queue_depth": None,
                "processing_count": 1 if job else 0,
                "metadata": {"hostname": f"worker-{worker_id[:8]}"},
            }
        )
        return worker_id

    def requests(self, identifier: str, endpoint: str, count: int, low: float, high: float) -> None:
        for _ in range(count):
            self.rate.append(
                {"identifier": identifier, "endpoint": endpoint, "age": self.between(low, high)}
            )

    # -- messages --------------------------------------------------------------
    def body(self, job: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
        job_id = job["id"] if job else self.uid()
        body: dict[str, Any] = {
            "job_id": job_id,
            "customer_id": job["customer_id"] if job else self.customer_id(self.customer()),
            "package_size": job["package_size"] if job else 5,
            "priority": job["priority_level"] if job else 3,
            "created_at": self.iso(job["created_age"] if job else 2 * HOUR),
            "source": (job["metadata"].get("source") if job else None) or "api",
            "metadata": {"trace_id": self.uid()[:8]},
        }
        body.update(extra)
        return body

    def message(
        self,
        queue: list[OutgoingMessage],
        body: dict[str, Any] | str,
        attributes: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        attrs = {
            name: {"DataType": kind, "StringValue": value}
            for name, (kind, value) in (attributes or {}).items()
        }
        queue.append(OutgoingMessage(id=str(len(queue)), body=text, message_attributes=attrs))

    @staticmethod
    def attrs(body: dict[str, Any], *, retry: str | None = None) -> dict[str, tuple[str, str]]:
        out = {
            "job_id": ("String", str(body["job_id"])),
            "customer_id": ("String", str(body["customer_id"])),
            "priority": ("Number", str(body["priority"])),
        }
        if retry is not None:
            out["retry"] = ("String", retry)
        return out


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
def plan_incident(seed: int = DEFAULT_SEED, *, shape: Shape = STANDARD_SHAPE) -> Plan:
    plan = Plan(rng=random.Random(seed), shape=shape)
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


def plan_clean(seed: int = DEFAULT_SEED, *, shape: Shape = STANDARD_SHAPE) -> Plan:
    plan = Plan(rng=random.Random(seed), shape=shape)
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


# --------------------------------------------------------------------------- writing
# The extra columns (`{extra_columns}` ...) are filled in from JOB_EXTRAS etc. for the
# columns the table has (our own names, never user input); empty on the standard schema.
_INSERT_JOBS = """
insert into jobs (id, customer_id, package_size, priority_level, status, created_at,
                  updated_at, started_at, completed_at, error_message, metadata{extra_columns})
select r.id, r.customer_id, r.package_size, r.priority_level, r.status,
       now() - make_interval(secs => r.created_age),
       now() - make_interval(secs => r.updated_age),
       now() - make_interval(secs => r.started_age),
       now() - make_interval(secs => r.completed_age),
       r.error_message, coalesce(r.metadata, '{{}}'::jsonb){extra_values}
from jsonb_to_recordset(%(rows)s) as r(
    id uuid, customer_id {customer_type}, package_size int, priority_level int, status text,
    created_age float8, updated_age float8, started_age float8, completed_age float8,
    error_message text, metadata jsonb{extra_types})
"""

_INSERT_RESULTS = """
insert into job_results (id, job_id, directory_name, status, idempotency_key, error_message,
                         created_at, updated_at{extra_columns})
select r.id, r.job_id, r.directory_name, r.status, r.idempotency_key, r.error_message,
       now() - make_interval(secs => r.created_age),
       now() - make_interval(secs => r.updated_age){extra_values}
from jsonb_to_recordset(%(rows)s) as r(
    id uuid, job_id uuid, directory_name text, status text, idempotency_key text,
    error_message text, created_age float8, updated_age float8{extra_types})
"""

_INSERT_WORKERS = """
insert into worker_heartbeats (worker_id, queue_name, status, current_job_id,
                               last_heartbeat{extra_columns})
select r.worker_id, r.queue_name, r.status, r.current_job_id,
       now() - make_interval(secs => r.beat_age){extra_values}
from jsonb_to_recordset(%(rows)s) as r(
    worker_id uuid, queue_name text, status text, current_job_id uuid,
    beat_age float8{extra_types})
"""

_INSERT_EVENTS = """
insert into queue_history (job_id, event, details, worker_id, created_at)
select r.job_id, r.event, coalesce(r.details, '{}'::jsonb), r.worker_id,
       now() - make_interval(secs => r.age)
from jsonb_to_recordset(%(rows)s) as r(
    job_id uuid, event text, details jsonb, worker_id uuid, age float8)
order by r.age desc
"""

# Legacy history: transition rows keep event and details null.
_INSERT_EVENTS_LEGACY = """
insert into queue_history (job_id, event, details, worker_id, created_at, status_from, status_to)
select r.job_id, r.event,
       case when r.status_to is null then coalesce(r.details, '{}'::jsonb) end,
       r.worker_id, now() - make_interval(secs => r.age), r.status_from, r.status_to
from jsonb_to_recordset(%(rows)s) as r(
    job_id uuid, event text, details jsonb, worker_id uuid, age float8,
    status_from text, status_to text)
order by r.age desc
"""


def _with_extras(template: str, shape: Shape, table: str, extras: Mapping[str, str]) -> str:
    present = [name for name in extras if shape.has(table, name)]
    return template.format(
        extra_columns="".join(f", {name}" for name in present),
        extra_values="".join(f", r.{name}" for name in present),
        extra_types="".join(f", {name} {extras[name]}" for name in present),
        customer_type=shape.customer_type,
    )


_INSERT_RATE = """
insert into rate_limit_requests (identifier, endpoint, created_at)
select r.identifier, r.endpoint, now() - make_interval(secs => r.age)
from jsonb_to_recordset(%(rows)s) as r(identifier text, endpoint text, age float8)
order by r.age desc
"""


_INSERT_DENIALS = """
insert into dbops_rate_limit_denials (minute, identifier, endpoint, denied)
select date_trunc('minute', now()) - make_interval(mins => d.minutes_ago),
       d.identifier, d.endpoint, d.denied
from jsonb_to_recordset(%(rows)s) as d(minutes_ago int, identifier text, endpoint text, denied int)
"""


def _empty_queue(queues: Queues, url: str) -> None:
    try:
        queues.purge(url)
        return
    except RemoteError as exc:
        if "PurgeQueueInProgress" not in exc.message:
            raise
    # Purged less than 60 s ago (strict implementations): drain what is visible.
    idle = 0
    while idle < 2:
        got = queues.receive(url, max_messages=10, visibility_timeout=60)
        if not got:
            idle += 1
            continue
        idle = 0
        queues.delete_batch(url, {str(i): m.receipt_handle for i, m in enumerate(got)})


def _send_all(queues: Queues, url: str, messages: Sequence[OutgoingMessage]) -> None:
    for start in range(0, len(messages), 10):
        batch = [
            m.model_copy(update={"id": str(i)}) for i, m in enumerate(messages[start : start + 10])
        ]
        result = queues.send_batch(url, batch)
        if result.failed:
            first = next(iter(result.failed.values()))
            raise RemoteError(
                f"seeding {url.rsplit('/', 1)[-1]}: {len(result.failed)} sends failed: {first}"
            )


def write(
    plan: Plan,
    *,
    store: PostgresStore,
    queues: Queues,
    main_queue_url: str,
    dlq_url: str,
) -> None:
    """Wipe the app tables and the queues, then write the plan (fitted to its shape)."""
    shape = plan.shape
    with store.connection().transaction():
        store.query(f"truncate table {APP_TABLES} restart identity cascade")
        store.query(_with_extras(_INSERT_JOBS, shape, "jobs", JOB_EXTRAS), {"rows": plan.jobs})
        store.query(
            _with_extras(_INSERT_RESULTS, shape, "job_results", RESULT_EXTRAS),
            {"rows": plan.results},
        )
        store.query(
            _with_extras(_INSERT_WORKERS, shape, "worker_heartbeats", WORKER_EXTRAS),
            {"rows": plan.workers},
        )
        events_sql = _INSERT_EVENTS_LEGACY if shape.legacy_history else _INSERT_EVENTS
        store.query(events_sql, {"rows": plan.events})
        store.query(_INSERT_RATE, {"rows": plan.rate})
        # dbops' own 429 counters (from the ratelimit migration), when installed.
        if store.query("select to_regclass('dbops_rate_limit_denials') as t")[0]["t"]:
            store.query("delete from dbops_rate_limit_denials")
            store.query(_INSERT_DENIALS, {"rows": plan.denials})
    _empty_queue(queues, main_queue_url)
    _empty_queue(queues, dlq_url)
    _send_all(queues, main_queue_url, plan.main)
    _send_all(queues, dlq_url, plan.dlq)


def seed(
    *,
    store: PostgresStore,
    queues: Queues,
    main_queue_url: str,
    dlq_url: str,
    scenario: Scenario = "incident",
    seed: int = DEFAULT_SEED,
    schema: SchemaName | None = None,
) -> SeedResult:
    """Seed `scenario` into whatever application schema the database has.

    `schema` only labels the result (the sandbox's variant); the shape is read from the
    catalog.
    """
    started = time.perf_counter()
    shape = read_shape(store)
    plan = PLANNERS[scenario](seed, shape=shape)
    mapped, legacy_rows = fit(plan)
    write(plan, store=store, queues=queues, main_queue_url=main_queue_url, dlq_url=dlq_url)
    live = [w for w in plan.workers if w["beat_age"] < 2 * MIN]
    dead_holding = [
        w for w in plan.workers if w["beat_age"] >= 2 * MIN and w["current_job_id"] is not None
    ]
    return SeedResult(
        scenario=scenario,
        schema=schema,
        customer_ids=shape.customer_type,
        statuses_mapped=mapped,
        legacy_history_rows=legacy_rows,
        seed=seed,
        jobs=len(plan.jobs),
        jobs_by_status=dict(sorted(Counter(j["status"] for j in plan.jobs).items())),
        job_results=len(plan.results),
        results_stuck_submitting=plan.stuck_submitting,
        workers=len(plan.workers),
        live_workers=len(live),
        dead_workers_holding_jobs=len(dead_holding),
        stale_jobs=plan.stale_jobs,
        orphaned_pending_jobs=plan.orphaned,
        long_running_job_id=plan.long_running_job_id,
        queue_history_events=len(plan.events),
        rate_limit_requests=len(plan.rate),
        rate_limit_offender=plan.offender,
        main_queue_messages=len(plan.main),
        dlq_messages=len(plan.dlq),
        elapsed_seconds=round(time.perf_counter() - started, 3),
    )


def run(
    scenario: Scenario = "incident",
    *,
    seed_value: int = DEFAULT_SEED,
    schema: SchemaName | None = None,
) -> SeedResult:
    """Seed the running sandbox (its own servers, whatever the environment points at).

    `schema` (default: the variant the sandbox runs) must be the variant in use: another
    one is refused (RefusedError), as `dbops sandbox up --schema` is what switches.
    """
    from dbops.sandbox import runtime

    with runtime.locked(), runtime.connected(schema) as conn:
        assert conn.state.main_queue_url and conn.state.dlq_url
        return seed(
            store=conn.store,
            queues=conn.queues,
            main_queue_url=conn.state.main_queue_url,
            dlq_url=conn.state.dlq_url,
            scenario=scenario,
            seed=seed_value,
            schema=conn.state.schema_name,
        )
