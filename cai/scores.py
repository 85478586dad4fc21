"""Reading an instance's scores: the dashboard's aggregates (all computed in DuckDB) and the full export."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cai import audit, evaluation, segments, store
from cai.errors import CaiError, NotFound
from cai.instances import Definition

DISTRIBUTION_BIN = 2


def latest_run(db_path: Path, instance: str) -> dict:
    """The run whose scores the instance currently shows, with its metrics, evaluation and details."""
    with store.connect(db_path) as con:
        rows = con.execute(
            """
            SELECT i.instance_id, i.definition, i.status, i.status_reason, r.run_id, r.as_of, r.finished_at,
                   r.duration_s, r.profiles_scored, r.buckets, r.metrics, r.evaluation, r.details
            FROM instances i LEFT JOIN runs r ON r.run_id = i.current_run_id WHERE i.name = ?
            """,
            [instance],
        ).fetchall()
        if not rows:
            raise NotFound(f"There is no instance named {instance!r}.")
        keys = ["instance_id", "definition", "status", "status_reason", "run_id", "as_of", "finished_at",
                "duration_s", "profiles_scored", "buckets", "metrics", "evaluation", "details"]
        run = dict(zip(keys, rows[0]))
        run["profiles_loaded_after"] = _profiles_loaded_after(con, run["run_id"]) if run["run_id"] else 0
    run["definition"] = Definition.from_json(run["definition"])
    for key in ("buckets", "metrics", "evaluation", "details"):
        run[key] = json.loads(run[key]) if run[key] else {}
    return run


def _profiles_loaded_after(con, run_id: int) -> int:
    """Profiles loaded since the run started that it did not score (a load during a run may come after the run read
    its data): the next run scores those that are eligible."""
    return con.execute(
        "SELECT count(*) FROM profiles p WHERE p.created_at > (SELECT started_at FROM runs WHERE run_id = $run) "
        "AND NOT EXISTS (SELECT 1 FROM scores s WHERE s.run_id = $run AND s.profile_id = p.profile_id)",
        {"run": run_id}).fetchall()[0][0]


def bucket_summary(db_path: Path, run_id: int) -> pd.DataFrame:
    """Per bucket: profiles, share, mean probability, expected conversions (the sum of probabilities) and their
    likely range (``expected_low``, ``expected_high``; missing for a run made before ranges were measured)."""
    with store.connect(db_path) as con:
        frame = con.execute(
            """
            SELECT bucket, count(*) AS profiles, count(*) / sum(count(*)) OVER () AS share,
                   avg(probability) AS mean_probability, sum(probability) AS expected_conversions,
                   sum(probability * (1 - probability)) AS variance, min(score) AS min_score, max(score) AS max_score
            FROM scores WHERE run_id = ? GROUP BY bucket
            """,
            [run_id],
        ).df()
        details = con.execute("SELECT details FROM runs WHERE run_id = ?", [run_id]).fetchall()
    frame["expected_low"], frame["expected_high"] = evaluation.likely_ranges(
        frame["expected_conversions"], frame["variance"], evaluation.forward_range(details[0][0] if details else None))
    order = pd.DataFrame({"bucket": ["high", "medium", "low"]})
    return order.merge(frame.drop(columns="variance"), on="bucket", how="left").fillna(
        {"profiles": 0, "share": 0.0, "expected_conversions": 0.0})


def score_distribution(db_path: Path, run_id: int) -> pd.DataFrame:
    """Profiles per score band of ``DISTRIBUTION_BIN`` points, split by bucket."""
    return store.query_df(
        db_path,
        """
        SELECT CAST(floor(score / $bin) * $bin AS INTEGER) AS score_from, bucket, count(*) AS profiles
        FROM scores WHERE run_id = $run GROUP BY ALL ORDER BY score_from
        """,
        {"bin": DISTRIBUTION_BIN, "run": run_id},
    ).assign(score_to=lambda frame: frame["score_from"] + DISTRIBUTION_BIN)


def influential_factors(db_path: Path, run_id: int) -> pd.DataFrame:
    frame = store.query_df(
        db_path,
        "SELECT rank, feature, label, description, kind, importance, by_bucket FROM run_factors "
        "WHERE run_id = ? ORDER BY rank",
        [run_id],
    )
    frame["by_bucket"] = frame["by_bucket"].map(json.loads)
    total = frame["importance"].sum()
    frame["importance_share"] = frame["importance"] / total if total else 0.0
    return frame


def factor_breakdown(factors: pd.DataFrame) -> pd.DataFrame:
    """Long form of each factor's distribution per bucket, for charts and hover text."""
    rows = []
    for factor in factors.itertuples():
        for bucket, stats in factor.by_bucket.items():
            if factor.kind == "categorical":
                for category, share in stats["shares"].items():
                    rows.append({"label": factor.label, "bucket": bucket, "category": category, "share": share,
                                 "median": None, "p25": None, "p75": None})
            else:
                rows.append({"label": factor.label, "bucket": bucket, "category": None, "share": None,
                             "median": stats["median"], "p25": stats["p25"], "p75": stats["p75"]})
    return pd.DataFrame(rows, columns=["label", "bucket", "category", "share", "median", "p25", "p75"])


def factor_sentence(factor: pd.Series | dict) -> str:
    """'Days since last purchase: high bucket median 6, medium 40, low 140'."""
    by_bucket = factor["by_bucket"]
    if factor["kind"] == "categorical":
        parts = []
        for bucket in ("high", "medium", "low"):
            shares = by_bucket[bucket]["shares"]
            if shares:
                top, share = next(iter(shares.items()))
                parts.append(f"{bucket} bucket mostly {top} ({share:.0%})")
        return f"{factor['label']}: " + ", ".join(parts)
    parts = [f"{bucket} bucket median {_number(by_bucket[bucket]['median'])}" for bucket in ("high", "medium", "low")]
    return f"{factor['label']}: " + ", ".join(parts)


def _number(value) -> str:
    if value is None:
        return "none"
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:,.2g}"


def export_scores(db_path: Path, instance: str, out: Path, actor: str = "local") -> int:
    """Every scored profile of the instance's latest run with identities, scores and factors (CSV or Parquet)."""
    out = Path(out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise CaiError("Export to a .csv or .parquet file.")
    run = latest_run(db_path, instance)
    if run["run_id"] is None:
        raise CaiError(f"{instance!r} has no successful run yet. Run it first.")
    with store.connect(db_path) as con:
        frame = con.execute(segments.export_sql("(SELECT * FROM scores WHERE run_id = $run)"),
                            {"run": run["run_id"]}).df()
    segments.write_frame(frame, out)
    store.write(db_path, lambda con: audit.record(con, actor, "export", "instance", instance,
                                                  {"profiles": len(frame), "format": out.suffix.lstrip(".")}))
    return len(frame)
