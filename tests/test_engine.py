"""The engine's rules: leak-freedom, sufficiency, caching, atomic results, faithful factors, calibration."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pickle
import threading

import duckdb
import numpy as np
import pandas as pd
import pytest

from cai import audit, engine, evaluation, factors, features, instances, models, profiles, scores, segments, store
from cai.instances import Condition, Definition, Goal

TUTORIAL = instances.TUTORIAL_INSTANCE
pytestmark = pytest.mark.both_backends


def _scores(db, run_id) -> pd.DataFrame:
    return store.query_df(db, "SELECT profile_id, probability FROM scores WHERE run_id = ? ORDER BY profile_id",
                          [run_id])


def test_the_demo_run_succeeds_with_a_real_but_imperfect_model(trained_db):
    run = scores.latest_run(trained_db, TUTORIAL)
    assert run["status"] == instances.SUCCESS
    assert 0.7 < run["metrics"]["auc"] < 0.98
    by_bucket = {row["bucket"]: row for row in run["evaluation"]["buckets"]}
    assert all(run["buckets"][name] > 0 for name in ("high", "medium", "low"))
    assert by_bucket["high"]["actual_rate"] > 4 * by_bucket["low"]["actual_rate"]


def test_a_run_as_of_a_date_ignores_every_later_event(trained_db, tmp_path):
    as_of = dt.date(2026, 10, 1)
    cut = tmp_path / "cut.duckdb"
    store.copy(trained_db, cut)
    with store.connect(cut) as con:
        con.execute("DELETE FROM events WHERE ts >= ?", [as_of])
    full = engine.run_instance(trained_db, TUTORIAL, as_of=as_of)
    truncated = engine.run_instance(cut, TUTORIAL, as_of=as_of)
    assert full.error is None and truncated.error is None
    pd.testing.assert_frame_equal(_scores(trained_db, full.run_id), _scores(cut, truncated.run_id))


def test_labels_count_goals_inside_the_window_only(empty_db):
    from cai import ingest

    rows = ["timestamp,event_type,email",
            "2026-01-01T10:00:00,search,a@x", "2026-01-01T10:00:00,search,b@x", "2026-01-01T10:00:00,search,c@x",
            "2026-02-01T00:00:00,commerce.purchases,a@x",      # exactly at t: inside
            "2026-03-02T23:59:59,commerce.purchases,b@x",      # last second of the 30-day window: inside
            "2026-03-03T00:00:00,commerce.purchases,c@x"]      # at t + 30 days: outside
    ingest.ingest_bytes(empty_db, "\n".join(rows).encode(), "edges.csv")
    definition = Definition(name="x", goals=(Goal("commerce.purchases"),), eligible_days=45)
    with store.connect(empty_db) as con:
        frame = features.build(con, definition, [dt.date(2026, 2, 1)], with_labels=True)
    assert frame.sort_values("profile_id")["label"].tolist() == [True, True, False]


def test_eligibility_needs_activity_in_the_lookback_and_ignores_passive_emails(empty_db):
    from cai import ingest

    rows = ["timestamp,event_type,email", "2026-01-20T10:00:00,search,recent@x", "2025-10-01T10:00:00,search,old@x",
            "2026-01-25T10:00:00,directMarketing.emailSent,old@x"]
    ingest.ingest_bytes(empty_db, "\n".join(rows).encode(), "eligibility.csv")
    with store.connect(empty_db) as con:
        frame = features.build(con, Definition(name="x", goals=(Goal("search"),)), [dt.date(2026, 2, 1)], False)
    assert len(frame) == 1


def test_every_profile_eligible_at_the_score_date_is_scored(trained_db):
    run = scores.latest_run(trained_db, TUTORIAL)
    eligible = store.query_df(
        trained_db,
        "SELECT count(DISTINCT profile_id) AS n FROM events WHERE event_type <> 'directMarketing.emailSent' "
        "AND ts < CAST(? AS TIMESTAMP) AND ts >= CAST(? AS TIMESTAMP) - INTERVAL 45 DAY",
        [run["details"]["as_of"], run["details"]["as_of"]])["n"][0]
    assert run["profiles_scored"] == eligible == len(_scores(trained_db, run["run_id"]))


def test_a_customer_dormant_for_over_a_year_is_still_a_row_with_its_real_recency(empty_db):
    from cai import ingest

    rows = ["timestamp,event_type,email", "2026-01-20T00:00:00,search,recent@x",
            "2024-12-01T00:00:00,commerce.purchases,dormant@x",
            "2025-12-01T00:00:00,directMarketing.emailSent,dormant@x"]
    ingest.ingest_bytes(empty_db, "\n".join(rows).encode(), "dormant.csv")
    definition = Definition(name="x", goals=(Goal("search"),), eligible_days=500)
    with store.connect(empty_db) as con:
        frame = features.build(con, definition, [dt.date(2026, 2, 1)], with_labels=True)
    dormant = frame.sort_values("last_activity_days").iloc[-1]
    assert len(frame) == 2 and dormant["last_activity_days"] == (dt.date(2026, 2, 1) - dt.date(2024, 12, 1)).days
    assert dormant["purchases_90d"] == 0 and pd.isna(dormant["purchases_days_since"])
    assert pd.isna(dormant["tenure_days"]) and dormant["email_opens_30d"] == 0


def test_purchase_gaps_count_days_and_tenure_ignores_email_sends(empty_db):
    from cai import ingest

    rows = ["timestamp,event_type,email", "2026-01-01T09:00:00,commerce.purchases,a@x",
            "2026-01-01T10:00:00,commerce.purchases,a@x", "2026-01-11T09:00:00,commerce.purchases,a@x",
            "2025-06-01T09:00:00,directMarketing.emailSent,a@x"]
    ingest.ingest_bytes(empty_db, "\n".join(rows).encode(), "gaps.csv")
    with store.connect(empty_db) as con:
        frame = features.build(con, Definition(name="x", goals=(Goal("search"),)), [dt.date(2026, 2, 1)], False)
    assert frame["purchase_gap_days"].iloc[0] == pytest.approx(10.0, abs=0.05)
    assert frame["tenure_days"].iloc[0] == pytest.approx(31.0 - 9 / 24, abs=0.01)


def _training_frames(db) -> tuple[pd.DataFrame, pd.DataFrame, Definition]:
    """The demo tutorial instance's training examples and held-out snapshot for a run on 2026-10-01."""
    definition = instances.get_instance(db, TUTORIAL).definition
    with store.connect(db) as con:
        first_event = con.execute("SELECT min(ts) FROM events").fetchall()[0][0].date()
        holdout_date, training_dates = engine._snapshots(dt.date(2026, 10, 1), first_event, definition)
        train = features.build(con, definition, training_dates, with_labels=True)
        holdout = features.build(con, definition, [holdout_date], with_labels=True)
    return train, holdout, definition


