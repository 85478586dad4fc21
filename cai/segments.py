"""Saved segments: structured rules over an instance's latest scores, their members, overlap, trade-offs and export."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pandas as pd

from cai import audit, evaluation, privacy, store
from cai.errors import CaiError, NotFound, ValidationError
from cai.instances import get_instance

MAX_NAME_CHARS = 128
RANGE_FIELDS = {"score": "s.score", "percentile": "s.percentile", "probability": "s.probability"}
ATTRIBUTE_FIELDS = {"country": "p.country", "loyalty_tier": "p.loyalty_tier"}
BUCKET_LABELS = {"high": "High", "medium": "Medium", "low": "Low"}


@dataclass(frozen=True)
class Rule:
    """``minimum <= field < maximum`` (either side optional) over one instance's scores, plus optional filters."""

    instance: str
    field: str = "score"
    minimum: float | None = None
    maximum: float | None = None
    buckets: tuple[str, ...] = ()
    country: str | None = None
    loyalty_tier: str | None = None

    def text(self) -> str:
        subject = f'CustomerAI["{self.instance}"]'
        parts = []
        if self.minimum is not None:
            parts.append(f"{subject}.{self.field} >= {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"{subject}.{self.field} < {self.maximum:g}")
        if self.buckets:
            parts.append(f"{subject}.bucket in ({', '.join(self.buckets)})")
        if self.country:
            parts.append(f"profile.country = {json.dumps(self.country, ensure_ascii=False)}")
        if self.loyalty_tier:
            parts.append(f"profile.loyalty_tier = {json.dumps(self.loyalty_tier, ensure_ascii=False)}")
        return " AND ".join(parts) or f"{subject} is scored"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Rule:
        data = json.loads(text)
        data["buckets"] = tuple(data.get("buckets") or ())
        return Rule(**data)


def bucket_rule(instance: str, bucket: str, low: int, high: int) -> Rule:
    """The rule behind a propensity card: High is ``score >= high``, Medium between, Low below ``low``."""
    ranges = {"high": (high, None), "medium": (low, high), "low": (None, low)}
    minimum, maximum = ranges[bucket]
    return Rule(instance=instance, field="score", minimum=minimum, maximum=maximum)


def suggested_name(instance: str, bucket: str) -> str:
    return f"{instance} - Customer AI {BUCKET_LABELS[bucket]} Propensity"


def _current_run(con: duckdb.DuckDBPyConnection, instance: str) -> tuple:
    """The instance's id and its current run's id, finish time and profiles scored."""
    rows = con.execute(
        "SELECT i.instance_id, i.current_run_id, r.finished_at, r.profiles_scored "
        "FROM instances i LEFT JOIN runs r ON r.run_id = i.current_run_id WHERE i.name = ?", [instance]).fetchall()
    if not rows:
        raise NotFound(f"There is no instance named {instance!r}.")
    if rows[0][1] is None:
        raise CaiError(f"{instance!r} has no successful run yet, so there are no scores to segment. Run it first.")
    return rows[0]


@dataclass(frozen=True)
class _ScoredRun:
    """An instance's current run and where to read its scores and its row of ``runs`` (see store.local_copy)."""

    run_id: int
    scores: str
    runs: str


def _scored_run(db_path: Path, con: duckdb.DuckDBPyConnection, instance: str) -> _ScoredRun:
    """The instance's current run. Its scores change only when a load merges some of their profiles away, which
    also lowers the run's ``profiles_scored``: with its finish time, that versions them."""
    _, run_id, finished_at, scored = _current_run(con, instance)
    version = (finished_at, scored)
    return _ScoredRun(run_id, store.local_copy(db_path, con, "scores", "run_id", run_id, version),
                      store.local_copy(db_path, con, "runs", "run_id", run_id, version))


def _scored_runs(db_path: Path, con: duckdb.DuckDBPyConnection) -> Callable[[str], _ScoredRun | None]:
    """``_scored_run`` looked up once per instance; None for an instance without scores."""
    found: dict[str, _ScoredRun | None] = {}

    def lookup(instance: str) -> _ScoredRun | None:
        if instance not in found:
            try:
                found[instance] = _scored_run(db_path, con, instance)
            except CaiError:
                found[instance] = None
        return found[instance]

    return lookup


def _where(rule: Rule, params: dict) -> tuple[str, bool]:
    if rule.field not in RANGE_FIELDS:
        raise ValidationError(f"Segments can filter on score, percentile or probability, not {rule.field!r}.")
    column = RANGE_FIELDS[rule.field]
    clauses = ["s.run_id = $run"]
    if rule.minimum is not None:
        clauses.append(f"{column} >= $minimum")
        params["minimum"] = float(rule.minimum)
    if rule.maximum is not None:
        clauses.append(f"{column} < $maximum")
        params["maximum"] = float(rule.maximum)
    if rule.buckets:
        clauses.append("list_contains($buckets, s.bucket)")
        params["buckets"] = list(rule.buckets)
    needs_profile = False
    for name, column in ATTRIBUTE_FIELDS.items():
        value = getattr(rule, name)
        if value:
            clauses.append(f"{column} = ${name}")
            params[name] = value
            needs_profile = True
    return " AND ".join(clauses), needs_profile


def members_query(rule: Rule, run_id: int, scores: str = "scores") -> tuple[str, dict]:
    """The SQL (and its parameters) selecting the score rows of ``run_id`` that match ``rule``, read from
    ``scores`` (a table holding those rows: the scores table, or a run's copy from ``store.local_copy``)."""
    params = {"run": run_id}
    where, needs_profile = _where(rule, params)
    join = "JOIN profiles p ON p.profile_id = s.profile_id" if needs_profile else ""
    return f"SELECT s.* FROM {scores} s {join} WHERE {where}", params


def _size(con: duckdb.DuckDBPyConnection, rule: Rule, run: _ScoredRun) -> int:
    sql, params = members_query(rule, run.run_id, run.scores)
    return con.execute(f"SELECT count(*) FROM ({sql})", params).fetchall()[0][0]


def _member_ids(con: duckdb.DuckDBPyConnection, rule: Rule, run: _ScoredRun) -> set[int]:
    sql, params = members_query(rule, run.run_id, run.scores)
    return set(con.execute(f"SELECT profile_id FROM ({sql})", params).df()["profile_id"])


def _saved_rules(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, Rule]]:
    """Every saved segment's name, instance and rule, oldest first."""
    return [(name, instance, Rule.from_json(definition)) for name, instance, definition in con.execute(
        "SELECT s.name, i.name, s.definition FROM segments s JOIN instances i USING (instance_id) "
        "ORDER BY s.created_at").fetchall()]


