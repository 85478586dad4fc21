"""bench/results.json holds every benchmark's figures, one section each, so one benchmark never erases another's."""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("results.json")


def load(path: Path = DEFAULT_PATH) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save_section(name: str, figures: dict, path: Path = DEFAULT_PATH) -> None:
    results = load(path)
    results[name] = figures
    path.write_text(json.dumps(results, indent=2) + "\n")


def keep_other_sections(results: dict, path: Path) -> dict:
    """The engine benchmark's figures with every other benchmark's section already in ``path`` carried over: each
    is a named object the engine benchmark does not write (a list of names to keep lost each newer benchmark's)."""
    previous = load(path)
    return {**results, **{name: figures for name, figures in previous.items()
                          if name not in results and isinstance(figures, dict)}}
