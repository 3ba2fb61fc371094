"""The `dbops` root command: global options, subcommand groups, and the error boundary."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click
import typer
import typer.core
from typer.core import TyperGroup

from dbops.cli._state import State
from dbops.errors import DbopsError, ExitCode

GLOBAL_HELP = """\
Global options (accepted anywhere on the command line):
  --profile NAME   configuration profile (or DBOPS_PROFILE)
  --debug          show tracebacks (or DBOPS_DEBUG=1)
  --env-file PATH  read KEY=VALUE settings, secrets included, from a file ('-' = stdin)
  --region REGION  AWS region (overrides AWS_REGION)
  --endpoint-url URL  SQS endpoint (overrides AWS_ENDPOINT_URL_SQS), e.g. LocalStack
  --no-headers     tables and CSV without their header row (for scripts)
"""

# Global options that take a value -> the State attribute they fill.
_VALUE_OPTIONS = {
    "--profile": "profile",
    "--env-file": "env_file",
    "--region": "region",
    "--endpoint-url": "endpoint_url",
}


# Help is plain click formatting (rich_markup_mode=None). Typer still routes option
# defaults through rich's escaping when rich is importable, which prints `\[default: x]`
# and imports rich on every --help; telling it rich is absent keeps help plain and fast.
typer.core.HAS_RICH = False

_click_format_help_text = click.Command.format_help_text


def _format_help_text(self: click.Command, ctx: click.Context, formatter: Any) -> None:
    # Keep `Example:` blocks as written: click re-wraps paragraphs unless they start with \b.
    if self.help and "Example:" in self.help and "\b\nExample:" not in self.help:
        self.help = self.help.replace("Example:", "\b\nExample:")
    _click_format_help_text(self, ctx, formatter)


click.Command.format_help_text = _format_help_text  # type: ignore[method-assign]


def _extract_globals(
    args: list[str], *, resilient: bool = False
) -> tuple[list[str], dict[str, Any]]:
    """Pull the global options out of args wherever they appear (before `--`).

    `resilient` (shell completion) tolerates a value option at the end without its value.
    """
    rest: list[str] = []
    found: dict[str, Any] = {"debug": False}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name, eq, value = arg.partition("=")
        if name in _VALUE_OPTIONS:
            key = _VALUE_OPTIONS[name]
            if eq:
                found[key] = value
            elif i + 1 < len(args):
                found[key] = args[i + 1]
                i += 1
            elif not resilient:
                raise click.UsageError(f"option {name} requires a value")
        elif arg == "--debug":
            found["debug"] = True
        elif arg == "--no-headers":
            found["no_headers"] = True
        else:
            rest.append(arg)
        i += 1
    return rest, found


def _debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    state = ctx.find_root().obj if ctx else None
    if isinstance(state, State) and state.debug:
        return True
    return os.environ.get("DBOPS_DEBUG", "") not in ("", "0", "false")


def fail(code: int, text: str) -> None:
    sys.stderr.write(f"Error: {text}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def _cached_group_help(ctx: click.Context, args: list[str]) -> str | None:
    """`dbops GROUP --help` from the generated cache, when it is exactly what click would print.

    Loading a group imports its services and models; the cache (cli/_help_cache.py, kept fresh
    by a test) makes group help as fast as `dbops --help`. The cached text is rendered at
    click's default width (78, from 80 columns), so another width renders the real help.
    """
    if len(args) != 2 or args[1] not in ("--help", "-h"):
        return None
    import shutil

    # The width click's HelpFormatter would pick (CliRunner forces 80).
    width = click.formatting.FORCED_WIDTH or max(
        min(shutil.get_terminal_size().columns, 80) - 2, 50
    )
    if ctx.terminal_width is not None or ctx.max_content_width is not None or width != 78:
        return None
    from dbops.cli._help_cache import GROUP_HELP

    text = GROUP_HELP.get(args[0])
    if text is None:
        return None
    return text.replace(HELP_CACHE_ROOT, ctx.command_path)


# The root command path in cached help text (the real one is substituted when printed).
HELP_CACHE_ROOT = "\x00dbops"


def _suggest(group: click.Group, ctx: click.Context, name: str) -> str:
    """` Did you mean 'x'?` for a mistyped command name (empty when nothing is close)."""
    import difflib

    close = difflib.get_close_matches(name, group.list_commands(ctx), n=3, cutoff=0.6)
    if not close:
        return ""
    if len(close) == 1:
        return f" Did you mean {close[0]!r}?"
    return " Did you mean one of " + ", ".join(repr(c) for c in close) + "?"


def _resolve_command(
    self: click.Group, ctx: click.Context, args: list[str]
) -> tuple[str | None, click.Command | None, list[str]]:
    """click's resolve_command, with the nearest command names in its error."""
    try:
        return _click_resolve_command(self, ctx, args)
    except click.UsageError as exc:
        if exc.message.startswith("No such command"):
            exc.message += _suggest(self, ctx, args[0])
        raise


