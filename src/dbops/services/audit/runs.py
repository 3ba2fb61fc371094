"""Stored audit runs: what changed between two runs, and runs read back by run id
(`audit history`, `audit show`, `audit diff`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from dbops.errors import NotFoundError, UsageError
from dbops.ports import Store
from dbops.services.audit.models import (
    RANK,
    VALUE_CHANGE_EXEMPT,
    VALUE_CHANGE_MIN,
    VALUE_CHANGE_RATIO,
    VERDICT_EXIT,
    AuditCheck,
    AuditDiff,
    AuditReport,
    AuditRun,
    CheckChange,
    PreviousRun,
)
from dbops.services.ids import KIND_LABEL, parse_id, resolve_ids


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def moved_notably(before: Any, after: Any) -> bool:
    """True when a numeric observation changed by at least VALUE_CHANGE_MIN and by at least
    VALUE_CHANGE_RATIO of the previous value (either direction); False for non-numbers."""
    b, a = _number(before), _number(after)
    if b is None or a is None:
        return False
    delta = abs(a - b)
    return delta >= VALUE_CHANGE_MIN and delta >= VALUE_CHANGE_RATIO * abs(b)


def changes_since(
    checks: Sequence[AuditCheck], previous: dict[str, Any] | None
) -> list[CheckChange]:
    """Checks in both runs whose severity changed, or whose observed value moved notably
    at the same severity (see `CheckChange`)."""
    if not previous:
        return []
    before = {
        str(c.get("id")): c
        for c in previous.get("checks") or []
        if isinstance(c, dict) and c.get("severity") in RANK
    }
    changes = []
    for c in checks:
        old = before.get(c.id)
        if old is None:
            continue
        old_observed = old.get("observed")
        if not isinstance(old_observed, int | float | str) or isinstance(old_observed, bool):
            old_observed = None
        if old["severity"] != c.severity:
            kind = "severity"
        elif (
            c.severity != "skipped"
            and c.id not in VALUE_CHANGE_EXEMPT
            and moved_notably(old_observed, c.observed)
        ):
            kind = "value"
        else:
            continue
        changes.append(
            CheckChange.model_validate(
                {
                    "id": c.id,
                    "title": c.title,
                    "before": old["severity"],
                    "after": c.severity,
                    "kind": kind,
                    "observed_before": old_observed,
                    "observed_after": c.observed,
                }
            )
        )
    return changes


def history(*, store: Store, limit: int = 20) -> list[AuditRun]:
    """Stored runs, newest first."""
    if limit < 1:
        raise UsageError(f"invalid --limit {limit}: must be at least 1")
    try:
        rows = store.call("dbops_audit_run_history", {"p_limit": limit})
    except NotFoundError:
        return []
    return [AuditRun.model_validate({**r, "run_uuid": uuid_text(r.get("run_id"))}) for r in rows]


def uuid_text(value: Any) -> str | None:
    return str(UUID(str(value))) if value is not None else None


def _jsonb(value: Any) -> Any:
    """jsonb as Python data (some transports hand it back as text)."""
    return json.loads(value) if isinstance(value, str) else value


def previous_run(data: dict[str, Any] | None) -> PreviousRun | None:
    """A stored run's summary (audit.previous, or `previous` of dbops_audit_run)."""
    if not data:
        return None
    try:
        return PreviousRun.model_validate({**data, "run_uuid": uuid_text(data.get("run_id"))})
    except ValueError:
        return None


def resolve_run(*, store: Store, run: str) -> str | None:
    """The whole run id (UUID) that `run` names: a run id, a unique prefix of at least 6
    hex digits of one (exit 2 when malformed or ambiguous, 4 when nothing matches), or
    None for `latest`."""
    text = str(run).strip()
    if text.lower() == "latest":
        return None
    ref = parse_id(text, label=KIND_LABEL["audit_run"])
    if ref.full:
        return ref.value
    return resolve_ids(store=store, kind="audit_run", values=[text])[0]


def show_run(*, store: Store, run: str) -> AuditReport:
    """A stored run's full report (`dbops audit show RUN`): `run` is a run id, a unique
    prefix of one or `latest`. `previous` and `changes` are those against the run before
    it with the same selection, as the run itself saw them (unless that one was pruned)."""
    run_uuid = resolve_run(store=store, run=run)
    rows = store.call("dbops_audit_run", {"p_run_id": run_uuid})
    if not rows:
        raise NotFoundError(f"not found: no audit run {run!r}")
    return _stored_report(rows[0])


def _stored_report(row: dict[str, Any]) -> AuditReport:
    checks: list[AuditCheck] = []
    for item in _jsonb(row.get("checks")) or []:
        try:
            checks.append(AuditCheck.model_validate(item))
        except ValueError:
            continue  # an entry of a shape this version does not read
    previous_data = _jsonb(row.get("previous"))
    previous_data = previous_data if isinstance(previous_data, dict) else None
    verdict = str(row["verdict"])
    return AuditReport.model_validate(
        {
            "score": row["score"],
            "verdict": verdict,
            "exit_code": VERDICT_EXIT.get(verdict, 3),
            "generated_at": row["generated_at"],
            "duration_ms": float(row.get("duration_ms") or 0.0),
            "checks": checks,
            "previous": previous_run(previous_data),
            "changes": changes_since(checks, previous_data),
            "saved": True,
            "run_id": row.get("id"),
            "run_uuid": uuid_text(row.get("run_id")),
        }
    )


def diff_runs(*, store: Store, before: str, after: str) -> AuditDiff:
    """What changed from stored run `before` to stored run `after` (`dbops audit diff`);
    each is a run id, a unique prefix of one or `latest`. Both are parsed before either is
    looked up, so a malformed one is a usage error (exit 2) whatever the other is."""
    for given in (before, after):
        if str(given).strip().lower() != "latest":
            parse_id(str(given).strip(), label=KIND_LABEL["audit_run"])
    old = show_run(store=store, run=before)
    new = show_run(store=store, run=after)
    old_ids = [c.id for c in old.checks]
    new_ids = [c.id for c in new.checks]
    return AuditDiff(
        before=_summary(old),
        after=_summary(new),
        changes=changes_since(
            new.checks, {"checks": [c.model_dump(mode="json") for c in old.checks]}
        ),
        only_before=[i for i in old_ids if i not in set(new_ids)],
        only_after=[i for i in new_ids if i not in set(old_ids)],
    )


def _summary(report: AuditReport) -> PreviousRun:
    return PreviousRun(
        id=report.run_id,
        run_uuid=report.run_uuid,
        score=report.score,
        verdict=report.verdict,
        generated_at=report.generated_at,
    )
