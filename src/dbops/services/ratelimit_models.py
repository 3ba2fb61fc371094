"""`dbops ratelimit` result models (the `-o json` shapes); the logic is in ratelimit.py,
which re-exports them. Identifiers in every model are masked for API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class RateLimitRule(BaseModel):
    """One row of `dbops ratelimit list -o json`: the effective rule, override applied."""

    name: str
    endpoint_pattern: str
    identifier_kind: str
    precedence: int
    enabled: bool
    limit: int
    window_seconds: int
    base_limit: int
    base_window_seconds: int
    override_limit: int | None = None
    override_window_seconds: int | None = None
    override_expires_at: datetime | None = None
    override_reason: str | None = None
    override_created_by: str | None = None
    updated_by: str
    updated_at: datetime


class RuleChange(BaseModel):
    """`dbops ratelimit set|enable|disable -o json`: the plan (`plan_rule`, `plan_toggle`:
    `dry_run` true, no `after`) or, once `apply_change` ran, the rule `after` it."""

    name: str
    change: Literal["base", "override", "enable", "disable"]
    dry_run: bool
    before: RateLimitRule
    after: RateLimitRule | None = None
    limit: int | None = None
    window_seconds: int | None = None
    for_seconds: int | None = None
    reason: str | None = None

    def counts(self) -> dict[str, int]:
        """The action-log counts."""
        if self.after is None:
            return {"rules_changed": 0}
        if self.change in ("enable", "disable"):
            return {"rules_changed": int(self.before.enabled != self.after.enabled)}
        return {"rules_changed": 1, "overrides_created": int(self.change == "override")}


class TopEntry(BaseModel):
    """One row of `dbops ratelimit top -o json` (identifier masked for API keys)."""

    identifier: str
    endpoint: str
    rule: str | None = None
    requests: int
    allowed: int
    denied: int
    window_requests: int
    limit: int | None = None
    window_seconds: int | None = None
    percent_of_limit: float | None = None
    throttled: bool
    blocked: bool


class IdentifierStatus(BaseModel):
    """One row of `dbops ratelimit status -o json`: one identifier on one endpoint."""

    identifier: str
    endpoint: str | None = None
    rule: str | None = None
    limit: int | None = None
    window_seconds: int | None = None
    used: int
    remaining: int | None = None
    reset_at: datetime | None = None
    allowed: bool
    retry_after_seconds: int | None = None
    blocked: bool
    block_reason: str | None = None
    block_expires_at: datetime | None = None


class HitResult(BaseModel):
    """What `dbops_rate_limit_hit` answers (the API turns it into headers)."""

    allowed: bool
    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None
    retry_after_seconds: int | None = None
    rule_name: str | None = None
    blocked: bool
    window_seconds: int | None = None


class ResetResult(BaseModel):
    """`dbops ratelimit reset -o json`."""

    identifier: str
    endpoint: str | None = None
    cutoff: datetime
    requests: int
    endpoints: int
    deleted: int = 0
    batches: int = 0
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        """The action-log counts (also of a partial result: a failed or interrupted run)."""
        return {"requests_in_window": self.requests, "deleted": self.deleted}


class Block(BaseModel):
    identifier: str
    endpoint: str | None = None
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime


class BlockResult(BaseModel):
    """`dbops ratelimit block -o json`."""

    identifier: str
    endpoint: str | None = None
    reason: str
    for_seconds: int
    expires_at: datetime | None = None
    replaces: list[Block]
    dry_run: bool = False


class UnblockResult(BaseModel):
    """`dbops ratelimit unblock -o json`."""

    identifier: str
    endpoint: str | None = None
    blocks: list[Block]
    lifted: int = 0
    dry_run: bool = False


class CleanupResult(BaseModel):
    """`dbops ratelimit cleanup -o json`."""

    cutoff: datetime
    older_than_seconds: int
    requests: int
    denial_rows: int
    deleted_requests: int = 0
    deleted_denials: int = 0
    batches: int = 0
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        """The action-log counts (also of a partial result: `deleted` is both kinds)."""
        return {
            "requests": self.requests,
            "deleted": self.deleted_requests + self.deleted_denials,
            "deleted_requests": self.deleted_requests,
            "deleted_denials": self.deleted_denials,
            "batches": self.batches,
        }


class Ratio429(BaseModel):
    """The 429 ratio over a window (for the audit): denied / (allowed + denied)."""

    since_seconds: int
    requests: int
    allowed: int
    denied: int
    ratio: float
    percent: float
