"""Forward calibration on shops with a year of history before their cutoffs: generated purchase logs (customers buy
as Poisson processes, paced by a yearly season, a trend or a one-off promotion), backtested at the 1st of every
month from March 2010 to October 2011, once carrying last year's move over the same weeks (what a run does) and
once without it (the held-out window's level alone). Neither real data set reaches back a year before a cutoff, so
this is where that rule is measured.

    python -m bench.seasons [--workdir DIR] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.results import DEFAULT_PATH, save_section
from cai import backtest, engine, ingest, instances
from cai.instances import Definition, Goal

START = dt.date(2009, 1, 1)
FIRST_CUTOFF, LAST_CUTOFF = dt.date(2010, 3, 1), dt.date(2011, 10, 1)
PEAK_DAY_OF_YEAR = 325
WINDOWS = ((30, 180), (14, 90))  # outcome window and eligibility lookback, in days


@dataclass(frozen=True)
class Shop:
    name: str
    seed: int
    season: float = 0.0  # the late-November peak's height over the usual pace (a summer swell a third of it)
    trend: float = 0.0  # yearly growth of every customer's pace
    promotion: bool = False  # five weeks at 1.6 times the pace, in the second year only


SHOPS = (
    Shop("flat", 2), Shop("seasonal", 1, season=0.8), Shop("seasonal, other customers", 4, season=0.8),
    Shop("mild season", 5, season=0.3), Shop("season and growth", 6, season=0.8, trend=0.3),
    Shop("season and decline", 7, season=0.6, trend=-0.25), Shop("season and a one-off promotion", 3, season=0.8,
                                                                   promotion=True),
)


def shop_csv(shop: Shop, customers: int = 6000, days: int = 3 * 365 - 30) -> bytes:
    """The shop's purchases as a CSV the app loads (timestamp, event_type, email), from ``START`` for ``days``."""
    rng = np.random.default_rng(shop.seed)
    day = np.arange(days)
    day_of_year = (day + START.timetuple().tm_yday) % 365
    pace = (1 + shop.season * np.exp(-(((day_of_year - PEAK_DAY_OF_YEAR) / 22.0) ** 2))
            + shop.season / 3 * np.sin(2 * np.pi * (day_of_year - 120) / 365)) * (1 + shop.trend) ** (day / 365)
    if shop.promotion:
        pace = pace * np.where((day > 600) & (day < 640), 1.6, 1.0)
    joined = rng.integers(-200, days - 30, customers)
    stayed = rng.exponential(600, customers).astype(int) + 30
    rows = ["timestamp,event_type,email"]
    for customer, intensity in enumerate(rng.gamma(0.7, 1 / 45, customers)):
        first, last = max(joined[customer], 0), min(joined[customer] + stayed[customer], days)
        if last <= first:
            continue
        for offset in np.nonzero(rng.poisson(intensity * pace[first:last]))[0]:
            rows.append(f"{START + dt.timedelta(days=int(first + offset))}T12:00:00,commerce.purchases,"
                        f"c{customer}@example.com")
    return "\n".join(rows).encode()


def _errors(db: Path, name: str, carry: bool) -> list[backtest.CutoffResult]:
    season_z = engine.SEASON_Z
    engine.SEASON_Z = season_z if carry else float("inf")
    try:
        return backtest.backtest(db, name, backtest.monthly_cutoffs(FIRST_CUTOFF, LAST_CUTOFF))
    finally:
        engine.SEASON_Z = season_z


def measure(workdir: Path, log=print) -> list[dict]:
    rows = []
    for shop in SHOPS:
        db = workdir / f"shop-{shop.seed}.duckdb"
        ingest.ingest_bytes(db, shop_csv(shop), "shop.csv")
        for window, lookback in WINDOWS:
            name = f"Buys in {window} days"
            instances.create_instance(db, Definition(name=name, goals=(Goal("commerce.purchases"),),
                                                     window_days=window, eligible_days=lookback))
            row = {"shop": shop.name, "window_days": window}
            for label, carry in (("without", False), ("with", True)):
                results = _errors(db, name, carry)
                errors = np.abs([result.calibration_error for result in results])
                row[label] = {"worst_error": float(errors.max()), "mean_abs_error": float(errors.mean()),
                              "carried": sum(result.season_move is not None for result in results)}
            rows.append(row)
            log(f"{shop.name:<32}{window:>4} d  worst {row['without']['worst_error']:6.1%} -> "
                f"{row['with']['worst_error']:6.1%}   mean |error| {row['without']['mean_abs_error']:5.1%} -> "
                f"{row['with']['mean_abs_error']:5.1%}   carried at {row['with']['carried']} of 20 cutoffs")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="where to build the shops (default: a temporary folder)")
    parser.add_argument("--out", default=str(DEFAULT_PATH))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        rows = measure(Path(args.workdir or temporary))
    save_section("seasons", {"cutoffs": [FIRST_CUTOFF.isoformat(), LAST_CUTOFF.isoformat()], "shops": rows},
                 Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
