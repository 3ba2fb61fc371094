"""`dbops dlq monitor`: the DLQ depth against a threshold, with Slack alerts.

Registered on the `dlq` app through `register(app)` by `cli/main.py`'s loader.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli.dlq_cmd import QueueOpt, optional_store, queue_url
from dbops.cli.output import Output, OutputOpt, message, out_console, render
from dbops.durations import parse_duration
from dbops.errors import ExitCode, RemoteError, UsageError
from dbops.ports import Store
from dbops.services import dlq

ThresholdOpt = Annotated[
    int | None,
    typer.Option(
        "--threshold",
        min=1,
        help="Alert at this depth or more (default: DLQ_ALERT_THRESHOLD, else 1).",
        show_default=False,
    ),
]
NotifyOpt = Annotated[
    str | None,
    typer.Option(
        "--notify",
        help="Send an alert: 'slack' (webhook from SLACK_WEBHOOK_URL).",
        show_default=False,
    ),
]
IntervalOpt = Annotated[str, typer.Option("--interval", help="Time between checks with --watch.")]
CountOpt = Annotated[
    int | None,
    typer.Option("--count", min=1, help="With --watch, stop after this many checks."),
]


def _monitor_line(result: dlq.MonitorResult) -> None:
    state = "ALERT" if result.alerting else "ok"
    line = f"{state}: {result.queue} depth {result.depth} (threshold {result.threshold})"
    if result.notify:
        if result.notified:
            line += f"; notified {result.notify}"
        elif result.notify_error:
            line += f"; {result.notify} notification FAILED"
        elif result.notify_skipped:
            line += f"; not notified: {result.notify_skipped}"
    out_console().print(line, markup=False, highlight=False)


def _monitor_once(
    *,
    url: str,
    threshold: int,
    notifier: Any,
    store: Store | None,
    warning: str | None,
    output: Output,
) -> dlq.MonitorResult:
    result = dlq.monitor(
        queues=_deps.queues(),
        queue_url=url,
        threshold=threshold,
        notifier=notifier,
        channel="slack" if notifier is not None else None,
        store=store,
        store_warning=warning,
        profile=_deps.settings().profile,
    )
    for text in result.warnings:
        message(f"warning: {text}", style="yellow")
    render(result, output, table=_monitor_line)
    return result


def monitor(
    queue: QueueOpt = None,
    threshold: ThresholdOpt = None,
    notify: NotifyOpt = None,
    watch: Annotated[bool, typer.Option("--watch", help="Keep checking every --interval.")] = False,
    interval: IntervalOpt = "1m",
    count: CountOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Check the DLQ depth: exit 1 when depth >= threshold, 0 otherwise (for cron and CI).

    With --notify slack, posts a Block Kit alert (depth, first 5 messages, next commands,
    which name the --profile the monitor ran with) when alerting, and again only when the
    depth has grown since the last alert (state in the database; without one, every
    alerting check notifies). A webhook failure exits 5 after printing the check. With
    --watch, checks every --interval until Ctrl-C (exit 130) or --count checks; the exit
    code is then the last check's.

    Example:
        dbops dlq monitor --threshold 10 -o json
        dbops dlq monitor --notify slack --watch --interval 5m
    """
    if notify is not None and notify.lower() != "slack":
        raise UsageError(f"invalid --notify {notify!r}: the only channel is 'slack'")
    seconds = parse_duration(interval, option="--interval")
    if count is not None and not watch:
        raise UsageError("--count needs --watch")
    limit = threshold if threshold is not None else _deps.settings().dlq_alert_threshold
    notifier = _deps.slack_notifier() if notify else None
    url = queue_url(queue)
    store: Store | None = None
    warning: str | None = None
    if notifier is not None:
        store, warning = optional_store()
    checks = 0
    result: dlq.MonitorResult | None = None
    try:
        while True:
            result = _monitor_once(
                url=url,
                threshold=limit,
                notifier=notifier,
                store=store,
                warning=warning,
                output=output,
            )
            checks += 1
            if not watch:
                break
            if result.notify_error:
                message(f"warning: {result.notify_error}", style="yellow")
            if count is not None and checks >= count:
                break
            time.sleep(seconds)
    except KeyboardInterrupt:
        message(f"stopped after {checks} check(s)")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    assert result is not None
    if result.notify_error:
        raise RemoteError(f"check done but the alert was not delivered: {result.notify_error}")
    if result.alerting:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `monitor` to the `dlq` app."""
    app.command("monitor")(monitor)
