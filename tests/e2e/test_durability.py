"""What Streamlit Community Cloud does to the app: its container, disk included, is thrown away on every reboot.
On PostgreSQL, a new container with an empty disk must show everything the last one made."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from cai import demo, instances, store
from tests.conftest import ROOT
from tests.e2e.steps import (TIMEOUT_MS, dashboard_figures, expect_dashboard_figures, load_file, model_note,
                             no_exception, open_dashboard, open_page, run_now, save_high_propensity_segment,
                             table_cells)

pytestmark = pytest.mark.e2e
SEGMENT = "Kept across restarts"
MODEL_KEY = "the deployment's secret"
# What a deployment checks out: the app itself, its configuration and its static files.
APP_FILES = ["streamlit_app.py", "app_pages", "ui", "cai", "static", ".streamlit"]


def _container(folder: Path, db: str) -> tuple[Path, dict]:
    """A fresh container inside ``folder``: a checkout of the app as its working folder with the secrets a
    deployment pastes in, and home, temporary, configuration and cache folders of its own, so that every local file
    the app writes is inside ``folder``."""
    checkout = folder / "app"
    checkout.mkdir(parents=True)
    for name in APP_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__", "secrets.toml"))
        else:
            shutil.copy2(ROOT / name, checkout / name)
    (checkout / ".streamlit" / "secrets.toml").write_text(
        f"[cai]\ndb = {json.dumps(db)}\nmodel_key = {json.dumps(MODEL_KEY)}\n")
    local = {"HOME": "home", "TMPDIR": "tmp", "XDG_CONFIG_HOME": "home/.config", "XDG_CACHE_HOME": "home/.cache",
             "XDG_DATA_HOME": "home/.local/share", "XDG_STATE_HOME": "home/.local/state",
             "XDG_RUNTIME_DIR": "run"}
    for relative in local.values():
        (folder / relative).mkdir(parents=True, exist_ok=True)
    # None of the test machine's own settings (a database, a key file, a PYTHONPATH to the sources) come along.
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("CAI_", "STREAMLIT_", "XDG_", "PYTHON"))}
    env.update({name: str(folder / relative) for name, relative in local.items()})
    return checkout, env


def _local_files(folder: Path, checkout: Path) -> list[Path]:
    """The files the app wrote into its container: everything but the checked-out sources."""
    return [path for path in folder.rglob("*") if not path.is_dir()
            and not (path.is_relative_to(checkout) and (ROOT / path.relative_to(checkout)).exists())]


def _kill(server: subprocess.Popen) -> None:
    """Ends the server as a container's end does: no signal handler, no clean-up."""
    server.send_signal(signal.SIGKILL)
    server.wait()


def _audit_entries(page: Page) -> list[str]:
    open_page(page, "Audit log")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    return table_cells(page, SEGMENT)


def test_a_new_container_with_an_empty_disk_shows_everything_and_retrains_nothing(
        app_page: Page, app_port, start_app, trained_db_template, pg_url, tmp_path):
    """Load a file, run, save a segment; SIGKILL the server and delete every local file it had; a server in a new,
    empty container shows the same dashboard, segment and audit entries, and its next run reuses the stored model."""
    page = app_page
    page.set_default_timeout(TIMEOUT_MS)
    base = f"http://127.0.0.1:{app_port}"
    store.release(trained_db_template)
    store.copy(trained_db_template, pg_url)
    late_events = tmp_path / "late-events.csv"
    # On the demo's last day, so the score date stays and the run scores as many profiles as the tutorial's.
    late_events.write_text(f"timestamp,event_type,email\n2026-10-31T23:30:00,commerce.productViews,"
                           f"{demo.TUTORIAL_EMAIL}\n")

    first = tmp_path / "first-container"
    checkout, env = _container(first, pg_url)
    server = start_app(app_port, env, checkout, tmp_path / "first-server.log")
    page.goto(base)
    open_page(page, "Data")
    load_file(page, late_events)
    expect(page.get_by_text("Loaded late-events.csv as events: 1 events or rows accepted")).to_be_visible()
    open_page(page, "Customer AI")
    run_now(page)
    open_dashboard(page)
    before = dashboard_figures(page)
    assert "trained a new model" in model_note(page)  # the new data made a new model: nothing cached yet
    segment_size = save_high_propensity_segment(page, SEGMENT)
    segment_caption = page.get_by_text("Evaluated against the latest successful run").inner_text()
    entries = _audit_entries(page)
    assert {"load", "run", "create"} <= set(entries)
    page.goto("about:blank")  # no page is left talking to the server that dies
    _kill(server)
    # The app kept local files in its container (the PostgreSQL extension's link in the temporary folder, made at
    # start): they go with the checkout, as on a rebooted container.
    assert any(path.is_relative_to(first / "tmp") for path in _local_files(first, checkout))
    shutil.rmtree(first)

    second = tmp_path / "second-container"
    checkout, env = _container(second, pg_url)
    start_app(app_port, env, checkout, tmp_path / "second-server.log")
    page.goto(base)
    expect(page.get_by_role("link", name=instances.TUTORIAL_INSTANCE).first).to_be_visible()
    no_exception(page)
    open_dashboard(page)
    expect_dashboard_figures(page, before)
    open_page(page, "Segments")
    expect(page.get_by_role("heading", name=SEGMENT)).to_be_visible()
    expect(page.get_by_text("Evaluated against the latest successful run")).to_have_text(segment_caption)
    assert f"with {segment_size} profiles" in segment_caption
    assert _audit_entries(page) == entries
    open_page(page, "Customer AI")
    run_now(page)
    open_dashboard(page)
    assert "reused cached model" in model_note(page)  # the stored model passed its signature check: no training
    expect_dashboard_figures(page, before)
    page.goto("about:blank")
