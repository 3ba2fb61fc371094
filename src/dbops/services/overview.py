"""One frame of figures for `dbops top` and `dbops metrics`.

`gather()` costs at most one database round trip (`dbops_overview(...)`, which also
returns the observations of the audit's cheap subset) and one SQS GetQueueAttributes
call per configured queue (main queue, DLQ); with `cloudwatch=True` also one CloudWatch
GetMetricStatistics per queue for the oldest message's age. `full_audit=True` adds the
whole `dbops audit` (not saved: reads only). A source that fails (database down, a queue
unreachable) is named in `errors` while the others still return.

`Dashboard` is pure: it keeps the recent frames (for sparklines, arrival/drain rates and
an ETA) and carries the full audit and CloudWatch ages between the refreshes that fetch
them; the CLI owns the clock and the waiting.
"""

from __future__ import annotations

import json
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from dbops.errors import ConfigError, DbopsError, UsageError
from dbops.names import queue_name
from dbops.ports import Queues, Store
from dbops.services import queue as queue_service
from dbops.services.redact import mask_identifier

# The audit checks evaluated on every frame: the ones whose inputs the overview's round
# trip and the GetQueueAttributes calls already carry (no CloudWatch, no stored runs).
CHEAP_CHECKS: tuple[str, ...] = (
    "db.reachable",
    "jobs.stale",
    "jobs.orphaned",
    "workers.dead_holding",
    "workers.none_live_with_backlog",
    "queue.backlog",
    "queue.dlq_depth",
    "queue.config.dlq_attached",
    "queue.config.max_receive",
    "queue.config.retention",
    "queue.config.visibility",
    "ratelimit.429_ratio",
)
DEFAULT_MINUTES = 15
DEFAULT_WINDOW_SECONDS = 900
TOP_OFFENDERS = 5
SEVERITY_NUMBER: dict[str, int] = {
    "ok": 0,
    "warning": 1,
    "critical": 2,
    "unknown": 3,
    "skipped": -1,
}

QueueRole = Literal["main", "dlq"]


class QueueFigures(BaseModel):
    """One queue of `queues[]`: counts from one GetQueueAttributes call; the oldest
    message's age from CloudWatch (null when not fetched or not available)."""

    role: QueueRole
    queue: str
    url: str
    visible: int
    in_flight: int
    delayed: int
    total: int
    oldest_age_seconds: float | None = None
    in_rate: float | None = None
    out_rate: float | None = None
    drain_rate: float | None = None
    time_to_empty_seconds: float | None = None


class MinuteFigures(BaseModel):
    minute: datetime
    completed: int
    failed: int


class JobsFigures(BaseModel):
    """`jobs`: stale (in progress, no sign of life for `stale_after_seconds`) and
    orphaned (pending for `orphaned_after_seconds`, never claimed) counts with the rules
    of `jobs stale` / `jobs requeue --orphans`, jobs by status, and completed and failed
    per minute (oldest first, zeros included)."""

    stale: int | None = None
    stale_oldest_age_seconds: float | None = None
    orphaned: int | None = None
    orphaned_oldest_age_seconds: float | None = None
    stale_after_seconds: int
    orphaned_after_seconds: int
    by_status: dict[str, int] = Field(default_factory=dict)
    per_minute: list[MinuteFigures] = Field(default_factory=list)


class WorkersFigures(BaseModel):
    """`workers`: alive = a heartbeat within `dead_after_seconds`, dead otherwise."""

    alive: int | None = None
    dead: int | None = None
    total: int | None = None
    dead_holding_jobs: int | None = None
    dead_after_seconds: int
    by_status: dict[str, int] = Field(default_factory=dict)


class Offender(BaseModel):
    """One of `ratelimit[]`: the top offenders by denials, then requests, in the window
    (identifiers masked as everywhere: `api_key:****abcd`)."""

    identifier: str
    endpoint: str
    rule: str | None = None
    requests: int
    allowed: int
    denied: int
    throttled: bool = False
    blocked: bool = False


class RuleTraffic(BaseModel):
    """One of `ratelimit_rules[]`: requests and denials per rule in the window."""

    rule: str
    requests: int
    allowed: int
    denied: int


class AuditCheckFigure(BaseModel):
    id: str
    severity: str
    observed: int | float | str | None = None
    explanation: str


class AuditFigures(BaseModel):
    """`audit`: the CHEAP_CHECKS subset (`scope` `cheap`), evaluated on this frame's
    figures; `full` is the whole `dbops audit` (`scope` `full`, not saved) when this
    frame ran it (or, in `dbops top`, the last one, run once a minute)."""

    scope: Literal["cheap", "full"]
    verdict: str
    score: int
    generated_at: datetime
    checks: list[AuditCheckFigure] = Field(default_factory=list)
    full: AuditFigures | None = None


