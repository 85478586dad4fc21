"""Where the UI's configuration comes from, and the session-state keys shared across pages."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from cai import store

FLASH = "flash_message"


def db_path() -> Path:
    """``$CAI_DB``, else ``[cai] db`` in Streamlit's secrets, else ``data/cai.duckdb``; read at call time."""
    if os.environ.get(store.DB_ENV_VAR):
        return Path(os.environ[store.DB_ENV_VAR])
    try:
        configured = st.secrets.get("cai", {}).get("db")
    except (FileNotFoundError, st.errors.StreamlitSecretNotFoundError):
        configured = None
    return Path(configured) if configured else store.DEFAULT_DB_PATH


def flash(message: str) -> None:
    """A success message that survives the rerun or page switch that follows an action."""
    st.session_state[FLASH] = message


def show_flash() -> None:
    message = st.session_state.pop(FLASH, None)
    if message:
        st.success(message)
