"""Top reason agreement across retrains that really differ: the tutorial instance trained several times, each time on
another random 80% of the customers (drawn by the seed, as a weekly retrain sees other customers and other
outcomes), everyone eligible scored and explained by each model, and for each pair of models the share of scored
profiles whose top reason is the same, with the Spearman correlation of their scores.

    python -m bench.reasons [--profiles 20000] [--seeds 4] [--share 0.8] [--db PATH] [--out bench/reasons.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from cai import demo, engine, factors, features, instances, store

TUTORIAL = instances.TUTORIAL_INSTANCE
TRAINING_SHARE = 0.8


class CustomerSubsetExecutor(engine.DuckDBExecutor):
    """The store's executor, except that the labelled frames (training and held-out snapshots) keep only a share of
    the customers, drawn by hashing each profile id with the seed: the same customers in every snapshot of a model,
    other customers for another seed. Scoring is untouched: every eligible profile is scored by every model."""

    def __init__(self, db_path: Path, seed: int, share: float):
        super().__init__(db_path)
        self.seed = seed
        self.share = share

    def labels(self, definition, snapshots, sample_fraction=1.0) -> pd.DataFrame:
        return self._subset(super().labels(definition, snapshots, sample_fraction))

    def features(self, definition, snapshots, with_labels, sample_fraction=1.0, rows=None) -> pd.DataFrame:
        frame = super().features(definition, snapshots, with_labels, sample_fraction, rows)
        return self._subset(frame) if with_labels else frame

    def _subset(self, frame: pd.DataFrame) -> pd.DataFrame:
        # The seed goes into the hashed value: pandas keys only the hashes of strings.
        draw = pd.util.hash_array(frame["profile_id"].to_numpy(dtype=np.int64) + (self.seed << 32))
        return frame[(draw % 10_000) < self.share * 10_000].reset_index(drop=True)


def top_reasons(scored: engine.Scored, feature_names: list[str]) -> pd.Series:
    """Each scored profile's strongest reason (by name; a profile without a reason has none)."""
    reason_of = {feature_names[member]: reason.name
                 for reason in factors.reasons(feature_names) for member in reason.members}
    first = scored.per_profile[scored.per_profile["rank"] == 1].set_index("profile_id")["feature"]
    return first.map(reason_of).reindex(scored.profile_ids)


def agreement(first: pd.Series, second: pd.Series) -> float:
    """The share of profiles with the same top reason in two explanations; no reason in either is a disagreement."""
    return float(((first.to_numpy() == second.to_numpy()) & first.notna().to_numpy()).mean()) if len(first) else 1.0


def retrain_agreement(db_path: Path, name: str, seeds: list[int], share: float = TRAINING_SHARE) -> dict:
    """Per pair of seeds the top reason agreement and the scores' Spearman correlation, then their mean and worst.
    The models are trained and the profiles scored as a run on the store's default as-of would; nothing is written."""
    definition = instances.get_instance(db_path, name).definition
    with store.connect(db_path) as con:
        first_event = con.execute("SELECT min(ts) FROM events").fetchall()[0][0].date()
        as_of = features.default_as_of(con)
    tops, raws, profiles = {}, {}, None
    for seed in seeds:
        executor = CustomerSubsetExecutor(db_path, seed, share)
        model, _ = engine.train(db_path, definition, as_of, first_event, seed=seed, executor=executor)
        scored = executor.score(definition, as_of, model, {})
        profiles = scored.profile_ids if profiles is None else profiles
        assert np.array_equal(profiles, scored.profile_ids), "every model scores the same eligible profiles"
        tops[seed] = top_reasons(scored, model.feature_names)
        raws[seed] = pd.Series(scored.raw)
    pairs = {f"{a}-{b}": {"top_reason_agreement": agreement(tops[a], tops[b]),
                          "score_spearman": float(raws[a].corr(raws[b], method="spearman"))}
             for a, b in itertools.combinations(seeds, 2)}
    summary = {}
    for figure in ("top_reason_agreement", "score_spearman"):
        values = [pair[figure] for pair in pairs.values()]
        summary[figure] = {"mean": float(np.mean(values)), "worst": float(min(values))}
    shares = pd.concat(tops.values()).value_counts(normalize=True, dropna=False)
    return {"as_of": as_of.isoformat(), "profiles_scored": int(len(profiles)), "seeds": seeds,
            "training_share": share, **summary, "pairs": pairs,
            "without_reason": int(sum(int(top.isna().sum()) for top in tops.values())),
            "top_reason_shares": {str(reason): round(float(value), 4) for reason, value in shares.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=demo.DEFAULT_PROFILES)
    parser.add_argument("--seeds", type=int, default=4, help="how many retrains (every pair of them is compared)")
    parser.add_argument("--share", type=float, default=TRAINING_SHARE,
                        help="the share of customers each retrain learns from")
    parser.add_argument("--db", type=Path, help="a store with the tutorial instance (default: a new demo store)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    seeds = list(range(engine.SEED, engine.SEED + args.seeds))
    with tempfile.TemporaryDirectory() as folder:
        db = args.db
        if db is None:
            db = Path(folder) / "cai.duckdb"
            demo.build_demo(db, profiles=args.profiles)
        instances.ensure_tutorial_instance(db)
        result = {"profiles": args.profiles if args.db is None else None, "measured_at": dt.date.today().isoformat(),
                  **retrain_agreement(db, TUTORIAL, seeds, args.share)}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
