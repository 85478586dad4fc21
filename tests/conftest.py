"""Shared fixtures: real DuckDB files made by the same seeded generator as the demo, and the same stores on a real
PostgreSQL server for modules marked ``both_backends``."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cai import demo, engine, instances, store
from tests import pg_cluster

TEST_PROFILES = 6_000
ROOT = Path(__file__).resolve().parent.parent
PG_URL_ENV_VAR = "CAI_TEST_PG_URL"
BACKENDS = ["duckdb", "postgres"]
_database_numbers = itertools.count(1)


def pytest_generate_tests(metafunc):
    """Tests that use a store run once per backend in modules marked ``both_backends``, on DuckDB elsewhere."""
    if "backend" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_backends")
        metafunc.parametrize("backend", BACKENDS if both else BACKENDS[:1], indirect=True)


@pytest.fixture
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for the session: ``$CAI_TEST_PG_URL`` when set, else a throwaway cluster."""
    if os.environ.get(PG_URL_ENV_VAR):
        yield os.environ[PG_URL_ENV_VAR]
        return
    url, folder = pg_cluster.start()
    yield url
    store.release()
    pg_cluster.stop(folder)


def _psql(server_url: str, statement: str) -> None:
    subprocess.run([str(pg_cluster.PG_BIN / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", server_url,
                    "-c", statement], check=True, capture_output=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the test server, as a URL; dropped afterwards."""
    name = f"cai_test_{os.getpid()}_{next(_database_numbers)}"
    _psql(pg_server, f"CREATE DATABASE {name}")
    url = urlsplit(pg_server)._replace(path=f"/{name}").geturl()
    yield url
    store.release(url)
    _psql(pg_server, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def new_store(backend, tmp_path, request):
    """A location for a store that does not exist yet: a file path, or an empty PostgreSQL database's URL."""
    if backend == "postgres":
        return request.getfixturevalue("pg_url")
    return tmp_path / "cai.duckdb"


@pytest.fixture(scope="session")
def trained_db_template(tmp_path_factory) -> Path:
    """A demo store with the tutorial's instance trained (its model inside), built once per test session."""
    folder = tmp_path_factory.mktemp("template")
    db = folder / "cai.duckdb"
    demo.build_demo(db, profiles=TEST_PROFILES)
    instances.ensure_tutorial_instance(db)
    result = engine.run_instance(db, instances.TUTORIAL_INSTANCE)
    assert result.error is None, result.error
    return db


@pytest.fixture
def trained_db(trained_db_template, new_store, monkeypatch):
    """A private copy of the trained store on the test's backend, also set as the app's database."""
    store.release(trained_db_template)
    if isinstance(new_store, Path):
        shutil.copy(trained_db_template, new_store)
    else:
        store.copy(trained_db_template, new_store)
    monkeypatch.setenv(store.DB_ENV_VAR, str(new_store))
    return new_store


@pytest.fixture
def demo_db(new_store):
    demo.build_demo(new_store, profiles=TEST_PROFILES)
    return new_store


@pytest.fixture
def empty_db(new_store):
    return new_store


@pytest.fixture(scope="session", autouse=True)
def components_discovered_once():
    """A Streamlit server looks for installed custom components once, when it starts; AppTest looks again for every
    new session, reading the metadata of every installed package (about a second each on a loaded 2-core machine).
    The tests' sessions share one look, as a server's sessions do: the installed packages do not change mid-run."""
    from streamlit.components.v2 import manifest_scanner

    original = manifest_scanner.scan_component_manifests
    found = original()
    manifest_scanner.scan_component_manifests = lambda: found
    yield
    manifest_scanner.scan_component_manifests = original
