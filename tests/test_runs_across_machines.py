"""A run in progress in one process (on another machine, for PostgreSQL) is seen as such by another process, and
is marked interrupted once that process, or its machine, is gone."""
import datetime as dt
import os
import subprocess
import sys
import time

import pytest

from cai import engine, instances, store
from cai.errors import CaiError

pytestmark = pytest.mark.both_backends
TUTORIAL = instances.TUTORIAL_INSTANCE
# Starts a run and holds it until killed, as a machine running the instance's training would.
HOLD_A_RUN = """
import sys, time
from cai import engine, store
store.RUN_HEARTBEAT_SECONDS = 0.2
engine._start_run(sys.argv[1], sys.argv[2], __import__("datetime").date(2026, 11, 1), "machine-a")
print("started", flush=True)
time.sleep(600)
"""


@pytest.fixture
def run_held_elsewhere(trained_db):
    environment = {**os.environ, store.HOST_ENV_VAR: "machine-a"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_A_RUN, str(trained_db), TUTORIAL],
                              stdout=subprocess.PIPE, text=True, env=environment)
    assert holder.stdout.readline().strip() == "started"
    yield holder
    holder.kill()
    holder.wait()


def _wait_for_recovery(db, seconds: float = 60.0) -> int:
    deadline = time.monotonic() + seconds
    while (recovered := engine.recover_interrupted_runs(db)) == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    return recovered


def test_a_run_in_another_process_blocks_a_second_run_until_it_is_gone(trained_db, run_held_elsewhere, backend,
                                                                         monkeypatch):
    as_of = dt.date(2026, 11, 1)
    with pytest.raises(CaiError, match="already being trained") as refused:
        engine._start_run(trained_db, TUTORIAL, as_of, "machine-b")
    # On PostgreSQL the other machine is named, and what happens if it stopped is said.
    assert ("on machine-a" in str(refused.value)) == (backend == "postgres")
    assert "marked interrupted once it has been silent for 2 minutes" in str(refused.value)
    assert engine.recover_interrupted_runs(trained_db) == 0
    assert instances.get_instance(trained_db, TUTORIAL).status == instances.TRAINING

    run_held_elsewhere.kill()
    run_held_elsewhere.wait()
    monkeypatch.setattr(store, "RUN_STALE_SECONDS", 1.0)
    assert _wait_for_recovery(trained_db) == 1
    instance = instances.get_instance(trained_db, TUTORIAL)
    assert instance.status == instances.SUCCESS and "interrupted" in instance.status_reason
    run_id, _ = engine._start_run(trained_db, TUTORIAL, as_of, "machine-b")
    with store.connect(trained_db) as con:
        assert con.execute("SELECT host FROM runs WHERE run_id = ?", [run_id]).fetchall()[0][0] == store.this_host()


def test_a_remote_run_keeps_beating_while_it_runs(trained_db, run_held_elsewhere, backend):
    if backend != "postgres":
        pytest.skip("a DuckDB file is one machine's; its runs are judged by process id")
    with store.connect(trained_db) as con:
        first = con.execute("SELECT heartbeat_at FROM runs WHERE host = 'machine-a'").fetchall()[0][0]
    deadline = time.monotonic() + 30
    latest = first
    while latest == first and time.monotonic() < deadline:
        time.sleep(0.3)
        with store.connect(trained_db) as con:
            latest = con.execute("SELECT heartbeat_at FROM runs WHERE host = 'machine-a'").fetchall()[0][0]
    assert latest > first