# Every group (the root and each subcommand group) suggests the nearest commands.
_click_resolve_command = click.Group.resolve_command
TyperGroup.resolve_command = _resolve_command  # type: ignore[method-assign]


def _completion_option(name: str, help_text: str) -> click.Option:
    return click.Option(
        [name],
        metavar="[bash|zsh|fish]",
        is_flag=False,
        flag_value="",
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_completion_callback,
        help=help_text,
    )


def _completion_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    from dbops.cli import _completion

    shell = value or _completion.detect_shell()
    if shell not in _completion.SHELLS:
        given = f"unsupported shell {value!r}" if value else "cannot tell your shell from $SHELL"
        fail(int(ExitCode.USAGE), f"{given}: give bash, zsh or fish (e.g. {param.opts[0]} bash)")
    assert shell is not None
    root = ctx.find_root().command
    if param.name == "show_completion":
        click.echo(_completion.script(root, shell))
        ctx.exit(0)
    try:
        target, rc = _completion.install(root, shell)
    except DbopsError as exc:
        fail(int(exc.exit_code), exc.one_line())
    changed = f"; added loading lines to {rc}" if rc else ""
    click.echo(f"{shell} completion installed in {target}{changed}", err=True)
    click.echo("Open a new shell (or source its rc file) for it to take effect.", err=True)
    ctx.exit(0)


