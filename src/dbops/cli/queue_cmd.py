"""`dbops queue`: list queues, inspect one, depth, and a live watch."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli._completion import remember_queues
from dbops.cli.output import Output, OutputOpt, key_values, message, out_console, render
from dbops.durations import format_duration, parse_duration
from dbops.errors import ConfigError, ExitCode, UsageError
from dbops.names import queue_name
from dbops.services import queue as queue_service

app = typer.Typer(
    help="Inspect SQS queues: list, info, depth (with oldest-message age), live watch.",
    no_args_is_help=True,
)

QueuesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Queue names or URLs (default: the main queue and the DLQ).", show_default=False
    ),
]


SampleOpt = Annotated[
    bool | None,
    typer.Option(
        "--sample/--no-sample",
        help="Without CloudWatch data, estimate the oldest message's age from a peeked sample "
        "(default: only on queues without a redrive policy, where a peek cannot move "
        "messages to a DLQ); --sample peeks every queue, --no-sample none.",
        show_default=False,
    ),
]


def _default_urls() -> list[str]:
    current = _deps.settings()
    urls = [u for u in (current.sqs_queue_url, current.sqs_dlq_url) if u]
    if not urls:
        raise ConfigError(
            "no queue given and none configured",
            hint="pass QUEUE, or set SQS_QUEUE_URL / SQS_DLQ_URL (or use a profile)",
        )
    return urls


def _not_empty(names: list[str]) -> None:
    # An empty name is usually an unset shell variable: say so, never use a default.
    if any(not n.strip() for n in names):
        raise UsageError("a queue name or URL must not be empty")


def _resolve_all(names: list[str] | None) -> list[str]:
    if not names:
        urls = _default_urls()
    else:
        _not_empty(names)
        q = _deps.queues()
        urls = [q.resolve_url(n) for n in names]
    remember_queues(urls)  # names for shell completion
    return urls


@app.command("list")
def list_cmd(
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Only queues whose name starts with this.")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """List queues with their message counts and dead-letter wiring.

    Example:
        dbops queue list --prefix jobs -o json
    """
    rows = queue_service.list_queues(queues=_deps.queues(), prefix=prefix)
    remember_queues([r.url for r in rows], replace=not prefix)
    render(
        rows,
        output,
        columns=[
            "queue",
            "visible",
            "in_flight",
            "delayed",
            "fifo",
            "dead_letter_queue",
            "is_dead_letter_queue",
            "url",
        ],
        empty="no queues" + (f" starting with {prefix!r}" if prefix else ""),
    )


def _info_table(info: queue_service.QueueInfo) -> None:
    data = info.model_dump(mode="json", exclude={"attributes"})
    data["visibility_timeout_seconds"] = format_duration(info.visibility_timeout_seconds)
    data["retention_seconds"] = format_duration(info.retention_seconds)
    data["dead_letter_sources"] = ", ".join(info.dead_letter_sources) or None
    data["oldest_age_seconds"] = _age_cell(info.oldest_age_seconds, info.oldest_age_source)
    key_values(data, title=f"queue {info.queue}")


@app.command("info")
def info(
    queue: Annotated[
        str | None,
        typer.Argument(help="Queue name or URL (default: the main queue).", show_default=False),
    ] = None,
    sample: SampleOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show a queue's attributes: counts, visibility timeout, retention, redrive policy and
    its DLQ; for a DLQ, the source queues that send to it (ListDeadLetterSourceQueues);
    the oldest message's age and its source (see `queue depth`).

    Example:
        dbops queue info jobs-dlq -o json
    """
    if queue is not None:
        _not_empty([queue])
    target = queue or _deps.main_queue_url()
    result = queue_service.queue_info(queues=_deps.queues(), queue=target, sample=sample)
    render(result, output, table=_info_table)


def _age_cell(seconds: float | None, source: str | None) -> str:
    """`12m (cloudwatch)`, `>= 3m (sample)` (a sample gives a lower bound), or `n/a`."""
    if seconds is None:
        return "n/a"
    text = format_duration(seconds)
    return f">= {text} (sample)" if source == "sample" else f"{text} ({source})"


def _depth_table(rows: list[queue_service.QueueDepth]) -> None:
    from dbops.cli.output import print_table

    items = [
        {
            **r.model_dump(mode="json"),
            "oldest_age": _age_cell(r.oldest_age_seconds, r.oldest_age_source),
        }
        for r in rows
    ]
    print_table(items, ["queue", "visible", "in_flight", "delayed", "total", "oldest_age"])
    for r in rows:
        if r.oldest_age_source != "cloudwatch" and r.oldest_age_note:
            message(f"{r.queue}: {r.oldest_age_note}")


