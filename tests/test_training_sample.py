"""Training reads a small sample's events from a copy made once; every answer is the one the events give."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pandas as pd
import pytest

from cai import engine, features, instances, store
from cai.instances import TUTORIAL_INSTANCE

pytestmark = pytest.mark.both_backends

SNAPSHOTS = [dt.date(2026, 8, 1), dt.date(2026, 9, 1)]


def _events(db) -> int:
    with store.connect(db) as con:
        return con.execute("SELECT count(*) FROM events").fetchall()[0][0]


def _copied_events(reader: engine.DuckDBExecutor) -> int:
    with reader._connect() as con:
        return con.execute(f"SELECT count(*) FROM temp.main.{engine.SAMPLED_EVENTS}").fetchall()[0][0]


@pytest.mark.parametrize("fraction", [0.1, engine.MAX_COPIED_SHARE])
def test_labels_and_features_from_the_copy_equal_those_read_from_the_events(trained_db, fraction):
    definition = instances.get_instance(trained_db, TUTORIAL_INSTANCE).definition
    executor = engine.DuckDBExecutor(trained_db)
    labels = executor.labels(definition, SNAPSHOTS, fraction)
    chosen = labels.sample(frac=0.5, random_state=1)
    every = executor.features(definition, SNAPSHOTS, with_labels=True, sample_fraction=fraction)
    some = executor.features(definition, SNAPSHOTS, with_labels=True, sample_fraction=fraction, rows=chosen)
    with executor.sampled(fraction) as reader:
        assert reader is not executor and 0 < _copied_events(reader) < _events(trained_db)
        pd.testing.assert_frame_equal(reader.labels(definition, SNAPSHOTS, fraction), labels)
        pd.testing.assert_frame_equal(
            reader.features(definition, SNAPSHOTS, with_labels=True, sample_fraction=fraction), every)
        pd.testing.assert_frame_equal(
            reader.features(definition, SNAPSHOTS, with_labels=True, sample_fraction=fraction, rows=chosen), some)
    assert 0 < len(some) < len(every) and 0 < labels["label"].sum() < len(labels)


def test_the_copy_answers_other_samples_as_the_events_do_and_leaves_the_executor_alone(trained_db):
    """A smaller sample is a part of the copy, a larger one is read from the events; the executor that handed the
    reader out still reads every event (another thread may be scoring with it)."""
    definition = instances.get_instance(trained_db, TUTORIAL_INSTANCE).definition
    executor = engine.DuckDBExecutor(trained_db)
    expected = {fraction: executor.labels(definition, SNAPSHOTS, fraction) for fraction in (0.05, 0.2, 0.6)}
    everyone = executor.features(definition, SNAPSHOTS[:1], with_labels=False)
    with executor.sampled(0.2) as reader:
        for fraction, labels in expected.items():
            pd.testing.assert_frame_equal(reader.labels(definition, SNAPSHOTS, fraction), labels)
        pd.testing.assert_frame_equal(reader.features(definition, SNAPSHOTS[:1], with_labels=False), everyone)
        pd.testing.assert_frame_equal(executor.features(definition, SNAPSHOTS[:1], with_labels=False), everyone)
        with reader.sampled(0.1) as nested:
            assert nested is reader
    assert len(expected[0.05]) < len(expected[0.2]) < len(expected[0.6]) < len(everyone) * 2


def test_a_large_sample_is_read_from_the_events_without_a_copy(trained_db):
    executor = engine.DuckDBExecutor(trained_db)
    with executor.sampled(0.5) as reader:
        assert reader is executor and reader._source(0.5) == (features.EVENTS, 0.5)


def test_a_sampled_training_reads_the_copy_and_learns_the_model_the_events_give(trained_db, monkeypatch):
    """With the cap lowered so that training samples a tenth of the customers, every labels and features call of the
    training reads the copy, and the trees, calibration and evaluation are those of reading the events."""
    monkeypatch.setattr(engine, "MAX_PROFILES_PER_SNAPSHOT", 600)
    definition = replace(instances.get_instance(trained_db, TUTORIAL_INSTANCE).definition, min_examples=50)
    with store.connect(trained_db) as con:
        first_event = con.execute("SELECT min(ts) FROM events").fetchall()[0][0].date()
    sources = []

    class Recording(engine.DuckDBExecutor):
        def labels(self, definition, snapshots, sample_fraction=1.0):
            sources.append(self._source(sample_fraction)[0])
            return super().labels(definition, snapshots, sample_fraction)

        def features(self, definition, snapshots, with_labels, sample_fraction=1.0, rows=None):
            sources.append(self._source(sample_fraction)[0])
            return super().features(definition, snapshots, with_labels, sample_fraction, rows)

    class WithoutCopy(engine.DuckDBExecutor):
        def sampled(self, sample_fraction):
            return engine.DuckDBExecutor.sampled(self, 1.0)

    copied, _ = engine.train(trained_db, definition, dt.date(2026, 10, 1), first_event, executor=Recording(trained_db))
    direct, _ = engine.train(trained_db, definition, dt.date(2026, 10, 1), first_event,
                             executor=WithoutCopy(trained_db))
    assert 0 < copied.training["sample_fraction"] <= engine.MAX_COPIED_SHARE
    assert len(sources) >= 2 and all(source != features.EVENTS for source in sources)
    assert copied.calibration == direct.calibration and copied.evaluation == direct.evaluation
    assert copied.training == direct.training
    with store.connect(trained_db) as con:
        everyone = features.build(con, definition, [dt.date(2026, 10, 1)], with_labels=False)
    matrix = engine.encode(everyone, copied)
    assert len(everyone) and (copied.logit(matrix) == direct.logit(matrix)).all()