def get_segment_rule(con: duckdb.DuckDBPyConnection, name: str) -> Rule:
    rows = con.execute("SELECT definition FROM segments WHERE name = ?", [name]).fetchall()
    if not rows:
        raise NotFound(f"There is no segment named {name!r}.")
    return Rule.from_json(rows[0][0])


def measure(db_path: Path, rule: Rule, value_per_conversion: float | None = None,
            cost_per_contact: float | None = None) -> dict:
    """Audience size and share, expected conversions, held-out precision/recall and, given money, expected return."""
    with store.connect(db_path) as con:
        run = _scored_run(db_path, con, rule.instance)
        sql, params = members_query(rule, run.run_id, run.scores)
        size, expected, variance, total, held_out, details = con.execute(
            f"""
            SELECT m.size, m.expected, m.variance, (SELECT count(*) FROM {run.scores} WHERE run_id = $run),
                   (SELECT evaluation FROM {run.runs} WHERE run_id = $run),
                   (SELECT details FROM {run.runs} WHERE run_id = $run)
            FROM (SELECT count(*) AS size, coalesce(sum(probability), 0) AS expected,
                         coalesce(sum(probability * (1 - probability)), 0) AS variance FROM ({sql})) m
            """, params).fetchall()[0]
    held_out = json.loads(held_out)
    likely = evaluation.likely_range(float(expected), float(variance), evaluation.forward_range(details))
    result = {"run_id": run.run_id, "size": int(size), "scored": int(total), "share": size / total if total else 0.0,
              "expected_conversions": float(expected), "expected_low": likely[0] if likely else None,
              "expected_high": likely[1] if likely else None}
    upper = rule.maximum - 1e-9 if rule.maximum is not None else (1.0 if rule.field == "probability" else 100)
    lower = rule.minimum if rule.minimum is not None else 0
    result.update(evaluation.tradeoff(held_out, rule.field, lower, upper))
    if value_per_conversion is not None and cost_per_contact is not None:
        result["expected_return"] = float(expected) * value_per_conversion - size * cost_per_contact
    return result


