"""The one progress bar (cli/_progress.py): on a terminal only, never past the work."""

from __future__ import annotations

import pytest

from dbops.cli._progress import progress_bar


def test_off_a_terminal_there_is_no_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar("scanning", 10) as bar:
        assert bar is None
    assert capsys.readouterr().err == ""


def test_disabled_there_is_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    with progress_bar("scanning", 10, enabled=False) as bar:
        assert bar is None


def test_on_a_terminal_the_bar_counts_and_grows_with_the_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "120")
    with progress_bar("scanning", 5, matched=True, elapsed=True, transient=False) as bar:
        assert bar is not None
        bar(3, matched=1)
        bar(8, matched=2, description="scanned")  # more than the estimate
    err = capsys.readouterr().err
    assert "8/8" in err and "2 matched" in err and "scanned" in err
