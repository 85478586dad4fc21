"""What a Streamlit Community Cloud restart does to the app on PostgreSQL: replicas starting together on one
database, and work (a run, a delivery) cut off by a container that stops; the next start recovers and says so."""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import subprocess
import sys
import threading
import time

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from cai import activation, destinations, engine, identity, instances, models, scores, segments, store
from cai.errors import StoreBusy
from tests.conftest import ROOT
from ui import bootstrap

REPLICAS = 3
# Upgrades the schema of the database in argv[1], as every replica does when it starts.
START_A_REPLICA = "import sys; from cai import store; store.migrate(sys.argv[1])"
SEGMENT = "Sent before the restart"
TUTORIAL = instances.TUTORIAL_INSTANCE
# A container in the middle of a load that merges profiles, gone silent without closing its connection (its machine
# died): its transaction stays open on the server, holding the row every load and run swap writes. It stays busy in
# it, waiting (with no lock timeout to speak of) for the advisory lock argv[2] that the test holds, until the test lets
# it go silent: the server's idle timer starts only then, however slowly the test reaches its first write.
VANISH_MID_LOAD = """
import sys, time
from cai import identity, store
store.IDLE_IN_TRANSACTION_SECONDS = 2
store.BUSY_WAIT_SECONDS = 600
def hold(con):
    identity.claim_profile_set(con)
    print("holding", flush=True)
    store.postgres_execute(con, f"SELECT pg_advisory_xact_lock({sys.argv[2]})")
    time.sleep(600)
store.write(sys.argv[1], hold)
"""
# Any fixed number other than store.MIGRATION_LOCK_ID.
GO_SILENT_LOCK_ID = 7_310_015
# The container stops (SIGKILL, no clean-up) the moment the delivery opens the members file.
STOP_WHILE_DELIVERING = """
import os, signal, sys
from fsspec.implementations import local
local.LocalFileSystem._open = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
from cai import activation
activation.deliver_pending(sys.argv[1])
"""
# The container stops once the run's results are swapped in, before the run delivers its segments.
STOP_BEFORE_DELIVERING = """
import datetime as dt, os, signal, sys
from cai import activation, engine
activation.deliver_after_run = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
engine.run_instance(sys.argv[1], sys.argv[2], as_of=dt.date.fromisoformat(sys.argv[3]))
"""


def _raw(url: str) -> duckdb.DuckDBPyConnection:
    """The database as it is, without the store's own migrations."""
    con = duckdb.connect()
    con.execute(f"LOAD '{store._postgres_extension()}'")
    con.execute(f"ATTACH '{url}' AS raw (TYPE postgres)")
    return con


def _waiting_for_the_migration_lock(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT * FROM postgres_query('raw', 'SELECT count(*) FROM pg_locks WHERE locktype = "
                       "''advisory'' AND NOT granted')").fetchall()[0][0]


def start_replicas_together(url: str) -> None:
    """Starts ``REPLICAS`` processes that each upgrade the store at ``url``, as replicas do, all made to wait for
    the migration lock at once, then lets them go; asserts they all succeed and the schema's versions are recorded
    once each; the caller checks the data."""
    holder, watcher = _raw(url), _raw(url)
    try:
        holder.begin()
        holder.execute(f"CALL postgres_execute('raw', 'SELECT pg_advisory_xact_lock({store.MIGRATION_LOCK_ID})')")
        replicas = [subprocess.Popen([sys.executable, "-c", START_A_REPLICA, url], cwd=ROOT,
                                     stderr=subprocess.PIPE, text=True) for _ in range(REPLICAS)]
        deadline = time.monotonic() + 60
        while _waiting_for_the_migration_lock(watcher) < REPLICAS and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _waiting_for_the_migration_lock(watcher) == REPLICAS
        holder.rollback()
        errors = [replica.communicate(timeout=120)[1] for replica in replicas]
        assert [replica.returncode for replica in replicas] == [0] * REPLICAS, errors
        versions = watcher.execute("SELECT version FROM raw.schema_version ORDER BY version").fetchall()
        assert [version for (version,) in versions] == list(range(1, store.SCHEMA_VERSION + 1))
    finally:
        # Closed even when an assertion fails: a connection left open past the server's end aborts the process.
        holder.close()
        watcher.close()


def test_replicas_starting_together_on_an_empty_database_all_start(pg_url):
    """Each replica waits for the migration lock while another holds it; once it is free, one sets the schema up and
    the others find it done (they used to fail on 'relation "schema_version" already exists')."""
    start_replicas_together(pg_url)


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


@pytest.fixture
def activated(trained_db, tmp_path) -> str:
    """The tutorial's high bucket activated to a folder, not delivered yet."""
    definition = instances.get_instance(trained_db, TUTORIAL).definition
    segments.create_segment(trained_db, SEGMENT, segments.bucket_rule(
        TUTORIAL, "high", definition.low_threshold, definition.high_threshold))
    destinations.create_destination(trained_db, destinations.Destination("share", "folder", str(tmp_path / "share")))
    activation.activate(trained_db, SEGMENT, "share")
    store.release(trained_db)
    return SEGMENT


def _stopped(script: str, *args: str) -> None:
    child = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=ROOT, timeout=180)
    assert child.returncode == -signal.SIGKILL


