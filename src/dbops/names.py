"""Names shown for queues: the one helper every layer uses."""

from __future__ import annotations


def queue_name(queue: str) -> str:
    """The queue name from a queue URL or ARN (or the name itself)."""
    text = queue.rstrip("/")
    if text.startswith("arn:"):
        return text.rsplit(":", 1)[-1]
    return text.rsplit("/", 1)[-1]
