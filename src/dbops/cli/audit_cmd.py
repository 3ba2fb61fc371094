"""`dbops audit` (the health report; the group's default action), `dbops audit history`,
`dbops audit show` (a stored run's report) and `dbops audit diff` (two stored runs)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli.charts import sparkline
from dbops.cli.output import Output, OutputOpt, message, render, view_console, write

if TYPE_CHECKING:
    from dbops.services.audit import AuditDiff, AuditReport, AuditRun, PreviousRun

app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
)


class FailOn(StrEnum):
    warning = "warning"
    critical = "critical"


_SEVERITY_STYLE = {
    "ok": "green",
    "warning": "yellow",
    "critical": "bold red",
    "unknown": "magenta",
    "skipped": "dim",
}
_VERDICT_STYLE = {
    "OK": "bold green",
    "WARNING": "bold yellow",
    "CRITICAL": "bold red",
    "UNKNOWN": "bold magenta",
}
_MD_MARK = {
    "ok": "🟢 ok",
    "warning": "🟡 warning",
    "critical": "🔴 critical",
    "unknown": "🟣 unknown",
    "skipped": "⚪ skipped",
}
_AREA_TITLE = {
    "database": "Database",
    "jobs": "Jobs",
    "workers": "Workers",
    "queue": "Queues",
    "ratelimit": "Rate limits",
}
_RANK = {"critical": 3, "warning": 2, "unknown": 1, "ok": 0, "skipped": -1}
CHECK_COLUMNS = [
    "id",
    "area",
    "severity",
    "observed",
    "threshold",
    "explanation",
    "remedy",
    "weight",
    "elapsed_ms",
]


def _observed(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _when(report: AuditReport) -> str:
    return report.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _grouped(report: AuditReport) -> list[tuple[str, list[Any]]]:
    from dbops.services.audit import AREAS

    groups = []
    for area in AREAS:
        items = [c for c in report.checks if c.area == area]
        if items:
            groups.append((area, items))
    return groups


def _counts(report: AuditReport) -> str:
    counts: dict[str, int] = {}
    for c in report.checks:
        counts[c.severity] = counts.get(c.severity, 0) + 1
    order = ["critical", "warning", "unknown", "ok", "skipped"]
    return ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))


def _table(report: AuditReport) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    console = view_console()
    verdict_style = _VERDICT_STYLE[report.verdict]
    run = f"run {report.run_uuid[:8]}, " if report.run_uuid else ""
    console.print(
        f"[bold]dbops audit[/]  [{verdict_style}]{report.verdict}[/]  "
        f"score [bold]{report.score}[/]/100  [dim]{run}{_when(report)}, "
        f"{report.duration_ms:.0f} ms; {escape(_counts(report))}[/]"
    )
    if report.previous is not None:
        p = report.previous
        prev_run = f" (run {p.run_uuid[:8]})" if p.run_uuid else ""
        console.print(
            f"[dim]previous run: {p.verdict} {p.score}/100 at "
            f"{p.generated_at.strftime('%Y-%m-%d %H:%M:%S UTC')}{prev_run}[/]"
        )
    for area, items in _grouped(report):
        grid = Table(
            title=_AREA_TITLE.get(area, area),
            title_justify="left",
            title_style="bold",
            header_style="bold",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            expand=console.is_terminal,
        )
        grid.add_column("severity", no_wrap=True)
        grid.add_column("check", overflow="fold")
        grid.add_column("observed", overflow="fold", justify="right")
        grid.add_column("explanation", overflow="fold", ratio=1)
        for c in items:
            style = _SEVERITY_STYLE[c.severity]
            text = escape(c.explanation)
            if c.threshold and c.severity != "skipped":
                text += f"\n[dim]{escape(c.threshold)}[/]"
            if c.severity in ("warning", "critical", "unknown") and c.remedy:
                text += f"\n[cyan]-> {escape(c.remedy)}[/]"
            grid.add_row(
                f"[{style}]{c.severity.upper()}[/]",
                escape(c.id),
                escape(_observed(c.observed)),
                text,
            )
        console.print(grid)
    todo = sorted(
        (c for c in report.checks if c.severity in ("critical", "warning", "unknown") and c.remedy),
        key=lambda c: -_RANK[c.severity],
    )
    if todo:
        console.print("[bold]Next steps[/]")
        for c in todo:
            console.print(
                f"  [{_SEVERITY_STYLE[c.severity]}]{c.severity.upper():8}[/] "
                f"{escape(c.id)}: [cyan]{escape(c.remedy or '')}[/]",
                soft_wrap=True,
            )
    if report.previous is not None:
        if report.changes:
            console.print("[bold]Changed since the previous run[/]")
            for ch in report.changes:
                moved = (
                    f"observed {_observed(ch.observed_before)} -> {_observed(ch.observed_after)}"
                )
                if ch.kind == "value":
                    console.print(
                        f"  {escape(ch.id)}: [{_SEVERITY_STYLE[ch.after]}]{ch.after}[/], "
                        f"{escape(moved)}"
                    )
                else:
                    console.print(
                        f"  {escape(ch.id)}: [{_SEVERITY_STYLE[ch.before]}]{ch.before}[/] -> "
                        f"[{_SEVERITY_STYLE[ch.after]}]{ch.after}[/] [dim]({escape(moved)})[/]"
                    )
        else:
            console.print("[dim]No check changed since the previous run.[/]")


def _md_cell(value: Any) -> str:
    text = _observed(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: AuditReport) -> str:
    """The report as GitHub-flavoured Markdown (for `$GITHUB_STEP_SUMMARY`)."""
    lines = [
        f"## dbops audit: {report.verdict} (score {report.score}/100)",
        "",
        f"Generated {_when(report)} in {report.duration_ms:.0f} ms: {_counts(report)}.",
    ]
    if report.previous is not None:
        p = report.previous
        lines.append(
            f"Previous run: {p.verdict} {p.score}/100 at "
            f"{p.generated_at.strftime('%Y-%m-%d %H:%M:%S UTC')}."
        )
    for area, items in _grouped(report):
        lines += [
            "",
            f"### {_AREA_TITLE.get(area, area)}",
            "",
            "| Severity | Check | Observed | Threshold | Explanation | Remedy |",
            "|---|---|---|---|---|---|",
        ]
        for c in items:
            remedy = f"`{c.remedy}`" if c.remedy and c.severity != "ok" else ""
            if c.severity == "skipped":
                remedy = ""
            lines.append(
                f"| {_MD_MARK[c.severity]} | `{c.id}` {_md_cell(c.title)} | "
                f"{_md_cell(c.observed)} | {_md_cell(c.threshold)} | "
                f"{_md_cell(c.explanation)} | {remedy} |"
            )
    if report.previous is not None:
        lines += ["", "### Changed since the previous run", ""]
        if report.changes:
            lines += ["| Check | Before | After |", "|---|---|---|"]
            lines += [
                f"| `{ch.id}` {_md_cell(ch.title)} | {_MD_MARK[ch.before]} "
                f"({_md_cell(ch.observed_before)}) | {_MD_MARK[ch.after]} "
                f"({_md_cell(ch.observed_after)}) |"
                for ch in report.changes
            ]
        else:
            lines.append("No check changed.")
    return "\n".join(lines) + "\n"


def render_report(report: AuditReport, output: Output | str = Output.table) -> None:
    """Print an audit report in any output format (also used by `dbops demo`)."""
    fmt = Output(output)
    if fmt is Output.json:
        write(json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
    elif fmt is Output.jsonl:
        render(report.checks, Output.jsonl)
    elif fmt is Output.csv:
        render(report.checks, Output.csv, columns=CHECK_COLUMNS)
    elif fmt is Output.md:
        write(markdown(report))
    else:
        _table(report)


@app.callback()
def audit(
    ctx: typer.Context,
    output: OutputOpt = Output.table,
    fail_on: Annotated[
        FailOn,
        typer.Option(
            "--fail-on",
            case_sensitive=False,
            help="Lowest verdict that exits non-zero: warning (exit = Nagios code of the "
            "verdict) or critical (WARNING exits 0). UNKNOWN always exits 3.",
        ),
    ] = FailOn.warning,
    fail_under: Annotated[
        int | None,
        typer.Option(
            "--fail-under",
            min=0,
            max=100,
            metavar="SCORE",
            help="Also exit 1 when the score is below SCORE (0-100).",
        ),
    ] = None,
    check: Annotated[
        list[str] | None,
        typer.Option("--check", metavar="ID", help="Only this check or prefix (repeatable)."),
    ] = None,
    skip: Annotated[
        list[str] | None,
        typer.Option("--skip", metavar="ID", help="Leave out this check or prefix (repeatable)."),
    ] = None,
    no_save: Annotated[
        bool, typer.Option("--no-save", help="Do not store this run in dbops_audit_runs.")
    ] = False,
) -> None:
    """Score the backend's health (read-only) and exit with its verdict.

    Exit codes (Nagios): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Every database check runs
    in a READ ONLY transaction and only read SQS calls are made; the run is then stored
    (unless --no-save) so the next one can show what changed. See docs/audit.md.

    Example:
        dbops audit --profile sandbox
        dbops audit -o md --fail-on critical >> "$GITHUB_STEP_SUMMARY"
        dbops audit --check queue --skip queue.config -o json
    """
    if ctx.invoked_subcommand is not None:
        return
    from dbops.services.audit import exit_code_for, run_audit

    settings = _deps.settings()
    store = _deps.store() if settings.effective_transport else None
    queues = _deps.queues() if (settings.sqs_queue_url or settings.sqs_dlq_url) else None
    report = run_audit(
        store=store,
        queues=queues,
        settings=settings,
        checks=check or None,
        skip=skip or None,
        save=not no_save,
        operator=_deps.operator(),
    )
    render_report(report, output)
    if report.save_error and not no_save:
        message(report.save_error, style="yellow")
    raise typer.Exit(exit_code_for(report, fail_on=fail_on.value, fail_under=fail_under))


def _history_table(runs: list[AuditRun]) -> None:
    from rich import box
    from rich.table import Table

    if not runs:
        message("no stored audit runs (run `dbops audit`)")
        return
    grid = Table(
        title="Audit runs (newest first)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for name in ("run", "generated (UTC)", "score", "verdict", "crit", "warn", "unk", "ok", "ms"):
        grid.add_column(name, no_wrap=True, justify="left" if name[0] in "gvr" else "right")
    for r in runs:
        grid.add_row(
            r.run_uuid[:8] if r.run_uuid else str(r.id),
            r.generated_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(r.score),
            f"[{_VERDICT_STYLE[r.verdict]}]{r.verdict}[/]",
            str(r.critical),
            str(r.warning),
            str(r.unknown),
            str(r.ok),
            f"{r.duration_ms:.0f}" if r.duration_ms is not None else "",
        )
    console = view_console()
    console.print(grid)
    if len(runs) > 1:
        oldest_first = runs[::-1]
        console.print(
            f"score trend (oldest to newest): {sparkline([r.score for r in oldest_first])}  "
            f"{oldest_first[0].score} -> {oldest_first[-1].score}",
            markup=False,
            highlight=False,
        )


@app.command("history")
def history_cmd(
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=10000, help="How many runs to show.")
    ] = 20,
    output: OutputOpt = Output.table,
) -> None:
    """Stored audit runs, newest first: score and verdict over time.

    The table shows each run id's first 8 characters (a valid short id for `dbops audit
    show`); -o json gives the whole run id (`run_uuid`).

    Example:
        dbops audit history --limit 10
    """
    from dbops.services.audit import history

    runs = history(store=_deps.store(), limit=limit)
    render(runs, output, table=_history_table, empty="no stored audit runs")


@app.command("show")
def show_cmd(
    run: Annotated[
        str,
        typer.Argument(
            metavar="RUN",
            help="A run id from `dbops audit history`, a unique prefix of at least 6 hex "
            "characters of one, or `latest`.",
        ),
    ],
    output: OutputOpt = Output.table,
) -> None:
    """Print a stored audit run's full report, as `dbops audit` printed it.

    Same outputs as `dbops audit` (-o table/json/jsonl/csv/md); `previous` and the changes
    are against the run before it with the same --check/--skip selection. Exits 0 whatever
    the stored verdict (2: malformed or ambiguous id, 4: no such run).

    Example:
        dbops audit show latest
        dbops audit show 4443bbfa -o md
    """
    from dbops.services.audit import show_run

    render_report(show_run(store=_deps.store(), run=run), output)


CHANGE_COLUMNS = ["id", "kind", "before", "after", "observed_before", "observed_after", "title"]


def _run_line(label: str, run: PreviousRun) -> str:
    name = run.run_uuid[:8] if run.run_uuid else str(run.id)
    return (
        f"{label}: run {name}  {run.verdict} {run.score}/100  "
        f"{run.generated_at.strftime('%Y-%m-%d %H:%M:%S UTC')}"
    )


def _diff_table(diff: AuditDiff) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    console = view_console()
    console.print(escape(_run_line("before", diff.before)), highlight=False)
    console.print(escape(_run_line("after ", diff.after)), highlight=False)
    if diff.changes:
        grid = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
        for name in ("check", "before", "after", "observed"):
            grid.add_column(name, overflow="fold")
        for ch in diff.changes:
            grid.add_row(
                escape(ch.id),
                f"[{_SEVERITY_STYLE[ch.before]}]{ch.before}[/]",
                f"[{_SEVERITY_STYLE[ch.after]}]{ch.after}[/]",
                escape(f"{_observed(ch.observed_before)} -> {_observed(ch.observed_after)}"),
            )
        console.print(grid)
    else:
        console.print("[dim]No check changed between the two runs.[/]")
    for label, ids in (("only in before", diff.only_before), ("only in after", diff.only_after)):
        if ids:
            console.print(f"[dim]{label}: {escape(', '.join(ids))}[/]")


@app.command("diff")
def diff_cmd(
    before: Annotated[
        str,
        typer.Argument(metavar="A", help="The earlier run: a run id, a unique prefix or `latest`."),
    ],
    after: Annotated[
        str,
        typer.Argument(metavar="B", help="The later run: a run id, a unique prefix or `latest`."),
    ],
    output: OutputOpt = Output.table,
) -> None:
    """Compare two stored audit runs: the checks whose severity changed from A to B.

    Also lists numeric observations that moved notably at the same severity (`kind`
    value, as `dbops audit` reports against its previous run) and checks only one run
    has. -o json gives the whole comparison, -o jsonl/csv/md the changes. Exits 0.

    Example:
        dbops audit diff 0c9e6a51 latest
    """
    from dbops.services.audit import diff_runs

    diff = diff_runs(store=_deps.store(), before=before, after=after)
    if Output(output) is Output.json:
        render(diff, Output.json)
    else:
        render(diff.changes, output, columns=CHANGE_COLUMNS, table=lambda _: _diff_table(diff))
