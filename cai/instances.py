"""Customer AI instances: saved scoring configurations, their validation, status and run history."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from cai import attributes, audit, store
from cai.errors import CaiError, NotFound, ValidationError

AWAITING, TRAINING, SUCCESS, ERROR = "Awaiting training", "Training", "Success", "Error"
EDITABLE_STATUSES = (AWAITING, ERROR)
PROPENSITY_TYPES = ("conversion", "churn")
SCHEDULES = {"none": None, "weekly": 7, "monthly": 30}
MAX_NAME_CHARS = 128
TUTORIAL_INSTANCE = "Product Purchase Propensity"

# Fields a goal or population condition may test, with the events column behind each and its type.
CONDITION_FIELDS = {
    "value": ("value", "number"),
    "price_total": ("price_total", "number"),
    "quantity": ("quantity", "number"),
    "sku": ("sku", "text"),
    "product_name": ("product_name", "text"),
    "channel": ("channel", "text"),
    "page_name": ("page_name", "text"),
    "tracking_code": ("tracking_code", "text"),
}
PROFILE_CONDITION_FIELDS = {
    "country": "text", "city": "text", "gender": "text", "loyalty_tier": "text", "loyalty_points": "number",
    "birth_year": "number",
}
OPERATORS = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "=": "=", "!=": "<>", "contains": "contains"}


@dataclass(frozen=True)
class Condition:
    """``field op value``, for example ``value > 50``; the value always reaches SQL as a bound parameter."""

    field: str
    op: str
    value: str | float

    def text(self) -> str:
        return f"{self.field} {self.op} {self.value!r}" if isinstance(self.value, str) else \
            f"{self.field} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Goal:
    event_type: str
    condition: Condition | None = None

    def text(self) -> str:
        return self.event_type + (f" where {self.condition.text()}" if self.condition else "")


@dataclass(frozen=True)
class Definition:
    name: str
    goals: tuple[Goal, ...]
    description: str = ""
    propensity_type: str = "conversion"
    goal_mode: str = "any"
    will_occur: bool = True
    window_days: int = 30
    eligible_days: int = 45
    population_event_type: str | None = None
    population_attribute: Condition | None = None
    custom_events: tuple[str, ...] = ()
    profile_attributes: tuple[str, ...] = ()
    # Attributes the user keeps although the check says they count the goal (see attributes.check).
    allow_leaky_attributes: tuple[str, ...] = ()
    schedule: str = "none"
    low_threshold: int = 25
    high_threshold: int = 75
    min_examples: int = 500

    def goal_text(self) -> str:
        if len(self.goals) == 1:
            goals = self.goals[0].text()
        else:
            goals = f"{self.goal_mode} of (" + "; ".join(goal.text() for goal in self.goals) + ")"
        return f"{goals} {'will occur' if self.will_occur else 'will not occur'} within {self.window_days} days"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Definition:
        data = json.loads(text)

        def condition(raw):
            return Condition(**raw) if raw else None

        data["goals"] = tuple(Goal(g["event_type"], condition(g.get("condition"))) for g in data["goals"])
        data["population_attribute"] = condition(data.get("population_attribute"))
        data["custom_events"] = tuple(data.get("custom_events") or ())
        data["profile_attributes"] = tuple(data.get("profile_attributes") or ())
        data["allow_leaky_attributes"] = tuple(data.get("allow_leaky_attributes") or ())
        return Definition(**data)


@dataclass
class Instance:
    instance_id: int
    definition: Definition
    status: str
    status_reason: str | None
    current_run_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def editable(self) -> bool:
        return self.status in EDITABLE_STATUSES


def validate(definition: Definition) -> Definition:
    """Checks a definition and returns it normalised (churn means 'will not occur'); raises ValidationError."""
    problems = []
    name = (definition.name or "").strip()
    if not name:
        problems.append("Give the instance a name.")
    elif len(name) > MAX_NAME_CHARS:
        problems.append(f"The name is {len(name)} characters; the limit is {MAX_NAME_CHARS}.")
    if definition.propensity_type not in PROPENSITY_TYPES:
        problems.append("The propensity type must be conversion or churn.")
    if not definition.goals:
        problems.append("Choose at least one goal event.")
    for goal in definition.goals:
        if not goal.event_type.strip():
            problems.append("A goal has no event type.")
        problems.extend(_condition_problems(goal.condition, CONDITION_FIELDS))
    if definition.goal_mode not in ("any", "all"):
        problems.append("Combine goals with 'any' or 'all'.")
    if not 1 <= definition.window_days <= 365:
        problems.append("The outcome window must be between 1 and 365 days.")
    if not 1 <= definition.eligible_days <= 730:
        problems.append("The eligibility lookback must be between 1 and 730 days.")
    if definition.population_attribute:
        problems.extend(_condition_problems(definition.population_attribute, PROFILE_CONDITION_FIELDS))
    unknown = [a for a in definition.profile_attributes if a not in PROFILE_CONDITION_FIELDS]
    if unknown:
        problems.append(f"Unknown profile attributes: {', '.join(unknown)}.")
    if definition.schedule not in SCHEDULES:
        problems.append("The schedule must be none, weekly or monthly.")
    if not 0 < definition.low_threshold < definition.high_threshold < 100:
        problems.append("Bucket thresholds must satisfy 0 < low < high < 100.")
    if definition.min_examples < 1:
        problems.append("The minimum number of examples must be at least 1.")
    if problems:
        raise ValidationError("The instance cannot be saved: " + " ".join(problems), problems)
    return replace(
        definition,
        name=name,
        will_occur=False if definition.propensity_type == "churn" else definition.will_occur,
        custom_events=tuple(dict.fromkeys(e.strip() for e in definition.custom_events if e.strip())),
    )


def attribute_checks(db_path: Path, definition: Definition) -> list[attributes.AttributeCheck]:
    """The leakage check of each profile attribute the definition learns from, against its goal events."""
    return attributes.check(db_path, definition.profile_attributes,
                            [goal.event_type for goal in definition.goals])


def _refuse_leaky_attributes(db_path: Path, definition: Definition) -> None:
    """Attributes loaded once that count the goal are refused unless the definition insists on them."""
    flagged = [check for check in attribute_checks(db_path, definition)
               if check.tracks_goal and check.attribute not in definition.allow_leaky_attributes]
    if flagged:
        warnings = [check.warning() for check in flagged]
        raise ValidationError(
            "The instance cannot be saved: " + " ".join(warnings) + " To learn from it anyway, choose it under "
            "'Use flagged attributes anyway'.", warnings)


def _condition_problems(condition: Condition | None, fields: dict) -> list[str]:
    if condition is None:
        return []
    problems = []
    kind = fields.get(condition.field)
    kind = kind[1] if isinstance(kind, tuple) else kind
    if kind is None:
        problems.append(f"Conditions cannot test the field {condition.field!r}.")
    if condition.op not in OPERATORS:
        problems.append(f"Unknown comparison {condition.op!r}.")
    if kind == "number":
        try:
            float(condition.value)
        except (TypeError, ValueError):
            problems.append(f"{condition.field} compares with a number, not {condition.value!r}.")
    return problems


def _row_to_instance(row) -> Instance:
    instance_id, definition, status, reason, current_run_id, created, updated = row
    return Instance(instance_id, Definition.from_json(definition), status, reason, current_run_id, created, updated)


_SELECT = ("SELECT instance_id, definition, status, status_reason, current_run_id, created_at, updated_at "
           "FROM instances")


def list_instances(db_path: Path) -> list[Instance]:
    with store.connect(db_path) as con:
        return [_row_to_instance(row) for row in con.execute(_SELECT + " ORDER BY created_at").fetchall()]


def get_instance(db_path: Path, name: str) -> Instance:
    with store.connect(db_path) as con:
        rows = con.execute(_SELECT + " WHERE name = ?", [name]).fetchall()
    if not rows:
        raise NotFound(f"There is no instance named {name!r}.")
    return _row_to_instance(rows[0])


def create_instance(db_path: Path, definition: Definition, actor: str = "local") -> Instance:
    definition = validate(definition)
    _refuse_leaky_attributes(db_path, definition)

    def work(con):
        if con.execute("SELECT count(*) FROM instances WHERE name = ?", [definition.name]).fetchall()[0][0]:
            raise ValidationError(f"An instance named {definition.name!r} already exists. Choose another name.")
        instance_id = store.next_id(con, "instances", "instance_id")
        con.execute(
            "INSERT INTO instances (instance_id, name, definition, status) VALUES (?, ?, ?, ?)",
            [instance_id, definition.name, definition.to_json(), AWAITING],
        )
        audit.record(con, actor, "create", "instance", definition.name)

    store.write(db_path, work)
    return get_instance(db_path, definition.name)


def update_instance(db_path: Path, name: str, definition: Definition, actor: str = "local") -> Instance:
    """Saves a new definition; only allowed while the instance awaits training or is in error (as in Adobe)."""
    definition = validate(definition)
    _refuse_leaky_attributes(db_path, definition)

    def work(con):
        rows = con.execute("SELECT status FROM instances WHERE name = ?", [name]).fetchall()
        if not rows:
            raise NotFound(f"There is no instance named {name!r}.")
        if rows[0][0] not in EDITABLE_STATUSES:
            raise CaiError(
                f"{name!r} is in status {rows[0][0]}; definitions can be edited only while awaiting training or "
                "in error. Clone it to change the set-up."
            )
        if definition.name != name and con.execute(
                "SELECT count(*) FROM instances WHERE name = ?", [definition.name]).fetchall()[0][0]:
            raise ValidationError(f"An instance named {definition.name!r} already exists. Choose another name.")
        con.execute(
            "UPDATE instances SET name = ?, definition = ?, status = ?, status_reason = NULL, "
            "updated_at = current_timestamp WHERE name = ?",
            [definition.name, definition.to_json(), AWAITING, name],
        )
        audit.record(con, actor, "edit", "instance", definition.name)

    store.write(db_path, work)
    return get_instance(db_path, definition.name)


def clone_instance(db_path: Path, name: str, new_name: str | None = None, actor: str = "local") -> Instance:
    source = get_instance(db_path, name)
    existing = {instance.name for instance in list_instances(db_path)}
    if not new_name:
        new_name, number = f"{name} (copy)", 2
        while new_name in existing:
            new_name, number = f"{name} (copy {number})", number + 1
    return create_instance(db_path, replace(source.definition, name=new_name), actor)


def delete_instance(db_path: Path, name: str, actor: str = "local") -> None:
    """Deletes the instance with its runs, scores and segments."""

    def work(con):
        rows = con.execute("SELECT instance_id FROM instances WHERE name = ?", [name]).fetchall()
        if not rows:
            raise NotFound(f"There is no instance named {name!r}.")
        instance_id = rows[0][0]
        for table in ("scores", "score_factors", "run_factors"):
            con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM runs WHERE instance_id = ?)",
                        [instance_id])
        from cai import activation  # here: activation builds on segments, which build on instances

        activation.forget_segments(con, [row[0] for row in con.execute(
            "SELECT segment_id FROM segments WHERE instance_id = ?", [instance_id]).fetchall()])
        con.execute("DELETE FROM segments WHERE instance_id = ?", [instance_id])
        con.execute("DELETE FROM runs WHERE instance_id = ?", [instance_id])
        con.execute("DELETE FROM instances WHERE instance_id = ?", [instance_id])
        audit.record(con, actor, "delete", "instance", name)

    store.write(db_path, work)


def run_history(db_path: Path, name: str) -> pd.DataFrame:
    return store.query_df(
        db_path,
        """
        SELECT r.run_id, r.status, r.as_of, r.started_at, r.duration_s, r.profiles_scored,
               r.metrics->>'auc' AS auc, r.metrics->>'grade' AS grade, r.error
        FROM runs r JOIN instances i USING (instance_id) WHERE i.name = ? ORDER BY r.run_id DESC
        """,
        [name],
    )


def instances_table(db_path: Path) -> pd.DataFrame:
    """The instance list: set-up, status and the latest successful run's figures."""
    frame = store.query_df(
        db_path,
        """
        SELECT i.name, i.definition->>'propensity_type' AS propensity_type, i.definition AS definition,
               i.status, i.status_reason, r.as_of AS last_run_date, r.profiles_scored,
               r.metrics->>'grade' AS quality, (r.metrics->>'auc')::DOUBLE AS auc,
               i.definition->>'schedule' AS schedule
        FROM instances i LEFT JOIN runs r ON r.run_id = i.current_run_id
        ORDER BY i.created_at
        """,
    )
    frame["goal"] = [Definition.from_json(text).goal_text() for text in frame["definition"]]
    return frame.drop(columns="definition")


def due_instances(db_path: Path, today: dt.date) -> list[str]:
    """Names of scheduled instances whose last run started at least one schedule period before ``today``."""
    due = []
    for instance in list_instances(db_path):
        period = SCHEDULES.get(instance.definition.schedule)
        if period is None or instance.status == TRAINING:
            continue
        with store.connect(db_path) as con:
            last = con.execute("SELECT max(started_at) FROM runs WHERE instance_id = ?",
                               [instance.instance_id]).fetchall()[0][0]
        if last is None or (today - last.date()).days >= period:
            due.append(instance.name)
    return due


def ensure_tutorial_instance(db_path: Path) -> Instance:
    """The tutorial's instance: will the customer purchase within 30 days?"""
    try:
        return get_instance(db_path, TUTORIAL_INSTANCE)
    except NotFound:
        return create_instance(db_path, Definition(
            name=TUTORIAL_INSTANCE,
            description="Predict the likelihood for customers to purchase a product",
            goals=(Goal("commerce.purchases"),),
            profile_attributes=("loyalty_tier",),
            schedule="weekly",
        ))
