"""`dbops doctor`."""

from __future__ import annotations

import typer

from dbops.cli import _deps
from dbops.cli._completion import remember_queues
from dbops.cli.output import Output, OutputOpt, out_console, render
from dbops.services.doctor import DoctorReport, run_checks

_MARK = {"pass": "[green]PASS[/]", "fail": "[red]FAIL[/]", "skip": "[yellow]SKIP[/]"}


def _table(report: DoctorReport) -> None:
    from rich.markup import escape

    console = out_console()
    for check in report.checks:
        line = f"{_MARK[check.status]}  {escape(check.name)}: {escape(check.detail)}"
        if check.hint and check.status == "fail":
            line += f"  [dim]-> {escape(check.hint)}[/]"
        console.print(line, soft_wrap=True)


def doctor(output: OutputOpt = Output.table) -> None:
    """Check configuration, database, migrations, queues and AWS identity, one line each.

    Exit 0 when all pass, 3 when configuration is missing, 5 when a remote check fails.

    Example:
        dbops doctor --profile sandbox
    """
    current = _deps.settings()
    report = run_checks(settings=current, store_factory=_deps.store, queues_factory=_deps.queues)
    remember_queues(u for u in (current.sqs_queue_url, current.sqs_dlq_url) if u)
    render(report, output, table=_table)
    if report.exit_code:
        raise typer.Exit(report.exit_code)
