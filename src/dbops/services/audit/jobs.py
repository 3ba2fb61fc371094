"""Audit checks `jobs.*`: stale, orphaned, error rate, stuck submissions, recovery cap."""

from __future__ import annotations

from dbops.services.audit.base import (
    CheckSpec,
    Context,
    Outcome,
    age_text,
    count_level,
    plural,
    registrar,
    short,
)

CHECKS: list[CheckSpec] = []
check = registrar(CHECKS)


@check("jobs.stale", "Stale in-progress jobs", 10, "dbops jobs recover", db=("jobs.stale",))
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
        count_level(n, 1, crit),
        f"{plural(n, 'in-progress job')} with no sign of life for over {minutes} min "
        f"(stale; oldest {age_text(d.get('oldest_age_seconds'))} ago: "
        f"{short(details['sample'])})",
        observed=n,
        threshold=threshold,
        details=details,
    )


@check(
    "jobs.orphaned",
    "Orphaned pending jobs",
    6,
    "dbops jobs requeue --orphans",
    db=("jobs.orphaned",),
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
        count_level(n, 1, crit),
        f"{plural(n, 'pending job')} older than {minutes} min never claimed for the "
        f"queue (orphaned; oldest {age_text(d.get('oldest_age_seconds'))}: "
        f"{short(details['sample'])})",
        observed=n,
        threshold=threshold,
        details=details,
    )


@check(
    "jobs.error_rate",
    "Job error rate (24 h)",
    8,
    "dbops jobs stats --since 24h",
    db=("jobs.error_rate",),
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


@check(
    "jobs.stuck_submitting",
    "Results stuck in submitting",
    4,
    "dbops jobs stats",
    db=("jobs.stuck_submitting",),
)
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
        f"{plural(n, 'job result')} stuck in 'submitting' for over "
        f"{minutes} min (oldest {age_text(d.get('oldest_age_seconds'))}; jobs "
        f"{short(details['sample_job_ids'])})",
        observed=n,
        threshold=threshold,
        details=details,
    )


@check(
    "jobs.recovery_cap",
    "Jobs at the recovery cap",
    4,
    "dbops jobs list --status failed",
    db=("jobs.recovery_cap",),
)
def _jobs_recovery_cap(ctx: Context) -> Outcome:
    cap = ctx.t.recovery_cap
    threshold = f"warning >= 1 job re-queued {cap}+ times or failed at a recovery cap (last 24 h)"
    d = ctx.data("jobs.recovery_cap")
    n = int(d.get("count") or 0)
    abandoned = int(d.get("abandoned") or 0)
    sample = list(d.get("sample") or [])
    abandoned_caps = [c for c in d.get("abandoned_caps") or [] if isinstance(c, dict)]
    details = {
        "sample": sample,
        "abandoned": abandoned,
        "max_recoveries": d.get("max_recoveries"),
        "cap": cap,
        "abandoned_caps": abandoned_caps,
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
        f"{plural(n, 'job')} reached a recovery cap in the last 24 h "
        f"({_cap_breakdown(n, abandoned, abandoned_caps, cap)}): recovering does not fix "
        f"them ({short(sample)})",
        observed=n,
        threshold=threshold,
        remedy=f"dbops jobs show {sample[0]}" if sample else None,
        details=details,
    )


def _cap_breakdown(
    n: int, abandoned: int, abandoned_caps: list[dict[str, object]], cap: int
) -> str:
    """`1 failed at a cap of 5, 2 re-queued 3+ times (the audit's recovery_cap)`: each job
    failed at a cap is named with the cap its `jobs recover --max-recoveries` run used (its
    `abandoned_stale` history event), not the audit's own cap."""
    parts = []
    named = 0
    for entry in abandoned_caps:
        count, used = int(str(entry.get("count") or 0)), entry.get("cap")
        if count <= 0:
            continue
        named += count
        where = f"a cap of {used}" if used is not None else "a cap not recorded in the history"
        parts.append(f"{count} failed at {where}")
    if abandoned > named:
        parts.append(f"{abandoned - named} failed at a cap not recorded in the history")
    if n > abandoned:
        parts.append(f"{n - abandoned} re-queued {cap}+ times (the audit's recovery_cap)")
    return ", ".join(parts)
