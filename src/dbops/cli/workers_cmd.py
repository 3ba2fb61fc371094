"""`dbops workers`: list the workers (the group's default action), show one, forget a dead one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli._common import DryRunOpt, YesOpt, confirm, duration, recorder
from dbops.cli.output import Output, OutputOpt, key_values, message, print_table, render

if TYPE_CHECKING:
    from datetime import datetime

    from dbops.services.workers import ForgetResult, WorkerDetail, WorkerRow

app = typer.Typer(invoke_without_command=True, no_args_is_help=False)

DeadAfterOpt = Annotated[
    str,
    typer.Option(
        "--dead-after",
        help="A worker without a heartbeat for this long is dead, e.g. 2m, 90s.",
    ),
]
DeadOpt = Annotated[bool, typer.Option("--dead", help="Only dead workers.")]
QueueOpt = Annotated[
    str | None, typer.Option("--queue", help="Only workers of this queue (queue_name).")
]
LimitOpt = Annotated[
    int, typer.Option("--limit", min=1, max=100_000, help="At most this many workers.")
]
WorkerIdArg = Annotated[str, typer.Argument(help="The worker's id (worker_heartbeats.worker_id).")]

LIST_COLUMNS = ["worker", "queue", "status", "last_heartbeat", "age", "alive", "job", "job_status"]


def _short(value: Any) -> str:
    return "" if value is None else str(value)[:8]


def _age(seconds: float | None) -> str:
    from dbops.durations import format_duration

    return "" if seconds is None else format_duration(seconds)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else ""


def _worker_cells(w: WorkerRow) -> dict[str, Any]:
    job = _short(w.current_job_id)
    if job and w.current_job_age_seconds is not None:
        job = f"{job} ({_age(w.current_job_age_seconds)})"
    return {
        "worker": _short(w.worker_id),
        "queue": w.queue,
        "status": w.status,
        "last_heartbeat": _when(w.last_heartbeat),
        "age": _age(w.age_seconds),
        "alive": w.alive,
        "job": job,
        "job_status": w.current_job_status,
    }


def _alive_style(value: Any) -> str | None:
    return None if value else "bold red"


def _list_table(rows: list[WorkerRow]) -> None:
    if not rows:
        message("no workers match")
        return
    dead = sum(1 for r in rows if not r.alive)
    print_table(
        [_worker_cells(r) for r in rows],
        LIST_COLUMNS,
        title=f"{len(rows)} worker(s), {dead} dead",
        styles={"alive": _alive_style},
    )


def _list(*, dead_after: str, dead: bool, queue: str | None, limit: int, output: Output) -> None:
    from dbops.services import workers

    rows = workers.list_workers(
        store=_deps.store(),
        dead_after_seconds=duration(dead_after, "--dead-after") or 0,
        queue=queue,
        dead_only=dead,
        limit=limit,
    )
    render(rows, output, table=_list_table)


@app.callback()
def workers_root(
    ctx: typer.Context,
    dead_after: DeadAfterOpt = "2m",
    dead: DeadOpt = False,
    queue: QueueOpt = None,
    limit: LimitOpt = 1000,
    output: OutputOpt = Output.table,
) -> None:
    """List the workers (worker_heartbeats): alive or dead, and the job each holds.

    With no subcommand, the same as `dbops workers list`.

    Example:
        dbops workers --dead -o json
    """
    if ctx.invoked_subcommand is None:
        _list(dead_after=dead_after, dead=dead, queue=queue, limit=limit, output=output)


@app.command("list")
def list_cmd(
    dead_after: DeadAfterOpt = "2m",
    dead: DeadOpt = False,
    queue: QueueOpt = None,
    limit: LimitOpt = 1000,
    output: OutputOpt = Output.table,
) -> None:
    """List every worker: queue, status, last heartbeat and its age, alive, current job.

    Dead = no heartbeat for --dead-after (default 2m, as for stale jobs). Oldest heartbeat
    first, so the dead ones lead. Tables show 8-character ids, JSON the full ones.

    Example:
        dbops workers list --dead --queue dbops-jobs -o json
    """
    _list(dead_after=dead_after, dead=dead, queue=queue, limit=limit, output=output)


@app.command("show")
def show(
    worker_id: WorkerIdArg,
    dead_after: DeadAfterOpt = "2m",
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Show personal data in event details unmasked.")
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Show one worker, the jobs it holds and its last 20 history events.

    Held jobs: its current job, and in-progress jobs whose latest queue_history event
    names it.

    Example:
        dbops workers show 6f1c2a7e-0b7d-4c1e-9a51-1d2e3f405060 -o json
    """
    from dbops.services import workers

    store = _deps.store()
    detail = workers.show(
        store=store,
        worker_id=workers.resolve_worker_id(worker_id, store=store),
        dead_after_seconds=duration(dead_after, "--dead-after") or 0,
        reveal=reveal,
    )
    render(detail, output, table=_show_table)


