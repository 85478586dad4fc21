"""The audit log: who created, ran, edited or deleted what, and when."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd

from cai import store


def record(con: duckdb.DuckDBPyConnection, actor: str, action: str, object_kind: str, object_name: str,
           details: dict | None = None) -> None:
    """Adds one entry inside the caller's transaction, so the entry lands exactly when the change does."""
    con.execute(
        "INSERT INTO audit_log (actor, action, object_kind, object_name, details) VALUES (?, ?, ?, ?, ?)",
        [actor, action, object_kind, object_name, json.dumps(details) if details else None],
    )


def entries(db_path: Path, limit: int = 500) -> pd.DataFrame:
    return store.query_df(
        db_path,
        "SELECT happened_at, actor, action, object_kind, object_name, details FROM audit_log "
        "ORDER BY happened_at DESC LIMIT ?",
        [limit],
    )
