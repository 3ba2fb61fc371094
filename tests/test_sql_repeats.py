"""The SQL under src/dbops/sql/ says each thing once (issue 14): no run of 6 or more lines
stands twice, in one file or across files; and the application schema's two variants come
from one template."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from dbops.services import migrations

SQL = Path(__file__).resolve().parents[1] / "src" / "dbops" / "sql"
MIN_RUN = 6


def _significant_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, the line with its white space folded), blank and comment lines left
    out (a comment between two copies does not make them different)."""
    lines = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        folded = " ".join(line.split())
        if folded and not folded.startswith("--"):
            lines.append((number, folded))
    return lines


def repeated_runs(root: Path, min_run: int = MIN_RUN) -> list[str]:
    """Every run of `min_run` significant lines that stands in more than one place."""
    places: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.sql")):
        lines = _significant_lines(path)
        for start in range(len(lines) - min_run + 1):
            run = tuple(text for _, text in lines[start : start + min_run])
            places[run].append(f"{path.relative_to(root)}:{lines[start][0]}")
    return [" ~ ".join(where) for where in places.values() if len(where) > 1]


def test_no_run_of_six_lines_is_repeated_in_the_sql() -> None:
    assert repeated_runs(SQL) == []


def test_the_check_finds_a_copied_run(tmp_path: Path) -> None:
    body = "\n".join(f"select {n};" for n in range(6))
    (tmp_path / "a.sql").write_text(f"-- one\n{body}\n")
    (tmp_path / "b.sql").write_text(f"begin;\n\n{body.replace(';', ';  ')}\nend;\n")
    assert repeated_runs(tmp_path) == ["a.sql:2 ~ b.sql:3"]
    (tmp_path / "b.sql").write_text(f"begin;\n{body.replace('5', '6')}\nend;\n")
    assert repeated_runs(tmp_path) == []


def test_both_schema_variants_render_from_one_template() -> None:
    standard = migrations.load_migrations("app")
    legacy = migrations.load_migrations("app_legacy")
    assert [m.version for m in standard] == ["app/0001"]
    assert [m.version for m in legacy] == ["app_legacy/0001"]
    for m in standard + legacy:
        markers = [line for line in m.sql.splitlines() if line.startswith("-- dbops:")]
        assert markers == []
    assert "customer_id text not null" in standard[0].sql
    assert "customer_id uuid not null" in legacy[0].sql
    assert "'failed', 'cancelled'))" in standard[0].sql
    assert "'failed'))" in legacy[0].sql  # legacy: no 'cancelled' status
    view = "create or replace view stale_workers"
    assert view in legacy[0].sql and view not in standard[0].sql


@pytest.mark.parametrize(
    "template",
    [
        "-- dbops:only legacy\nx\n",  # never closed
        "x\n-- dbops:end\n",  # closes nothing
        "-- dbops:only legacy\n-- dbops:only standard\n-- dbops:end\n",  # nested
    ],
)
def test_an_unbalanced_variant_marker_is_refused(template: str) -> None:
    with pytest.raises(ValueError, match="dbops:"):
        migrations.render_variant(template, "legacy")


def test_render_variant_keeps_the_shared_lines_and_the_variants_own() -> None:
    template = (
        "a\n-- dbops:only standard\ns\n-- dbops:end\n-- dbops:only legacy\nl\n-- dbops:end\nb\n"
    )
    assert migrations.render_variant(template, "standard") == "a\ns\nb\n"
    assert migrations.render_variant(template, "legacy") == "a\nl\nb\n"
