"""`dbops dlq stats`: DLQ message counts grouped by reason, customer, job status, age or source.

Registered on the `dlq` app through `register(app)` by `cli/main.py`'s loader; the shared
DLQ options and helpers come from `dlq_cmd`. The service is imported inside the command.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from dbops.cli import _deps
from dbops.cli.dlq_cmd import (
    CustomerOpt,
    JobIdOpt,
    LeaseOpt,
    MatchOpt,
    NewerOpt,
    OlderOpt,
    QueueOpt,
    ReasonOpt,
    approximate_depth,
    build_filter,
    progress_bar,
    queue_url,
)
from dbops.cli.output import Output, OutputOpt, message, print_table, render
from dbops.durations import parse_duration

if TYPE_CHECKING:
    from dbops.services.dlq.stats import DlqStats

HISTOGRAM_WIDTH = 30


class By(StrEnum):
    reason = "reason"
    customer = "customer"
    job_status = "job_status"
    age = "age"
    source = "source"


def _table(stats: DlqStats) -> None:
    from dbops.cli.charts import bar
    from dbops.durations import format_duration

    if not stats.rows:
        message(f"{stats.queue}: no messages" + (" matched" if stats.scanned else ""))
        return
    largest = max(r.count for r in stats.rows)
    items = []
    for row in stats.rows:
        item = {
            "key": row.key,
            "count": row.count,
            "oldest": format_duration(row.oldest_age_seconds),
            "newest": format_duration(row.newest_age_seconds),
            "sample_message_id": row.sample_message_id,
        }
        if stats.by == "age":
            item["histogram"] = bar(row.count, largest, HISTOGRAM_WIDTH)
        items.append(item)
    columns = ["key", "count", "oldest", "newest", "sample_message_id"]
    if stats.by == "age":
        columns.insert(2, "histogram")
    shown = f"{len(stats.rows)} of {stats.groups}" if stats.groups > len(stats.rows) else "all"
    print_table(
        items,
        columns,
        title=f"{stats.queue}: {stats.matched} message(s) by {stats.by} ({shown} groups)",
    )
    if stats.omitted:
        message(f"{stats.omitted} message(s) in the groups not shown (raise --top)")


def stats(
    by: Annotated[
        By,
        typer.Option("--by", help="Group by this key (see docs/dlq.md).", case_sensitive=False),
    ] = By.reason,
    top: Annotated[
        int | None,
        typer.Option(
            "--top", min=1, help="Only the N largest groups (default: all).", show_default=False
        ),
    ] = None,
    queue: QueueOpt = None,
    job_id: JobIdOpt = None,
    customer: CustomerOpt = None,
    match: MatchOpt = None,
    reason: ReasonOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    max_messages: Annotated[
        int | None, typer.Option("--max", min=1, help="Scan at most this many messages.")
    ] = None,
    reveal: Annotated[
        bool,
        typer.Option("--reveal", help="Show personal data in customer and source keys unmasked."),
    ] = False,
    lease: LeaseOpt = "5m",
    output: OutputOpt = Output.table,
) -> None:
    """Count DLQ messages grouped by reason, customer, job_status, age or source.

    Non-destructive: every message is received once under --lease and released at the end
    (receive counts go up by one, like `dlq list`). Reasons are normalised (numbers, ids,
    emails and URLs become <n>, <uuid>, <hex>, <id>, <email>, <url>) so that "timeout
    after 30s" and "timeout after 31s" are one group. job_status needs a database
    (completed jobs are the ones safe to delete). Any body is counted: one dbops cannot
    read is under "(unparsed)". -o json prints one row per group: key, count,
    oldest_age_seconds, newest_age_seconds, sample_message_id. --by age draws a histogram.

    Example:
        dbops dlq stats
        dbops dlq stats --by job_status
        dbops dlq stats --by age --customer acme
    """
    from dbops.services.dlq.stats import group_messages

    flt = build_filter(
        job_ids=job_id,
        customers=customer,
        matches=match,
        reason=reason,
        older_than=older_than,
        newer_than=newer_than,
    )
    lease_seconds = parse_duration(lease, option="--lease")
    url = queue_url(queue)
    store = _deps.store() if by is By.job_status else None
    with progress_bar("counting", approximate_depth(url)) as update:
        result = group_messages(
            queues=_deps.queues(),
            queue_url=url,
            by=by.value,
            store=store,
            message_filter=flt,
            top=top,
            limit=max_messages,
            lease=lease_seconds,
            reveal=reveal,
            progress=update,
        )
    for text in result.warnings:
        message(f"warning: {text}", style="yellow")
    render(
        result.rows if output is not Output.table else result,
        output,
        table=_table,
        columns=["key", "count", "oldest_age_seconds", "newest_age_seconds", "sample_message_id"],
    )


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
