"""Widgets shared by pages; each owns its keys and returns plain values."""

from __future__ import annotations

import json
import re
import string

import pandas as pd
import streamlit as st

from cai import engine, instances, privacy
from cai.instances import Condition, Definition, Goal
from ui import access

NO_CONDITION = "(none)"
# Streamlit renders titles, captions, messages, labels and markdown as Markdown: every ASCII punctuation mark can be
# backslash-escaped there (CommonMark), which keeps links, images, e-mail autolinks, emphasis and HTML from forming.
_MARKDOWN_ESCAPES = str.maketrans({mark: "\\" + mark for mark in string.punctuation})
_LINE_BREAKS = str.maketrans({"\n": " ", "\r": " "})
# The browser's Markdown also links bare web and e-mail addresses (GFM autolinks), escaped or not; an invisible word
# joiner after ':' and '@' and inside 'www.' keeps them text.
_AUTOLINK_STARTS = re.compile(r"(?<=[:@])|(?<=www)(?=\.)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def literal(value) -> str:
    """Text as literal text in Markdown: no link, image, HTML, directive or formula of Streamlit's can form, and no
    invisible or bidirectional control character reorders the sentence around it (a name read backwards)."""
    text = privacy.visible(str(value)).translate(_LINE_BREAKS)
    return _AUTOLINK_STARTS.sub(WORD_JOINER, text).translate(_MARKDOWN_ESCAPES)


def plain(value) -> str:
    """Text from data or from other people (names, cities, event types, file names, messages quoting them) for a
    Markdown sink (title, caption, message, label): masked for a viewer who may not see identities, and literal."""
    return literal(access.shown_text(access.current(), value))


def page_offset(total: int, page_size: int, key: str, counted: str = "") -> int:
    """A page picker for a table of ``total`` rows shown ``page_size`` at a time; returns the chosen page's first row.
    ``counted`` names the rows in the label (e.g. "events")."""
    pages = max(1, -(-total // page_size))
    label = f"Page (of {pages}, {total:,} {counted})" if counted else f"Page (of {pages})"
    return (st.number_input(label, 1, pages, 1, key=key) - 1) * page_size


def instance_form(key: str, event_types: list[str], initial: Definition | None = None) -> Definition | None:
    """The set-up form in Adobe's steps; returns the definition when submitted, else None."""
    initial = initial or Definition(name="", goals=(Goal("commerce.purchases"),), profile_attributes=("loyalty_tier",))
    goal_choices = list(dict.fromkeys([*event_types, *(goal.event_type for goal in initial.goals)]))
    condition = initial.goals[0].condition
    with st.form(key):
        st.markdown("**1. Set up**")
        name = st.text_input("Name", initial.name, max_chars=instances.MAX_NAME_CHARS, key=f"{key}_name")
        description = st.text_area("Description", initial.description, key=f"{key}_description")
        propensity = st.radio("Propensity type", instances.PROPENSITY_TYPES, horizontal=True,
                              index=instances.PROPENSITY_TYPES.index(initial.propensity_type),
                              key=f"{key}_type", help="Churn predicts that the goal will not occur.")
        st.markdown("**2. Goal and outcome window**")
        goals = st.multiselect("Goal events", goal_choices, [goal.event_type for goal in initial.goals],
                               key=f"{key}_goals")
        columns = st.columns(3)
        mode = columns[0].radio("Combine goals", ["any", "all"], index=["any", "all"].index(initial.goal_mode),
                                horizontal=True, key=f"{key}_mode")
        occurs = columns[1].radio("The goal", ["will occur", "will not occur"], horizontal=True,
                                  index=0 if initial.will_occur else 1, key=f"{key}_occurs")
        window = columns[2].number_input("Outcome window (days)", 1, 365, initial.window_days, key=f"{key}_window")
        columns = st.columns(3)
        fields = [NO_CONDITION, *instances.CONDITION_FIELDS]
        field = columns[0].selectbox("Only when the field", fields,
                                     index=fields.index(condition.field) if condition else 0, key=f"{key}_field")
        operator = columns[1].selectbox("is", list(instances.OPERATORS),
                                        index=list(instances.OPERATORS).index(condition.op) if condition else 0,
                                        key=f"{key}_op")
        value = columns[2].text_input("value", str(condition.value) if condition else "", key=f"{key}_value")
        st.markdown("**3. Eligible population**")
        columns = st.columns(2)
        eligible = columns[0].number_input("Active in the last (days)", 1, 730, initial.eligible_days,
                                           key=f"{key}_eligible")
        population_event = columns[1].selectbox(
            "…and did this event in that time", [NO_CONDITION, *event_types],
            index=([NO_CONDITION, *event_types].index(initial.population_event_type)
                   if initial.population_event_type in event_types else 0), key=f"{key}_population_event")
        st.markdown("**4. Custom events and profile attributes**")
        custom = st.multiselect("Custom events to learn from", event_types, list(initial.custom_events),
                                key=f"{key}_custom")
        attributes = st.multiselect("Profile attributes to learn from", list(instances.PROFILE_CONDITION_FIELDS),
                                    list(initial.profile_attributes), key=f"{key}_attributes",
                                    help="Each is used as it was on every past date. One loaded only once that "
                                         "follows the goal (a points balance that grows with purchases) is refused "
                                         "when you save, as it would leak the outcome into the model.")
        allow_leaky = st.multiselect("Use flagged attributes anyway", list(instances.PROFILE_CONDITION_FIELDS),
                                     list(initial.allow_leaky_attributes), key=f"{key}_allow_leaky")
        st.markdown("**5. Options**")
        columns = st.columns(3)
        schedule = columns[0].selectbox("Scoring schedule", list(instances.SCHEDULES),
                                        index=list(instances.SCHEDULES).index(initial.schedule), key=f"{key}_schedule")
        low = columns[1].number_input("Low below score", 1, 98, initial.low_threshold, key=f"{key}_low")
        high = columns[2].number_input("High from score", 2, 99, initial.high_threshold, key=f"{key}_high")
        submitted = st.form_submit_button("Save", type="primary")
    if not submitted:
        return None
    goal_condition = Condition(field, operator, value) if field != NO_CONDITION else None
    return Definition(
        name=name, description=description, propensity_type=propensity,
        goals=tuple(Goal(event_type, goal_condition) for event_type in goals), goal_mode=mode,
        will_occur=occurs == "will occur", window_days=int(window), eligible_days=int(eligible),
        population_event_type=None if population_event == NO_CONDITION else population_event,
        custom_events=tuple(custom), profile_attributes=tuple(attributes),
        allow_leaky_attributes=tuple(allow_leaky), schedule=schedule,
        low_threshold=int(low), high_threshold=int(high), min_examples=initial.min_examples,
    )


def run_with_progress(db, name: str, actor: str):
    """Runs an instance with a progress bar and returns the engine's result."""
    bar = st.progress(0.0, text=f"Running {plain(name)}")
    result = engine.run_instance(db, name, actor=actor,
                                 progress=lambda fraction, message: bar.progress(fraction, text=message))
    bar.empty()
    return result


RESULT_COLUMNS = {"Profile ID": 1, "Name": 2, "Primary identity": 3, "Latest scores": 4}


def profile_results(results: pd.DataFrame) -> int | None:
    """Browse results as in Experience Platform: one row per profile; clicking its Profile ID returns that id."""
    widths = list(RESULT_COLUMNS.values())
    with st.container(key="profiles_results"):
        for column, title in zip(st.columns(widths), RESULT_COLUMNS):
            column.markdown(f"**{title}**")
        picked = None
        for row in results.itertuples():
            cells = st.columns(widths)
            if cells[0].button(str(row.profile_id), type="tertiary", key=f"profiles_open_{row.profile_id}"):
                picked = int(row.profile_id)
            primary = f"{row.namespace}: {row.identity}" if isinstance(row.identity, str) else None
            for cell, text in zip(cells[1:], (row.name, primary, row.latest_scores)):
                cell.text(text if isinstance(text, str) and text else "—")
    return picked


def _attribute_text(value) -> str:
    if value is None or value == "" or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "—"
    if hasattr(value, "strftime"):
        return f"{value:%d %b %Y}"
    if isinstance(value, (dict, list)):
        # As JSON, which masking reads key by key (a nested `mobile`, an address block); Python's repr it cannot.
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def attribute_rows(attributes: dict, outputs: list[dict]) -> pd.DataFrame:
    """The profile's attributes in words, then each instance's Customer AI output named like its output fields."""
    rows = [(name.replace("_", " ").capitalize().replace("Profile id", "Profile ID"), _attribute_text(value))
            for name, value in attributes.items() if name != "created_at"]
    for output in outputs:
        field = f'CustomerAI["{output["instance"]}"]'
        rows += [(f"{field}.score", f"{output['score']:.1f}"), (f"{field}.probability", f"{output['probability']:.1%}"),
                 (f"{field}.percentile", str(output["percentile"])), (f"{field}.bucket", output["bucket"]),
                 (f"{field}.scoreDate", _attribute_text(output["score_date"]))]
    return pd.DataFrame(rows, columns=["attribute", "value"])
