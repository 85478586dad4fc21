"""The demo store reads as real customers: names agree with gender, and the tutorial's customer is a consistent,
loyal shopper who lands in the High bucket, as in lab 5.3."""

from __future__ import annotations

from cai import demo, instances, profiles, store


def test_first_names_agree_with_the_gender_attribute(demo_db):
    names = store.query_df(demo_db, "SELECT first_name, gender FROM profiles WHERE profile_id > 1")
    by_gender = names.groupby("gender")["first_name"].agg(set).to_dict()
    assert by_gender["female"] <= set(demo.FEMALE_FIRST_NAMES)
    assert by_gender["male"] <= set(demo.MALE_FIRST_NAMES)
    assert by_gender["not_specified"] <= set(demo.NEUTRAL_FIRST_NAMES)


def test_the_tutorial_customer_is_consistent_and_scores_high(trained_db):
    profile_id = profiles.find(trained_db, "Email", demo.TUTORIAL_EMAIL)
    person = profiles.attributes(trained_db, profile_id)
    assert demo.TUTORIAL_EMAIL.startswith(person["first_name"][0].lower() + person["last_name"].lower())
    assert person["gender"] == "female" and person["first_name"] == demo.TUTORIAL_PERSON["first_name"]
    namespaces = set(profiles.identities(trained_db, profile_id)["namespace"])
    assert "LoyaltyID" in namespaces and person["loyalty_tier"] == "gold" and person["loyalty_points"] > 0
    first_event = store.query_df(trained_db, "SELECT min(ts) AS first FROM events WHERE profile_id = ?",
                                 [profile_id])["first"][0]
    assert person["signup_date"] <= first_event
    output = {row["instance"]: row for row in profiles.customer_ai(trained_db, profile_id)}
    assert output[instances.TUTORIAL_INSTANCE]["bucket"] == "high"
