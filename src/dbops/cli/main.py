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


def _extract_globals(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Pull the global options out of args wherever they appear (before `--`)."""
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
            else:
                raise click.UsageError(f"option {name} requires a value")
        elif arg == "--debug":
            found["debug"] = True
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


class RootGroup(TyperGroup):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest, found = _extract_globals(list(args))
        ctx.obj = State(**found)
        return super().parse_args(ctx, rest)

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
        "Dead-letter queue: list, export, redrive, purge, monitor.",
    ),
    "queue": ("dbops.cli.queue_cmd", "app", "Queue depth, attributes and a live watch."),
    "ratelimit": ("dbops.cli.ratelimit_cmd", "app", "API rate limits: rules, top, reset, block."),
    "audit": ("dbops.cli.audit_cmd", "app", "Health report with a score and CI exit codes."),
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
        "dbops.cli.dlq_purge_cmd",
        "dbops.cli.dlq_monitor_cmd",
        "dbops.cli.dlq_redrive_cmd",
        "dbops.cli.dlq_replay_cmd",
    ),
}
_assembled: set[str] = set()


def load_command(name: str) -> click.Command | None:
    if name not in COMMANDS:
        return None
    import importlib

    module_name, attribute, _help = COMMANDS[name]
    target = getattr(importlib.import_module(module_name), attribute)
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
    return command


def run() -> None:
    app(prog_name="dbops")
