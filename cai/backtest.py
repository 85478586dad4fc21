"""Backtests: train an instance as if each cutoff were today, then measure it on what customers really did next.

This is the temporal protocol of the Online Retail reference figures: at each cutoff the model learns only from
events before it, and is judged on every eligible customer's goal in the window that starts at the cutoff. Nothing
is written to the store."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cai import engine, evaluation, store
from cai.errors import CaiError
from cai.instances import get_instance

METRICS = ("auc", "average_precision", "lift_top_decile")


@dataclass
class CutoffResult:
    cutoff: str
    customers: int
    base_rate: float
    auc: float
    average_precision: float
    lift_top_decile: float
    training_rows: int

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


def backtest(db_path: Path, name: str, cutoffs: list[dt.date]) -> list[CutoffResult]:
    """One result per cutoff. The eligibility lookback is not required to fit in the data: as in the reference
    protocol, a customer active at any time since the data began is eligible."""
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
        model, holdout = engine.train(db_path, definition, cutoff + window, first_event.date(), full_lookback=False)
        labels = holdout["label"].to_numpy(dtype=bool)
        # Every ranking figure is unchanged by the monotone calibration, so all held-out customers count here,
        # not only the half that the run's own evaluation keeps apart from calibration.
        probability = model.probability(engine.encode(holdout, model))
        figures = evaluation.evaluate(labels, probability, definition.low_threshold, definition.high_threshold)
        results.append(CutoffResult(
            cutoff.isoformat(), int(len(labels)), float(labels.mean()), figures["auc"],
            figures["average_precision"], figures["lift_top_decile"], model.training["training_rows"],
        ))
    return results


def mean(results: list[CutoffResult]) -> dict:
    return {"cutoffs": len(results), "customers": float(np.mean([r.customers for r in results])),
            "base_rate": float(np.mean([r.base_rate for r in results])),
            **{metric: float(np.mean([getattr(r, metric) for r in results])) for metric in METRICS}}
