"""Backtests: train an instance as a run on each cutoff would, then measure it on what customers really did next.

This is the temporal protocol of the Online Retail reference figures: at each cutoff the model learns only from
events before it (labels included), and is judged on every eligible customer's goal in the window that starts at
the cutoff. Because a run's probabilities are used for exactly that next window, the backtest also compares the
expected rate (mean probability over everyone scored) with the actual one. Nothing is written to the store."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cai import engine, evaluation, features, store
from cai.errors import CaiError
from cai.instances import get_instance

METRICS = ("auc", "average_precision", "lift_top_decile", "expected_rate", "calibration_error")


@dataclass
class CutoffResult:
    cutoff: str
    seed: int
    customers: int
    base_rate: float
    expected_rate: float
    calibration_error: float
    auc: float
    average_precision: float
    lift_top_decile: float
    training_rows: int
    # The rate's likely range as a run's dashboard states it for its expected conversions (None when the run's
    # past snapshots allow no measure of how the rate moves), and whether the actual rate fell in it.
    likely_low: float | None
    likely_high: float | None
    within_likely_range: bool | None
    # Last year's move over the same weeks, when it was carried into the probabilities (None when not).
    season_move: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def monthly_cutoffs(first: dt.date, last: dt.date) -> list[dt.date]:
    """The 1st of every month from ``first``'s month to ``last`` inclusive."""
    cutoffs, month = [], dt.date(first.year, first.month, 1)
    if month < first:
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    while month <= last:
        cutoffs.append(month)
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return cutoffs


def backtest(db_path: Path, name: str, cutoffs: list[dt.date], seeds: int = 1) -> list[CutoffResult]:
    """One result per cutoff and seed. The eligibility lookback is not required to fit in the data: as in the
    reference protocol, a customer active at any time since the data began is eligible."""
    definition = get_instance(db_path, name).definition
    window = dt.timedelta(days=definition.window_days)
    with store.connect(db_path) as con:
        first_event, last_event = con.execute("SELECT min(ts), max(ts) FROM events").fetchall()[0]
    if first_event is None:
        raise CaiError("There are no events yet. Load a dataset first.")
    results = []
    for cutoff in cutoffs:
        if cutoff + window > last_event.date() + dt.timedelta(days=1):
            raise CaiError(f"The cutoff {cutoff} is too late: its {definition.window_days}-day outcome window ends "
                           f"after the last event ({last_event.date()}).")
        with store.connect(db_path) as con:
            scored = features.build(con, definition, [cutoff], with_labels=True)
        labels = scored["label"].to_numpy(dtype=bool)
        for seed in range(engine.SEED, engine.SEED + seeds):
            model, _ = engine.train(db_path, definition, cutoff, first_event.date(), full_lookback=False, seed=seed)
            probability = model.probability(engine.encode(scored, model))
            figures = evaluation.evaluate(labels, probability, definition.low_threshold, definition.high_threshold)
            expected, actual = float(probability.mean()), float(labels.mean())
            likely = evaluation.likely_range(float(probability.sum()), float((probability * (1 - probability)).sum()),
                                             model.training["forward_range"])
            low, high = (likely[0] / len(labels), likely[1] / len(labels)) if likely else (None, None)
            results.append(CutoffResult(
                cutoff.isoformat(), seed, int(len(labels)), actual, expected,
                expected / actual - 1 if actual else float("nan"), figures["auc"], figures["average_precision"],
                figures["lift_top_decile"], model.training["training_rows"], low, high,
                low <= actual <= high if likely else None, evaluation.carried_move(model.training.get("season")),
            ))
    return results


def summary(results: list[CutoffResult]) -> dict:
    """Each figure's mean over cutoffs, its spread over seeds (standard deviation of the per-seed means), and the
    worst forward calibration error of any cutoff and seed."""
    seeds = sorted({r.seed for r in results})
    per_seed = {metric: [float(np.mean([getattr(r, metric) for r in results if r.seed == seed])) for seed in seeds]
                for metric in METRICS}
    worst = max(results, key=lambda r: abs(r.calibration_error))
    ranged = [r.within_likely_range for r in results if r.within_likely_range is not None]
    return {
        "cutoffs": len({r.cutoff for r in results}), "seeds": len(seeds),
        "customers": float(np.mean([r.customers for r in results])),
        "base_rate": float(np.mean([r.base_rate for r in results])),
        **{metric: float(np.mean(values)) for metric, values in per_seed.items()},
        "spread": {metric: float(np.std(values)) for metric, values in per_seed.items()},
        "worst_calibration_error": float(worst.calibration_error), "worst_calibration_cutoff": worst.cutoff,
        "within_likely_range": sum(ranged), "with_likely_range": len(ranged),
        "season_carried": sum(r.season_move is not None for r in results),
    }