def _validate_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError("Give the segment a name.")
    if len(name) > MAX_NAME_CHARS:
        raise ValidationError(f"The name is {len(name)} characters long; the limit is {MAX_NAME_CHARS}.")
    return name


def create_segment(db_path: Path, name: str, rule: Rule, description: str = "", actor: str = "local") -> dict:
    """Saves a segment with its size now; a taken name is refused even when two users save at the same moment."""
    name = _validate_name(name)
    get_instance(db_path, rule.instance)

    def work(con):
        if con.execute("SELECT count(*) FROM segments WHERE name = ?", [name]).fetchall()[0][0]:
            raise ValidationError(f"A segment named {name!r} already exists. Choose another name.")
        instance_id, run_id, *_ = _current_run(con, rule.instance)
        sql, params = members_query(rule, run_id)
        size = con.execute(f"SELECT count(*) FROM ({sql})", params).fetchall()[0][0]
        segment_id = store.next_id(con, "segments", "segment_id")
        con.execute(
            "INSERT INTO segments (segment_id, name, description, instance_id, definition, rule_text, "
            "size_at_creation, run_id_at_creation, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [segment_id, name, description, instance_id, rule.to_json(), rule.text(), size, run_id, actor],
        )
        audit.record(con, actor, "create", "segment", name, {"rule": rule.text(), "size": size})
        return {"segment_id": segment_id, "name": name, "size": size, "run_id": run_id, "rule_text": rule.text()}

    return store.write(db_path, work)


def get_segment(db_path: Path, name: str) -> dict:
    with store.connect(db_path) as con:
        rows = con.execute(
            "SELECT s.segment_id, s.name, s.description, i.name, s.definition, s.rule_text, s.size_at_creation, "
            "s.run_id_at_creation, s.created_by, s.created_at, i.current_run_id "
            "FROM segments s JOIN instances i USING (instance_id) WHERE s.name = ?", [name]).fetchall()
    if not rows:
        raise NotFound(f"There is no segment named {name!r}.")
    keys = ["segment_id", "name", "description", "instance", "definition", "rule_text", "size_at_creation",
            "run_id_at_creation", "created_by", "created_at", "current_run_id"]
    segment = dict(zip(keys, rows[0]))
    segment["rule"] = Rule.from_json(segment.pop("definition"))
    return segment


def list_segments(db_path: Path) -> pd.DataFrame:
    """Saved segments with their size at creation and now (evaluated against each instance's latest run)."""
    with store.connect(db_path) as con:
        frame = con.execute(
            "SELECT s.name, s.rule_text, i.name AS instance, s.size_at_creation, s.created_at, s.created_by, "
            "s.description, s.definition FROM segments s JOIN instances i USING (instance_id) ORDER BY s.created_at"
        ).df()
        scored_run = _scored_runs(db_path, con)
        sizes = []
        for definition in frame["definition"]:
            rule = Rule.from_json(definition)
            run = scored_run(rule.instance)
            sizes.append(None if run is None else _size(con, rule, run))
    frame.insert(4, "size_now", pd.array(sizes, dtype="Int64"))
    return frame.drop(columns="definition")


