"""Run benchmarks: `uv run python -m benchmarks [NAME...]` (default: all).

Names: startup, jobs, bulk_retry, redrive, purge, dlq_stats, ratelimit, audit, masking,
workers, top, moto.
Each prints its own figures and ratios, and which SQS implementation and Postgres it ran on.
Not part of the test suite.
"""

from __future__ import annotations

import importlib
import sys
import time

NAMES = [
    "startup",
    "jobs",
    "bulk_retry",
    "redrive",
    "purge",
    "dlq_stats",
    "ratelimit",
    "audit",
    "masking",
    "workers",
    "top",
    "moto",
]


def main(argv: list[str]) -> int:
    chosen = argv or NAMES
    unknown = [n for n in chosen if n not in NAMES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(NAMES)}")
        return 2
    for name in chosen:
        print(f"\n=== {name}", flush=True)
        began = time.perf_counter()
        module = importlib.import_module(f"benchmarks.bench_{name}")
        if name in ("redrive", "purge", "dlq_stats", "moto"):
            module.main([])
        else:
            module.main()
        print(f"=== {name}: {time.perf_counter() - began:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
