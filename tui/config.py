"""The user's remembered choices (the theme), in `$XDG_CONFIG_HOME/semiotui/config.json`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from semiotui.engine.atomic import staged


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "semiotui" / "config.json"


def load_config() -> dict:
    """The saved settings, or {} when there are none or the file cannot be read."""
    try:
        data = json.loads(config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_config(**changes: object) -> None:
    """Merge `changes` into the saved settings, written whole."""
    path = config_path()
    data = load_config() | changes
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with staged(path) as tmp:
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError:  # a read-only home must not stop the interface
        pass
