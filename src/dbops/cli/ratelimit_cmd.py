"""`dbops ratelimit`: see and change the API's rate limits, find who is throttled, reset, block.

Every change is live at once: the API asks `dbops_rate_limit_hit` on each request, and that
function reads the rules, overrides and blocks these commands write (docs/rate-limiting.md).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli._checkpoint import checkpoint_from_env
from dbops.cli._common import DryRunOpt, YesOpt, confirm, duration, recorder
from dbops.cli.output import Output, OutputOpt, key_values, message, print_table, render, to_data
from dbops.durations import format_duration
from dbops.errors import UsageError
from dbops.services import ratelimit
from dbops.services.redact import mask_identifier

app = typer.Typer(
    help="Rate limits: rules, overrides, top offenders, status, reset, block, cleanup.",
    no_args_is_help=True,
)

IdentifierArg = Annotated[
    str,
    typer.Argument(
        metavar="IDENTIFIER",
        help="ip:<IPv4 or IPv6> or api_key:<key>; '-' reads it from stdin (keeps keys out of "
        "shell history).",
        show_default=False,
    ),
]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        "-e",
        help="One endpoint (default: all), normalised as the API's check does: case, "
        "repeated and trailing slashes, query string and fragment do not matter.",
    ),
]
BatchOpt = Annotated[
    int,
    typer.Option("--batch-size", min=1, max=100_000, help="Rows deleted per statement."),
]


# --------------------------------------------------------------------------- helpers
def _identifier(value: str) -> str:
    """The identifier argument, read from stdin for '-', validated (exit 2 when malformed)."""
    if value == "-":
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            raise UsageError("no identifier on stdin")
    return ratelimit.parse_identifier(value)


def _when(value: Any) -> str:
    if value is None:
        return ""
    text = str(value.isoformat() if hasattr(value, "isoformat") else value)
    return text.replace("T", " ")[:19]


def _rate(limit: int | None, window: int | None) -> str:
    return "unlimited" if limit is None else f"{limit}/{format_duration(window)}"


def _where(endpoint: str | None) -> str:
    return f"endpoint {endpoint!r}" if endpoint else "all endpoints"


def _object_table(obj: Any) -> None:
    data = to_data(obj)
    key_values({k: v for k, v in data.items() if v not in (None, [], {})})


def _rules_table(rules: list[ratelimit.RateLimitRule]) -> None:
    rows = []
    for r in rules:
        override = ""
        if r.override_expires_at is not None:
            override = (
                f"{_rate(r.override_limit, r.override_window_seconds)} until "
                f"{_when(r.override_expires_at)}"
                + (f" ({r.override_reason})" if r.override_reason else "")
            )
        rows.append(
            {
                "name": r.name,
                "pattern": r.endpoint_pattern,
                "kind": r.identifier_kind,
                "enabled": r.enabled,
                "limit": _rate(r.limit, r.window_seconds),
                "base": _rate(r.base_limit, r.base_window_seconds),
                "override": override,
                "updated": f"{_when(r.updated_at)} by {r.updated_by}",
            }
        )
    print_table(
        rows,
        ["name", "pattern", "kind", "enabled", "limit", "base", "override", "updated"],
        title="Rate-limit rules (matching order)",
        styles={"enabled": lambda v: None if v else "yellow"},
    )


# --------------------------------------------------------------------------- rules
@app.command("list")
def list_rules(output: OutputOpt = Output.table) -> None:
    """List the effective rules in matching order, with any temporary override and its expiry.

    Example:
        dbops ratelimit list -o json
    """
    rules = ratelimit.list_rules(store=_deps.store())
    from dbops.cli._completion import remember

    remember("rules", [r.name for r in rules], replace=True)  # names for shell completion
    render(rules, output, table=_rules_table, empty="no rate-limit rules")


@app.command("set")
def set_rule(
    name: Annotated[str, typer.Argument(help="Rule name (see `dbops ratelimit list`).")],
    limit: Annotated[int, typer.Option("--limit", min=1, help="Requests allowed per window.")],
    window: Annotated[
        str | None, typer.Option("--window", help="Window length, e.g. 1m, 15m (default: keep).")
    ] = None,
    for_: Annotated[
        str | None,
        typer.Option("--for", help="Temporary override for this long (e.g. 2h), then revert."),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (shown in list).")] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Change a rule's limit and window, permanently or (with --for) temporarily.

    A new setting ends any live override of the rule. The API applies it on its next request.

    Example:
        dbops ratelimit set public --limit 300 --window 1m --for 2h --reason "launch"
    """
    window_seconds = duration(window, "--window")
    for_seconds = duration(for_, "--for")
    store = _deps.store()
    plan = ratelimit.plan_rule(
        store=store,
        name=name,
        limit=limit,
        window_seconds=window_seconds,
        for_seconds=for_seconds,
        reason=reason,
    )
    before = plan.before
    text = (
        f"rule {name!r}: {_rate(before.limit, before.window_seconds)} -> "
        f"{_rate(limit, plan.window_seconds)}"
        + (f" for {format_duration(for_seconds)}" if for_seconds else " (permanent)")
    )
    if before.override_expires_at is not None:
        text += f"; ends the override that ran until {_when(before.override_expires_at)}"
    message(("would set " if dry_run else "set ") + text)
    confirm(f"change rate-limit rule {name!r}", yes=yes, dry_run=dry_run)
    args = {
        "name": name,
        "limit": limit,
        "window_seconds": plan.window_seconds,
        "for_seconds": for_seconds,
        "reason": plan.reason,
    }
    _apply(store, plan, "ratelimit set", args, dry_run=dry_run, output=output)