def _activation_page() -> AppTest:
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    app.run().switch_page("app_pages/segments.py").run()
    assert not app.exception
    return app


@pytest.mark.both_backends
def test_a_delivery_cut_off_by_a_restart_says_so_and_is_sent_once(trained_db, activated, tmp_path):
    """It showed "sending" for good; the next start marks it failed with the reason, and Deliver now sends it."""
    _stopped(STOP_WHILE_DELIVERING, trained_db)
    assert activation.list_activations(trained_db).iloc[0]["last_status"] == activation.SENDING

    engine.recover_interrupted_runs(trained_db)  # what every start of a page does
    [row] = activation.list_activations(trained_db).to_dict("records")
    assert (row["last_status"], row["error"]) == (activation.FAILED, activation.INTERRUPTED)
    app = _activation_page()
    assert any("cut off" in warning.value and "Deliver now" in warning.value for warning in app.warning)

    app.button(key="activation_deliver").click().run()
    assert not app.exception
    assert any(f"{SEGMENT} -> share" in message.value.replace("\\", "") and "success" in message.value
               for message in app.success)
    history = activation.delivery_history(trained_db, SEGMENT)
    assert history[["status", "attempts"]].values.tolist() == [[activation.SUCCESS, 2]]
    assert len(list((tmp_path / "share").rglob("manifest.json"))) == 1


@pytest.mark.both_backends
def test_a_delivery_this_process_has_claimed_is_never_taken_for_an_interrupted_one(trained_db, activated):
    """Every page start looks for interrupted deliveries; one of this process counts as being sent from the moment
    its claim commits (it was counted only a moment later, and no longer while its success was being saved)."""
    [activation_id] = activation.list_activations(trained_db)["activation_id"].tolist()
    with store.connect(trained_db) as con:
        record = activation._activation(con, activation_id)
    delivery_id = activation._claim_here(trained_db, record, "snapshot", store.resolve(trained_db).is_postgres)
    try:
        engine.recover_interrupted_runs(trained_db)  # what a page start in another session does
        assert activation.list_activations(trained_db).iloc[0]["last_status"] == activation.SENDING
    finally:
        activation._sending_here.discard(delivery_id)
    engine.recover_interrupted_runs(trained_db)
    assert activation.list_activations(trained_db).iloc[0]["last_status"] == activation.FAILED


@pytest.mark.both_backends
def test_a_run_stopped_before_it_delivered_is_shown_undelivered_until_sent(trained_db, activated):
    """The run's results are in, its delivery never started: the page says the destination is behind (it said
    nothing), and Deliver now catches up."""
    [delivered] = activation.deliver_pending(trained_db, segment=SEGMENT)
    _stopped(STOP_BEFORE_DELIVERING, trained_db, TUTORIAL, dt.date(2026, 10, 25))
    current_run = instances.get_instance(trained_db, TUTORIAL).current_run_id
    assert current_run != delivered.run_id

    app = _activation_page()
    [behind] = [warning.value for warning in app.warning if "not delivered" in warning.value]
    assert f"Run {current_run}, the instance's latest" in behind and f"holds run {delivered.run_id}" in behind
    app.button(key="activation_deliver").click().run()
    assert not app.exception
    app.run()
    assert not [warning for warning in app.warning if "not delivered" in warning.value]
    assert activation.list_activations(trained_db).iloc[0]["last_run"] == current_run



@pytest.mark.both_backends
def test_a_folder_destination_of_a_store_meant_to_survive_restarts_warns_that_its_files_do_not(trained_db, activated,
                                                                                              backend):
    """A PostgreSQL store is how the app is deployed to outlive its container; a folder on that container is wiped
    by the restart that the store survives, while its deliveries stay recorded as sent."""
    warned = [warning.value for warning in _activation_page().warning if "restarts" in warning.value]
    if backend == "postgres":
        [warning] = warned
        assert "share writes into" in warning and "files there are gone" in warning
    else:
        assert warned == []
    webhook = destinations.Destination("hook", "webhook", "https://example.com/hook")
    assert destinations.lost_on_restart(trained_db, webhook) is None


@pytest.fixture
def unrelated_process():
    """A live process of this machine that has nothing to do with the app."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait()


def _a_run_held_by(db, pid: int, heartbeat_age_minutes: int) -> None:
    """The tutorial's instance in Training, by a run of process ``pid`` of this machine last heard from then."""
    def work(con):
        [(instance_id,)] = con.execute("SELECT instance_id FROM instances WHERE name = ?", [TUTORIAL]).fetchall()
        con.execute("UPDATE runs SET status = 'error' WHERE status = 'running'")
        con.execute(
            "INSERT INTO runs (run_id, instance_id, status, as_of, started_at, pid, host, heartbeat_at) "
            "SELECT max(run_id) + 1, $instance, 'running', DATE '2026-11-01', $heard, $pid, $host, $heard FROM runs",
            {"instance": instance_id, "pid": pid, "host": store.this_host(),
             "heard": dt.datetime.now() - dt.timedelta(minutes=heartbeat_age_minutes)})
        con.execute("UPDATE instances SET status = ? WHERE instance_id = ?", [instances.TRAINING, instance_id])

    store.write(db, work)


