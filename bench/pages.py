"""Page timings on a trained demo store: each page's server-side render (AppTest, a full script run), the browser's
click-to-content time on a real server, and renders by 1, 5 and 10 sessions at once (AppTest, one thread per
session, as Streamlit runs them). Figures go to the ``pages`` and ``sessions`` sections of bench/results.json.

    python -m bench.pages [--profiles 20000] [--repeat 20] [--sessions 1,5,10] [--rounds 4] [--no-browser]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench import app_server, results
from cai import demo, engine, instances, store

TUTORIAL = instances.TUTORIAL_INSTANCE
# Each timed page, the query parameters a person arrives with, and (for the browser) how to reach it and the text
# that shows its content has arrived.
PAGES = {
    "dashboard": ("app_pages/dashboard.py", {"instance": TUTORIAL}),
    "segment_builder": ("app_pages/segment_builder.py", {"instance": TUTORIAL, "bucket": "high"}),
    "profile": ("app_pages/profiles.py", {"namespace": "Email", "value": demo.TUTORIAL_EMAIL}),
    "instances": ("app_pages/instances.py", {}),
    "segments": ("app_pages/segments.py", {}),
    "data": ("app_pages/data.py", {}),
}
BROWSER_PAGES = {
    "dashboard": ("Dashboard", "Model evaluation"),
    "segment_builder": ("Segment builder", "Expected precision"),
    "profile": ("Profiles", "Identity namespace"),
}
TIMEOUT_S = 300
# Tracing slows the page down, so the work is measured in clicks of its own, fewer than the timed ones.
WORK_REPEAT = 5


def summary(samples_ms: list[float]) -> dict:
    return {"p50": round(statistics.median(samples_ms), 1), "p95": round(float(np.percentile(samples_ms, 95)), 1),
            "n": len(samples_ms)}


def trained_store(folder: Path, profiles: int, log: Callable[[str], None]) -> Path:
    db = folder / "cai.duckdb"
    log(f"Building and training a demo store of {profiles:,} profiles")
    demo.build_demo(db, profiles=profiles)
    instances.ensure_tutorial_instance(db)
    result = engine.run_instance(db, TUTORIAL)
    if result.error:
        raise RuntimeError(result.error)
    store.release(db)
    return db


@functools.cache
def _component_registry():
    """A real server looks for installed custom components once, when it starts; AppTest does it again for every
    new session (reading the metadata of every installed package: 0.3 s idle, over a second under load on this
    machine), a cost no visitor pays. Sessions here share one registry, as a server's sessions do."""
    from streamlit.components.v2.component_manager import BidiComponentManager

    registry = BidiComponentManager()
    registry.discover_and_register_components(start_file_watching=False)
    return registry


def render_ms(page: str) -> float:
    """One new session opening ``page`` by its address: the entry script's full run, timed."""
    from streamlit.testing.v1 import AppTest

    path, query = PAGES[page]
    app = AppTest.from_file(str(app_server.ROOT / "streamlit_app.py"), default_timeout=TIMEOUT_S)
    app._bidi_component_manager = _component_registry()
    for key, value in query.items():
        app.query_params[key] = value
    app.switch_page(path)
    clock = time.perf_counter()
    app.run()
    elapsed = (time.perf_counter() - clock) * 1000
    if app.exception:
        raise RuntimeError(f"{page} failed: {app.exception[0].message}")
    return elapsed


def server_render(repeat: int) -> dict:
    """Each page rendered ``repeat`` times by one session at a time, caches warm as on a running server."""
    for page in PAGES:
        render_ms(page)
    return {page: summary([render_ms(page) for _ in range(repeat)]) for page in PAGES}


@contextmanager
def _shared_test_runtime() -> Iterator[None]:
    """AppTest installs a stand-in Runtime for each run and removes it when the run ends, one global for all; with
    sessions in threads, one session's end would pull it from under another's run. Meanwhile, the last one
    installed stands in whenever none is."""
    from streamlit.runtime.runtime import Runtime

    original_instance, original_exists = Runtime.__dict__["instance"], Runtime.__dict__["exists"]
    last: list = []

    def current(cls):
        if cls._instance is not None:
            last[:] = [cls._instance]
        return cls._instance or (last[0] if last else None)

    def instance(cls):
        runtime = current(cls)
        return runtime if runtime is not None else original_instance.__func__(cls)

    Runtime.instance = classmethod(instance)
    Runtime.exists = classmethod(lambda cls: current(cls) is not None)
    try:
        yield
    finally:
        Runtime.instance, Runtime.exists = original_instance, original_exists


