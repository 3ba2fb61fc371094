"""Shell completion for bash, zsh and fish: scripts, installation, and what a TAB offers.

The shell calls `dbops` with `_DBOPS_COMPLETE=<shell>_complete` (click's protocol; the
`complete_<shell>` form of Typer's older scripts is accepted too). Completion offers the
commands, their options (the global ones included) and values: choices, profile names
(from the config file), runbook names (from the package), rate-limit rule names (the
presets and the rules `dbops ratelimit list` last showed) and queue names (from a local
cache that commands listing or resolving queues refresh). A TAB reads only local files:
it never touches the network, never builds the settings, and never raises (a completer
that fails offers nothing).

The cache is `completion-cache.json` in the data folder: `{"queues": {PROFILE: [names]},
"rules": {PROFILE: [names]}}`, newest first, at most `MAX_NAMES` per profile.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
from click.shell_completion import (
    BashComplete,
    CompletionItem,
    FishComplete,
    ShellComplete,
    ZshComplete,
)

from dbops.config_files import data_dir, read_config_file

SHELLS = ("bash", "zsh", "fish")
PROG = "dbops"
COMPLETE_VAR = "_DBOPS_COMPLETE"
CACHE_NAME = "completion-cache.json"
MAX_NAMES = 200

# Global options (extracted by the root group wherever they appear): name -> help.
GLOBAL_OPTIONS: dict[str, str] = {
    "--profile": "configuration profile",
    "--debug": "show tracebacks",
    "--env-file": "read KEY=VALUE settings from a file",
    "--region": "AWS region",
    "--endpoint-url": "SQS endpoint",
    "--no-headers": "tables and CSV without the header row",
}
GLOBAL_VALUE_OPTIONS = ("--profile", "--env-file", "--region", "--endpoint-url")


# --------------------------------------------------------------------------- the cache
def cache_path() -> Path:
    return data_dir() / CACHE_NAME


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _profile_key(profile: str | None = None) -> str:
    if profile:
        return profile
    ctx = click.get_current_context(silent=True)
    state = ctx.find_root().obj if ctx is not None else None
    chosen = getattr(state, "profile", None) or os.environ.get("DBOPS_PROFILE")
    if chosen:
        return str(chosen)
    try:
        default = read_config_file().get("default_profile")
    except Exception:  # a broken config file is reported by the command itself
        default = None
    return str(default) if default else "default"


def _usable(name: str) -> bool:
    return 0 < len(name) <= 256 and name.isprintable() and not any(c.isspace() for c in name)


def remember(
    kind: str, names: Iterable[str], *, replace: bool = False, profile: str | None = None
) -> None:
    """Record names a command just saw (`kind` is "queues" or "rules") for completion.

    Best effort: a cache that cannot be read or written never fails the command.
    """
    try:
        fresh = list(dict.fromkeys(n for n in names if isinstance(n, str) and _usable(n)))
        data = _read_cache()
        section = data.get(kind)
        if not isinstance(section, dict):
            section = data[kind] = {}
        key = _profile_key(profile)
        old = section.get(key)
        known = [n for n in old if isinstance(n, str)] if isinstance(old, list) else []
        merged = fresh if replace else fresh + [n for n in known if n not in fresh]
        merged = merged[:MAX_NAMES]
        if merged == known:
            return
        section[key] = merged
        from dbops.files import write_text_private

        write_text_private(cache_path(), json.dumps(data, indent=1, sort_keys=True) + "\n")
    except Exception:  # the cache is only a convenience
        return


def remember_queues(urls_or_names: Iterable[str], *, replace: bool = False) -> None:
    """Cache queue names (from names, URLs or ARNs)."""
    names = []
    for value in urls_or_names:
        text = str(value or "").rstrip("/")
        names.append(text.rsplit(":" if text.startswith("arn:") else "/", 1)[-1])
    remember("queues", names, replace=replace)


def cached(kind: str) -> list[str]:
    """Names for the current profile, else every profile's."""
    section = _read_cache().get(kind)
    if not isinstance(section, dict):
        return []
    mine = section.get(_profile_key())
    if isinstance(mine, list) and mine:
        return [n for n in mine if isinstance(n, str)]
    every: dict[str, None] = {}
    for names in section.values():
        if isinstance(names, list):
            every.update((n, None) for n in names if isinstance(n, str))
    return list(every)


# --------------------------------------------------------------------------- value completers
def profile_names() -> list[str]:
    profiles = read_config_file().get("profiles", {})
    return sorted(profiles) if isinstance(profiles, dict) else []


def runbook_names() -> list[str]:
    from importlib import resources

    folder = resources.files("dbops.runbooks")
    return sorted(e.name[:-3] for e in folder.iterdir() if e.name.endswith(".md"))


def rule_names() -> list[str]:
    from dbops.services.presets import RATE_LIMIT_PRESETS

    return list(dict.fromkeys([*cached("rules"), *RATE_LIMIT_PRESETS]))


def queue_names() -> list[str]:
    return cached("queues")


# (group, parameter name) -> completer. "*" matches every group.
VALUES: dict[tuple[str, str], Callable[[], list[str]]] = {
    ("dlq", "queue"): queue_names,
    ("dlq", "to"): queue_names,
    ("queue", "queue"): queue_names,
    ("queue", "queues"): queue_names,
    ("runbook", "name"): runbook_names,
    ("ratelimit", "name"): rule_names,
    ("jobs", "status"): lambda: ["pending", "in_progress", "completed", "failed", "cancelled"],
}
GLOBAL_VALUES: dict[str, Callable[[], list[str]]] = {"--profile": profile_names}


