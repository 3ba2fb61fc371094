"""`dbops doctor`: is this machine ready to operate the backend?"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from dbops.errors import ConfigError, DbopsError, ExitCode
from dbops.names import queue_name
from dbops.ports import Queues, Store
from dbops.services import migrations

if TYPE_CHECKING:  # pydantic-settings stays off the `dbops doctor --help` path
    from dbops.settings import Settings

CheckStatus = Literal["pass", "fail", "skip"]


class DoctorCheck(BaseModel):
    name: str
    status: CheckStatus
    detail: str
    hint: str | None = None
    kind: Literal["config", "remote", "info"] = "remote"


class DoctorReport(BaseModel):
    """`dbops doctor -o json`: every check, and the exit code they add up to."""

    checks: list[DoctorCheck]
    ok: bool
    exit_code: int


class _Checks(list[DoctorCheck]):
    def add(
        self,
        name: str,
        status: CheckStatus,
        detail: str,
        hint: str | None = None,
        kind: Literal["config", "remote", "info"] = "remote",
    ) -> None:
        self.append(DoctorCheck(name=name, status=status, detail=detail, hint=hint, kind=kind))


def run_checks(
    *,
    settings: Settings,
    store_factory: Callable[[], Store],
    queues_factory: Callable[[], Queues],
) -> DoctorReport:
    checks = _Checks()
    _configuration(checks, settings)
    _database(checks, settings, store_factory)
    _queues(checks, settings, queues_factory)
    failed = [c for c in checks if c.status == "fail"]
    if any(c.kind == "config" for c in failed):
        code = ExitCode.CONFIG
    elif failed:
        code = ExitCode.REMOTE
    else:
        code = ExitCode.OK
    return DoctorReport(checks=list(checks), ok=not failed, exit_code=int(code))


def _configuration(checks: _Checks, settings: Settings) -> None:
    missing = []
    if settings.effective_transport is None:
        missing.append("DATABASE_URL (or SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY)")
    if not settings.sqs_queue_url:
        missing.append("SQS_QUEUE_URL")
    if not settings.sqs_dlq_url:
        missing.append("SQS_DLQ_URL")
    if missing:
        checks.add(
            "configuration",
            "fail",
            "missing: " + ", ".join(missing),
            "set them in the environment or a profile (`dbops sandbox up` writes one)",
            "config",
        )
    else:
        checks.add(
            "configuration",
            "pass",
            f"transport {settings.effective_transport}, profile {settings.profile or 'default'}",
            kind="config",
        )


def _database(checks: _Checks, settings: Settings, store_factory: Callable[[], Store]) -> None:
    if settings.effective_transport is None:
        for name in ("database reachable", "dbops migrations", "application schema"):
            checks.add(name, "skip", "no database configured")
        return
    try:
        store = store_factory()
        latency = store.ping()
    except DbopsError as exc:
        kind: Literal["config", "remote"] = "config" if isinstance(exc, ConfigError) else "remote"
        checks.add("database reachable", "fail", exc.one_line(), exc.hint, kind)
        checks.add("dbops migrations", "skip", "database unreachable")
        checks.add("application schema", "skip", "database unreachable")
        return
    checks.add("database reachable", "pass", f"{store.transport}, {latency:.1f} ms round trip")
    try:
        states = migrations.status(store=store)
        pending = [s.version for s in states if s.status != "applied"]
        if pending:
            checks.add(
                "dbops migrations",
                "fail",
                f"{len(pending)} pending: {', '.join(pending)}",
                "run `dbops db migrate`",
            )
        else:
            checks.add("dbops migrations", "pass", f"{len(states)} applied")
    except DbopsError as exc:
        checks.add("dbops migrations", "fail", exc.one_line(), "run `dbops db migrate`")
    try:
        schema = migrations.check(store=store)
        checks.add(
            "application schema",
            "pass" if schema.compatible else "fail",
            schema.summary,
            None if schema.compatible else "run `dbops db check` for the details",
            "config",
        )
    except DbopsError as exc:
        checks.add("application schema", "fail", exc.one_line(), "run `dbops db check`")


def _queues(checks: _Checks, settings: Settings, queues_factory: Callable[[], Queues]) -> None:
    if not (settings.sqs_queue_url or settings.sqs_dlq_url):
        checks.add("SQS", "skip", "no queues configured")
        return
    try:
        queues = queues_factory()
    except DbopsError as exc:
        checks.add("SQS", "fail", exc.one_line(), exc.hint)
        return
    redrive_target: str | None = None
    dlq_arn: str | None = None
    for label, url in (
        ("SQS main queue", settings.sqs_queue_url),
        ("SQS dead-letter queue", settings.sqs_dlq_url),
    ):
        if not url:
            checks.add(label, "skip", "not configured")
            continue
        try:
            attrs = queues.get_attributes(url)
        except DbopsError as exc:
            checks.add(label, "fail", exc.one_line(), "check the queue URL and region")
            continue
        visible = attrs.get("ApproximateNumberOfMessages", "?")
        checks.add(label, "pass", f"{queue_name(url)}: {visible} visible")
        if label == "SQS main queue" and attrs.get("RedrivePolicy"):
            redrive_target = json.loads(attrs["RedrivePolicy"]).get("deadLetterTargetArn")
        if label == "SQS dead-letter queue":
            dlq_arn = attrs.get("QueueArn")
    if settings.sqs_queue_url and settings.sqs_dlq_url:
        _redrive_policy(checks, redrive_target, dlq_arn)
    arn = queues.caller_identity()
    if arn:
        checks.add("AWS caller identity", "pass", arn, kind="info")
    else:
        checks.add("AWS caller identity", "skip", "endpoint does not tell", kind="info")


def _redrive_policy(checks: _Checks, redrive_target: str | None, dlq_arn: str | None) -> None:
    if redrive_target is None:
        if any(c.name == "SQS main queue" and c.status == "pass" for c in checks):
            checks.add(
                "redrive policy",
                "fail",
                "the main queue has no redrive policy",
                "attach the DLQ with maxReceiveCount 3",
            )
        else:
            checks.add("redrive policy", "skip", "main queue unreachable")
    elif dlq_arn and redrive_target != dlq_arn:
        checks.add(
            "redrive policy",
            "fail",
            f"points at {queue_name(redrive_target)}, not {queue_name(dlq_arn)}",
            "fix SQS_DLQ_URL or the queue's redrive policy",
        )
    elif dlq_arn:
        checks.add("redrive policy", "pass", f"main queue -> {queue_name(dlq_arn)}")
    else:
        checks.add("redrive policy", "skip", "dead-letter queue unreachable")