class RootGroup(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(
            [
                _completion_option(
                    "--install-completion",
                    "Install completion for the shell (default: $SHELL) and exit.",
                ),
                _completion_option(
                    "--show-completion",
                    "Print the completion script (default: for $SHELL) and exit.",
                ),
            ]
        )

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest, found = _extract_globals(list(args), resilient=ctx.resilient_parsing)
        ctx.obj = State(**found)
        cached = _cached_group_help(ctx, rest)
        if cached is not None:
            click.echo(cached, color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, rest)

    def _main_shell_completion(
        self, ctx_args: Any, prog_name: str, complete_var: str | None = None
    ) -> None:
        """`_DBOPS_COMPLETE=bash_complete dbops` (click's protocol): answer and exit."""
        complete_var = complete_var or f"_{prog_name}_COMPLETE".replace("-", "_").upper()
        instruction = os.environ.get(complete_var)
        if not instruction:
            return
        from dbops.cli._completion import shell_complete

        sys.exit(shell_complete(self, ctx_args, prog_name, complete_var, instruction))

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        """Command names from COMMANDS (no group module is imported), then options."""
        from click.shell_completion import CompletionItem

        items = [
            CompletionItem(name, help=short)
            for name, (_m, _a, short) in COMMANDS.items()
            if name.startswith(incomplete)
        ]
        return items + click.Command.shell_complete(self, ctx, incomplete)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_m, _a, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        formatter.write("\n" + GLOBAL_HELP)

    def invoke(self, ctx: click.Context) -> Any:
        """The one error boundary: DbopsError -> one line + its exit code."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except DbopsError as exc:
            if _debug_enabled():
                traceback.print_exc()
            fail(int(exc.exit_code), exc.one_line())
        except KeyboardInterrupt:
            fail(int(ExitCode.INTERRUPTED), "interrupted")
        except BrokenPipeError:
            raise SystemExit(0) from None
        except Exception as exc:
            if _debug_enabled():
                traceback.print_exc()
            from dbops.cli._deps import safe_text

            fail(
                int(ExitCode.UNEXPECTED),
                f"unexpected {type(exc).__name__}: {safe_text(str(exc))} "
                "(re-run with --debug for the traceback)",
            )


app = typer.Typer(
    name="dbops",
    cls=RootGroup,
    help="On-call toolkit for the SQS + Postgres/Supabase job backend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from dbops import __version__

        typer.echo(f"dbops {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """On-call toolkit for the SQS + Postgres/Supabase job backend."""


# Subcommands are imported only when used, so `dbops --help` loads no service, model or
# SDK code. name -> (module, attribute, one-line help shown in `dbops --help`).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "jobs": ("dbops.cli.jobs_cmd", "app", "Find, inspect and safely recover stale jobs."),
    "dlq": (
        "dbops.cli.dlq_cmd",
        "app",
        "Dead-letter queue: list, stats, export, redrive, purge, monitor.",
    ),
    "workers": (
        "dbops.cli.workers_cmd",
        "app",
        "Workers from their heartbeats: alive or dead, their jobs; forget dead ones.",
    ),
    "queue": ("dbops.cli.queue_cmd", "app", "Queue depth, attributes and a live watch."),
    "ratelimit": ("dbops.cli.ratelimit_cmd", "app", "API rate limits: rules, top, reset, block."),
    "audit": ("dbops.cli.audit_cmd", "app", "Health report with a score and CI exit codes."),
    "top": ("dbops.cli.top_cmd", "top", "Live dashboard: queues, jobs, workers, audit."),
    "metrics": ("dbops.cli.metrics_cmd", "metrics", "Prometheus metrics: print, serve or write."),
    "runbook": ("dbops.cli.runbook_cmd", "app", "Incident runbooks: list, show, run."),
    "doctor": ("dbops.cli.doctor_cmd", "doctor", "Check configuration, database and queues."),
    "log": ("dbops.cli.log_cmd", "log", "The operator action log."),
    "config": ("dbops.cli.config_cmd", "app", "Show the effective configuration."),
    "db": ("dbops.cli.db_cmd", "app", "Install and inspect dbops' SQL objects."),
    "sandbox": ("dbops.cli.sandbox_cmd", "app", "Embedded Postgres + SQS sandbox."),
    "demo": ("dbops.cli.demo_cmd", "demo", "Start the sandbox, seed an incident, show it."),
}


# Groups whose commands are spread over several modules: each module has `register(app)`,
# called once on the group's app, in this order (the order of `dbops GROUP --help`).
PARTS: dict[str, tuple[str, ...]] = {
    "jobs": ("dbops.cli.jobs_actions_cmd", "dbops.cli.jobs_bulk_cmd"),
    "dlq": (
        "dbops.cli.dlq_stats_cmd",
        "dbops.cli.dlq_purge_cmd",
        "dbops.cli.dlq_monitor_cmd",
        "dbops.cli.dlq_redrive_cmd",
        "dbops.cli.dlq_replay_cmd",
    ),
}
_assembled: set[str] = set()
# Built click commands, by name. Typer builds a command by inspecting every callback's
# signature and type hints; a process that runs several commands (the runbook runner, the
# shell, tests invoking the CLI in-process) builds each one once.
_built: dict[str, click.Command] = {}


def load_command(name: str, *, cached: bool = True) -> click.Command | None:
    """The click command NAME; `cached=False` builds a new one, kept nowhere (click keeps
    the help option it made for the first context a command saw, and the reference is
    rendered outside the root's context settings)."""
    if name not in COMMANDS:
        return None
    if cached and name in _built:
        return _built[name]
    import importlib

    module_name, attribute, _help = COMMANDS[name]
    target = getattr(importlib.import_module(module_name), attribute)
    if isinstance(target, typer.Typer):
        # Completion is installed from the root (`dbops --install-completion`) only.
        target._add_completion = False
    if isinstance(target, typer.Typer) and name not in _assembled:
        for part in PARTS.get(name, ()):
            importlib.import_module(part).register(target)
        _assembled.add(name)
    if isinstance(target, typer.Typer):
        command = typer.main.get_command(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    if cached:
        _built[name] = command
    return command


def run() -> None:
    app(prog_name="dbops")
