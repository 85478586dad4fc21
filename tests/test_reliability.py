"""Reliability across processes: a command-line run while the app's users save segments, and processes killed with
SIGKILL in the middle of scoring or of loading a file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from cai import audit, engine, identity, ingest, instances, scores, segments, store
from tests.conftest import ROOT

TUTORIAL = instances.TUTORIAL_INSTANCE

# Runs the tutorial's instance and freezes once scoring has begun, so the test can kill it right there.
RUN_UNTIL_SCORING = """
import sys, time
from cai import engine, instances
def progress(fraction, message):
    if message.startswith("Scoring every eligible profile"):
        print("SCORING", flush=True)
        time.sleep(600)
engine.run_instance(sys.argv[1], instances.TUTORIAL_INSTANCE, progress=progress)
"""

# Loads a file and freezes inside its transaction once every event and identity is written, before the batch is
# recorded and committed, so the test can kill it right there.
LOAD_UNTIL_WRITTEN = """
import sys, time
from cai import ingest
def freeze(*args, **kwargs):
    print("WRITTEN", flush=True)
    time.sleep(600)
ingest._record_batch = freeze
ingest.ingest_file(sys.argv[1], sys.argv[2])
"""


def _child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ})


def _wait_for(child: subprocess.Popen, line: str) -> None:
    for output in child.stdout:
        if output.strip() == line:
            return
    raise AssertionError(f"The child ended before printing {line}: {child.stderr.read()}")


def test_units_of_work_opening_a_file_as_it_is_closed_for_idleness_all_succeed(tmp_path, monkeypatch):
    """DuckDB holds one handle per file in a process: a thread opening the store while the idle timer closes it was
    refused ("Unique file handle conflict"), a few times in a thousand on the old code."""
    monkeypatch.setattr(store, "IDLE_RELEASE_SECONDS", 0.002)
    db = tmp_path / "idle.duckdb"
    with store.connect(db) as con:
        con.execute("SELECT 1")
    failures: list[str] = []

    def work(pause: float) -> None:
        for _ in range(300):
            time.sleep(pause)  # spreads the units of work around the moments the file is closed
            try:
                with store.connect(db) as con:
                    con.execute("SELECT 1").fetchall()
            except Exception as error:  # noqa: BLE001 - the test reports whatever a unit of work would have met
                failures.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=work, args=(0.0005 * number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.release(db)
    assert failures == []


def test_a_command_line_run_and_users_saving_segments_all_complete(trained_db):
    store.release(trained_db)
    run = subprocess.Popen(
        [sys.executable, "-m", "cai", "--db", str(trained_db), "run", TUTORIAL, "--as-of", "2026-10-15", "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outcomes: dict[str, str] = {}

    def save(number: int) -> None:
        try:
            segments.create_segment(trained_db, f"Saved during the run {number}",
                                    segments.Rule(instance=TUTORIAL, minimum=50 + number))
            outcomes[f"{number}"] = "saved"
        except Exception as error:  # noqa: BLE001 - the test reports whatever a user would have seen
            outcomes[f"{number}"] = f"{type(error).__name__}: {error}"

    threads = []
    for number in range(10):
        threads.append(threading.Thread(target=save, args=(number,)))
        threads[-1].start()
        time.sleep(0.3)
    for thread in threads:
        thread.join()
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert json.loads(stdout)["status"] == instances.SUCCESS
    assert outcomes == {f"{number}": "saved" for number in range(10)}
    assert len(segments.list_segments(trained_db)) == 10
    assert scores.latest_run(trained_db, TUTORIAL)["as_of"].isoformat() == "2026-10-15"
    assert audit.entries(trained_db, action="run")["actor"][0].startswith("cli:")


def test_a_run_killed_while_scoring_keeps_the_last_good_scores(trained_db):
    before = scores.latest_run(trained_db, TUTORIAL)
    counted = store.query_df(trained_db, "SELECT count(*) AS n FROM scores WHERE run_id = ?", [before["run_id"]])
    store.release(trained_db)
    child = _child(RUN_UNTIL_SCORING, trained_db)
    _wait_for(child, "SCORING")
    child.send_signal(signal.SIGKILL)
    child.wait()

    assert instances.get_instance(trained_db, TUTORIAL).status == instances.TRAINING
    after = scores.latest_run(trained_db, TUTORIAL)
    assert after["run_id"] == before["run_id"]
    assert store.query_df(trained_db, "SELECT count(*) AS n FROM scores WHERE run_id = ?",
                          [before["run_id"]]).equals(counted)

    # The next start of the app marks the run interrupted, not "Training" for ever, and shows the old scores.
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    assert not app.exception
    instance = instances.get_instance(trained_db, TUTORIAL)
    assert instance.status == instances.SUCCESS and "interrupted" in instance.status_reason
    history = instances.run_history(trained_db, TUTORIAL)
    assert "interrupted" in history["status"].tolist()
    assert any("interrupted" in warning.value for warning in app.warning)


def test_an_ingestion_killed_midway_leaves_no_partial_batch(empty_db, tmp_path):
    big = tmp_path / "big.csv"
    rows = 400_000
    frame = pd.DataFrame({
        "timestamp": pd.date_range("2026-01-01", periods=rows, freq="min").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "event_type": "web.webpagedetails.pageViews",
        "email": [f"visitor{i % 50_000}@example.com" for i in range(rows)],
    })
    frame.to_csv(big, index=False)
    ingest.ingest_bytes(empty_db, b"timestamp,event_type,email\n2026-01-01,search,first@example.com\n", "first.csv")
    store.release(empty_db)

    child = _child(LOAD_UNTIL_WRITTEN, empty_db, big)
    _wait_for(child, "WRITTEN")
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the load ended before it was killed"

    with store.connect(empty_db) as con:
        events, batches, identities = con.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM batches WHERE status = 'success'), "
            "(SELECT count(*) FROM identities)").fetchall()[0]
    assert (events, batches, identities) == (1, 1, 1)
    report = ingest.ingest_file(empty_db, big)
    assert report.rows_accepted == rows


HOLD_THE_FILE = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("HOLDING", flush=True)
time.sleep(600)
"""


