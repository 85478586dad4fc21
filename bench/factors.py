"""The factor stage alone, on a store whose tutorial instance has run (say the million-profile benchmark's store):
everyone the latest run scored, its model, and each step of finding and naming their reasons timed in wall and CPU
time (CPU time is the fairer figure on a shared machine).

    python -m bench.factors --db PATH [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

from cai import engine, factors, features, instances, models, scores, store


def timed(work) -> tuple[dict, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3)}, result


def factor_stage(db_path: Path, repeat: int) -> dict:
    """The best of ``repeat`` passes of each step, in the order a run takes them."""
    run = scores.latest_run(db_path, instances.TUTORIAL_INSTANCE)
    model, _ = models.load(db_path, run["details"]["model"])
    with store.connect(db_path) as con:
        frame = features.build(con, run["definition"], [dt.date.fromisoformat(run["details"]["as_of"])], False)
    matrix, profile_ids = engine.encode(frame, model), frame["profile_id"].to_numpy()
    steps = {
        "typical": lambda _: factors.typical_values(matrix, model.categorical),
        "trees": lambda _: factors.Trees(model.classifier),
        "screen": lambda done: factors.screen(done["trees"], matrix, done["typical"],
                                              factors.reasons(model.feature_names), engine.SEED),
        # A run takes each profile's score and its reasons' effects from one pass through the trees.
        "scores_and_effects": lambda done: factors.Explainer(done["trees"], done["typical"],
                                                             done["screen"]).logit_and_effects(matrix),
        "top_factors": lambda done: factors.top_factors(profile_ids, matrix, done["typical"], done["screen"],
                                                        done["scores_and_effects"][1], model.feature_names),
    }
    figures, done = {}, {}
    for name, step in steps.items():
        passes = [timed(lambda: step(done)) for _ in range(repeat)]
        figures[name] = min((timing for timing, _ in passes), key=lambda timing: timing["cpu_s"])
        done[name] = passes[0][1]
    total = {unit: round(sum(step[unit] for step in figures.values()), 3) for unit in ("wall_s", "cpu_s")}
    return {"profiles_scored": int(len(matrix)), "trees": int(model.classifier.n_iter_),
            "reasons": len(done["screen"]), "steps": figures, "total": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(factor_stage(args.db, args.repeat), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
