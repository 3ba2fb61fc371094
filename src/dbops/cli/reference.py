"""Generate docs/cli.md from the CLI's own --help text.

Regenerate with: `uv run python -m dbops.cli.reference > docs/cli.md`
"""

from __future__ import annotations

from collections.abc import Iterator

import click
import typer

HEADER = """# CLI reference

Generated from `--help`; do not edit by hand. Regenerate with
`uv run python -m dbops.cli.reference > docs/cli.md` (a test fails when it is stale).
"""


def walk(
    command: click.Command, ctx: click.Context
) -> Iterator[tuple[click.Context, click.Command]]:
    yield ctx, command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                child = click.Context(sub, info_name=name, parent=ctx, max_content_width=100)
                child.terminal_width = 100
                yield from walk(sub, child)


def generate() -> str:
    from dbops.cli.main import app

    root = typer.main.get_command(app)
    ctx = click.Context(root, info_name="dbops", max_content_width=100)
    ctx.terminal_width = 100
    parts = [HEADER]
    for sub_ctx, command in walk(root, ctx):
        parts.append(
            f"\n## `{sub_ctx.command_path}`\n\n```text\n{command.get_help(sub_ctx).rstrip()}\n```\n"
        )
    return "".join(parts)


def resolve(argv: list[str]) -> tuple[list[str], click.Command, list[str]]:
    """Walk `dbops a b ...` down the command tree: (path, command, remaining args)."""
    from dbops.cli.main import app

    command: click.Command = typer.main.get_command(app)
    path = ["dbops"]
    rest = list(argv[1:])
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        if sub is None:
            raise LookupError(f"no command `{' '.join([*path, rest[0]])}`")
        command = sub
        path.append(rest.pop(0))
    return path, command, rest


if __name__ == "__main__":
    import sys

    sys.stdout.write(generate())
