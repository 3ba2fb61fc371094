"""The documentation cannot drift from the CLI.

- docs/cli.md is generated from --help (`uv run python -m dbops.cli.reference > docs/cli.md`)
- every `dbops ...` command line in README.md, docs/ and the packaged runbooks names a real
  command and only options that command (or the global options) accepts.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from dbops.cli.reference import generate, resolve

ROOT = Path(__file__).parents[1]
GLOBAL_OPTIONS = {
    "--profile",
    "--debug",
    "--env-file",
    "--region",
    "--endpoint-url",
    "--help",
    "-h",
    "--version",
    "--no-headers",
}


def documents() -> list[Path]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    docs += sorted((ROOT / "src" / "dbops" / "runbooks").glob("*.md"))
    return [d for d in docs if d.name != "cli.md"]


def command_lines(text: str) -> list[str]:
    found: list[str] = []
    in_block = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_block = not in_block
            continue
        candidates = [line] if in_block else re.findall(r"`((?:uv run )?dbops [^`]*)`", line)
        for candidate in candidates:
            candidate = candidate.replace("\\|", "\x00")
            for piece in re.split(r"\||&&|;|\$\(|\)", candidate):
                piece = piece.split(" #", 1)[0].split(">", 1)[0].strip()
                piece = re.sub(r"^(\$ |uv run |- run: |run: )", "", piece).strip()
                match = re.search(r"(?:^|\s)(dbops(?:\s.*)?)$", piece)
                if match and not match.group(1).startswith("dbops["):
                    found.append(match.group(1).strip())
    return found


def option_names(command: click.Command) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def all_doc_commands() -> list[tuple[str, str]]:
    return [
        (str(doc.relative_to(ROOT)), line)
        for doc in documents()
        for line in command_lines(doc.read_text())
    ]


def test_docs_mention_commands():
    assert len(all_doc_commands()) > 10


@pytest.mark.parametrize(("doc", "line"), all_doc_commands())
def test_documented_command_lines_parse(doc, line):
    tokens = shlex.split(line.replace("\x00", "|").replace("[", " ").replace("]", " "))
    tokens = [t.split("|", 1)[0] for t in tokens]
    if "..." in tokens:  # "dbops jobs ..." stands for any command of the group
        tokens = tokens[: tokens.index("...")]
    try:
        path, command, rest = resolve(tokens)
    except LookupError as exc:
        pytest.fail(f"{doc}: `{line}`: {exc}")
    known = option_names(command) | GLOBAL_OPTIONS
    for token in rest:
        if token.startswith("-") and not re.fullmatch(r"-\d+", token) and token != "-":
            name = token.split("=", 1)[0]
            assert name in known, f"{doc}: `{line}`: `{' '.join(path)}` has no option {name}"


def test_cli_reference_is_current():
    current = (ROOT / "docs" / "cli.md").read_text() if (ROOT / "docs" / "cli.md").exists() else ""
    assert current == generate(), (
        "docs/cli.md is stale: run `uv run python -m dbops.cli.reference > docs/cli.md`"
    )