def test_early_stopping_validates_on_the_latest_training_snapshot_only(trained_db):
    train, holdout, definition = _training_frames(trained_db)
    validation = engine._validation_rows(train)
    latest = train["snapshot"].max()
    assert validation.sum() == (train["snapshot"] == latest).sum() > 0
    assert (train.loc[validation, "snapshot"] == latest).all() and train["snapshot"].nunique() > 1
    model = engine._fit(train, holdout, features.feature_catalog(definition), definition)
    assert model.training["validation_snapshot"] == pd.Timestamp(latest).date().isoformat()
    assert model.training["validation_rows"] == validation.sum()
    assert model.training["training_rows"] == len(train)
    # The demo's latest snapshot stops the trees before the cap; labels that carry no signal there stop them at once.
    assert model.training["iterations"] < engine.MODEL_PARAMS["max_iter"]
    noise = train.copy()
    noise.loc[validation, "label"] = np.random.default_rng(1).permutation(noise.loc[validation, "label"].to_numpy())
    blind = engine._fit(noise, holdout, features.feature_catalog(definition), definition)
    assert blind.training["iterations"] < model.training["iterations"]
    assert blind.training["iterations"] <= engine.MODEL_PARAMS["n_iter_no_change"] + 5


def test_the_number_of_trees_is_chosen_on_half_the_customers_drawn_by_the_seed(trained_db):
    train, _, _ = _training_frames(trained_db)
    chosen = engine._tree_choice_rows(train, engine.SEED)
    by_customer = pd.Series(chosen).groupby(train["profile_id"].to_numpy()).agg(["min", "max"])
    assert (by_customer["min"] == by_customer["max"]).all()
    assert 0.45 < by_customer["min"].mean() < 0.55
    assert not np.array_equal(chosen, engine._tree_choice_rows(train, engine.SEED + 1))


