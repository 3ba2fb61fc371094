"""The one progress bar: Rich, on stderr, only on a terminal (never in pipes or CI logs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dbops.cli.output import err_console


class Bar:
    """Update with `bar(completed, total=..., description=..., **fields)`."""

    def __init__(self, bar: Any, task: Any, total: int | None) -> None:
        self._bar, self._task, self._total = bar, task, total

    def __call__(
        self,
        completed: int,
        *,
        total: int | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        if total is not None:
            self._total = total
        # Counts can lag or be estimates: the bar never ends before the work does.
        shown = max(self._total or 0, completed) or None
        update: dict[str, Any] = {"completed": completed, "total": shown, **fields}
        if description is not None:
            update["description"] = description
        self._bar.update(self._task, **update)


@contextmanager
def progress_bar(
    label: str,
    total: int | None = None,
    *,
    enabled: bool = True,
    matched: bool = False,
    elapsed: bool = False,
    transient: bool = True,
) -> Iterator[Bar | None]:
    """A progress bar for `label` (None when disabled or stderr is not a terminal)."""
    console = err_console()
    if not enabled or not console.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[str | ProgressColumn] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if matched:
        columns.append(TextColumn("{task.fields[matched]} matched"))
    if elapsed:
        columns.append(TimeElapsedColumn())
    with Progress(*columns, console=console, transient=transient) as bar:
        if matched:
            task = bar.add_task(label, total=total or None, matched=0)
        else:
            task = bar.add_task(label, total=total or None)
        yield Bar(bar, task, total)
