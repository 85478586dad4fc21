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


def entries(db_path: Path, actor: str | None = None, action: str | None = None, object_name: str | None = None,
            limit: int = 500) -> pd.DataFrame:
    """The newest entries first, optionally only one person's, one kind of action, or names containing a text."""
    return store.query_df(
        db_path,
        """
        SELECT happened_at, actor, action, object_kind, object_name, details FROM audit_log
        WHERE ($actor IS NULL OR actor = $actor) AND ($action IS NULL OR action = $action)
          AND ($name IS NULL OR contains(lower(object_name), lower($name)))
        ORDER BY happened_at DESC LIMIT $limit
        """,
        {"actor": actor, "action": action, "name": object_name or None, "limit": limit},
    )


def facets(db_path: Path) -> dict[str, list[str]]:
    """The people and actions that appear in the log, for filters."""
    frame = store.query_df(db_path, "SELECT DISTINCT actor, action FROM audit_log")
    return {"actors": sorted(frame["actor"].unique().tolist()), "actions": sorted(frame["action"].unique().tolist())}
