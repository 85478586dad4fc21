"""How good a model is on held-out data: ranking, calibration, lift, buckets, and the figures behind cut-off trade-offs."""

from __future__ import annotations

import json

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

POOR_AUC = 0.65
GRADES = [(0.85, "Excellent"), (0.75, "Good"), (POOR_AUC, "Fair"), (0.0, "Poor")]
BUCKETS = ("high", "medium", "low")


def grade(auc: float | None) -> str:
    if auc is None or np.isnan(auc):
        return "Unknown"
    return next(name for floor, name in GRADES if auc >= floor)


def advice(auc: float | None) -> str | None:
    if auc is not None and auc < POOR_AUC:
        return (
            "Poor model quality: the scores rank customers only a little better than chance. Try a longer history, "
            "a wider eligible population, a longer outcome window, or custom events that relate to the goal."
        )
    return None


def scores_from_probabilities(probability: np.ndarray, base_rate: float) -> np.ndarray:
    """0–100 relative to a reference rate: 50 is as likely as the reference, 75 three times its odds."""
    eps = 1e-6
    p = np.clip(probability, eps, 1 - eps)
    base = min(max(base_rate, eps), 1 - eps)
    relative_logit = np.log(p / (1 - p)) - np.log(base / (1 - base))
    return np.round(100.0 / (1.0 + np.exp(-relative_logit)), 1)


# How sure the likely range of an expected count is about chance alone: 1.64 standard deviations, 90%.
CHANCE_Z = 1.64


def forward_range(details: dict | str | None) -> float | None:
    """How far the goal's rate moved from one window to the next in a run's past snapshots (a share), from the run's
    details (parsed or JSON text): what the likely ranges of its expected conversions allow for. None for a run
    made before it was measured."""
    if isinstance(details, str):
        details = json.loads(details)
    return (details or {}).get("training", {}).get("forward_range")


def year_ago_move(details: dict | str | None) -> dict | None:
    """How the goal's rate moved over the same weeks a year before a run (see ``engine.year_ago_move``), from the
    run's details; None when the data did not reach back a year plus a window, or for a run made before it was
    measured. Its ``carried`` is 1 when the move was within chance and was not carried into the probabilities."""
    if isinstance(details, str):
        details = json.loads(details)
    return (details or {}).get("training", {}).get("season")


def carried_move(season: dict | None) -> float | None:
    """The move of ``year_ago_move`` when it was carried into the probabilities; None when it was within chance or
    not measured."""
    return season["move"] if season and season["carried"] != 1 else None


def likely_ranges(expected, variance, moved: float | None) -> tuple[list, list]:
    """:func:`likely_range` of each expected count (with its variance): the lows and the highs, None where the run
    measured no ``forward_range``."""
    bounds = [likely_range(float(count), float(spread), moved) for count, spread in zip(expected, variance)]
    return [pair[0] if pair else None for pair in bounds], [pair[1] if pair else None for pair in bounds]


def likely_range(expected: float, variance: float, forward_range: float | None) -> tuple[float, float] | None:
    """Where a number of conversions the probabilities expect (their sum, ``expected``; ``variance`` the sum of
    p(1-p)) is likely to land: the goal's rate may move by ``forward_range`` (a share) from one window to the next, as
    it did in the run's past snapshots, and chance adds its spread. None without a measured ``forward_range``."""
    if forward_range is None:
        return None
    chance = CHANCE_Z * float(np.sqrt(max(variance, 0.0)))
    return max(0.0, expected * (1 - forward_range) - chance), expected * (1 + forward_range) + chance


def percentiles(values: np.ndarray) -> np.ndarray:
    """1–100: the share of the population scoring at or below each profile, rounded up."""
    if len(values) == 0:
        return np.array([], dtype=np.int32)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    # Ties share the highest rank of their group so that equal scores get equal percentiles.
    sorted_values = values[order]
    _, first_index, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    top_rank = np.repeat(first_index + counts, counts)
    ranks[order] = top_rank
    return np.clip(np.ceil(ranks / len(values) * 100), 1, 100).astype(np.int32)


