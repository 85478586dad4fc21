"""Influential factors: how much each feature moves a profile's score compared with a typical customer's value.

A factor's effect is the change in the model's log-odds when that one feature is set back to the population's
typical value. Reporting exactly that change makes every factor faithful: undoing it moves the score as claimed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

SCREENING_ROWS = 3_000
CANDIDATES = 12
TOP_PER_PROFILE = 3
CHUNK_ROWS = 100_000
HIGH_EFFECT, MEDIUM_EFFECT = 0.5, 0.2


def typical_values(matrix: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    """Median (numeric) or most common code (categorical); missing when most customers have no value."""
    typical = np.full(matrix.shape[1], np.nan)
    for column in range(matrix.shape[1]):
        values = matrix[:, column]
        present = values[~np.isnan(values)]
        if len(present) * 2 < len(values) or len(present) == 0:
            continue
        if categorical[column]:
            codes, counts = np.unique(present, return_counts=True)
            typical[column] = codes[np.argmax(counts)]
        else:
            typical[column] = float(np.median(present))
    return typical


def effects(logit: Callable[[np.ndarray], np.ndarray], matrix: np.ndarray, typical: np.ndarray,
            columns: list[int], baseline: np.ndarray | None = None) -> np.ndarray:
    """Log-odds change per row and per column in ``columns`` from setting that column to its typical value."""
    baseline = logit(matrix) if baseline is None else baseline
    result = np.zeros((len(matrix), len(columns)))
    for position, column in enumerate(columns):
        values = matrix[:, column]
        # A profile already at the typical value has no effect to measure; most do for counts like "checkouts
        # in the last 7 days", so skipping them saves most of the model evaluations.
        at_typical = (values == typical[column]) | (np.isnan(values) & np.isnan(typical[column]))
        changed = np.flatnonzero(~at_typical)
        for start in range(0, len(changed), CHUNK_ROWS):
            rows = changed[start:start + CHUNK_ROWS]
            altered = matrix[rows]
            altered[:, column] = typical[column]
            result[rows, position] = baseline[rows] - logit(altered)
    return result


def screening_rows(rows: int, seed: int) -> np.ndarray:
    """The positions of the profiles that screening looks at, whichever engine holds the matrix."""
    return np.random.default_rng(seed).choice(rows, min(SCREENING_ROWS, rows), replace=False)


def screen(logit, matrix: np.ndarray, typical: np.ndarray, seed: int) -> list[int]:
    """The columns worth explaining: largest mean absolute effect on a sample of profiles."""
    return screen_sample(logit, matrix[screening_rows(len(matrix), seed)], typical)


def screen_sample(logit, sample: np.ndarray, typical: np.ndarray) -> list[int]:
    """:func:`screen` on the sampled rows themselves, in the order :func:`screening_rows` drew them."""
    all_effects = effects(logit, sample, typical, list(range(sample.shape[1])))
    strength = np.abs(all_effects).mean(axis=0)
    ranked = [int(column) for column in np.argsort(-strength) if strength[column] > 0]
    return ranked[:CANDIDATES]


def importance_label(effect: np.ndarray) -> np.ndarray:
    size = np.abs(effect)
    return np.where(size >= HIGH_EFFECT, "high", np.where(size >= MEDIUM_EFFECT, "medium", "low"))


def top_factors(profile_ids: np.ndarray, matrix: np.ndarray, typical: np.ndarray, columns: list[int],
                effect_matrix: np.ndarray, names: list[str]) -> pd.DataFrame:
    """The strongest ``TOP_PER_PROFILE`` non-zero effects of each profile, in long form."""
    if not columns:
        return pd.DataFrame(columns=["profile_id", "rank", "feature", "value", "typical", "effect", "importance"])
    k = min(TOP_PER_PROFILE, len(columns))
    order = np.argsort(-np.abs(effect_matrix), axis=1)[:, :k]
    rows = np.repeat(np.arange(len(matrix)), k)
    picked = order.ravel()
    column_index = np.array(columns)[picked]
    effect = effect_matrix[rows, picked]
    frame = pd.DataFrame({
        "profile_id": profile_ids[rows],
        "rank": np.tile(np.arange(1, k + 1), len(matrix)),
        "feature": np.array(names)[column_index],
        "value": matrix[rows, column_index],
        "typical": typical[column_index],
        "effect": effect,
        "importance": importance_label(effect),
    })
    return frame[np.abs(frame["effect"]) > 1e-9].reset_index(drop=True)


def bucket_distributions(values: pd.Series, bucket: np.ndarray, categorical: bool,
                         categories: list[str] | None) -> dict:
    """Per bucket: quartiles for a numeric factor, or the share of each category for a categorical one."""
    result = {}
    for name in ("high", "medium", "low"):
        subset = values[bucket == name]
        if categorical:
            decoded = subset.map(lambda code: categories[int(code)] if pd.notna(code) else "(none)")
            shares = decoded.value_counts(normalize=True).head(8)
            result[name] = {"shares": {str(k): float(v) for k, v in shares.items()}, "profiles": int(len(subset))}
        else:
            present = subset.dropna()
            result[name] = {
                "profiles": int(len(subset)),
                "missing_share": float(1 - len(present) / len(subset)) if len(subset) else None,
                "median": float(present.median()) if len(present) else None,
                "p25": float(present.quantile(0.25)) if len(present) else None,
                "p75": float(present.quantile(0.75)) if len(present) else None,
                "mean": float(present.mean()) if len(present) else None,
            }
    return result
