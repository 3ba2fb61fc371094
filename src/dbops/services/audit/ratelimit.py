"""Audit checks `ratelimit.*`: preset rules, 429 ratio, blocks and overrides, cleanup."""

from __future__ import annotations

from dbops.services.audit.base import (
    CheckSpec,
    Context,
    Outcome,
    age_text,
    plural,
    registrar,
)
from dbops.services.presets import RATE_LIMIT_PRESETS

CHECKS: list[CheckSpec] = []
check = registrar(CHECKS)


@check(
    "ratelimit.rules", "Rules for every preset", 3, "dbops ratelimit list", db=("ratelimit.rules",)
)
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


@check(
    "ratelimit.429_ratio",
    "429 ratio (1 h)",
    5,
    "dbops ratelimit top --since 1h",
    db=("ratelimit.429_ratio",),
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


@check(
    "ratelimit.blocks_overrides",
    "Active blocks and overrides",
    2,
    "dbops ratelimit list",
    db=("ratelimit.blocks_overrides",),
)
def _rl_blocks(ctx: Context) -> Outcome:
    threshold = "warning when a block or a temporary override is active"
    d = ctx.data("ratelimit.blocks_overrides")
    blocks, overrides = int(d.get("blocks") or 0), int(d.get("overrides") or 0)
    next_expiry = d.get("next_expiry_seconds")
    details = {"blocks": blocks, "overrides": overrides, "next_expiry_seconds": next_expiry}
    if blocks or overrides:
        return Outcome(
            "warning",
            f"{plural(blocks, 'active block')} and "
            f"{plural(overrides, 'active override')} (next expires in {age_text(next_expiry)}): "
            "check they are still wanted",
            observed=blocks + overrides,
            threshold=threshold,
            details=details,
        )
    return Outcome(
        "ok", "no active block or override", observed=0, threshold=threshold, details=details
    )


@check(
    "ratelimit.cleanup_overdue",
    "Rate-limit log cleanup",
    2,
    "dbops ratelimit cleanup",
    db=("ratelimit.cleanup_overdue",),
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
