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


def run_checks(
    *,
    settings: Settings,
    store_factory: Callable[[], Store],
    queues_factory: Callable[[], Queues],
) -> DoctorReport:
    checks: list[DoctorCheck] = []

    def add(
        name: str,
        status: CheckStatus,
        detail: str,
        hint: str | None = None,
        kind: Literal["config", "remote", "info"] = "remote",
    ) -> None:
        checks.append(DoctorCheck(name=name, status=status, detail=detail, hint=hint, kind=kind))

    missing = []
    if settings.effective_transport is None:
        missing.append("DATABASE_URL (or SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY)")
    if not settings.sqs_queue_url:
        missing.append("SQS_QUEUE_URL")
    if not settings.sqs_dlq_url:
        missing.append("SQS_DLQ_URL")
    if missing:
        add(
            "configuration",
            "fail",
            "missing: " + ", ".join(missing),
            "set them in the environment or a profile (`dbops sandbox up` writes one)",
            "config",
        )
    else:
        add(
            "configuration",
            "pass",
            f"transport {settings.effective_transport}, profile {settings.profile or 'default'}",
            kind="config",
        )

    # Database
    if settings.effective_transport is None:
        add("database reachable", "skip", "no database configured")
        add("dbops migrations", "skip", "no database configured")
        add("application schema", "skip", "no database configured")
    else:
        try:
            store = store_factory()
            latency = store.ping()
            add("database reachable", "pass", f"{store.transport}, {latency:.1f} ms round trip")
            try:
                states = migrations.status(store=store)
                pending = [s.version for s in states if s.status != "applied"]
                if pending:
                    add(
                        "dbops migrations",
                        "fail",
                        f"{len(pending)} pending: {', '.join(pending)}",
                        "run `dbops db migrate`",
                    )
                else:
                    add("dbops migrations", "pass", f"{len(states)} applied")
            except DbopsError as exc:
                add("dbops migrations", "fail", exc.one_line(), "run `dbops db migrate`")
            try:
                schema = migrations.check(store=store)
                add(
                    "application schema",
                    "pass" if schema.compatible else "fail",
                    schema.summary,
                    None if schema.compatible else "run `dbops db check` for the details",
                    "config",
                )
            except DbopsError as exc:
                add("application schema", "fail", exc.one_line(), "run `dbops db check`")
        except DbopsError as exc:
            kind: Literal["config", "remote"] = (
                "config" if isinstance(exc, ConfigError) else "remote"
            )
            add("database reachable", "fail", exc.one_line(), exc.hint, kind)
            add("dbops migrations", "skip", "database unreachable")
            add("application schema", "skip", "database unreachable")

    # Queues
    redrive_target: str | None = None
    dlq_arn: str | None = None
    if settings.sqs_queue_url or settings.sqs_dlq_url:
        try:
            queues = queues_factory()
        except DbopsError as exc:
            add("SQS", "fail", exc.one_line(), exc.hint)
            queues = None
        for label, url in (
            ("SQS main queue", settings.sqs_queue_url),
            ("SQS dead-letter queue", settings.sqs_dlq_url),
        ):
            if queues is None:
                break
            if not url:
                add(label, "skip", "not configured")
                continue
            try:
                attrs = queues.get_attributes(url)
                add(
                    label,
                    "pass",
                    f"{queue_name(url)}: {attrs.get('ApproximateNumberOfMessages', '?')} visible",
                )
                if label == "SQS main queue" and attrs.get("RedrivePolicy"):
                    redrive_target = json.loads(attrs["RedrivePolicy"]).get("deadLetterTargetArn")
                if label == "SQS dead-letter queue":
                    dlq_arn = attrs.get("QueueArn")
            except DbopsError as exc:
                add(label, "fail", exc.one_line(), "check the queue URL and region")
        if settings.sqs_queue_url and settings.sqs_dlq_url and queues is not None:
            if redrive_target is None:
                main_ok = any(c.name == "SQS main queue" and c.status == "pass" for c in checks)
                if main_ok:
                    add(
                        "redrive policy",
                        "fail",
                        "the main queue has no redrive policy",
                        "attach the DLQ with maxReceiveCount 3",
                    )
                else:
                    add("redrive policy", "skip", "main queue unreachable")
            elif dlq_arn and redrive_target != dlq_arn:
                add(
                    "redrive policy",
                    "fail",
                    f"points at {queue_name(redrive_target)}, not {queue_name(dlq_arn)}",
                    "fix SQS_DLQ_URL or the queue's redrive policy",
                )
            elif dlq_arn:
                add("redrive policy", "pass", f"main queue -> {queue_name(dlq_arn)}")
            else:
                add("redrive policy", "skip", "dead-letter queue unreachable")
        if queues is not None:
            arn = queues.caller_identity()
            if arn:
                add("AWS caller identity", "pass", arn, kind="info")
            else:
                add("AWS caller identity", "skip", "endpoint does not tell", kind="info")
    else:
        add("SQS", "skip", "no queues configured")

    failed = [c for c in checks if c.status == "fail"]
    if any(c.kind == "config" for c in failed):
        code = ExitCode.CONFIG
    elif failed:
        code = ExitCode.REMOTE
    else:
        code = ExitCode.OK
    return DoctorReport(checks=checks, ok=not failed, exit_code=int(code))
