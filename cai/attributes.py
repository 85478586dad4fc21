"""Dated profile attribute values: every profile load is a version, and a check that an attribute loaded once does
not count the goal it is meant to predict."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from cai import store

# The attributes a model may learn from; each load of one is kept as a dated version.
VERSIONED = ("loyalty_tier", "loyalty_points", "birth_year", "gender", "country", "city")
NUMERIC = ("loyalty_points", "birth_year")
# A profile file column giving the date its values hold from; without it, a load's values hold from the load.
VALID_FROM_COLUMN = "valid_from"
# An attribute loaded once whose value explains this much of how often customers reach the goal after its date
# (rank correlation for numbers, correlation ratio for categories) counts the goal rather than predicts it.
GOAL_TRACKING_THRESHOLD = 0.6
MIN_PROFILES_CHECKED = 50


def record_versions(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, batch_id: int | None) -> int:
    """Adds one version per (profile, attribute) of ``frame`` (columns ``profile_id``, ``valid_from`` and any of
    ``VERSIONED``) that holds a value; a version of the same profile, attribute and date is replaced. Returns how
    many versions were written."""
    present = [column for column in VERSIONED if column in frame]
    if frame.empty or not present:
        return 0
    long = frame.melt(id_vars=["profile_id", "valid_from"], value_vars=present, var_name="attribute",
                      value_name="value").dropna(subset=["value", "profile_id"])
    if long.empty:
        return 0
    long["value"] = long["value"].map(_as_text)
    long["batch_id"] = batch_id
    long = long.drop_duplicates(["profile_id", "attribute", "valid_from"], keep="last")
    con.register("incoming_versions", long[["profile_id", "attribute", "valid_from", "value", "batch_id"]])
    con.execute(
        "DELETE FROM profile_attribute_versions WHERE EXISTS (SELECT 1 FROM incoming_versions i "
        "WHERE i.profile_id = profile_attribute_versions.profile_id "
        "AND i.attribute = profile_attribute_versions.attribute "
        "AND i.valid_from = profile_attribute_versions.valid_from)")
    con.execute("INSERT INTO profile_attribute_versions SELECT profile_id, attribute, valid_from, value, batch_id "
                "FROM incoming_versions")
    con.unregister("incoming_versions")
    return len(long)


def _as_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def latest_dates(con: duckdb.DuckDBPyConnection, profile_ids: list[int]) -> dict[int, dt.datetime]:
    """The date of each profile's newest version (of any attribute)."""
    if not profile_ids:
        return {}
    con.register("asked_profiles", pd.DataFrame({"profile_id": sorted(set(profile_ids))}))
    rows = con.execute("SELECT v.profile_id, max(v.valid_from) FROM profile_attribute_versions v "
                       "JOIN asked_profiles a USING (profile_id) GROUP BY v.profile_id").fetchall()
    con.unregister("asked_profiles")
    return dict(rows)


def move_on_merge(con: duckdb.DuckDBPyConnection) -> None:
    """Inside a merge (``profile_merge_plan`` registered): a merged-away profile's history moves to the profile it
    joins for the attributes that profile has no history of, as its current values do; the rest is dropped."""
    con.execute(
        """
        UPDATE profile_attribute_versions SET profile_id = m.kept_id FROM profile_merge_plan m
        WHERE profile_attribute_versions.profile_id = m.merged_id AND NOT EXISTS (
            SELECT 1 FROM profile_attribute_versions k
            WHERE k.profile_id = m.kept_id AND k.attribute = profile_attribute_versions.attribute)
        """)
    con.execute("DELETE FROM profile_attribute_versions WHERE profile_id IN (SELECT merged_id FROM profile_merge_plan)")


@dataclass(frozen=True)
class AttributeCheck:
    """How an attribute chosen for a model stands: its history, and whether a value loaded once tracks the goal."""

    attribute: str
    profiles: int
    single_version_share: float
    goal_association: float | None

    @property
    def has_history(self) -> bool:
        return self.single_version_share <= 0.5

    @property
    def tracks_goal(self) -> bool:
        return not self.has_history and self.goal_association is not None and \
            self.goal_association >= GOAL_TRACKING_THRESHOLD

    def warning(self) -> str:
        return (f"`{self.attribute}` was loaded once for {self.single_version_share:.0%} of its {self.profiles:,} "
                f"profiles, and that value follows how often the customer reached the goal after the date it is "
                f"dated (association {self.goal_association:.2f}, the limit is {GOAL_TRACKING_THRESHOLD}): it "
                "probably counts the outcome it should predict, as a points balance that grows with purchases "
                "does. Load its past values (a profile file per date, or a `valid_from` column), or leave it out.")


def check(location, attributes: tuple[str, ...], goal_event_types: list[str]) -> list[AttributeCheck]:
    """For each attribute: how many profiles carry it, the share of them with a single version, and for those the
    association between the value and the number of goal events at or after the version's date."""
    results = []
    with store.connect(location) as con:
        for attribute in attributes:
            frame = con.execute(
                """
                WITH counted AS (
                    SELECT profile_id, count(*) AS versions, min(valid_from) AS valid_from, any_value(value) AS value
                    FROM profile_attribute_versions WHERE attribute = $attribute GROUP BY profile_id
                )
                SELECT c.versions, c.value,
                       (SELECT count(*) FROM events e WHERE e.profile_id = c.profile_id AND e.ts >= c.valid_from
                            AND list_contains($goals, e.event_type)) AS goals
                FROM counted c
                """,
                {"attribute": attribute, "goals": list(goal_event_types)},
            ).df()
            single = frame[frame["versions"] == 1]
            association = None
            if len(single) >= MIN_PROFILES_CHECKED and single["goals"].nunique() > 1:
                association = _association(single["value"], single["goals"].astype(float),
                                           numeric=attribute in NUMERIC)
            results.append(AttributeCheck(attribute, len(frame), len(single) / len(frame) if len(frame) else 0.0,
                                          association))
    return results


def _association(values: pd.Series, goals: pd.Series, numeric: bool) -> float | None:
    """|Spearman's rank correlation| for numbers; the correlation ratio (eta) for categories."""
    if numeric:
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.nunique() < 2:
            return None
        return float(abs(numbers.rank().corr(goals.rank())))
    total = float(((goals - goals.mean()) ** 2).sum())
    if total == 0:
        return None
    grouped = goals.groupby(values.to_numpy())
    between = float((grouped.size() * (grouped.mean() - goals.mean()) ** 2).sum())
    return float(np.sqrt(between / total))
