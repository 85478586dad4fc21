"""Why a profile's score moved between two runs: the customer (same model) or the model (a retrain), split into
both parts when the previous model is still stored; and the profile page's sentence."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from cai import engine, instances, profiles, store
from cai.profiles import ScoreMove
from tests.conftest import ROOT

TIMEOUT = 120
EARLIER_AS_OF = dt.date(2026, 10, 18)


@pytest.fixture(scope="module")
def two_runs(trained_db_template, tmp_path_factory):
    """The trained demo with a second run on another date (so a retrained model): runs oldest first."""
    store.release(trained_db_template)
    db = tmp_path_factory.mktemp("moves") / "cai.duckdb"
    shutil.copy(trained_db_template, db)
    result = engine.run_instance(db, instances.TUTORIAL_INSTANCE, as_of=EARLIER_AS_OF)
    assert result.error is None, result.error
    return db


def _runs(db):
    return store.query_df(db, "SELECT run_id, as_of, details->>'model' AS model, "
                              "CAST(details->>'reference_rate' AS DOUBLE) AS reference FROM runs ORDER BY as_of")


def test_the_same_model_on_other_data_says_the_customer_changed():
    move = ScoreMove("Purchase", dt.date(2026, 10, 1), dt.date(2026, 10, 8), 40.0, 52.5, same_model=True)
    assert move.sentence() == ("Purchase: from 40.0 on 01 Oct 2026 to 52.5 on 08 Oct 2026 (+12.5): the customer "
                               "changed; the model is the same.")


def test_a_retrain_splits_the_move_into_the_customer_and_the_model_or_says_it_cannot():
    split = ScoreMove("Purchase", dt.date(2026, 10, 1), dt.date(2026, 10, 8), 40.0, 52.5, same_model=False,
                      customer_part=4.0)
    assert split.sentence().endswith("+4.0 because the customer changed (their new data scored by the previous "
                                     "model) and +8.5 because the model was retrained.")
    gone = ScoreMove("Purchase", dt.date(2026, 10, 1), dt.date(2026, 10, 8), 40.0, 52.5, same_model=False)
    assert "the model was retrained, and the previous model is no longer stored" in gone.sentence()
    still = ScoreMove("Purchase", dt.date(2026, 10, 1), dt.date(2026, 10, 8), 40.0, 40.0, same_model=False)
    assert still.sentence().endswith("unchanged.")


def test_a_retrain_with_the_previous_model_stored_splits_the_move(two_runs):
    runs = _runs(two_runs)
    assert runs["model"].nunique() == 2
    scores = store.query_df(two_runs, "SELECT run_id, score FROM scores WHERE profile_id = 1")
    by_run = dict(zip(scores["run_id"], scores["score"]))
    older, newer = runs.iloc[0], runs.iloc[1]

    [move] = profiles.score_moves(two_runs, 1)
    assert (move.date_from, move.date_to) == (older["as_of"].date(), newer["as_of"].date())
    assert (move.score_from, move.score_to) == (by_run[older["run_id"]], by_run[newer["run_id"]])
    assert not move.same_model and move.customer_part is not None
    # The rescoring is faithful: the previous model on the previous date gives back the stored score.
    definition = instances.get_instance(two_runs, instances.TUTORIAL_INSTANCE).definition
    assert profiles._score_with_model(two_runs, older["model"], definition, 1, older["as_of"].date(),
                                      older["reference"]) == pytest.approx(by_run[older["run_id"]], abs=0.05)


def test_without_the_previous_model_the_move_is_put_down_to_the_retrain(two_runs, tmp_path):
    db = tmp_path / "cai.duckdb"
    store.release(two_runs)
    shutil.copy(two_runs, db)
    older_model = _runs(db)["model"].iloc[0]
    with store.connect(db) as con:
        con.execute("DELETE FROM models WHERE cache_key = ?", [older_model])
    [move] = profiles.score_moves(db, 1)
    assert move.customer_part is None and "no longer stored" in move.sentence()


def test_the_profile_page_says_why_the_score_moved(two_runs, monkeypatch):
    monkeypatch.setenv(store.DB_ENV_VAR, str(two_runs))
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    app.query_params["profile"] = "1"
    app = app.switch_page("app_pages/profiles.py").run()
    assert not app.exception
    texts = [block.value for block in app.markdown]
    assert "**Why the score moved**" in texts
    [sentence] = [text for text in texts if "because the model was retrained" in text]
    assert "because the customer changed" in sentence
