"""`dbops top`: a live full-terminal dashboard of queues, jobs, workers, rate limits and
the audit (reads only)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli.output import Output, OutputOpt, out_console, render
from dbops.errors import UsageError

if TYPE_CHECKING:
    from dbops.services.overview import Dashboard, Overview

_VERDICT_STYLE = {
    "OK": "bold green",
    "WARNING": "bold yellow",
    "CRITICAL": "bold red",
    "UNKNOWN": "bold magenta",
}
_SEVERITY_STYLE = {"warning": "yellow", "critical": "bold red", "unknown": "magenta"}
QUIT_KEYS = ("q", "Q", "\x03")  # q, or Ctrl-C read as a key in cbreak mode


def read_key(fd: int, timeout: float) -> str | None:
    """One key from `fd` within `timeout` seconds: None when none came, "" at the end of
    input. The dashboard's wait between refreshes: it returns early on a key press."""
    import select

    ready, _w, _x = select.select([fd], [], [], max(0.0, timeout))
    if not ready:
        return None
    data = os.read(fd, 32)
    if not data:  # end of input: nothing more will come
        return ""
    return data.decode(errors="replace")[:1]


@contextmanager
def _cbreak(fd: int | None) -> Iterator[int | None]:
    """Keys without Enter and without echo while the dashboard runs; the terminal is
    restored however the block ends."""
    if fd is None:
        yield None
        return
    try:
        import termios
        import tty

        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError):
        yield None
        return
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _age(seconds: float | None) -> str:
    from dbops.durations import format_duration

    return format_duration(seconds) if seconds is not None else "-"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}/s"


def _error_lines(frame: Overview, keys: tuple[str, ...]) -> list[str]:
    from rich.markup import escape

    return [f"[red]{escape(k)}: {escape(frame.errors[k])}[/]" for k in keys if k in frame.errors]


def _panel(title: str, body: Any, errors: list[str]) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    parts = [Text.from_markup(e) for e in errors]
    if body is not None:
        parts.append(body)
    return Panel(Group(*parts), title=title, title_align="left")


def _queues_panel(frame: Overview, dash: Dashboard | None) -> Any:
    from rich.table import Table

    from dbops.cli.charts import sparkline

    grid = Table(box=None, pad_edge=False, header_style="bold")
    for column in (
        "queue",
        "visible",
        "in flight",
        "delayed",
        "oldest",
        "depth",
        "in",
        "out",
        "ETA",
    ):
        grid.add_column(column, justify="left" if column in ("queue", "depth") else "right")
    for q in frame.queues:
        history = list(dash.depths.get(q.role, [])) if dash else [q.total]
        eta = (
            "empty"
            if q.total == 0
            else (_age(q.time_to_empty_seconds) if q.time_to_empty_seconds else "-")
        )
        grid.add_row(
            f"{q.queue} ({q.role})",
            str(q.visible),
            str(q.in_flight),
            str(q.delayed),
            _age(q.oldest_age_seconds),
            sparkline([float(v) for v in history[-30:]]),
            _rate(q.in_rate),
            _rate(q.out_rate),
            eta,
        )
    body = grid if frame.queues else None
    return _panel("Queues", body, _error_lines(frame, ("queues", "main_queue", "dlq")))


def _jobs_panel(frame: Overview) -> Any:
    from rich.table import Table

    from dbops.cli.charts import bar, sparkline

    errors = _error_lines(frame, ("database", "jobs"))
    j = frame.jobs
    if "database" in frame.errors:
        return _panel("Jobs", None, errors)
    grid = Table.grid(padding=(0, 2))
    grid.add_column()
    grid.add_column(justify="right")
    grid.add_column()
    stale_style = "bold red" if j.stale else "green"
    orphan_style = "yellow" if j.orphaned else "green"
    grid.add_row(
        "stale",
        f"[{stale_style}]{j.stale if j.stale is not None else '?'}[/]",
        f"oldest {_age(j.stale_oldest_age_seconds)}" if j.stale else "",
    )
    grid.add_row(
        "orphaned",
        f"[{orphan_style}]{j.orphaned if j.orphaned is not None else '?'}[/]",
        f"oldest {_age(j.orphaned_oldest_age_seconds)}" if j.orphaned else "",
    )
    top = max(j.by_status.values(), default=0)
    for status, n in sorted(j.by_status.items(), key=lambda kv: -kv[1]):
        grid.add_row(status, str(n), bar(n, top, 20))
    completed = [float(m.completed) for m in j.per_minute]
    failed = [float(m.failed) for m in j.per_minute]
    if j.per_minute:
        grid.add_row(
            f"completed/min ({len(completed)} min)",
            str(int(completed[-1])),
            f"[green]{sparkline(completed)}[/]",
        )
        grid.add_row(
            f"failed/min ({len(failed)} min)", str(int(failed[-1])), f"[red]{sparkline(failed)}[/]"
        )
    return _panel("Jobs", grid, errors)


def _workers_panel(frame: Overview) -> Any:
    from rich.table import Table

    from dbops.cli.charts import bar

    errors = _error_lines(frame, ("database", "workers"))
    w = frame.workers
    if w.total is None:
        return _panel("Workers", None, errors)
    grid = Table.grid(padding=(0, 2))
    grid.add_column()
    grid.add_column(justify="right")
    grid.add_column()
    total = w.total or 0
    grid.add_row("alive", f"[green]{w.alive}[/]", f"[green]{bar(w.alive or 0, total, 20)}[/]")
    dead_style = "bold red" if w.dead else "green"
    grid.add_row("dead", f"[{dead_style}]{w.dead}[/]", f"[red]{bar(w.dead or 0, total, 20)}[/]")
    grid.add_row("dead holding a job", str(w.dead_holding_jobs), "")
    return _panel(f"Workers (dead after {_age(w.dead_after_seconds)})", grid, errors)