def buckets(scores: np.ndarray, low: int, high: int) -> np.ndarray:
    return np.where(scores >= high, "high", np.where(scores >= low, "medium", "low"))


def evaluate(labels: np.ndarray, probability: np.ndarray, low: int, high: int) -> dict:
    """Every figure the dashboard's model evaluation section and the segment builder need."""
    labels = np.asarray(labels, dtype=bool)
    probability = np.asarray(probability, dtype=float)
    both_classes = 0 < labels.sum() < len(labels)
    auc = float(roc_auc_score(labels, probability)) if both_classes else float("nan")
    base = float(labels.mean()) if len(labels) else 0.0
    score = scores_from_probabilities(probability, float(probability.mean()) if len(probability) else 0.5)
    percentile = percentiles(score)

    order = np.argsort(-probability, kind="stable")
    deciles = []
    captured = 0
    total_positive = max(int(labels.sum()), 1)
    for number, chunk in enumerate(np.array_split(order, 10), start=1):
        positives = int(labels[chunk].sum())
        captured += positives
        rate = positives / len(chunk) if len(chunk) else 0.0
        deciles.append({
            "decile": number, "profiles": int(len(chunk)), "conversions": positives, "rate": rate,
            "lift": rate / base if base else 0.0, "cumulative_gain": captured / total_positive,
            "population_share": number / 10,
        })

    calibration = []
    for chunk in np.array_split(np.argsort(probability, kind="stable"), 10):
        if len(chunk):
            calibration.append({"predicted": float(probability[chunk].mean()),
                                "observed": float(labels[chunk].mean()), "profiles": int(len(chunk))})

    bucket_of = buckets(score, low, high)
    per_bucket = []
    for name in BUCKETS:
        mask = bucket_of == name
        per_bucket.append({
            "bucket": name, "profiles": int(mask.sum()),
            "expected_rate": float(probability[mask].mean()) if mask.any() else None,
            "actual_rate": float(labels[mask].mean()) if mask.any() else None,
        })

    def histogram(values: np.ndarray, size: int) -> dict:
        index = np.clip(values.astype(int), 0, size - 1)
        return {
            "profiles": np.bincount(index, minlength=size).tolist(),
            "conversions": np.bincount(index, weights=labels.astype(float), minlength=size).astype(int).tolist(),
        }

    return {
        "auc": auc,
        "average_precision": float(average_precision_score(labels, probability)) if both_classes else float("nan"),
        "brier": float(brier_score_loss(labels, probability)) if len(labels) else float("nan"),
        "lift_top_decile": deciles[0]["lift"] if deciles else 0.0,
        "grade": grade(auc),
        "advice": advice(auc),
        "profiles": int(len(labels)),
        "conversions": int(labels.sum()),
        "base_rate": base,
        "deciles": deciles,
        "calibration": calibration,
        "buckets": per_bucket,
        "by_score": histogram(np.floor(score), 101),
        "by_percentile": histogram(percentile, 101),
        "by_probability": histogram(np.floor(probability * 100), 101),
    }


def tradeoff(evaluation: dict, field: str, low: float, high: float) -> dict:
    """Expected precision and recall of targeting ``low <= field <= high``, from the held-out snapshot."""
    key = {"score": "by_score", "percentile": "by_percentile", "probability": "by_probability"}[field]
    scale = 100 if field == "probability" else 1
    profiles = np.array(evaluation[key]["profiles"])
    conversions = np.array(evaluation[key]["conversions"])
    index = np.arange(len(profiles))
    selected = (index >= np.floor(low * scale)) & (index <= np.floor(high * scale))
    chosen, hits = int(profiles[selected].sum()), int(conversions[selected].sum())
    total_hits = int(conversions.sum())
    return {
        "holdout_profiles": chosen,
        "precision": hits / chosen if chosen else None,
        "recall": hits / total_hits if total_hits else None,
    }
