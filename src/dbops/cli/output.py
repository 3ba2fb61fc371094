"""One `-o/--output` option and one `render()` for every command.

JSON/JSONL/CSV/Markdown are written as plain text to stdout from
`model_dump(mode="json")`; tables go through Rich on a terminal. On anything else (a
pipe, a file) a table is tab-separated, one row per line with every value whole, so
`| grep` and `| cut -f2` work (like `gh`); its title, if any, goes to stderr. The global
`--no-headers` drops the header row of tables and CSV. Messages go to stderr.

CSV flattens nested objects into dotted columns (`job.status`); a field holding a list of
records (`history`, `jobs`) cannot be a CSV cell: it is left out, and one line on stderr
names it and suggests `-o json`.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
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


def no_headers() -> bool:
    """True when the global `--no-headers` was given."""
    import click

    ctx = click.get_current_context(silent=True)
    state = ctx.find_root().obj if ctx is not None else None
    return bool(getattr(state, "no_headers", False))


def stdout_is_terminal() -> bool:
    """Rich's view of stdout (a TTY; TTY_COMPATIBLE=1/0 and FORCE_COLOR override it)."""
    return bool(out_console().is_terminal)


def _flat(value: Any, prefix: str, out: dict[str, Any], nested: dict[str, None]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(inner, f"{prefix}.{key}" if prefix else str(key), out, nested)
        if not value:
            out[prefix] = None  # an empty object: an empty cell
    elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        nested.setdefault(prefix, None)
    else:
        out[prefix] = value


def _record_fields(obj: Any) -> set[str]:
    """Top-level fields a model declares as lists of models (even when empty)."""
    from typing import get_args, get_origin

    sample = obj[0] if isinstance(obj, list | tuple) and obj else obj
    if not isinstance(sample, BaseModel):
        return set()
    fields = set()
    for name, info in type(sample).model_fields.items():
        annotation = info.annotation
        for candidate in (annotation, *get_args(annotation)):
            if get_origin(candidate) is list and any(
                isinstance(a, type) and issubclass(a, BaseModel) for a in get_args(candidate)
            ):
                fields.add(name)
    return fields


def flatten(
    obj: Any, data: Any, columns: Sequence[str] | None
) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """CSV rows: nested objects as dotted columns; (columns, rows, omitted list fields)."""
    items = data if isinstance(data, list) else [data]
    records = _record_fields(obj)
    nested: dict[str, None] = {name: None for name in records}
    rows = []
    for item in items:
        if not isinstance(item, dict):
            continue
        row: dict[str, Any] = {}
        for key, value in item.items():
            if key in records:
                continue
            _flat(value, key, row, nested)
        rows.append(row)
    seen: dict[str, None] = {}
    for row in rows:
        seen.update((k, None) for k in row)
    if columns is not None:
        wanted: list[str] = []
        for c in columns:
            dotted = [k for k in seen if k.startswith(f"{c}.")]
            wanted += dotted if dotted and c not in seen else [] if c in nested else [c]
        cols = list(dict.fromkeys(wanted))
    else:
        cols = list(seen)
    omitted = [n for n in nested if columns is None or n in columns]
    return cols, rows, omitted


class WholeWrites:
    """Standard output for data (JSON documents, export lines): a write returns only when
    every byte of the text is written.

    With PYTHONUNBUFFERED set (a common line in container images) sys.stdout writes
    straight to the file descriptor. A write waiting on a full pipe that is interrupted
    (the process stopped and continued: Ctrl-Z then `fg`, a debugger or profiler
    attaching) returns a short count, and TextIOWrapper ignores it: the rest of the text
    was dropped and dbops still exited 0 (Python 3.11 on Linux;
    tests/reliability/test_stdout_stopped.py). `dbops dlq export --out - | gzip > backup`
    was then a short backup.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        # A BufferedWriter, or the FileIO itself when PYTHONUNBUFFERED is set: either can
        # write short. In-memory streams (CliRunner's) cannot.
        buffer = getattr(self._stream, "buffer", None)
        if not isinstance(buffer, io.BufferedWriter | io.FileIO):
            return int(self._stream.write(text))
        self._stream.flush()
        view = memoryview(text.encode(self._stream.encoding, self._stream.errors or "strict"))
        while view:
            written = buffer.write(view)
            if written is None:  # a non-blocking descriptor, full
                raise BlockingIOError(errno.EAGAIN, "standard output is full")
            view = view[written:]
        buffer.flush()
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return int(self._stream.fileno())


def whole_stdout() -> WholeWrites:
    return WholeWrites(sys.stdout)


def write(text: str) -> None:
    out = whole_stdout()
    out.write(text)
    out.flush()


def err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def view_console() -> Any:
    """The console for a command's own Rich view: off a terminal it is wide enough that no
    value is cut or folded (pipes and `grep` see whole ids, URLs and explanations)."""
    from rich.console import Console

    console = Console(highlight=False)
    if console.is_terminal:
        return console
    return Console(highlight=False, width=100_000)


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
    if fmt is Output.csv:
        cols, items, omitted = flatten(obj, data, columns)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if not no_headers():
            writer.writerow(cols)
        for item in items:
            writer.writerow([_cell(item.get(c)) for c in cols])
        write(buffer.getvalue())
        if omitted:
            message(
                f"note: the result is nested: {', '.join(omitted)} (lists of records) "
                "not in the CSV; use -o json or -o jsonl for everything"
            )
        return
    cols, items = _rows(data, columns)
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


@contextmanager
def partial_rendered(output: Output, kind: type) -> Iterator[None]:
    """With -o json/jsonl, print the partial result (of type `kind`) a failure carries
    before the error propagates to the one-line message."""
    from dbops.errors import DbopsError

    try:
        yield
    except DbopsError as exc:
        if isinstance(exc.partial_result, kind) and output in (Output.json, Output.jsonl):
            render(exc.partial_result, output)
        raise


def print_table(
    items: Iterable[dict[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    styles: dict[str, Callable[[Any], str | None]] | None = None,
) -> None:
    if not stdout_is_terminal():
        _print_plain(items, columns, title=title)
        return
    from rich.table import Table

    grid = Table(
        title=title, title_justify="left", header_style="bold", show_header=not no_headers()
    )
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


_PLAIN = str.maketrans({"\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _print_plain(
    items: Iterable[dict[str, Any]], columns: Sequence[str], *, title: str | None
) -> None:
    """Tab-separated, one row per line, values whole (for pipes and files)."""
    if title:
        message(title)
    lines = [] if no_headers() else ["\t".join(columns)]
    lines += ["\t".join(_cell(i.get(c)).translate(_PLAIN) for c in columns) for i in items]
    write("".join(line + "\n" for line in lines))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def key_values(data: dict[str, Any], *, title: str | None = None) -> None:
    """A two-column table for one object."""
    print_table(
        [{"field": k, "value": _cell(v)} for k, v in data.items()], ["field", "value"], title=title
    )
