"""How past runs came true: once a run's outcome window has passed, its predicted conversions per bucket (the sum
of its probabilities, with the likely range the run stated) against the profiles it scored that actually reached
the goal in the window after its as-of date. This is what tells a marketer whether to trust the next run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from cai import evaluation, features, store
from cai.errors import NotFound
from cai.instances import Definition

COLUMNS = ["run_id", "as_of", "window_end", "bucket", "profiles", "predicted", "likely_low", "likely_high", "actual"]


def performance_summary(db_path: Path, name: str) -> pd.DataFrame:
    """One row per (successful run whose window has passed, bucket), oldest run first. A window has passed when
    the data's last event is on or after its last day. The goal is read from the instance's current definition."""
    with store.connect(db_path) as con:
        found = con.execute("SELECT instance_id, definition FROM instances WHERE name = ?", [name]).fetchall()
        if not found:
            raise NotFound(f"There is no instance named {name!r}.")
        instance_id, definition = found[0][0], Definition.from_json(found[0][1])
        last_event = con.execute("SELECT CAST(max(ts) AS DATE) FROM events").fetchall()[0][0]
        runs = con.execute(
            "SELECT run_id, CAST(as_of AS DATE), details FROM runs WHERE instance_id = ? AND status = 'success' "
            "ORDER BY as_of, run_id", [instance_id]).fetchall()
        frames = []
        for run_id, as_of, details in runs:
            window_end = as_of + dt.timedelta(days=definition.window_days)
            if last_event is None or last_event < window_end - dt.timedelta(days=1):
                continue
            params = {"run": run_id, "start": as_of, "end": window_end}
            outcome = features.goal_sql(definition, params)
            frame = con.execute(
                f"""
                WITH reached AS (
                    SELECT el.profile_id, {outcome} AS label
                    FROM (SELECT profile_id FROM scores WHERE run_id = $run) el
                    LEFT JOIN events f ON f.profile_id = el.profile_id
                     AND f.ts >= CAST($start AS TIMESTAMP) AND f.ts < CAST($end AS TIMESTAMP)
                    GROUP BY el.profile_id
                )
                SELECT s.bucket, count(*) AS profiles, sum(s.probability) AS predicted,
                       sum(s.probability * (1 - s.probability)) AS variance, count(*) FILTER (WHERE r.label) AS actual
                FROM scores s JOIN reached r ON r.profile_id = s.profile_id
                WHERE s.run_id = $run GROUP BY s.bucket
                """,
                params,
            ).df()
            frame["likely_low"], frame["likely_high"] = evaluation.likely_ranges(
                frame["predicted"], frame["variance"], evaluation.forward_range(details))
            frames.append(frame.assign(run_id=run_id, as_of=as_of, window_end=window_end))
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    result = pd.concat(frames, ignore_index=True)
    result["bucket_order"] = result["bucket"].map({"high": 0, "medium": 1, "low": 2})
    result = result.sort_values(["as_of", "run_id", "bucket_order"]).reset_index(drop=True)
    result["profiles"] = result["profiles"].astype(int)
    result["actual"] = result["actual"].astype(int)
    return result[COLUMNS]
