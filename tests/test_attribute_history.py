"""Dated profile attributes: each load is a version, features read the value as of each snapshot, and an attribute
loaded once that counts the goal is refused unless the set-up insists."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import duckdb
import pandas as pd
import pytest

from cai import attributes, demo, features, ingest, instances, profiles, store
from cai.errors import ValidationError
from cai.instances import Condition, Definition, Goal

pytestmark = pytest.mark.both_backends

TIER = Definition(name="tier", goals=(Goal("commerce.purchases"),), eligible_days=365,
                  profile_attributes=("loyalty_tier",))


def _eligible(db, definition: Definition, snapshot: str) -> set[int]:
    with store.connect(db) as con:
        frame = features.build(con, definition, [dt.date.fromisoformat(snapshot)], with_labels=False)
    return set(frame["profile_id"].tolist())


def _load_profiles(db, rows: list[dict], name: str) -> None:
    ingest.ingest_bytes(db, pd.DataFrame(rows).to_csv(index=False).encode(), name, kind="profiles")


def _tier_at(db, profile_id: int, snapshot: str):
    with store.connect(db) as con:
        frame = features.build(con, TIER, [dt.date.fromisoformat(snapshot)], with_labels=False)
    row = frame[frame["profile_id"] == profile_id]
    assert len(row) == 1, f"profile {profile_id} is not eligible on {snapshot}"
    value = row["profile_loyalty_tier"].iloc[0]
    return None if pd.isna(value) else value


def test_a_profile_loaded_twice_is_seen_at_each_snapshot_with_the_value_it_had(demo_db):
    """The tutorial's customer is gold from sign-up (the demo), platinum from June, silver from August; a file
    dated earlier fills the history without replacing the current value."""
    email = demo.TUTORIAL_EMAIL
    _load_profiles(demo_db, [{"email": email, "loyalty_tier": "platinum", "valid_from": "2026-06-01"}], "june.csv")
    _load_profiles(demo_db, [{"email": email, "loyalty_tier": "silver", "valid_from": "2026-08-01"}], "august.csv")
    _load_profiles(demo_db, [{"email": email, "loyalty_tier": "bronze", "valid_from": "2026-03-01"}], "march.csv")

    assert _tier_at(demo_db, 1, "2026-02-15") == "gold"
    assert _tier_at(demo_db, 1, "2026-04-01") == "bronze"
    assert _tier_at(demo_db, 1, "2026-07-01") == "platinum"
    assert _tier_at(demo_db, 1, "2026-09-01") == "silver"
    with store.connect(demo_db) as con:
        assert con.execute("SELECT loyalty_tier FROM profiles WHERE profile_id = 1").fetchall()[0][0] == "silver"


def test_a_value_dated_after_a_snapshot_is_missing_there_and_a_load_without_a_date_holds_from_the_load(empty_db):
    events = ["timestamp,event_type,email"] + [
        f"2026-{month:02d}-10T10:00:00Z,commerce.productViews,new@example.com" for month in range(1, 11)]
    ingest.ingest_bytes(empty_db, "\n".join(events).encode(), "events.csv")
    _load_profiles(empty_db, [{"email": "new@example.com", "loyalty_tier": "gold", "valid_from": "2026-07-01"}],
                   "dated.csv")
    loaded_at = dt.datetime(2026, 9, 15, 12)
    ingest.ingest_bytes(empty_db, b"email,loyalty_tier\nnew@example.com,platinum\n", "undated.csv",
                        kind="profiles", now=loaded_at)

    assert _tier_at(empty_db, 1, "2026-06-15") is None
    assert _tier_at(empty_db, 1, "2026-08-01") == "gold"
    assert _tier_at(empty_db, 1, "2026-09-15") == "gold"
    assert _tier_at(empty_db, 1, "2026-09-16") == "platinum"


def test_a_valid_from_in_the_future_or_not_a_date_refuses_the_file(empty_db):
    with pytest.raises(ValidationError) as refused:
        ingest.ingest_bytes(empty_db, b"email,loyalty_tier,valid_from\na@b.c,gold,2999-01-01\nd@e.f,gold,soon\n",
                            "bad.csv", kind="profiles")
    assert "Row 2: `valid_from` is in the future" in refused.value.problems
    assert "Row 3: `valid_from` is not a date" in refused.value.problems
    with store.connect(empty_db) as con:
        assert con.execute("SELECT count(*) FROM profile_attribute_versions").fetchall()[0][0] == 0


def purchases_balance_file(db) -> list[dict]:
    """Every customer's points balance today (100 per purchase ever made), stamped as if it held since January."""
    frame = store.query_df(db, """
        SELECT i.id_value AS email, 100 * count(e.ts) FILTER (WHERE e.event_type = 'commerce.purchases')
               AS loyalty_points, '2026-01-05' AS valid_from
        FROM identities i LEFT JOIN events e USING (profile_id) WHERE i.namespace = 'Email' GROUP BY ALL""")
    return frame.to_dict("records")


