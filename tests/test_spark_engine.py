"""The Spark engine in local mode: the same features, probabilities, scores, buckets and factors as DuckDB on the
demo data, the events export, what crosses between pandas 3 and Spark, and one-line errors a user can act on."""

from __future__ import annotations

import datetime as dt
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
    """One Spark run through the command line; every feature frame it built (training snapshots, held-out
    snapshot) is compared with DuckDB's for the same call, then the stored results with a DuckDB run's."""
    duckdb_db, spark_db = _copy(demo_store, tmp_path / "duckdb"), _copy(demo_store, tmp_path / "spark")
    local = engine.run_instance(duckdb_db, instances.TUTORIAL_INSTANCE, models=tmp_path / "duckdb" / "models")
    assert local.error is None, local.error

    built = []
    spark_features = spark_engine.SparkExecutor.features

    def recording(self, definition, snapshots, with_labels, sample_fraction=1.0):
        frame = spark_features(self, definition, snapshots, with_labels, sample_fraction)
        built.append(((definition, snapshots, with_labels, sample_fraction), frame))
        return frame

    monkeypatch.setattr(spark_engine.SparkExecutor, "features", recording)
    status = cli.main(["--db", str(spark_db), "run", instances.TUTORIAL_INSTANCE, "--engine", "spark",
                       "--master", "local[2]", "--json"])
    assert status == 0, capsys.readouterr().err

    assert len(built) == 2 and len(built[0][0][1]) > 1
    reference = engine.DuckDBExecutor(duckdb_db)
    for call, frame in built:
        expected = reference.features(*call)
        assert expected["label"].any() and not expected["label"].all()
        _assert_same_frames(frame, expected)
    ours, theirs = _results(spark_db), _results(duckdb_db)
    for table in ("scores", "factors"):
        _assert_same_frames(ours[table], theirs[table])
    pd.testing.assert_frame_equal(ours["run_factors"], theirs["run_factors"], rtol=1e-9)
    with store.connect(spark_db) as con:
        details = con.execute("SELECT details FROM runs WHERE status = 'success'").fetchall()[0][0]
    assert '"engine": "spark"' in details
