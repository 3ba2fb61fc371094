"""load_json on bodies that nest deeper than the interpreter's recursion limit."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from dbops.services.redact import NOT_JSON, load_json

DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture
def collections_seen() -> Iterator[list[int]]:
    """Every garbage collection that starts inside the JSON parser (json's raw_decode on
    the stack), with the collector set to run very often."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        frame = sys._getframe(1)
        while phase == "start" and frame is not None:
            if frame.f_code.co_name == "raw_decode":
                seen.append(info["generation"])
                return
            frame = frame.f_back

    thresholds = gc.get_threshold()
    gc.set_threshold(10, 10, 10)
    gc.callbacks.append(record)
    try:
        yield seen
    finally:
        gc.callbacks.remove(record)
        gc.set_threshold(*thresholds)


def test_no_collection_runs_inside_a_parse_thousands_deep(collections_seen):
    # A collection down there runs finalizers with no stack left: their RecursionError
    # comes out as "Exception ignored in ..." on stderr (seen in `dlq stats` over TLS).
    assert load_json(DEEP) is NOT_JSON
    assert collections_seen == []
    assert gc.isenabled()


def test_ordinary_bodies_parse_with_the_collector_on(collections_seen):
    assert load_json('{"job_id": "j-1", "items": [1, 2, 3]}') == {
        "job_id": "j-1",
        "items": [1, 2, 3],
    }
    wide = "[" + ",".join(['{"n": [1]}'] * 2000) + "]"  # many brackets, shallow: parsed
    assert load_json(wide) == [{"n": [1]}] * 2000
    assert gc.isenabled()


def test_the_fixture_sees_collections_inside_the_parser(collections_seen):
    """The fixture would notice a collection in the parser: a small, ordinary body parsed
    with the collector on is seen collecting there."""
    json.loads("[" + ",".join(['{"n": [1]}'] * 2000) + "]")
    assert collections_seen