def test_labels_alone_and_features_of_chosen_rows_equal_the_full_build(trained_db):
    definition = instances.get_instance(trained_db, TUTORIAL).definition
    snapshots = [dt.date(2026, 8, 1), dt.date(2026, 9, 1)]
    with store.connect(trained_db) as con:
        full = features.build(con, definition, snapshots, with_labels=True, sample_fraction=0.5)
        labels = features.labels(con, definition, snapshots, sample_fraction=0.5)
        chosen = full.sample(300, random_state=1)
        some = features.build(con, definition, snapshots, with_labels=True, sample_fraction=0.5, rows=chosen)
    pd.testing.assert_frame_equal(labels, full[["snapshot", "profile_id", "label"]])
    expected = full.merge(chosen[["snapshot", "profile_id"]]).sort_values(["snapshot", "profile_id"])
    pd.testing.assert_frame_equal(some, expected.reset_index(drop=True))


def test_a_capped_training_builds_features_for_the_rows_it_keeps_and_the_held_out_ones_only(trained_db, monkeypatch):
    monkeypatch.setattr(engine, "MAX_TRAINING_ROWS", 2_000)
    built = []

    class Recording(engine.DuckDBExecutor):
        def features(self, definition, snapshots, with_labels, sample_fraction=1.0, rows=None):
            frame = super().features(definition, snapshots, with_labels, sample_fraction, rows)
            built.append(frame)
            return frame

    definition = instances.get_instance(trained_db, TUTORIAL).definition
    with store.connect(trained_db) as con:
        first_event = con.execute("SELECT min(ts) FROM events").fetchall()[0][0].date()
    model, holdout = engine.train(trained_db, definition, dt.date(2026, 10, 1), first_event,
                                  executor=Recording(trained_db))
    holdout_date, training_dates = engine._snapshots(dt.date(2026, 10, 1), first_event, definition)
    with store.connect(trained_db) as con:
        every = features.build(con, definition, [*training_dates, holdout_date], with_labels=True)
    in_training = (every["snapshot"] != pd.Timestamp(holdout_date)).to_numpy()
    kept = engine._stratified(every[in_training].reset_index(drop=True), engine.SEED)
    assert len(built) == 1 and model.training["training_rows"] == engine.MAX_TRAINING_ROWS == len(kept)
    assert len(built[0]) == len(kept) + len(holdout) < len(every)
    pd.testing.assert_frame_equal(built[0][:len(kept)], kept.reset_index(drop=True))
    pd.testing.assert_frame_equal(holdout, every[~in_training].reset_index(drop=True))


def test_a_category_unseen_in_training_is_other_not_missing():
    catalog = [features.Feature("city", "City", "", "categorical")]
    common = [f"city {i:02d}" for i in range(engine.MAX_CATEGORIES)]
    train = pd.DataFrame({"city": common * 3 + ["rare town", None]})
    categories = engine._learn_categories(train, catalog)
    assert categories["city"] == sorted(common) + [engine.OTHER_CATEGORY]
    other = len(common)
    frame = pd.DataFrame({"city": ["city 03", "rare town", "Atlantis", None, np.nan]})
    codes = engine._encode(frame, ["city"], np.array([True]), categories)[:, 0]
    assert codes[0] == 3 and codes[1] == other and codes[2] == other
    assert np.isnan(codes[3]) and np.isnan(codes[4])


