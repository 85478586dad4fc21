"""A real Streamlit server on a free loopback port, driven by Playwright through Debian's Chromium."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from cai import store
from tests.conftest import ROOT

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
STARTUP_SECONDS = 90
# Streamlit reruns the script after every action; on a loaded 2-core machine that can take seconds.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync",
                     "--disable-component-update", "--no-first-run"]}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 2200}}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start_server(port: int, env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    """Starts ``streamlit run streamlit_app.py`` in ``cwd`` on ``port`` and waits until it answers its health check."""
    with open(log, "w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1", "--server.port", str(port),
             "--server.fileWatcherType", "none"],
            cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        )
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail("The app exited at start:\n" + log.read_text())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    return process
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("The app did not answer in time:\n" + log.read_text())
        time.sleep(0.3)


def _stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def app_port() -> int:
    return _free_port()


@pytest.fixture
def start_app():
    """``start_app(port, env, cwd, log)`` starts a server for the test; the ones still running at its end are
    stopped."""
    started = []

    def start(port: int, env: dict, cwd: Path, log: Path) -> subprocess.Popen:
        started.append(_start_server(port, env, cwd, log))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            _stop_server(process)


@pytest.fixture
def app_server(trained_db, app_port, start_app, tmp_path):
    """Serves the app on a private copy of the trained demo store, a DuckDB file or, for tests marked
    ``both_backends``, a fresh PostgreSQL database too; returns (base URL, database path or URL)."""
    start_app(app_port, {**os.environ, store.DB_ENV_VAR: str(trained_db)}, ROOT, tmp_path / "server.log")
    return f"http://127.0.0.1:{app_port}", trained_db


@pytest.fixture
def app_page(page, app_port):
    """The browser page, allowed to reach only the app's own address, failing the test on any console error."""
    base = f"http://127.0.0.1:{app_port}"
    blocked, errors = [], []

    def refuse(route):
        blocked.append(route.request.url)
        route.abort()

    # A regular expression is matched inside the browser driver, so the app's own requests are never held up.
    page.route(re.compile(rf"^(?!{re.escape(base)}/)"), refuse)
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert not blocked, f"The app asked for addresses outside itself: {blocked}"
    assert not errors, f"Console errors: {errors}"
