"""One `-o/--output` option and one `render()` for every command.

JSON/JSONL/CSV/Markdown are written as plain text to stdout from
`model_dump(mode="json")`; tables go through Rich. Messages go to stderr.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import BaseModel


class Output(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    md = "md"


OutputOpt = Annotated[
    Output,
    typer.Option("--output", "-o", help="Output format.", case_sensitive=False),
]


def to_data(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, list | tuple):
        return [to_data(o) for o in obj]
    return obj


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _rows(data: Any, columns: Sequence[str] | None) -> tuple[list[str], list[dict[str, Any]]]:
    items = data if isinstance(data, list) else [data]
    items = [i for i in items if isinstance(i, dict)]
    if columns is None:
        seen: dict[str, None] = {}
        for item in items:
            for key in item:
                seen.setdefault(key, None)
        columns = list(seen)
    return list(columns), items


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def message(text: str, *, style: str | None = None) -> None:
    """A human message on stderr (never mixed into machine output)."""
    err_console().print(text, style=style, markup=False)


def render(
    obj: Any,
    fmt: Output,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    table: Callable[[Any], None] | None = None,
    empty: str = "nothing to show",
) -> None:
    """Print `obj` (a model or a list of models) in the chosen format.

    `table` lets a command draw a custom Rich view for `-o table` only.
    """
    data = to_data(obj)
    if fmt is Output.json:
        write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    if fmt is Output.jsonl:
        items = data if isinstance(data, list) else [data]
        write("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
        return
    if table is not None and fmt is Output.table:
        table(obj)
        return
    cols, items = _rows(data, columns)
    if fmt is Output.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(cols)
        for item in items:
            writer.writerow([_cell(item.get(c)) for c in cols])
        write(buffer.getvalue())
        return
    if fmt is Output.md:
        from tabulate import tabulate

        body = tabulate(
            [[_cell(i.get(c)) for c in cols] for i in items], headers=cols, tablefmt="github"
        )
        write((f"### {title}\n\n" if title else "") + body + "\n")
        return
    if not items:
        message(empty)
        return
    print_table(items, cols, title=title)


def print_table(
    items: Iterable[dict[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    styles: dict[str, Callable[[Any], str | None]] | None = None,
) -> None:
    from rich.table import Table

    grid = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        grid.add_column(c, overflow="fold")
    for item in items:
        cells = []
        for c in columns:
            text = _cell(item.get(c))
            style = (styles or {}).get(c, lambda _v: None)(item.get(c))
            cells.append(f"[{style}]{_escape(text)}[/]" if style else _escape(text))
        grid.add_row(*cells)
    out_console().print(grid)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def key_values(data: dict[str, Any], *, title: str | None = None) -> None:
    """A two-column table for one object."""
    print_table(
        [{"field": k, "value": _cell(v)} for k, v in data.items()], ["field", "value"], title=title
    )