def test_too_few_examples_end_in_error_with_advice(trained_db):
    strict = Definition(name="Strict", goals=(Goal("commerce.purchases", Condition("value", ">", 5000)),))
    instances.create_instance(trained_db, strict)
    result = engine.run_instance(trained_db, "Strict")
    assert result.status == instances.ERROR and "Too little data" in result.error
    assert instances.get_instance(trained_db, "Strict").status_reason == result.error


def test_too_little_history_is_explained(trained_db):
    instances.create_instance(trained_db, Definition(name="Long", goals=(Goal("search"),), window_days=200))
    result = engine.run_instance(trained_db, "Long")
    assert result.status == instances.ERROR and "Not enough history" in result.error


def test_a_cached_model_is_reused_and_a_tampered_one_is_refused(trained_db):
    again = engine.run_instance(trained_db, TUTORIAL)
    assert scores.latest_run(trained_db, TUTORIAL)["details"]["cache"] == "reused cached model"
    with store.connect(trained_db) as con:
        payload = con.execute("SELECT model FROM models").fetchall()[0][0]
        con.execute("UPDATE models SET model = ?", [bytes(payload) + b"tampered"])
    retrained = engine.run_instance(trained_db, TUTORIAL)
    assert "failed its signature check" in scores.latest_run(trained_db, TUTORIAL)["details"]["cache"]
    pd.testing.assert_frame_equal(_scores(trained_db, again.run_id).reset_index(drop=True),
                                  _scores(trained_db, retrained.run_id).reset_index(drop=True))


def test_a_model_row_written_by_someone_without_the_key_never_runs_its_code(trained_db, tmp_path):
    planted = tmp_path / "planted-code-ran"
    forged = pickle.dumps(_RunsCodeWhenUnpickled(planted))
    with store.connect(trained_db) as con:
        con.execute("UPDATE models SET model = ?, signature = ?", [forged, hashlib.sha256(forged).hexdigest()])
    result = engine.run_instance(trained_db, TUTORIAL)
    assert result.error is None and not planted.exists()
    assert "failed its signature check" in scores.latest_run(trained_db, TUTORIAL)["details"]["cache"]


def test_models_signed_with_another_key_are_retrained_not_loaded(trained_db):
    keyed = store.resolve(trained_db, model_key="the deployment's own key")
    engine.run_instance(keyed, TUTORIAL)
    assert "failed its signature check" in scores.latest_run(keyed, TUTORIAL)["details"]["cache"]
    engine.run_instance(keyed, TUTORIAL)
    assert scores.latest_run(keyed, TUTORIAL)["details"]["cache"] == "reused cached model"


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def test_a_failed_run_keeps_the_previous_scores(trained_db, monkeypatch):
    before = scores.latest_run(trained_db, TUTORIAL)["run_id"]
    monkeypatch.setattr(engine.factors, "screen", lambda *args: 1 / 0)
    result = engine.run_instance(trained_db, TUTORIAL)
    assert result.status == instances.ERROR and "previous scores are kept" in result.error
    assert scores.latest_run(trained_db, TUTORIAL)["run_id"] == before
    assert len(_scores(trained_db, before)) > 0


def test_an_interrupted_run_is_marked_and_the_instance_keeps_its_scores(trained_db):
    with store.connect(trained_db) as con:
        con.execute("INSERT INTO runs (run_id, instance_id, status, as_of, started_at, pid) "
                    "VALUES (999, 1, 'running', DATE '2026-11-01', current_timestamp, 999999999)")
        con.execute("UPDATE instances SET status = 'Training' WHERE instance_id = 1")
    assert engine.recover_interrupted_runs(trained_db) == 1
    instance = instances.get_instance(trained_db, TUTORIAL)
    assert instance.status == instances.SUCCESS and "interrupted" in instance.status_reason


