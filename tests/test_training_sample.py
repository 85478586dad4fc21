"""Training reads its sampled customers' events from a copy made once; every answer is the one the events give."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from cai import engine, features, instances, store
from cai.instances import TUTORIAL_INSTANCE

pytestmark = pytest.mark.both_backends

SNAPSHOTS = [dt.date(2026, 8, 1), dt.date(2026, 9, 1)]


def _copied_events(executor: engine.DuckDBExecutor) -> int:
    with executor._connect() as con:
        return con.execute(f"SELECT count(*) FROM {executor._events}").fetchall()[0][0]


@pytest.mark.parametrize("fraction", [0.3, 0.5])
def test_labels_and_features_within_the_sample_equal_those_read_from_the_events(trained_db, fraction):
    definition = instances.get_instance(trained_db, TUTORIAL_INSTANCE).definition
    executor = engine.DuckDBExecutor(trained_db)
    labels = executor.labels(definition, SNAPSHOTS, fraction)
    chosen = labels.sample(frac=0.5, random_state=1)
    every = executor.features(definition, SNAPSHOTS, with_labels=True, sample_fraction=fraction)
    some = executor.features(definition, SNAPSHOTS, with_labels=True, sample_fraction=fraction, rows=chosen)
    with store.connect(trained_db) as con:
        events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    with executor.sampled(fraction):
        assert 0 < _copied_events(executor) < events
        pd.testing.assert_frame_equal(executor.labels(definition, SNAPSHOTS, fraction), labels)
        pd.testing.assert_frame_equal(
            executor.features(definition, SNAPSHOTS, with_labels=True, sample_fraction=fraction), every)
        pd.testing.assert_frame_equal(
            executor.features(definition, SNAPSHOTS, with_labels=True, sample_fraction=fraction, rows=chosen), some)
    assert 0 < len(some) < len(every) and 0 < labels["label"].sum() < len(labels)
    # Afterwards the executor reads the events again.
    assert executor._events == features.EVENTS and _copied_events(executor) == events
    pd.testing.assert_frame_equal(executor.labels(definition, SNAPSHOTS, fraction), labels)


def test_a_failure_inside_the_sample_leaves_the_executor_reading_the_events(trained_db):
    executor = engine.DuckDBExecutor(trained_db)
    with pytest.raises(RuntimeError), executor.sampled(0.5):
        raise RuntimeError("the training stopped")
    assert executor._events == features.EVENTS and executor._connection is None


def test_an_unsampled_training_reads_the_events_themselves(trained_db):
    executor = engine.DuckDBExecutor(trained_db)
    with executor.sampled(1.0):
        assert executor._events == features.EVENTS


def test_a_sampled_training_learns_the_model_the_events_give(trained_db, monkeypatch):
    """A training small enough to sample (the cap lowered) fits the same trees and calibration with the copy as when
    every query reads the events."""
    monkeypatch.setattr(engine, "MAX_PROFILES_PER_SNAPSHOT", 2_000)
    definition = instances.get_instance(trained_db, TUTORIAL_INSTANCE).definition
    with store.connect(trained_db) as con:
        first_event = con.execute("SELECT min(ts) FROM events").fetchall()[0][0].date()

    class WithoutCopy(engine.DuckDBExecutor):
        def sampled(self, sample_fraction):
            return engine.DuckDBExecutor.sampled(self, 1.0)

    copied, _ = engine.train(trained_db, definition, dt.date(2026, 10, 1), first_event)
    direct, _ = engine.train(trained_db, definition, dt.date(2026, 10, 1), first_event,
                             executor=WithoutCopy(trained_db))
    assert copied.training["sample_fraction"] < 1
    assert copied.calibration == direct.calibration and copied.evaluation == direct.evaluation
    assert copied.training == direct.training
