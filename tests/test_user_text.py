"""Text people type (names, descriptions, rule values, searches, goal conditions) reaches SQL only as a bound
parameter: hostile or odd strings are stored and matched literally, and every table survives them."""

from __future__ import annotations

import pytest

from cai import audit, engine, instances, profiles, segments, store
from cai.instances import Condition, Definition, Goal

HOSTILE = ["'; DROP TABLE events; --", "%", "_", "\" OR 1=1 --", "Ünïcødé ✓ 名前", "a'b\"c\\d"]


def _table_sizes(db) -> dict[str, int]:
    with store.connect(db) as con:
        return {table: con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
                for table in ("events", "identities", "profiles", "scores")}


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_stored_and_matched_literally(trained_db, text):
    before = _table_sizes(trained_db)
    instances.create_instance(trained_db, Definition(
        name=f"Instance {text}", description=text, goals=(Goal("commerce.purchases", Condition("sku", "=", text)),)))
    stored = instances.get_instance(trained_db, f"Instance {text}").definition
    assert stored.description == text and stored.goals[0].condition.value == text

    rule = segments.Rule(instance=instances.TUTORIAL_INSTANCE, country=text, loyalty_tier=text)
    assert segments.measure(trained_db, rule)["size"] == 0
    segments.create_segment(trained_db, f"Segment {text}", segments.Rule(instance=instances.TUTORIAL_INSTANCE),
                            description=text)
    assert segments.get_segment(trained_db, f"Segment {text}")["description"] == text

    assert profiles.find(trained_db, "Email", text) is None
    assert profiles.search(trained_db, "Email", text).empty
    assert audit.entries(trained_db, object_name=text)["object_name"].tolist() == [f"Segment {text}",
                                                                                   f"Instance {text}"]
    assert _table_sizes(trained_db) == before


def test_a_goal_condition_with_hostile_text_trains_without_touching_sql(trained_db):
    name = "Purchases of a hostile SKU"
    instances.create_instance(trained_db, Definition(
        name=name, goals=(Goal("commerce.purchases", Condition("sku", "!=", HOSTILE[0])),), min_examples=50))
    result = engine.run_instance(trained_db, name)
    assert result.error is None and result.profiles_scored > 0
