"""The benchmark: a generated store of N profiles, each stage of a run timed, the interactive queries' latencies, the
run's peak memory, and two references measured in the same process on the same data (a bare DuckDB scan, the
floor; and the same features in pandas, a notebook's way).

    python -m bench [--profiles 1000000] [--repeat 30] [--out bench/results.json] [--workdir DIR] [--engine spark]
    python -m bench --growth [--growth-profiles 100000 300000 1000000]   # each stage's time as the store grows
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import math

import numpy as np

from bench import pandas_baseline
from bench import results as bench_results
from cai import demo, features, instances, profiles, scores, segments, store

FLOOR_SQL = "SELECT profile_id, count(*) FROM events GROUP BY profile_id"
TUTORIAL = instances.TUTORIAL_INSTANCE
SEGMENT = "Benchmark - high propensity"
GROWTH_PROFILES = (100_000, 300_000, 1_000_000)
# A run's stages as its details record them (training features and fitting apart), then the whole run.
RUN_STAGES = ("training_features_s", "train_s", "scoring_features_s", "score_s", "factors_s", "summarise_s",
              "write_s", "run_s")


def timed(work: Callable[[], object]) -> tuple[float, object]:
    clock = time.perf_counter()
    result = work()
    return time.perf_counter() - clock, result


def best_of(times: int, work: Callable[[], object]) -> float:
    return min(timed(work)[0] for _ in range(times))


def latency(work: Callable[[int], object], repeat: int) -> dict:
    """p50 and p95 in milliseconds; ``work`` gets the repetition number, to vary its input."""
    work(0)
    samples = [timed(lambda: work(i))[0] * 1000 for i in range(repeat)]
    return {"p50": round(statistics.median(samples), 2),
            "p95": round(float(np.percentile(samples, 95)), 2), "repeat": repeat}


# The peak is read from /proc/self/status (VmHWM) because getrusage's ru_maxrss survives exec on Linux: a child
# forked from this large process would report this process's size.
CHILD_RUN = """
import json, resource, sys, time
from cai import engine, instances, spark_engine
clock = time.perf_counter()
executor = spark_engine.executor(sys.argv[1]) if sys.argv[2] == "spark" else None
setup_s = time.perf_counter() - clock
result = engine.run_instance(sys.argv[1], instances.TUTORIAL_INSTANCE, executor=executor)
try:
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except OSError:
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({**result.as_dict(), "peak_rss_mb": peak_kb / 1024, "engine_setup_s": setup_s}))
"""


def run_in_child(db: Path | str, engine_name: str = "duckdb") -> tuple[dict, float]:
    """The tutorial's full run in a process of its own, so that its peak memory is its own (with Spark, the
    driver's Python process: the JVM and Python workers are processes of their own)."""
    store.release(db)
    clock = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", CHILD_RUN, str(db), engine_name], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parent.parent, check=False)
    wall = time.perf_counter() - clock
    if child.returncode != 0:
        raise RuntimeError(f"The benchmark run failed:\n{child.stdout}\n{child.stderr}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    if result["error"]:
        raise RuntimeError(f"The benchmark run failed: {result['error']}")
    return result, wall


def latency_probes(db: Path | str) -> dict[str, Callable[[int], object]]:
    """The interactive queries the pages make, on a store whose tutorial instance has run and whose ``SEGMENT``
    exists; each takes the repetition number, to vary its input."""
    run_id = scores.latest_run(db, TUTORIAL)["run_id"]
    emails = [row[0] for row in store.query_df(
        db, "SELECT id_value FROM identities WHERE namespace = 'Email' USING SAMPLE 200 ROWS").itertuples(index=False)]
    pages = max(1, scores.bucket_summary(db, run_id).set_index("bucket").loc["high", "profiles"] // 50)
    return {
        "dashboard_summary": lambda i: scores.bucket_summary(db, run_id),
        "dashboard_distribution": lambda i: scores.score_distribution(db, run_id),
        "dashboard_factor_breakdown": lambda i: scores.factor_breakdown(scores.influential_factors(db, run_id)),
        "profile_lookup_email": lambda i: profiles.find(db, "Email", emails[i % len(emails)]),
        "segment_size": lambda i: segments.measure(db, segments.Rule(instance=TUTORIAL, minimum=50 + i % 40)),
        "segment_members_page": lambda i: segments.members(db, SEGMENT, limit=50, offset=50 * (i % int(pages))),
    }


def measure(profiles_count: int, workdir: Path, repeat: int, log: Callable[[str], None] = print,
            db: Path | str | None = None, engine_name: str = "duckdb") -> dict:
    """Every figure, on a new DuckDB file in ``workdir`` or on ``db`` (an empty PostgreSQL database's URL)."""
    db = db or workdir / "bench.duckdb"
    results: dict = {"profiles": profiles_count, "backend": store.resolve(db).backend, "engine": engine_name,
                     "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}

    log(f"Generating {profiles_count:,} profiles")
    results["generate_s"], summary = timed(lambda: demo.build_demo(db, profiles=profiles_count))
    instances.ensure_tutorial_instance(db)
    results["events"] = summary.events
    definition = instances.get_instance(db, TUTORIAL).definition
    as_of = summary.last_event.date() + dt.timedelta(days=1)

    with store.connect(db) as con:
        log("Floor: one bare GROUP BY over the events")
        results["floor_s"] = best_of(3, lambda: con.execute(FLOOR_SQL).df())
        log("Our feature build (SQL)")
        results["features_s"], frame = timed(lambda: features.build(con, definition, [as_of], with_labels=False))
        results["eligible_profiles"] = len(frame)
        log("The same features in pandas")
        results["pandas_load_s"], (events, profile_frame) = timed(
            lambda: (pandas_baseline.load_events(con), pandas_baseline.load_profiles(con)))
    results["pandas_groupby_s"], _ = timed(
        lambda: pandas_baseline.features(events, profile_frame, definition, as_of))
    del events, profile_frame
    results["pandas_features_s"] = results["pandas_load_s"] + results["pandas_groupby_s"]

    log(f"The full run of the tutorial's instance ({engine_name}), in a child process")
    run, results["run_wall_s"] = run_in_child(db, engine_name)
    results["engine_setup_s"] = run["engine_setup_s"]
    results["peak_rss_mb"] = run["peak_rss_mb"]
    timings = scores.latest_run(db, TUTORIAL)["details"]["timings"]
    results["run_s"] = run["duration_s"]
    results["train_s"] = timings["training_features_s"] + timings["train_s"]
    results["scoring_features_s"] = timings["scoring_features_s"]
    results["score_s"] = timings["score_s"] + timings["factors_s"]
    results["factors_s"] = timings["factors_s"]
    results["write_s"] = timings["write_s"]
    results["profiles_scored"] = run["profiles_scored"]
    results["auc"] = run["metrics"]["auc"]
    # Both from the same run: what the whole run costs in passes over the events that scoring needs anyway.
    results["ratio_run_to_scoring_features"] = results["run_s"] / results["scoring_features_s"]

    log(f"Interactive queries, {repeat} times each")
    segments.create_segment(db, SEGMENT, segments.Rule(instance=TUTORIAL, minimum=definition.high_threshold))
    results["latency_ms"] = {name: latency(work, repeat) for name, work in latency_probes(db).items()}
    results["ratio_run_to_floor"] = results["run_s"] / results["floor_s"]
    results["ratio_pandas_to_features"] = results["pandas_features_s"] / results["features_s"]
    results["ratio_pandas_groupby_to_features"] = results["pandas_groupby_s"] / results["features_s"]
    return results


def report(results: dict) -> str:
    lines = [f"{results['profiles']:,} profiles, {results['events']:,} events "
             f"({results['eligible_profiles']:,} eligible, {results['profiles_scored']:,} scored)", ""]
    for key in ("generate_s", "floor_s", "features_s", "pandas_load_s", "pandas_groupby_s", "pandas_features_s",
                "train_s", "scoring_features_s", "score_s", "factors_s", "write_s", "engine_setup_s", "run_s",
                "run_wall_s"):
        lines.append(f"  {key:<28}{results[key]:>10.2f} s")
    lines.append(f"  {'peak_rss_mb':<28}{results['peak_rss_mb']:>10.0f} MB")
    for key in ("ratio_run_to_scoring_features", "ratio_run_to_floor", "ratio_pandas_to_features",
                "ratio_pandas_groupby_to_features"):
        lines.append(f"  {key:<28}{results[key]:>10.1f} x")
    lines += ["", f"  {'query':<28}{'p50 ms':>10}{'p95 ms':>10}"]
    for name, figures in results["latency_ms"].items():
        lines.append(f"  {name:<28}{figures['p50']:>10.1f}{figures['p95']:>10.1f}")
    return "\n".join(lines)


def growth(sizes: tuple[int, ...], workdir: Path, log: Callable[[str], None] = print) -> dict:
    """The tutorial's full run on a new demo store of each size, each stage's time as the run records it, and how
    it grows against the events: the exponent ``k`` in time ~ events^k between the smallest and the largest store
    (1 is linear)."""
    rows = []
    for profiles_count in sizes:
        db = workdir / f"growth-{profiles_count}.duckdb"
        log(f"Generating {profiles_count:,} profiles")
        summary = demo.build_demo(db, profiles=profiles_count)
        instances.ensure_tutorial_instance(db)
        log(f"The full run at {profiles_count:,} profiles, in a child process")
        run, _ = run_in_child(db)
        timings = scores.latest_run(db, TUTORIAL)["details"]["timings"]
        rows.append({"profiles": profiles_count, "events": summary.events, "profiles_scored": run["profiles_scored"],
                     "peak_rss_mb": run["peak_rss_mb"], "run_s": run["duration_s"],
                     **{stage: timings[stage] for stage in RUN_STAGES if stage != "run_s"}})
        store.release(db)
        db.unlink()
    first, last = rows[0], rows[-1]
    event_growth = math.log(last["events"] / first["events"])
    exponents = {stage: math.log(last[stage] / first[stage]) / event_growth for stage in (*RUN_STAGES, "peak_rss_mb")}
    return {"machine": {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]}, "runs": rows,
            "growth_exponent": exponents}


def growth_report(results: dict) -> str:
    runs = results["runs"]
    lines = [f"  {'stage':<22}" + "".join(f"{run['profiles']:>12,}" for run in runs) + f"{'growth k':>10}",
             f"  {'events':<22}" + "".join(f"{run['events']:>12,}" for run in runs)]
    for stage in (*RUN_STAGES, "peak_rss_mb"):
        unit = " MB" if stage == "peak_rss_mb" else " s"
        lines.append(f"  {stage:<22}" + "".join(f"{run[stage]:>10.2f}{unit}" for run in runs)
                     + f"{results['growth_exponent'][stage]:>10.2f}")
    lines.append("  (growth k: time ~ events^k from the smallest to the largest store; 1 is linear)")
    return "\n".join(lines)


def _progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30, help="repetitions of each interactive query")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    parser.add_argument("--workdir", help="where to build the database (default: a temporary folder)")
    parser.add_argument("--db", help="an empty PostgreSQL database's URL, to measure that backend instead of a file")
    parser.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                        help="the engine of the timed run (spark: local mode on every core)")
    parser.add_argument("--growth", action="store_true",
                        help="only the full run, on stores of each --growth-profiles size: how each stage grows")
    parser.add_argument("--growth-profiles", type=int, nargs="+", default=list(GROWTH_PROFILES))
    args = parser.parse_args(argv)
    if args.growth:
        with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
            figures = growth(tuple(args.growth_profiles), Path(folder), _progress)
        bench_results.save_section("growth", figures, Path(args.out))
        print(growth_report(figures))
        print(f"\nWrote the growth section of {args.out}")
        return 0
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        results = measure(args.profiles, Path(folder), args.repeat, log=_progress, db=args.db, engine_name=args.engine)
    Path(args.out).write_text(json.dumps(bench_results.keep_other_sections(results, Path(args.out)), indent=2) + "\n")
    print(report(results))
    print(f"\nWrote {args.out}")
    return 0
