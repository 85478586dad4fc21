"""The app benchmarks' code at a small scale: simultaneous sessions time every page, a click's main-thread CPU is
read from a browser trace, and each benchmark keeps the others' sections of the results file. (Speed is reported by `python -m bench.pages`, never asserted here.)"""

from __future__ import annotations

import json

from bench import app_server, pages, results


def test_simultaneous_sessions_time_every_page_for_every_session(trained_db):
    figures = pages.concurrent_sessions(sessions=2, rounds=1)
    assert set(figures) == set(pages.PAGES)
    for page, timing in figures.items():
        assert timing["n"] == 2, page
        assert 0 < timing["p50"] <= timing["p95"], page


def test_each_benchmark_keeps_the_other_sections_of_the_results_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"profiles": 1000, "run_s": 9.0, "latency_ms": {"segment_size": {"p50": 5.0}}}))
    results.save_section("pages", {"server_render_ms": {"dashboard": {"p50": 1.0}}}, path)
    results.save_section("first_start", {"median_dashboard_full_s": 4.0}, path)
    # A section no list names: a benchmark added later keeps its figures too.
    results.save_section("seasons", {"shops": [{"shop": "flat"}]}, path)
    engine_rerun = {"profiles": 2000, "run_s": 8.0, "latency_ms": {"segment_size": {"p50": 2.0}}}

    merged = results.keep_other_sections(engine_rerun, path)

    assert merged["run_s"] == 8.0 and merged["profiles"] == 2000
    assert merged["latency_ms"] == {"segment_size": {"p50": 2.0}}
    assert merged["pages"]["server_render_ms"]["dashboard"]["p50"] == 1.0
    assert merged["first_start"]["median_dashboard_full_s"] == 4.0
    assert merged["seasons"] == {"shops": [{"shop": "flat"}]}


def test_main_thread_cpu_counts_the_renderers_tasks_between_the_click_and_the_content():
    def task(ts, dur, tdur, tid=1):
        return {"name": "RunTask", "ph": "X", "pid": 7, "tid": tid, "ts": ts, "dur": dur, "tdur": tdur}

    trace = {"traceEvents": [
        {"name": pages.CLICK_MARK, "ph": "R", "pid": 7, "tid": 1, "ts": 1_000},
        {"name": app_server.CONTENT_MARK, "ph": "R", "pid": 7, "tid": 1, "ts": 5_000},
        task(0, 500, 500),                # ended before the click
        task(500, 1_000, 1_000),          # half of it after the click: 500 us
        task(2_000, 2_000, 1_000),        # waited for a core half the time: 1,000 us of CPU
        task(4_000, 2_000, 2_000),        # half before the content: 1,000 us, the rest after
        task(2_000, 3_000, 3_000, tid=2),  # another thread
    ]}
    to_content, total = pages.main_thread_cpu_ms(json.dumps(trace).encode())
    assert (to_content, total) == (2.5, 3.5)
