"""AppTest: every page renders on a trained demo store, and the main actions work."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cai import engine, ingest, instances, performance, scores, segments, store
from tests.conftest import ROOT
from tests.test_attribute_history import purchases_balance_file

TIMEOUT = 120


@pytest.fixture(autouse=True)
def fresh_caches():
    import streamlit as st

    st.cache_data.clear()
    yield
    st.cache_data.clear()


def _page(path: str, **query) -> AppTest:
    """Opens a page through the entry script, as the navigation does, with the URL's query parameters."""
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    for key, value in query.items():
        app.query_params[key] = value
    return app.switch_page(path).run()


def test_entry_script_routes_to_the_instance_list(trained_db):
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    assert not app.exception
    assert app.title[0].value == "Customer AI"


def test_data_page_shows_counts_and_datasets(trained_db):
    app = _page("app_pages/data.py")
    assert not app.exception
    assert app.metric[0].value == "6,000"
    assert "Luma retail events (demo)" in app.dataframe[0].value["dataset"].tolist()


def test_instances_page_lists_the_tutorial_instance_and_refuses_edit_after_success(trained_db):
    app = _page("app_pages/instances.py")
    assert not app.exception
    assert app.selectbox(key="instances_selected").value == instances.TUTORIAL_INSTANCE
    assert any("can be edited only" in info.value for info in app.info)


def test_creating_and_running_an_instance_from_the_form(trained_db):
    app = _page("app_pages/instances.py")
    app.text_input(key="instances_create_name").input("Checkout Propensity")
    app.multiselect(key="instances_create_goals").set_value(["commerce.checkouts"])
    app.button(key="FormSubmitter:instances_create-Save").click().run()
    assert not app.exception
    assert instances.get_instance(trained_db, "Checkout Propensity").status == instances.AWAITING
    app.selectbox(key="instances_selected").set_value("Checkout Propensity").run()
    app.button(key="instances_run").click().run()
    assert not app.exception
    assert instances.get_instance(trained_db, "Checkout Propensity").status == instances.SUCCESS


def test_the_wizard_refuses_a_leaking_attribute_and_saves_it_when_the_user_insists(trained_db):
    with store.connect(trained_db) as con:
        con.execute("DELETE FROM profile_attribute_versions WHERE attribute = 'loyalty_points'")
    ingest.ingest_bytes(trained_db, pd.DataFrame(purchases_balance_file(trained_db)).to_csv(index=False).encode(),
                        "balances.csv", kind="profiles")
    app = _page("app_pages/instances.py")
    assert app.multiselect(key="instances_create_attributes").value == ["loyalty_tier"]
    app.text_input(key="instances_create_name").input("Points")
    app.multiselect(key="instances_create_attributes").set_value(["loyalty_tier", "loyalty_points"])
    app.button(key="FormSubmitter:instances_create-Save").click().run()
    assert not app.exception
    assert any("`loyalty_points` was loaded once" in error.value.replace("\\", "") for error in app.error)
    assert "Points" not in instances.instances_table(trained_db)["name"].tolist()

    app.multiselect(key="instances_create_allow_leaky").set_value(["loyalty_points"])
    app.button(key="FormSubmitter:instances_create-Save").click().run()
    assert not app.exception
    assert instances.get_instance(trained_db, "Points").definition.allow_leaky_attributes == ("loyalty_points",)
    app.selectbox(key="instances_selected").set_value("Points").run()
    assert any("because the set-up insists" in warning.value.replace("\\", "") for warning in app.warning)


def test_dashboard_shows_cards_charts_and_evaluation(trained_db):
    app = _page("app_pages/dashboard.py", instance=instances.TUTORIAL_INSTANCE)
    assert not app.exception
    assert app.title[0].value == instances.TUTORIAL_INSTANCE
    labels = [metric.label for metric in app.metric]
    assert labels.count("Profiles") == 3 and "AUC" in labels and "Quality" in labels
    # Donut, distribution and factors; the chosen factor's breakdown chart and the evaluation's four wait until opened.
    assert len(app.get("vega_lite_chart")) == 3
    assert not [caption for caption in app.caption if caption.value.startswith("Lift:")]
    assert [expander.label for expander in app.expander] == [
        "Chart of this factor in each bucket", "Lift, gains, calibration and expected vs actual",
        "Show more: definition, data and model"]
    # Each card's expected conversions come with their likely range, and the page says what the range allows for.
    summary = scores.bucket_summary(trained_db, scores.latest_run(trained_db, instances.TUTORIAL_INSTANCE)["run_id"])
    cards = [caption.value for caption in app.caption if caption.value.startswith("Mean probability")]
    assert cards == [f"Mean probability {row.mean_probability:.1%}  \nExpected conversions "
                     f"{row.expected_conversions:,.0f} (likely {row.expected_low:,.0f}–{row.expected_high:,.0f})"
                     for row in summary.itertuples()]
    assert any("likely ranges allow for the goal's rate moving by up to" in caption.value for caption in app.caption)


def test_dashboard_shows_past_runs_against_the_likely_range_they_stated(trained_db):
    for as_of in (dt.date(2026, 8, 1), dt.date(2026, 9, 1)):
        engine.run_instance(trained_db, instances.TUTORIAL_INSTANCE, as_of=as_of)
    past = performance.performance_summary(trained_db, instances.TUTORIAL_INSTANCE)
    landed = sum(row.likely_low <= row.actual <= row.likely_high for row in past.itertuples())

    app = _page("app_pages/dashboard.py", instance=instances.TUTORIAL_INSTANCE)

    assert not app.exception
    assert len(app.get("vega_lite_chart")) == 4  # the past runs' chart besides donut, distribution and factors
    assert any(caption.value.endswith(f"what happened fell in it for {landed} of {len(past)} buckets.")
               for caption in app.caption)