def test_a_page_facing_a_locked_database_says_busy_instead_of_failing(trained_db, monkeypatch):
    monkeypatch.setattr(store, "BUSY_WAIT_SECONDS", 0.5)
    store.release(trained_db)
    holder = _child(HOLD_THE_FILE, trained_db)
    try:
        _wait_for(holder, "HOLDING")
        app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    finally:
        holder.kill()
        holder.wait()
    assert not app.exception
    assert any("busy" in error.value for error in app.error)


# Runs the tutorial's instance and pauses just before its results are swapped in, until the test says go on.
RUN_PAUSING_BEFORE_SWAP = """
import json, os, sys, time
from cai import engine, instances
def progress(fraction, message):
    if message.startswith("Saving the scores"):
        print("SWAPPING", flush=True)
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.05)
result = engine.run_instance(sys.argv[1], instances.TUTORIAL_INSTANCE, progress=progress)
print(json.dumps(result.as_dict()), flush=True)
"""


def _household_file(db, tmp_path) -> tuple:
    """A profile file that links three scored customers each to the next one's CRMID (merging three profiles away)
    and brings one newcomer; with the profiles it keeps and those it merges away."""
    with store.connect(db) as con:
        pairs = con.execute(
            "SELECT e.id_value, c.id_value, e.profile_id, c.profile_id FROM scores s "
            "JOIN identities e ON e.profile_id = s.profile_id AND e.namespace = 'Email' "
            "JOIN identities c ON c.profile_id = s.profile_id + 1 AND c.namespace = 'CRMID' "
            "JOIN scores t ON t.run_id = s.run_id AND t.profile_id = s.profile_id + 1 "
            "WHERE s.run_id = ? AND s.profile_id % 2 = 1 ORDER BY s.profile_id LIMIT 3",
            [scores.latest_run(db, TUTORIAL)["run_id"]]).fetchall()
    assert len(pairs) == 3
    household = tmp_path / "household.csv"
    pd.DataFrame({"email": [p[0] for p in pairs] + ["newcomer@example.com"],
                  "crmid": [p[1] for p in pairs] + ["NEWCOMER-1"], "city": ["Merged"] * 4}).to_csv(household,
                                                                                                   index=False)
    return household, [pair[2] for pair in pairs], [pair[3] for pair in pairs]


def _assert_results_only_for_profiles_that_exist(db, run_id: int, kept: list[int], gone: list[int]) -> None:
    with store.connect(db) as con:
        orphans = con.execute(
            "SELECT (SELECT count(*) FROM scores ANTI JOIN profiles USING (profile_id)), "
            "(SELECT count(*) FROM score_factors ANTI JOIN profiles USING (profile_id))").fetchall()[0]
        scored = {row[0] for row in con.execute("SELECT profile_id FROM scores WHERE run_id = ?",
                                                [run_id]).fetchall()}
        profiles_scored = con.execute("SELECT profiles_scored FROM runs WHERE run_id = ?", [run_id]).fetchall()[0][0]
    assert orphans == (0, 0)
    assert set(kept) <= scored and not set(gone) & scored
    assert profiles_scored == len(scored)
    members = segments.create_segment(db, f"Everyone after run {run_id}", segments.Rule(instance=TUTORIAL))
    assert members["size"] == len(scored)


