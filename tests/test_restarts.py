"""What a Streamlit Community Cloud restart does to the app on PostgreSQL: replicas starting together on one
database, and work (a run, a delivery) cut off by a container that stops; the next start recovers and says so."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import duckdb

from cai import store
from ui import bootstrap
from tests.conftest import ROOT

REPLICAS = 3
# Upgrades the schema of the database in argv[1], as every replica does when it starts.
START_A_REPLICA = "import sys; from cai import store; store.migrate(sys.argv[1])"


def _raw(url: str) -> duckdb.DuckDBPyConnection:
    """The database as it is, without the store's own migrations."""
    con = duckdb.connect()
    con.execute(f"LOAD '{store._postgres_extension()}'")
    con.execute(f"ATTACH '{url}' AS raw (TYPE postgres)")
    return con


def _waiting_for_the_migration_lock(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT * FROM postgres_query('raw', 'SELECT count(*) FROM pg_locks WHERE locktype = "
                       "''advisory'' AND NOT granted')").fetchall()[0][0]


def test_replicas_starting_together_on_an_empty_database_all_start(pg_url):
    """Each replica waits for the migration lock while another holds it; once it is free, one sets the schema up and
    the others find it done (they used to fail on 'relation "schema_version" already exists')."""
    holder, watcher = _raw(pg_url), _raw(pg_url)
    holder.begin()
    holder.execute(f"CALL postgres_execute('raw', 'SELECT pg_advisory_xact_lock({store.MIGRATION_LOCK_ID})')")
    replicas = [subprocess.Popen([sys.executable, "-c", START_A_REPLICA, pg_url], cwd=ROOT, stderr=subprocess.PIPE,
                                 text=True) for _ in range(REPLICAS)]
    deadline = time.monotonic() + 60
    while _waiting_for_the_migration_lock(watcher) < REPLICAS and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _waiting_for_the_migration_lock(watcher) == REPLICAS
    holder.rollback()
    errors = [replica.communicate(timeout=60)[1] for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0] * REPLICAS, errors
    versions = watcher.execute("SELECT version FROM raw.schema_version ORDER BY version").fetchall()
    assert [version for (version,) in versions] == list(range(1, store.SCHEMA_VERSION + 1))
    holder.close()
    watcher.close()


def test_a_first_start_that_another_replica_finished_first_keeps_that_store(trained_db_template, pg_url, tmp_path):
    """Two replicas on one empty database both build the demo; the second to copy it in finds the first's there and
    reports the demo ready (it used to fail with 'duplicate key value violates unique constraint')."""
    store.release(trained_db_template)
    store.copy(trained_db_template, pg_url)
    with store.connect(pg_url) as con:
        before = con.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM runs)").fetchall()
    side = tmp_path / "demo.duckdb.first-start"
    shutil.copy(trained_db_template, side)
    bootstrap._move_into_place(side, store.resolve(pg_url))
    assert not side.exists()
    with store.connect(pg_url) as con:
        assert con.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM runs)").fetchall() == before
