"""Where dbops keeps its files, and the profile file itself (TOML).

Kept apart from `dbops.settings` so that commands which only need a path (and `--help`)
do not import pydantic-settings.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from dbops.errors import ConfigError


def config_dir() -> Path:
    override = os.environ.get("DBOPS_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dbops"


def config_path() -> Path:
    return config_dir() / "config.toml"


def data_dir() -> Path:
    override = os.environ.get("DBOPS_DATA_DIR")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dbops"


def read_config_file(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="fix or remove the file") from None


def profile_values(profile: str | None, path: Path | None = None) -> dict[str, Any]:
    data = read_config_file(path)
    profiles = data.get("profiles", {})
    name = profile or data.get("default_profile")
    if name is None:
        return dict(profiles.get("default", {}))
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(
            f"profile '{name}' not found in {path or config_path()} (known: {known})",
            hint="run `dbops sandbox up` for the sandbox profile",
        )
    return dict(profiles[name])


def mask_secret(value: str | None) -> str | None:
    """`****` for any secret: no part of it (not even its last characters) is shown."""
    if value is None:
        return None
    return "****"


def write_profile(name: str, values: dict[str, Any], path: Path | None = None) -> Path:
    """Create or replace one `[profiles.NAME]` table, keeping the rest of the file."""
    path = path or config_path()
    data = read_config_file(path)
    profiles = data.setdefault("profiles", {})
    profiles[name] = {k: v for k, v in values.items() if v is not None}
    from dbops.files import write_text_private

    # 0600 from the start and replaced atomically: a profile can hold secrets.
    write_text_private(path, _dump_toml(data))
    return path


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def _dump_toml(data: dict[str, Any], prefix: str = "") -> str:
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((f"{prefix}{key}", value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for name, table in tables:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        if scalars or not nested:
            out += f"\n[{name}]\n" + _dump_toml(scalars)
        if nested:
            out += _dump_toml(nested, prefix=f"{name}.")
    return out