def test_a_load_that_merges_profiles_during_a_run_leaves_no_scores_for_profiles_gone(trained_db, tmp_path):
    before = scores.latest_run(trained_db, TUTORIAL)["run_id"]
    household, kept, gone = _household_file(trained_db, tmp_path)
    go_on = tmp_path / "go-on"
    store.release(trained_db)

    run = _child(RUN_PAUSING_BEFORE_SWAP, trained_db, go_on)
    try:
        _wait_for(run, "SWAPPING")
        load = subprocess.run([sys.executable, "-m", "cai", "--db", str(trained_db), "ingest", str(household),
                               "--kind", "profiles"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert load.returncode == 0, load.stderr
        assert "3 profiles merged" in load.stdout
    finally:
        go_on.touch()
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["status"] == instances.SUCCESS

    run_id = scores.latest_run(trained_db, TUTORIAL)["run_id"]
    assert run_id == result["run_id"] != before
    _assert_results_only_for_profiles_that_exist(trained_db, run_id, kept, gone)


@pytest.mark.both_backends
def test_a_load_merging_scored_profiles_away_shrinks_the_segments_this_process_has_already_measured(
        trained_db, tmp_path):
    """On PostgreSQL a run's scores are read once per process for the segment builder; a load removing some of
    them must not leave the builder, the segment list or a segment's members counting them."""
    everyone = segments.Rule(instance=TUTORIAL)
    segments.create_segment(trained_db, "Everyone", everyone)
    before = segments.measure(trained_db, everyone)
    assert segments.list_segments(trained_db)["size_now"].tolist() == [before["size"]]
    household, kept, gone = _household_file(trained_db, tmp_path)

    assert ingest.ingest_file(trained_db, household, kind="profiles").profiles_merged == 3

    after = segments.measure(trained_db, everyone)
    assert after["size"] == after["scored"] == before["size"] - 3
    assert segments.list_segments(trained_db)["size_now"].tolist() == [after["size"]]
    members = set(segments.members(trained_db, "Everyone", limit=after["size"])["profile_id"])
    assert set(kept) <= members and not set(gone) & members and len(members) == after["size"]
    assert segments.segments_of_profile(trained_db, gone[0]) == []
    assert segments.segments_of_profile(trained_db, kept[0]) == ["Everyone"]


@pytest.mark.both_backends
def test_a_run_swapping_in_while_a_merging_load_is_open_in_the_same_process_keeps_no_scores_for_profiles_gone(
        trained_db, tmp_path, monkeypatch):
    """Two sessions of one app share the store's connection, so their transactions really overlap: the run, held
    at its scoring stage, goes on and swaps its results in while the load's transaction has merged profiles away
    but not committed yet. Whichever commits second must see the other's work."""
    household, kept, gone = _household_file(trained_db, tmp_path)
    at_scoring, go_on = threading.Event(), threading.Event()
    merged, commit = threading.Event(), threading.Event()
    merge = identity.apply_merges

    def merge_then_hold(con, merges, batch_id):
        merge(con, merges, batch_id)
        if not merged.is_set():
            merged.set()
            commit.wait(120)

    def hold_at_scoring(fraction, message):
        if message.startswith("Scoring every eligible profile"):
            at_scoring.set()
            go_on.wait(120)

    monkeypatch.setattr(identity, "apply_merges", merge_then_hold)
    outcome = {}
    run = threading.Thread(target=lambda: outcome.update(
        run=engine.run_instance(trained_db, TUTORIAL, progress=hold_at_scoring)))
    load = threading.Thread(target=lambda: outcome.update(
        load=ingest.ingest_file(trained_db, household, kind="profiles")))
    run.start()
    try:
        assert at_scoring.wait(120)
        load.start()
        assert merged.wait(120)
        go_on.set()
        run.join(300)
    finally:
        go_on.set()
        commit.set()
        run.join(300)
        load.join(120)

    assert outcome["run"].status == instances.SUCCESS, outcome["run"].error
    assert outcome["load"].profiles_merged == 3 and outcome["load"].profiles_created == 1
    latest = scores.latest_run(trained_db, TUTORIAL)
    assert latest["run_id"] == outcome["run"].run_id
    _assert_results_only_for_profiles_that_exist(trained_db, latest["run_id"], kept, gone)

    # The newcomer came after the run read its data: the dashboard says the next run scores it.
    assert latest["profiles_loaded_after"] == 1
    st.cache_data.clear()
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    app = app.switch_page("app_pages/dashboard.py").run()
    assert not app.exception
    assert any("1 profiles were loaded since this run started" in info.value for info in app.info)