def test_opening_the_evaluation_charts_draws_them(trained_db):
    app = _page("app_pages/dashboard.py", instance=instances.TUTORIAL_INSTANCE)
    app.session_state["dashboard_evaluation_charts"] = True
    app.run()
    assert not app.exception
    assert len(app.get("vega_lite_chart")) == 3 + 4
    captions = [caption.value for caption in app.caption]
    assert all(any(caption.startswith(f"{name}:") for caption in captions)
               for name in ("Lift", "Gains", "Calibration", "Expected vs actual"))


def test_dashboard_of_an_untrained_instance_says_what_to_do(trained_db):
    instances.clone_instance(trained_db, instances.TUTORIAL_INSTANCE, "Untrained")
    app = _page("app_pages/dashboard.py", instance="Untrained")
    assert not app.exception
    assert "Run now" in app.warning[0].value


def test_create_segment_on_the_high_card_opens_the_prefilled_builder(trained_db):
    app = _page("app_pages/dashboard.py", instance=instances.TUTORIAL_INSTANCE)
    high_card_count = [metric.value for metric in app.metric if metric.label == "Profiles"][0]
    app.button(key="dashboard_segment_high").click().run()
    assert not app.exception
    assert app.title[0].value == "Segment builder"
    assert app.text_input(key="builder_name").value == f"{instances.TUTORIAL_INSTANCE} - Customer AI High Propensity"
    assert app.code[0].value == f'CustomerAI["{instances.TUTORIAL_INSTANCE}"].score >= 75'
    assert app.metric[0].value == high_card_count
    expected = app.metric[1]
    assert expected.label == "Expected conversions" and expected.delta.startswith("likely ")


def test_saving_the_prefilled_builder_stores_the_card_count(trained_db):
    app = _page("app_pages/segment_builder.py", instance=instances.TUTORIAL_INSTANCE, bucket="high")
    audience = app.metric[0].value
    app.text_input(key="builder_name").input("Demo - Customer AI High Propensity")
    app.button(key="builder_save").click().run()
    assert not app.exception
    saved = segments.get_segment(trained_db, "Demo - Customer AI High Propensity")
    assert f"{saved['size_at_creation']:,}" == audience
    assert saved["rule_text"] == f'CustomerAI["{instances.TUTORIAL_INSTANCE}"].score >= 75'


def test_builder_refuses_a_duplicate_name(trained_db):
    rule = segments.bucket_rule(instances.TUTORIAL_INSTANCE, "high", 25, 75)
    segments.create_segment(trained_db, "Taken", rule)
    builder = _page("app_pages/segment_builder.py", instance=instances.TUTORIAL_INSTANCE, bucket="high")
    builder.text_input(key="builder_name").input("Taken")
    builder.button(key="builder_save").click().run()
    assert not builder.exception
    assert "already exists" in builder.error[0].value


def test_segments_page_lists_members_and_overlap(trained_db):
    for bucket in ("high", "medium"):
        segments.create_segment(trained_db, bucket, segments.bucket_rule(instances.TUTORIAL_INSTANCE, bucket, 25, 75))
    app = _page("app_pages/segments.py")
    assert not app.exception
    assert app.dataframe[0].value["name"].tolist() == ["high", "medium"]
    members = app.dataframe[1].value
    assert len(members) > 0 and set(members["bucket"]) == {"high"}


def test_profiles_browse_lists_the_tutorial_email_and_its_profile_id_opens_the_profile(trained_db):
    app = _page("app_pages/profiles.py")
    app.text_input(key="profiles_value").input("hbirkenshawa@businessweek.com")
    app.button(key="FormSubmitter:profiles_browse-View").click().run()
    assert not app.exception
    assert not [metric for metric in app.metric if metric.label == "Propensity score"]  # results first, as in AEP
    app.button(key="profiles_open_1").click().run()
    assert not app.exception
    assert app.query_params["profile"] == ["1"] or app.query_params["profile"] == "1"
    scores = [metric.value for metric in app.metric if metric.label == "Propensity score"]
    assert len(scores) == 1 and 0 <= float(scores[0]) <= 100
    assert "profile 1" in app.subheader[0].value
    attributes = app.dataframe[0].value
    rows = dict(zip(attributes["attribute"], attributes["value"]))
    field = f'CustomerAI["{instances.TUTORIAL_INSTANCE}"]'
    assert rows[f"{field}.score"] == scores[0]
    assert {f"{field}.{name}" for name in ("probability", "percentile", "bucket", "scoreDate")} <= set(rows)


def test_profiles_open_by_identity_opens_an_exact_match_directly(trained_db):
    app = _page("app_pages/profiles.py")
    app.text_input(key="profiles_direct_value").input("hbirkenshawa@businessweek.com").run()
    assert not app.exception
    assert "profile 1" in app.subheader[0].value
    linked = _page("app_pages/profiles.py", namespace="Email", value="hbirkenshawa@businessweek.com")
    assert not linked.exception
    assert "profile 1" in linked.subheader[0].value


def test_profiles_page_says_when_nothing_matches(trained_db):
    app = _page("app_pages/profiles.py")
    app.text_input(key="profiles_value").input("'; DROP TABLE events; --")
    app.button(key="FormSubmitter:profiles_browse-View").click().run()
    assert not app.exception
    assert "No profile has" in app.warning[0].value
