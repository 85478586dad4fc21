"""Profile lookup by any identity, and everything the profile view shows: attributes, Customer AI output, history."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cai import engine, evaluation, features, models, privacy, segments, store
from cai.features import feature_catalog
from cai.identity import PHONE_NAMESPACE, canonical_namespace, identity_value, phone_prefix
from cai.instances import Definition

PROFILE_ID = "Profile ID"
SEARCH_LIMIT = 25


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def find(db_path: Path, namespace: str, value: str) -> int | None:
    """Exact match, as in the real product: the profile that owns this identity, or None."""
    value = (value or "").strip()
    if not value:
        return None
    if namespace.replace("_", " ").lower() != PROFILE_ID.lower():
        namespace = canonical_namespace(namespace)
        # Stored the way a load stores it (emails lower-case), so a look-up matches whatever the case typed.
        value, _ = identity_value(namespace, value)
        if value is None:
            return None
    with store.connect(db_path) as con:
        if namespace.replace("_", " ").lower() == PROFILE_ID.lower():
            if not value.isdigit():
                return None
            rows = con.execute("SELECT profile_id FROM profiles WHERE profile_id = ?", [int(value)]).fetchall()
        else:
            # A lone equality on id_value is what lets DuckDB use the index; the namespace is checked here.
            matches = con.execute("SELECT profile_id, namespace FROM identities WHERE id_value = ?",
                                  [value]).fetchall()
            rows = [(profile_id,) for profile_id, owner in matches if owner == namespace]
    return rows[0][0] if rows else None


def search(db_path: Path, namespace: str, text: str, limit: int = SEARCH_LIMIT, by_prefix: bool = True,
           personal_hits: bool = True) -> pd.DataFrame:
    """Forgiving search: case-insensitive identity prefix in the namespace (unless ``by_prefix`` is off), or a name
    containing the text. Without ``personal_hits`` nothing that looks like an email or a phone number is matched,
    so a viewer who sees them masked cannot rebuild one by typing it a character at a time."""
    text = (text or "").strip()
    # The primary identity as its namespace and value, not one text: masking reads the value by its namespace.
    columns = ["profile_id", "name", "namespace", "identity", "latest_scores"]
    if not text:
        return pd.DataFrame(columns=columns)
    pattern = _escape_like(text.lower())
    # A number's start typed as written (+1 (555) 10) finds the numbers, which are stored without separators.
    identity_pattern = _escape_like(phone_prefix(text)) if namespace == PHONE_NAMESPACE else pattern
    with store.connect(db_path) as con:
        return con.execute(
            """
            WITH hits AS MATERIALIZED (
                SELECT DISTINCT profile_id FROM identities
                WHERE $by_prefix AND namespace = $namespace AND lower(id_value) LIKE $identity_pattern || '%'
                      ESCAPE '\\'
                      AND ($personal OR (NOT $contact AND NOT regexp_matches(
                          regexp_replace(id_value, $invisible, '', 'g'), $personal_pattern)))
                UNION
                SELECT profile_id FROM profiles
                WHERE lower(coalesce(first_name, '') || ' ' || coalesce(last_name, '')) LIKE '%' || $pattern || '%'
                      ESCAPE '\\'
                      AND ($personal OR NOT regexp_matches(regexp_replace(
                          coalesce(first_name, '') || ' ' || coalesce(last_name, ''), $invisible, '', 'g'),
                          $personal_pattern))
                UNION
                SELECT profile_id FROM profiles WHERE CAST(profile_id AS VARCHAR) = $exact
                LIMIT $limit
            ),
            -- Identities and scores are joined to the few hits only, not looked up per row of the whole tables.
            primary_identities AS (
                SELECT i.profile_id,
                       arg_min(i.namespace, (NOT i.is_primary, i.namespace, i.id_value)) AS namespace,
                       arg_min(i.id_value, (NOT i.is_primary, i.namespace, i.id_value)) AS identity
                FROM hits h JOIN identities i USING (profile_id) GROUP BY i.profile_id
            ),
            latest AS (
                SELECT s.profile_id,
                       string_agg(ins.name || ': ' || round(s.score, 1) || ' (' || s.bucket || ')', '; '
                                  ORDER BY ins.name) AS latest_scores
                FROM hits h JOIN scores s USING (profile_id) JOIN instances ins ON s.run_id = ins.current_run_id
                GROUP BY s.profile_id
            )
            SELECT h.profile_id, trim(coalesce(p.first_name, '') || ' ' || coalesce(p.last_name, '')) AS name,
                   pi.namespace, pi.identity, l.latest_scores
            FROM hits h JOIN profiles p USING (profile_id)
            LEFT JOIN primary_identities pi USING (profile_id) LEFT JOIN latest l USING (profile_id)
            ORDER BY h.profile_id
            """,
            {"namespace": namespace, "pattern": pattern, "identity_pattern": identity_pattern, "exact": text,
             "limit": limit, "by_prefix": by_prefix, "personal": personal_hits,
             "personal_pattern": privacy.PERSONAL_VALUE_PATTERN, "invisible": privacy.INVISIBLE_PATTERN,
             "contact": privacy.is_contact_namespace(namespace)},
        ).df()


def attributes(db_path: Path, profile_id: int) -> dict:
    with store.connect(db_path) as con:
        frame = con.execute("SELECT * FROM profiles WHERE profile_id = ?", [profile_id]).df()
    if frame.empty:
        return {}
    record = frame.iloc[0].to_dict()
    extra = record.pop("attributes", None)
    if extra:
        record.update(json.loads(extra))
    return {key: (None if isinstance(value, float) and math.isnan(value) else value) for key, value in record.items()}


def identities(db_path: Path, profile_id: int) -> pd.DataFrame:
    return store.query_df(
        db_path,
        "SELECT namespace, id_value AS identity, is_primary AS \"primary\" FROM identities WHERE profile_id = ? "
        "ORDER BY is_primary DESC, namespace, id_value",
        [profile_id],
    )


def customer_ai(db_path: Path, profile_id: int) -> list[dict]:
    """The latest Customer AI output of every instance that scored this profile, with factors in plain words."""
    with store.connect(db_path) as con:
        rows = con.execute(
            """
            SELECT i.name, i.definition, r.as_of, r.details, s.score, s.probability, s.percentile, s.bucket, r.run_id
            FROM instances i JOIN runs r ON r.run_id = i.current_run_id
            JOIN scores s ON s.run_id = r.run_id AND s.profile_id = ?
            ORDER BY i.name
            """,
            [profile_id],
        ).fetchall()
        outputs = []
        for name, definition, as_of, details, score, probability, percentile, bucket, run_id in rows:
            factor_rows = con.execute(
                "SELECT rank, feature, value, typical, effect, importance FROM score_factors "
                "WHERE run_id = ? AND profile_id = ? ORDER BY rank",
                [run_id, profile_id],
            ).df()
            definition = Definition.from_json(definition)
            details = json.loads(details)
            outputs.append({
                "instance": name, "propensity_type": definition.propensity_type, "score": round(score, 1),
                "probability": probability, "percentile": percentile, "bucket": bucket, "score_date": as_of,
                "run_id": run_id,
                "factors": [
                    {**factor, "sentence": factor_sentence(factor, definition, details.get("categories", {}))}
                    for factor in factor_rows.to_dict("records")
                ],
            })
    return outputs


def _format(value: float | None, unit: str, categories: list[str] | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if categories is not None:
        return categories[int(value)] if 0 <= int(value) < len(categories) else "other"
    if unit == "ratio":
        return f"{value:.2f}"
    if unit == "money":
        return f"{value:,.2f}"
    return f"{value:,.0f}" if abs(value) >= 1 or value == 0 else f"{value:.1f}"


def factor_sentence(factor: dict, definition: Definition, categories: dict[str, list[str]]) -> str:
    """'Cart additions in the last 30 days: 4; 4.0× the typical customer (1). It raises the score'."""
    catalog = {feature.name: feature for feature in feature_catalog(definition)}
    feature = catalog.get(factor["feature"])
    label = feature.label if feature else factor["feature"]
    unit = feature.unit if feature else "count"
    names = categories.get(factor["feature"]) if feature and feature.kind == "categorical" else None
    value, typical = factor["value"], factor["typical"]
    value_text, typical_text = _format(value, unit, names), _format(typical, unit, names)
    direction = "raises" if factor["effect"] > 0 else "lowers"
    if unit == "days":
        value_text, typical_text = ("none in the last year" if text == "none" else f"{text} days"
                                    for text in (value_text, typical_text))
    comparison = f"the typical customer: {typical_text}"
    # Ratios compare amounts only: "2% of the typical customer" means nothing for a number of days.
    if unit in ("count", "money", "points") and names is None and value_text != "none" and typical_text != "none" \
            and typical and value and typical > 0:
        ratio = value / typical
        if ratio >= 1.5:
            comparison = f"{ratio:,.1f}× the typical customer ({typical_text})"
        elif ratio <= 1 / 1.5:
            comparison = f"{ratio:.0%} of the typical customer ({typical_text})"
    return f"{label}: {value_text}; {comparison}. It {direction} the score"


def score_history(db_path: Path, profile_id: int) -> pd.DataFrame:
    return store.query_df(
        db_path,
        """
        SELECT i.name AS instance, r.run_id, CAST(r.as_of AS DATE) AS score_date, s.score, s.probability, s.bucket
        FROM scores s JOIN runs r USING (run_id) JOIN instances i USING (instance_id)
        WHERE s.profile_id = ? AND r.status = 'success' ORDER BY r.as_of, r.run_id
        """,
        [profile_id],
    )


# Scores are stored to one decimal: a smaller difference is no move at all.
UNCHANGED_POINTS = 0.05
# Each explained move may load a model and compute one profile's features, so the page explains the latest few.
MAX_MOVES_EXPLAINED = 5


@dataclass(frozen=True)
class ScoreMove:
    """A change of a profile's score between two consecutive runs of one instance, and why it moved: the customer
    (same model, other features), the model (a retrain) or both; ``customer_part`` is the move of the customer's
    new features under the previous model, when that model is still stored."""

    instance: str
    date_from: dt.date
    date_to: dt.date
    score_from: float
    score_to: float
    same_model: bool
    customer_part: float | None = None

    @property
    def change(self) -> float:
        return self.score_to - self.score_from

    def sentence(self) -> str:
        moved = (f"{self.instance}: from {self.score_from:.1f} on {self.date_from:%d %b %Y} to {self.score_to:.1f} on "
                 f"{self.date_to:%d %b %Y}")
        if abs(self.change) < UNCHANGED_POINTS:
            return f"{moved}, unchanged."
        moved += f" ({self.change:+.1f})"
        if self.same_model:
            return f"{moved}: the customer changed; the model is the same."
        if self.customer_part is None:
            return (f"{moved}: the model was retrained, and the previous model is no longer stored, so how much of "
                    "the move is the customer's own cannot be told.")
        model_part = self.change - self.customer_part
        return (f"{moved}: {self.customer_part:+.1f} because the customer changed (their new data scored by the "
                f"previous model) and {model_part:+.1f} because the model was retrained.")


def score_moves(db_path: Path, profile_id: int) -> list[ScoreMove]:
    """The latest ``MAX_MOVES_EXPLAINED`` changes of the profile's score between consecutive successful runs of an
    instance, newest first."""
    with store.connect(db_path) as con:
        rows = con.execute(
            """
            SELECT i.name, i.definition, CAST(r.as_of AS DATE), s.score, r.details->>'model',
                   CAST(r.details->>'reference_rate' AS DOUBLE)
            FROM scores s JOIN runs r USING (run_id) JOIN instances i USING (instance_id)
            WHERE s.profile_id = ? AND r.status = 'success' ORDER BY i.name, r.as_of, r.run_id
            """,
            [profile_id],
        ).fetchall()
    pairs = [(before, after) for before, after in zip(rows, rows[1:]) if before[0] == after[0]]
    pairs = sorted(pairs, key=lambda pair: (pair[1][2], pair[1][0]), reverse=True)[:MAX_MOVES_EXPLAINED]
    moves = []
    for before, after in pairs:
        name, definition, as_of, score, model_key, reference = after
        same_model = model_key is not None and model_key == before[4]
        customer_part = None
        if not same_model and before[4]:
            rescored = _score_with_model(db_path, before[4], Definition.from_json(definition), profile_id, as_of,
                                         reference)
            customer_part = None if rescored is None else round(rescored - before[3], 1)
        moves.append(ScoreMove(name, before[2], as_of, before[3], score, same_model, customer_part))
    return moves


def _score_with_model(db_path: Path, model_key: str, definition: Definition, profile_id: int, as_of: dt.date,
                      reference_rate: float | None) -> float | None:
    """The profile's score on ``as_of`` from the stored model ``model_key``, or None when that model is gone, no
    longer loads, or cannot read today's features."""
    model, _ = models.load(db_path, model_key)
    if model is None or not reference_rate:
        return None
    with store.connect(db_path) as con:
        frame = features.build(con, definition, [as_of], with_labels=False, profile_ids=[profile_id])
    if frame.empty:
        return None
    try:
        probability = model.probability(engine.encode(frame, model))
    except (KeyError, ValueError):
        return None
    return float(evaluation.scores_from_probabilities(probability, reference_rate)[0])


