"""The reliability suite: everything under tests/reliability is marked `reliability`.

Select it with `uv run pytest -m reliability` (docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent.resolve()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.reliability)
