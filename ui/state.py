"""Where the UI's configuration comes from, and the session-state keys shared across pages."""

from __future__ import annotations

import os

import streamlit as st

from cai import store

FLASH = "flash_message"


def db_path() -> store.Store:
    """The store: ``$CAI_DB``, else ``[cai] db`` in Streamlit's secrets (a file path or a ``postgresql://`` URL),
    else ``data/cai.duckdb``; its model key from ``$CAI_MODEL_KEY``, else ``[cai] model_key``; read at call time."""
    try:
        settings = st.secrets.get("cai", {})
    except (FileNotFoundError, st.errors.StreamlitSecretNotFoundError):
        settings = {}
    return store.resolve(os.environ.get(store.DB_ENV_VAR) or settings.get("db"),
                         model_key=os.environ.get(store.MODEL_KEY_ENV_VAR) or settings.get("model_key"))


def flash(message: str) -> None:
    """A success message that survives the rerun or page switch that follows an action."""
    st.session_state[FLASH] = message


def show_flash() -> None:
    message = st.session_state.pop(FLASH, None)
    if message:
        st.success(message)
