"""Use cases: `copy_redrive` (the library entry point), `preview`, and the command's flow
`RedriveRequest` (checked once, when built) -> `plan_redrive` (target, preview) ->
`execute` (either method)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dbops.errors import DbopsError, UsageError
from dbops.ports import Checkpoint, Queues, Store
from dbops.services.messages import MessageFilter
from dbops.services.redrive.canary import with_canary
from dbops.services.redrive.copy import _CopyRun
from dbops.services.redrive.facts import (
    completed_job_ids,
    queue_facts,
    read_manifest,
    resolve_target,
    validate,
)
from dbops.services.redrive.journal import RedriveJournal, SettleReport, open_journal
from dbops.services.redrive.journal import pending as journal_pending
from dbops.services.redrive.models import (
    LEASE_SECONDS,
    RECEIVE_WAIT_SECONDS,
    SETTLE_SECONDS,
    Method,
    ProgressFn,
    RedrivePreview,
    RedriveResult,
)
from dbops.services.redrive.native import check_native, native_redrive, validate_native_rate
from dbops.services.redrive.state import CopyOptions, Sink


@dataclass
class _CopyJob:
    """Everything one copy redrive needs, already checked."""

    queues: Queues
    dlq_url: str
    target_url: str
    flt: MessageFilter
    dry_run: bool = False
    max_messages: int | None = None
    rate: float | None = None
    workers: int = 1
    store: Store | None = None
    skip_completed_jobs: bool = False
    canary: int | None = None
    canary_wait_seconds: int = 60
    lease_seconds: int = LEASE_SECONDS
    wait_seconds: int = RECEIVE_WAIT_SECONDS
    settle_seconds: float = SETTLE_SECONDS
    max_message_size: int | None = None
    progress: ProgressFn | None = None
    checkpoint: Checkpoint | None = None
    stop_event: threading.Event | None = None


def copy_redrive(
    *,
    queues: Queues,
    dlq_url: str,
    target_url: str,
    message_filter: MessageFilter | None = None,
    dry_run: bool = False,
    max_messages: int | None = None,
    rate: float | None = None,
    workers: int = 1,
    store: Store | None = None,
    skip_completed_jobs: bool = False,
    canary: int | None = None,
    canary_wait_seconds: int = 60,
    lease_seconds: int = LEASE_SECONDS,
    wait_seconds: int = RECEIVE_WAIT_SECONDS,
    settle_seconds: float = SETTLE_SECONDS,
    max_message_size: int | None = None,
    progress: ProgressFn | None = None,
    checkpoint: Checkpoint | None = None,
    stop_event: threading.Event | None = None,
    journal_dir: Path | None = None,
) -> RedriveResult:
    """Redrive by copy: send, then delete exactly the entries that were sent.

    With `canary`, move that many first, wait `canary_wait_seconds`, and stop
    (`result.canary.passed` false, `stopped == "canary"`) if any came back to the DLQ.

    With `journal_dir` (not for a dry run), the run keeps a journal of the receipt handles
    it holds and of what it sent but did not delete yet, and first settles the journal an
    earlier run of the same DLQ left behind (see `dbops.services.redrive.journal`):
    what that run sent is deleted from the DLQ (not sent again), what it held is released
    at once, and `result.settled` says so. Refused (exit 6) while another redrive of the
    same DLQ runs.
    """
    validate(
        max_messages=max_messages,
        rate=rate,
        workers=workers,
        lease_seconds=lease_seconds,
        canary=canary,
    )
    if skip_completed_jobs and store is None:
        raise UsageError("--skip-completed-jobs needs a database (set DATABASE_URL)")
    job = _CopyJob(
        queues=queues,
        dlq_url=dlq_url,
        target_url=target_url,
        flt=message_filter or MessageFilter(),
        dry_run=dry_run,
        max_messages=max_messages,
        rate=rate,
        workers=workers,
        store=store,
        skip_completed_jobs=skip_completed_jobs,
        canary=canary,
        canary_wait_seconds=canary_wait_seconds,
        lease_seconds=lease_seconds,
        wait_seconds=wait_seconds,
        settle_seconds=settle_seconds,
        max_message_size=max_message_size,
        progress=progress,
        checkpoint=checkpoint,
        stop_event=stop_event,
    )
    return _journaled(job, journal_dir)


def _journaled(job: _CopyJob, journal_dir: Path | None) -> RedriveResult:
    """Settle an earlier run's journal, run under a journal of our own, close it."""
    journal: RedriveJournal | None = None
    settled: SettleReport | None = None
    if journal_dir is not None and not job.dry_run:
        queue_facts(job.queues, job.dlq_url)  # a missing DLQ is "not found", before any file
        journal = open_journal(journal_dir, source_url=job.dlq_url, target_url=job.target_url)
    drained = False
    try:
        if journal is not None:
            settled = journal.settle(job.queues, workers=job.workers)
            if job.checkpoint is not None:
                job.checkpoint("after_settle")
        try:
            result = _run_copy(job, journal)
        except DbopsError as exc:
            partial = exc.partial_result
            if isinstance(partial, RedriveResult):
                partial.settled = journal.report if journal is not None else None
            raise
        result.settled = journal.report if journal is not None else settled
        if (
            journal is not None
            and journal.has_unconfirmed
            and result.stopped == "drained"
            and not result.interrupted
        ):
            # Sent-earlier ids not met by a scan of the whole DLQ are gone, unless some
            # message was invisible to the scan (held by another reader): then keep them.
            with contextlib.suppress(DbopsError):
                drained = queue_facts(job.queues, job.dlq_url).in_flight == 0
        return result
    finally:
        if journal is not None:
            journal.close(drained=drained)


