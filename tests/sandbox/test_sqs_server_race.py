"""moto's message-list rebuild on delete, under concurrent deletes (dbops.sandbox.sqs_server)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any


def test_parallel_delete_batches_delete_every_message(queues: Any) -> None:
    """Without the lock, one run in three here left a deleted message in the queue: three
    rounds."""
    for _ in range(3):
        _round(queues.client, queues.dlq_url)


def _round(client: Any, url: str) -> None:
    for start in range(0, 300, 10):
        client.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)],
        )
    held: list[dict[str, Any]] = []
    while len(held) < 300:
        got = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600
        ).get("Messages", [])
        assert got, "the queue ran dry before every message was received"
        held.extend(got)
    batches = [held[i : i + 10] for i in range(0, len(held), 10)]

    def delete(batch: list[dict[str, Any]]) -> int:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        return len(client.delete_message_batch(QueueUrl=url, Entries=entries)["Successful"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert sum(pool.map(delete, batches)) == 300
    attributes = client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
