"""Reading a `dlq replay` file: its lines (validated, masked exports refused), the
progress file, the plan, the target's facts and the preview. The sending is in
`replay.py`, whose docstring describes the file format and the exactly-once rule."""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from dbops.errors import RefusedError, UsageError
from dbops.names import queue_name
from dbops.ports import OutgoingMessage, Queues
from dbops.services.redact import JSON_MAX_DEPTH, NOT_JSON, load_json

PROGRESS_SUFFIX = ".replay-progress"
DEFAULT_MAX_MESSAGE_SIZE = 262144  # when the target's MaximumMessageSize cannot be read
FAILURES_KEPT = 200
CONSECUTIVE_FAILURES_FATAL = 3
MAX_WORKERS = 64

Progress = Callable[[int, int], None]  # (sent, failed)


# --------------------------------------------------------------------------- models
class ReplayFailure(BaseModel):
    message_id: str
    reason: str


class ReplayPreview(BaseModel):
    """`dbops dlq replay --dry-run -o json`, and what is shown before confirming.

    `messages` distinct message ids in the file (`duplicates` more lines repeat one);
    `already_sent` of them are listed in the progress file (a previous run sent them);
    `to_send` is what this run sends.
    """

    file: str
    progress_file: str
    source_queues: list[str]
    target: str
    target_fifo: bool
    lines: int
    messages: int
    duplicates: int
    already_sent: int
    to_send: int
    dry_run: bool = True


class ReplayResult(BaseModel):
    """`dbops dlq replay -o json`.

    `messages == already_sent + sent + failed + not_sent`; `not_sent` is non-zero only when
    the run stopped early (interrupted, or the target kept failing). `send_calls` counts
    SendMessageBatch calls, `per_call` the messages sent per call.
    """

    file: str
    progress_file: str
    target: str
    target_fifo: bool
    messages: int
    already_sent: int
    sent: int = 0
    failed: int = 0
    not_sent: int = 0
    failures: list[ReplayFailure] = Field(default_factory=list)
    failures_truncated: bool = False
    send_calls: int = 0
    per_call: float = 0.0
    interrupted: bool = False
    duration_seconds: float = 0.0
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        """The action-log counts (also of a partial result: a failed or interrupted run)."""
        return {
            "messages": self.messages,
            "already_sent": self.already_sent,
            "sent": self.sent,
            "failed": self.failed,
            "not_sent": self.not_sent,
            "send_calls": self.send_calls,
        }


# --------------------------------------------------------------------------- the file
@dataclass
class ReplayLine:
    number: int
    message_id: str
    body: str
    attributes: dict[str, Any]
    group_id: str | None
    job_id: str | None
    queue: str | None


def progress_path(path: Path) -> Path:
    return path.with_name(path.name + PROGRESS_SUFFIX)


def _masked_refusal(path: Path, number: int) -> RefusedError:
    return RefusedError(
        f"{path} is a masked export (line {number}): replaying it would put masked bodies "
        "on the queue",
        hint="replay a purge/delete backup (always raw) or an export written with --reveal",
    )


def _bad(path: Path, number: int, what: str) -> UsageError:
    return UsageError(
        f"{path} line {number}: {what}",
        hint="replay a file written by `dbops dlq export`, `dlq purge` or `dlq delete`",
    )


def sendable_attributes(raw: Any, *, path: Path, number: int) -> dict[str, Any]:
    """Message attributes as written in the file -> as SendMessage takes them: every data
    type kept as it was (custom suffixes such as `Number.float`, `Binary.gzip` included),
    binary values decoded from base64."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _bad(path, number, "message_attributes is not an object")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        data_type = value.get("DataType") if isinstance(value, dict) else None
        if not isinstance(data_type, str) or not data_type:
            raise _bad(path, number, f"attribute {name!r} has no DataType")
        if data_type.split(".", 1)[0] == "Binary":
            encoded = value.get("BinaryValue")
            if not isinstance(encoded, str):
                raise _bad(path, number, f"attribute {name!r} has no BinaryValue")
            try:
                decoded = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise _bad(path, number, f"attribute {name!r} is not base64") from None
            out[name] = {"DataType": data_type, "BinaryValue": decoded}
        else:
            text = value.get("StringValue")
            if not isinstance(text, str):
                raise _bad(path, number, f"attribute {name!r} has no StringValue")
            out[name] = {"DataType": data_type, "StringValue": text}
    return out


def read_lines(path: Path) -> Iterator[ReplayLine]:
    """Every message line of a replay file, validated, in file order (repeats included)."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                text = line.strip()
                if not text:
                    continue
                item = load_json(text)
                if item is NOT_JSON:
                    raise _bad(path, number, f"not JSON (or nested over {JSON_MAX_DEPTH} deep)")
                if not isinstance(item, dict):
                    raise _bad(path, number, "not a JSON object")
                if item.get("masked") is True:
                    raise _masked_refusal(path, number)
                if "dbops_export" in item:  # a header line, not a message
                    header = item["dbops_export"]
                    if isinstance(header, dict) and header.get("masked") is True:
                        raise _masked_refusal(path, number)
                    continue
                yield _line(item, path=path, number=number)
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not UTF-8 text") from None