def test_top_reasons_are_faithful(trained_db):
    run = scores.latest_run(trained_db, TUTORIAL)
    model, note = models.load(trained_db, run["details"]["model"])
    assert note == "reused cached model"
    with store.connect(trained_db) as con:
        frame = features.build(con, run["definition"], [dt.date.fromisoformat(run["details"]["as_of"])], False)
    matrix = engine.encode(frame, model)
    top = store.query_df(trained_db, "SELECT profile_id, feature, effect FROM score_factors WHERE run_id = ? "
                                     "AND rank = 1 ORDER BY profile_id LIMIT 300", [run["run_id"]])
    typical = factors.typical_values(matrix, model.categorical)
    reason_of = {model.feature_names[member]: reason for reason in factors.reasons(model.feature_names)
                 for member in reason.members}
    row_of = {pid: i for i, pid in enumerate(frame["profile_id"])}
    for factor in top.itertuples():
        row = matrix[row_of[factor.profile_id]].copy()
        before = model.probability(row[None, :])[0]
        members = list(reason_of[factor.feature].members)
        row[members] = typical[members]
        after = model.probability(row[None, :])[0]
        assert np.sign(before - after) == np.sign(factor.effect)


def test_every_scored_profile_has_a_reason(trained_db):
    run_id = scores.latest_run(trained_db, TUTORIAL)["run_id"]
    without = store.query_df(trained_db, "SELECT count(*) AS n FROM scores s WHERE run_id = ? AND NOT EXISTS "
                                         "(SELECT 1 FROM score_factors f WHERE f.run_id = s.run_id "
                                         "AND f.profile_id = s.profile_id)", [run_id])["n"][0]
    assert without == 0


def test_top_reasons_point_the_way_the_buckets_do(trained_db):
    """A customer whose value is at least as far out as the high bucket's median (or the low bucket's) should see
    that reason raise (or lower) the score, as the dashboard's medians suggest: a recent cart addition must not
    lower a high scorer's score. Values between the two medians say nothing either way and are left out."""
    run_id = scores.latest_run(trained_db, TUTORIAL)["run_id"]
    medians = {}
    for row in store.query_df(trained_db, "SELECT feature, kind, by_bucket FROM run_factors WHERE run_id = ?",
                              [run_id]).itertuples():
        high, low = (json.loads(row.by_bucket)[name].get("median") for name in ("high", "low"))
        if row.kind == "numeric" and high is not None and low is not None and high != low:
            medians[row.feature] = (high, low)
    top = store.query_df(trained_db, "SELECT feature, value, effect FROM score_factors WHERE run_id = ? "
                                     "AND rank = 1", [run_id])
    top = top[top["feature"].isin(list(medians))]
    high = top["feature"].map(lambda name: medians[name][0])
    low = top["feature"].map(lambda name: medians[name][1])
    towards_high = np.sign(high - low)
    like_high = towards_high * (top["value"] - high) >= 0
    like_low = towards_high * (top["value"] - low) <= 0
    clear = like_high | like_low
    agrees = np.sign(top["effect"][clear]) == np.where(like_high[clear], 1, -1)
    assert clear.sum() > 0.3 * len(top) and agrees.mean() > 0.8
    # Every profile's recency reasons: longer ago than typical lowers the score (a profile whose only reason no
    # feature can name without contradiction keeps it under its headline, hence not quite all).
    recency = store.query_df(trained_db, "SELECT value, typical, effect FROM score_factors WHERE run_id = ? "
                                         "AND (feature LIKE '%days_since' OR feature = 'last_activity_days') "
                                         "AND value IS NOT NULL AND typical IS NOT NULL", [run_id])
    assert len(recency) > 500
    assert (np.sign(recency["effect"]) == np.sign(recency["typical"] - recency["value"])).mean() > 0.99


