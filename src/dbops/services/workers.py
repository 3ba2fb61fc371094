"""`dbops workers`: the workers in worker_heartbeats, alive or dead, and forgetting dead ones.

Every database step is a `dbops_workers_*` SQL function (sql/dbops/0010_workers.sql), so
this works the same over direct Postgres and Supabase's PostgREST.

A worker is alive while its last heartbeat is within `dead_after_seconds` (default 2
minutes, the stale-job logic's rule). `forget` removes a dead worker's row: the service
returns a plan (what would be removed; refused for a live worker) and then deletes it with
one SQL call that re-checks liveness on the row it locks, so a worker that beat in between
is kept (RefusedError).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from dbops.durations import format_duration
from dbops.errors import NotFoundError, RefusedError, UsageError
from dbops.ports import Store
from dbops.services.redact import mask_personal

DEFAULT_DEAD_AFTER_SECONDS = 120  # a worker is dead after 2 minutes without a heartbeat
# `forget` never trusts a shorter threshold: workers beat every ~20 s, and the team's rule
# (architecture.md section 3) is 2 minutes; a shorter one could remove a live worker's row.
MIN_FORGET_DEAD_AFTER_SECONDS = 120
DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
SHOW_HISTORY = 20


class WorkerRow(BaseModel):
    """One worker (`dbops workers list -o json` rows; `workers show`'s `worker`).

    `{"worker_id", "queue", "status", "last_heartbeat", "age_seconds", "alive",
    "current_job_id", "current_job_status"}`: `age_seconds` is the time since the last
    heartbeat; `alive` is a heartbeat within `--dead-after` (default 2 minutes); `queue` is
    worker_heartbeats.queue_name (null when the column is absent); `current_job_status` is
    the status of the job in `current_job_id` (null when it holds none, or the job is gone).
    The current job's age (since it started, else since it was created) is shown in tables
    only.
    """

    worker_id: UUID
    queue: str | None = None
    status: str | None = None
    last_heartbeat: datetime | None = None
    age_seconds: float | None = None
    alive: bool
    current_job_id: UUID | None = None
    current_job_status: str | None = None
    current_job_age_seconds: float | None = Field(default=None, exclude=True)


class HeldJob(BaseModel):
    """A job a worker holds: its current job, or an in-progress job whose latest history
    event names the worker. `age_seconds` is since the job started (else was created)."""

    id: UUID
    status: str
    updated_at: datetime | None = None
    age_seconds: float | None = None
    current: bool = False


class WorkerEvent(BaseModel):
    """One queue_history row naming the worker (legacy rows: `status_from -> status_to`)."""

    id: int | str
    job_id: UUID | None = None
    event: str
    details: Any = Field(default_factory=dict)
    created_at: datetime


class WorkerDetail(BaseModel):
    """`dbops workers show ID -o json`: `{worker, jobs[], history[], dead_after_seconds,
    masked}`; `history` is the latest events naming the worker (newest first), their
    `details` with personal data masked unless `--reveal` (`masked`)."""

    worker: WorkerRow
    jobs: list[HeldJob]
    history: list[WorkerEvent]
    dead_after_seconds: int
    masked: bool = False


class ForgetPlan(BaseModel):
    """What `workers forget` will remove (a dead worker's row)."""

    worker: WorkerRow
    dead_after_seconds: int


class ForgetResult(BaseModel):
    """`dbops workers forget ID -o json`: `{worker_id, forgotten, dry_run, worker}`.

    `forgotten` is true when the row was deleted (false on a dry run); `worker` is the row
    as it was before."""

    worker_id: UUID
    forgotten: bool
    dry_run: bool = False
    worker: WorkerRow


# --------------------------------------------------------------------------- inputs
def parse_worker_id(raw: str) -> str:
    """The canonical worker id for `raw` (a full UUID); a usage error names a bad one.

    The one place worker ids are parsed: short-id prefixes (issue 15.4) plug in here.
    """
    text = str(raw).strip()
    try:
        return str(UUID(text))
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise UsageError(f"invalid worker id {shown!r}: not a UUID") from None


def resolve_worker_id(raw: str, *, store: Store) -> str:
    """The worker id `raw` names: a whole UUID, or a unique prefix of at least 6 hex
    characters (exit 2 when ambiguous, 4 when nothing matches; see `dbops.services.ids`)."""
    from dbops.services.ids import resolve_ids

    return resolve_ids(store=store, kind="worker", values=[raw])[0]


def _check(dead_after_seconds: int, limit: int = 1) -> None:
    if dead_after_seconds <= 0:
        raise UsageError("invalid --dead-after: must be positive")
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"invalid --limit {limit}: use 1 to {MAX_LIMIT}")


def _blank(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    if not stripped:
        raise UsageError(f"{option} must not be empty")
    if "\x00" in stripped:
        raise UsageError(f"invalid {option}: contains a NUL byte")
    return stripped


# --------------------------------------------------------------------------- reads
def list_workers(
    *,
    store: Store,
    dead_after_seconds: int = DEFAULT_DEAD_AFTER_SECONDS,
    queue: str | None = None,
    dead_only: bool = False,
    limit: int = DEFAULT_LIMIT,
) -> list[WorkerRow]:
    """Every worker, oldest heartbeat first (the dead ones lead)."""
    _check(dead_after_seconds, limit)
    rows = store.call(
        "dbops_workers_list",
        {
            "p_dead_after_seconds": dead_after_seconds,
            "p_queue": _blank(queue, "--queue"),
            "p_dead_only": dead_only,
            "p_worker_id": None,
            "p_limit": limit,
        },
    )
    return [WorkerRow.model_validate(r) for r in rows]


def _one(store: Store, worker_id: str, dead_after_seconds: int) -> WorkerRow:
    rows = store.call(
        "dbops_workers_list",
        {
            "p_dead_after_seconds": dead_after_seconds,
            "p_queue": None,
            "p_dead_only": False,
            "p_worker_id": worker_id,
            "p_limit": 1,
        },
    )
    if not rows:
        raise NotFoundError(f"not found: worker {worker_id}")
    return WorkerRow.model_validate(rows[0])


def show(
    *,
    store: Store,
    worker_id: str,
    dead_after_seconds: int = DEFAULT_DEAD_AFTER_SECONDS,
    history_limit: int = SHOW_HISTORY,
    reveal: bool = False,
) -> WorkerDetail:
    """One worker, the jobs it holds and its latest history events."""
    _check(dead_after_seconds)
    rows = store.call(
        "dbops_workers_show",
        {
            "p_worker_id": worker_id,
            "p_dead_after_seconds": dead_after_seconds,
            "p_history_limit": history_limit,
        },
    )
    if not rows:
        raise NotFoundError(f"not found: worker {worker_id}")
    row = rows[0]
    history = [WorkerEvent.model_validate(e) for e in row.get("history") or []]
    if not reveal:
        history = [e.model_copy(update={"details": mask_personal(e.details)}) for e in history]
    return WorkerDetail(
        worker=WorkerRow.model_validate(row["worker"]),
        jobs=[HeldJob.model_validate(j) for j in row.get("jobs") or []],
        history=history,
        dead_after_seconds=dead_after_seconds,
        masked=not reveal,
    )


# --------------------------------------------------------------------------- forget
def _alive_refusal(worker: WorkerRow, dead_after_seconds: int) -> RefusedError:
    return RefusedError(
        f"worker {worker.worker_id} is alive (last heartbeat "
        f"{format_duration(worker.age_seconds)} ago, dead after "
        f"{format_duration(dead_after_seconds)}): refusing to forget it",
        hint="only a dead worker's row can be forgotten; stop the worker first",
    )


def _check_forget(dead_after_seconds: int) -> None:
    _check(dead_after_seconds)
    if dead_after_seconds < MIN_FORGET_DEAD_AFTER_SECONDS:
        raise UsageError(
            f"invalid --dead-after {format_duration(dead_after_seconds)}: forget needs at "
            "least 2m, since a worker is only dead after 2 minutes without a heartbeat"
        )


def forget_plan(
    *, store: Store, worker_id: str, dead_after_seconds: int = DEFAULT_DEAD_AFTER_SECONDS
) -> ForgetPlan:
    """The row `forget` would remove; NotFoundError when absent, RefusedError when alive."""
    _check_forget(dead_after_seconds)
    worker = _one(store, worker_id, dead_after_seconds)
    if worker.alive:
        raise _alive_refusal(worker, dead_after_seconds)
    return ForgetPlan(worker=worker, dead_after_seconds=dead_after_seconds)


def forget_dry_run(plan: ForgetPlan) -> ForgetResult:
    return ForgetResult(
        worker_id=plan.worker.worker_id, forgotten=False, dry_run=True, worker=plan.worker
    )


def forget(*, store: Store, plan: ForgetPlan) -> ForgetResult:
    """Delete the planned worker's row if it is still dead (re-checked under its row lock).

    RefusedError when it beat in between; NotFoundError when the row is already gone (a
    second forget of the same worker).
    """
    worker_id = str(plan.worker.worker_id)
    rows = store.call(
        "dbops_workers_forget",
        {"p_worker_id": worker_id, "p_dead_after_seconds": plan.dead_after_seconds},
    )
    row: dict[str, Any] = rows[0] if rows else {"outcome": "not_found"}
    outcome: Literal["forgotten", "alive", "not_found"] = row["outcome"]
    if outcome == "not_found":
        raise NotFoundError(f"not found: worker {worker_id} (already forgotten?)")
    before = WorkerRow.model_validate(
        {
            **plan.worker.model_dump(),
            "current_job_age_seconds": plan.worker.current_job_age_seconds,
            "status": row.get("status"),
            "last_heartbeat": row.get("last_heartbeat"),
            "age_seconds": row.get("age_seconds"),
            "alive": outcome == "alive",
        }
    )
    if outcome == "alive":
        raise _alive_refusal(before, plan.dead_after_seconds)
    return ForgetResult(worker_id=before.worker_id, forgotten=True, worker=before)