@app.command("depth")
def depth(
    queues: QueuesArg = None, sample: SampleOpt = None, output: OutputOpt = Output.table
) -> None:
    """Messages visible, in flight and delayed per queue, and the age of the oldest message
    with its source: CloudWatch's ApproximateAgeOfOldestMessage, else an estimate from a
    peeked sample (a lower bound; see --sample), else `n/a` / null.

    The sample is one ReceiveMessage with visibility timeout 0: nothing is consumed or
    hidden, but it counts as a receive, so by default queues with a redrive policy (whose
    messages move to the DLQ after maxReceiveCount receives) are not sampled.

    Example:
        dbops queue depth -o json
        dbops queue depth jobs jobs-dlq
        dbops queue depth --no-sample
    """
    urls = _resolve_all(queues)
    rows = queue_service.depth(queues=_deps.queues(), queue_urls=urls, sample=sample)
    render(rows, output, table=_depth_table)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}/s"


SPARK_SAMPLES = 20  # depth samples in the `queue watch` trend column (a sparkline)


def _watch_view(
    samples: list[queue_service.WatchSample], interval: int, trends: list[list[int]]
) -> Any:
    from rich.table import Table

    from dbops.cli.charts import sparkline

    grid = Table(
        title=f"queue watch (every {interval}s, Ctrl-C to stop)",
        title_justify="left",
        header_style="bold",
    )
    width = max((len(s.queue) for s in samples), default=5)
    grid.add_column("queue", no_wrap=True, min_width=width)
    for column in ("visible", "in flight", "delayed", "in", "out", "drain", "time to empty"):
        grid.add_column(column)
    grid.add_column("trend", no_wrap=True)
    for s, trend in zip(samples, trends, strict=True):
        tte = s.time_to_empty_seconds
        grid.add_row(
            s.queue,
            str(s.visible),
            str(s.in_flight),
            str(s.delayed),
            _rate(s.in_rate),
            _rate(s.out_rate),
            _rate(s.drain_rate),
            "n/a" if tte is None else format_duration(tte),
            sparkline([float(t) for t in trend[-SPARK_SAMPLES:]]),
        )
    return grid


@app.command("watch")
def watch(
    queues: QueuesArg = None,
    interval: Annotated[
        str, typer.Option("--interval", help="Time between samples, e.g. 2s, 1m.")
    ] = "2s",
    count: Annotated[
        int | None,
        typer.Option(
            "--count", min=1, help="Stop after this many samples (default: until Ctrl-C)."
        ),
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Live view of queue counts with in/out rates, drain rate and time-to-empty.

    The table shows a sparkline of the last 20 depth samples (visible + in flight +
    delayed) per queue; `-o jsonl` carries the numbers only.

    Rates come from changes in SQS's approximate counts between samples (net flow), so
    simultaneous arrivals and departures cancel out. `-o jsonl` streams one JSON line per
    queue per sample for scripts. Ctrl-C stops (exit 130).

    Example:
        dbops queue watch --interval 5s
        dbops queue watch -o jsonl --count 10 jobs-dlq
    """
    seconds = parse_duration(interval, option="--interval")
    if output not in (Output.table, Output.jsonl):
        raise UsageError(f"queue watch streams: use -o table or -o jsonl, not -o {output.value}")
    urls = _resolve_all(queues)
    port = _deps.queues()
    trackers = [queue_service.RateTracker(queue_name(u)) for u in urls]
    live: Any = None
    taken = 0
    try:
        if output is Output.table:
            from rich.live import Live

            live = Live(console=out_console(), refresh_per_second=4, auto_refresh=False)
            live.start()
        while True:
            samples = [
                tracker.add(queue_service.read_counts(queues=port, queue_url=url), at=time.time())
                for tracker, url in zip(trackers, urls, strict=True)
            ]
            taken += 1
            if live is not None:
                trends = [tracker.totals for tracker in trackers]
                live.update(_watch_view(samples, seconds, trends), refresh=True)
            else:
                render(samples, Output.jsonl)
            if count is not None and taken >= count:
                break
            time.sleep(seconds)
    except KeyboardInterrupt:
        if live is not None:
            live.stop()
            live = None
        message(f"stopped after {taken} sample(s)")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    finally:
        if live is not None:
            live.stop()
