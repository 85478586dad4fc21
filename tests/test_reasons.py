"""Reasons computed from the trees' arrays are exactly the re-scoring they stand for, and survive a retrain."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from cai import engine, factors, features, models, scores, store
from cai.instances import TUTORIAL_INSTANCE


@pytest.fixture
def model_and_matrix(trained_db):
    run = scores.latest_run(trained_db, TUTORIAL_INSTANCE)
    model, _ = models.load(trained_db, run["details"]["model"])
    with store.connect(trained_db) as con:
        frame = features.build(con, run["definition"], [dt.date.fromisoformat(run["details"]["as_of"])], False)
    return model, engine.encode(frame, model)


def test_effects_equal_rescoring_with_the_reason_undone(model_and_matrix):
    """Every reason of every scored profile, plus profiles with a missing value in every column and with a category
    code the model never saw (both follow the split's missing-value direction in scikit-learn)."""
    model, matrix = model_and_matrix
    tier = model.feature_names.index("profile_loyalty_tier")
    odd = matrix[:40].copy()
    odd[:20, :] = np.nan
    odd[20:, tier] = len(model.categories["profile_loyalty_tier"]) - 1
    matrix = np.vstack([matrix, odd])
    typical = factors.typical_values(matrix, model.categorical)
    groups = factors.reasons(model.feature_names)
    effects = factors.effects(factors.Trees(model.classifier), matrix, typical, groups)
    baseline = model.logit(matrix)
    for position, group in enumerate(groups):
        undone = matrix.copy()
        undone[:, list(group.members)] = typical[list(group.members)]
        np.testing.assert_allclose(effects[:, position], baseline - model.logit(undone), rtol=0, atol=1e-9)
    assert (np.abs(effects) > 0.01).any(axis=0).sum() >= 5
