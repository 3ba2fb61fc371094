"""`dbops demo`: start the sandbox if needed, seed the incident, summarise what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from dbops.errors import DbopsError
from dbops.sandbox.runtime import UpResult
from dbops.sandbox.seed import Scenario, SeedResult
from dbops.services.demo import DemoSummary

# (store, queues, settings) -> an audit report (a pydantic model), or None.
AuditHook = Callable[..., Any]


class DemoReport(BaseModel):
    """`dbops demo -o json`."""

    sandbox: UpResult
    seeded: SeedResult
    summary: DemoSummary
    audit: dict[str, Any] | None = None
    audit_error: str | None = None


def run_demo(
    *, scenario: Scenario = "incident", audit_hook: AuditHook | None = None
) -> tuple[DemoReport, Any]:
    """Returns the report and, when `audit_hook` gave one, the audit report model itself."""
    from dbops.sandbox import runtime, seed
    from dbops.services import demo

    started = runtime.up()
    seeded = seed.run(scenario)
    audit_model: Any = None
    with runtime.connected() as conn:
        assert conn.state.main_queue_url and conn.state.dlq_url
        summary = demo.summarize(
            store=conn.store,
            queues=conn.queues,
            main_queue_url=conn.state.main_queue_url,
            dlq_url=conn.state.dlq_url,
        )
        audit_error = None
        if audit_hook is not None:
            try:
                audit_model = audit_hook(
                    store=conn.store,
                    queues=conn.queues,
                    settings=runtime.sandbox_settings(conn.state),
                )
            except Exception as exc:  # the demo still has its own summary to show
                text = exc.one_line() if isinstance(exc, DbopsError) else str(exc)
                audit_error = f"{type(exc).__name__}: {' '.join(text.split())}"
                audit_model = None
    audit = audit_model.model_dump(mode="json") if isinstance(audit_model, BaseModel) else None
    report = DemoReport(
        sandbox=started, seeded=seeded, summary=summary, audit=audit, audit_error=audit_error
    )
    return report, audit_model if audit is not None else None
