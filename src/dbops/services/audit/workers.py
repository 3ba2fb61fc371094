"""Audit checks `workers.*`: dead workers holding jobs, live workers for the backlog."""

from __future__ import annotations

from dbops.services.audit.base import (
    CheckSpec,
    Context,
    Outcome,
    plural,
    registrar,
    short,
)

CHECKS: list[CheckSpec] = []
check = registrar(CHECKS)


@check(
    "workers.dead_holding",
    "Dead workers holding jobs",
    8,
    "dbops jobs recover",
    db=("workers.dead_holding",),
)
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
            f"{plural(running, 'dead worker')} (no heartbeat for over "
            f"{minutes} min) still holding in-progress jobs ({short(details['jobs'])})"
            + (f"; {other} more hold finished jobs" if other else ""),
            observed=running + other,
            threshold=threshold,
            details=details,
        )
    if other:
        return Outcome(
            "warning",
            f"{plural(other, 'dead worker')} still name a job that is no "
            "longer in progress (stale heartbeat rows)",
            observed=other,
            threshold=threshold,
            remedy="dbops jobs stale",
            details=details,
        )
    return Outcome(
        "ok", "no dead worker holds a job", observed=0, threshold=threshold, details=details
    )


@check(
    "workers.none_live_with_backlog",
    "Live workers for the backlog",
    10,
    "dbops queue watch",
    db=("workers.live",),
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
        f"{plural(n_live, 'live worker')}, backlog {backlog} {source}",
        observed=n_live,
        threshold=threshold,
        details=details,
    )