def test_calibration_and_metrics_on_known_probabilities():
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.01, 0.6, 40_000)
    labels = rng.random(40_000) < truth
    result = evaluation.evaluate(labels, truth, 25, 75)
    for row in result["calibration"]:
        assert abs(row["predicted"] - row["observed"]) < 0.03
    assert 0.6 < result["auc"] < 0.8 and result["lift_top_decile"] > 1.5
    assert result["deciles"][-1]["cumulative_gain"] == pytest.approx(1.0)
    figures = evaluation.tradeoff(result, "score", 0, 100)
    assert figures["recall"] == pytest.approx(1.0) and figures["precision"] == pytest.approx(labels.mean())


def test_score_is_relative_to_the_base_rate():
    scores_ = evaluation.scores_from_probabilities(np.array([0.1, 0.25, 1 / 28]), base_rate=0.1)
    assert scores_.tolist() == [50.0, 75.0, 25.0]
    assert evaluation.percentiles(np.array([1.0, 2.0, 2.0, 3.0])).tolist() == [25, 75, 75, 100]


def test_a_score_means_the_same_in_every_run_of_an_instance(trained_db):
    first = scores.latest_run(trained_db, TUTORIAL)
    later = engine.run_instance(trained_db, TUTORIAL, as_of=dt.date(2026, 10, 1))
    details = scores.latest_run(trained_db, TUTORIAL)["details"]
    assert later.error is None and details["reference_rate"] == first["details"]["reference_rate"]
    assert details["base_rate"] != details["reference_rate"]
    stored = store.query_df(trained_db, "SELECT probability, score FROM scores WHERE run_id = ?", [later.run_id])
    expected = evaluation.scores_from_probabilities(stored["probability"].to_numpy(), details["reference_rate"])
    assert np.allclose(stored["score"], expected)


def test_segments_match_the_card_and_export_exactly_those_profiles(trained_db, tmp_path):
    summary = scores.bucket_summary(trained_db, scores.latest_run(trained_db, TUTORIAL)["run_id"])
    high = int(summary.set_index("bucket").loc["high", "profiles"])
    saved = segments.create_segment(trained_db, "Demo - Customer AI High Propensity",
                                    segments.bucket_rule(TUTORIAL, "high", 25, 75))
    assert saved["size"] == high
    count = segments.export(trained_db, saved["name"], tmp_path / "high.parquet")
    exported = pd.read_parquet(tmp_path / "high.parquet")
    assert count == high and (exported["score"] >= 75).all() and exported["profile_id"].is_unique
    assert audit.entries(trained_db, action="export")["object_name"].tolist() == [saved["name"]]
    medium = segments.create_segment(trained_db, "medium", segments.bucket_rule(TUTORIAL, "medium", 25, 75))
    overlap = segments.overlap(trained_db, "medium")
    assert overlap["shared_profiles"].tolist() == [0] and medium["size"] > 0


@pytest.mark.parametrize("name", ["", " ", "x" * 129])
def test_invalid_segment_names_are_refused(trained_db, name):
    with pytest.raises(Exception, match="name"):
        segments.create_segment(trained_db, name, segments.bucket_rule(TUTORIAL, "high", 25, 75))


def test_odd_segment_names_are_stored_verbatim(trained_db):
    name = "'; DROP TABLE scores; -- «Größte» 100% _x_"
    segments.create_segment(trained_db, name, segments.bucket_rule(TUTORIAL, "low", 25, 75))
    assert segments.get_segment(trained_db, name)["name"] == name
    assert len(_scores(trained_db, scores.latest_run(trained_db, TUTORIAL)["run_id"])) > 0


