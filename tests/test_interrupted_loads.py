"""A file load cut off by a restart (a process killed while it parses or writes) is recorded as interrupted by the
next start, with nothing of it kept; one still running in another process is left alone."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cai import audit, engine, ingest, store
from cai.errors import ValidationError
from tests.conftest import ROOT
from tests.test_access import AUTH, EDITOR, VIEWER, fresh_caches  # noqa: F401 - the autouse fixture applies here
from tests.test_restarts import unrelated_process  # noqa: F401 - a fixture

pytestmark = pytest.mark.both_backends

LOADER = "ana@example.com"
# Loads argv[2] into the store argv[1] and kills itself (SIGKILL, no clean-up) when the load reaches the function
# of cai.ingest named argv[3]: a container stopped right there.
STOP_AT = f"""
import os, signal, sys
from cai import ingest
setattr(ingest, sys.argv[3], lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL))
ingest.ingest_file(sys.argv[1], sys.argv[2], actor={LOADER!r})
"""
# Loads argv[2] into the store argv[1], pausing while it checks the file's rows until a line comes on stdin.
PAUSE_WHILE_PARSING = """
import sys
from cai import ingest
check = ingest._coerce_events
def paused(*args, **kwargs):
    print("PARSING", flush=True)
    sys.stdin.readline()
    return check(*args, **kwargs)
