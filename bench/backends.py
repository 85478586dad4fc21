"""The interactive queries on a DuckDB file and on PostgreSQL, holding the same trained demo, timed in turn in one
process so that the load of a shared machine weighs on both alike; their ratio is the figure to read.

    python -m bench.backends --db postgresql://... [--profiles 20000] [--repeat 20] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import results
from bench.run import SEGMENT, TUTORIAL, latency_probes
from cai import demo, engine, instances, segments, store


def trained_file(folder: Path, profiles: int) -> Path:
    db = folder / "backends.duckdb"
    demo.build_demo(db, profiles=profiles)
    instances.ensure_tutorial_instance(db)
    result = engine.run_instance(db, TUTORIAL)
    if result.error:
        raise RuntimeError(f"The benchmark run failed: {result.error}")
    definition = instances.get_instance(db, TUTORIAL).definition
    segments.create_segment(db, SEGMENT, segments.Rule(instance=TUTORIAL, minimum=definition.high_threshold))
    store.release(db)
    return db


def alternate(file: Path, url: str, repeat: int) -> dict:
    """p50 and p95 in ms of each query on each store, the two timed one after the other at every repetition."""
    probes = {"duckdb": latency_probes(file), "postgres": latency_probes(url)}
    figures = {}
    for name in probes["duckdb"]:
        samples = {backend: [] for backend in probes}
        for backend, work in probes.items():
            work[name](0)
        for i in range(repeat):
            for backend, work in probes.items():
                clock = time.perf_counter()
                work[name](i)
                samples[backend].append((time.perf_counter() - clock) * 1000)
        figures[name] = {backend: {"p50": round(statistics.median(times), 2),
                                   "p95": round(float(np.percentile(times, 95)), 2)}
                         for backend, times in samples.items()}
        figures[name]["ratio_p50"] = round(figures[name]["postgres"]["p50"] / figures[name]["duckdb"]["p50"], 2)
    return figures


def report(section: dict) -> str:
    lines = [f"{section['profiles']:,} profiles; load average {section['load_average_1m']:.1f} on "
             f"{section['cpus']} CPUs", "", f"  {'query':<28}{'file p50':>10}{'pg p50':>10}{'ratio':>8}"]
    for name, figures in section["latency_ms"].items():
        lines.append(f"  {name:<28}{figures['duckdb']['p50']:>10.1f}{figures['postgres']['p50']:>10.1f}"
                     f"{figures['ratio_p50']:>8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backends", description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="an empty PostgreSQL database's URL (its tables are replaced)")
    parser.add_argument("--profiles", type=int, default=demo.DEFAULT_PROFILES)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", type=Path, default=results.DEFAULT_PATH)
    args = parser.parse_args(argv)
    if not store.resolve(args.db).is_postgres:
        parser.error("--db takes a PostgreSQL URL: the file store is built in a temporary folder.")
    with tempfile.TemporaryDirectory() as folder:
        print("... building and training the demo in a file, then copying it into PostgreSQL", file=sys.stderr)
        file = trained_file(Path(folder), args.profiles)
        store.copy(file, args.db, replace=True)
        print(f"... the interactive queries, {args.repeat} times each on each store in turn", file=sys.stderr)
        section = {"profiles": args.profiles, "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
                   "latency_ms": alternate(file, args.db, args.repeat)}
        store.release()
    results.save_section("backends", section, args.out)
    print(report(section))
    print(f"\nWrote the backends section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
