"""The performance summary: past runs whose outcome window has passed, predicted against actual per bucket."""

from __future__ import annotations

import datetime as dt

import pytest

from cai import charts, engine, instances, performance, store

TUTORIAL = instances.TUTORIAL_INSTANCE
pytestmark = pytest.mark.both_backends


def _actual_by_bucket(db, run_id: int, as_of: dt.date, window_days: int) -> dict[str, int]:
    """Counted independently of the module: scored profiles with a purchase in the window after the as-of date."""
    rows = store.query_df(
        db,
        """
        SELECT s.bucket, count(DISTINCT s.profile_id) AS reached FROM scores s
        JOIN events e ON e.profile_id = s.profile_id AND e.event_type = 'commerce.purchases'
         AND e.ts >= CAST(? AS TIMESTAMP) AND e.ts < CAST(? AS TIMESTAMP)
        WHERE s.run_id = ? GROUP BY s.bucket
        """,
        [as_of, as_of + dt.timedelta(days=window_days), run_id],
    )
    return dict(zip(rows["bucket"], rows["reached"].astype(int)))


def test_two_past_runs_whose_windows_have_passed_show_predicted_and_actual(trained_db):
    window = instances.get_instance(trained_db, TUTORIAL).definition.window_days
    past = [dt.date(2026, 8, 1), dt.date(2026, 9, 1)]
    run_ids = [engine.run_instance(trained_db, TUTORIAL, as_of=as_of).run_id for as_of in past]

    summary = performance.performance_summary(trained_db, TUTORIAL)

    assert sorted(set(summary["run_id"])) == sorted(run_ids)  # the latest run's window has not passed
    for run_id, as_of in zip(run_ids, past):
        rows = summary[summary["run_id"] == run_id].set_index("bucket")
        expected = _actual_by_bucket(trained_db, run_id, as_of, window)
        assert {bucket: int(rows.loc[bucket, "actual"]) for bucket in rows.index} == {
            bucket: expected.get(bucket, 0) for bucket in rows.index}
        predicted = store.query_df(trained_db, "SELECT sum(probability) AS p FROM scores WHERE run_id = ?",
                                   [run_id])["p"][0]
        assert rows["predicted"].sum() == pytest.approx(predicted)
        assert rows.loc["high", "actual"] / rows.loc["high", "profiles"] > (
            rows.loc["low", "actual"] / rows.loc["low", "profiles"])

    spec = charts.performance_chart(summary).to_dict()
    values = spec["datasets"][next(iter(spec["datasets"]))]
    assert {row["measure"] for row in values} == {"Predicted", "Actual"}
    assert len({row["as_of"] for row in values}) == 2


def test_an_instance_without_past_windows_has_an_empty_summary(trained_db):
    assert performance.performance_summary(trained_db, TUTORIAL).empty
