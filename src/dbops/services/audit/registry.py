"""Every audit check, in report order, assembled from the area modules, and the
`--check`/`--skip` selection."""

from __future__ import annotations

from collections.abc import Sequence

from dbops.errors import UsageError
from dbops.services.audit import db, jobs, queues, ratelimit, workers
from dbops.services.audit.base import CheckSpec

CHECKS: tuple[CheckSpec, ...] = (
    *db.CHECKS,
    *jobs.CHECKS,
    *workers.CHECKS,
    *queues.CHECKS,
    *ratelimit.CHECKS,
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
