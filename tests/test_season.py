"""Last year's move over the same weeks, carried into a run's probabilities where the data reaches back that far."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from streamlit.testing.v1 import AppTest

from cai import backtest, engine, ingest, instances, store
from cai.instances import Definition, Goal
from tests.conftest import ROOT

START = dt.date(2009, 1, 1)
DAYS = 760  # two Novembers' peaks, and the two months after the second one
PEAK_DAY_OF_YEAR = 325


def _shop_csv(seasonal: bool, customers: int = 2500, seed: int = 7) -> bytes:
    """Purchases of a shop whose customers buy as Poisson processes; with ``seasonal`` their pace rises into a late
    November peak each year, as a retailer's does before the holidays."""
    rng = np.random.default_rng(seed)
    day = np.arange(DAYS)
    day_of_year = (day + START.timetuple().tm_yday) % 365
    pace = 1 + 0.8 * np.exp(-(((day_of_year - PEAK_DAY_OF_YEAR) / 22.0) ** 2)) if seasonal else np.ones(DAYS)
    rows = ["timestamp,event_type,email"]
    for customer, intensity in enumerate(rng.gamma(0.7, 1 / 45, customers)):
        for purchase_day in np.nonzero(rng.poisson(intensity * pace))[0]:
            rows.append(f"{START + dt.timedelta(days=int(purchase_day))}T12:00:00,commerce.purchases,c{customer}@x")
    return "\n".join(rows).encode()


def _shop(db, seasonal: bool) -> Definition:
    ingest.ingest_bytes(db, _shop_csv(seasonal), "shop.csv")
    definition = Definition(name="Buys in 30 days", goals=(Goal("commerce.purchases"),), eligible_days=180)
    instances.create_instance(db, definition)
    return definition


def _errors(db, cutoffs) -> list[float]:
    return [result.calibration_error for result in backtest.backtest(db, "Buys in 30 days", cutoffs)]


def test_a_season_seen_last_year_is_carried_into_the_next_windows_expectation(empty_db, monkeypatch):
    definition = _shop(empty_db, seasonal=True)
    after_the_peak = [dt.date(2010, 12, 1), dt.date(2011, 1, 1)]
    move = engine.year_ago_move(engine.DuckDBExecutor(empty_db), definition, after_the_peak[0], START)
    assert move["from"] == "2009-11-02" and move["to"] == "2009-12-02" and move["lookback_days"] == 180
    assert move["move"] < 0 and move["carried"] < 1  # last year the rate fell after the peak

    carried = _errors(empty_db, after_the_peak)
    monkeypatch.setattr(engine, "SEASON_Z", float("inf"))
    persisted = _errors(empty_db, after_the_peak)
    # Carrying the held-out window's level over the peak's end overstates December and January.
    assert all(error > 0.1 for error in persisted)
    assert all(abs(new) < abs(old) for new, old in zip(carried, persisted))


def test_a_shop_without_seasons_keeps_its_calibration(empty_db):
    definition = _shop(empty_db, seasonal=False)
    for as_of in (dt.date(2010, 6, 1), dt.date(2010, 12, 1), dt.date(2011, 1, 1)):
        move = engine.year_ago_move(engine.DuckDBExecutor(empty_db), definition, as_of, START)
        assert move["carried"] == 1.0, move  # a move within chance is not carried


def test_without_a_year_of_history_nothing_is_carried(empty_db):
    definition = _shop(empty_db, seasonal=True)
    executor = engine.DuckDBExecutor(empty_db)
    assert engine.year_ago_move(executor, definition, dt.date(2009, 12, 1), START) is None
    # A year back, the earlier window starts 60 days into the log: too few to know who was a customer then.
    assert engine.year_ago_move(executor, definition, START + dt.timedelta(days=364 + 30 + 60), START) is None
    model, _ = engine.train(empty_db, definition, dt.date(2009, 12, 1), START, full_lookback=False)
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
    _shop(empty_db, seasonal=True)
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