def test_a_run_whose_process_id_went_to_another_process_after_a_restart_is_marked_interrupted(
        trained_db_template, pg_url, unrelated_process):
    """A container restarted under the same host name numbers its processes from 1 again: the killed run's process
    id may belong to a live, unrelated process. Its silent heartbeat tells (it stayed in Training for good)."""
    store.release(trained_db_template)
    store.copy(trained_db_template, pg_url)
    _a_run_held_by(pg_url, unrelated_process.pid, heartbeat_age_minutes=0)
    assert engine.recover_interrupted_runs(pg_url) == 0  # a process that beats is still working
    _a_run_held_by(pg_url, unrelated_process.pid, heartbeat_age_minutes=10)
    assert engine.recover_interrupted_runs(pg_url) == 1
    instance = instances.get_instance(pg_url, TUTORIAL)
    assert instance.status == instances.SUCCESS and "interrupted" in instance.status_reason


def test_without_a_model_key_a_restarted_container_says_why_it_retrains(trained_db_template, pg_url, tmp_path,
                                                                         monkeypatch):
    """No model key on PostgreSQL: the restarted container's key file is new, so the stored model is not loaded. The
    run's note said only that it 'failed its signature check' (as if tampered with); it now says what to set, and
    the sidebar says it before anyone runs."""
    store.release(trained_db_template)
    store.copy(trained_db_template, pg_url)
    monkeypatch.delenv(store.MODEL_KEY_ENV_VAR, raising=False)
    monkeypatch.setenv(models.KEY_FILE_ENV_VAR, str(tmp_path / "restarted-container" / "model-key"))
    monkeypatch.setenv(store.DB_ENV_VAR, pg_url)
    engine.run_instance(pg_url, TUTORIAL)
    note = scores.latest_run(pg_url, TUTORIAL)["details"]["cache"]
    assert "retrained" in note and "[cai] model_key" in note

    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    assert not app.exception
    assert [warning.value for warning in app.sidebar.warning if "[cai] model_key" in warning.value]
    app.secrets["cai"] = {"model_key": "the deployment's secret"}
    app.run()
    assert not app.exception
    assert not [warning.value for warning in app.sidebar.warning if "[cai] model_key" in warning.value]


def test_an_instance_found_interrupted_after_the_page_cached_it_as_training_is_shown_interrupted(
        trained_db, unrelated_process):
    """The list of instances is cached for minutes; a run whose process died after it was read stayed "Training"
    there, while the summary below already said it was interrupted."""
    _a_run_held_by(trained_db, unrelated_process.pid, heartbeat_age_minutes=0)
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    assert not app.exception
    assert instances.TRAINING in [text.value for text in app.text]
    unrelated_process.kill()
    unrelated_process.wait()
    app.run()
    assert not app.exception
    assert instances.TRAINING not in [text.value for text in app.text]
    assert instances.SUCCESS in [text.value for text in app.text]
    assert any("interrupted" in warning.value for warning in app.warning)


def _within(seconds: float, work):
    """``work()``'s result, failing the test if it is still waiting after ``seconds`` (it would wait for hours)."""
    outcome = {}

    def attempt():
        try:
            outcome["result"] = work()
        except Exception as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def test_a_container_that_vanished_mid_load_blocks_other_writers_only_briefly(pg_url, monkeypatch):
    """Its open transaction held the row every load and run swap write, and the next container's load waited for
    it until the server's TCP keepalive gave up (hours). Now the waiting writer hears "busy" after a few seconds,
    and the server ends the silent transaction, so the next attempt goes through."""
    store.migrate(pg_url)
    gate = _raw(pg_url)
    gate.begin()
    gate.execute(f"CALL postgres_execute('raw', 'SELECT pg_advisory_xact_lock({GO_SILENT_LOCK_ID})')")
    vanished = subprocess.Popen([sys.executable, "-c", VANISH_MID_LOAD, pg_url, str(GO_SILENT_LOCK_ID)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
    try:
        assert vanished.stdout.readline().strip() == "holding"
        monkeypatch.setattr(store, "BUSY_WAIT_SECONDS", 1.0)
        with pytest.raises(StoreBusy):
            _within(30, lambda: store.write(pg_url, identity.claim_profile_set))
        gate.rollback()  # the container goes silent now
        deadline = time.monotonic() + 30
        while True:
            try:
                _within(30, lambda: store.write(pg_url, identity.claim_profile_set))
                break
            except StoreBusy:
                assert time.monotonic() < deadline
        assert vanished.poll() is None  # its process still runs: the server ended its transaction, not the process
    finally:
        vanished.kill()
        vanished.wait()
        vanished.stdout.close()
        gate.close()
