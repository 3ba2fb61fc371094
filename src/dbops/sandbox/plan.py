"""A planned scenario: rows and messages drawn from a seeded RNG, before anything is written.

`Plan` holds every table's rows (ages in seconds before the database's `now()`) and both
queues' messages, and the small helpers the scenarios use to build them.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dbops.ports import OutgoingMessage
from dbops.sandbox import MAIN_QUEUE
from dbops.sandbox.shape import STANDARD_SHAPE, Shape, customer_uuid

DEFAULT_SEED = 20240611
MIN = 60.0
HOUR = 3600.0

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


def result_factors(customer_id: str, package_size: int | None) -> dict[str, Any]:
    """The idempotency factors the sandbox's workers use for a job's submissions."""
    return {"customer_id": customer_id, "package_size": package_size, "schema_version": 2}


def idempotency_key(job_id: str, directory: str, factors: Mapping[str, Any]) -> str:
    """SHA-256 hex of `"{job_id}:{directory}:{json}"`, json sorted-key and compact."""
    payload = json.dumps(factors, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{job_id}:{directory}:{payload}".encode()).hexdigest()


def _package_type(package_size: int | None) -> str:
    size = package_size or 0
    return "enterprise" if size >= 50 else "pro" if size >= 10 else "starter"


# --------------------------------------------------------------------------- planning
@dataclass
class Plan:
    rng: random.Random
    shape: Shape = STANDARD_SHAPE
    # XORed into every id the RNG draws: 0 keeps a seed's ids; a random salt gives fresh
    # ids with the very same draws (shapes, ages and counts unchanged).
    id_salt: int = 0
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
        return str(uuid.UUID(int=self.rng.getrandbits(128) ^ self.id_salt, version=4))

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