def _run_copy(job: _CopyJob, journal: RedriveJournal | None) -> RedriveResult:
    """One copy pass, or the canary pass and then the rest."""
    source = queue_facts(job.queues, job.dlq_url)
    target = queue_facts(job.queues, job.target_url)
    stop = job.stop_event or threading.Event()
    lookup: Callable[[list[str]], set[str]] | None = None
    if job.skip_completed_jobs and job.store is not None:
        db = job.store

        def lookup(ids: list[str]) -> set[str]:
            return completed_job_ids(db, ids)

    total = source.visible + source.in_flight
    if job.max_messages is not None:
        total = min(total, job.max_messages)
    flt = job.flt

    def once(limit: int | None, sink: Sink | None) -> RedriveResult:
        options = CopyOptions(
            source_url=job.dlq_url,
            target_url=job.target_url,
            accept=flt.accepts,
            dry_run=job.dry_run,
            max_messages=limit,
            manifest=set(flt.message_ids) if flt.message_ids is not None else None,
            rate=job.rate,
            workers=job.workers,
            skip_completed=lookup,
            lease_seconds=job.lease_seconds,
            wait_seconds=job.wait_seconds,
            settle_seconds=job.settle_seconds,
            max_message_size=job.max_message_size or target.max_message_size,
            target_fifo=target.fifo,
            total_hint=total,
            sent_sink=sink,
            stop_event=stop,
            journal=journal,
        )
        run = _CopyRun(job.queues, options, progress=job.progress, checkpoint=job.checkpoint)
        return run.run()

    if job.canary is None or job.dry_run:
        return once(job.max_messages, None)
    return with_canary(
        once,
        queues=job.queues,
        dlq_url=job.dlq_url,
        canary=job.canary,
        canary_wait_seconds=job.canary_wait_seconds,
        max_messages=job.max_messages,
        stop=stop,
        workers=job.workers,
        lease_seconds=job.lease_seconds,
        wait_seconds=job.wait_seconds,
        settle_seconds=job.settle_seconds,
        journal=journal,
    )