def test_concurrent_saves_with_one_name_store_one_and_refuse_the_other(trained_db):
    rule = segments.bucket_rule(TUTORIAL, "high", 25, 75)
    outcomes = []

    def save(name):
        try:
            segments.create_segment(trained_db, name, rule)
            outcomes.append("saved")
        except Exception as error:  # the refusal is what we count
            outcomes.append(str(error))

    threads = [threading.Thread(target=save, args=(f"segment {i}",)) for i in range(10)]
    threads += [threading.Thread(target=save, args=("same",)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("saved") == 11
    assert any("already exists" in outcome for outcome in outcomes)
    assert len(segments.list_segments(trained_db)) == 11


def test_trade_off_figures_follow_the_cut_off(trained_db):
    wide = segments.measure(trained_db, segments.Rule(TUTORIAL, minimum=25), 100.0, 2.0)
    narrow = segments.measure(trained_db, segments.Rule(TUTORIAL, minimum=75), 100.0, 2.0)
    assert narrow["size"] < wide["size"] and narrow["precision"] > wide["precision"]
    assert narrow["recall"] < wide["recall"]
    assert narrow["expected_return"] == pytest.approx(narrow["expected_conversions"] * 100 - narrow["size"] * 2)
    # A segment of exactly the high bucket states the likely range the dashboard's high card does.
    high = scores.bucket_summary(trained_db, narrow["run_id"]).set_index("bucket").loc["high"]
    assert (narrow["expected_low"], narrow["expected_conversions"], narrow["expected_high"]) == pytest.approx(
        (high["expected_low"], high["expected_conversions"], high["expected_high"]))
    assert wide["expected_low"] < wide["expected_conversions"] < wide["expected_high"]


def test_profile_lookup_exact_forgiving_and_literal(trained_db, tmp_path):
    assert profiles.find(trained_db, "Email", "hbirkenshawa@businessweek.com") == 1
    ecid = profiles.identities(trained_db, 1).set_index("namespace").loc["ECID", "identity"]
    assert profiles.find(trained_db, "ECID", ecid) == 1
    # Emails are stored lower-case at load, so an email typed in any case (and with stray spaces) finds its owner;
    # other namespaces stay exact.
    assert profiles.find(trained_db, "Email", " HBIRKENSHAWA@BusinessWeek.com ") == 1
    assert profiles.find(trained_db, "email", "Hbirkenshawa@businessweek.com") == 1
    assert profiles.find(trained_db, "Email", "hbirkenshawa@businessweek.co") is None
    assert profiles.find(trained_db, "Email", "null") is None
    assert profiles.search(trained_db, "Email", "HBIRKENSHAW")["profile_id"].tolist() == [1]
    for literal in ("%", "_", "'", "'; DROP TABLE identities; --"):
        assert profiles.find(trained_db, "Email", literal) is None
        assert profiles.search(trained_db, "Email", literal).empty
    output = profiles.customer_ai(trained_db, 1)[0]
    exported = scores.export_scores(trained_db, TUTORIAL, tmp_path / "all.csv")
    frame = pd.read_csv(tmp_path / "all.csv").set_index("profile_id")
    assert exported == len(frame)
    assert output["score"] == pytest.approx(frame.loc[1, "score"])
    assert all(" the score" in factor["sentence"] for factor in output["factors"])


def test_features_do_not_depend_on_the_order_events_are_stored_in(trained_db_template):
    """A DuckDB file, PostgreSQL and Spark hand the rows over in different orders; a sum of doubles taken in another
    order differed in its last digit and tipped a profile across a split (a score 0.9 apart on PostgreSQL)."""
    definition = instances.get_instance(trained_db_template, instances.TUTORIAL_INSTANCE).definition
    with store.connect(trained_db_template) as con:
        as_of = features.default_as_of(con)
        stored = features.build(con, definition, [as_of], with_labels=False)
    store.release(trained_db_template)
    con = duckdb.connect()
    con.execute(f"ATTACH '{trained_db_template}' AS source (READ_ONLY)")
    con.execute("CREATE TABLE events AS SELECT * FROM source.events ORDER BY value DESC NULLS FIRST, ts DESC")
    for table in ("profiles", "profile_attribute_versions"):
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM source.{table}")
    reordered = features.build(con, definition, [as_of], with_labels=False)
    pd.testing.assert_frame_equal(reordered, stored, check_exact=True)
