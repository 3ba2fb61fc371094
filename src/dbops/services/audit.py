"""`dbops audit`: one read-only health report for database, jobs, workers, queues and
rate limits, with a score, a verdict and Nagios-style exit codes.

How a run works (one database round trip for all database-side checks):

1. `store.ping()` (check `db.reachable`).
2. `dbops_audit_observe(...)`: a STABLE SQL function that first switches its transaction
   to READ ONLY and returns one row per observation (state `observed` / `skipped` /
   `unknown`, a jsonb payload, a reason, and its own elapsed time). Only the
   observations the selected checks need are computed (`p_only`).
3. Read-only SQS calls: `get_attributes` (main queue and DLQ), `resolve_url` when the
   DLQ has to be found from the redrive policy, and CloudWatch through
   `queues.oldest_message_age`. Never `receive` (it would raise receive counts).
4. Every check turns its observation into a severity with thresholds from
   `settings.audit` (per profile under `[profiles.NAME.audit]`).
5. Score, verdict, changes since the previous stored run; then, unless `save=False`, the
   run is stored with `dbops_audit_save` (the only write, after all checks).

Weights and rules are documented in docs/audit.md; keep the two in step.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from dbops.errors import ConfigError, DbopsError, NotFoundError, UsageError
from dbops.ports import Queues, Store
from dbops.settings import AuditThresholds, Settings

Severity = Literal["ok", "warning", "critical", "skipped", "unknown"]
Verdict = Literal["OK", "WARNING", "CRITICAL", "UNKNOWN"]
FailOn = Literal["warning", "critical"]

# Nagios plugin convention.
VERDICT_EXIT: dict[str, int] = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
# Share of a check's weight it keeps in the score; skipped checks are left out entirely.
SEVERITY_FACTOR: dict[str, float] = {"ok": 1.0, "unknown": 0.75, "warning": 0.5, "critical": 0.0}
# Worst first: the verdict is the worst severity present (unknown only if nothing is worse).
_RANK: dict[str, int] = {"critical": 3, "warning": 2, "unknown": 1, "ok": 0, "skipped": -1}

AREAS = ("database", "jobs", "workers", "queue", "ratelimit")
AREA_OF_PREFIX = {
    "db": "database",
    "jobs": "jobs",
    "workers": "workers",
    "queue": "queue",
    "ratelimit": "ratelimit",
}

# The columns dbops cannot work without (src/dbops/sql/check.sql is the full contract,
# with types and the optional columns, which are shown empty when absent).
APP_TABLES: dict[str, tuple[str, ...]] = {
    "jobs": (
        "id",
        "customer_id",
        "status",
        "created_at",
        "updated_at",
        "completed_at",
        "error_message",
    ),
    "job_results": ("job_id", "status", "updated_at"),
    "worker_heartbeats": ("worker_id", "status", "current_job_id", "last_heartbeat"),
    "queue_history": ("id", "job_id", "event", "details", "worker_id", "created_at"),
    "rate_limit_requests": ("identifier", "endpoint", "created_at"),
}
# Indexes the backend's own schema should have (matched by leading columns, any name).
APP_INDEXES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("jobs", ("status",), "status filters"),
    ("job_results", ("job_id",), "results per job"),
    ("queue_history", ("job_id",), "history per job"),
    ("rate_limit_requests", ("identifier", "endpoint", "created_at"), "sliding-window lookups"),
)
CANONICAL_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
# DESIGN.md section 3: the rate-limit presets in use, each needs an enabled rule.
RATE_LIMIT_PRESETS: tuple[str, ...] = ("auth", "staff", "public", "admin")
ERROR_WINDOW_SECONDS = 24 * 3600
RATIO_WINDOW_SECONDS = 3600
OLDEST_AGE_CRITICAL_FACTOR = 6  # oldest message: warning > stale threshold, critical > 6x
MAX_RECEIVE_RANGE = (2, 10)


# --------------------------------------------------------------------------- models
class AuditCheck(BaseModel):
    """One check of `dbops audit -o json` (`checks[]`)."""

    id: str
    area: str
    title: str
    severity: Severity
    observed: int | float | str | None = None
    threshold: str | None = None
    explanation: str
    remedy: str | None = None
    weight: int
    elapsed_ms: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class PreviousRun(BaseModel):
    id: int | None = None
    score: int
    verdict: Verdict
    generated_at: datetime


class CheckChange(BaseModel):
    """A check whose severity differs from the previous stored run."""

    id: str
    title: str
    before: Severity
    after: Severity


class AuditReport(BaseModel):
    """`dbops audit -o json`: a stable schema (add fields, never rename or remove)."""

    score: int
    verdict: Verdict
    exit_code: int
    generated_at: datetime
    duration_ms: float
    database_ms: float | None = None
    transport: str | None = None
    checks: list[AuditCheck]
    previous: PreviousRun | None = None
    changes: list[CheckChange] = Field(default_factory=list)
    saved: bool = False
    run_id: int | None = None
    save_error: str | None = None

    def check(self, check_id: str) -> AuditCheck:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)

    @property
    def problems(self) -> list[AuditCheck]:
        return [c for c in self.checks if c.severity in ("warning", "critical", "unknown")]


class AuditRun(BaseModel):
    """One row of `dbops audit history -o json`."""

    id: int
    generated_at: datetime
    score: int
    verdict: Verdict
    duration_ms: float | None = None
    ok: int = 0
    warning: int = 0
    critical: int = 0
    unknown: int = 0
    skipped: int = 0
    selection: dict[str, Any] = Field(default_factory=dict)
    operator: str | None = None


# --------------------------------------------------------------------------- internals
@dataclass
class Observation:
    state: str  # observed | skipped | unknown
    data: dict[str, Any]
    reason: str | None = None
    elapsed_ms: float | None = None


@dataclass
class QueueState:
    label: str
    url: str | None = None
    attrs: dict[str, str] | None = None
    error: str | None = None
    not_configured: str | None = None
    elapsed_ms: float | None = None

    def number(self, name: str) -> int | None:
        if self.attrs is None:
            return None
        raw = self.attrs.get(name)
        try:
            return int(str(raw))
        except (TypeError, ValueError):
            return None

    @property
    def name(self) -> str | None:
        return self.url.rstrip("/").rsplit("/", 1)[-1] if self.url else None


@dataclass
class Outcome:
    severity: Severity
    explanation: str
    observed: int | float | str | None = None
    threshold: str | None = None
    remedy: str | None = None  # None: the spec's default remedy
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    settings: Settings
    t: AuditThresholds
    stale_seconds: int
    dead_seconds: int
    dlq_warning: int
    db_configured: bool = False
    db_error: str | None = None
    db_latency_ms: float | None = None
    observe_error: str | None = None
    obs: dict[str, Observation] = field(default_factory=dict)
    applied_fallback: dict[str, str] | None = None
    main: QueueState | None = None
    dlq: QueueState | None = None
    oldest_age: float | None = None
    oldest_age_ms: float | None = None
    previous: dict[str, Any] | None = None
    previous_dlq: dict[str, Any] | None = None
    selection: dict[str, list[str]] = field(default_factory=dict)

    def data(self, obs_id: str) -> dict[str, Any]:
        return self.obs[obs_id].data


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    weight: int
    remedy: str
    evaluate: Callable[[Context], Outcome]
    db: tuple[str, ...] = ()
    main_queue: bool = False
    dlq: bool = False
    special: bool = False  # does its own gating

    @property
    def area(self) -> str:
        return AREA_OF_PREFIX[self.id.split(".", 1)[0]]


def _plural(n: int | float, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _age(seconds: float | None) -> str:
    from dbops.durations import format_duration

    return format_duration(seconds) if seconds is not None else "n/a"


def _short(ids: Any, n: int = 3) -> str:
    items = [str(i)[:8] for i in list(ids or [])[:n]]
    return ", ".join(items)


def _count_level(count: int, warning_at: int, critical_at: int | None) -> Severity:
    if critical_at is not None and count >= critical_at:
        return "critical"
    if count >= warning_at:
        return "warning"
    return "ok"


# --------------------------------------------------------------------------- database
def _db_reachable(ctx: Context) -> Outcome:
    limit = ctx.t.db_latency_warning_ms
    threshold = f"reachable; warning > {limit:g} ms round trip"
    if not ctx.db_configured:
        return Outcome(
            "skipped", "no database configured (DATABASE_URL or SUPABASE_URL)", threshold=threshold
        )
    if ctx.db_error is not None:
        return Outcome("critical", f"database unreachable: {ctx.db_error}", threshold=threshold)
    raw = ctx.db_latency_ms or 0.0
    latency = round(raw, 1)
    if raw > limit:
        return Outcome(
            "warning",
            f"round trip {latency} ms is slow (warning above {limit:g} ms)",
            observed=latency,
            threshold=threshold,
        )
    return Outcome(
        "ok", f"reachable, {latency} ms round trip", observed=latency, threshold=threshold
    )


def _expected_migrations() -> dict[str, str]:
    from dbops.services.migrations import load_migrations

    return {m.version: m.checksum for m in load_migrations("dbops")}


def _db_migrations(ctx: Context) -> Outcome:
    threshold = "every dbops migration applied"
    if not ctx.db_configured:
        return Outcome("skipped", "no database configured", threshold=threshold)
    if ctx.db_error is not None:
        return Outcome("unknown", f"database unreachable: {ctx.db_error}", threshold=threshold)
    obs = ctx.obs.get("db.migrations")
    if obs is not None and obs.state == "observed":
        applied = dict(obs.data.get("applied") or {})
    elif ctx.applied_fallback is not None:
        applied = ctx.applied_fallback
    elif obs is not None:
        return Outcome("unknown", obs.reason or "not observed", threshold=threshold)
    else:
        return Outcome("unknown", ctx.observe_error or "not observed", threshold=threshold)
    expected = _expected_migrations()
    pending = sorted(v for v in expected if v not in applied)
    changed = sorted(v for v in expected if v in applied and applied[v] != expected[v])
    done = len(expected) - len(pending)
    observed = f"{done}/{len(expected)} applied"
    details = {"pending": pending, "changed": changed}
    if done == 0:
        return Outcome(
            "critical",
            "dbops is not installed in this database",
            observed=observed,
            threshold=threshold,
            details=details,
        )
    if pending:
        return Outcome(
            "warning",
            f"{_plural(len(pending), 'migration')} pending: " + ", ".join(pending),
            observed=observed,
            threshold=threshold,
            details=details,
        )
    if changed:
        return Outcome(
            "warning",
            "applied migrations differ from this dbops version: " + ", ".join(changed),
            observed=observed,
            threshold=threshold,
            remedy="dbops db status",
            details=details,
        )
    return Outcome(
        "ok",
        f"all {len(expected)} dbops migrations applied",
        observed=observed,
        threshold=threshold,
        details=details,
    )


_INDEX_RE = re.compile(
    r"create\s+(?:unique\s+)?index\s+(?:concurrently\s+)?(?:if\s+not\s+exists\s+)?"
    r"([a-z_][a-z0-9_]*)\s+on\s+(?:only\s+)?(?:public\.)?([a-z_][a-z0-9_]*)",
    re.IGNORECASE,
)


def recommended_indexes() -> list[tuple[str, str, str]]:
    """(table, index name, migration) for indexes dbops migrations create on app tables."""
    from dbops.services.migrations import load_migrations

    found: list[tuple[str, str, str]] = []
    for m in load_migrations("dbops"):
        text = re.sub(r"--[^\n]*", "", m.sql)
        for name, table in _INDEX_RE.findall(text):
            if table.lower() in APP_TABLES:
                found.append((table.lower(), name.lower(), f"{m.version}_{m.name}"))
    return found


def _db_schema(ctx: Context) -> Outcome:
    threshold = "expected tables and columns (critical); recommended indexes (warning)"
    tables: dict[str, Any] = ctx.data("db.schema").get("tables") or {}
    missing_tables = [t for t in APP_TABLES if tables.get(t) is None]
    missing_columns = [
        f"{t}.{c}"
        for t, cols in APP_TABLES.items()
        if tables.get(t) is not None
        for c in cols
        if c not in (tables[t].get("columns") or [])
    ]

    def indexes(table: str) -> list[dict[str, Any]]:
        entry = tables.get(table) or {}
        return [i for i in entry.get("indexes") or [] if i.get("valid", True)]

    missing_indexes: list[str] = []
    for table, name, migration in recommended_indexes():
        if tables.get(table) is None:
            continue
        if not any(i.get("name") == name for i in indexes(table)):
            missing_indexes.append(f"{name} on {table} (from {migration})")
    for table, cols, why in APP_INDEXES:
        if tables.get(table) is None:
            continue
        if not any(tuple((i.get("columns") or [])[: len(cols)]) == cols for i in indexes(table)):
            missing_indexes.append(f"{table} ({', '.join(cols)}) for {why}")
    details = {
        "missing_tables": missing_tables,
        "missing_columns": missing_columns,
        "missing_indexes": missing_indexes,
    }
    problems = len(missing_tables) + len(missing_columns) + len(missing_indexes)
    if missing_tables or missing_columns:
        what = [f"missing table(s): {', '.join(missing_tables)}"] if missing_tables else []
        if missing_columns:
            what.append(f"missing column(s): {', '.join(missing_columns[:6])}")
        return Outcome(
            "critical",
            "; ".join(what) + " (is DATABASE_URL the backend's database?)",
            observed=problems,
            threshold=threshold,
            remedy="dbops db check",
            details=details,
        )
    if missing_indexes:
        return Outcome(
            "warning",
            "missing recommended index(es): " + "; ".join(missing_indexes),
            observed=problems,
            threshold=threshold,
            details=details,
        )
    return Outcome(
        "ok",
        "expected tables, columns and recommended indexes present",
        observed=0,
        threshold=threshold,
        details=details,
    )


def _db_legacy_status(ctx: Context) -> Outcome:
    threshold = "warning >= 1 job with a status outside " + "|".join(CANONICAL_STATUSES)
    statuses: dict[str, int] = {
        str(k): int(v) for k, v in (ctx.data("db.legacy_status").get("statuses") or {}).items()
    }
    legacy = statuses.get("complete", 0)
    other = {k: v for k, v in statuses.items() if k not in CANONICAL_STATUSES and k != "complete"}
    total = legacy + sum(other.values())
    details = {"statuses": statuses, "legacy_complete": legacy, "unknown_statuses": other}
    if total == 0:
        return Outcome(
            "ok",
            "every job uses a current status value",
            observed=0,
            threshold=threshold,
            details=details,
        )
    parts = []
    if legacy:
        parts.append(
            f"{_plural(legacy, 'job')} with the legacy status 'complete' (read as completed)"
        )
    if other:
        parts.append(
            "unexpected status value(s): "
            + ", ".join(f"{k!r} x{v}" for k, v in sorted(other.items()))
        )
    return Outcome(
        "warning", "; ".join(parts), observed=total, threshold=threshold, details=details
    )


def _db_idempotency(ctx: Context) -> Outcome:
    threshold = "unique index (warning without); 0 duplicate keys (critical)"
    d = ctx.data("db.idempotency_keys")
    dup_keys, dup_rows = int(d.get("duplicate_keys") or 0), int(d.get("duplicate_rows") or 0)
    sample = list(d.get("sample") or [])
    details = {
        "unique_index": bool(d.get("unique_index")),
        "duplicate_keys": dup_keys,
        "duplicate_rows": dup_rows,
        "sample_job_ids": sample,
    }
    if dup_keys:
        remedy = f"dbops jobs show {sample[0]}" if sample else "dbops jobs stats"
        return Outcome(
            "critical",
            f"{_plural(dup_keys, 'idempotency key')} used by "
            f"{dup_rows} job_results rows: a submission was made twice "
            f"(jobs {_short(sample)})",
            observed=dup_keys,
            threshold=threshold,
            remedy=remedy,
            details=details,
        )
    if not d.get("unique_index"):
        return Outcome(
            "warning",
            "job_results.idempotency_key has no unique index: duplicates "
            "are not prevented (none found)",
            observed=0,
            threshold=threshold,
            remedy="dbops jobs stats",
            details=details,
        )
    return Outcome(
        "ok",
        "idempotency keys are unique (unique index)",
        observed=0,
        threshold=threshold,
        details=details,
    )


# --------------------------------------------------------------------------- jobs
def _jobs_stale(ctx: Context) -> Outcome:
    minutes = ctx.stale_seconds // 60
    crit = ctx.t.stale_jobs_critical
    threshold = f"warning >= 1, critical >= {crit} (no sign of life for {minutes} min)"
    d = ctx.data("jobs.stale")
    n = int(d.get("count") or 0)
    details = {"sample": d.get("sample") or [], "oldest_age_seconds": d.get("oldest_age_seconds")}
    if n == 0:
        return Outcome(
            "ok",
            f"no in-progress job without a sign of life for {minutes} min",
            observed=0,
            threshold=threshold,
            details=details,
        )
    return Outcome(
        _count_level(n, 1, crit),
        f"{_plural(n, 'in-progress job')} with no sign of life for over {minutes} min "
        f"(stale; oldest {_age(d.get('oldest_age_seconds'))} ago: "
        f"{_short(details['sample'])})",
        observed=n,
        threshold=threshold,
        details=details,
    )


def _jobs_orphaned(ctx: Context) -> Outcome:
    minutes = ctx.t.orphaned_minutes
    crit = ctx.t.stale_jobs_critical
    threshold = f"warning >= 1, critical >= {crit} (pending > {minutes} min, never claimed)"
    d = ctx.data("jobs.orphaned")
    n = int(d.get("count") or 0)
    details = {"sample": d.get("sample") or [], "oldest_age_seconds": d.get("oldest_age_seconds")}
    if n == 0:
        return Outcome(
            "ok",
            f"no pending job older than {minutes} min that was never enqueued",
            observed=0,
            threshold=threshold,
            details=details,
        )
    return Outcome(
        _count_level(n, 1, crit),
        f"{_plural(n, 'pending job')} older than {minutes} min never claimed for the "
        f"queue (orphaned; oldest {_age(d.get('oldest_age_seconds'))}: "
        f"{_short(details['sample'])})",
        observed=n,
        threshold=threshold,
        details=details,
    )


def _jobs_error_rate(ctx: Context) -> Outcome:
    warn, crit = ctx.t.error_rate_warning, ctx.t.error_rate_critical
    threshold = f"warning > {warn:g} %, critical > {crit:g} % (last 24 h)"
    d = ctx.data("jobs.error_rate")
    finished, failed = int(d.get("finished") or 0), int(d.get("failed") or 0)
    details = {"finished": finished, "failed": failed}
    if finished == 0:
        return Outcome(
            "ok",
            "no job finished in the last 24 h",
            observed=0.0,
            threshold=threshold,
            details=details,
        )
    rate = round(100.0 * failed / finished, 2)
    text = f"{rate:g} % of jobs failed in the last 24 h ({failed} of {finished})"
    if rate > crit:
        return Outcome("critical", text, observed=rate, threshold=threshold, details=details)
    if rate > warn:
        return Outcome("warning", text, observed=rate, threshold=threshold, details=details)
    return Outcome("ok", text, observed=rate, threshold=threshold, details=details)


def _jobs_stuck_submitting(ctx: Context) -> Outcome:
    minutes = ctx.t.submitting_minutes
    threshold = f"warning >= 1 (in 'submitting' for more than {minutes} min)"
    d = ctx.data("jobs.stuck_submitting")
    n = int(d.get("count") or 0)
    details = {
        "sample_job_ids": d.get("sample") or [],
        "oldest_age_seconds": d.get("oldest_age_seconds"),
    }
    if n == 0:
        return Outcome(
            "ok",
            f"no result stuck in 'submitting' for over {minutes} min",
            observed=0,
            threshold=threshold,
            details=details,
        )
    return Outcome(
        "warning",
        f"{_plural(n, 'job result')} stuck in 'submitting' for over "
        f"{minutes} min (oldest {_age(d.get('oldest_age_seconds'))}; jobs "
        f"{_short(details['sample_job_ids'])})",
        observed=n,
        threshold=threshold,
        details=details,
    )


def _jobs_recovery_cap(ctx: Context) -> Outcome:
    cap = ctx.t.recovery_cap
    threshold = f"warning >= 1 job re-queued {cap}+ times or abandoned at the cap (last 24 h)"
    d = ctx.data("jobs.recovery_cap")
    n = int(d.get("count") or 0)
    abandoned = int(d.get("abandoned") or 0)
    sample = list(d.get("sample") or [])
    details = {
        "sample": sample,
        "abandoned": abandoned,
        "max_recoveries": d.get("max_recoveries"),
        "cap": cap,
    }
    if n == 0:
        return Outcome(
            "ok",
            f"no job reached the recovery cap ({cap}) in the last 24 h",
            observed=0,
            threshold=threshold,
            details=details,
        )
    return Outcome(
        "warning",
        f"{_plural(n, 'job')} reached the recovery cap of {cap} in the last 24 h "
        f"({abandoned} abandoned): recovering does not fix them ({_short(sample)})",
        observed=n,
        threshold=threshold,
        remedy=f"dbops jobs show {sample[0]}" if sample else None,
        details=details,
    )


# --------------------------------------------------------------------------- workers
def _workers_dead_holding(ctx: Context) -> Outcome:
    minutes = ctx.dead_seconds // 60
    threshold = (
        f"critical >= 1 holding an in-progress job, warning >= 1 holding another "
        f"(no heartbeat for {minutes} min)"
    )
    d = ctx.data("workers.dead_holding")
    running, other = int(d.get("holding_in_progress") or 0), int(d.get("holding_other") or 0)
    details = {
        "holding_in_progress": running,
        "holding_other": other,
        "sample_workers": d.get("sample") or [],
        "jobs": d.get("jobs") or [],
    }
    if running:
        return Outcome(
            "critical",
            f"{_plural(running, 'dead worker')} (no heartbeat for over "
            f"{minutes} min) still holding in-progress jobs ({_short(details['jobs'])})"
            + (f"; {other} more hold finished jobs" if other else ""),
            observed=running + other,
            threshold=threshold,
            details=details,
        )
    if other:
        return Outcome(
            "warning",
            f"{_plural(other, 'dead worker')} still name a job that is no "
            "longer in progress (stale heartbeat rows)",
            observed=other,
            threshold=threshold,
            remedy="dbops jobs stale",
            details=details,
        )
    return Outcome(
        "ok", "no dead worker holds a job", observed=0, threshold=threshold, details=details
    )


def _workers_none_live(ctx: Context) -> Outcome:
    minutes = ctx.dead_seconds // 60
    threshold = f"critical: no live worker (heartbeat within {minutes} min) and a backlog"
    live = ctx.data("workers.live")
    n_live = int(live.get("live") or 0)
    pending = int(live.get("pending_jobs") or 0)
    visible = ctx.main.number("ApproximateNumberOfMessages") if ctx.main else None
    backlog, source = (
        (visible, "messages on the main queue")
        if visible is not None
        else (pending, "pending jobs")
    )
    details = {
        "live_workers": n_live,
        "workers": live.get("total"),
        "backlog": backlog,
        "backlog_source": source,
        "pending_jobs": pending,
    }
    if n_live == 0 and backlog > 0:
        return Outcome(
            "critical",
            f"no live worker while there are {backlog} {source}: "
            "nothing is processing jobs (start workers)",
            observed=0,
            threshold=threshold,
            details=details,
        )
    if n_live == 0:
        return Outcome(
            "ok", "no live worker, and no backlog", observed=0, threshold=threshold, details=details
        )
    return Outcome(
        "ok",
        f"{_plural(n_live, 'live worker')}, backlog {backlog} {source}",
        observed=n_live,
        threshold=threshold,
        details=details,
    )


# --------------------------------------------------------------------------- queues
def _queue_backlog(ctx: Context) -> Outcome:
    warn, crit = ctx.t.backlog_warning, ctx.t.backlog_critical
    threshold = f"warning > {warn}, critical > {crit} visible messages"
    assert ctx.main is not None
    visible = ctx.main.number("ApproximateNumberOfMessages") or 0
    in_flight = ctx.main.number("ApproximateNumberOfMessagesNotVisible") or 0
    delayed = ctx.main.number("ApproximateNumberOfMessagesDelayed") or 0
    details = {
        "queue": ctx.main.name,
        "visible": visible,
        "in_flight": in_flight,
        "delayed": delayed,
    }
    text = f"{visible} visible, {in_flight} in flight on {ctx.main.name}"
    if visible > crit:
        return Outcome("critical", text, observed=visible, threshold=threshold, details=details)
    if visible > warn:
        return Outcome("warning", text, observed=visible, threshold=threshold, details=details)
    return Outcome("ok", text, observed=visible, threshold=threshold, details=details)


def _queue_oldest_age(ctx: Context) -> Outcome:
    warn = ctx.stale_seconds
    crit = warn * OLDEST_AGE_CRITICAL_FACTOR
    threshold = f"warning > {_age(warn)}, critical > {_age(crit)}"
    age = ctx.oldest_age
    if age is None:
        return Outcome(
            "skipped",
            "CloudWatch has no ApproximateAgeOfOldestMessage data for this queue",
            threshold=threshold,
        )
    age = round(age, 1)
    text = f"oldest message is {_age(age)} old"
    if age > crit:
        return Outcome("critical", text, observed=age, threshold=threshold)
    if age > warn:
        return Outcome("warning", text, observed=age, threshold=threshold)
    return Outcome("ok", text, observed=age, threshold=threshold)


def _dlq_numbers(dlq: QueueState) -> tuple[int, int]:
    return (
        dlq.number("ApproximateNumberOfMessages") or 0,
        dlq.number("ApproximateNumberOfMessagesNotVisible") or 0,
    )


def _queue_dlq_depth(ctx: Context) -> Outcome:
    warn, crit = ctx.dlq_warning, ctx.t.dlq_critical
    threshold = f"warning >= {warn}, critical >= {crit} messages"
    assert ctx.dlq is not None
    visible, in_flight = _dlq_numbers(ctx.dlq)
    depth = visible + in_flight
    details = {"queue": ctx.dlq.name, "visible": visible, "in_flight": in_flight}
    if depth == 0:
        return Outcome(
            "ok", f"{ctx.dlq.name} is empty", observed=0, threshold=threshold, details=details
        )
    text = f"{_plural(depth, 'message')} in the dead-letter queue {ctx.dlq.name}"
    return Outcome(
        _count_level(depth, warn, crit), text, observed=depth, threshold=threshold, details=details
    )


def _queue_dlq_growth(ctx: Context) -> Outcome:
    crit = ctx.t.dlq_critical
    threshold = f"warning > 0, critical >= {crit} more messages than the previous run"
    assert ctx.dlq is not None
    visible, in_flight = _dlq_numbers(ctx.dlq)
    depth = visible + in_flight
    before = ctx.previous_dlq
    if not before or not isinstance(before.get("depth"), int | float):
        return Outcome(
            "skipped", "no previous stored run measured the DLQ depth", threshold=threshold
        )
    prev_queue = before.get("queue")
    if prev_queue and ctx.dlq.name and prev_queue != ctx.dlq.name:
        return Outcome(
            "skipped",
            f"the previous run measured another queue ({prev_queue})",
            threshold=threshold,
        )
    prev = int(before["depth"])
    growth = depth - prev
    details = {
        "previous_depth": prev,
        "depth": depth,
        "previous_run_id": before.get("id"),
        "previous_generated_at": before.get("generated_at"),
    }
    text = f"DLQ depth {prev} -> {depth} since the previous run"
    if growth <= 0:
        return Outcome("ok", text, observed=growth, threshold=threshold, details=details)
    return Outcome(
        "critical" if growth >= crit else "warning",
        text,
        observed=growth,
        threshold=threshold,
        details=details,
    )


def _redrive(main: QueueState) -> dict[str, Any] | None:
    raw = (main.attrs or {}).get("RedrivePolicy")
    if not raw:
        return None
    try:
        policy = json.loads(raw)
    except ValueError:
        return None
    return policy if isinstance(policy, dict) else None


def _config_dlq_attached(ctx: Context) -> Outcome:
    threshold = "the main queue has a redrive policy targeting the configured DLQ"
    assert ctx.main is not None
    policy = _redrive(ctx.main)
    if policy is None or not policy.get("deadLetterTargetArn"):
        return Outcome(
            "critical",
            f"{ctx.main.name} has no redrive policy: failing messages are "
            "retried until they expire, and are then lost",
            observed="none",
            threshold=threshold,
        )
    target = str(policy["deadLetterTargetArn"]).rsplit(":", 1)[-1]
    dlq_arn = (ctx.dlq.attrs or {}).get("QueueArn") if ctx.dlq is not None else None
    if dlq_arn and dlq_arn != policy["deadLetterTargetArn"]:
        return Outcome(
            "warning",
            f"the redrive policy targets {target}, not the configured DLQ "
            f"{ctx.dlq.name if ctx.dlq else ''}",
            observed=target,
            threshold=threshold,
        )
    return Outcome("ok", f"{ctx.main.name} -> {target}", observed=target, threshold=threshold)


def _config_max_receive(ctx: Context) -> Outcome:
    low, high = MAX_RECEIVE_RANGE
    threshold = f"maxReceiveCount between {low} and {high} (team default 3)"
    assert ctx.main is not None
    policy = _redrive(ctx.main)
    if policy is None:
        return Outcome(
            "skipped", "no redrive policy (see queue.config.dlq_attached)", threshold=threshold
        )
    try:
        count = int(str(policy.get("maxReceiveCount")))
    except (TypeError, ValueError):
        return Outcome(
            "warning",
            "the redrive policy has no valid maxReceiveCount",
            observed=str(policy.get("maxReceiveCount")),
            threshold=threshold,
        )
    if count < low:
        return Outcome(
            "warning",
            f"maxReceiveCount {count}: one failed delivery sends a message to the DLQ",
            observed=count,
            threshold=threshold,
        )
    if count > high:
        return Outcome(
            "warning",
            f"maxReceiveCount {count}: poison messages are retried for a "
            "long time before reaching the DLQ",
            observed=count,
            threshold=threshold,
        )
    return Outcome("ok", f"maxReceiveCount {count}", observed=count, threshold=threshold)


def _config_retention(ctx: Context) -> Outcome:
    threshold = "DLQ retention longer than the main queue's"
    assert ctx.main is not None and ctx.dlq is not None
    main_r = ctx.main.number("MessageRetentionPeriod")
    dlq_r = ctx.dlq.number("MessageRetentionPeriod")
    if main_r is None or dlq_r is None:
        return Outcome("unknown", "retention periods not reported by SQS", threshold=threshold)
    details = {"main_seconds": main_r, "dlq_seconds": dlq_r}
    text = f"DLQ keeps messages {_age(dlq_r)}, main queue {_age(main_r)}"
    if dlq_r <= main_r:
        return Outcome(
            "warning",
            text + ": messages keep their original enqueue time, so they "
            "can expire in the DLQ before anyone looks",
            observed=dlq_r,
            threshold=threshold,
            details=details,
        )
    return Outcome("ok", text, observed=dlq_r, threshold=threshold, details=details)


def _config_visibility(ctx: Context) -> Outcome:
    job_timeout = ctx.t.job_timeout_seconds
    threshold = (
        f"visibility timeout >= job timeout ({job_timeout} s)"
        if job_timeout
        else "visibility timeout >= audit.job_timeout_seconds"
    )
    assert ctx.main is not None
    visibility = ctx.main.number("VisibilityTimeout")
    if not job_timeout:
        return Outcome(
            "skipped",
            "no job timeout configured (set job_timeout_seconds under [profiles.NAME.audit])",
            threshold=threshold,
        )
    if visibility is None:
        return Outcome("unknown", "visibility timeout not reported by SQS", threshold=threshold)
    text = f"visibility timeout {visibility} s, job timeout {job_timeout} s"
    if visibility < job_timeout:
        return Outcome(
            "warning",
            text + ": a slow job's message becomes visible again and is processed twice",
            observed=visibility,
            threshold=threshold,
        )
    return Outcome("ok", text, observed=visibility, threshold=threshold)


# --------------------------------------------------------------------------- rate limits
def _rl_rules(ctx: Context) -> Outcome:
    threshold = "an enabled rule for each preset: " + ", ".join(RATE_LIMIT_PRESETS)
    d = ctx.data("ratelimit.rules")
    enabled = {str(p) for p in d.get("presets") or []}
    disabled = {str(p) for p in d.get("disabled") or []}
    missing = [p for p in RATE_LIMIT_PRESETS if p not in enabled]
    details = {"enabled": sorted(enabled), "disabled": sorted(disabled), "missing": missing}
    if missing:
        off = [p for p in missing if p in disabled]
        absent = [p for p in missing if p not in disabled]
        parts = []
        if off:
            parts.append("disabled: " + ", ".join(off) + " (its endpoints are not limited)")
        if absent:
            parts.append("no rule for: " + ", ".join(absent))
        return Outcome(
            "warning",
            "preset rule(s) " + "; ".join(parts),
            observed=len(missing),
            threshold=threshold,
            remedy=f"dbops ratelimit enable {off[0]}" if off else "dbops ratelimit list",
            details=details,
        )
    return Outcome(
        "ok",
        "enabled: " + ", ".join(sorted(enabled)),
        observed=0,
        threshold=threshold,
        details=details,
    )


def _rl_ratio(ctx: Context) -> Outcome:
    warn = ctx.t.ratio_429_warning
    threshold = f"warning > {warn:g} % of requests denied (last hour)"
    d = ctx.data("ratelimit.429_ratio")
    requests = int(d.get("requests") or 0)
    denied = int(d.get("denied") or 0)
    details = {"requests": requests, "denied": denied}
    if requests == 0:
        return Outcome(
            "ok", "no requests in the last hour", observed=0.0, threshold=threshold, details=details
        )
    ratio = round(100.0 * denied / requests, 2)
    text = f"{ratio:g} % of requests got 429 in the last hour ({denied} of {requests})"
    if ratio > warn:
        return Outcome("warning", text, observed=ratio, threshold=threshold, details=details)
    return Outcome("ok", text, observed=ratio, threshold=threshold, details=details)


def _rl_blocks(ctx: Context) -> Outcome:
    threshold = "warning when a block or a temporary override is active"
    d = ctx.data("ratelimit.blocks_overrides")
    blocks, overrides = int(d.get("blocks") or 0), int(d.get("overrides") or 0)
    next_expiry = d.get("next_expiry_seconds")
    details = {"blocks": blocks, "overrides": overrides, "next_expiry_seconds": next_expiry}
    if blocks or overrides:
        return Outcome(
            "warning",
            f"{_plural(blocks, 'active block')} and "
            f"{_plural(overrides, 'active override')} (next expires in {_age(next_expiry)}): "
            "check they are still wanted",
            observed=blocks + overrides,
            threshold=threshold,
            details=details,
        )
    return Outcome(
        "ok", "no active block or override", observed=0, threshold=threshold, details=details
    )


def _rl_cleanup(ctx: Context) -> Outcome:
    hours = ctx.t.cleanup_overdue_hours
    threshold = f"warning >= 1 rate_limit_requests row older than {hours} h"
    d = ctx.data("ratelimit.cleanup_overdue")
    n = int(d.get("count") or 0)
    capped = bool(d.get("capped"))
    details = {"count": n, "capped": capped}
    if n == 0:
        return Outcome(
            "ok",
            f"no rate_limit_requests row older than {hours} h",
            observed=0,
            threshold=threshold,
            details=details,
        )
    shown = f"more than {n}" if capped else str(n)
    return Outcome(
        "warning",
        f"{shown} rate_limit_requests rows are older than {hours} h: the "
        "sliding-window log is not being pruned",
        observed=n,
        threshold=threshold,
        remedy=f"dbops ratelimit cleanup --older-than {hours}h",
        details=details,
    )


# --------------------------------------------------------------------------- registry
CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        "db.reachable", "Database reachable", 10, "dbops doctor", _db_reachable, special=True
    ),
    CheckSpec(
        "db.migrations",
        "dbops migrations current",
        6,
        "dbops db migrate",
        _db_migrations,
        special=True,
    ),
    CheckSpec("db.schema", "Schema contract", 6, "dbops db migrate", _db_schema, db=("db.schema",)),
    CheckSpec(
        "db.legacy_status",
        "Legacy status values",
        2,
        "dbops jobs list --status complete",
        _db_legacy_status,
        db=("db.legacy_status",),
    ),
    CheckSpec(
        "db.idempotency_keys",
        "Idempotency keys unique",
        4,
        "dbops jobs stats",
        _db_idempotency,
        db=("db.idempotency_keys",),
    ),
    CheckSpec(
        "jobs.stale",
        "Stale in-progress jobs",
        10,
        "dbops jobs recover",
        _jobs_stale,
        db=("jobs.stale",),
    ),
    CheckSpec(
        "jobs.orphaned",
        "Orphaned pending jobs",
        6,
        "dbops jobs requeue --orphans",
        _jobs_orphaned,
        db=("jobs.orphaned",),
    ),
    CheckSpec(
        "jobs.error_rate",
        "Job error rate (24 h)",
        8,
        "dbops jobs stats --since 24h",
        _jobs_error_rate,
        db=("jobs.error_rate",),
    ),
    CheckSpec(
        "jobs.stuck_submitting",
        "Results stuck in submitting",
        4,
        "dbops jobs stats",
        _jobs_stuck_submitting,
        db=("jobs.stuck_submitting",),
    ),
    CheckSpec(
        "jobs.recovery_cap",
        "Jobs at the recovery cap",
        4,
        "dbops jobs list --status failed",
        _jobs_recovery_cap,
        db=("jobs.recovery_cap",),
    ),
    CheckSpec(
        "workers.dead_holding",
        "Dead workers holding jobs",
        8,
        "dbops jobs recover",
        _workers_dead_holding,
        db=("workers.dead_holding",),
    ),
    CheckSpec(
        "workers.none_live_with_backlog",
        "Live workers for the backlog",
        10,
        "dbops queue watch",
        _workers_none_live,
        db=("workers.live",),
    ),
    CheckSpec(
        "queue.backlog",
        "Main queue backlog",
        8,
        "dbops queue watch",
        _queue_backlog,
        main_queue=True,
    ),
    CheckSpec(
        "queue.oldest_age",
        "Oldest message age",
        4,
        "dbops queue depth",
        _queue_oldest_age,
        main_queue=True,
    ),
    CheckSpec(
        "queue.dlq_depth",
        "Dead-letter queue depth",
        10,
        "dbops dlq list",
        _queue_dlq_depth,
        dlq=True,
    ),
    CheckSpec(
        "queue.dlq_growth",
        "DLQ growth since previous run",
        4,
        "dbops dlq list",
        _queue_dlq_growth,
        dlq=True,
    ),
    CheckSpec(
        "queue.config.dlq_attached",
        "DLQ attached",
        6,
        "dbops queue info",
        _config_dlq_attached,
        main_queue=True,
    ),
    CheckSpec(
        "queue.config.max_receive",
        "maxReceiveCount sane",
        2,
        "dbops queue info",
        _config_max_receive,
        main_queue=True,
    ),
    CheckSpec(
        "queue.config.retention",
        "DLQ retention > main retention",
        2,
        "dbops queue info",
        _config_retention,
        main_queue=True,
        dlq=True,
    ),
    CheckSpec(
        "queue.config.visibility",
        "Visibility timeout >= job timeout",
        2,
        "dbops queue info",
        _config_visibility,
        main_queue=True,
    ),
    CheckSpec(
        "ratelimit.rules",
        "Rules for every preset",
        3,
        "dbops ratelimit list",
        _rl_rules,
        db=("ratelimit.rules",),
    ),
    CheckSpec(
        "ratelimit.429_ratio",
        "429 ratio (1 h)",
        5,
        "dbops ratelimit top --since 1h",
        _rl_ratio,
        db=("ratelimit.429_ratio",),
    ),
    CheckSpec(
        "ratelimit.blocks_overrides",
        "Active blocks and overrides",
        2,
        "dbops ratelimit list",
        _rl_blocks,
        db=("ratelimit.blocks_overrides",),
    ),
    CheckSpec(
        "ratelimit.cleanup_overdue",
        "Rate-limit log cleanup",
        2,
        "dbops ratelimit cleanup",
        _rl_cleanup,
        db=("ratelimit.cleanup_overdue",),
    ),
)
CHECK_IDS: tuple[str, ...] = tuple(c.id for c in CHECKS)
_BY_ID = {c.id: c for c in CHECKS}


def _matches(check_id: str, pattern: str) -> bool:
    pattern = pattern.strip().lower().rstrip(".")
    return check_id == pattern or check_id.startswith(pattern + ".")


def selection_of(
    checks: Sequence[str] | None = None, skip: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """The stored form of `--check`/`--skip`: runs compare with runs of the same selection."""
    return {
        "check": sorted({p.strip().lower().rstrip(".") for p in checks or ()}),
        "skip": sorted({p.strip().lower().rstrip(".") for p in skip or ()}),
    }


def select_checks(
    checks: Sequence[str] | None = None, skip: Sequence[str] | None = None
) -> list[CheckSpec]:
    """The checks `--check`/`--skip` leave (ids or dotted prefixes such as `queue`)."""
    for option, patterns in (("--check", checks or ()), ("--skip", skip or ())):
        for pattern in patterns:
            if not pattern.strip() or not any(_matches(i, pattern) for i in CHECK_IDS):
                raise UsageError(
                    f"unknown audit check {option} {pattern!r}",
                    hint="ids or prefixes: "
                    + ", ".join(sorted({i.split(".", 1)[0] for i in CHECK_IDS}))
                    + "; see docs/audit.md",
                )
    chosen = [c for c in CHECKS if not checks or any(_matches(c.id, p) for p in checks)]
    return [c for c in chosen if not any(_matches(c.id, p) for p in skip or ())]


# --------------------------------------------------------------------------- gathering
def _observe_params(ctx: Context, only: Sequence[str]) -> dict[str, Any]:
    tables = list(APP_TABLES)
    for table, _name, _m in recommended_indexes():
        if table not in tables:
            tables.append(table)
    return {
        "p_stale_seconds": ctx.stale_seconds,
        "p_dead_seconds": ctx.dead_seconds,
        "p_orphan_seconds": ctx.t.orphaned_minutes * 60,
        "p_submitting_seconds": ctx.t.submitting_minutes * 60,
        "p_error_window_seconds": ERROR_WINDOW_SECONDS,
        "p_ratio_window_seconds": RATIO_WINDOW_SECONDS,
        "p_cleanup_seconds": ctx.t.cleanup_overdue_hours * 3600,
        "p_recovery_cap": ctx.t.recovery_cap,
        "p_schema_tables": tables,
        "p_only": list(only),
        "p_selection": ctx.selection,
    }


def _gather_database(ctx: Context, store: Store, selected: Sequence[CheckSpec]) -> float:
    """Ping, then one observe call. Returns the database wall time in ms."""
    started = time.perf_counter()
    ids = {s.id for s in selected}
    need: set[str] = {o for s in selected for o in s.db}
    if "db.migrations" in ids:
        need.add("db.migrations")
    need.add("audit.previous")
    if "queue.dlq_growth" in ids:
        need.add("audit.previous_dlq")
    try:
        ctx.db_latency_ms = store.ping()
    except ConfigError as exc:
        if "lacks dbops objects" not in exc.message:  # Supabase pings through dbops_ping()
            ctx.db_error = exc.one_line()
            return (time.perf_counter() - started) * 1000
        ctx.db_latency_ms = (time.perf_counter() - started) * 1000  # it answered
    except DbopsError as exc:
        ctx.db_error = exc.one_line()
        return (time.perf_counter() - started) * 1000
    try:
        rows = store.call("dbops_audit_observe", _observe_params(ctx, sorted(need)))
    except ConfigError as exc:
        ctx.observe_error = (
            "the dbops audit functions are not installed (run `dbops db migrate`)"
            if "lacks dbops objects" in exc.message
            else exc.one_line()
        )
        rows = []
    except DbopsError as exc:
        if isinstance(exc, UsageError):
            raise
        ctx.observe_error = exc.one_line()
        rows = []
    for row in rows:
        data = row.get("observed")
        if isinstance(data, str):  # some transports hand jsonb back as text
            data = json.loads(data)
        ctx.obs[str(row["check_id"])] = Observation(
            state=str(row.get("state") or "unknown"),
            data=data if isinstance(data, dict) else {},
            reason=row.get("reason"),
            elapsed_ms=float(row["elapsed_ms"]) if row.get("elapsed_ms") is not None else None,
        )
    if ctx.observe_error is not None and "db.migrations" in ids:
        from dbops.services.migrations import applied_versions

        try:
            applied = applied_versions(store)
            ctx.applied_fallback = {v: d["checksum"] for v, d in applied.items()}
        except DbopsError:
            ctx.applied_fallback = None
    previous = ctx.obs.get("audit.previous")
    if previous is not None and previous.state == "observed" and previous.data:
        ctx.previous = previous.data
    previous_dlq = ctx.obs.get("audit.previous_dlq")
    if previous_dlq is not None and previous_dlq.state == "observed" and previous_dlq.data:
        ctx.previous_dlq = previous_dlq.data
    return (time.perf_counter() - started) * 1000


def _fetch(queues: Queues, state: QueueState) -> None:
    assert state.url is not None
    started = time.perf_counter()
    try:
        state.attrs = queues.get_attributes(state.url)
    except DbopsError as exc:
        state.error = exc.one_line()
    state.elapsed_ms = round((time.perf_counter() - started) * 1000, 3)


def _gather_queues(
    ctx: Context, queues: Queues | None, settings: Settings, selected: Sequence[CheckSpec]
) -> None:
    need_main = any(s.main_queue for s in selected) or any(
        s.id == "workers.none_live_with_backlog" for s in selected
    )
    need_dlq = any(s.dlq for s in selected) or any(
        s.id == "queue.config.dlq_attached" for s in selected
    )
    ctx.main = QueueState("main queue", url=settings.sqs_queue_url)
    ctx.dlq = QueueState("dead-letter queue", url=settings.sqs_dlq_url)
    if queues is None or not (settings.sqs_queue_url or settings.sqs_dlq_url):
        reason = "no queues configured (SQS_QUEUE_URL, SQS_DLQ_URL)"
        ctx.main.not_configured = ctx.dlq.not_configured = reason
        return
    if not settings.sqs_queue_url:
        ctx.main.not_configured = "no main queue configured (SQS_QUEUE_URL)"
    unreachable: str | None = None
    if ctx.main.url and (need_main or (need_dlq and not ctx.dlq.url)):
        _fetch(queues, ctx.main)
        if ctx.main.error and "does not exist" not in ctx.main.error:
            unreachable = ctx.main.error  # do not hammer an endpoint that refuses
    if not ctx.dlq.url and ctx.main.attrs is not None:
        policy = _redrive(ctx.main)
        arn = str((policy or {}).get("deadLetterTargetArn") or "")
        if arn:
            try:
                ctx.dlq.url = queues.resolve_url(arn.rsplit(":", 1)[-1])
            except DbopsError as exc:
                ctx.dlq.error = exc.one_line()
    if not ctx.dlq.url and ctx.dlq.error is None:
        ctx.dlq.not_configured = "no dead-letter queue configured (SQS_DLQ_URL)"
    if need_dlq and ctx.dlq.url:
        if unreachable:
            ctx.dlq.error = unreachable
        else:
            _fetch(queues, ctx.dlq)
    if any(s.id == "queue.oldest_age" for s in selected) and ctx.main.attrs is not None:
        assert ctx.main.url is not None
        started = time.perf_counter()
        try:
            ctx.oldest_age = queues.oldest_message_age(ctx.main.url)
        except DbopsError:
            ctx.oldest_age = None
        ctx.oldest_age_ms = round((time.perf_counter() - started) * 1000, 3)


# --------------------------------------------------------------------------- evaluation
def _gate(spec: CheckSpec, ctx: Context) -> Outcome | None:
    """skipped/unknown outcomes for checks whose inputs are missing, else None."""
    if spec.db:
        if not ctx.db_configured:
            return Outcome("skipped", "no database configured (DATABASE_URL or SUPABASE_URL)")
        if ctx.db_error is not None:
            return Outcome("unknown", f"database unreachable: {ctx.db_error}")
        for obs_id in spec.db:
            if ctx.observe_error is not None:
                return Outcome("unknown", ctx.observe_error)
            obs = ctx.obs.get(obs_id)
            if obs is None:
                return Outcome(
                    "unknown",
                    "the database returned no observation (dbops "
                    "migrations out of date? run `dbops db migrate`)",
                )
            if obs.state == "skipped":
                return Outcome("skipped", obs.reason or "not available")
            if obs.state != "observed":
                return Outcome("unknown", obs.reason or "could not be observed")
    for needed, state in ((spec.main_queue, ctx.main), (spec.dlq, ctx.dlq)):
        if not needed or state is None:
            continue
        if state.not_configured:
            return Outcome("skipped", state.not_configured)
        if state.error:
            return Outcome("unknown", f"{state.label}: {state.error}")
        if state.attrs is None:
            return Outcome("unknown", f"{state.label}: not read")
    return None


def _elapsed(spec: CheckSpec, ctx: Context) -> float | None:
    if spec.db:
        times = [ctx.obs[o].elapsed_ms for o in spec.db if o in ctx.obs]
        values = [t for t in times if t is not None]
        return round(sum(values), 3) if values else None
    if spec.id == "db.reachable":
        return round(ctx.db_latency_ms, 3) if ctx.db_latency_ms is not None else None
    if spec.id == "db.migrations":
        obs = ctx.obs.get("db.migrations")
        return round(obs.elapsed_ms, 3) if obs and obs.elapsed_ms is not None else None
    if spec.id == "queue.oldest_age":
        return ctx.oldest_age_ms
    state = ctx.main if spec.main_queue else ctx.dlq
    return state.elapsed_ms if state is not None else None


def _with_profile(command: str | None, profile: str | None) -> str | None:
    if command and profile and command.startswith("dbops "):
        return f"{command} --profile {profile}"
    return command


def evaluate(spec: CheckSpec, ctx: Context) -> AuditCheck:
    outcome = None if spec.special else _gate(spec, ctx)
    if outcome is None:
        try:
            outcome = spec.evaluate(ctx)
        except (KeyError, TypeError, ValueError) as exc:  # an observation of a shape we don't know
            outcome = Outcome("unknown", f"unexpected observation ({type(exc).__name__}: {exc})")
    return AuditCheck(
        id=spec.id,
        area=spec.area,
        title=spec.title,
        severity=outcome.severity,
        observed=outcome.observed,
        threshold=outcome.threshold,
        explanation=outcome.explanation,
        remedy=_with_profile(outcome.remedy or spec.remedy, ctx.settings.profile),
        weight=spec.weight,
        elapsed_ms=_elapsed(spec, ctx),
        details=outcome.details,
    )


def score_of(checks: Sequence[AuditCheck]) -> int:
    """100 x kept weight / weight of the checks that ran (skipped ones excluded)."""
    counted = [c for c in checks if c.severity != "skipped"]
    total = sum(c.weight for c in counted)
    if total == 0:
        return 0
    kept = sum(c.weight * SEVERITY_FACTOR[c.severity] for c in counted)
    return max(0, min(100, math.floor(100.0 * kept / total + 1e-9)))


def verdict_of(checks: Sequence[AuditCheck]) -> Verdict:
    worst = max((_RANK[c.severity] for c in checks), default=-1)
    return {3: "CRITICAL", 2: "WARNING", 1: "UNKNOWN", 0: "OK"}.get(worst, "UNKNOWN")  # type: ignore[return-value]


def exit_code_for(
    report: AuditReport | Verdict,
    *,
    fail_on: FailOn = "warning",
    fail_under: int | None = None,
    score: int | None = None,
) -> int:
    """The process exit code for a verdict and the gating flags (see docs/audit.md).

    `--fail-on warning` (default): the Nagios code of the verdict (0/1/2/3).
    `--fail-on critical`: WARNING exits 0; CRITICAL 2 and UNKNOWN 3 as usual.
    `--fail-under N`: a score below N makes an otherwise-zero exit 1.
    """
    if isinstance(report, AuditReport):
        verdict, score = report.verdict, report.score
    else:
        verdict = report
    code = VERDICT_EXIT[verdict]
    if fail_on == "critical" and verdict == "WARNING":
        code = 0
    if code == 0 and fail_under is not None and score is not None and score < fail_under:
        code = 1
    return code


def _changes(checks: Sequence[AuditCheck], previous: dict[str, Any] | None) -> list[CheckChange]:
    if not previous:
        return []
    before = {
        str(c.get("id")): str(c.get("severity"))
        for c in previous.get("checks") or []
        if isinstance(c, dict) and c.get("severity") in _RANK
    }
    return [
        CheckChange.model_validate(
            {"id": c.id, "title": c.title, "before": before[c.id], "after": c.severity}
        )
        for c in checks
        if c.id in before and before[c.id] != c.severity
    ]


def _thresholds(settings: Settings) -> AuditThresholds:
    t = settings.audit
    positive = {
        "orphaned_minutes": t.orphaned_minutes,
        "submitting_minutes": t.submitting_minutes,
        "worker_dead_minutes": t.worker_dead_minutes,
        "cleanup_overdue_hours": t.cleanup_overdue_hours,
        "stale_jobs_critical": t.stale_jobs_critical,
        "backlog_critical": t.backlog_critical,
        "dlq_critical": t.dlq_critical,
        "recovery_cap": t.recovery_cap,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(
                f"invalid audit threshold {name} = {value}: must be positive",
                hint="fix [profiles.NAME.audit] in the config file",
            )
    if t.error_rate_critical < t.error_rate_warning or t.backlog_critical < t.backlog_warning:
        raise ConfigError(
            "invalid audit thresholds: a critical level is below its warning level",
            hint="fix [profiles.NAME.audit] in the config file",
        )
    return t


def _dlq_warning(settings: Settings) -> int:
    t = settings.audit
    # An explicit audit threshold wins; otherwise the team's DLQ_ALERT_THRESHOLD applies.
    if "dlq_warning" in t.model_fields_set:
        return max(1, t.dlq_warning)
    return max(1, settings.dlq_alert_threshold)


def run_audit(
    *,
    store: Store | None,
    queues: Queues | None,
    settings: Settings,
    checks: Sequence[str] | None = None,
    skip: Sequence[str] | None = None,
    save: bool = True,
    operator: str | None = None,
) -> AuditReport:
    """Run the selected checks (all by default), score them, and store the run.

    `store=None` means no database is configured (database, jobs, workers and rate-limit
    checks are skipped); `queues=None` means no queues are configured.
    """
    started = time.perf_counter()
    generated_at = datetime.now(UTC)
    selected = select_checks(checks, skip)
    t = _thresholds(settings)
    ctx = Context(
        settings=settings,
        t=t,
        stale_seconds=settings.stale_threshold_minutes * 60,
        dead_seconds=t.worker_dead_minutes * 60,
        dlq_warning=_dlq_warning(settings),
        db_configured=store is not None,
        selection=selection_of(checks, skip),
    )
    database_ms: float | None = None
    if store is not None:
        database_ms = round(_gather_database(ctx, store, selected), 3)
    _gather_queues(ctx, queues, settings, selected)
    results = [evaluate(spec, ctx) for spec in selected]
    score = score_of(results)
    verdict = verdict_of(results)
    previous = None
    if ctx.previous:
        try:
            previous = PreviousRun.model_validate(ctx.previous)
        except ValueError:
            previous = None
    report = AuditReport(
        score=score,
        verdict=verdict,
        exit_code=VERDICT_EXIT[verdict],
        generated_at=generated_at,
        duration_ms=0.0,
        database_ms=database_ms,
        transport=store.transport if store is not None else None,
        checks=results,
        previous=previous,
        changes=_changes(results, ctx.previous),
    )
    report.duration_ms = round((time.perf_counter() - started) * 1000, 3)
    if save:
        _save(report, store, ctx, operator=operator)
        report.duration_ms = round((time.perf_counter() - started) * 1000, 3)
    return report


def _save(
    report: AuditReport,
    store: Store | None,
    ctx: Context,
    *,
    operator: str | None,
) -> None:
    if store is None:
        report.save_error = "not saved: no database configured"
        return
    if ctx.db_error is not None:
        report.save_error = "not saved: database unreachable"
        return
    try:
        rows = store.call(
            "dbops_audit_save",
            {
                "p_generated_at": report.generated_at,
                "p_score": report.score,
                "p_verdict": report.verdict,
                "p_checks": [c.model_dump(mode="json") for c in report.checks],
                "p_duration_ms": report.duration_ms,
                "p_selection": ctx.selection,
                "p_operator": operator,
            },
        )
    except DbopsError as exc:
        report.save_error = f"not saved: {exc.one_line()}"
        return
    report.saved = True
    report.run_id = int(rows[0]["id"]) if rows and rows[0].get("id") is not None else None


def history(*, store: Store, limit: int = 20) -> list[AuditRun]:
    """Stored runs, newest first."""
    if limit < 1:
        raise UsageError(f"invalid --limit {limit}: must be at least 1")
    try:
        rows = store.call("dbops_audit_history", {"p_limit": limit})
    except NotFoundError:
        return []
    return [AuditRun.model_validate(r) for r in rows]
