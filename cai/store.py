"""The DuckDB store: where the database lives, its versioned schema, and short units of work against it."""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb

from cai.errors import SchemaTooNew, StoreBusy

DEFAULT_DB_PATH = Path("data") / "cai.duckdb"
DB_ENV_VAR = "CAI_DB"
MODELS_ENV_VAR = "CAI_MODELS"
BUSY_WAIT_SECONDS = 10.0
IDLE_RELEASE_SECONDS = 1.0

T = TypeVar("T")

# Each entry upgrades the schema by one version; never edit a shipped entry, append a new one.
MIGRATIONS: list[str] = [
    # 1: profiles, identities, events and the batches that brought them.
    """
    CREATE TABLE profiles (
        profile_id BIGINT PRIMARY KEY,
        first_name VARCHAR,
        last_name VARCHAR,
        gender VARCHAR,
        birth_year INTEGER,
        city VARCHAR,
        country VARCHAR,
        loyalty_tier VARCHAR,
        loyalty_points INTEGER,
        signup_date DATE,
        attributes JSON,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE identities (
        namespace VARCHAR NOT NULL,
        id_value VARCHAR NOT NULL,
        profile_id BIGINT NOT NULL,
        is_primary BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (namespace, id_value)
    );
    CREATE TABLE datasets (
        dataset_id BIGINT PRIMARY KEY,
        name VARCHAR NOT NULL UNIQUE,
        kind VARCHAR NOT NULL,
        description VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE batches (
        batch_id BIGINT PRIMARY KEY,
        dataset_id BIGINT NOT NULL,
        file_name VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        rows_total BIGINT NOT NULL DEFAULT 0,
        rows_accepted BIGINT NOT NULL DEFAULT 0,
        rows_rejected BIGINT NOT NULL DEFAULT 0,
        rows_duplicate BIGINT NOT NULL DEFAULT 0,
        profiles_created BIGINT NOT NULL DEFAULT 0,
        profiles_merged BIGINT NOT NULL DEFAULT 0,
        errors JSON,
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP
    );
    CREATE TABLE events (
        xdm_id VARCHAR,
        profile_id BIGINT NOT NULL,
        ts TIMESTAMP NOT NULL,
        event_type VARCHAR NOT NULL,
        value DOUBLE,
        order_id VARCHAR,
        sku VARCHAR,
        product_name VARCHAR,
        quantity INTEGER,
        price_total DOUBLE,
        channel VARCHAR,
        page_name VARCHAR,
        tracking_code VARCHAR,
        batch_id BIGINT NOT NULL,
        raw JSON
    );
    CREATE TABLE profile_merges (
        merged_profile_id BIGINT NOT NULL,
        into_profile_id BIGINT NOT NULL,
        batch_id BIGINT NOT NULL,
        merged_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    """,
    # 2: Customer AI instances, their runs, the scores and factors each run wrote, and cached models.
    """
    CREATE TABLE instances (
        instance_id BIGINT PRIMARY KEY,
        name VARCHAR NOT NULL UNIQUE,
        definition JSON NOT NULL,
        status VARCHAR NOT NULL,
        status_reason VARCHAR,
        current_run_id BIGINT,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE runs (
        run_id BIGINT PRIMARY KEY,
        instance_id BIGINT NOT NULL,
        status VARCHAR NOT NULL,
        as_of DATE NOT NULL,
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP,
        duration_s DOUBLE,
        pid INTEGER,
        profiles_scored BIGINT,
        buckets JSON,
        metrics JSON,
        evaluation JSON,
        details JSON,
        error VARCHAR
    );
    CREATE TABLE scores (
        run_id BIGINT NOT NULL,
        profile_id BIGINT NOT NULL,
        probability DOUBLE NOT NULL,
        score DOUBLE NOT NULL,
        percentile INTEGER NOT NULL,
        bucket VARCHAR NOT NULL
    );
    CREATE TABLE score_factors (
        run_id BIGINT NOT NULL,
        profile_id BIGINT NOT NULL,
        rank INTEGER NOT NULL,
        feature VARCHAR NOT NULL,
        value DOUBLE,
        typical DOUBLE,
        effect DOUBLE NOT NULL,
        importance VARCHAR NOT NULL
    );
    CREATE TABLE run_factors (
        run_id BIGINT NOT NULL,
        feature VARCHAR NOT NULL,
        label VARCHAR NOT NULL,
        description VARCHAR,
        kind VARCHAR NOT NULL,
        importance DOUBLE NOT NULL,
        rank INTEGER NOT NULL,
        by_bucket JSON NOT NULL
    );
    CREATE TABLE models (
        cache_key VARCHAR PRIMARY KEY,
        file_name VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL,
        sklearn_version VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    """,
    # 3: saved segments and the audit log.
    """
    CREATE TABLE segments (
        segment_id BIGINT PRIMARY KEY,
        name VARCHAR NOT NULL UNIQUE,
        description VARCHAR,
        instance_id BIGINT NOT NULL,
        definition JSON NOT NULL,
        rule_text VARCHAR NOT NULL,
        size_at_creation BIGINT NOT NULL,
        run_id_at_creation BIGINT NOT NULL,
        created_by VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE audit_log (
        happened_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        actor VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        object_kind VARCHAR NOT NULL,
        object_name VARCHAR NOT NULL,
        details JSON
    );
    """,
    # 4: look-ups by identity value use an index (DuckDB does not use the composite key for them).
    """
    CREATE INDEX identities_by_value ON identities (id_value);
    """,
    # 5: activation: where segments are sent (secrets stay outside the store), which segment goes where, each
    # delivery, and what each destination holds now (the base of the next diff).
    """
    CREATE TABLE destinations (
        destination_id BIGINT PRIMARY KEY,
        name VARCHAR NOT NULL UNIQUE,
        kind VARCHAR NOT NULL,
        target VARCHAR NOT NULL,
        options JSON NOT NULL,
        created_by VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE activations (
        activation_id BIGINT PRIMARY KEY,
        segment_id BIGINT NOT NULL,
        destination_id BIGINT NOT NULL,
        identity VARCHAR NOT NULL,
        columns JSON NOT NULL,
        active BOOLEAN NOT NULL DEFAULT true,
        created_by VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        UNIQUE (segment_id, destination_id)
    );
    CREATE TABLE deliveries (
        delivery_id BIGINT PRIMARY KEY,
        activation_id BIGINT NOT NULL,
        run_id BIGINT NOT NULL,
        status VARCHAR NOT NULL,
        mode VARCHAR NOT NULL,
        members BIGINT,
        added BIGINT,
        removed BIGINT,
        attempts INTEGER NOT NULL DEFAULT 1,
        pid INTEGER,
        location VARCHAR,
        error VARCHAR,
        started_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        finished_at TIMESTAMP,
        UNIQUE (activation_id, run_id)
    );
    CREATE TABLE delivered_members (
        activation_id BIGINT NOT NULL,
        profile_id BIGINT NOT NULL,
        identity_value VARCHAR NOT NULL,
        PRIMARY KEY (activation_id, profile_id)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_migrated: set[Path] = set()
_migrate_lock = threading.Lock()


def resolve_db_path(explicit: str | os.PathLike | None = None) -> Path:
    """The database path: an explicit one (``--db``), else ``$CAI_DB``, else ``data/cai.duckdb``."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(DB_ENV_VAR) or DEFAULT_DB_PATH)


def models_dir(db_path: Path) -> Path:
    """Where fitted models are cached: ``$CAI_MODELS``, else a ``models`` folder beside the database."""
    configured = os.environ.get(MODELS_ENV_VAR)
    return Path(configured) if configured else db_path.resolve().parent / "models"


def _is_lock_conflict(error: duckdb.Error) -> bool:
    text = str(error)
    return "Could not set lock" in text or "Conflicting lock" in text or "conflict" in text.lower()


def _open(path: Path) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as error:
            if not _is_lock_conflict(error) or time.monotonic() > deadline:
                raise StoreBusy(
                    "The database is busy with another job (for example a scoring run). Try again in a minute."
                ) from error
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchall()[0][0]
    if not exists:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchall()[0]
    return row[0] or 0


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    current = schema_version(con)
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"This database was written by a newer version of Customer AI (schema {current}; this app knows "
            f"up to {SCHEMA_VERSION}). Upgrade the app, or point it at another database file."
        )
    if current == SCHEMA_VERSION:
        return
    con.begin()
    try:
        if current == 0:
            con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            con.execute(MIGRATIONS[version - 1])
            con.execute("INSERT INTO schema_version VALUES (?, current_timestamp)", [version])
        con.commit()
    except BaseException:
        con.rollback()
        raise


