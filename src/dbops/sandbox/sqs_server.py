"""The sandbox's SQS server: moto's own (`python -m dbops.sandbox.sqs_server -H HOST -p PORT`),
with two of its hot functions replaced by cheaper ones that return the same values, and one
race closed.

moto 5 reads the clock through a datetime round trip (`unix_time_millis()`: utcnow, an epoch
datetime, a timedelta) for every message on every visibility check, and converts attribute
names to snake_case character by character on every request. On a queue of a few hundred
messages that is most of the server's CPU: a ReceiveMessage cost ~0.35 s of CPU at a depth
of 500, about 0.1 s after. Both functions are pure (the clock one returns time.time() when
given no argument), so moto's answers, HTTP handling and queue semantics are unchanged.

The race: moto's `Queue.delete_message` rebuilds the queue's message list from a copy
without the lock `add_message` takes, and its server answers requests on threads. Two
DeleteMessageBatch calls at once (dbops deletes in parallel batches) could each rebuild
from the same copy, so one deletion came undone; a message sent meanwhile could vanish.
Real SQS does neither; the wrapper takes the queue's lock for the rebuild.

The test suite's in-process moto server gets the same changes (tests/conftest.py).
"""

from __future__ import annotations

import functools
import time
from typing import Any


def speed_up_moto_sqs() -> None:
    """Install the replacements and the lock in moto's SQS modules (idempotent)."""
    import moto.core.responses as responses
    import moto.core.utils as utils
    import moto.sqs.models as models

    if getattr(models, "_dbops_fast", False):
        return
    slow_time, slow_millis = utils.unix_time, utils.unix_time_millis

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else slow_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else slow_millis(dt)

    snake = functools.lru_cache(maxsize=4096)(utils.camelcase_to_underscores)
    unlocked_delete = models.Queue.delete_message

    def delete_message(queue: Any, receipt_handle: str) -> None:
        with queue._messages_lock:
            unlocked_delete(queue, receipt_handle)

    models.unix_time = unix_time
    models.unix_time_millis = unix_time_millis
    models.camelcase_to_underscores = snake
    responses.camelcase_to_underscores = snake
    setattr(models.Queue, "delete_message", delete_message)  # noqa: B010 (typed as a method)
    models._dbops_fast = True  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    speed_up_moto_sqs()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main()