def preview(
    *,
    queues: Queues,
    dlq_url: str,
    target_url: str,
    method: Method,
    message_filter: MessageFilter | None = None,
    skip_completed_jobs: bool = False,
    store: Store | None = None,
    max_messages: int | None = None,
    full_scan: bool = False,
    workers: int = 1,
    lease_seconds: int = LEASE_SECONDS,
    wait_seconds: int = RECEIVE_WAIT_SECONDS,
    journal_dir: Path | None = None,
) -> RedrivePreview:
    """Depths and target facts; with `full_scan`, a dry-run pass counting what matches;
    with `journal_dir`, what an earlier run left to settle first."""
    source = queue_facts(queues, dlq_url)
    target = queue_facts(queues, target_url)
    flt = message_filter or MessageFilter()
    result = None
    if full_scan and method == "copy":
        if skip_completed_jobs and store is None:
            raise UsageError("--skip-completed-jobs needs a database (set DATABASE_URL)")
        job = _CopyJob(
            queues=queues,
            dlq_url=dlq_url,
            target_url=target_url,
            flt=flt,
            dry_run=True,
            max_messages=max_messages,
            store=store,
            skip_completed_jobs=skip_completed_jobs,
            workers=workers,
            lease_seconds=lease_seconds,
            wait_seconds=wait_seconds,
        )
        result = _run_copy(job, None)
    return RedrivePreview(
        method=method,
        source=dlq_url,
        target=target_url,
        visible=source.visible,
        in_flight=source.in_flight,
        target_fifo=target.fifo,
        max_message_size=target.max_message_size,
        filtered=not flt.is_empty or skip_completed_jobs,
        scan=result,
        journal=journal_pending(journal_dir, dlq_url) if journal_dir is not None else None,
    )


# --------------------------------------------------------------------------- the command
@dataclass
class RedriveRequest:
    """What `dbops dlq redrive` asks for. Checked once, when built (usage errors, exit 2):
    the numbers, what `--method native` cannot do, an empty `--to`, and the manifest (its
    ids become `message_filter.message_ids`)."""

    method: Method = "copy"
    to: str | None = None
    message_filter: MessageFilter = field(default_factory=MessageFilter)
    manifest: Path | None = None
    skip_completed_jobs: bool = False
    max_messages: int | None = None
    rate: float | None = None
    workers: int = 1
    canary: int | None = None
    canary_wait_seconds: int = 60
    lease_seconds: int = LEASE_SECONDS
    dry_run: bool = False

    def __post_init__(self) -> None:
        validate(
            max_messages=self.max_messages,
            rate=self.rate,
            workers=self.workers,
            lease_seconds=self.lease_seconds,
            canary=self.canary,
        )
        if self.method == "native":
            self._check_native_options()
        if self.manifest is not None:
            self.message_filter.message_ids = read_manifest(self.manifest)
        if self.to is not None and not self.to.strip():
            # An empty --to is usually an unset shell variable: never fall back to a default.
            raise UsageError("--to must not be empty", hint="omit it to use the DLQ's source queue")

    def _check_native_options(self) -> None:
        refused = [
            name
            for name, given in (
                ("filters", not self.message_filter.is_empty),
                ("--skip-completed-jobs", self.skip_completed_jobs),
                ("--manifest", self.manifest is not None),
                ("--canary", self.canary is not None),
                ("--max", self.max_messages is not None),
                ("--workers", self.workers != 1),
            )
            if given
        ]
        validate_native_rate(self.rate)
        if refused:
            raise UsageError(
                f"--method native moves the whole DLQ: {', '.join(refused)} cannot be used with it",
                hint="use --method copy (the default)",
            )

    @property
    def filtered(self) -> bool:
        return not self.message_filter.is_empty or self.skip_completed_jobs


@dataclass
class RedrivePlan:
    """A checked request with its queues resolved and its preview: render it, confirm,
    then `execute` it."""

    request: RedriveRequest
    queues: Queues
    dlq_url: str
    target_url: str
    store: Store | None
    preview: RedrivePreview
    journal_dir: Path | None

    @property
    def count(self) -> int:
        """How many messages the redrive would move (a scan's count, else the depth)."""
        if self.preview.scan is not None:
            return self.preview.scan.matched
        limit = self.request.max_messages
        return min(self.preview.visible, limit) if limit else self.preview.visible


