"""Chart builders are pure: a DataFrame in, a Vega-Lite spec out."""

import pandas as pd

from cai import charts


def test_bucket_colours_flip_for_churn():
    assert charts.bucket_colors("conversion")["high"] == charts.GOOD
    assert charts.bucket_colors("churn")["high"] == charts.BAD


def test_score_histogram_has_exact_counts_in_the_tooltip():
    frame = pd.DataFrame({"score_from": [0, 74, 76], "score_to": [2, 76, 78], "bucket": ["low", "medium", "high"],
                          "profiles": [5, 7, 9]})
    spec = charts.score_histogram(frame).to_dict()
    assert spec["mark"]["type"] == "bar"
    assert any(t["field"] == "profiles" for t in spec["encoding"]["tooltip"])
    assert spec["encoding"]["color"]["scale"]["range"] == [charts.GOOD, charts.MIDDLE, charts.BAD]


def test_factor_bars_can_be_selected_by_click():
    frame = pd.DataFrame({"label": ["Days since last purchase"], "importance_share": [1.0], "description": ["d"],
                          "breakdown": ["high bucket median 6"]})
    spec = charts.factor_bars(frame).to_dict()
    assert spec["params"][0]["name"] == "factor" and spec["params"][0]["select"]["on"] == "click"


def test_gains_chart_starts_at_the_origin():
    deciles = pd.DataFrame({"population_share": [0.5, 1.0], "cumulative_gain": [0.8, 1.0]})
    spec = charts.gains_chart(deciles).to_dict()
    first_layer = spec["layer"][0]
    data = spec["datasets"][first_layer["data"]["name"]]
    assert data[0] == {"population_share": 0.0, "cumulative_gain": 0.0}
