"""The performance summary: past runs whose outcome window has passed, predicted against actual per bucket."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from cai import charts, cli, engine, evaluation, instances, performance, scores, store

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
        # The range each bucket is judged against is the one its run's dashboard stated.
        stated = scores.bucket_summary(trained_db, run_id).set_index("bucket")
        for bucket in rows.index:
            assert rows.loc[bucket, ["likely_low", "likely_high"]].tolist() == pytest.approx(
                stated.loc[bucket, ["expected_low", "expected_high"]].tolist())

    spec = charts.performance_chart(summary).to_dict()
    datasets = list(spec["datasets"].values())
    lines = next(values for values in datasets if "measure" in values[0])
    assert {row["measure"] for row in lines} == {"Predicted", "Actual"}
    assert len({row["as_of"] for row in lines}) == 2
    bands = next(values for values in datasets if "likely_low" in values[0])
    assert len(bands) == len(summary) and all(row["likely_low"] < row["likely_high"] for row in bands)
    colors = charts.bucket_colors("conversion")
    assert [layer["encoding"]["color"]["scale"]["range"] for layer in spec["layer"]] == [
        [colors[bucket] for bucket in ("high", "medium", "low")]] * 2


def test_an_instance_without_past_windows_has_an_empty_summary(trained_db):
    assert performance.performance_summary(trained_db, TUTORIAL).empty


def test_the_rate_moves_are_measured_between_snapshots_one_window_apart():
    start = pd.Timestamp("2026-06-01")
    rates_by_day = {0: [True, False], 14: [True, True], 28: [False, False], 42: [True, True, True, False],
                    58: [True, False]}
    labels = pd.DataFrame([(start + pd.Timedelta(days=day), label) for day, day_labels in rates_by_day.items()
                           for label in day_labels], columns=["snapshot", "label"])
    # A 30-day window pairs days 0-28 (from 1/2 to 0), 14-42 (1 to 3/4) and 28-58 (from a rate of 0: no ratio);
    # 14, 16 or 44 days apart are not a window apart.
    assert sorted(engine.rate_moves(labels, window_days=30)) == [-1.0, -0.25]
    assert engine.rate_moves(labels.head(2), window_days=30) == []
    assert engine.largest_rate_move([-0.1, 0.25, 0.05]) == 0.25
    assert engine.largest_rate_move([-1.0, -0.25]) is None  # too few moves to say how far the rate may move


def test_a_likely_range_allows_for_the_rate_moving_and_for_chance():
    assert evaluation.likely_range(100.0, 50.0, None) is None
    low, high = evaluation.likely_range(100.0, 49.0, 0.2)
    assert (low, high) == pytest.approx((80 - evaluation.CHANCE_Z * 7, 120 + evaluation.CHANCE_Z * 7))
    assert evaluation.likely_range(2.0, 1.5, 0.5)[0] == 0.0


def test_each_bucket_states_the_likely_range_of_its_expected_conversions(trained_db):
    run = scores.latest_run(trained_db, TUTORIAL)
    moved = run["details"]["training"]["forward_range"]
    assert moved == max(abs(move) for move in run["details"]["training"]["rate_moves"]) and 0 < moved < 1

    summary = scores.bucket_summary(trained_db, run["run_id"]).set_index("bucket")

    sums = store.query_df(trained_db, "SELECT bucket, sum(probability) AS expected, "
                                      "sum(probability * (1 - probability)) AS variance FROM scores "
                                      "WHERE run_id = ? GROUP BY bucket", [run["run_id"]]).set_index("bucket")
    for bucket, row in sums.iterrows():
        chance = evaluation.CHANCE_Z * np.sqrt(row["variance"])
        assert summary.loc[bucket, "expected_low"] == pytest.approx(max(0, row["expected"] * (1 - moved) - chance))
        assert summary.loc[bucket, "expected_high"] == pytest.approx(row["expected"] * (1 + moved) + chance)
        assert summary.loc[bucket, "expected_low"] < summary.loc[bucket, "expected_conversions"] \
            < summary.loc[bucket, "expected_high"]


def test_the_command_line_lists_past_runs_with_their_likely_ranges_and_null_for_older_runs(trained_db, capsys):
    first, second = (engine.run_instance(trained_db, TUTORIAL, as_of=as_of).run_id
                     for as_of in (dt.date(2026, 8, 1), dt.date(2026, 9, 1)))
    # A run made before ranges were measured has no forward range in its details.
    details = json.loads(store.query_df(trained_db, "SELECT details FROM runs WHERE run_id = ?", [first])["details"][0])
    del details["training"]["forward_range"]
    store.write(trained_db, lambda con: con.execute("UPDATE runs SET details = ? WHERE run_id = ?",
                                                    [json.dumps(details), first]))

    assert cli.main(["--db", str(trained_db), "runs", TUTORIAL, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)

    summary = performance.performance_summary(trained_db, TUTORIAL)
    assert [row["run_id"] for row in listed] == summary["run_id"].tolist()
    for row in listed:
        if row["run_id"] == first:
            assert row["likely_low"] is None and row["likely_high"] is None
        else:
            assert row["run_id"] == second and row["likely_low"] < row["predicted"] < row["likely_high"]
    assert cli.main(["--db", str(trained_db), "runs", TUTORIAL]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "as", "of", "bucket", "profiles", "predicted", "likely", "actual"]
    assert len(lines) == 1 + len(summary) and sum(" - " in line for line in lines) == (summary["run_id"] == first).sum()