def members(db_path: Path, name: str, limit: int = 50, offset: int = 0) -> pd.DataFrame:
    """One page of a segment's members: identities, score, probability, percentile and bucket."""
    segment = get_segment(db_path, name)
    with store.connect(db_path) as con:
        run = _scored_run(db_path, con, segment["instance"])
        sql, params = members_query(segment["rule"], run.run_id, run.scores)
        params.update({"limit": limit, "offset": offset})
        page = con.execute(f"{sql} ORDER BY s.score DESC, s.profile_id LIMIT $limit OFFSET $offset", params).df()
        # The page is cut first, so identities are read for its 50 profiles, not the whole segment.
        con.register("page_identities", store.rows_with_keys(
            con, "identities", ["profile_id", "namespace", "id_value", "is_primary"], "profile_id",
            page["profile_id"].tolist()))
        con.register("page_members", page)
        try:
            return con.execute(
                """
                SELECT m.profile_id,
                       arg_min(i.id_value, (NOT i.is_primary, i.id_value)) FILTER (WHERE i.namespace = 'Email')
                           AS email,
                       min(i.id_value) FILTER (WHERE i.namespace = 'ECID') AS ecid,
                       round(m.score, 1) AS score, m.probability, m.percentile, m.bucket
                FROM page_members m LEFT JOIN page_identities i ON i.profile_id = m.profile_id
                GROUP BY m.profile_id, m.score, m.probability, m.percentile, m.bucket
                ORDER BY m.score DESC, m.profile_id
                """).df()
        finally:
            con.unregister("page_members")
            con.unregister("page_identities")


def overlap(db_path: Path, name: str) -> pd.DataFrame:
    """How many of this segment's members are also in each other saved segment."""
    segment = get_segment(db_path, name)
    rows = []
    with store.connect(db_path) as con:
        scored_run = _scored_runs(db_path, con)
        mine = _member_ids(con, segment["rule"], _scored_run(db_path, con, segment["instance"]))
        for other, _, rule in _saved_rules(con):
            run = None if other == name else scored_run(rule.instance)
            if run is None:
                continue
            shared = len(mine & _member_ids(con, rule, run))
            rows.append({"segment": other, "shared_profiles": shared,
                         "share_of_this_segment": shared / len(mine) if mine else 0.0})
    return pd.DataFrame(rows, columns=["segment", "shared_profiles", "share_of_this_segment"])


# Path separators, what Windows refuses in a file name, and control characters.
_NOT_IN_FILE_NAMES = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f-\x9f]')


