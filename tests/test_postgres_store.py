"""The PostgreSQL store: schema versions, copies both ways, signed models, a password that never shows, and a
restart on an empty disk that loses nothing (what Streamlit Community Cloud does)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cai import audit, demo, instances, profiles, scores, segments, store
from cai.errors import CaiError, SchemaTooNew
from tests.conftest import ROOT, TEST_PROFILES

TUTORIAL = instances.TUTORIAL_INSTANCE


def _cli(url: str, *args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cai", "--db", url, *args], cwd=cwd, capture_output=True,
                          text=True, env=env, check=False)


def _raw(url: str) -> duckdb.DuckDBPyConnection:
    """The database as it is, without the store's own migrations."""
    con = duckdb.connect()
    con.execute(f"LOAD '{store._postgres_extension()}'")
    con.execute(f"ATTACH '{url}' AS raw (TYPE postgres)")
    con.execute("USE raw")
    return con


def test_an_empty_database_is_set_up_and_an_older_schema_upgraded(pg_url):
    con = _raw(pg_url)
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)")
    con.execute(store._for_postgres(store.MIGRATIONS[0]))
    con.execute("INSERT INTO schema_version VALUES (1, current_timestamp)")
    con.close()
    assert store.migrate(pg_url) == (1, store.SCHEMA_VERSION)
    assert store.migrate(pg_url) == (store.SCHEMA_VERSION, store.SCHEMA_VERSION)


def test_a_newer_schema_is_refused(pg_url):
    store.migrate(pg_url)
    store.release(pg_url)
    store._migrated.clear()
    con = _raw(pg_url)
    con.execute("INSERT INTO schema_version VALUES (99, current_timestamp)")
    con.close()
    with pytest.raises(SchemaTooNew, match="newer version"):
        with store.connect(pg_url):
            pass


