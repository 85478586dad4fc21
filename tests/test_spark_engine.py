"""The Spark engine in local mode: the same features, probabilities, scores, buckets and factors as DuckDB on the
demo data, the events export, what crosses between pandas 3 and Spark, and one-line errors a user can act on."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from cai import cli, demo, engine, instances, spark_engine, store

EQUIVALENCE_PROFILES = 20_000
# What that warning means for the columns we pass is tested below (test_pandas_3_columns_cross_unchanged).
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def spark():
    session = spark_engine.start_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    """The demo at its full 20,000 profiles, with the tutorial's instance, never run."""
    db = tmp_path_factory.mktemp("spark") / "demo.duckdb"
    demo.build_demo(db, profiles=EQUIVALENCE_PROFILES)
    instances.ensure_tutorial_instance(db)
    store.release(db)
    return db


def _copy(db: Path, folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(db, folder / "cai.duckdb")
    return folder / "cai.duckdb"


def _assert_same_frames(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs) > 1000
    for column in ours.columns:
        a, b = ours[column], theirs[column]
        assert a.dtype == b.dtype, column
        if pd.api.types.is_numeric_dtype(b) and not pd.api.types.is_bool_dtype(b):
            assert np.allclose(a.astype(float), b.astype(float), rtol=1e-9, atol=1e-9, equal_nan=True), column
        else:
            assert a.fillna("").astype(str).tolist() == b.fillna("").astype(str).tolist(), column


def _numbers(summary, prefix: str = "") -> dict:
    """A nested per-bucket summary flattened to {path: value}, so it can be compared with a tolerance."""
    if isinstance(summary, dict):
        return {key: value for name, inner in summary.items()
                for key, value in _numbers(inner, f"{prefix}/{name}").items()}
    return {prefix: summary}


def _results(db: Path) -> dict[str, pd.DataFrame]:
    with store.connect(db) as con:
        return {
            "scores": con.execute("SELECT profile_id, probability, score, percentile, bucket FROM scores "
                                  "ORDER BY profile_id").df(),
            "factors": con.execute("SELECT profile_id, rank, feature, value, typical, effect, importance "
                                   "FROM score_factors ORDER BY profile_id, rank").df(),
            "run_factors": con.execute("SELECT feature, importance, rank, by_bucket FROM run_factors "
                                       "ORDER BY rank").df(),
        }


def test_a_spark_run_equals_a_duckdb_run(spark, demo_store, tmp_path, capsys, monkeypatch):
    """One Spark run through the command line; the labels and the feature frame it built (training snapshots and the
    held-out one, in one pass each) are compared with DuckDB's for the same calls, then the stored results with a
    DuckDB run's. The training rows are capped below the demo's, so the features are built for chosen rows only."""
    monkeypatch.setattr(engine, "MAX_TRAINING_ROWS", 20_000)
    duckdb_db, spark_db = _copy(demo_store, tmp_path / "duckdb"), _copy(demo_store, tmp_path / "spark")
    local = engine.run_instance(duckdb_db, instances.TUTORIAL_INSTANCE)
    assert local.error is None, local.error

    built, labelled = [], []
    spark_features, spark_labels = spark_engine.SparkExecutor.features, spark_engine.SparkExecutor.labels

    def recording(self, definition, snapshots, with_labels, sample_fraction=1.0, rows=None):
        frame = spark_features(self, definition, snapshots, with_labels, sample_fraction, rows)
        built.append(((definition, snapshots, with_labels, sample_fraction, rows), frame))
        return frame

    def recording_labels(self, definition, snapshots, sample_fraction=1.0):
        frame = spark_labels(self, definition, snapshots, sample_fraction)
        labelled.append(((definition, snapshots, sample_fraction), frame))
        return frame

    monkeypatch.setattr(spark_engine.SparkExecutor, "features", recording)
    monkeypatch.setattr(spark_engine.SparkExecutor, "labels", recording_labels)
    status = cli.main(["--db", str(spark_db), "run", instances.TUTORIAL_INSTANCE, "--engine", "spark",
                       "--master", "local[2]", "--json"])
    assert status == 0, capsys.readouterr().err

    assert len(built) == 1 and len(built[0][0][1]) > 1 and len(labelled) == 1
    reference = engine.DuckDBExecutor(duckdb_db)
    labels = labelled[0][1]
    _assert_same_frames(labels, reference.labels(*labelled[0][0]))
    rows = built[0][0][4]
    assert rows is not None and len(labels) > len(rows) > engine.MAX_TRAINING_ROWS
    for call, frame in built:
        expected = reference.features(*call)
        assert len(expected) == len(rows) and expected["label"].any() and not expected["label"].all()
        _assert_same_frames(frame, expected)
    ours, theirs = _results(spark_db), _results(duckdb_db)
    for table in ("scores", "factors"):
        _assert_same_frames(ours[table], theirs[table])
    # The per-bucket summaries are JSON: compared as numbers (a sum's last digit depends on the order of adding).
    pd.testing.assert_frame_equal(ours["run_factors"].drop(columns="by_bucket"),
                                  theirs["run_factors"].drop(columns="by_bucket"), rtol=1e-9)
    for mine, reference in zip(ours["run_factors"]["by_bucket"], theirs["run_factors"]["by_bucket"]):
        assert _numbers(json.loads(mine)) == pytest.approx(_numbers(json.loads(reference)), rel=1e-9, abs=1e-9)
    with store.connect(spark_db) as con:
        details = con.execute("SELECT details FROM runs WHERE status = 'success'").fetchall()[0][0]
    assert '"engine": "spark"' in details


def _seen_in_executor(batches):
    for batch in batches:
        yield pd.DataFrame({"column": list(batch.columns), "dtype": [str(batch[c].dtype) for c in batch.columns],
                            "missing": [repr(batch[c].iloc[1]) for c in batch.columns]})


def test_pandas_3_columns_cross_unchanged(spark):
    """PySpark 4.3 warns that it does not fully support pandas 3. For the columns this app passes: Arrow-backed
    strings keep their dtype with NaN for missing, nullable integers reach the executors as nullable Int64 (pd.NA)
    and come back as float64 with NaN, microsecond timestamps survive exactly (session time zone UTC)."""
    frame = pd.DataFrame({
        "profile_id": np.array([1, 2, 3], dtype=np.int64),
        "tier": pd.Series(["gold", None, "silver"], dtype="str"),
        "points": pd.Series([10, None, 30], dtype="Int64"),
        "ts": pd.to_datetime(["2026-01-01 10:00:00.123456", "2026-02-01 00:00:00.000000",
                              "2026-03-01 23:59:59.999999"]).astype("datetime64[us]"),
        "flag": [True, False, True],
    })
    table = spark.createDataFrame(frame)
    seen = table.coalesce(1).mapInPandas(_seen_in_executor, "column string, dtype string, missing string")
    seen = seen.toPandas().set_index("column")
    assert seen.loc["tier", "dtype"] == "str" and seen.loc["tier", "missing"] == "nan"
    assert seen.loc["points", "dtype"] == "Int64" and seen.loc["points", "missing"] == "<NA>"
    assert seen.loc["ts", "dtype"] == "datetime64[us]"
    back = table.toPandas()
    assert back["tier"].dtype == "str" and back["tier"].isna().tolist() == [False, True, False]
    assert back["points"].dtype == "float64" and np.isnan(back["points"].iloc[1]) and back["points"].iloc[2] == 30
    assert back["ts"].tolist() == frame["ts"].tolist()
    assert engine._encode(back, ["points"], np.array([False]), {}).ravel()[1] != 0


def test_export_events_writes_monthly_parquet_with_profile_ids(demo_db, tmp_path, capsys):
    out = tmp_path / "events"
    assert cli.main(["--db", str(demo_db), "export-events", "--out", str(out)]) == 0
    assert "events to" in capsys.readouterr().out
    months = sorted(folder.name for folder in out.iterdir())
    assert months[0].startswith("event_month=2026-") and len(months) >= 9
    with store.connect(demo_db) as con:
        expected = con.execute("SELECT count(*), count(DISTINCT profile_id) FROM events").fetchall()[0]
    written = duckdb.sql(f"SELECT count(*), count(DISTINCT profile_id) FROM read_parquet('{out}/*/*.parquet')")
    assert written.fetchall()[0] == expected
    assert cli.main(["--db", str(demo_db), "export-events", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_events_without_needed_columns_are_named_in_one_line(spark, demo_store, tmp_path, capsys):
    events = tmp_path / "events.parquet"
    with store.connect(demo_store) as con:
        con.execute("SELECT profile_id, ts, event_type, value FROM events LIMIT 100").df().to_parquet(events)
    status = cli.main(["--db", str(demo_store), "run", instances.TUTORIAL_INSTANCE, "--engine", "spark",
                       "--master", "local[2]", "--events", str(events)])
    error = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in error
    assert "lack the columns sku, channel" in error


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_spark_cli(db: Path, extra: list[str], env: dict, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"import sys; {prelude}from cai import cli; sys.exit(cli.main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "--db", str(db), "run", instances.TUTORIAL_INSTANCE,
                           "--engine", "spark", *extra], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120, check=False)


def _python_of_another_minor_version() -> str | None:
    """Another Python on this machine (the image's pyenv has several), to play a cluster whose workers differ."""
    for minor in (12, 13, 10, 9):
        if minor == sys.version_info.minor:
            continue
        # Real interpreters only: a pyenv shim of a version not selected here exits with an error instead.
        for candidate in (Path(f"/usr/bin/python3.{minor}"), Path(f"/usr/local/bin/python3.{minor}"),
                          *sorted(Path.home().glob(f".pyenv/versions/3.{minor}.*/bin/python3.{minor}"))):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return None


@pytest.mark.parametrize("case", ["no pyspark", "no java", "unreachable master", "unreachable connect server",
                                  "workers on another python"])
def test_spark_that_cannot_start_is_one_line_and_exit_code_2(case, demo_store):
    env = {key: value for key, value in os.environ.items()
           if key not in ("JAVA_HOME", "SPARK_REMOTE", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    extra, prelude, expected = [], "", ""
    if case == "no pyspark":
        prelude, expected = "sys.modules['pyspark'] = None; ", "PySpark is not installed"
    elif case == "no java":
        env["PATH"] = str(Path(sys.executable).parent)
        expected = "Spark needs Java 17"
    elif case == "unreachable master":
        extra, expected = ["--master", f"spark://127.0.0.1:{_free_port()}"], "Cannot reach Spark at spark://"
    elif case == "unreachable connect server":
        env["SPARK_REMOTE"], expected = f"sc://127.0.0.1:{_free_port()}", "Cannot reach Spark at sc://"
    else:
        other = _python_of_another_minor_version()
        if other is None:
            pytest.skip("no Python of another minor version on this machine")
        env["PYSPARK_PYTHON"], extra = other, ["--master", "local[1]"]
        expected = f"set PYSPARK_PYTHON to a Python {sys.version_info.major}.{sys.version_info.minor}"
    child = _run_spark_cli(demo_store, extra, env, prelude)
    error = child.stderr.strip()
    assert child.returncode == 2, child.stderr
    assert expected in error and "\n" not in error and "Traceback" not in error
    assert "at org.apache" not in child.stdout + child.stderr
