"""Code-shape rules that keep commands and services readable (CONTRIBUTING, "Layout").

No function in `src/dbops/cli` or `src/dbops/services` is longer than 80 lines (decorators
and docstring included) unless a `# long: why` comment says why a split would hurt: on the
line just above it (above its decorators), or right after its docstring.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dbops"
ROOTS = ("cli", "services")
MAX_LINES = 80
MARK = "# long:"


def _justified(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef, start: int) -> bool:
    """A `# long:` comment in the comment block right above the function (or its
    decorators), or right after its docstring (before its next statement)."""
    above = start - 2
    while above >= 0 and lines[above].strip().startswith("#"):
        if lines[above].strip().startswith(MARK):
            return True
        above -= 1
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        after = body[0].end_lineno or body[0].lineno
        following = body[1].lineno if len(body) > 1 else node.end_lineno or after
        return any(lines[i - 1].strip().startswith(MARK) for i in range(after + 1, following))
    return False


def long_functions(root: Path, *, base: Path = SRC.parent) -> list[str]:
    """`path:line name (N lines)` for every function over MAX_LINES without a why-comment."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - start + 1
            if length > MAX_LINES and not _justified(lines, node, start):
                where = f"{path.relative_to(base)}:{node.lineno}"
                found.append(f"{where} {node.name} ({length} lines)")
    return found


@pytest.mark.parametrize("area", ROOTS)
def test_no_function_over_80_lines_without_a_reason(area: str) -> None:
    offenders = long_functions(SRC / area)
    assert not offenders, (
        f"functions over {MAX_LINES} lines: split them (option declarations go in Annotated "
        f"aliases), or put a `{MARK} why` comment right above the def:\n  " + "\n  ".join(offenders)
    )


def test_the_length_rule_catches_a_long_function(tmp_path: Path) -> None:
    """The checker itself: a long function is reported unless it carries the comment."""
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    (tmp_path / "bare.py").write_text(f"def bare():\n{body}")
    (tmp_path / "above.py").write_text(f"# long: a table\n# of draws\ndef above():\n{body}")
    (tmp_path / "apart.py").write_text(f"# long: a table\n\ndef apart():\n{body}")
    (tmp_path / "inside.py").write_text(
        f'def inside():\n    """Doc."""\n    # long: a table of draws\n{body}'
    )
    (tmp_path / "short.py").write_text("def short():\n    return 1\n")
    offenders = long_functions(tmp_path, base=tmp_path)
    assert [o.split(":")[0] for o in offenders] == ["apart.py", "bare.py"]
