"""Top reason agreement across retrains: the tutorial instance trained with several seeds, everyone eligible scored
and explained by each model, and for each pair of seeds the share of scored profiles whose top reason is the same.

    python -m bench.reasons [--profiles 20000] [--seeds 4] [--db PATH] [--out bench/reasons.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np

from cai import demo, engine, factors, instances, store

TUTORIAL = instances.TUTORIAL_INSTANCE


def top_reason_agreement(db_path: Path, name: str, seeds: list[int]) -> dict:
    """Per pair of seeds the share of scored profiles with the same top reason, then their mean and minimum. The
    models are trained and the profiles scored as a run on the store's default as-of would, nothing is written."""
    definition = instances.get_instance(db_path, name).definition
    with store.connect(db_path) as con:
        first_event, last_event = con.execute("SELECT min(ts), max(ts) FROM events").fetchall()[0]
    as_of = last_event.date() + dt.timedelta(days=1)
    executor = engine.DuckDBExecutor(db_path)
    explained = {}
    for seed in seeds:
        model, _ = engine.train(db_path, definition, as_of, first_event.date(), seed=seed, executor=executor)
        explained[seed] = executor.score(definition, as_of, model, {})
    profile_ids = explained[seeds[0]].profile_ids
    pairs = {f"{a}-{b}": factors.top_reason_agreement(profile_ids, explained[a].per_profile,
                                                      explained[b].per_profile)
             for a, b in itertools.combinations(seeds, 2)}
    return {"profiles_scored": int(len(profile_ids)), "seeds": seeds, "pairs": pairs,
            "mean": float(np.mean(list(pairs.values()))), "min": float(min(pairs.values()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=demo.DEFAULT_PROFILES)
    parser.add_argument("--seeds", type=int, default=4, help="how many seeds (every pair of them is compared)")
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
        result = {"profiles": args.profiles if args.db is None else None,
                  **top_reason_agreement(db, TUTORIAL, seeds)}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
