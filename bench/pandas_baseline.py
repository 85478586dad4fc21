"""The scoring features of ``cai.features.build`` computed the way a data scientist's notebook would: load the
events into pandas, then boolean masks and ``groupby``. It is the reference our SQL feature build is timed against,
and a test checks that both give the same numbers."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from cai.features import (COUNT_WINDOWS_DAYS, HISTORY_DAYS, PASSIVE_EVENT, PURCHASE_EVENT, _activities,
                          feature_catalog)
from cai.instances import Definition


def load_events(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("SELECT profile_id, ts, event_type, value, sku, channel FROM events").df()


def load_profiles(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("SELECT * FROM profiles").df()


def features(events: pd.DataFrame, profiles: pd.DataFrame, definition: Definition, as_of: dt.date) -> pd.DataFrame:
    """One row per profile eligible at ``as_of``, with the same columns and values as the SQL build."""
    t = pd.Timestamp(as_of)
    age = (t - events["ts"]).dt.total_seconds() / 86400.0
    in_lookback = events[(age > 0) & (age <= definition.eligible_days) & (events["event_type"] != PASSIVE_EVENT)]
    last_activity = age[in_lookback.index].groupby(in_lookback["profile_id"]).min()
    eligible = last_activity.index.to_numpy()
    recent = events[(age > 0) & (age <= HISTORY_DAYS)].assign(age=age)
    history = recent[recent["profile_id"].isin(eligible)]
    history = history.assign(day=np.floor(history["age"]), own=history["event_type"] != PASSIVE_EVENT,
                             purchase=history["event_type"] == PURCHASE_EVENT)

    columns = {}
    for key, event_type, _ in _activities(definition):
        of_type = history["event_type"] == event_type
        for days in COUNT_WINDOWS_DAYS:
            columns[f"{key}_{days}d"] = (of_type & (history["age"] < days)).groupby(history["profile_id"]).sum()
        columns[f"{key}_days_since"] = history["age"].where(of_type).groupby(history["profile_id"]).min()
    purchases = history[history["purchase"]]
    purchase_ages = purchases.groupby("profile_id")["age"]
    columns["purchase_value_90d"] = history["value"].where(history["purchase"] & (history["age"] < 90)).groupby(
        history["profile_id"]).sum()
    columns["purchase_value_365d"] = purchases.groupby("profile_id")["value"].sum()
    columns["average_order_value"] = purchases.groupby("profile_id")["value"].mean()
    columns["last_activity_days"] = last_activity
    columns["tenure_days"] = history.loc[history["own"], "age"].groupby(history.loc[history["own"], "profile_id"]).max()
    columns["purchase_days_90d"] = purchases[purchases["age"] < 90].drop_duplicates(["profile_id", "day"]).groupby(
        "profile_id").size()
    purchase_days = purchases.drop_duplicates(["profile_id", "day"]).groupby("profile_id").size()
    columns["purchase_days_365d"] = purchase_days
    columns["first_purchase_days"] = purchase_ages.max()
    columns["purchase_gap_days"] = (purchase_ages.max() - purchase_ages.min()) / (purchase_days - 1).replace(0, np.nan)
    own_history = history[history["own"]]
    columns["active_days_30d"] = own_history[own_history["age"] < 30].drop_duplicates(["profile_id", "day"]).groupby(
        "profile_id").size()
    columns["distinct_products_90d"] = history[history["age"] < 90].groupby("profile_id")["sku"].nunique()
    emails_sent = ((history["event_type"] == PASSIVE_EVENT) & (history["age"] < 90)).groupby(
        history["profile_id"]).sum()
    own_90 = own_history[own_history["age"] < 90]
    columns["mobile_share_90d"] = (own_90["channel"] == "mobile").groupby(own_90["profile_id"]).mean()
    own_events_30d = (own_history["age"] < 30).groupby(own_history["profile_id"]).sum()
    own_events_90d = (own_history["age"] < 90).groupby(own_history["profile_id"]).sum()

    frame = pd.DataFrame(columns).reindex(pd.Index(np.sort(eligible), name="profile_id"))
    counts = [name for name in frame.columns if name.endswith("d") and not name.endswith("days_since")
              and name not in ("mobile_share_90d",)]
    frame[counts] = frame[counts].fillna(0)

    def ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
        return numerator / denominator.replace(0, np.nan)

    frame["purchase_gap_trend"] = ratio(frame["purchases_days_since"], frame["purchase_gap_days"])
    frame["cart_to_purchase_90d"] = ratio(frame["purchases_90d"], frame["cart_adds_90d"])
    frame["view_to_cart_90d"] = ratio(frame["cart_adds_90d"], frame["product_views_90d"])
    frame["email_open_rate_90d"] = ratio(frame["email_opens_90d"], emails_sent.reindex(frame.index))
    frame["email_click_rate_90d"] = ratio(frame["email_clicks_90d"], emails_sent.reindex(frame.index))
    frame["activity_trend"] = ratio(own_events_30d.reindex(frame.index), own_events_90d.reindex(frame.index) / 3.0)
    attributes = profiles.set_index("profile_id").reindex(frame.index)
    for attribute in definition.profile_attributes:
        frame[f"profile_{attribute}"] = (t.year - attributes["birth_year"] if attribute == "birth_year"
                                         else attributes[attribute])
    return frame.reset_index()[["profile_id"] + [feature.name for feature in feature_catalog(definition)]]
