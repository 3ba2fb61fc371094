"""Slack notifications: the `Notifier` port and the Block Kit payloads dbops sends.

The webhook URL is a secret: it lives in the adapter (`dbops.adapters.webhook`) and is
never part of a payload, a result model or an error message.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from dbops.durations import format_duration


class Notifier(Protocol):
    """Posts one JSON payload; raises `RemoteError` (one line, no URL) on failure."""

    name: str

    def send(self, payload: dict[str, Any]) -> None: ...


class AlertMessage(BaseModel):
    """One of the first messages quoted in an alert."""

    message_id: str
    job_id: str | None = None
    customer: str | None = None
    reason: str | None = None
    age_seconds: float | None = None


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def _trim(text: str | None, size: int = 80) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1] + "…"


def next_commands(queue: str, *, profile: str | None = None) -> list[str]:
    """The exact dbops commands an on-call engineer runs next for this DLQ.

    With `profile` (the `--profile`/`DBOPS_PROFILE` the monitor ran with), each command
    names it, so a copied command reads the same database and queues as the monitor.
    """
    suffix = f" --profile {shlex.quote(profile)}" if profile else ""
    return [
        f"dbops dlq list --queue {queue}{suffix}",
        f"dbops dlq export --queue {queue} --out {queue}-review.jsonl{suffix}",
        f"dbops dlq redrive --queue {queue} --dry-run{suffix}",
    ]


def dlq_alert(
    *,
    queue: str,
    depth: int,
    threshold: int,
    previous_alert_depth: int | None,
    messages: Sequence[AlertMessage],
    profile: str | None = None,
) -> dict[str, Any]:
    """Block Kit payload for a DLQ depth alert (with a plain `text` fallback)."""
    headline = f"DLQ {queue}: {depth} message(s) (alert threshold {threshold})"
    if previous_alert_depth is not None:
        headline += f", up from {previous_alert_depth} at the last alert"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"DLQ alert: {queue}"}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Depth*\n{depth}"},
                {"type": "mrkdwn", "text": f"*Threshold*\n{threshold}"},
            ],
        },
    ]
    if messages:
        lines = [
            f"• job {_code(_trim(m.job_id, 40))} · customer {_code(_trim(m.customer, 40))} · "
            f"age {format_duration(m.age_seconds)} · reason: {_trim(m.reason)}"
            for m in messages[:5]
        ]
        title = f"*First {min(len(messages), 5)} message(s)*"
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": title + "\n" + "\n".join(lines)}}
        )
    commands = "\n".join(next_commands(queue, profile=profile))
    blocks.append(
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*Next steps*\n```{commands}```"},
        }
    )
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "sent by `dbops dlq monitor`"}]}
    )
    return {"text": headline, "blocks": blocks}