def _show_table(detail: WorkerDetail) -> None:
    w = detail.worker
    cells = _worker_cells(w)
    cells["worker"] = str(w.worker_id)
    cells["job"] = str(w.current_job_id) if w.current_job_id else ""
    key_values(cells, title=f"worker {_short(w.worker_id)}")
    if detail.jobs:
        print_table(
            [
                {
                    "job": _short(j.id),
                    "status": j.status,
                    "age": _age(j.age_seconds),
                    "current": j.current,
                }
                for j in detail.jobs
            ],
            ["job", "status", "age", "current"],
            title="jobs it holds",
        )
    else:
        message("holds no job")
    if detail.history:
        print_table(
            [
                {
                    "created_at": _when(e.created_at),
                    "job": _short(e.job_id),
                    "event": e.event,
                    "details": e.details,
                }
                for e in detail.history
            ],
            ["created_at", "job", "event", "details"],
            title=f"last {len(detail.history)} events",
        )


@app.command("forget")
def forget(
    worker_id: WorkerIdArg,
    dead_after: DeadAfterOpt = "2m",
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Remove a dead worker's heartbeat row (refused for a live worker, exit 6).

    Liveness is checked again on the locked row when deleting: a worker that beats in
    between is kept. Jobs it held are untouched (recover them with `dbops jobs recover`).

    Example:
        dbops workers forget 6f1c2a7e-0b7d-4c1e-9a51-1d2e3f405060 --dry-run
    """
    from dbops.errors import RefusedError
    from dbops.services import workers

    store = _deps.store()
    canonical = workers.resolve_worker_id(worker_id, store=store)
    seconds = duration(dead_after, "--dead-after") or 0
    arguments = {"worker_id": canonical, "dead_after_seconds": seconds}
    try:
        plan = workers.forget_plan(store=store, worker_id=canonical, dead_after_seconds=seconds)
    except RefusedError as exc:
        recorder("workers forget", arguments, dry_run=dry_run).write("refused", exc.one_line())
        raise
    if output is Output.table:
        w = plan.worker
        held = f", holding job {w.current_job_id}" if w.current_job_id else ""
        message(
            f"worker {w.worker_id} ({w.queue or 'no queue'}, {w.status}) last beat "
            f"{_age(w.age_seconds)} ago{held}: its heartbeat row will be removed"
        )
    confirm(f"forget worker {canonical}", yes=yes, dry_run=dry_run)
    with recorder("workers forget", arguments, dry_run=dry_run) as rec:
        result = workers.forget_dry_run(plan) if dry_run else workers.forget(store=store, plan=plan)
        rec.counts = {"forgotten": int(result.forgotten)}
    render(result, output, table=_forget_table)


def _forget_table(result: ForgetResult) -> None:
    if result.dry_run:
        message(f"dry run: worker {result.worker_id} would be forgotten; nothing changed")
    else:
        message(f"forgot worker {result.worker_id}")
