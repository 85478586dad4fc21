"""Reasons that survive a retrain: the share of scored profiles whose top reason is the same under two seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench import reasons
from cai import engine, factors, instances


def _top(profile_ids: list[int], features: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"profile_id": profile_ids, "rank": 1, "feature": features})


def test_agreement_counts_same_top_reasons_and_a_missing_reason_disagrees():
    first = pd.concat([_top([1, 2, 3], ["last_activity_days", "email_opens_days_since", "product_views_90d"]),
                       pd.DataFrame({"profile_id": [1], "rank": [2], "feature": ["product_views_90d"]})])
    second = _top([1, 2], ["last_activity_days", "product_views_90d"])
    assert factors.top_reason_agreement(np.array([1, 2, 3, 4]), first, second) == 0.25


def test_top_reasons_mostly_survive_a_retrain_with_another_seed(trained_db):
    """Measured over four seeds (six pairs) the demo's agreement was 0.74 mean, 0.72 worst at this size (1,685
    scored) and 0.82 mean, 0.81 worst at the default 20,000 profiles; the floor here leaves room for the pair's
    noise without letting the grouping regress to the 0.65 of browsing, cart and recency apart."""
    result = reasons.top_reason_agreement(trained_db, instances.TUTORIAL_INSTANCE, [engine.SEED, engine.SEED + 1])
    assert result["profiles_scored"] > 1000
    assert result["min"] >= 0.70
