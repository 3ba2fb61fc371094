"""Runbooks: markdown documents whose steps are `dbops ...` command lines.

A step is one line of a fenced `console` block starting with `dbops` (or `$ dbops`).
A trailing `# exits: 0,1` comment lists exit codes that do not count as failure (for
diagnosis steps such as `dbops audit` whose exit code is a verdict). Placeholders
`{NAME}` are filled from `--set NAME=VALUE`.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from importlib import resources
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from dbops.errors import NotFoundError, UsageError
from dbops.services.redact import redact_text

# Subcommands that change something: the runner asks before them and passes --yes /
# --dry-run through. Keyed by (group, command); None matches any command of the group.
DESTRUCTIVE: set[tuple[str, str | None]] = {
    ("jobs", "recover"),
    ("jobs", "requeue"),
    ("jobs", "retry"),
    ("jobs", "fail"),
    ("dlq", "redrive"),
    ("dlq", "purge"),
    ("dlq", "delete"),
    ("dlq", "redrive-cancel"),
    ("ratelimit", "set"),
    ("ratelimit", "enable"),
    ("ratelimit", "disable"),
    ("ratelimit", "reset"),
    ("ratelimit", "block"),
    ("ratelimit", "unblock"),
    ("ratelimit", "cleanup"),
    ("db", "migrate"),
}
# Commands that take --yes but not --dry-run.
NO_DRY_RUN: set[tuple[str, str]] = {("dlq", "redrive-cancel")}

_FENCE = re.compile(r"^```console\s*$")
_PLACEHOLDER = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


class Step(BaseModel):
    number: int
    command: str
    argv: list[str]
    ok_exits: list[int] = Field(default_factory=lambda: [0])
    destructive: bool
    section: str | None = None


class Runbook(BaseModel):
    """`dbops runbook show NAME -o json`: `{"name", "title", "summary", "inputs": [the
    {PLACEHOLDER} names `--set` fills], "steps": [{"number", "command", "argv",
    "ok_exits", "destructive", "section"}]}` (the markdown itself is `-o md`)."""

    name: str
    title: str
    summary: str
    steps: list[Step]
    text: str = Field(exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def inputs(self) -> list[str]:
        return self.placeholders

    @property
    def placeholders(self) -> list[str]:
        return sorted({p for s in self.steps for p in _PLACEHOLDER.findall(s.command)})


class RunbookInfo(BaseModel):
    """One row of `dbops runbook list -o json`."""

    name: str
    title: str
    summary: str
    steps: int
    inputs: list[str]


class StepResult(BaseModel):
    number: int
    command: str
    exit_code: int | None
    duration_ms: int
    status: Literal["ok", "failed", "skipped", "refused", "dry_run"]


class RunResult(BaseModel):
    """`dbops runbook run -o json`: one entry per step, and where to resume."""

    runbook: str
    steps: list[StepResult]
    ok: bool
    resume_from: int | None = None
    dry_run: bool


def is_destructive(argv: list[str]) -> bool:
    if "--dry-run" in argv:  # an explicit preview step changes nothing
        return False
    words = [a for a in argv[1:] if not a.startswith("-")]
    if not words:
        return False
    group = words[0]
    command = words[1] if len(words) > 1 else None
    return (group, command) in DESTRUCTIVE or (group, None) in DESTRUCTIVE


def parse_steps(text: str) -> list[Step]:
    steps: list[Step] = []
    in_block = False
    section: str | None = None
    for line in text.splitlines():
        if not in_block and line.startswith("#"):
            section = line.lstrip("#").strip()
        if _FENCE.match(line.strip()):
            in_block = True
            continue
        if in_block and line.strip().startswith("```"):
            in_block = False
            continue
        if not in_block:
            continue
        command = line.strip().removeprefix("$ ").strip()
        if not command.startswith("dbops "):
            continue
        ok_exits = [0]
        if "#" in command:
            command, _, comment = command.partition(" #")
            match = re.search(r"exits:\s*([\d,\s]+)", comment)
            if match:
                ok_exits = [int(x) for x in match.group(1).replace(" ", "").split(",") if x]
            command = command.strip()
        argv = shlex.split(command)
        steps.append(
            Step(
                number=len(steps) + 1,
                command=command,
                argv=argv,
                ok_exits=ok_exits,
                destructive=is_destructive(argv),
                section=section,
            )
        )
    return steps


def _parse(name: str, text: str) -> Runbook:
    title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), name)
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip() and not p.startswith("#")]
    summary = " ".join(paragraphs[0].split()) if paragraphs else ""
    return Runbook(name=name, title=title, summary=summary, steps=parse_steps(text), text=text)


def available() -> dict[str, str]:
    """Runbook name -> markdown text, from the package (so installs have them)."""
    folder = resources.files("dbops.runbooks")
    return {
        entry.name[:-3]: entry.read_text()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".md")
    }


def load(name: str) -> Runbook:
    books = available()
    if name not in books:
        raise NotFoundError(
            f"no runbook named {name!r}", hint=f"known: {', '.join(books) or 'none'}"
        )
    return _parse(name, books[name])


def catalogue() -> list[RunbookInfo]:
    infos = []
    for name, text in available().items():
        book = _parse(name, text)
        infos.append(
            RunbookInfo(
                name=name,
                title=book.title,
                summary=book.summary,
                steps=len(book.steps),
                inputs=book.placeholders,
            )
        )
    return infos


def parse_assignments(items: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            raise UsageError(f"invalid --set {item!r}: use NAME=VALUE with an upper-case NAME")
        values[key] = value
    return values


def prepare(book: Runbook, *, inputs: dict[str, str], dry_run: bool, yes: bool) -> list[Step]:
    """Steps with placeholders filled and --yes/--dry-run added where they apply."""
    missing = [p for p in book.placeholders if p not in inputs]
    if missing:
        raise UsageError(
            f"runbook {book.name} needs inputs: {', '.join(missing)}",
            hint="pass --set NAME=VALUE for each",
        )
    prepared = []
    for step in book.steps:
        argv = [_PLACEHOLDER.sub(lambda m: inputs[m.group(1)], a) for a in step.argv]
        if step.destructive:
            words = tuple(a for a in argv[1:3] if not a.startswith("-"))
            if dry_run and words not in NO_DRY_RUN and "--dry-run" not in argv:
                argv.append("--dry-run")
            elif yes and "--yes" not in argv:
                argv.append("--yes")
        # `command` is what is shown and returned; a filled-in placeholder may hold an API
        # key (rate-limit identifiers), so it is redacted. `argv` is what runs.
        shown = redact_text(shlex.join(argv))
        prepared.append(step.model_copy(update={"argv": argv, "command": shown}))
    return prepared


def run(
    book: Runbook,
    *,
    steps: list[Step],
    start: int,
    dry_run: bool,
    execute: Callable[[Step], int],
    approve: Callable[[Step], bool],
) -> RunResult:
    """Run steps from `start` in order; stop at the first failing or refused step.

    `execute` runs one step and returns its exit code; `approve` is asked before each
    destructive step that is not a dry run (the CLI asks on a TTY, or says yes for --yes).
    """
    if start < 1 or start > len(steps):
        raise UsageError(f"--from {start} is out of range: {book.name} has {len(steps)} steps")
    results: list[StepResult] = []
    for step in steps:
        if step.number < start:
            results.append(
                StepResult(
                    number=step.number,
                    command=step.command,
                    exit_code=None,
                    duration_ms=0,
                    status="skipped",
                )
            )
            continue
        if step.destructive and not dry_run and not approve(step):
            results.append(
                StepResult(
                    number=step.number,
                    command=step.command,
                    exit_code=None,
                    duration_ms=0,
                    status="refused",
                )
            )
            return RunResult(
                runbook=book.name, steps=results, ok=False, resume_from=step.number, dry_run=dry_run
            )
        began = time.perf_counter()
        code = execute(step)
        elapsed = int((time.perf_counter() - began) * 1000)
        ok = code in step.ok_exits
        status: Literal["ok", "failed", "dry_run"] = (
            ("dry_run" if dry_run and step.destructive else "ok") if ok else "failed"
        )
        results.append(
            StepResult(
                number=step.number,
                command=step.command,
                exit_code=code,
                duration_ms=elapsed,
                status=status,
            )
        )
        if not ok:
            return RunResult(
                runbook=book.name, steps=results, ok=False, resume_from=step.number, dry_run=dry_run
            )
    return RunResult(runbook=book.name, steps=results, ok=True, dry_run=dry_run)
