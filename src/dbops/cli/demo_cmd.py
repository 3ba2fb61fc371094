"""`dbops demo`."""

from __future__ import annotations


def demo() -> None:
    """Start the sandbox, seed an incident and show what is wrong."""