def test_migrate_and_copy_commands_move_a_store_both_ways(trained_db_template, pg_url, tmp_path):
    store.release(trained_db_template)
    migrated = _cli(pg_url, "migrate")
    assert migrated.returncode == 0 and f"schema {store.SCHEMA_VERSION}" in migrated.stdout
    into = subprocess.run([sys.executable, "-m", "cai", "copy", "--from", str(trained_db_template), "--to", pg_url],
                          cwd=ROOT, capture_output=True, text=True)
    assert into.returncode == 0, into.stderr
    again = subprocess.run([sys.executable, "-m", "cai", "copy", "--from", str(trained_db_template), "--to", pg_url],
                           cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "already holds data" in again.stderr
    back = tmp_path / "back.duckdb"
    out = subprocess.run([sys.executable, "-m", "cai", "copy", "--from", pg_url, "--to", str(back)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for table in ("profiles", "events", "scores", "score_factors", "models", "audit_log"):
        query = f"SELECT * FROM {table} ORDER BY ALL"
        pd.testing.assert_frame_equal(store.query_df(trained_db_template, query), store.query_df(back, query))


def test_the_command_line_on_postgres_gives_the_file_stores_scores(trained_db_template, pg_url):
    demo_run = _cli(pg_url, "demo", "--profiles", str(TEST_PROFILES), "--train")
    assert demo_run.returncode == 0, demo_run.stderr
    assert _cli(pg_url, "segments", "create", "--instance", TUTORIAL, "--name", "High", "--min-score", "75"
                ).returncode == 0
    found = _cli(pg_url, "profiles", "find", "Email", demo.TUTORIAL_EMAIL, "--json")
    assert found.returncode == 0 and json.loads(found.stdout)["customer_ai"][0]["instance"] == TUTORIAL
    query = "SELECT profile_id, probability, score FROM scores ORDER BY profile_id"
    on_file, on_postgres = store.query_df(trained_db_template, query), store.query_df(pg_url, query)
    assert len(on_postgres) > 1000
    pd.testing.assert_frame_equal(on_file, on_postgres, rtol=0, atol=1e-9)


def test_the_password_never_shows(pg_url, tmp_path):
    password = urlsplit(pg_url).password
    wrong = pg_url.replace(f":{password}@", ":wrong-Secret-42@")
    outputs = [_cli(pg_url, "demo", "--profiles", "1500"), _cli(pg_url, "migrate"), _cli(pg_url, "datasets"),
               _cli(wrong, "datasets"), _cli(pg_url, "instances", "show", "nobody")]
    copied = subprocess.run([sys.executable, "-m", "cai", "copy", "--from", pg_url, "--to", str(tmp_path / "c.duckdb")],
                            cwd=ROOT, capture_output=True, text=True)
    assert outputs[3].returncode != 0 and "password authentication failed" in outputs[3].stderr
    for output in [*outputs, copied]:
        assert password not in output.stdout + output.stderr and "wrong-Secret-42" not in output.stderr
    assert password not in str(store.resolve(pg_url)) + repr(store.resolve(pg_url))
    assert password not in audit.entries(pg_url).to_json()
    with pytest.raises(Exception) as refused:
        with store.connect(wrong):
            pass
    assert "wrong-Secret-42" not in str(refused.value) and "***" in str(refused.value)


def _dashboard(url: str, env: dict) -> dict:
    """What the dashboard shows, rendered by Streamlit's own test runner against ``url``."""
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    finally:
        for key, value in previous.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    assert not app.exception
    assert urlsplit(url).password not in " ".join(caption.value for caption in app.sidebar.caption)
    return {metric.label: metric.value for metric in app.metric}


def test_a_restart_on_an_empty_disk_loses_nothing(trained_db_template, pg_url, tmp_path):
    """Community Cloud: the app loads, scores and saves from one machine's folder; the folder is deleted and a
    process on a new, empty one finds everything, shows the same dashboard and retrains nothing."""
    store.release(trained_db_template)
    events = tmp_path / "late-events.csv"
    events.write_text("timestamp,event_type,email\n2026-11-20T10:00:00,search," + demo.TUTORIAL_EMAIL + "\n")

    def machine(name: str) -> tuple[dict, Path]:
        home = tmp_path / name
        home.mkdir()
        return {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "TMPDIR": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                store.DB_ENV_VAR: pg_url, store.MODEL_KEY_ENV_VAR: "the deployment's secret"}, home

    first, first_home = machine("first")
    loaded = subprocess.run([sys.executable, "-m", "cai", "copy", "--from", str(trained_db_template), "--to", pg_url],
                            cwd=first_home, env=first, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert _cli(pg_url, "ingest", str(events), env=first, cwd=first_home).returncode == 0
    ran = _cli(pg_url, "run", TUTORIAL, "--json", env=first, cwd=first_home)
    assert ran.returncode == 0, ran.stderr
    assert _cli(pg_url, "segments", "create", "--instance", TUTORIAL, "--name", "Kept", "--min-score", "60",
                env=first, cwd=first_home).returncode == 0
    before = _dashboard(pg_url, {store.DB_ENV_VAR: pg_url, store.MODEL_KEY_ENV_VAR: "the deployment's secret"})
    store.release()
    shutil.rmtree(first_home)

    second, second_home = machine("second")
    assert json.loads(_cli(pg_url, "segments", "list", "--json", env=second, cwd=second_home).stdout)[0]["name"] \
        == "Kept"
    assert _dashboard(pg_url, {store.DB_ENV_VAR: pg_url, store.MODEL_KEY_ENV_VAR: "the deployment's secret"}) \
        == before
    actions = set(audit.entries(pg_url)["action"])
    assert {"load", "run", "create"} <= actions
    rerun = _cli(pg_url, "run", TUTORIAL, "--json", env=second, cwd=second_home)
    assert rerun.returncode == 0, rerun.stderr
    assert scores.latest_run(pg_url, TUTORIAL)["details"]["cache"] == "reused cached model"
    assert segments.get_segment(pg_url, "Kept")["name"] == "Kept"


def test_a_url_turned_into_a_path_is_refused_and_never_becomes_a_folder(pg_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    password = urlsplit(pg_url).password
    collapsed = os.fspath(Path(pg_url))
    assert collapsed.startswith("postgresql:/") and not collapsed.startswith("postgresql://")
    monkeypatch.setenv(store.DB_ENV_VAR, collapsed)
    for location in (Path(pg_url), collapsed, None):
        with pytest.raises(CaiError, match="lost the '//'") as refused:
            store.resolve(location)
        assert password not in str(refused.value)
    output = _cli(collapsed, "datasets", cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert output.returncode != 0 and "lost the '//'" in output.stderr
    assert password not in output.stdout + output.stderr
    assert list(tmp_path.iterdir()) == []
    assert store.resolve(pg_url).is_postgres


def _index_scans(url: str) -> int:
    with store.connect(url) as con:
        return con.execute("SELECT * FROM postgres_query(?, 'SELECT idx_scan FROM pg_stat_user_indexes WHERE "
                           "indexrelname = ''identities_by_value''')", [store.POSTGRES_CATALOG]).fetchall()[0][0]


def test_an_identity_look_up_uses_an_index_in_the_collation_the_extension_compares_in(pg_url):
    demo.build_demo(pg_url, profiles=TEST_PROFILES)
    email = store.query_df(pg_url, "SELECT min(id_value) AS v FROM identities WHERE namespace = 'Email'")["v"][0]
    with store.connect(pg_url) as con:
        store.postgres_execute(con, "ANALYZE identities")
    before = _index_scans(pg_url)
    assert profiles.find(pg_url, "Email", email) is not None
    # PostgreSQL publishes a session's index statistics within a second or so of its going idle.
    deadline = time.monotonic() + 30
    while _index_scans(pg_url) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _index_scans(pg_url) > before


def _local_tables(url: str) -> set[str]:
    with store.connect(url) as con:
        return {row[0] for row in con.execute(
            f"SELECT table_name FROM duckdb_tables() WHERE database_name = '{store.LOCAL_CATALOG}'").fetchall()}


def test_a_local_copy_outlives_eviction_and_new_versions_while_a_unit_of_work_reads_it(pg_url, monkeypatch):
    """Copies are evicted (more keys than are kept) and superseded (a new version) while another unit of work
    still reads the old table: that unit keeps reading what it was given, and the table goes once it ends."""
    monkeypatch.setattr(store, "MAX_LOCAL_COPIES", 1)
    with store.connect(pg_url) as con:
        con.execute("CREATE TABLE copied (key INTEGER, value INTEGER)")
        con.execute("INSERT INTO copied VALUES (1, 10), (1, 11), (2, 20)")

    def read(con, name: str) -> list[int]:
        return sorted(row[0] for row in con.execute(f"SELECT value FROM {name}").fetchall())

    with store.connect(pg_url) as reader:
        first = store.local_copy(pg_url, reader, "copied", "key", 1, ("v1",))
        with store.connect(pg_url) as other:
            other.execute("INSERT INTO copied VALUES (1, 12)")
            newer = store.local_copy(pg_url, other, "copied", "key", 1, ("v2",))
            evicting = store.local_copy(pg_url, other, "copied", "key", 2, ("v1",))
            assert read(other, newer) == [10, 11, 12] and read(other, evicting) == [20]
        assert first != newer and read(reader, first) == [10, 11]
        assert store.local_copy(pg_url, reader, "copied", "key", 1, ("v1",)) != first
    remaining = _local_tables(pg_url)
    assert first.rsplit(".", 1)[1] not in remaining and newer.rsplit(".", 1)[1] not in remaining
    assert len(remaining) == 1
