"""The first start cannot be broken: killed, reloaded or opened in two tabs, the next start finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest
from streamlit.testing.v1 import AppTest

from cai import instances, store
from tests.conftest import ROOT, TEST_PROFILES
from ui import bootstrap

TIMEOUT = 600

# A first start in a process of its own that prints each progress message, so the test can kill it mid-training.
CHILD = """
import sys
from cai import store
from ui import bootstrap

class Printed(bootstrap.FirstStart):
    def report(self, fraction, message):
        super().report(fraction, message)
        print(message, flush=True)

bootstrap.DEMO_PROFILES = int(sys.argv[2])
bootstrap.build(Printed(store.resolve(sys.argv[1])))
"""


@pytest.fixture
def small_demo(monkeypatch, tmp_path):
    monkeypatch.setattr(bootstrap, "DEMO_PROFILES", TEST_PROFILES)


def _assert_finished(db) -> None:
    assert db.exists() and not bootstrap.side_file(store.resolve(db)).exists()
    tutorial = instances.get_instance(db, instances.TUTORIAL_INSTANCE)
    assert tutorial.status == instances.SUCCESS and tutorial.current_run_id is not None
    counts = store.query_df(db, "SELECT (SELECT count(*) FROM datasets) AS datasets, "
                                "(SELECT count(*) FROM profiles) AS profiles, "
                                "(SELECT count(*) FROM scores) AS scores").iloc[0]
    assert counts["datasets"] == 1
    assert counts["profiles"] == TEST_PROFILES
    assert counts["scores"] > 0


def test_a_first_start_killed_while_training_is_finished_by_the_next_start(small_demo, tmp_path):
    db = tmp_path / "data" / "cai.duckdb"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(TEST_PROFILES)], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    for line in child.stdout:
        if "training" in line.lower():
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not db.exists(), "a killed first start must not leave a database that looks finished"
    assert bootstrap.side_file(store.resolve(db)).exists()

    job = bootstrap.FirstStart(store.resolve(db))
    bootstrap.build(job)

    assert job.error is None and job.done.is_set()
    _assert_finished(db)


def test_a_leftover_side_file_that_is_not_a_database_is_replaced(small_demo, tmp_path):
    db = tmp_path / "cai.duckdb"
    bootstrap.side_file(store.resolve(db)).write_bytes(b"half a file, cut off when the machine lost power")

    job = bootstrap.FirstStart(store.resolve(db))
    bootstrap.build(job)

    assert job.error is None
    _assert_finished(db)


def test_the_first_start_keeps_the_demo_data_per_month_to_show_while_the_model_trains(small_demo, tmp_path):
    db = tmp_path / "cai.duckdb"
    job = bootstrap.FirstStart(store.resolve(db))
    bootstrap.build(job)

    stored = store.query_df(db, "SELECT count(*) AS events, count(DISTINCT date_trunc('month', ts)) AS months, "
                                "count(DISTINCT event_type) AS types FROM events").iloc[0]
    shown = job.events_per_month
    assert shown["events"].sum() == stored["events"] > 0
    assert shown["month"].nunique() == stored["months"]
    assert shown["event_type"].nunique() == stored["types"]


def test_two_tabs_opened_at_once_share_one_first_start_and_both_show_the_app(small_demo, tmp_path, monkeypatch):
    db = tmp_path / "cai.duckdb"
    monkeypatch.setenv(store.DB_ENV_VAR, str(db))
    tabs = [AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT) for _ in range(2)]
    threads = [threading.Thread(target=tab.run) for tab in tabs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for tab in tabs:
        assert not tab.exception
        assert tab.title[0].value == instances.TUTORIAL_INSTANCE  # each lands on the demo's dashboard
        assert not tab.error
    _assert_finished(db)


def test_a_reloaded_page_watches_the_running_first_start_instead_of_starting_another(small_demo, tmp_path,
                                                                                     monkeypatch):
    db = tmp_path / "cai.duckdb"
    monkeypatch.setenv(store.DB_ENV_VAR, str(db))
    abandoned = bootstrap.first_start(store.resolve(db))  # the tab that was closed started this job, then went away

    reloaded = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()

    assert bootstrap.first_start(store.resolve(db)) is abandoned
    assert abandoned.done.is_set() and abandoned.error is None
    assert not reloaded.exception
    assert reloaded.title[0].value == instances.TUTORIAL_INSTANCE
    _assert_finished(db)


def test_the_first_start_lands_on_the_dashboard_full_of_scores_and_only_once(small_demo, tmp_path, monkeypatch):
    monkeypatch.setenv(store.DB_ENV_VAR, str(tmp_path / "cai.duckdb"))
    newcomer = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()

    assert not newcomer.exception and not newcomer.error
    assert newcomer.title[0].value == instances.TUTORIAL_INSTANCE
    assert newcomer.query_params["instance"] == instances.TUTORIAL_INSTANCE
    assert [subheader.value for subheader in newcomer.subheader][:1] == ["Score summary"]
    # Once the store exists, the app opens on its instances as always.
    later = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    assert later.title[0].value == "Customer AI"


def test_a_first_start_opened_on_another_page_stays_on_that_page(small_demo, tmp_path, monkeypatch):
    monkeypatch.setenv(store.DB_ENV_VAR, str(tmp_path / "cai.duckdb"))
    opened = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    opened.switch_page("app_pages/data.py")
    opened.run()

    assert not opened.exception
    assert opened.title[0].value == "Data"
    _assert_finished(tmp_path / "cai.duckdb")


def test_a_watching_page_wakes_at_each_report_of_the_first_start(tmp_path):
    job = bootstrap.FirstStart(store.resolve(tmp_path / "cai.duckdb"))
    woken = []
    watcher = threading.Thread(target=lambda: woken.append(job.wait_for_report(0, timeout=TIMEOUT)))
    watcher.start()
    job.report(0.5, "Halfway")
    watcher.join()
    assert woken == [1] and job.message == "Halfway"
    # Past the last report, the end of the job wakes it too; no report is lost between two looks.
    watcher = threading.Thread(target=lambda: woken.append(job.wait_for_report(1, timeout=TIMEOUT)))
    watcher.start()
    job.finish()
    watcher.join()
    assert woken == [1, 1] and job.done.is_set()
    job.report(1.0, "Late")
    assert job.wait_for_report(1, timeout=TIMEOUT) == 2


def test_the_entry_script_shows_the_first_start_before_loading_pandas_or_scikit_learn():
    # What the entry script imports runs before the first start's progress reaches the page; pandas and
    # scikit-learn (over a second on a busy machine) load after it, while the demo is built.
    code = ("import sys, streamlit, cai.errors\n"
            "from ui import access, bootstrap, state\n"
            "print(sorted({'pandas', 'sklearn', 'altair'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"