def _ratelimit_panel(frame: Overview) -> Any:
    from rich.markup import escape
    from rich.table import Table

    errors = _error_lines(frame, ("database", "ratelimit"))
    if "database" in frame.errors or "ratelimit" in frame.errors:
        return _panel("Rate limits", None, errors)
    grid = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("identifier", "endpoint", "rule", "requests", "denied"):
        grid.add_column(column, justify="right" if column in ("requests", "denied") else "left")
    for o in frame.ratelimit:
        grid.add_row(
            escape(o.identifier),
            escape(o.endpoint),
            escape(o.rule or "-"),
            str(o.requests),
            f"[red]{o.denied}[/]" if o.denied else "0",
        )
    title = f"Top {len(frame.ratelimit)} rate-limit offenders ({_age(frame.window_seconds)})"
    body = grid if frame.ratelimit else "no traffic in the window"
    return _panel(title, body, errors)


def _audit_panel(frame: Overview) -> Any:
    from rich.markup import escape
    from rich.text import Text

    errors = _error_lines(frame, ("audit",))
    a = frame.audit
    lines = [
        f"[{_VERDICT_STYLE.get(a.verdict, 'bold')}]{a.verdict}[/] score {a.score} "
        f"(cheap subset: {len(a.checks)} checks, every refresh)"
    ]
    if a.full is not None:
        lines.append(
            f"full audit: [{_VERDICT_STYLE.get(a.full.verdict, 'bold')}]{a.full.verdict}[/] "
            f"score {a.full.score} at {a.full.generated_at:%H:%M:%S}"
        )
    for c in a.checks:
        if c.severity in _SEVERITY_STYLE:
            lines.append(
                f"[{_SEVERITY_STYLE[c.severity]}]{c.severity:8}[/] {escape(c.id)}: "
                f"{escape(c.explanation)}"
            )
    return _panel("Audit", Text.from_markup("\n".join(lines)), errors)


def view(frame: Overview, dash: Dashboard | None = None) -> Any:
    """The dashboard: every panel, for one frame."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    header = Text.from_markup(
        f"[bold]dbops top[/]  {frame.at:%Y-%m-%d %H:%M:%S} UTC  "
        f"db {frame.transport or '-'}"
        + (f" {frame.database_ms:.0f} ms" if frame.database_ms is not None else "")
        + ("  [dim](q to quit)[/]" if dash is not None else "")
    )
    middle = Table.grid(expand=True, padding=(0, 1))
    middle.add_column(ratio=3)
    middle.add_column(ratio=2)
    middle.add_row(_jobs_panel(frame), _workers_panel(frame))
    return Group(
        header,
        _queues_panel(frame, dash),
        middle,
        _ratelimit_panel(frame),
        _audit_panel(frame),
    )


def top(
    interval: Annotated[
        str, typer.Option("--interval", help="Time between refreshes, e.g. 5s, 1m.")
    ] = "5s",
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Render one frame and exit (automatic when stdout is not a terminal)."
        ),
    ] = False,
    minutes: Annotated[
        int,
        typer.Option("--minutes", help="Minutes of completed/failed jobs in the sparkline."),
    ] = 15,
    window: Annotated[
        str, typer.Option("--window", help="Rate-limit window for the top offenders.")
    ] = "15m",
    output: OutputOpt = Output.table,
) -> None:
    """Live dashboard: queue depths, jobs, workers, rate limits and the audit (reads only).

    Each refresh costs one database round trip and one GetQueueAttributes call per queue;
    the audit's cheap subset is evaluated every refresh, the full audit (and CloudWatch's
    oldest-message age) once a minute. `q` or Ctrl-C exits. `-o json` prints one frame's
    data (see docs/monitoring.md).

    Example:
        dbops top --interval 10s
        dbops top --once -o json
    """
    from dbops.durations import parse_duration

    seconds = parse_duration(interval, option="--interval")
    window_seconds = parse_duration(window, option="--window")
    if output not in (Output.table, Output.json):
        raise UsageError(f"dbops top shows a dashboard: use -o table or -o json, not -o {output}")
    if not 1 <= minutes <= 1440:
        raise UsageError(f"invalid --minutes {minutes}: must be between 1 and 1440")
    from dbops.services import overview

    def frame(*, full: bool) -> Overview:
        return overview.gather(
            **_deps.overview_sources(),
            minutes=minutes,
            window_seconds=window_seconds,
            cloudwatch=full,
            full_audit=full,
        )

    if output is Output.json or once or not sys.stdout.isatty():
        one = overview.gather(
            **_deps.overview_sources(),
            minutes=minutes,
            window_seconds=window_seconds,
            cloudwatch=True,
        )
        render(one, output, table=lambda f: out_console().print(view(f)))
        return
    _live(frame, seconds)


def _live(frame: Any, seconds: float) -> None:
    from rich.live import Live

    from dbops.services.overview import Dashboard

    dash = Dashboard(full_every=60.0)
    stdin = sys.stdin.fileno() if sys.stdin.isatty() else None
    with (
        _cbreak(stdin) as fd,
        Live(console=out_console(), screen=True, auto_refresh=False, transient=True) as live,
    ):
        try:
            while True:
                at = time.time()
                full = dash.wants_full(at)
                current = dash.add(frame(full=full), at=at, full=full)
                live.update(view(current, dash), refresh=True)
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0:
                    if fd is None:
                        time.sleep(left)
                        break
                    key = read_key(fd, left)
                    if key in QUIT_KEYS:
                        return
                    if key == "":  # stdin closed: keep refreshing, stop reading keys
                        fd = None
        except KeyboardInterrupt:
            return
