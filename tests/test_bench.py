"""The benchmark's code at a small scale: its pandas reference computes our features exactly, and a run writes every
figure the performance section reports. (Speed itself is reported by `python -m bench`, never asserted here.)"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd

from bench import pandas_baseline
from bench.run import RUN_STAGES, main
from cai import features, instances, store

REQUIRED = ["profiles", "events", "floor_s", "features_s", "train_s", "score_s", "run_s", "pandas_features_s",
            "peak_rss_mb", "ratio_run_to_floor", "ratio_run_to_scoring_features", "ratio_pandas_to_features",
            "latency_ms"]


def test_the_pandas_baseline_computes_the_same_features(demo_db):
    definition = instances.ensure_tutorial_instance(demo_db).definition
    as_of = dt.date(2026, 10, 1)
    with store.connect(demo_db) as con:
        ours = features.build(con, definition, [as_of], with_labels=False).drop(columns="snapshot")
        theirs = pandas_baseline.features(pandas_baseline.load_events(con), pandas_baseline.load_profiles(con),
                                          definition, as_of)
    assert list(theirs.columns) == list(ours.columns) and len(ours) > 1000
    for column in ours.columns:
        if pd.api.types.is_numeric_dtype(ours[column]):
            assert np.allclose(ours[column].astype(float), theirs[column].astype(float), equal_nan=True), column
        else:
            assert ours[column].fillna("").astype(str).tolist() == theirs[column].fillna("").astype(str).tolist()


def test_a_small_benchmark_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["--profiles", "6000", "--repeat", "3", "--out", str(out), "--workdir", str(tmp_path)]) == 0
    results = json.loads(out.read_text())
    assert all(key in results for key in REQUIRED)
    assert results["profiles"] == 6000 and results["events"] > 100_000 and results["profiles_scored"] > 1000
    assert all(results[key] > 0 for key in REQUIRED if key.endswith("_s") or key.startswith("ratio"))
    assert results["ratio_run_to_floor"] == results["run_s"] / results["floor_s"]
    assert results["ratio_run_to_scoring_features"] == results["run_s"] / results["scoring_features_s"]
    assert set(results["latency_ms"]) == {"dashboard_summary", "dashboard_distribution", "dashboard_factor_breakdown",
                                          "profile_lookup_email", "segment_size", "segment_members_page"}
    assert all(0 < q["p50"] <= q["p95"] for q in results["latency_ms"].values())
    assert "ratio_run_to_floor" in capsys.readouterr().out


def test_the_growth_mode_times_each_stage_at_each_size(tmp_path, capsys):
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"pages": {"kept": True}}))
    assert main(["--growth", "--growth-profiles", "3000", "6000", "--out", str(out), "--workdir", str(tmp_path)]) == 0
    results = json.loads(out.read_text())
    assert results["pages"] == {"kept": True}
    runs = results["growth"]["runs"]
    assert [run["profiles"] for run in runs] == [3000, 6000] and runs[0]["events"] < runs[1]["events"]
    assert all(run[stage] > 0 for run in runs for stage in RUN_STAGES)
    exponents = results["growth"]["growth_exponent"]
    assert set(exponents) == {*RUN_STAGES, "peak_rss_mb"} and all(np.isfinite(list(exponents.values())))
    assert "growth k" in capsys.readouterr().out
    assert not list(tmp_path.glob("tmp*/growth-*.duckdb"))
