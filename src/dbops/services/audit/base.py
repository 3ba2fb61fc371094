"""What every check module shares: the evaluation context, an outcome, the check spec and
the `@check(...)` decorator that records a spec beside its function, and text helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbops.services.audit.models import AREA_OF_PREFIX, Severity
from dbops.settings import AuditThresholds, Settings


@dataclass
class Observation:
    state: str  # observed | skipped | unknown
    data: dict[str, Any]
    reason: str | None = None
    elapsed_ms: float | None = None


@dataclass
class QueueState:
    label: str
    url: str | None = None
    attrs: dict[str, str] | None = None
    error: str | None = None
    not_configured: str | None = None
    elapsed_ms: float | None = None

    def number(self, name: str) -> int | None:
        if self.attrs is None:
            return None
        raw = self.attrs.get(name)
        try:
            return int(str(raw))
        except (TypeError, ValueError):
            return None

    @property
    def name(self) -> str | None:
        return self.url.rstrip("/").rsplit("/", 1)[-1] if self.url else None


@dataclass
class Outcome:
    severity: Severity
    explanation: str
    observed: int | float | str | None = None
    threshold: str | None = None
    remedy: str | None = None  # None: the spec's default remedy
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    settings: Settings
    t: AuditThresholds
    stale_seconds: int
    dead_seconds: int
    dlq_warning: int
    db_configured: bool = False
    db_error: str | None = None
    db_latency_ms: float | None = None
    observe_error: str | None = None
    obs: dict[str, Observation] = field(default_factory=dict)
    applied_fallback: dict[str, str] | None = None
    main: QueueState | None = None
    dlq: QueueState | None = None
    oldest_age: float | None = None
    oldest_age_ms: float | None = None
    previous: dict[str, Any] | None = None
    previous_dlq: dict[str, Any] | None = None
    selection: dict[str, list[str]] = field(default_factory=dict)

    def data(self, obs_id: str) -> dict[str, Any]:
        return self.obs[obs_id].data


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    weight: int
    remedy: str
    evaluate: Callable[[Context], Outcome]
    db: tuple[str, ...] = ()
    main_queue: bool = False
    dlq: bool = False
    special: bool = False  # does its own gating

    @property
    def area(self) -> str:
        return AREA_OF_PREFIX[self.id.split(".", 1)[0]]


def plural(n: int | float, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def age_text(seconds: float | None) -> str:
    from dbops.durations import format_duration

    return format_duration(seconds) if seconds is not None else "n/a"


def short(ids: Any, n: int = 3) -> str:
    items = [str(i)[:8] for i in list(ids or [])[:n]]
    return ", ".join(items)


def count_level(count: int, warning_at: int, critical_at: int | None) -> Severity:
    if critical_at is not None and count >= critical_at:
        return "critical"
    if count >= warning_at:
        return "warning"
    return "ok"


Evaluator = Callable[[Context], Outcome]


def registrar(specs: list[CheckSpec]) -> Callable[..., Callable[[Evaluator], Evaluator]]:
    """A `@check(id, title, weight, remedy, ...)` decorator appending to `specs`.

    Each area module keeps its own list; the registry concatenates them in area order.
    """

    def check(
        check_id: str,
        title: str,
        weight: int,
        remedy: str,
        *,
        db: tuple[str, ...] = (),
        main_queue: bool = False,
        dlq: bool = False,
        special: bool = False,
    ) -> Callable[[Evaluator], Evaluator]:
        def add(evaluate: Evaluator) -> Evaluator:
            specs.append(
                CheckSpec(
                    check_id,
                    title,
                    weight,
                    remedy,
                    evaluate,
                    db=db,
                    main_queue=main_queue,
                    dlq=dlq,
                    special=special,
                )
            )
            return evaluate

        return add

    return check