class Overview(BaseModel):
    """`dbops top --once -o json`: one frame.

    `{"at", "queues": [...], "jobs": {...}, "workers": {...}, "ratelimit": [...],
    "ratelimit_rules": [...], "audit": {...}, "errors": {...}, "calls": {...}}`.
    `errors` maps a failed source (`database`, `jobs`, `workers`, `ratelimit`, `audit`,
    `main_queue`, `dlq`) to its one-line error; `calls` counts this frame's remote calls
    (`database` round trips, `sqs`, `cloudwatch`).
    """

    at: datetime
    transport: str | None = None
    database_ms: float | None = None
    window_seconds: int
    queues: list[QueueFigures] = Field(default_factory=list)
    jobs: JobsFigures
    workers: WorkersFigures
    ratelimit: list[Offender] = Field(default_factory=list)
    ratelimit_rules: list[RuleTraffic] = Field(default_factory=list)
    audit: AuditFigures
    errors: dict[str, str] = Field(default_factory=dict)
    calls: dict[str, int] = Field(default_factory=dict)


# --------------------------------------------------------------------------- gathering
def _validate(minutes: int, window_seconds: int) -> None:
    if not 1 <= minutes <= 1440:
        raise UsageError(f"invalid --minutes {minutes}: must be between 1 and 1440")
    if window_seconds < 1:
        raise UsageError("invalid --window: must be at least 1 second")


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return round(float(value), 1) if value is not None else None
    except (TypeError, ValueError):
        return None


def _database(
    store: Store, params: dict[str, Any], errors: dict[str, str]
) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    try:
        rows = store.call("dbops_overview", params)
    except UsageError:
        raise
    except ConfigError as exc:
        errors["database"] = (
            "the dbops overview function is not installed (run `dbops db migrate`)"
            if "lacks dbops objects" in exc.message
            else exc.one_line()
        )
        return {}, (time.perf_counter() - started) * 1000
    except DbopsError as exc:
        errors["database"] = exc.one_line()
        return {}, (time.perf_counter() - started) * 1000
    elapsed = (time.perf_counter() - started) * 1000
    doc = rows[0].get("overview") if rows else None
    if isinstance(doc, str):  # some transports hand jsonb back as text
        doc = json.loads(doc)
    if not isinstance(doc, dict):
        errors["database"] = "dbops_overview returned nothing"
        return {}, elapsed
    for section, text in (doc.get("errors") or {}).items():
        errors[str(section)] = str(text)
    return doc, elapsed


def _queue(
    queues: Queues, role: QueueRole, url: str, cloudwatch: bool, calls: dict[str, int]
) -> tuple[QueueFigures, dict[str, str]] | str:
    """The figures and raw attributes of one queue, or its one-line error."""
    calls["sqs"] += 1
    try:
        attrs = queues.get_attributes(url)
    except DbopsError as exc:
        return exc.one_line()
    counts = queue_service.counts_from_attributes(attrs)
    age = None
    if cloudwatch:
        calls["cloudwatch"] += 1
        try:
            age = queues.oldest_message_age(url)
        except DbopsError:
            age = None
    figures = QueueFigures(
        role=role,
        queue=queue_name(url),
        url=url,
        visible=counts.visible,
        in_flight=counts.in_flight,
        delayed=counts.delayed,
        total=counts.total,
        oldest_age_seconds=_float(age),
    )
    return figures, attrs


def _jobs(doc: dict[str, Any], stale_s: int, orphan_s: int) -> JobsFigures:
    audit = doc.get("audit") or {}
    jobs = doc.get("jobs") or {}

    def observed(check: str) -> dict[str, Any]:
        entry = audit.get(check) or {}
        data = entry.get("observed") if entry.get("state") == "observed" else None
        return data if isinstance(data, dict) else {}

    stale, orphaned = observed("jobs.stale"), observed("jobs.orphaned")
    return JobsFigures(
        stale=_int(stale.get("count")),
        stale_oldest_age_seconds=_float(stale.get("oldest_age_seconds")),
        orphaned=_int(orphaned.get("count")),
        orphaned_oldest_age_seconds=_float(orphaned.get("oldest_age_seconds")),
        stale_after_seconds=stale_s,
        orphaned_after_seconds=orphan_s,
        by_status={str(k): int(v) for k, v in (jobs.get("by_status") or {}).items()},
        per_minute=[MinuteFigures.model_validate(m) for m in jobs.get("per_minute") or []],
    )