def events(db_path: Path, profile_id: int, limit: int = 50, offset: int = 0) -> pd.DataFrame:
    return store.query_df(
        db_path,
        "SELECT ts AS timestamp, event_type, value, product_name, sku, quantity, channel, page_name, tracking_code "
        "FROM events WHERE profile_id = ? ORDER BY ts DESC LIMIT ? OFFSET ?",
        [profile_id, limit, offset],
    )


def event_counts(db_path: Path, profile_id: int) -> pd.DataFrame:
    """Events per week and type, for the timeline."""
    return store.query_df(
        db_path,
        "SELECT CAST(date_trunc('week', ts) AS DATE) AS week, event_type, count(*) AS events FROM events "
        "WHERE profile_id = ? GROUP BY ALL ORDER BY week",
        [profile_id],
    )


def total_events(db_path: Path, profile_id: int) -> int:
    with store.connect(db_path) as con:
        return con.execute("SELECT count(*) FROM events WHERE profile_id = ?", [profile_id]).fetchall()[0][0]


def profile_segments(db_path: Path, profile_id: int) -> list[str]:
    return segments.segments_of_profile(db_path, profile_id)


def describe(db_path: Path, profile_id: int) -> dict:
    """Everything about one profile, for the command line's JSON output."""
    return {
        "profile_id": profile_id,
        "identities": identities(db_path, profile_id).to_dict("records"),
        "attributes": {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                       for k, v in attributes(db_path, profile_id).items()},
        "customer_ai": [
            {**output, "score_date": output["score_date"].isoformat()}
            for output in customer_ai(db_path, profile_id)
        ],
    }