def _apply(
    store: Any,
    plan: ratelimit.RuleChange,
    command: str,
    args: dict[str, Any],
    *,
    dry_run: bool,
    output: Output,
) -> None:
    """Render the plan (a dry run) or carry it out, under the action recorder."""
    with recorder(command, args, dry_run=dry_run) as rec:
        rec.counts = plan.counts()  # nothing changed yet (what a failure logs)
        actor = _deps.operator()
        result = plan if dry_run else ratelimit.apply_change(store=store, plan=plan, actor=actor)
        rec.counts = result.counts()
    _render_change(result, output)


def _render_change(result: ratelimit.RuleChange, output: Output) -> None:
    if output is Output.table:
        _rules_table([result.after or result.before])
        return
    render(result, output)


def _toggle(name: str, enabled: bool, yes: bool, dry_run: bool, output: Output) -> None:
    store = _deps.store()
    plan = ratelimit.plan_toggle(store=store, name=name, enabled=enabled)
    before, verb = plan.before, plan.change
    consequence = (
        f"requests matching {before.endpoint_pattern!r} are limited to "
        f"{_rate(before.limit, before.window_seconds)}"
        if enabled
        else f"requests matching {before.endpoint_pattern!r} are no longer limited "
        "(blocks still apply)"
    )
    state = "already " if before.enabled == enabled else ""
    message(
        f"{'would ' if dry_run else ''}{verb} rule {name!r} ({state}"
        f"{'enabled' if before.enabled else 'disabled'} now): {consequence}"
    )
    confirm(f"{verb} rate-limit rule {name!r}", yes=yes, dry_run=dry_run)
    _apply(store, plan, f"ratelimit {verb}", {"name": name}, dry_run=dry_run, output=output)