def _workers(doc: dict[str, Any], dead_s: int) -> WorkersFigures:
    w = doc.get("workers") or {}
    return WorkersFigures(
        alive=_int(w.get("alive")),
        dead=_int(w.get("dead")),
        total=_int(w.get("total")),
        dead_holding_jobs=_int(w.get("dead_holding_jobs")),
        dead_after_seconds=dead_s,
        by_status={str(k): int(v) for k, v in (w.get("by_status") or {}).items()},
    )


def _ratelimit(doc: dict[str, Any]) -> tuple[list[Offender], list[RuleTraffic]]:
    rl = doc.get("ratelimit") or {}
    top = [
        Offender(
            identifier=mask_identifier(str(r.get("identifier") or "")),
            endpoint=str(r.get("endpoint") or ""),
            rule=r.get("rule_name"),
            requests=int(r.get("requests") or 0),
            allowed=int(r.get("allowed") or 0),
            denied=int(r.get("denied") or 0),
            throttled=bool(r.get("throttled")),
            blocked=bool(r.get("blocked")),
        )
        for r in rl.get("top") or []
    ]
    rules = [RuleTraffic.model_validate(r) for r in rl.get("by_rule") or []]
    return top, rules


def _summary(report: Any, scope: Literal["cheap", "full"]) -> AuditFigures:
    return AuditFigures(
        scope=scope,
        verdict=report.verdict,
        score=report.score,
        generated_at=report.generated_at,
        checks=[
            AuditCheckFigure(
                id=c.id, severity=c.severity, observed=c.observed, explanation=c.explanation
            )
            for c in report.checks
        ],
    )


def _cheap_audit(
    settings: Any,
    *,
    store: Store | None,
    doc: dict[str, Any],
    errors: dict[str, str],
    database_ms: float | None,
    main: tuple[str | None, dict[str, str] | None, str | None],
    dlq: tuple[str | None, dict[str, str] | None, str | None],
) -> AuditFigures:
    from dbops.services.audit import AuditReport, evaluate, score_of, select_checks, verdict_of
    from dbops.services.audit.base import Observation, QueueState
    from dbops.services.audit.models import VERDICT_EXIT
    from dbops.services.audit.runner import make_context

    ctx = make_context(settings, db_configured=store is not None)
    if store is not None:
        if "database" in errors:
            ctx.db_error = errors["database"]
        else:
            ctx.db_latency_ms = database_ms
            if "audit" in errors:
                ctx.observe_error = errors["audit"]
            for check_id, entry in (doc.get("audit") or {}).items():
                data = entry.get("observed")
                ctx.obs[str(check_id)] = Observation(
                    state=str(entry.get("state") or "unknown"),
                    data=data if isinstance(data, dict) else {},
                    reason=entry.get("reason"),
                    elapsed_ms=_float(entry.get("elapsed_ms")),
                )
    for label, (url, attrs, error), attr in (
        ("main queue", main, "main"),
        ("dead-letter queue", dlq, "dlq"),
    ):
        state = QueueState(label, url=url, attrs=attrs, error=error)
        if url is None:
            state.not_configured = (
                "no main queue configured (SQS_QUEUE_URL)"
                if attr == "main"
                else "no dead-letter queue configured (SQS_DLQ_URL)"
            )
        setattr(ctx, attr, state)
    results = [evaluate(spec, ctx) for spec in select_checks(list(CHEAP_CHECKS))]
    verdict = verdict_of(results)
    report = AuditReport(
        score=score_of(results),
        verdict=verdict,
        exit_code=VERDICT_EXIT[verdict],
        generated_at=datetime.now(UTC),
        duration_ms=0.0,
        checks=results,
    )
    return _summary(report, "cheap")


def _observations() -> list[str]:
    from dbops.services.audit import CHECKS

    return sorted({o for spec in CHECKS if spec.id in CHEAP_CHECKS for o in spec.db})


