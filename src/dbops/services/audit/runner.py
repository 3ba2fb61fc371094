"""Running an audit: gather the observations (one database round trip, read-only SQS
calls), evaluate the selected checks, score, verdict, changes since the previous run, and
store the run. Stored runs read back (history, show, diff): `runs`."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from dbops.errors import ConfigError, DbopsError, UsageError
from dbops.ports import Queues, Store
from dbops.services.audit.base import CheckSpec, Context, Observation, Outcome, QueueState
from dbops.services.audit.db import APP_TABLES, recommended_indexes
from dbops.services.audit.models import (
    RANK,
    SEVERITY_FACTOR,
    VERDICT_EXIT,
    AuditCheck,
    AuditReport,
    FailOn,
    Verdict,
)
from dbops.services.audit.queues import redrive_policy
from dbops.services.audit.registry import select_checks, selection_of
from dbops.services.audit.runs import changes_since, previous_run, uuid_text
from dbops.settings import AuditThresholds, Settings

ERROR_WINDOW_SECONDS = 24 * 3600
RATIO_WINDOW_SECONDS = 3600


def _observe_params(ctx: Context, only: Sequence[str]) -> dict[str, Any]:
    tables = list(APP_TABLES)
    for table, _name, _m in recommended_indexes():
        if table not in tables:
            tables.append(table)
    return {
        **observation_params(ctx),
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
        policy = redrive_policy(ctx.main)
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
    worst = max((RANK[c.severity] for c in checks), default=-1)
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


def make_context(
    settings: Settings, *, db_configured: bool, selection: dict[str, list[str]] | None = None
) -> Context:
    """The evaluation context of a run: thresholds (validated: exit 3 when one is not
    positive) and the durations the database observations take."""
    t = _thresholds(settings)
    return Context(
        settings=settings,
        t=t,
        stale_seconds=settings.stale_threshold_minutes * 60,
        dead_seconds=t.worker_dead_minutes * 60,
        dlq_warning=_dlq_warning(settings),
        db_configured=db_configured,
        selection=selection or {},
    )


def observation_params(ctx: Context) -> dict[str, int | None]:
    """The durations `dbops_audit_observe` (and `dbops_overview`) take, from `ctx`."""
    return {
        "p_stale_seconds": ctx.stale_seconds,
        "p_dead_seconds": ctx.dead_seconds,
        "p_orphan_seconds": ctx.t.orphaned_minutes * 60,
        "p_submitting_seconds": ctx.t.submitting_minutes * 60,
        "p_error_window_seconds": ERROR_WINDOW_SECONDS,
        "p_ratio_window_seconds": RATIO_WINDOW_SECONDS,
        "p_cleanup_seconds": ctx.t.cleanup_overdue_hours * 3600,
        "p_recovery_cap": ctx.t.recovery_cap,
    }


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
    ctx = make_context(
        settings, db_configured=store is not None, selection=selection_of(checks, skip)
    )
    database_ms: float | None = None
    if store is not None:
        database_ms = round(_gather_database(ctx, store, selected), 3)
    _gather_queues(ctx, queues, settings, selected)
    results = [evaluate(spec, ctx) for spec in selected]
    score = score_of(results)
    verdict = verdict_of(results)
    previous = previous_run(ctx.previous)
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
        changes=changes_since(results, ctx.previous),
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
            "dbops_audit_run_save",
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
    row = rows[0] if rows else {}
    report.run_id = int(row["id"]) if row.get("id") is not None else None
    report.run_uuid = uuid_text(row.get("run_id"))