def plan_redrive(
    *,
    queues: Queues,
    dlq_url: str,
    request: RedriveRequest,
    store: Store | None = None,
    scan_if_filtered: bool = False,
    journal_dir: Path | None = None,
) -> RedrivePlan:
    """Resolve the target, check the native method is there, preview. With
    `scan_if_filtered` (an interactive confirmation), a filtered copy redrive is counted by
    a dry-run scan first. `journal_dir` is where copy redrives keep their journal."""
    target_url = resolve_target(queues=queues, dlq_url=dlq_url, to=request.to)
    if request.method == "native":
        check_native(queues=queues, dlq_url=dlq_url)
    copy = request.method == "copy"
    shown = preview(
        queues=queues,
        dlq_url=dlq_url,
        target_url=target_url,
        method=request.method,
        message_filter=request.message_filter,
        skip_completed_jobs=request.skip_completed_jobs,
        store=store,
        max_messages=request.max_messages,
        full_scan=scan_if_filtered and request.filtered and not request.dry_run,
        workers=request.workers,
        lease_seconds=request.lease_seconds,
        journal_dir=journal_dir if copy else None,
    )
    return RedrivePlan(
        request=request,
        queues=queues,
        dlq_url=dlq_url,
        target_url=target_url,
        store=store,
        preview=shown,
        journal_dir=journal_dir,
    )


def execute(
    plan: RedrivePlan,
    *,
    progress: ProgressFn | None = None,
    checkpoint: Checkpoint | None = None,
) -> RedriveResult:
    """Carry out the plan. A fatal error carries the counts so far as `partial_result`.
    A dry-run plan is rendered through `dry_run(plan)`, never executed."""
    r = plan.request
    if r.dry_run:
        raise UsageError("a dry-run redrive plan is not executed: use `dry_run(plan)`")
    if r.method == "native":
        return native_redrive(
            queues=plan.queues,
            dlq_url=plan.dlq_url,
            target_url=plan.target_url,
            rate=r.rate,
            progress=progress,
        )
    return _journaled(_copy_job(plan, progress=progress, checkpoint=checkpoint), plan.journal_dir)


def dry_run(
    plan: RedrivePlan,
    *,
    progress: ProgressFn | None = None,
    checkpoint: Checkpoint | None = None,
) -> RedriveResult:
    """What `execute` would move, nothing moved (`dry_run` true). Copy: a non-consuming
    pass of the copy engine over the DLQ (every message released, counted, sampled). Native:
    the DLQ's visible depth from the plan's preview (the move task takes every message)."""
    if plan.request.method == "native":
        visible = plan.preview.visible
        return RedriveResult(
            method="native",
            dry_run=True,
            source=plan.dlq_url,
            target=plan.target_url,
            scanned=visible,
            matched=visible,
            stopped="dry_run",
        )
    job = _copy_job(plan, progress=progress, checkpoint=checkpoint, dry=True)
    return _journaled(job, None)


def _copy_job(
    plan: RedrivePlan,
    *,
    progress: ProgressFn | None,
    checkpoint: Checkpoint | None = None,
    dry: bool = False,
) -> _CopyJob:
    r = plan.request
    if r.skip_completed_jobs and plan.store is None:
        raise UsageError("--skip-completed-jobs needs a database (set DATABASE_URL)")
    return _CopyJob(
        queues=plan.queues,
        dlq_url=plan.dlq_url,
        target_url=plan.target_url,
        flt=r.message_filter,
        dry_run=dry,
        max_messages=r.max_messages,
        rate=r.rate,
        workers=r.workers,
        store=plan.store,
        skip_completed_jobs=r.skip_completed_jobs,
        canary=r.canary,
        canary_wait_seconds=r.canary_wait_seconds,
        lease_seconds=r.lease_seconds,
        progress=progress,
        checkpoint=checkpoint,
    )
