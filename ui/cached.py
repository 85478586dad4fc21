"""Cached reads for the pages. Every write calls ``invalidate`` so the next render shows fresh figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from cai import ingest, instances, scores, segments

TTL_SECONDS = 300


def invalidate() -> None:
    st.cache_data.clear()


@st.cache_data(ttl=TTL_SECONDS, max_entries=64, show_spinner=False)
def instances_table(db: Path) -> pd.DataFrame:
    return instances.instances_table(db)


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