def export(db_path: Path, name: str, out: Path, actor: str = "local") -> int:
    """Writes every member (all identities and the scores) as CSV or Parquet, by the file's extension, and records
    who took the customer data out of the app."""
    out = Path(out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise CaiError("Export to a .csv or .parquet file.")
    segment = get_segment(db_path, name)
    with store.connect(db_path) as con:
        run = _scored_run(db_path, con, segment["instance"])
        sql, params = members_query(segment["rule"], run.run_id, run.scores)
        frame = con.execute(export_sql(f"({sql})"), params).df()
    write_frame(frame, out)
    store.write(db_path, lambda con: audit.record(con, actor, "export", "segment", name,
                                                  {"profiles": len(frame), "format": out.suffix.lstrip(".")}))
    return len(frame)


def export_sql(source: str) -> str:
    """Members of ``source`` (rows of the scores table) with every identity pivoted into a column per namespace."""
    return f"""
        SELECT m.profile_id,
               (SELECT string_agg(id_value, ';' ORDER BY id_value) FROM identities i
                 WHERE i.profile_id = m.profile_id AND i.namespace = 'Email') AS email,
               (SELECT string_agg(id_value, ';' ORDER BY id_value) FROM identities i
                 WHERE i.profile_id = m.profile_id AND i.namespace = 'ECID') AS ecid,
               (SELECT string_agg(id_value, ';' ORDER BY id_value) FROM identities i
                 WHERE i.profile_id = m.profile_id AND i.namespace = 'Phone') AS phone,
               (SELECT string_agg(id_value, ';' ORDER BY id_value) FROM identities i
                 WHERE i.profile_id = m.profile_id AND i.namespace = 'CRMID') AS crmid,
               (SELECT string_agg(id_value, ';' ORDER BY id_value) FROM identities i
                 WHERE i.profile_id = m.profile_id AND i.namespace = 'LoyaltyID') AS loyaltyid,
               m.probability, m.score, m.percentile, m.bucket, CAST(r.as_of AS DATE) AS score_date,
               (SELECT string_agg(f.feature || ' (' || f.importance || ', '
                                  || CASE WHEN f.effect > 0 THEN 'raises' ELSE 'lowers' END || ')', '; '
                                  ORDER BY f.rank)
                  FROM score_factors f WHERE f.run_id = m.run_id AND f.profile_id = m.profile_id) AS factors
        FROM {source} m JOIN runs r ON r.run_id = m.run_id
        ORDER BY m.score DESC, m.profile_id
    """


def write_frame(frame: pd.DataFrame, out: Path) -> None:
    """Parquet keeps every value raw; a CSV is opened in spreadsheets, so its text cells cannot be formulas."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        privacy.spreadsheet_safe(frame).to_csv(out, index=False)


def export_bytes(db_path: Path, name: str, file_format: str, actor: str = "local") -> bytes:
    """The export as bytes, for a browser download."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"segment.{file_format}"
        export(db_path, name, path, actor)
        return path.read_bytes()


def export_file_name(name: str, file_format: str) -> str:
    """The name a download of segment ``name`` is saved under: without the characters a file name may not hold,
    nor invisible or bidirectional ones, which would list the saved file under a name read in another order than
    its own (``Buyers\u202etxt.exe`` + ``.csv`` listed as ``Buyersvsc.exe.txt``)."""
    stem = _NOT_IN_FILE_NAMES.sub("_", privacy.visible(name)).strip(" .") or "segment"
    return f"{stem}.{file_format}"


def update_segment(db_path: Path, name: str, new_name: str, description: str, actor: str = "local") -> None:
    new_name = _validate_name(new_name)

    def work(con):
        if not con.execute("SELECT count(*) FROM segments WHERE name = ?", [name]).fetchall()[0][0]:
            raise NotFound(f"There is no segment named {name!r}.")
        if new_name != name and con.execute("SELECT count(*) FROM segments WHERE name = ?",
                                            [new_name]).fetchall()[0][0]:
            raise ValidationError(f"A segment named {new_name!r} already exists. Choose another name.")
        con.execute("UPDATE segments SET name = ?, description = ?, updated_at = current_timestamp WHERE name = ?",
                    [new_name, description, name])
        audit.record(con, actor, "edit", "segment", new_name, {"previous_name": name})

    store.write(db_path, work)


def delete_segment(db_path: Path, name: str, actor: str = "local") -> None:
    def work(con):
        if not con.execute("SELECT count(*) FROM segments WHERE name = ?", [name]).fetchall()[0][0]:
            raise NotFound(f"There is no segment named {name!r}.")
        from cai import activation  # here: activation builds on segments

        activation.forget_segments(con, [row[0] for row in con.execute(
            "SELECT segment_id FROM segments WHERE name = ?", [name]).fetchall()])
        con.execute("DELETE FROM segments WHERE name = ?", [name])
        audit.record(con, actor, "delete", "segment", name)

    store.write(db_path, work)


def segments_of_profile(db_path: Path, profile_id: int) -> list[str]:
    """Names of the saved segments this profile is a member of now."""
    names = []
    with store.connect(db_path) as con:
        scored_run = _scored_runs(db_path, con)
        for name, instance, rule in _saved_rules(con):
            run = scored_run(instance)
            if run is None:
                continue
            sql, params = members_query(rule, run.run_id, run.scores)
            params["profile"] = profile_id
            if con.execute(f"SELECT count(*) FROM ({sql}) WHERE profile_id = $profile", params).fetchall()[0][0]:
                names.append(name)
    return names
