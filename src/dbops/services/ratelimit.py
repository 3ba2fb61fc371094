"""Rate limiting: rules, overrides, blocks, traffic, and the API's atomic check.

All logic lives in the `dbops_ratelimit_*` / `dbops_rate_limit_hit` SQL functions
(`sql/dbops/0005_ratelimit.sql`); this module validates input, masks identifiers and
shapes rows into models. API keys inside identifiers are secrets: every model carries the
masked form (`api_key:****abcd`); the raw identifier is only ever passed to the store.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from dbops.errors import NotFoundError, UsageError, partial_result_on_failure
from dbops.ports import Checkpoint, Store
from dbops.services.ratelimit_models import (
    Block,
    BlockResult,
    CleanupResult,
    HitResult,
    IdentifierStatus,
    RateLimitRule,
    Ratio429,
    ResetResult,
    RuleChange,
    TopEntry,
    UnblockResult,
)
from dbops.services.redact import mask_identifier, redact_text

DEFAULT_BATCH = 10_000
IDENTIFIER_FORMS = "ip:<IPv4 or IPv6 address> or api_key:<key>"


# --------------------------------------------------------------------------- identifiers
def parse_identifier(text: str) -> str:
    """The identifier, validated: `ip:<IPv4/IPv6>` or `api_key:<key>`; else a UsageError.

    The identifier is returned as given (matching is literal); the error message never
    contains the key.
    """
    raw = text if isinstance(text, str) else ""
    kind, sep, rest = raw.partition(":")
    if sep and kind == "ip":
        try:
            ipaddress.ip_address(rest)
        except ValueError:
            raise UsageError(
                f"invalid identifier {raw!r}: not an IPv4 or IPv6 address",
                hint=f"use {IDENTIFIER_FORMS}",
            ) from None
        return raw
    if sep and kind == "api_key":
        if not rest or "\x00" in rest:
            raise UsageError(
                "invalid identifier: the API key after 'api_key:' is empty or has a NUL byte",
                hint=f"use {IDENTIFIER_FORMS}",
            )
        return raw
    # Never echo an unrecognised value: it may well be a bare API key.
    prefix = f" starting {kind + ':'!r}" if sep and len(kind) <= 16 and kind.isidentifier() else ""
    raise UsageError(f"invalid identifier{prefix}", hint=f"use {IDENTIFIER_FORMS}")


def parse_endpoint(text: str | None) -> str | None:
    if text is None:
        return None
    if text == "" or "\x00" in text:
        raise UsageError("invalid --endpoint: empty or contains a NUL byte")
    return text


def normalize_endpoint(*, store: Store, endpoint: str | None) -> str | None:
    """The endpoint as the rate limiter sees it (`/API//auth/login/?x=1` -> `/api/auth/login`).

    The rule is the SQL function `dbops_rate_limit_normalize_endpoint` (the one the API's
    check uses); it is called here rather than re-implemented, so the two cannot drift.
    """
    endpoint = parse_endpoint(endpoint)
    if endpoint is None:
        return None
    rows = store.call("dbops_rate_limit_normalize_endpoint", {"p_endpoint": endpoint})
    value = rows[0].get("dbops_rate_limit_normalize_endpoint") if rows else None
    return str(value) if value is not None else endpoint


def clean_reason(text: str | None) -> str | None:
    """A free-text reason as stored and shown: API keys (and other secrets) redacted."""
    if text is None:
        return None
    return redact_text(" ".join(text.split()))


def _masked(row: dict[str, Any], key: str = "identifier") -> dict[str, Any]:
    out = dict(row)
    if isinstance(out.get(key), str):
        out[key] = mask_identifier(out[key])
    return out


# --------------------------------------------------------------------------- rules
def list_rules(*, store: Store) -> list[RateLimitRule]:
    """Every rule in matching order (precedence, longest pattern, name), override applied."""
    rows = store.call("dbops_ratelimit_rules", {"p_name": None})
    return [RateLimitRule.model_validate(r) for r in rows]


def get_rule(*, store: Store, name: str) -> RateLimitRule:
    rows = store.call("dbops_ratelimit_rules", {"p_name": name})
    if not rows:
        raise NotFoundError(f"no rate-limit rule named {name!r}", hint="see `dbops ratelimit list`")
    return RateLimitRule.model_validate(rows[0])


def set_rule(
    *,
    store: Store,
    name: str,
    limit: int,
    window_seconds: int | None,
    for_seconds: int | None,
    reason: str | None,
    actor: str,
) -> RateLimitRule:
    """Change a rule permanently, or (with `for_seconds`) override it until then."""
    if limit < 1:
        raise UsageError(f"invalid --limit {limit}: must be at least 1")
    reason = clean_reason(reason)
    rows = store.call(
        "dbops_ratelimit_set",
        {
            "p_name": name,
            "p_limit": limit,
            "p_window_seconds": window_seconds,
            "p_for_seconds": for_seconds,
            "p_reason": reason,
            "p_actor": actor,
        },
    )
    return RateLimitRule.model_validate(rows[0])


def plan_rule(
    *,
    store: Store,
    name: str,
    limit: int,
    window_seconds: int | None,
    for_seconds: int | None,
    reason: str | None,
) -> RuleChange:
    """What `ratelimit set` would change (a dry run): the rule now, the new limit and window
    (the current base window when none is given), permanent or an override."""
    reason = clean_reason(reason)
    before = get_rule(store=store, name=name)
    return RuleChange(
        name=name,
        change="override" if for_seconds else "base",
        dry_run=True,
        before=before,
        limit=limit,
        window_seconds=window_seconds or before.base_window_seconds,
        for_seconds=for_seconds,
        reason=reason,
    )


def plan_toggle(*, store: Store, name: str, enabled: bool) -> RuleChange:
    """What `ratelimit enable|disable` would change (a dry run)."""
    before = get_rule(store=store, name=name)
    change: Literal["enable", "disable"] = "enable" if enabled else "disable"
    return RuleChange(name=name, change=change, dry_run=True, before=before)


def apply_change(*, store: Store, plan: RuleChange, actor: str) -> RuleChange:
    """Carry out a plan of `plan_rule` or `plan_toggle`; the result has the rule `after`."""
    if plan.change in ("enable", "disable"):
        after = set_enabled(
            store=store, name=plan.name, enabled=plan.change == "enable", actor=actor
        )
    else:
        assert plan.limit is not None
        after = set_rule(
            store=store,
            name=plan.name,
            limit=plan.limit,
            window_seconds=plan.window_seconds,
            for_seconds=plan.for_seconds,
            reason=plan.reason,
            actor=actor,
        )
    return plan.model_copy(update={"after": after, "dry_run": False})


def set_enabled(*, store: Store, name: str, enabled: bool, actor: str) -> RateLimitRule:
    rows = store.call(
        "dbops_ratelimit_set_enabled", {"p_name": name, "p_enabled": enabled, "p_actor": actor}
    )
    return RateLimitRule.model_validate(rows[0])


# --------------------------------------------------------------------------- traffic
TOP_SORTS = ("denied", "requests", "percent")


def top(*, store: Store, since_seconds: int, limit: int, sort: str = "denied") -> list[TopEntry]:
    """(identifier, endpoint) pairs over the last `since_seconds`, ranked by `sort`.

    `denied` (the default): most denials first, then most requests, so a client the API is
    refusing ranks first even when its current window has emptied (0 % of the limit now);
    `requests`: most requests, then denials; `percent`: highest share of the limit now.
    """
    if sort not in TOP_SORTS:
        raise UsageError(f"--sort must be one of {', '.join(TOP_SORTS)}, not {sort!r}")
    rows = store.call(
        "dbops_ratelimit_top",
        {"p_since_seconds": since_seconds, "p_limit": limit, "p_sort": sort},
    )
    entries = []
    for row in rows:
        data = _masked(row)
        data["rule"] = data.pop("rule_name", None)
        pct = data.get("percent_of_limit")
        data["percent_of_limit"] = float(pct) if pct is not None else None
        entries.append(TopEntry.model_validate(data))
    return entries


def status(*, store: Store, identifier: str, endpoint: str | None) -> list[IdentifierStatus]:
    identifier = parse_identifier(identifier)
    rows = store.call(
        "dbops_ratelimit_status",
        {"p_identifier": identifier, "p_endpoint": parse_endpoint(endpoint)},
    )  # the SQL normalises the endpoint (and reports it normalised)
    shown = mask_identifier(identifier)
    out = []
    for row in rows:
        data = dict(row)
        data["rule"] = data.pop("rule_name", None)
        out.append(IdentifierStatus.model_validate({**data, "identifier": shown}))
    return out


def hit(*, store: Store, identifier: str, endpoint: str) -> HitResult:
    """Check and record one request, exactly as the API does."""
    rows = store.call("dbops_rate_limit_hit", {"p_identifier": identifier, "p_endpoint": endpoint})
    return HitResult.model_validate(rows[0])


def ratio_429(*, store: Store, since_seconds: int) -> Ratio429:
    rows = store.call("dbops_ratelimit_429_ratio", {"p_since_seconds": since_seconds})
    return Ratio429.model_validate({**rows[0], "since_seconds": since_seconds})


# --------------------------------------------------------------------------- reset
def reset_preview(*, store: Store, identifier: str, endpoint: str | None) -> ResetResult:
    identifier = parse_identifier(identifier)
    endpoint = normalize_endpoint(store=store, endpoint=endpoint)
    row = store.call(
        "dbops_ratelimit_reset_preview", {"p_identifier": identifier, "p_endpoint": endpoint}
    )[0]
    return ResetResult(
        identifier=mask_identifier(identifier),
        endpoint=endpoint,
        cutoff=row["cutoff"],
        requests=int(row["requests"]),
        endpoints=int(row["endpoints"]),
    )


def reset(
    *,
    store: Store,
    identifier: str,
    plan: ResetResult,
    batch_size: int = DEFAULT_BATCH,
    checkpoint: Checkpoint | None = None,
) -> ResetResult:
    """Delete the identifier's requests inside every window (batched), so it is allowed now.
    A failure or Ctrl-C carries what the committed batches deleted (`partial_result`)."""
    identifier = parse_identifier(identifier)
    deleted, batches = 0, 0

    def result() -> ResetResult:
        return plan.model_copy(update={"deleted": deleted, "batches": batches})

    with partial_result_on_failure(result):
        while True:
            row = store.call(
                "dbops_ratelimit_reset_batch",
                {
                    "p_identifier": identifier,
                    "p_endpoint": plan.endpoint,
                    "p_cutoff": plan.cutoff,
                    "p_batch": batch_size,
                },
            )[0]
            batches += 1
            deleted += int(row["deleted"])
            if checkpoint is not None:
                checkpoint("after_batch")  # committed: a test may kill the run here
            if int(row["deleted"]) < batch_size:
                break
    return result()


# --------------------------------------------------------------------------- blocks
def active_blocks(*, store: Store, identifier: str | None) -> list[Block]:
    params = {"p_identifier": parse_identifier(identifier) if identifier else None}
    return [Block.model_validate(_masked(r)) for r in store.call("dbops_ratelimit_blocks", params)]


def block_preview(
    *, store: Store, identifier: str, endpoint: str | None, for_seconds: int, reason: str
) -> BlockResult:
    identifier = parse_identifier(identifier)
    endpoint = normalize_endpoint(store=store, endpoint=endpoint)
    reason = clean_reason(reason) or ""
    if not reason:
        raise UsageError("a block needs a --reason")
    replaces = [
        b for b in active_blocks(store=store, identifier=identifier) if b.endpoint == endpoint
    ]
    return BlockResult(
        identifier=mask_identifier(identifier),
        endpoint=endpoint,
        reason=reason,
        for_seconds=for_seconds,
        replaces=replaces,
    )


def block(
    *,
    store: Store,
    identifier: str,
    endpoint: str | None,
    for_seconds: int,
    reason: str,
    actor: str,
) -> BlockResult:
    plan = block_preview(
        store=store,
        identifier=identifier,
        endpoint=endpoint,
        for_seconds=for_seconds,
        reason=reason,
    )
    row = store.call(
        "dbops_ratelimit_block",
        {
            "p_identifier": parse_identifier(identifier),
            "p_endpoint": plan.endpoint,
            "p_for_seconds": for_seconds,
            "p_reason": plan.reason,
            "p_actor": actor,
        },
    )[0]
    return BlockResult.model_validate({**plan.model_dump(), "expires_at": row["expires_at"]})


def unblock_preview(*, store: Store, identifier: str, endpoint: str | None) -> UnblockResult:
    identifier = parse_identifier(identifier)
    endpoint = normalize_endpoint(store=store, endpoint=endpoint)
    blocks = [
        b
        for b in active_blocks(store=store, identifier=identifier)
        if endpoint is None or b.endpoint == endpoint
    ]
    shown = mask_identifier(identifier)
    if not blocks:
        where = f" on {endpoint}" if endpoint else ""
        raise NotFoundError(
            f"no active block for {shown}{where}", hint="see `dbops ratelimit status`"
        )
    return UnblockResult(identifier=shown, endpoint=endpoint, blocks=blocks)


def unblock(*, store: Store, identifier: str, endpoint: str | None, actor: str) -> UnblockResult:
    plan = unblock_preview(store=store, identifier=identifier, endpoint=endpoint)
    row = store.call(
        "dbops_ratelimit_unblock",
        {
            "p_identifier": parse_identifier(identifier),
            "p_endpoint": plan.endpoint,
            "p_actor": actor,
        },
    )[0]
    return plan.model_copy(update={"lifted": int(row["lifted"])})


# --------------------------------------------------------------------------- cleanup
def cleanup_preview(*, store: Store, older_than_seconds: int) -> CleanupResult:
    row = store.call(
        "dbops_ratelimit_cleanup_preview", {"p_older_than_seconds": older_than_seconds}
    )[0]
    horizon = int(row["horizon_seconds"])
    if older_than_seconds < horizon:
        raise UsageError(
            f"--older-than {older_than_seconds}s is shorter than the longest rate-limit window "
            f"({horizon}s): that would delete requests that still count",
            hint=f"use at least {horizon}s",
        )
    return CleanupResult(
        cutoff=row["cutoff"],
        older_than_seconds=older_than_seconds,
        requests=int(row["requests"]),
        denial_rows=int(row["denial_rows"]),
    )


def cleanup(
    *,
    store: Store,
    plan: CleanupResult,
    batch_size: int = DEFAULT_BATCH,
    checkpoint: Checkpoint | None = None,
) -> CleanupResult:
    """Delete request rows and denial counters older than `plan.cutoff`, one batch per call.

    Each batch is its own statement (and transaction): a crash between batches leaves only
    rows older than the cutoff deleted, and re-running finishes the job. A failure or Ctrl-C
    carries what the committed batches deleted (`partial_result`).
    """
    deleted_requests = deleted_denials = batches = 0

    def result() -> CleanupResult:
        return plan.model_copy(
            update={
                "deleted_requests": deleted_requests,
                "deleted_denials": deleted_denials,
                "batches": batches,
            }
        )

    with partial_result_on_failure(result):
        while True:
            row = store.call(
                "dbops_ratelimit_cleanup_batch", {"p_cutoff": plan.cutoff, "p_batch": batch_size}
            )[0]
            got_requests, got_denials = int(row["deleted_requests"]), int(row["deleted_denials"])
            batches += 1
            deleted_requests += got_requests
            deleted_denials += got_denials
            if checkpoint is not None:
                checkpoint("after_batch")  # committed: a test may kill the run here
            if got_requests < batch_size and got_denials < batch_size:
                break
    return result()
