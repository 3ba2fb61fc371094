"""The shared rate limit of a copy redrive (also used by `dlq replay`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dbops.errors import UsageError


class TokenBucket:
    """Shared rate limit in messages per second (debt-based: average rate is exact)."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise UsageError("--rate must be greater than zero")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, min(rate, 10.0))
        self.tokens = self.capacity
        self._clock = clock
        self._updated = clock()
        self._lock = threading.Lock()

    def reserve(self, n: int) -> float:
        """Take `n` tokens now; return how long the caller must wait before using them."""
        with self._lock:
            now = self._clock()
            self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.rate)
            self._updated = now
            self.tokens -= n
            return max(0.0, -self.tokens / self.rate)
