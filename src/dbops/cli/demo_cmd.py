"""`dbops demo`: start the sandbox, seed an incident, show what is wrong."""

from __future__ import annotations

from typing import Any

from dbops.cli.output import Output, OutputOpt, message, out_console, render


def _table(report: Any, audit_model: Any) -> None:
    from rich.markup import escape

    base = out_console()

    class _Console:  # never wrap lines mid-sentence (CI logs, narrow terminals)
        @staticmethod
        def print(*args: Any) -> None:
            base.print(*args, soft_wrap=True)

    console = _Console()
    up, seeded, s = report.sandbox, report.seeded, report.summary
    state = "already running" if up.already_running else f"started {', '.join(up.started)}"
    console.print(f"[bold]Sandbox[/]: {escape(state)} ({escape(up.status.folder)})")
    console.print(
        f"[bold]Seeded[/] scenario '{seeded.scenario}': {seeded.jobs} jobs, "
        f"{seeded.workers} workers, {seeded.main_queue_messages} queued + "
        f"{seeded.dlq_messages} dead-lettered messages, "
        f"{seeded.rate_limit_requests} rate-limit requests ({seeded.elapsed_seconds:.1f} s)"
    )
    console.print()
    if audit_model is not None:
        from dbops.cli.audit_cmd import render_report

        render_report(audit_model)
    else:  # the audit failed (said on stderr): the demo's own summary instead
        console.print("[bold]What is wrong[/]")
        console.print(
            f"  queues: main {s.main_queue_depth} visible / {s.main_queue_in_flight} in flight,"
            f" DLQ {s.dlq_depth}"
        )
        console.print(
            f"  jobs: {s.jobs_total} total, {s.stale_jobs} stale, "
            f"{s.orphaned_pending_jobs} orphaned; workers: {s.live_workers} live, "
            f"{s.dead_workers_holding_jobs} dead holding a job"
        )
        for finding in s.findings or ["nothing: the backend looks healthy"]:
            console.print(f"  [red]x[/] {escape(finding)}")
    console.print()
    console.print("[bold]Try next[/]")
    for command in s.next_commands:
        console.print(f"  {escape(command)}")


def demo(output: OutputOpt = Output.table) -> None:
    """Start the sandbox, seed an incident and show what is wrong.

    Starts the embedded sandbox if needed (`dbops sandbox up`), loads the `incident`
    scenario (`dbops sandbox seed`), then summarises queue depths, stale jobs, dead
    workers, orphans and rate-limit offenders, with the commands to try next.

    Example:
        dbops demo
        dbops demo -o json | jq .summary
    """
    from dbops.cli.sandbox_cmd import ready

    ready()
    from dbops.sandbox.demo import run_demo

    if output is Output.table:
        message("starting the sandbox and seeding an incident ...")
    from dbops.services.audit import run_audit

    report, audit_model = run_demo(scenario="incident", audit_hook=run_audit)
    if report.audit_error:
        message(f"audit unavailable ({report.audit_error}); showing the demo's own summary")
    if output is Output.table:
        _table(report, audit_model)
        return
    render(report, output)