# long: one guarded section per source (a failing one lands in `errors` while the others
# still run), kept together so the per-frame call budget reads in one place.
def gather(
    *,
    store: Store | None,
    queues: Queues | None,
    settings: Any,
    main_url: str | None,
    dlq_url: str | None,
    minutes: int = DEFAULT_MINUTES,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
    cloudwatch: bool = True,
    full_audit: bool = False,
) -> Overview:
    """One frame (see the module docstring for what it costs).

    `store=None` / `queues=None`: no database / no queues configured (named in `errors`).
    `settings` is a `dbops.settings.Settings` (thresholds, the stale threshold).
    """
    _validate(minutes, window_seconds)
    from dbops.services.audit.runner import make_context, observation_params

    ctx = make_context(settings, db_configured=store is not None)  # exit 3 on bad thresholds
    stale_s, dead_s = ctx.stale_seconds, ctx.dead_seconds
    orphan_s = ctx.t.orphaned_minutes * 60
    errors: dict[str, str] = {}
    calls: dict[str, int] = {"database": 0, "sqs": 0, "cloudwatch": 0}
    doc: dict[str, Any] = {}
    database_ms: float | None = None
    if store is None:
        errors["database"] = "no database configured (DATABASE_URL or SUPABASE_URL)"
    else:
        calls["database"] += 1
        params = {
            **observation_params(ctx),
            "p_minutes": minutes,
            "p_window_seconds": window_seconds,
            "p_top": TOP_OFFENDERS,
            "p_audit_only": _observations(),
        }
        doc, elapsed = _database(store, params, errors)
        database_ms = round(elapsed, 3)
    figures: list[QueueFigures] = []
    states: dict[QueueRole, tuple[str | None, dict[str, str] | None, str | None]] = {}
    key = {"main": "main_queue", "dlq": "dlq"}
    for role, url in (("main", main_url), ("dlq", dlq_url)):
        if not url:
            states[role] = (None, None, None)  # type: ignore[index]
            continue
        if queues is None:
            states[role] = (url, None, "no queues configured")  # type: ignore[index]
            continue
        got = _queue(queues, role, url, cloudwatch, calls)  # type: ignore[arg-type]
        if isinstance(got, str):
            errors[key[role]] = got
            states[role] = (url, None, got)  # type: ignore[index]
        else:
            figures.append(got[0])
            states[role] = (url, got[1], None)  # type: ignore[index]
    if not main_url and not dlq_url:
        errors["queues"] = "no queues configured (SQS_QUEUE_URL, SQS_DLQ_URL)"
    offenders, rules = _ratelimit(doc)
    audit = _cheap_audit(
        settings,
        store=store,
        doc=doc,
        errors=errors,
        database_ms=database_ms,
        main=states.get("main", (None, None, None)),
        dlq=states.get("dlq", (None, None, None)),
    )
    if full_audit:
        from dbops.services.audit import run_audit

        calls["full_audit"] = 1
        try:
            report = run_audit(store=store, queues=queues, settings=settings, save=False)
            audit.full = _summary(report, "full")
        except DbopsError as exc:
            errors["audit"] = exc.one_line()
    return Overview(
        at=datetime.now(UTC),
        transport=store.transport if store is not None else None,
        database_ms=database_ms,
        window_seconds=window_seconds,
        queues=figures,
        jobs=_jobs(doc, stale_s, orphan_s),
        workers=_workers(doc, dead_s),
        ratelimit=offenders,
        ratelimit_rules=rules,
        audit=audit,
        errors=errors,
        calls=calls,
    )


# --------------------------------------------------------------------------- dashboard
class Dashboard:
    """The recent frames of `dbops top`: depth history per queue (sparklines), rates and
    ETA (`queue.RateTracker`), the last full audit and the last CloudWatch ages.

    Pure: the caller passes the time of each frame; `wants_full(at)` says whether the
    next frame should run the full audit (and fetch CloudWatch ages), once per
    `full_every` seconds.
    """

    def __init__(self, *, history: int = 60, full_every: float = 60.0) -> None:
        self.history = history
        self.full_every = full_every
        self.depths: dict[str, deque[int]] = {}
        self._trackers: dict[str, queue_service.RateTracker] = {}
        self._ages: dict[str, float | None] = {}
        self.full: AuditFigures | None = None
        self._full_at: float | None = None

    def wants_full(self, at: float) -> bool:
        return self._full_at is None or at - self._full_at >= self.full_every

    def add(self, frame: Overview, *, at: float, full: bool = False) -> Overview:
        """Record `frame` (taken at `at`, epoch seconds); return it with rates, carried
        CloudWatch ages and the last full audit filled in."""
        for q in frame.queues:
            tracker = self._trackers.setdefault(q.role, queue_service.RateTracker(q.queue))
            sample = tracker.add(
                queue_service.QueueCounts(
                    visible=q.visible, in_flight=q.in_flight, delayed=q.delayed
                ),
                at=at,
            )
            q.in_rate, q.out_rate = sample.in_rate, sample.out_rate
            q.drain_rate, q.time_to_empty_seconds = sample.drain_rate, sample.time_to_empty_seconds
            self.depths.setdefault(q.role, deque(maxlen=self.history)).append(q.total)
            if full:
                self._ages[q.role] = q.oldest_age_seconds
            elif q.oldest_age_seconds is None:
                q.oldest_age_seconds = self._ages.get(q.role)
        if full:
            self._full_at = at
            self.full = frame.audit.full
        elif frame.audit.full is None:
            frame.audit.full = self.full
        return frame
