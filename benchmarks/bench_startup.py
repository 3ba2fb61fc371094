"""Benchmark: CLI startup. `dbops --help` and `dbops dlq --help` against a minimal Typer
hello-world's `--help` and against `python -c pass`, measured in the same run.

Run: `uv run python -m benchmarks.bench_startup` (or `uv run python -m benchmarks startup`).
Goal: dbops' help no slower than the hello world (ratio <= 1.0x).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELLO = '''
import typer

app = typer.Typer()


@app.command()
def hello(name: str = "world") -> None:
    """Say hello."""
    typer.echo(f"hello {name}")


@app.command()
def bye() -> None:
    """Say bye."""


if __name__ == "__main__":
    app()
'''

RUNS = 15


def median_seconds(argv: list[str], runs: int = RUNS) -> float:
    subprocess.run(argv, capture_output=True, check=True)  # warm the file cache
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        hello = Path(folder) / "hello.py"
        hello.write_text(HELLO)
        python = [sys.executable]
        timings = {
            "python -c pass": median_seconds([*python, "-c", "pass"]),
            "typer hello --help": median_seconds([*python, str(hello), "--help"]),
            "dbops --help": median_seconds([*python, "-m", "dbops", "--help"]),
            "dbops dlq --help": median_seconds([*python, "-m", "dbops", "dlq", "--help"]),
            "dbops jobs stale --help": median_seconds(
                [*python, "-m", "dbops", "jobs", "stale", "--help"]
            ),
        }
    base = timings["typer hello --help"]
    bare = timings["python -c pass"]
    print(f"startup (median of {RUNS} runs, Python {sys.version.split()[0]})")
    for name, seconds in timings.items():
        print(
            f"  {name:<26} {seconds * 1000:7.1f} ms   {seconds / base:5.2f}x hello"
            f"   {seconds / bare:5.2f}x python"
        )
    ratio = timings["dbops --help"] / base
    print(
        f"  goal: dbops --help <= 1.0x typer hello: {'met' if ratio <= 1.0 else 'NOT met'}"
        f" ({ratio:.2f}x)"
    )
    return timings


if __name__ == "__main__":
    main()
