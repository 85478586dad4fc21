"""Cached reads for the pages. Every write calls ``invalidate`` so the next render shows fresh figures."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
from streamlit import dataframe_util

from cai import charts, ingest, instances, performance, scores, segments
from ui import access

TTL_SECONDS = 300
CHART_SPECS = 256


def invalidate() -> None:
    st.cache_data.clear()


@st.cache_data(ttl=TTL_SECONDS, max_entries=64, show_spinner=False)
def instances_table(db: Path) -> pd.DataFrame:
    return instances.instances_table(db)


@st.cache_data(ttl=TTL_SECONDS, max_entries=16, show_spinner=False)
def attribute_checks(db: Path, definition: instances.Definition) -> list:
    return instances.attribute_checks(db, definition)


@st.cache_data(ttl=TTL_SECONDS, max_entries=64, show_spinner=False)
def latest_run(db: Path, instance: str) -> dict:
    return scores.latest_run(db, instance)


@st.cache_data(ttl=TTL_SECONDS, max_entries=64, show_spinner=False)
def bucket_summary(db: Path, run_id: int) -> pd.DataFrame:
    return scores.bucket_summary(db, run_id)


@st.cache_data(ttl=TTL_SECONDS, max_entries=64, show_spinner=False)
def score_distribution(db: Path, run_id: int) -> pd.DataFrame:
    return scores.score_distribution(db, run_id)


@st.cache_data(ttl=TTL_SECONDS, max_entries=64, show_spinner=False)
def influential_factors(db: Path, run_id: int) -> pd.DataFrame:
    return scores.influential_factors(db, run_id)


@st.cache_data(ttl=TTL_SECONDS, max_entries=16, show_spinner=False)
def performance_summary(db: Path, instance: str) -> pd.DataFrame:
    return performance.performance_summary(db, instance)


@st.cache_data(ttl=TTL_SECONDS, max_entries=16, show_spinner=False)
def datasets_overview(db: Path) -> pd.DataFrame:
    return ingest.datasets_overview(db)


@st.cache_data(ttl=TTL_SECONDS, max_entries=16, show_spinner=False)
def store_summary(db: Path) -> dict:
    return ingest.store_summary(db)


@st.cache_data(ttl=TTL_SECONDS, max_entries=16, show_spinner=False)
def events_per_month(db: Path) -> pd.DataFrame:
    return ingest.events_per_month(db)


@st.cache_data(ttl=TTL_SECONDS, max_entries=16, show_spinner=False)
def list_segments(db: Path) -> pd.DataFrame:
    return segments.list_segments(db)


def _frame_key(frame: pd.DataFrame) -> bytes:
    # Chart inputs are small, and some hold dicts, which Streamlit's own DataFrame hash refuses (it then warns).
    return pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)


@st.cache_data(max_entries=CHART_SPECS, show_spinner=False, hash_funcs={pd.DataFrame: _frame_key})
def _chart_spec(builder: str, *args) -> dict:
    spec = getattr(charts, builder)(*args).to_dict()
    # Altair's default theme fixes a 300-pixel view; Streamlit drops it so that charts fill their column.
    view = spec.get("config", {}).get("view", {})
    for setting in ("continuousWidth", "continuousHeight"):
        view.pop(setting, None)
    # Streamlit sends each dataset as Arrow and converts rows to Arrow on every draw (a quarter of the dashboard's
    # render) unless they already are: converted once here, with Streamlit's own conversion, so the bytes are the same.
    datasets = spec.get("datasets", {})
    for name, rows in datasets.items():
        datasets[name] = dataframe_util.convert_anything_to_arrow_bytes(rows)
    return spec


def chart(where, builder: Callable[..., alt.Chart], *args, **options):
    """Draws ``builder(*args)`` (a ``cai.charts`` function) in ``where`` (``st`` or a column) from a spec built once
    per distinct input: a run's charts never change, and turning an Altair chart into its spec costs more than the
    page's queries, under a lock Streamlit holds for every session at once. ``options`` go to the chart element."""
    if builder.__module__ != charts.__name__:
        raise ValueError(f"{builder.__name__} is not a chart builder of cai.charts")
    # The data behind a chart reaches the browser whole (tooltips, legends, axis labels): masked as tables are.
    viewer = access.current()
    args = tuple(access.shown(viewer, arg) if isinstance(arg, pd.DataFrame) else arg for arg in args)
    return where.vega_lite_chart(spec=_chart_spec(builder.__name__, *args), **options)
