"""`dbops config`: show the effective configuration and where it comes from."""

from __future__ import annotations

import typer

from dbops.cli import _deps
from dbops.cli.output import OutputOpt, render
from dbops.config_files import config_path
from dbops.services import config as config_service

app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


@app.command("show")
def show(output: OutputOpt = "table") -> None:  # type: ignore[assignment]
    """Show effective settings and where each came from; secrets only as set or not set.

    Example:
        dbops config show --profile sandbox -o json
    """
    current, origins = _deps.settings_and_origins()
    render(
        config_service.describe(settings=current, origins=origins),
        output,
        columns=["name", "value", "source"],
    )


@app.command("path")
def path() -> None:
    """Print the path of the configuration file.

    Example:
        dbops config path
    """
    typer.echo(str(config_path()))
