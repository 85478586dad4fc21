"""A real Streamlit server for the app's benchmarks, on a free loopback port, and a headless Chromium to drive it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cai import store

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", "--no-first-run"]
HEALTH_POLL_SECONDS = 0.05


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serve(db: Path, log: Path) -> Iterator[tuple[str, float]]:
    """``streamlit run`` on ``db``; yields the base URL and the ``perf_counter`` time the process was started."""
    port = _free_port()
    env = {**os.environ, store.DB_ENV_VAR: str(db)}
    with open(log, "w") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1", "--server.port", str(port),
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_healthy(base, process, log)
            yield base, started
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as answer:
            return answer.read() == b"ok"
    except OSError:
        return False


def wait_until_healthy(base: str, process: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not _healthy(base):
        if process.poll() is not None:
            raise RuntimeError("The app exited at start:\n" + log.read_text())
        if time.monotonic() > deadline:
            raise RuntimeError("The app did not answer in time:\n" + log.read_text())
        time.sleep(HEALTH_POLL_SECONDS)


# Playwright's `expect` looks again after 0, 20, 50, 100, 100 ms and then every 500 ms, so a text that showed 280 ms
# after a click was seen at up to 780 ms; the page itself looks at every animation frame instead.
CONTENT_MARK = "cai-content"
TEXT_SHOWN_AT = """text => {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node.textContent.trim().startsWith(text) && node.parentElement.checkVisibility()) {
            performance.mark("%s");
            return performance.now();
        }
    }
    return false;
}""" % CONTENT_MARK


def wait_for_text(page, text: str, timeout_ms: float) -> float:
    """Waits until an element whose text starts with ``text`` shows; returns the page's clock (``performance.now()``, ms)
    at the first animation frame it showed in, also marked ``CONTENT_MARK`` on the page's performance timeline."""
    return page.wait_for_function(TEXT_SHOWN_AT, arg=text, polling="raf", timeout=timeout_ms).json_value()


@contextmanager
def browser_page() -> Iterator:
    """A Playwright page in Debian's Chromium, tall enough to show a whole page without scrolling."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 2200})
        finally:
            browser.close()