def concurrent_sessions(sessions: int, rounds: int) -> dict:
    """``sessions`` threads, each opening every page ``rounds`` times in its own order, all at once."""
    samples: dict[str, list[float]] = {page: [] for page in PAGES}
    lock = threading.Lock()
    start = threading.Barrier(sessions)
    failures: list[BaseException] = []

    def person(index: int) -> None:
        order = list(PAGES)[index % len(PAGES):] + list(PAGES)[:index % len(PAGES)]
        start.wait()
        try:
            for _ in range(rounds):
                for page in order:
                    elapsed = render_ms(page)
                    with lock:
                        samples[page].append(elapsed)
        except BaseException as error:  # noqa: BLE001 - reported after the threads end
            failures.append(error)

    threads = [threading.Thread(target=person, args=(i,)) for i in range(sessions)]
    with _shared_test_runtime():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    return {page: summary(times) for page, times in samples.items()}


# The page records when it was clicked: Playwright's click waits for the link to hold still for two frames first.
CLICK_MARK = "cai-click"
RECORD_CLICKS = ("document.addEventListener('click', () => { window.caiClickedAt = performance.now(); "
                 f"performance.mark('{CLICK_MARK}'); }}, true)")
# The page counts the messages the app sends it and their bytes.
RECORD_MESSAGES = """window.caiMessages = {messages: 0, bytes: 0};
window.WebSocket = class extends window.WebSocket {
    constructor(...args) {
        super(...args);
        this.addEventListener("message", event => {
            window.caiMessages.messages += 1;
            window.caiMessages.bytes += event.data.byteLength ?? event.data.size ?? event.data.length;
        });
    }
};"""
# Main-thread work, from Chromium's trace: each task's CPU time (not its wall time, which includes waiting for a core
# that other programs hold), so it varies far less with the machine's load than the click-to-content time does.
TRACE_CATEGORIES = ["toplevel", "blink.user_timing", "disabled-by-default-devtools.timeline"]
SETTLE_MS = 500


def browser_clicks(db: Path, folder: Path, repeat: int) -> dict:
    """Click-to-content in Chromium: from a click on the page's navigation link until its content text shows."""
    from playwright.sync_api import expect

    samples: dict[str, list[float]] = {page: [] for page in BROWSER_PAGES}
    with app_server.serve(db, folder / "server.log") as (base, _), app_server.browser_page() as page:
        page.add_init_script(RECORD_CLICKS)
        page.goto(f"{base}/?namespace=Email&value={demo.TUTORIAL_EMAIL}")
        expect(page.get_by_text("Customer AI").first).to_be_visible(timeout=TIMEOUT_S * 1000)
        for round_number in range(repeat + 1):
            for name, (link, content) in BROWSER_PAGES.items():
                page.get_by_role("link", name=link, exact=True).click()
                shown = app_server.wait_for_text(page, content, TIMEOUT_S * 1000)
                elapsed = shown - page.evaluate("window.caiClickedAt")
                expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=TIMEOUT_S * 1000)
                if round_number:  # the first round warms the server's caches, as the first visitor does
                    samples[name].append(elapsed)
    return {page: summary(times) for page, times in samples.items()}


def main_thread_cpu_ms(trace: bytes) -> tuple[float, float]:
    """The renderer's main-thread CPU time from the click until the content showed, and until the trace's end."""
    events = json.loads(trace)["traceEvents"]
    marks = {event["name"]: event for event in events if event.get("name") in (CLICK_MARK, app_server.CONTENT_MARK)}
    thread = marks[app_server.CONTENT_MARK]["pid"], marks[app_server.CONTENT_MARK]["tid"]
    clicked, shown = marks[CLICK_MARK]["ts"], marks[app_server.CONTENT_MARK]["ts"]
    to_content = total = 0.0
    for event in events:
        if event.get("name") != "RunTask" or event.get("ph") != "X" or "tdur" not in event:
            continue
        if (event["pid"], event["tid"]) != thread or event["ts"] + event["dur"] <= clicked:
            continue
        # A task under way at the click or at the content counts in proportion to its part inside.
        share = event["tdur"] / max(event["dur"], 1)
        start = max(event["ts"], clicked)
        total += (event["ts"] + event["dur"] - start) * share
        to_content += max(0, min(event["ts"] + event["dur"], shown) - start) * share
    return to_content / 1000, total / 1000


