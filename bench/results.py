"""bench/results.json holds every benchmark's figures, one section each, so one benchmark never erases another's."""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("results.json")
# Sections other benchmarks write; the engine benchmark keeps them when it rewrites the file.
APP_SECTIONS = ("first_start", "pages", "sessions", "backends", "growth")


def load(path: Path = DEFAULT_PATH) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save_section(name: str, figures: dict, path: Path = DEFAULT_PATH) -> None:
    results = load(path)
    results[name] = figures
    path.write_text(json.dumps(results, indent=2) + "\n")


def keep_app_sections(results: dict, path: Path) -> dict:
    """The engine benchmark's figures with the app benchmarks' sections already in ``path`` carried over."""
    previous = load(path)
    return {**results, **{name: previous[name] for name in APP_SECTIONS if name in previous}}