def _line(item: dict[str, Any], *, path: Path, number: int) -> ReplayLine:
    message_id = item.get("message_id", item.get("MessageId"))
    if not isinstance(message_id, str) or not message_id.strip():
        raise _bad(path, number, "no message_id")
    body = item.get("body", item.get("Body"))
    if not isinstance(body, str):
        raise _bad(path, number, "no body (a manifest of ids alone cannot be replayed)")
    system = item.get("system_attributes")
    group = system.get("MessageGroupId") if isinstance(system, dict) else None
    queue = item.get("queue")
    job_id = item.get("job_id")
    return ReplayLine(
        number=number,
        message_id=message_id.strip(),
        body=body,
        attributes=sendable_attributes(
            item.get("message_attributes", item.get("MessageAttributes")), path=path, number=number
        ),
        group_id=group if isinstance(group, str) and group else None,
        job_id=job_id if isinstance(job_id, str) and job_id else None,
        queue=queue if isinstance(queue, str) and queue.strip() else None,
    )


def read_progress(path: Path) -> dict[str, str]:
    """message id -> target queue name, from a progress file (missing: empty). A torn last
    line (a kill while appending) is ignored: that entry's batch was not fsynced."""
    sent: dict[str, str] = {}
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return sent
    except OSError as exc:
        raise UsageError(f"cannot read the progress file {path}: {exc.strerror}") from None
    with handle:
        for line in handle:
            item = load_json(line)  # NOT_JSON: a torn last line, skipped
            if isinstance(item, dict) and isinstance(item.get("message_id"), str):
                sent[item["message_id"]] = str(item.get("target", ""))
    return sent


@dataclass
class ReplayPlan:
    path: Path
    lines: int
    messages: int
    duplicates: int
    source_queues: list[str]
    sent: dict[str, str]  # from the progress file

    @property
    def progress_file(self) -> Path:
        return progress_path(self.path)


def plan(path: Path) -> ReplayPlan:
    """Validate the whole file (nothing is sent from a file that is bad anywhere)."""
    path = Path(path)
    seen: set[str] = set()
    queues: dict[str, None] = {}
    lines = duplicates = 0
    for line in read_lines(path):
        lines += 1
        if line.message_id in seen:
            duplicates += 1
            continue
        seen.add(line.message_id)
        if line.queue:
            queues.setdefault(line.queue, None)
    if not seen:
        raise UsageError(f"{path} holds no messages")
    return ReplayPlan(
        path=path,
        lines=lines,
        messages=len(seen),
        duplicates=duplicates,
        source_queues=list(queues),
        sent=read_progress(progress_path(path)),
    )


def default_target(replay_plan: ReplayPlan) -> str:
    """The queue the messages came from (recorded in the file), when it names exactly one."""
    sources = replay_plan.source_queues
    if len(sources) != 1:
        what = (
            "records no source queue"
            if not sources
            else f"holds messages from {len(sources)} queues ({', '.join(sources[:5])})"
        )
        raise UsageError(f"{replay_plan.path} {what}", hint="name the target with --to QUEUE")
    return sources[0]


# --------------------------------------------------------------------------- sending
def deduplication_id(message_id: str) -> str:
    """Deterministic per original message: a re-run's resend is dropped by a FIFO queue."""
    return hashlib.sha256(f"dbops-replay:{message_id}".encode()).hexdigest()


def entry_size(entry: OutgoingMessage) -> int:
    size = len(entry.body.encode("utf-8", "surrogatepass"))
    for name, value in entry.message_attributes.items():
        size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
        if "BinaryValue" in value:
            size += len(value["BinaryValue"])
        else:
            size += len(str(value.get("StringValue", "")).encode())
    return size


@dataclass
class TargetFacts:
    url: str
    name: str
    fifo: bool
    max_message_size: int


def target_facts(queues: Queues, url: str) -> TargetFacts:
    attrs = queues.get_attributes(url)
    try:
        size = int(attrs.get("MaximumMessageSize") or DEFAULT_MAX_MESSAGE_SIZE)
    except ValueError:
        size = DEFAULT_MAX_MESSAGE_SIZE
    fifo = str(attrs.get("FifoQueue", "")).lower() == "true" or url.endswith(".fifo")
    return TargetFacts(url=url, name=queue_name(url), fifo=fifo, max_message_size=size)


def preview(*, replay_plan: ReplayPlan, target: TargetFacts) -> ReplayPreview:
    already = _already_sent(replay_plan, target)
    return ReplayPreview(
        file=str(replay_plan.path),
        progress_file=str(replay_plan.progress_file),
        source_queues=replay_plan.source_queues,
        target=target.name,
        target_fifo=target.fifo,
        lines=replay_plan.lines,
        messages=replay_plan.messages,
        duplicates=replay_plan.duplicates,
        already_sent=already,
        to_send=replay_plan.messages - already,
    )


def _already_sent(replay_plan: ReplayPlan, target: TargetFacts) -> int:
    others = sorted({t for t in replay_plan.sent.values() if t and t != target.name})
    if others:
        raise RefusedError(
            f"{replay_plan.progress_file} records a replay of {replay_plan.path} to "
            f"{', '.join(others[:3])}, not {target.name}",
            hint=f"remove {replay_plan.progress_file} to replay the whole file again",
        )
    return len(replay_plan.sent)


def validate(*, rate: float | None, workers: int) -> None:
    if rate is not None and (not math.isfinite(rate) or rate <= 0):
        raise UsageError(f"invalid --rate {rate:g}: must be greater than zero (messages/second)")
    if not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"invalid --workers {workers}: use 1 to {MAX_WORKERS}")
