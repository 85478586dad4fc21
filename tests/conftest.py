"""Shared fixtures: real DuckDB files made by the same seeded generator as the demo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cai import demo, engine, instances, store

TEST_PROFILES = 6_000
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def trained_db_template(tmp_path_factory) -> Path:
    """A demo store with the tutorial's instance trained, built once per test session."""
    folder = tmp_path_factory.mktemp("template")
    db = folder / "cai.duckdb"
    demo.build_demo(db, profiles=TEST_PROFILES)
    instances.ensure_tutorial_instance(db)
    result = engine.run_instance(db, instances.TUTORIAL_INSTANCE, models=folder / "models")
    assert result.error is None, result.error
    return db


@pytest.fixture
def trained_db(trained_db_template, tmp_path, monkeypatch) -> Path:
    """A private copy of the trained store (with its model cache), also set as the app's database."""
    db = tmp_path / "cai.duckdb"
    store.release(trained_db_template)
    shutil.copy(trained_db_template, db)
    shutil.copytree(trained_db_template.parent / "models", tmp_path / "models")
    monkeypatch.setenv(store.DB_ENV_VAR, str(db))
    monkeypatch.setenv(store.MODELS_ENV_VAR, str(tmp_path / "models"))
    return db


@pytest.fixture
def demo_db(tmp_path) -> Path:
    db = tmp_path / "demo.duckdb"
    demo.build_demo(db, profiles=TEST_PROFILES)
    return db


@pytest.fixture
def empty_db(tmp_path) -> Path:
    return tmp_path / "empty.duckdb"