def test_a_points_balance_loaded_once_that_grows_with_purchases_is_flagged_and_refused_by_default(demo_db):
    with store.connect(demo_db) as con:  # a store whose profiles came without points
        con.execute("DELETE FROM profile_attribute_versions WHERE attribute = 'loyalty_points'")
    _load_profiles(demo_db, purchases_balance_file(demo_db), "balances.csv")
    leaky = Definition(name="with points", goals=(Goal("commerce.purchases"),),
                       profile_attributes=("loyalty_tier", "loyalty_points"))

    checks = {check.attribute: check for check in instances.attribute_checks(demo_db, leaky)}
    assert checks["loyalty_points"].tracks_goal and checks["loyalty_points"].goal_association > 0.9
    # The demo's tier, loaded once too, predicts purchases without counting them.
    assert not checks["loyalty_tier"].tracks_goal and checks["loyalty_tier"].goal_association < 0.3

    with pytest.raises(ValidationError) as refused:
        instances.create_instance(demo_db, leaky)
    assert "`loyalty_points` was loaded once" in str(refused.value)
    assert "with points" not in instances.instances_table(demo_db)["name"].tolist()

    insisted = instances.create_instance(demo_db, replace(leaky, allow_leaky_attributes=("loyalty_points",)))
    assert insisted.definition.allow_leaky_attributes == ("loyalty_points",)


def test_the_demo_attributes_and_the_tutorial_instance_pass_the_check(demo_db):
    instance = instances.ensure_tutorial_instance(demo_db)
    assert instance.definition.profile_attributes == ("loyalty_tier",)
    every = Definition(name="all", goals=(Goal("commerce.purchases"),),
                       profile_attributes=tuple(attributes.VERSIONED))
    assert not [check.attribute for check in instances.attribute_checks(demo_db, every) if check.tracks_goal]


def test_a_merge_keeps_the_surviving_profile_history_and_takes_the_attributes_it_lacks(empty_db):
    _load_profiles(empty_db, [{"email": "a@x.io", "loyalty_tier": "gold", "valid_from": "2026-01-01"},
                              {"ecid": "123456", "loyalty_tier": "bronze", "country": "FR",
                               "valid_from": "2026-02-01"}], "two.csv")
    _load_profiles(empty_db, [{"email": "a@x.io", "ecid": "123456"}], "link.csv")
    rows = store.query_df(empty_db, "SELECT profile_id, attribute, value FROM profile_attribute_versions "
                                    "ORDER BY attribute, value")
    assert rows.values.tolist() == [[1, "country", "FR"], [1, "loyalty_tier", "gold"]]


def test_an_older_store_gets_each_profile_attribute_as_one_version_dated_at_its_load(tmp_path):
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)")
    versions_migration = next(index for index, ddl in enumerate(store.MIGRATIONS)
                              if "CREATE TABLE profile_attribute_versions" in ddl)
    for version, migration in enumerate(store.MIGRATIONS[:versions_migration], start=1):
        if not isinstance(migration, store.PostgresOnly):
            con.execute(migration)
        con.execute("INSERT INTO schema_version VALUES (?, current_timestamp)", [version])
    con.execute("INSERT INTO profiles (profile_id, loyalty_tier, loyalty_points, city, created_at) "
                "VALUES (1, 'gold', 120, NULL, TIMESTAMP '2025-03-04 05:06:07')")
    con.close()
    rows = store.query_df(db, "SELECT profile_id, attribute, valid_from, value FROM profile_attribute_versions "
                              "ORDER BY attribute")
    assert rows.values.tolist() == [[1, "loyalty_points", pd.Timestamp("2025-03-04 05:06:07"), "120"],
                                    [1, "loyalty_tier", pd.Timestamp("2025-03-04 05:06:07"), "gold"]]



def test_an_eligibility_condition_on_an_attribute_reads_the_value_each_snapshot_saw(demo_db):
    """The tutorial's customer is gold from sign-up and platinum from June: a past snapshot's "gold members" are
    who was gold then, not who is gold today."""
    _load_profiles(demo_db, [{"email": demo.TUTORIAL_EMAIL, "loyalty_tier": "platinum", "valid_from": "2026-06-01"}],
                   "june.csv")
    gold = replace(TIER, population_attribute=Condition("loyalty_tier", "=", "gold"))
    platinum = replace(TIER, population_attribute=Condition("loyalty_tier", "=", "platinum"))
    everyone = _eligible(demo_db, TIER, "2026-04-01")
    assert 1 in everyone and 1 in _eligible(demo_db, TIER, "2026-07-01")

    assert 1 in _eligible(demo_db, gold, "2026-04-01") and 1 not in _eligible(demo_db, platinum, "2026-04-01")
    assert 1 in _eligible(demo_db, platinum, "2026-07-01") and 1 not in _eligible(demo_db, gold, "2026-07-01")
    # Every other customer's tier never changed: the gold population is everyone active who is gold today.
    with store.connect(demo_db) as con:
        gold_today = {row[0] for row in con.execute("SELECT profile_id FROM profiles WHERE loyalty_tier = 'gold'"
                                                     ).fetchall()}
    assert _eligible(demo_db, gold, "2026-04-01") == (everyone & gold_today) | {1}


def test_an_eligibility_condition_on_an_attribute_loaded_without_dates_holds_before_its_load(empty_db):
    events = ["timestamp,event_type,email"] + [
        f"2026-{month:02d}-10T10:00:00Z,commerce.productViews,{who}@example.com"
        for month in range(1, 11) for who in ("ana", "bo")]
    ingest.ingest_bytes(empty_db, "\n".join(events).encode(), "events.csv")
    ingest.ingest_bytes(empty_db, b"email,loyalty_tier\nana@example.com,gold\nbo@example.com,silver\n",
                        "undated.csv", kind="profiles", now=dt.datetime(2026, 9, 15, 12))
    gold = replace(TIER, population_attribute=Condition("loyalty_tier", "=", "gold"))
    ana = profiles.find(empty_db, "Email", "ana@example.com")

    assert _eligible(empty_db, gold, "2026-05-01") == {ana}
    assert _eligible(empty_db, gold, "2026-10-01") == {ana}