@dataclass
class _Shared:
    connection: duckdb.DuckDBPyConnection
    users: int = 0
    release_timer: threading.Timer | None = None


_shared: dict[Path, _Shared] = {}
_shared_lock = threading.RLock()


@contextmanager
def connect(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for one unit of work.

    Opening a DuckDB file costs about 12 ms, more than most of the app's queries, so units of work in one process
    share an open file through cursors. The file is closed once nobody has used it for ``IDLE_RELEASE_SECONDS``,
    which lets another process (a scheduled run from the command line, say) take it in turn; that process waits
    for it for up to ``BUSY_WAIT_SECONDS``."""
    key = Path(db_path).resolve()
    # Opening may wait for another process, so it happens outside the lock; a thread that loses the race to
    # open the same file closes its own, redundant connection.
    opened = None if key in _shared else _open(Path(db_path))
    with _shared_lock:
        shared = _shared.get(key)
        if shared is None:
            shared = _shared[key] = _Shared(opened or _open(Path(db_path)))
        elif opened is not None:
            opened.close()
        if shared.release_timer:
            shared.release_timer.cancel()
            shared.release_timer = None
        shared.users += 1
        cursor = shared.connection.cursor()
    try:
        if key not in _migrated:
            with _migrate_lock:
                _migrate(cursor)
                _migrated.add(key)
        yield cursor
    finally:
        cursor.close()
        with _shared_lock:
            shared.users -= 1
            if shared.users == 0:
                shared.release_timer = threading.Timer(IDLE_RELEASE_SECONDS, _release_if_idle, (key, shared))
                shared.release_timer.daemon = True
                shared.release_timer.start()


def _release_if_idle(key: Path, shared: _Shared) -> None:
    with _shared_lock:
        if shared.users == 0 and _shared.get(key) is shared:
            del _shared[key]
            if shared.release_timer:
                shared.release_timer.cancel()
            shared.connection.close()


def release(db_path: Path | None = None) -> None:
    """Closes the shared file (every file without ``db_path``) now if nobody is using it: before copying the file,
    or handing it to another process straight away."""
    with _shared_lock:
        keys = [Path(db_path).resolve()] if db_path else list(_shared)
        for key in keys:
            if key in _shared:
                _release_if_idle(key, _shared[key])


atexit.register(release)


@contextmanager
def transaction(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection inside one transaction: everything it writes lands together, or nothing does."""
    with connect(db_path) as con:
        con.begin()
        try:
            yield con
            con.commit()
        except BaseException:
            con.rollback()
            raise


def write(db_path: Path, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """Runs ``work`` in a transaction, retrying briefly when a concurrent writer conflicts with it.

    A key collision counts as a conflict too: two writers may pick the same next id at once; on the retry
    ``work`` sees the other's row, and its own checks (a taken name, say) answer with a clear message."""
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    delay = 0.02
    while True:
        try:
            with transaction(db_path) as con:
                return work(con)
        except (duckdb.TransactionException, duckdb.ConstraintException) as error:
            if time.monotonic() > deadline:
                raise StoreBusy("Someone else is saving changes right now. Try again in a moment.") from error
            time.sleep(delay)
            delay = min(delay * 2, 0.3)


def query_df(db_path: Path, sql: str, params: list | dict | None = None):
    """Runs one read query and returns a pandas DataFrame."""
    with connect(db_path) as con:
        return con.execute(sql, params or []).df()


def next_id(con: duckdb.DuckDBPyConnection, table: str, column: str) -> int:
    """The next free integer key of ``table.column`` (identifiers are ours, never user input)."""
    return con.execute(f"SELECT coalesce(max({column}), 0) + 1 FROM {table}").fetchall()[0][0]
