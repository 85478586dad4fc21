"""First start as a newcomer sees it: ``streamlit run`` on a folder with no database and a browser opening the app,
which ends on the demo's dashboard; timed to the server answering, the first-start progress showing, and the
dashboard full of scores.
Figures go to the ``first_start`` section of bench/results.json.

    python -m bench.first_start [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import app_server, results
from cai import demo

TIMEOUT_MS = 600_000
# Text the page shows once the first start's progress is on screen, and once the dashboard has all its sections.
PROGRESS_TEXT = "First start"
DASHBOARD_TEXT = "Model evaluation"


def one_first_start(folder: Path, page) -> dict:
    db = folder / "data" / "cai.duckdb"
    with app_server.serve(db, folder / "server.log") as (base, started):
        answered = time.perf_counter()
        # The app's address, as a newcomer opens it: on a fresh server, a page's own address would run that page
        # without the entry script (Streamlit's pages-folder mode until the entry script has run once).
        page.goto(base)
        app_server.wait_for_text(page, PROGRESS_TEXT, TIMEOUT_MS)
        progress = time.perf_counter()
        # The first start ends on the demo's dashboard.
        app_server.wait_for_text(page, DASHBOARD_TEXT, TIMEOUT_MS)
        dashboard = time.perf_counter()
    return {"server_answers_s": round(answered - started, 2), "progress_shown_s": round(progress - started, 2),
            "dashboard_full_s": round(dashboard - started, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_start", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="first starts, each in a fresh folder")
    parser.add_argument("--out", type=Path, default=results.DEFAULT_PATH)
    args = parser.parse_args(argv)
    figures: dict = {"profiles": demo.DEFAULT_PROFILES, "cpus": os.cpu_count(),
                     "load_average_1m_before": os.getloadavg()[0], "starts": []}
    with app_server.browser_page() as page:
        for attempt in range(args.repeat):
            print(f"... first start {attempt + 1} of {args.repeat}", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory() as folder:
                figures["starts"].append(one_first_start(Path(folder), page))
    for key in ("server_answers_s", "progress_shown_s", "dashboard_full_s"):
        figures[f"median_{key}"] = round(statistics.median(start[key] for start in figures["starts"]), 2)
    figures["load_average_1m_after"] = os.getloadavg()[0]
    results.save_section("first_start", figures, args.out)
    print(f"{figures['profiles']:,} demo profiles, {len(figures['starts'])} first starts on {figures['cpus']} CPUs "
          f"(load average {figures['load_average_1m_before']:.1f} before, {figures['load_average_1m_after']:.1f} "
          "after)")
    for key in ("server_answers_s", "progress_shown_s", "dashboard_full_s"):
        print(f"  {key:<20}" + "".join(f"{start[key]:>8.2f}" for start in figures["starts"])
              + f"   median {figures['median_' + key]:.2f} s")
    print(f"\nWrote the first_start section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
