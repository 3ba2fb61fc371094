"""`dbops dlq replay FILE`: send an export, a purge/delete backup or a manifest back to a
queue. Registered on the `dlq` app through `register(app)` by `cli/main.py`'s loader.

Checkpoints (the test seam, `dbops.cli._checkpoint`): `replay_after_send` (the n-th
SendMessageBatch returned, its progress not yet recorded) and `replay_after_progress`
(recorded and fsynced).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli._checkpoint import checkpoint_from_env
from dbops.cli._common import DryRunOpt, YesOpt, confirm, recorder
from dbops.cli.output import Output, OutputOpt, message, partial_rendered, render
from dbops.errors import RemoteError, UsageError

FileArg = Annotated[
    Path,
    typer.Argument(
        help="JSONL file: a `dlq export`, a purge/delete backup, or a manifest cut from one.",
        show_default=False,
    ),
]
ToOpt = Annotated[
    str | None,
    typer.Option(
        "--to",
        help="Target queue name or URL (default: the queue the file's messages came from).",
        show_default=False,
    ),
]
RateOpt = Annotated[
    float | None,
    typer.Option("--rate", help="At most this many messages per second.", show_default=False),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers", help="Parallel SendMessageBatch calls (file order is kept only with 1)."
    ),
]


def _summary(result: Any) -> None:
    message(
        f"replayed {result.sent} message(s) to {result.target} in {result.send_calls} "
        f"SendMessageBatch call(s)"
        + (f"; {result.already_sent} already sent before" if result.already_sent else "")
        + (f"; {result.failed} failed" if result.failed else "")
        + (f"; {result.not_sent} not sent (stopped early)" if result.not_sent else "")
        + f"; progress in {result.progress_file}"
    )


def _announce(preview: Any, path: Path) -> None:
    message(
        f"Replay {preview.to_send} of {preview.messages} message(s) from {path} to "
        f"{preview.target}{' (FIFO)' if preview.target_fifo else ''}"
        + (
            f"; {preview.already_sent} already sent (per {preview.progress_file})"
            if preview.already_sent
            else ""
        )
        + (f"; {preview.duplicates} repeated line(s) skipped" if preview.duplicates else "")
        + "."
    )


def _run(
    queues: Any,
    plan: Any,
    target: Any,
    *,
    rate: float | None,
    workers: int,
    output: Output,
    arguments: dict[str, Any],
) -> Any:
    """Replay under the action recorder; a partial result is rendered before a failure."""
    from dbops.services.dlq import replay as svc

    with recorder("dlq replay", arguments) as rec:
        with partial_rendered(output, svc.ReplayResult):
            result = svc.replay(
                queues=queues,
                replay_plan=plan,
                target=target,
                rate=rate,
                workers=workers,
                checkpoint=checkpoint_from_env(),
            )
        rec.counts = result.counts()
        render(result, output, table=_summary)
        if result.interrupted:
            message(f"Interrupted: sent {result.sent}; re-run to send the rest (each once).")
            raise KeyboardInterrupt
    return result


def replay(
    file: FileArg,
    to: ToOpt = None,
    rate: RateOpt = None,
    workers: WorkersOpt = 1,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Send the messages of an export or backup file back to a queue, exactly as they were.

    Bodies and message attributes (every data type) are sent unchanged, 10 per
    SendMessageBatch; FIFO targets keep each MessageGroupId, with a MessageDeduplicationId
    derived from the original message id. Each message sent is recorded in
    FILE.replay-progress (fsynced), so a killed or interrupted replay re-run sends each
    line once. Masked exports are refused (exit 6). `dlq purge` + `dlq replay BACKUP`
    undoes a purge.

    Example:
        dbops dlq replay jobs-dlq-purge-20240501T100000Z.jsonl --dry-run
        dbops dlq replay reviewed.jsonl --to jobs --rate 50 --yes
    """
    from dbops.services.dlq import replay as svc

    svc.validate(rate=rate, workers=workers)
    if to is not None and not to.strip():
        # An empty --to is usually an unset shell variable: never fall back to a default.
        raise UsageError("--to must not be empty", hint="omit it to use the file's source queue")
    path = file.expanduser()
    plan = svc.plan(path)
    queues = _deps.queues()
    target_url = queues.resolve_url(to if to else svc.default_target(plan))
    target = svc.target_facts(queues, target_url)
    preview = svc.preview(replay_plan=plan, target=target)
    _announce(preview, path)
    arguments: dict[str, Any] = {
        "file": str(path),
        "to": preview.target,
        "rate": rate,
        "workers": workers,
    }
    if dry_run:
        with recorder("dlq replay", arguments, dry_run=True) as rec:
            rec.counts = {"messages": preview.messages, "to_send": preview.to_send}
        render(preview, output, table=lambda _p: message("dry run: nothing sent"))
        return
    if preview.to_send:
        confirm(f"replay {preview.to_send} message(s) to {preview.target}", yes=yes, dry_run=False)
    result = _run(
        queues,
        plan,
        target,
        rate=rate,
        workers=workers,
        output=output,
        arguments=arguments,
    )
    if result.failed:
        shown = "; ".join(f"{f.message_id}: {f.reason}" for f in result.failures[:3])
        raise RemoteError(f"{result.failed} message(s) could not be sent: {shown}")


def register(app: typer.Typer) -> None:
    """Add `replay` to the `dlq` app."""
    app.command("replay")(replay)
