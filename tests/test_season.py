"""Last year's move over the same weeks, carried into a run's probabilities where the data reaches back that far."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from bench import seasons
from cai import backtest, engine, ingest, instances, store
from cai.instances import Definition, Goal
from tests.conftest import ROOT

SEASONAL, FLAT = seasons.Shop("seasonal", 1, season=0.8), seasons.Shop("flat", 2)


def _shop(db, shop: seasons.Shop) -> Definition:
    """A shop's purchases up to the end of January 2011: two Novembers' peaks, and the two months after the second."""
    ingest.ingest_bytes(db, seasons.shop_csv(shop, customers=2500, days=760), "shop.csv")
    definition = Definition(name="Buys in 30 days", goals=(Goal("commerce.purchases"),), eligible_days=180)
    instances.create_instance(db, definition)
    return definition


def _errors(db, cutoffs) -> list[float]:
    return [result.calibration_error for result in backtest.backtest(db, "Buys in 30 days", cutoffs)]


def test_a_season_seen_last_year_is_carried_into_the_next_windows_expectation(empty_db, monkeypatch):
    definition = _shop(empty_db, SEASONAL)
    after_the_peak = dt.date(2010, 12, 1)
    move = engine.year_ago_move(engine.DuckDBExecutor(empty_db), definition, after_the_peak, seasons.START)
    assert move["from"] == "2009-11-02" and move["to"] == "2009-12-02" and move["lookback_days"] == 180
    assert move["move"] < 0 and move["carried"] < 1  # last year the rate fell after the peak

    [carried] = _errors(empty_db, [after_the_peak])
    monkeypatch.setattr(engine, "SEASON_Z", float("inf"))
    [persisted] = _errors(empty_db, [after_the_peak])
    # Carrying November's level over the peak's end overstates December (by 28-45% over three customer draws);
    # last year's move takes most of that away (6-14%).
    assert persisted > 0.2
    assert abs(carried) < persisted / 2


def test_a_shop_without_seasons_keeps_its_calibration(empty_db):
    definition = _shop(empty_db, FLAT)
    for as_of in (dt.date(2010, 6, 1), dt.date(2010, 12, 1), dt.date(2011, 1, 1)):
        move = engine.year_ago_move(engine.DuckDBExecutor(empty_db), definition, as_of, seasons.START)
        assert move["carried"] == 1.0, move  # a move within chance is not carried


def test_without_a_year_of_history_nothing_is_carried(empty_db):
    definition = _shop(empty_db, SEASONAL)
    executor = engine.DuckDBExecutor(empty_db)
    assert engine.year_ago_move(executor, definition, dt.date(2009, 12, 1), seasons.START) is None
    # A year back, the earlier window starts 60 days into the log: too few to know who was a customer then.
    sixty_days_in = seasons.START + dt.timedelta(days=364 + 30 + 60)
    assert engine.year_ago_move(executor, definition, sixty_days_in, seasons.START) is None
    model, _ = engine.train(empty_db, definition, dt.date(2009, 12, 1), seasons.START, full_lookback=False)
    assert model.training["season"] is None


@pytest.mark.parametrize("ratio", [0.5, 1.0, 1.6])
def test_carrying_a_move_sets_the_mean_probability_and_keeps_the_order(ratio):
    logit = np.random.default_rng(1).normal(-1, 1.5, 5000)
    calibration = (0.9, -0.4)
    shift = engine.carry_forward(logit, calibration, ratio)

    def probability(intercept):
        return 1 / (1 + np.exp(-(calibration[0] * logit + intercept)))

    before, after = probability(calibration[1]), probability(calibration[1] + shift)
    intensity = -np.log1p(-before.mean())
    assert -np.log1p(-after.mean()) == pytest.approx(ratio * intensity, rel=1e-6)
    assert (np.argsort(after, kind="stable") == np.argsort(before, kind="stable")).all()


def test_the_dashboard_says_when_last_years_move_was_carried(empty_db, monkeypatch):
    _shop(empty_db, SEASONAL)
    run = engine.run_instance(empty_db, "Buys in 30 days", as_of=dt.date(2011, 1, 1))
    assert run.error is None
    monkeypatch.setenv(store.DB_ENV_VAR, str(empty_db))

    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    app.query_params["instance"] = "Buys in 30 days"
    app = app.switch_page("app_pages/dashboard.py").run()

    assert not app.exception
    assert any("They carry forward the -" in caption.value and "over the same weeks last year" in caption.value
               for caption in app.caption)
    assert any("carried into this run's probabilities" in markdown.value for markdown in app.markdown)