@app.command("enable")
def enable(
    name: Annotated[str, typer.Argument(help="Rule name.")],
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Enable a rule: its endpoints are limited again.

    Example:
        dbops ratelimit enable auth --yes
    """
    _toggle(name, True, yes, dry_run, output)


@app.command("disable")
def disable(
    name: Annotated[str, typer.Argument(help="Rule name.")],
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Disable a rule: requests it matches are allowed without limit (blocks still apply).

    Example:
        dbops ratelimit disable staff --dry-run
    """
    _toggle(name, False, yes, dry_run, output)


# --------------------------------------------------------------------------- traffic
def _top_table(entries: list[ratelimit.TopEntry]) -> None:
    rows = [
        {
            "identifier": e.identifier,
            "endpoint": e.endpoint,
            "rule": e.rule or "",
            "requests": e.requests,
            "denied": e.denied,
            "in window": (
                f"{e.window_requests}/{e.limit} per {format_duration(e.window_seconds)}"
                if e.limit is not None
                else "unlimited"
            ),
            "% of limit": "" if e.percent_of_limit is None else f"{e.percent_of_limit:g}%",
            "throttled": e.throttled,
            "blocked": e.blocked,
        }
        for e in entries
    ]
    print_table(
        rows,
        list(rows[0]),
        title="Top rate-limit consumers",
        styles={
            "throttled": lambda v: "red" if v else None,
            "blocked": lambda v: "red" if v else None,
        },
    )


class TopSort(StrEnum):
    denied = "denied"
    requests = "requests"
    percent = "percent"


@app.command("top")
def top(
    since: Annotated[str, typer.Option(help="Requests counted over this period.")] = "15m",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many rows.")] = 20,
    sort: Annotated[
        TopSort,
        typer.Option(
            help="Rank by denials (then requests), requests (then denials), or % of the "
            "limit used in the current window."
        ),
    ] = TopSort.denied,
    output: OutputOpt = Output.table,
) -> None:
    """Who is hammering the API: requests, denials, % of limit, throttled now, blocked.

    Ranked by denials in the period, then requests (--sort to change). API keys are shown
    masked (api_key:****abcd).

    Example:
        dbops ratelimit top --since 1h --limit 50 -o json
        dbops ratelimit top --sort percent
    """
    entries = ratelimit.top(
        store=_deps.store(),
        since_seconds=duration(since, "--since") or 0,
        limit=limit,
        sort=sort.value,
    )
    render(
        entries,
        output,
        table=_top_table if entries else None,
        empty="no rate-limited traffic in that period",
    )


def _status_table(rows: list[ratelimit.IdentifierStatus]) -> None:
    items = [
        {
            "identifier": r.identifier,
            "endpoint": r.endpoint or "(all)",
            "rule": r.rule or "",
            "used": r.used,
            "limit": _rate(r.limit, r.window_seconds) if r.endpoint is not None else "",
            "remaining": "" if r.remaining is None else r.remaining,
            "resets at": _when(r.reset_at),
            "next request": "allowed" if r.allowed else f"denied ({r.retry_after_seconds}s)",
            "blocked": (
                f"until {_when(r.block_expires_at)}: {r.block_reason}" if r.blocked else "no"
            ),
        }
        for r in rows
    ]
    print_table(items, list(items[0]), title="Rate-limit status")


@app.command("status")
def status(
    identifier: IdentifierArg,
    endpoint: EndpointOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Used, remaining, reset time and block for one identifier (per endpoint).

    Example:
        dbops ratelimit status ip:203.0.113.7 --endpoint /api/auth/login
    """
    rows = ratelimit.status(
        store=_deps.store(), identifier=_identifier(identifier), endpoint=endpoint
    )
    render(rows, output, table=_status_table if rows else None, empty="nothing recorded")


# --------------------------------------------------------------------------- mutations
@app.command("reset")
def reset(
    identifier: IdentifierArg,
    endpoint: EndpointOpt = None,
    batch_size: BatchOpt = ratelimit.DEFAULT_BATCH,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Clear an identifier's window so its next request is allowed.

    Deletes its logged requests inside every rule window (one endpoint with --endpoint).

    Example:
        dbops ratelimit reset api_key:sk_live_1234 --endpoint /api/auth/login --yes
    """
    ident = _identifier(identifier)
    store = _deps.store()
    plan = ratelimit.reset_preview(store=store, identifier=ident, endpoint=endpoint)
    shown = mask_identifier(ident)
    if plan.requests == 0:
        message(
            f"nothing to reset: {shown} has no requests in any window on {_where(plan.endpoint)}"
        )
        render(plan.model_copy(update={"dry_run": dry_run}), output, table=_object_table)
        return
    message(
        f"{'would delete' if dry_run else 'delete'} {plan.requests} logged request(s) of {shown} "
        f"on {plan.endpoints} endpoint(s) since {_when(plan.cutoff)}"
    )
    confirm(f"reset the rate-limit window of {shown}", yes=yes, dry_run=dry_run)
    result = plan.model_copy(update={"dry_run": dry_run})
    with recorder(
        "ratelimit reset", {"identifier": shown, "endpoint": plan.endpoint}, dry_run=dry_run
    ) as rec:
        if not dry_run:
            result = ratelimit.reset(
                store=store,
                identifier=ident,
                plan=result,
                batch_size=batch_size,
                checkpoint=checkpoint_from_env(),
            )
            message(f"deleted {result.deleted} request(s); {shown} is allowed again")
        rec.counts = result.counts()
    render(result, output, table=_object_table)


@app.command("block")
def block(
    identifier: IdentifierArg,
    for_: Annotated[str, typer.Option("--for", help="How long, e.g. 30m, 24h.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the block).")],
    endpoint: EndpointOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Deny every request of an identifier (on one endpoint or all) until the block expires.

    The API answers 429 with Retry-After until then; `unblock` lifts it early.

    Example:
        dbops ratelimit block ip:198.51.100.23 --for 24h --reason "credential stuffing"
    """
    ident = _identifier(identifier)
    for_seconds = duration(for_, "--for") or 0
    store = _deps.store()
    plan = ratelimit.block_preview(
        store=store, identifier=ident, endpoint=endpoint, for_seconds=for_seconds, reason=reason
    )
    text = (
        f"block {plan.identifier} on {_where(plan.endpoint)} for {format_duration(for_seconds)}: "
        f"{plan.reason}"
    )
    if plan.replaces:
        text += f" (replaces the block until {_when(plan.replaces[0].expires_at)})"
    message(("would " if dry_run else "") + text)
    confirm(f"block {plan.identifier}", yes=yes, dry_run=dry_run)
    result = plan.model_copy(update={"dry_run": dry_run})
    args = {
        "identifier": plan.identifier,
        "endpoint": plan.endpoint,
        "for_seconds": for_seconds,
        "reason": plan.reason,
    }
    with recorder("ratelimit block", args, dry_run=dry_run) as rec:
        rec.counts = {"blocks_created": 0, "blocks_replaced": 0}
        if not dry_run:
            result = ratelimit.block(
                store=store,
                identifier=ident,
                endpoint=endpoint,
                for_seconds=for_seconds,
                reason=reason,
                actor=_deps.operator(),
            )
            rec.counts = {"blocks_created": 1, "blocks_replaced": len(result.replaces)}
            message(f"blocked {result.identifier} until {_when(result.expires_at)}")
    render(result, output, table=_object_table)


@app.command("unblock")
def unblock(
    identifier: IdentifierArg,
    endpoint: EndpointOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Lift an identifier's active blocks (only the one on --endpoint when given).

    Exit 4 when it has no active block.

    Example:
        dbops ratelimit unblock ip:198.51.100.23 --yes
    """
    ident = _identifier(identifier)
    store = _deps.store()
    plan = ratelimit.unblock_preview(store=store, identifier=ident, endpoint=endpoint)
    for b in plan.blocks:
        message(
            f"{'would lift' if dry_run else 'lift'} block of {b.identifier} on "
            f"{_where(b.endpoint)} until {_when(b.expires_at)} ({b.reason}, by {b.created_by})"
        )
    confirm(f"unblock {plan.identifier}", yes=yes, dry_run=dry_run)
    result = plan.model_copy(update={"dry_run": dry_run})
    with recorder(
        "ratelimit unblock",
        {"identifier": plan.identifier, "endpoint": plan.endpoint},
        dry_run=dry_run,
    ) as rec:
        rec.counts = {"active_blocks": len(plan.blocks), "lifted": 0}
        if not dry_run:
            result = ratelimit.unblock(
                store=store, identifier=ident, endpoint=endpoint, actor=_deps.operator()
            )
            rec.counts = {"active_blocks": len(plan.blocks), "lifted": result.lifted}
    render(result, output, table=_object_table)


@app.command("cleanup")
def cleanup(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Delete logged requests older than this.")
    ] = "24h",
    batch_size: BatchOpt = ratelimit.DEFAULT_BATCH,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Delete old rows of the request log (and old denial counters) in batches.

    Refuses a period shorter than the longest rule window. Safe to interrupt and re-run.

    Example:
        dbops ratelimit cleanup --older-than 7d --yes
    """
    seconds = duration(older_than, "--older-than") or 0
    store = _deps.store()
    plan = ratelimit.cleanup_preview(store=store, older_than_seconds=seconds)
    result = plan.model_copy(update={"dry_run": dry_run})
    if plan.requests == 0 and plan.denial_rows == 0:
        message(f"nothing to clean up older than {_when(plan.cutoff)}")
        render(result, output, table=_object_table)
        return
    message(
        f"{'would delete' if dry_run else 'delete'} {plan.requests} logged request(s) and "
        f"{plan.denial_rows} denial counter(s) older than {_when(plan.cutoff)} "
        f"in batches of {batch_size}"
    )
    confirm("delete old rate-limit rows", yes=yes, dry_run=dry_run)
    with recorder(
        "ratelimit cleanup",
        {"older_than_seconds": seconds, "batch_size": batch_size},
        dry_run=dry_run,
    ) as rec:
        if not dry_run:
            result = ratelimit.cleanup(
                store=store, plan=result, batch_size=batch_size, checkpoint=checkpoint_from_env()
            )
            message(
                f"deleted {result.deleted_requests} request(s) and {result.deleted_denials} "
                f"denial counter(s) in {result.batches} batch(es)"
            )
        rec.counts = result.counts()
    render(result, output, table=_object_table)
