"""Benchmark: personal-data masking of message bodies (DESIGN.md invariant 7: linear).

Masks 1 MiB bodies of letters, digits, a letters+digits mix, random text with separators,
and shapes that were quadratic before (long runs with no match, dense near-misses), then
the whole `dlq list` row / `dlq show` / masked `dlq export` path for a 1 MiB body.
Ratios measured in the same run: 1 MiB time over 512 KiB time (2.0x means linear, 4.0x
quadratic), and the former regexes (kept here for comparison) on 8 and 16 KiB.

Run: `uv run python -m benchmarks.bench_masking` (or `uv run python -m benchmarks masking`).
Goals: a 1 MiB body of letters, digits or a mix masked in well under a second (< 0.25 s);
every shape, adversarial ones included, in under a second, scaling ~2x per doubling.
"""

from __future__ import annotations

import random
import re
import statistics
import string
import time
from collections.abc import Callable

from dbops.ports import QueueMessage
from dbops.services import dlq
from dbops.services.messages import parse
from dbops.services.redact import mask_text

MIB = 1024 * 1024
RUNS = 3
GOAL_SECONDS = 0.25  # letters, digits, letters+digits
WORST_SECONDS = 1.0  # any shape

# The masks as they were before this benchmark existed (quadratic on long runs).
_OLD_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_OLD_PHONE = re.compile(r"(?<![\w+-])[+(]?\d[\d\s().-]{6,}\d(?![\w-])")


def _old_mask(text: str) -> str:
    return _OLD_PHONE.sub("****", _OLD_EMAIL.sub("****", text))


def _random(size: int) -> str:
    rnd = random.Random(12)
    alphabet = string.ascii_letters + string.digits + " .-@+()_\n"
    return "".join(rnd.choices(alphabet, k=size))


def _repeat(unit: str) -> Callable[[int], str]:
    return lambda size: (unit * (size // len(unit) + 1))[:size]


INPUTS: dict[str, Callable[[int], str]] = {
    "letters": _repeat("x"),
    "digits": _repeat("7"),
    "letters+digits": _repeat("a1"),
    "random text": _random,
    "digit-dash runs": _repeat(" 1-"),
    "dotted words": _repeat("a."),
    "@ near-misses": _repeat("@a."),
    "dense emails": _repeat("a@b.cc "),
    "dense phones": _repeat("+1 555 123 4567 "),
}


def _seconds(fn: Callable[[], object], runs: int = RUNS) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> dict[str, float]:
    results: dict[str, float] = {}
    print(f"masking 1 MiB bodies (median of {RUNS} runs)")
    print(f"  {'input':<18} {'1 MiB':>9} {'512 KiB':>9} {'ratio':>6}")
    for name, build in INPUTS.items():
        full, half = build(MIB), build(MIB // 2)
        t_full = _seconds(lambda text=full: mask_text(text))
        t_half = _seconds(lambda text=half: mask_text(text))
        results[name] = t_full
        print(f"  {name:<18} {t_full * 1000:7.1f}ms {t_half * 1000:7.1f}ms {t_full / t_half:5.2f}x")

    message = parse(
        QueueMessage(
            message_id="m",
            receipt_handle="r",
            body=INPUTS["letters+digits"](MIB),
            attributes={"SentTimestamp": str(int(time.time() * 1000))},
        )
    )
    paths = {
        "dlq list row": lambda: dlq.list_row(message),
        "dlq show": lambda: dlq.message_detail(message, queue="q"),
        "dlq export (masked)": lambda: dlq.export_record(message, queue="q", mask=True),
        "slack alert line": lambda: dlq.alert_message(message),
    }
    print("whole paths over one 1 MiB letters+digits body")
    for name, fn in paths.items():
        results[name] = _seconds(fn)
        print(f"  {name:<22} {results[name] * 1000:7.1f} ms")

    print("former regexes, for comparison (quadratic)")
    for name in ("letters", "digits"):
        small, double = INPUTS[name](8 * 1024), INPUTS[name](16 * 1024)
        t_small = _seconds(lambda text=small: _old_mask(text), runs=1)
        t_double = _seconds(lambda text=double: _old_mask(text), runs=1)
        estimate = t_double * (MIB / (16 * 1024)) ** 2
        print(
            f"  {name:<18} 8 KiB {t_small * 1000:6.1f} ms, 16 KiB {t_double * 1000:6.1f} ms "
            f"({t_double / t_small:4.2f}x); 1 MiB would take ~{estimate / 60:.0f} min"
        )

    plain = max(results[name] for name in ("letters", "digits", "letters+digits"))
    worst = max(results[name] for name in INPUTS)
    print(
        f"  goal: letters/digits/mix 1 MiB < {GOAL_SECONDS:.2f} s: "
        f"{'met' if plain < GOAL_SECONDS else 'NOT met'} (slowest {plain * 1000:.0f} ms)"
    )
    print(
        f"  goal: any 1 MiB body < {WORST_SECONDS:.0f} s: "
        f"{'met' if worst < WORST_SECONDS else 'NOT met'} (slowest {worst * 1000:.0f} ms)"
    )
    return results


if __name__ == "__main__":
    main()
