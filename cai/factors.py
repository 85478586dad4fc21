"""Influential factors: how much each business-level reason moves a profile's score compared with a typical customer.

A reason groups features that describe one thing (recent activity, purchase frequency, spend, browsing, the cart,
email, each profile attribute). Its effect is the change in the model's log-odds when all of its features are set
back together to the population's typical values; reporting exactly that change keeps every reason faithful.
Undoing a group rather than one feature matters: setting only "days since the last cart addition" to the typical
35 days while "cart additions in the last 7 days" stays at 2 asks the model about a customer that cannot exist, and
its answer there contradicted what the buckets show. Groups also keep the top reason stable across retrains, where
correlated single features trade places.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

SCREENING_ROWS = 3_000
TOP_PER_PROFILE = 3
CHUNK_ROWS = 100_000
HIGH_EFFECT, MEDIUM_EFFECT = 0.5, 0.2


# Feature name prefixes of each reason, and the feature that names the reason in sentences and on the dashboard.
REASON_GROUPS = [
    ("recent activity", "last_activity_days",
     ("last_activity_days", "active_days_30d", "activity_trend", "tenure_days", "page_views_", "searches_",
      "mobile_share_")),
    ("purchase frequency", "purchase_days_365d",
     ("purchases_", "purchase_days_", "first_purchase_days", "purchase_gap_")),
    ("spend", "purchase_value_365d", ("purchase_value_", "average_order_value")),
    ("browsing", "product_views_days_since", ("product_views_", "distinct_products_", "view_to_cart_")),
    ("cart", "cart_adds_days_since", ("cart_adds_", "checkouts_", "cart_to_purchase_")),
    ("email", "email_opens_days_since", ("email_",)),
]


@dataclass(frozen=True)
class Reason:
    name: str
    headline: int
    members: tuple[int, ...]


def reasons(names: list[str]) -> list[Reason]:
    """The reasons for a model's features (column indices); each feature belongs to exactly one reason."""
    groups, claimed = [], set()
    for name, headline, prefixes in REASON_GROUPS:
        members = tuple(i for i, feature in enumerate(names) if feature.startswith(prefixes) and i not in claimed)
        if members and headline in names:
            groups.append(Reason(name, names.index(headline), members))
            claimed.update(members)
    # Profile attributes and custom events each stand alone: custom events by their own activity prefix.
    for i, feature in enumerate(names):
        if i in claimed:
            continue
        prefix = feature.rsplit("_", 1)[0] + "_" if feature.startswith("custom_") else feature
        members = tuple(j for j, other in enumerate(names) if j not in claimed and other.startswith(prefix))
        headline = next((j for j in members if names[j].endswith("_days_since")), i)
        groups.append(Reason(feature if not feature.startswith("custom_") else prefix, headline, members))
        claimed.update(members)
    return groups


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
            groups: list[Reason], baseline: np.ndarray | None = None) -> np.ndarray:
    """Log-odds change per row and per reason from setting all of the reason's features to their typical values."""
    baseline = logit(matrix) if baseline is None else baseline
    result = np.zeros((len(matrix), len(groups)))
    for position, group in enumerate(groups):
        members = list(group.members)
        values, reference = matrix[:, members], typical[members]
        # A profile already at the typical values has no effect to measure; skipping them saves model evaluations.
        at_typical = ((values == reference) | (np.isnan(values) & np.isnan(reference))).all(axis=1)
        changed = np.flatnonzero(~at_typical)
        for start in range(0, len(changed), CHUNK_ROWS):
            rows = changed[start:start + CHUNK_ROWS]
            altered = matrix[rows]
            altered[:, members] = reference
            result[rows, position] = baseline[rows] - logit(altered)
    return result


def screening_rows(rows: int, seed: int) -> np.ndarray:
    """The positions of the profiles that screening looks at, whichever engine holds the matrix."""
    return np.random.default_rng(seed).choice(rows, min(SCREENING_ROWS, rows), replace=False)


def screen(logit, matrix: np.ndarray, typical: np.ndarray, groups: list[Reason], seed: int) -> list[Reason]:
    """The reasons worth explaining, strongest first: mean absolute effect on a sample of profiles."""
    return screen_sample(logit, matrix[screening_rows(len(matrix), seed)], typical, groups)


def screen_sample(logit, sample: np.ndarray, typical: np.ndarray, groups: list[Reason]) -> list[Reason]:
    """:func:`screen` on the sampled rows themselves, in the order :func:`screening_rows` drew them."""
    strength = np.abs(effects(logit, sample, typical, groups)).mean(axis=0)
    return [groups[i] for i in np.argsort(-strength) if strength[i] > 0]


def importance_label(effect: np.ndarray) -> np.ndarray:
    size = np.abs(effect)
    return np.where(size >= HIGH_EFFECT, "high", np.where(size >= MEDIUM_EFFECT, "medium", "low"))


def top_factors(profile_ids: np.ndarray, matrix: np.ndarray, typical: np.ndarray, groups: list[Reason],
                effect_matrix: np.ndarray, names: list[str]) -> pd.DataFrame:
    """The strongest ``TOP_PER_PROFILE`` non-zero reasons of each profile, in long form, each named by its headline
    feature with that feature's value and typical value."""
    if not groups:
        return pd.DataFrame(columns=["profile_id", "rank", "feature", "value", "typical", "effect", "importance"])
    k = min(TOP_PER_PROFILE, len(groups))
    order = np.argsort(-np.abs(effect_matrix), axis=1)[:, :k]
    rows = np.repeat(np.arange(len(matrix)), k)
    picked = order.ravel()
    column_index = np.array([group.headline for group in groups])[picked]
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
