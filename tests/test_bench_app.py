"""The app benchmarks' code at a small scale: simultaneous sessions time every page, and each benchmark keeps the
others' sections of the results file. (Speed is reported by `python -m bench.pages`, never asserted here.)"""

from __future__ import annotations

import json

from bench import pages, results


def test_simultaneous_sessions_time_every_page_for_every_session(trained_db):
    figures = pages.concurrent_sessions(sessions=2, rounds=1)
    assert set(figures) == set(pages.PAGES)
    for page, timing in figures.items():
        assert timing["n"] == 2, page
        assert 0 < timing["p50"] <= timing["p95"], page


def test_each_benchmark_keeps_the_other_sections_of_the_results_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"profiles": 1000, "run_s": 9.0}))
    results.save_section("pages", {"server_render_ms": {"dashboard": {"p50": 1.0}}}, path)
    results.save_section("first_start", {"median_dashboard_full_s": 4.0}, path)
    engine_rerun = {"profiles": 2000, "run_s": 8.0}

    merged = results.keep_app_sections(engine_rerun, path)

    assert merged["run_s"] == 8.0 and merged["profiles"] == 2000
    assert merged["pages"]["server_render_ms"]["dashboard"]["p50"] == 1.0
    assert merged["first_start"]["median_dashboard_full_s"] == 4.0