ingest._coerce_events = paused
ingest.ingest_file(sys.argv[1], sys.argv[2])
"""


def _visits(folder: Path, name: str = "visits.csv", rows: int = 200) -> Path:
    path = folder / name
    pd.DataFrame({
        "timestamp": pd.date_range("2026-10-01", periods=rows, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "event_type": "web.webpagedetails.pageViews",
        "email": [f"visitor{number}@loads.example" for number in range(rows)],
    }).to_csv(path, index=False)
    return path


def _contents(db) -> tuple[int, int, int, int]:
    with store.connect(db) as con:
        return con.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM profiles), "
                           "(SELECT count(*) FROM identities), (SELECT count(*) FROM batches)").fetchall()[0]


def _stopped_at(function: str, db, path: Path) -> None:
    store.release(db)
    child = subprocess.run([sys.executable, "-c", STOP_AT, str(db), str(path), function], cwd=ROOT, timeout=180,
                           capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr


def _load_statuses(db) -> list[str]:
    return store.query_df(db, "SELECT status FROM loads ORDER BY load_id")["status"].tolist()


@pytest.mark.parametrize("stage", ["_coerce_events", "_record_batch"], ids=["while-parsing", "while-writing"])
def test_a_load_killed_midway_is_shown_interrupted_after_the_next_start_and_kept_nothing(trained_db, tmp_path,
                                                                                        stage):
    """The load's transaction rolled back, so nothing was kept, but nothing said so: the uploader saw the page
    reload, and everyone else saw no trace. The next start says the file was not loaded and who loaded it."""
    before = _contents(trained_db)
    _stopped_at(stage, trained_db, _visits(tmp_path))
    assert _load_statuses(trained_db) == [ingest.LOADING]

    engine.recover_interrupted_runs(trained_db)  # what every start of a page does
    assert _contents(trained_db) == before
    newest = ingest.batches(trained_db).iloc[0]
    assert (newest["file_name"], newest["status"], newest["rows_accepted"]) == ("visits.csv", ingest.INTERRUPTED, 0)
    assert ingest.LOAD_INTERRUPTED in newest["errors"]
    [entry] = audit.entries(trained_db, action="load interrupted").to_dict("records")
    assert (entry["actor"], entry["object_name"]) == (LOADER, "visits")
    assert engine.recover_interrupted_runs(trained_db) == 0 and _load_statuses(trained_db) == [ingest.INTERRUPTED]

    # Loaded again, it is in; the history keeps the interrupted attempt below it.
    report = ingest.ingest_file(trained_db, tmp_path / "visits.csv")
    assert report.rows_accepted == 200
    assert ingest.batches(trained_db)["status"].tolist()[:2] == ["success", ingest.INTERRUPTED]


def test_the_command_line_lists_an_interrupted_load_with_who_loaded_it(trained_db, tmp_path):
    _stopped_at("_coerce_events", trained_db, _visits(tmp_path))
    listing = subprocess.run([sys.executable, "-m", "cai", "--db", str(trained_db), "datasets"], cwd=ROOT,
                             capture_output=True, text=True, timeout=180)
    assert listing.returncode == 0, listing.stderr
    [line] = [line for line in listing.stdout.splitlines() if line.startswith("visits.csv")]
    assert "into 'visits'" in line and f"by {LOADER}: {ingest.LOAD_INTERRUPTED}" in line


def test_a_load_still_running_in_another_process_is_never_marked_interrupted(trained_db, tmp_path):
    before = _contents(trained_db)
    store.release(trained_db)
    child = subprocess.Popen([sys.executable, "-c", PAUSE_WHILE_PARSING, str(trained_db), str(_visits(tmp_path))],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "PARSING", child.stderr.read()
        engine.recover_interrupted_runs(trained_db)
        assert _load_statuses(trained_db) == [ingest.LOADING]
        assert ingest.batches(trained_db).iloc[0][["file_name", "status"]].tolist() == ["visits.csv", ingest.LOADING]
        store.release(trained_db)
        _, errors = child.communicate("go on\n", timeout=180)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 0, errors
    assert _load_statuses(trained_db) == []
    events, profiles, identities, batches = _contents(trained_db)
    assert (events, profiles, identities, batches) == (before[0] + 200, before[1] + 200, before[2] + 200,
                                                       before[3] + 1)
    assert ingest.batches(trained_db)["status"].tolist()[0] == "success"


def test_a_load_whose_batch_committed_just_before_its_process_died_is_not_called_interrupted(trained_db, tmp_path):
    """Its record outlived it (the process died before dropping it); its batch names it, so the next start only
    tidies the record away."""
    _stopped_at("_end_load", trained_db, _visits(tmp_path))
    assert _load_statuses(trained_db) == [ingest.LOADING]
    engine.recover_interrupted_runs(trained_db)
    assert _load_statuses(trained_db) == []
    assert ingest.batches(trained_db)["status"].tolist()[0] == "success"
    assert audit.entries(trained_db, action="load interrupted").empty


def test_a_loaded_and_a_refused_file_each_leave_exactly_one_batch_and_no_load_record(trained_db):
    with store.connect(trained_db) as con:
        [(last_batch,)] = con.execute("SELECT max(batch_id) FROM batches").fetchall()
    good = b"timestamp,event_type,email\n2026-10-02T10:00:00Z,commerce.purchases,first@loads.example\n"
    ingest.ingest_bytes(trained_db, good, "visits.csv")
    with pytest.raises(ValidationError):
        ingest.ingest_bytes(trained_db, b"timestamp,event_type,email\nnot a time,search,first@loads.example\n",
                            "visits.csv")
    written = store.query_df(trained_db, "SELECT status, load_id FROM batches WHERE batch_id > ? ORDER BY batch_id",
                             [last_batch])
    assert written["status"].tolist() == ["success", "failed"]
    assert written["load_id"].notna().all() and written["load_id"].is_unique
    assert _load_statuses(trained_db) == []
    assert ingest.batches(trained_db)["status"].tolist()[:2] == ["failed", "success"]


def _a_load_held_by(db, pid: int, heartbeat_age_minutes: int) -> None:
    """A load in progress in process ``pid`` of this machine, last heard from then."""
    heard = dt.datetime.now() - dt.timedelta(minutes=heartbeat_age_minutes)
    store.write(db, lambda con: con.execute(
        "INSERT INTO loads (load_id, file_name, dataset, actor, status, pid, host, started_at, heartbeat_at) "
        "SELECT coalesce(max(load_id), 0) + 1, 'visits.csv', 'visits', 'local', ?, ?, ?, ?, ? FROM loads",
        [ingest.LOADING, pid, store.this_host(), heard, heard]))


def test_a_load_whose_process_id_went_to_another_process_is_marked_interrupted_where_heartbeats_tell(
        trained_db, backend, unrelated_process):
    """A container restarted under the same host name numbers its processes from 1 again: the killed load's process
    id may belong to a live, unrelated process. On PostgreSQL its silent heartbeat tells; on a DuckDB file (one
    machine's, no heartbeat) the live process id keeps it loading."""
    _a_load_held_by(trained_db, unrelated_process.pid, heartbeat_age_minutes=0)
    engine.recover_interrupted_runs(trained_db)
    assert _load_statuses(trained_db) == [ingest.LOADING]
    store.write(trained_db, lambda con: con.execute("DELETE FROM loads"))
    _a_load_held_by(trained_db, unrelated_process.pid, heartbeat_age_minutes=10)
    engine.recover_interrupted_runs(trained_db)
    expected = ingest.INTERRUPTED if backend == "postgres" else ingest.LOADING
    assert _load_statuses(trained_db) == [expected]


def test_the_data_page_shows_an_interrupted_load_with_its_message_and_masks_its_file_name(trained_db, tmp_path):
    path = _visits(tmp_path, name="export for carol.export@hidden.example.csv")
    _stopped_at("_coerce_events", trained_db, path)
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    app.switch_page("app_pages/data.py").run()
    assert not app.exception
    [history] = [frame.value for frame in app.dataframe if "errors" in frame.value.columns]
    newest = history.iloc[0]
    assert (newest["file_name"], newest["status"]) == (path.name, ingest.INTERRUPTED)
    assert ingest.LOAD_INTERRUPTED in newest["errors"]

    viewer = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    viewer.secrets["auth"] = AUTH
    viewer.secrets["cai"] = {"editors": [EDITOR]}
    for key, value in {"is_logged_in": True, "email": VIEWER, "email_verified": True, "sub": "v-1"}.items():
        viewer.user[key] = value
    viewer.switch_page("app_pages/data.py").run()
    assert not viewer.exception
    [history] = [frame.value for frame in viewer.dataframe if "errors" in frame.value.columns]
    shown = history.iloc[0]
    assert shown["status"] == ingest.INTERRUPTED and ingest.LOAD_INTERRUPTED in shown["errors"]
    assert "carol.export@" not in shown["file_name"] and shown["file_name"].startswith("export for c")


def test_a_claim_retried_on_another_claims_key_leaves_that_claim_alive(monkeypatch):
    # Two uploads at once both take the next id; the one that commits second retries with the following id. Its
    # retry must not take the first one's id out of this process's live loads, or the next page would mark that
    # running load interrupted.
    proposed = iter([5, 6])

    def write_that_conflicts_once(location, work):
        work(None)  # the first attempt proposes 5, which the other upload has just committed
        return work(None)

    monkeypatch.setattr(store, "write", write_that_conflicts_once)
    live = {5}
    assert store.claim("unused.duckdb", lambda con: next(proposed), live) == 6
    assert live == {5, 6}