def _items(names: Iterable[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def _global_value(option: str, incomplete: str) -> list[CompletionItem]:
    if option == "--env-file":
        return [CompletionItem(incomplete, type="file")]
    completer = GLOBAL_VALUES.get(option)
    return _items(completer(), incomplete) if completer else []


class _DbopsCompletion(ShellComplete):
    """click's resolution, plus the global options and dbops' value completers."""

    def get_completions(self, args: list[str], incomplete: str) -> list[CompletionItem]:
        try:
            return self._completions(args, incomplete)
        except Exception:  # a TAB must never print a traceback into the prompt
            if os.environ.get("DBOPS_DEBUG", "") not in ("", "0", "false"):
                import traceback

                traceback.print_exc()
            return []

    def _completions(self, args: list[str], incomplete: str) -> list[CompletionItem]:
        from click.shell_completion import _resolve_context, _resolve_incomplete

        if "--" not in args:
            if args and args[-1] in GLOBAL_VALUE_OPTIONS:
                return _global_value(args[-1], incomplete)
            name, eq, value = incomplete.partition("=")
            if eq and name in GLOBAL_VALUE_OPTIONS:
                return _global_value(name, value)
        ctx = _resolve_context(self.cli, self.ctx_args, self.prog_name, args)
        obj, incomplete = _resolve_incomplete(ctx, args, incomplete)
        if isinstance(obj, click.Parameter):
            words = ctx.command_path.split()
            group = words[1] if len(words) > 1 else ""
            completer = VALUES.get((group, obj.name or "")) or VALUES.get(("*", obj.name or ""))
            if completer is not None:
                return _items(completer(), incomplete)
            return obj.shell_complete(ctx, incomplete)
        results = obj.shell_complete(ctx, incomplete)
        if incomplete.startswith("-"):
            results.extend(
                CompletionItem(name, help=text)
                for name, text in GLOBAL_OPTIONS.items()
                if name.startswith(incomplete)
            )
        return results


class _Bash(_DbopsCompletion, BashComplete):
    pass


class _Zsh(_DbopsCompletion, ZshComplete):
    pass


class _Fish(_DbopsCompletion, FishComplete):
    pass


CLASSES: dict[str, type[ShellComplete]] = {"bash": _Bash, "zsh": _Zsh, "fish": _Fish}


def _legacy_classes() -> dict[str, type[ShellComplete]]:
    """Typer's classes, for scripts installed by the old per-group option."""
    from typer import _completion_classes as typer_classes

    return {
        "bash": type("_LegacyBash", (_DbopsCompletion, typer_classes.BashComplete), {}),
        "zsh": type("_LegacyZsh", (_DbopsCompletion, typer_classes.ZshComplete), {}),
        "fish": type("_LegacyFish", (_DbopsCompletion, typer_classes.FishComplete), {}),
    }


def shell_complete(
    cli: click.Command, ctx_args: Any, prog_name: str, complete_var: str, instruction: str
) -> int:
    """Answer one `_DBOPS_COMPLETE=...` call; the process exit code."""
    shell, _, action = instruction.partition("_")
    classes = CLASSES
    if shell in ("complete", "source"):  # Typer's `complete_bash` order
        shell, action = action, shell
        classes = _legacy_classes()
    cls = classes.get(shell)
    if cls is None or action not in ("complete", "source"):
        click.echo(f"Error: unsupported completion instruction {instruction!r}", err=True)
        return 1
    comp = cls(cli, dict(ctx_args), prog_name, complete_var)
    click.echo(comp.source() if action == "source" else comp.complete())
    return 0


# --------------------------------------------------------------------------- show / install
def detect_shell() -> str | None:
    name = Path(os.environ.get("SHELL", "")).name
    return name if name in SHELLS else None


def script(cli: click.Command, shell: str) -> str:
    return CLASSES[shell](cli, {}, PROG, COMPLETE_VAR).source()


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def install(cli: click.Command, shell: str) -> tuple[Path, Path | None]:
    """Write the completion script where the shell loads it; (script, rc file changed)."""
    from dbops.files import append_private, write_text_private

    home = _home()
    text = script(cli, shell) + "\n"
    rc: Path | None = None
    lines: list[str] = []
    if shell == "fish":
        base = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        target = base / "fish" / "completions" / f"{PROG}.fish"
    elif shell == "zsh":
        target = home / ".zfunc" / f"_{PROG}"
        rc = home / ".zshrc"
        lines = ["fpath+=~/.zfunc", "autoload -Uz compinit && compinit"]
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
        target = base / "bash-completion" / "completions" / PROG
        rc = home / ".bashrc"
        lines = [f"[ -f {_quote(target)} ] && . {_quote(target)}"]
    write_text_private(target, text)
    if rc is not None:
        try:
            current = rc.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = ""
        missing = [line for line in lines if line not in current.splitlines()]
        if missing:
            lead = "" if not current or current.endswith("\n") else "\n"
            append_private(rc, lead + "# dbops shell completion\n" + "\n".join(missing) + "\n")
        else:
            rc = None
    return target, rc


def _quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))