def browser_work(db: Path, folder: Path, repeat: int) -> dict:
    """What the browser does for each click, in measures that hold under load: main-thread CPU time until the content
    shows and until the page has drawn, the app's messages and their bytes, the charts and elements drawn."""
    from playwright.sync_api import expect

    work: dict[str, dict] = {}
    with app_server.serve(db, folder / "server-work.log") as (base, _), app_server.browser_page() as page:
        page.add_init_script(RECORD_CLICKS)
        page.add_init_script(RECORD_MESSAGES)
        page.goto(f"{base}/?namespace=Email&value={demo.TUTORIAL_EMAIL}")
        expect(page.get_by_text("Customer AI").first).to_be_visible(timeout=TIMEOUT_S * 1000)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in BROWSER_PAGES}
        for round_number in range(repeat + 1):
            for name, (link, content) in BROWSER_PAGES.items():
                page.evaluate("window.caiMessages = {messages: 0, bytes: 0}")
                page.context.browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
                page.get_by_role("link", name=link, exact=True).click()
                app_server.wait_for_text(page, content, TIMEOUT_S * 1000)
                expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=TIMEOUT_S * 1000)
                page.wait_for_timeout(SETTLE_MS)  # charts draw after the script ends
                cpu = main_thread_cpu_ms(page.context.browser.stop_tracing())
                if round_number:
                    samples[name].append(cpu)
                work[name] = {
                    **page.evaluate("window.caiMessages"),
                    "charts": page.get_by_test_id("stVegaLiteChart").count(),
                    "elements": page.get_by_test_id("stElementContainer").count()}
        for name, cpu in samples.items():
            work[name] = {"main_thread_cpu_to_content_ms": summary([to_content for to_content, _ in cpu]),
                          "main_thread_cpu_ms": summary([total for _, total in cpu]), **work[name]}
    return work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=demo.DEFAULT_PROFILES)
    parser.add_argument("--repeat", type=int, default=20, help="renders and clicks per page")
    parser.add_argument("--sessions", default="1,5,10", help="numbers of simultaneous sessions")
    parser.add_argument("--rounds", type=int, default=4, help="times each simultaneous session opens every page")
    parser.add_argument("--no-browser", action="store_true", help="skip the click-to-content timings")
    # Text, not a Path: a path would turn a PostgreSQL URL into a file name (and its password into a folder).
    parser.add_argument("--db", help="a trained DuckDB file to copy instead of building one")
    parser.add_argument("--out", type=Path, default=results.DEFAULT_PATH)
    args = parser.parse_args(argv)
    # AppTest sets a session up from this thread, outside any script run, and Streamlit warns about that each time.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
    if args.db and store.resolve(args.db).is_postgres:
        parser.error("--db takes a DuckDB file: the page benchmark works on a copy of it.")

    def log(message: str) -> None:
        print(f"... {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        if args.db:
            db = folder / "cai.duckdb"
            shutil.copy(args.db, db)
        else:
            db = trained_store(folder, args.profiles, log)
        os.environ[store.DB_ENV_VAR] = str(db)
        conditions = {"profiles": int(store.query_df(db, "SELECT count(*) AS n FROM profiles")["n"][0]),
                      "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]}
        log(f"Server-side render of each page, {args.repeat} times")
        pages = {**conditions, "server_render_ms": server_render(args.repeat)}
        if not args.no_browser:
            log(f"Browser click-to-content, {args.repeat} times per page")
            store.release(db)
            browser_copy = folder / "browser.duckdb"
            shutil.copy(db, browser_copy)
            pages["browser_click_ms"] = browser_clicks(browser_copy, folder, args.repeat)
            log(f"Browser work per click (traced), {WORK_REPEAT} times per page")
            pages["browser_work"] = browser_work(browser_copy, folder, WORK_REPEAT)
        results.save_section("pages", pages, args.out)
        sessions = {**conditions, "rounds": args.rounds}
        for count in (int(value) for value in args.sessions.split(",")):
            log(f"{count} simultaneous sessions, {args.rounds} rounds of every page each")
            sessions[str(count)] = concurrent_sessions(count, args.rounds)
        store.release()
    results.save_section("sessions", sessions, args.out)
    print(report(pages, sessions))
    print(f"\nWrote the pages and sessions sections of {args.out}")
    return 0


def report(pages: dict, sessions: dict) -> str:
    lines = [f"{pages['profiles']:,} profiles; load average {pages['load_average_1m']:.1f} on {pages['cpus']} CPUs",
             "", f"  {'page':<18}{'render p50':>12}{'p95 ms':>10}{'click p50':>12}{'p95 ms':>10}"]
    clicks = pages.get("browser_click_ms", {})
    for page, render in pages["server_render_ms"].items():
        click = clicks.get(page)
        lines.append(f"  {page:<18}{render['p50']:>12.0f}{render['p95']:>10.0f}"
                     + (f"{click['p50']:>12.0f}{click['p95']:>10.0f}" if click else ""))
    work = pages.get("browser_work", {})
    if work:
        lines += ["", "  browser work per click (p50)", f"  {'page':<18}{'CPU to content':>16}{'CPU in all':>12}"
                  f"{'messages':>10}{'bytes':>9}{'charts':>8}{'elements':>10}"]
        for page, figures in work.items():
            lines.append(f"  {page:<18}{figures['main_thread_cpu_to_content_ms']['p50']:>13.0f} ms"
                         f"{figures['main_thread_cpu_ms']['p50']:>9.0f} ms{figures['messages']:>10}"
                         f"{figures['bytes']:>9,}{figures['charts']:>8}{figures['elements']:>10}")
    counts = [key for key in sessions if key.isdigit()]
    lines += ["", "  simultaneous sessions, p50 / p95 ms", f"  {'page':<18}" + "".join(f"{n:>16}" for n in counts)]
    for page in PAGES:
        lines.append(f"  {page:<18}" + "".join(
            f"{sessions[n][page]['p50']:>8.0f}/{sessions[n][page]['p95']:<7.0f}" for n in counts))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
