"""`dbops runbook`: list, read and run the incident runbooks step by step."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dbops.cli import _deps
from dbops.cli._common import is_interactive
from dbops.cli.output import Output, OutputOpt, message, out_console, render, write
from dbops.services import runbook as runbooks

app = typer.Typer(
    help="Incident runbooks: list, show, and run them step by step.", no_args_is_help=True
)


@app.command("list")
def list_(output: OutputOpt = Output.table) -> None:
    """List the runbooks shipped with dbops.

    Example:
        dbops runbook list
    """
    render(runbooks.catalogue(), output, columns=["name", "title", "steps", "inputs"])


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Runbook name, e.g. dlq-alert.")],
    output: OutputOpt = Output.table,
) -> None:
    """Show a runbook: rendered on a terminal, its markdown otherwise (and with -o md).

    `-o json`/`jsonl` give its name, title, summary, inputs and steps (number, section,
    command, argv, exit codes that count as success, destructive); `-o csv` one row per
    step.

    Example:
        dbops runbook show dlq-alert
        dbops runbook show stale-jobs -o json | jq -r '.steps[].command'
    """
    book = runbooks.load(name)
    if output in (Output.json, Output.jsonl):
        render(book, output)
        return
    if output is Output.csv:
        render(
            book.steps,
            output,
            columns=["number", "section", "command", "destructive", "ok_exits"],
        )
        return
    if output is Output.table and sys.stdout.isatty():
        from rich.markdown import Markdown

        out_console().print(Markdown(book.text))
    else:
        write(book.text)


def _passthrough_globals() -> list[str]:
    state = _deps.state()
    args: list[str] = []
    for flag, value in (
        ("--profile", state.profile),
        ("--region", state.region),
        ("--endpoint-url", state.endpoint_url),
    ):
        if value:
            args += [flag, value]
    if state.debug:
        args.append("--debug")
    return args


def run_step(args: list[str]) -> tuple[int, str, str]:
    """Run one `dbops ARGS` step in this process: (exit code, stdout, stderr).

    In-process, a step costs no interpreter start-up and no re-import (a runbook of eight
    steps took as many seconds as subprocesses). The step gets an empty stdin, so it never
    prompts (destructive steps get --yes from `approve`), and its own per-invocation state:
    settings, connections (closed when it ends) and the error boundary's exit code.
    """
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from dbops.cli.main import app as root

    out, err = io.StringIO(), io.StringIO()
    stdin, sys.stdin = sys.stdin, io.StringIO("")
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                root(args=args, prog_name="dbops")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.stdin = stdin
    return code, out.getvalue(), err.getvalue()


@app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="Runbook name, e.g. stale-jobs.")],
    start: Annotated[int, typer.Option("--from", min=1, help="Start at this step number.")] = 1,
    inputs: Annotated[
        list[str] | None, typer.Option("--set", help="Fill a placeholder: NAME=VALUE.")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Run destructive steps without asking.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Run destructive steps with --dry-run.")
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Run a runbook's steps in order against the current profile.

    Each command is shown before it runs. Destructive steps ask first on a terminal
    (`--yes` for CI); the run stops at the first failing step and says how to resume.

    Example:
        dbops runbook run stale-jobs --profile sandbox --dry-run
        dbops runbook run dlq-alert --from 3 --yes
    """
    book = runbooks.load(name)
    steps = runbooks.prepare(
        book, inputs=runbooks.parse_assignments(inputs or []), dry_run=dry_run, yes=yes
    )
    extra = _passthrough_globals()
    to_stdout = output is Output.table

    def execute(step: runbooks.Step) -> int:
        message(f"\n[{step.number}/{len(steps)}] $ {step.command}", style="bold")
        code, out, err = run_step([*step.argv[1:], *extra])
        if to_stdout:
            write(out)
        else:
            sys.stderr.write(out)
        sys.stderr.write(err)
        return code

    def approve(step: runbooks.Step) -> bool:
        if yes:
            return True
        if not is_interactive():
            message(f"step {step.number} is destructive: re-run with --yes to allow it")
            return False
        if typer.confirm(f"Run step {step.number}: {step.command}?", default=False, err=True):
            step.argv.append("--yes")
            return True
        return False

    result = runbooks.run(
        book, steps=steps, start=start, dry_run=dry_run, execute=execute, approve=approve
    )
    if output is not Output.table:
        render(result, output)
    if result.ok:
        message(f"\nrunbook {name}: all steps done", style="green")
        return
    last = result.steps[-1]
    resume = f"dbops runbook run {name} --from {result.resume_from}"
    if last.status == "refused":
        message(f"\nstopped before step {last.number} (not confirmed); resume with: {resume}")
        raise typer.Exit(6)
    message(
        f"\nstep {last.number} failed (exit {last.exit_code}); fix it, then resume with: {resume}"
    )
    raise typer.Exit(last.exit_code or 1)
