"""The store: a DuckDB file or a PostgreSQL database (reached through DuckDB, so every query is written once, in
DuckDB's dialect), its versioned schema, and short units of work against it."""

from __future__ import annotations

import atexit
import importlib
import os
import re
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import duckdb

from cai.errors import CaiError, SchemaTooNew, StoreBusy

DEFAULT_DB_PATH = Path("data") / "cai.duckdb"
DB_ENV_VAR = "CAI_DB"
MODEL_KEY_ENV_VAR = "CAI_MODEL_KEY"
# Why models signed elsewhere are retrained when no key is configured: each account's key file is its own, and a
# restarted Community Cloud container starts without the last one's.
NO_MODEL_KEY = ("No model key is set, so every machine (every new or restarted container on Streamlit Community "
                "Cloud too) signs models with a key of its own and retrains them instead of reusing them: set "
                "[cai] model_key in the secrets, or CAI_MODEL_KEY.")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# The name the PostgreSQL database gets inside DuckDB; every query runs with it as the default catalog.
POSTGRES_CATALOG = "cai_pg"
# An in-memory database beside it, holding copies of rows that do not change (see local_copy). A run's scores take
# about 50 bytes a profile: the 8 copies kept (4 runs' scores and rows) hold some 200 MB at a million profiles.
LOCAL_CATALOG = "cai_local"
MAX_LOCAL_COPIES = 8
# Any fixed number: the PostgreSQL advisory lock that lets one process at a time upgrade the schema.
MIGRATION_LOCK_ID = 7_310_014
BUSY_WAIT_SECONDS = 10.0
IDLE_RELEASE_SECONDS = 1.0
HOST_ENV_VAR = "CAI_HOST"
# DuckDB's own memory (hash tables of a run's feature joins, above all) stays under this; beyond it DuckDB spills
# to a temporary folder instead of growing. Its default, 80% of the machine, does not fit a small container.
MEMORY_LIMIT_ENV_VAR = "CAI_DUCKDB_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "1GB"
# A run on another machine is judged alive by a heartbeat it stamps while it runs (a process id means nothing
# across machines); one silent for RUN_STALE_SECONDS is taken for a machine that died.
RUN_HEARTBEAT_SECONDS = 15.0
RUN_STALE_SECONDS = 120.0
# A container that vanished without closing its connection (its machine died) leaves its transaction open on the
# PostgreSQL server, holding its locks, until the server's TCP keepalive gives up (about two hours by default), and
# every writer of a row it holds waits that long. Our transactions there end on the server once idle (waiting for
# the client) for this long, and their statements wait for a lock at most BUSY_WAIT_SECONDS before being retried.
IDLE_IN_TRANSACTION_SECONDS = 300.0

T = TypeVar("T")


class PostgresOnly(str):
    """A migration only a PostgreSQL store needs, in PostgreSQL's own dialect; a DuckDB file just records it."""


class FileOnly(str):
    """A migration only a DuckDB file needs; a PostgreSQL store just records it."""


class DataFix(str):
    """A migration that rewrites data by a rule the app keeps in Python (a phone number's canonical form, a load's
    profile merge): ``"module:function"``, called with the connection inside the upgrade's transaction, on either
    backend."""


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
    # 5: fitted models live in the store itself, signed, so a machine with an empty disk reuses them.
    """
    DROP TABLE models;
    CREATE TABLE models (
        cache_key VARCHAR PRIMARY KEY,
        model BLOB NOT NULL,
        signature VARCHAR NOT NULL,
        sklearn_version VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    """,
    # 6: activation: where segments are sent (secrets stay outside the store), which segment goes where, each
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
    # 7: which machine a run is on, and when it last said it was still running: another machine sharing a
    # PostgreSQL store sees a run in progress as such, and a run whose machine died as interrupted.
    """
    ALTER TABLE runs ADD COLUMN host VARCHAR;
    ALTER TABLE runs ADD COLUMN heartbeat_at TIMESTAMP;
    """,
    # 8: one row that a load merging profiles away and a run's swap both write (see identity.claim_profile_set).
    """
    CREATE TABLE profile_set_guard (guard INTEGER PRIMARY KEY, written_at TIMESTAMP NOT NULL);
    """,
    # 9: the extension compares text in the "C" collation (DuckDB's byte order), which an index built in the
    # database's own collation cannot serve: an identity look-up read all 88,000 identities of the demo (10 ms).
    PostgresOnly("""
    DROP INDEX IF EXISTS identities_by_value;
    CREATE INDEX identities_by_value ON identities (id_value COLLATE "C");
    """),
    # 10: deliveries record their machine and heartbeat as runs do, so a delivery in progress on one machine is not
    # sent again by another, and one whose machine died is retried.
    """
    ALTER TABLE deliveries ADD COLUMN host VARCHAR;
    ALTER TABLE deliveries ADD COLUMN heartbeat_at TIMESTAMP;
    """,
    # 11: a page of segment members reads its identities by profile (see rows_with_keys).
    PostgresOnly("""
    CREATE INDEX identities_by_profile ON identities (profile_id);
    """),
    # 12: dated profile attribute values: each profile load is a version, so a past snapshot sees the value the
    # customer had then, not today's. Existing profiles get one version each, dated when they were loaded.
    """
    CREATE TABLE profile_attribute_versions (
        profile_id BIGINT NOT NULL,
        attribute VARCHAR NOT NULL,
        valid_from TIMESTAMP NOT NULL,
        value VARCHAR NOT NULL,
        batch_id BIGINT
    );
    INSERT INTO profile_attribute_versions (profile_id, attribute, valid_from, value)
    SELECT profile_id, attribute, created_at, value FROM (
        SELECT profile_id, created_at, 'loyalty_tier' AS attribute, loyalty_tier AS value FROM profiles
        UNION ALL SELECT profile_id, created_at, 'loyalty_points', CAST(loyalty_points AS VARCHAR) FROM profiles
        UNION ALL SELECT profile_id, created_at, 'birth_year', CAST(birth_year AS VARCHAR) FROM profiles
        UNION ALL SELECT profile_id, created_at, 'gender', gender FROM profiles
        UNION ALL SELECT profile_id, created_at, 'country', country FROM profiles
        UNION ALL SELECT profile_id, created_at, 'city', city FROM profiles
    ) WHERE value IS NOT NULL;
    CREATE INDEX profile_attribute_versions_by_profile ON profile_attribute_versions (profile_id);
    """,
    # 13: the file's own index for 11: without it a page of members scanned every identity for its 50 profiles
    # (47 ms at a million profiles; 3 ms with it).
    FileOnly("""
    CREATE INDEX identities_by_profile ON identities (profile_id);
    """),
    # 14: a file load is recorded when it starts, in a transaction of its own, with its process and machine, so one
    # cut off by a restart is marked interrupted instead of vanishing without a trace. The batch it becomes names it,
    # committed with its rows: a load whose id no batch carries is still loading, or was interrupted.
    """
    CREATE TABLE loads (
        load_id BIGINT PRIMARY KEY,
        file_name VARCHAR NOT NULL,
        dataset VARCHAR NOT NULL,
        kind VARCHAR,
        actor VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        pid INTEGER,
        host VARCHAR,
        started_at TIMESTAMP NOT NULL,
        heartbeat_at TIMESTAMP,
        finished_at TIMESTAMP,
        error VARCHAR
    );
    ALTER TABLE batches ADD COLUMN load_id BIGINT;
    """,
    # 15: phone numbers stored as written become one canonical form, merging the profiles that share a number.
    DataFix("cai.identity:normalise_stored_phone_numbers"),
    # 16: Experience Platform's Phone_E.164 namespace (kept apart until now) is the Phone namespace: its numbers join
    # those stored under Phone, merging the profiles that share one.
    DataFix("cai.identity:normalise_stored_phone_numbers"),
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreUnavailable(CaiError):
    """The PostgreSQL database cannot be reached (wrong address, password or network)."""


@dataclass(frozen=True)
class Store:
    """Where the app keeps everything: a DuckDB file path or a ``postgresql://`` URL, and the secret that signs
    its models. ``str()`` never shows a password."""

    location: str
    model_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Path("postgresql://user:pw@host/db") collapses "//" to "/"; taken for a file name, that would put a DuckDB
        # file (and the password) into a folder on disk. Such a location is refused, never opened or shown.
        if re.match(r"postgres(?:ql)?:/(?!/)", self.location, flags=re.IGNORECASE):
            raise CaiError(
                "The database setting looks like a PostgreSQL address that lost the '//' after 'postgresql:' (it "
                "was handled as a file path somewhere). Give it as written: postgresql://user:password@host:port/"
                "database.")

    @property
    def is_postgres(self) -> bool:
        return self.location.startswith(POSTGRES_SCHEMES)

    @property
    def backend(self) -> str:
        return "postgres" if self.is_postgres else "duckdb"

    @property
    def path(self) -> Path:
        """The DuckDB file (only for the file backend)."""
        if self.is_postgres:
            raise TypeError("A PostgreSQL store has no file path.")
        return Path(self.location)

    @property
    def share_key(self) -> str:
        return self.location if self.is_postgres else str(self.path.resolve())

    def __str__(self) -> str:
        return redact(self.location)

    def __repr__(self) -> str:
        return f"Store({redact(self.location)!r})"


def redact(text: str) -> str:
    """``text`` with the password of every PostgreSQL URL in it (and any ``password=`` setting) masked."""
    def mask(match: re.Match) -> str:
        parts = urlsplit(match.group(0))
        if parts.password is None:
            return match.group(0)
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))

    text = re.sub(r"postgres(?:ql)?://[^\s'\"]+", mask, text)
    return re.sub(r"(password\s*=\s*)[^\s&'\"]+", r"\1***", text, flags=re.IGNORECASE)


def resolve(location: Store | str | os.PathLike | None = None, model_key: str | None = None) -> Store:
    """The store: an explicit location (``--db``, a path or a URL), else ``$CAI_DB``, else ``data/cai.duckdb``.
    The model key is the one given, else ``$CAI_MODEL_KEY``."""
    if isinstance(location, Store):
        return location
    text = os.fspath(location) if location else os.environ.get(DB_ENV_VAR) or str(DEFAULT_DB_PATH)
    return Store(text, model_key or os.environ.get(MODEL_KEY_ENV_VAR) or None)


def resolve_db_path(explicit: Store | str | os.PathLike | None = None) -> Store:
    """The store named by ``--db``, ``$CAI_DB`` or the default (see ``resolve``)."""
    return resolve(explicit)


def _is_lock_conflict(error: duckdb.Error) -> bool:
    text = str(error)
    return "Could not set lock" in text or "Conflicting lock" in text or "conflict" in text.lower()


def _is_write_conflict(error: duckdb.Error) -> bool:
    """A concurrent writer got there first: DuckDB's own conflicts, or PostgreSQL's (reported by the extension as
    plain errors carrying PostgreSQL's message)."""
    if isinstance(error, (duckdb.TransactionException, duckdb.ConstraintException)):
        return True
    text = str(error).lower()
    return any(sign in text for sign in ("duplicate key value", "could not serialize", "deadlock detected",
                                         "lock timeout"))


def _open_file(path: Path) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), config=_duckdb_config())
        except duckdb.IOException as error:
            if not _is_lock_conflict(error) or time.monotonic() > deadline:
                raise StoreBusy(
                    "The database is busy with another job (for example a scoring run). Try again in a minute."
                ) from error
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _duckdb_config() -> dict[str, str]:
    return {"memory_limit": os.environ.get(MEMORY_LIMIT_ENV_VAR) or DEFAULT_MEMORY_LIMIT}


def _postgres_extension() -> Path:
    """The extension file from the ``duckdb-extension-postgres`` package, under the name DuckDB loads it by.

    DuckDB derives an extension's entry point from its file name (``postgres_scanner``), so a link with that name
    points at the packaged file: nothing is downloaded, copied or installed into the home folder."""
    packaged = resources.files("duckdb_extension_postgres") / "extensions" / f"v{duckdb.__version__}" / \
        "postgres.duckdb_extension"
    folder = Path(tempfile.gettempdir()) / f"cai-duckdb-{duckdb.__version__}-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    link = folder / "postgres_scanner.duckdb_extension"
    if not link.exists():
        temporary = folder / f".{os.getpid()}.link"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(Path(str(packaged)))
        os.replace(temporary, link)
    return link


def _duckdb_for(*targets: Store) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that never downloads an extension, with PostgreSQL's loaded when a target needs it."""
    # An in-memory database spills into a temporary folder of its own process (by default: the working folder).
    spill = Path(tempfile.gettempdir()) / f"cai-duckdb-spill-{os.getpid()}"
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                                             "temp_directory": str(spill), **_duckdb_config()})
    if any(target.is_postgres for target in targets):
        con.execute(f"LOAD '{_postgres_extension()}'")
    return con


def _attach(con: duckdb.DuckDBPyConnection, target: Store, alias: str, read_only: bool = False) -> None:
    options = ["TYPE postgres"] if target.is_postgres else []
    if read_only:
        options.append("READ_ONLY")
    clause = f" ({', '.join(options)})" if options else ""
    try:
        con.execute(f"ATTACH {_quote(target.location)} AS {alias}{clause}")
    except duckdb.Error as error:
        raise StoreUnavailable(
            f"Could not open the database {target}: {redact(str(error))} Check the address, user and password in "
            "the app's settings."
        ) from None


def attached(location: Store | str | os.PathLike, alias: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with ``location`` attached as ``alias``: for databases other than the store (an
    activation's table destination), loaded the same offline way."""
    target = resolve(location)
    con = _duckdb_for(target)
    _attach(con, target, alias)
    return con


def _open_postgres(target: Store) -> duckdb.DuckDBPyConnection:
    con = _duckdb_for(target)
    # The pool's default health check costs two round trips (before and after) on each query, as much as a small
    # query itself; a connection idle for longer than the pool's idle timeout (a minute) is reopened instead.
    con.execute("SET pg_pool_health_check_query = ''")
    try:
        _attach(con, target, POSTGRES_CATALOG)
    except StoreUnavailable:
        con.close()
        raise
    con.execute(f"ATTACH ':memory:' AS {LOCAL_CATALOG}")
    con.execute(f"USE {POSTGRES_CATALOG}")
    return con


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _open(target: Store) -> duckdb.DuckDBPyConnection:
    return _open_postgres(target) if target.is_postgres else _open_file(target.path)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version' "
        "AND table_catalog = current_database()"
    ).fetchall()[0][0]
    if not exists:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchall()[0]
    return row[0] or 0


def postgres_execute(con: duckdb.DuckDBPyConnection, statement: str) -> None:
    """Runs one statement in PostgreSQL's own dialect (locks, say), inside the current transaction. The statement
    is ours, never user input."""
    con.execute(f"CALL postgres_execute({_quote(POSTGRES_CATALOG)}, {_quote(statement)})")


def _migrate(con: duckdb.DuckDBPyConnection, postgres: bool) -> None:
    while True:
        current = schema_version(con)
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"This database was written by a newer version of Customer AI (schema {current}; this app knows "
                f"up to {SCHEMA_VERSION}). Upgrade the app, or point it at another database."
            )
        if current == SCHEMA_VERSION:
            return
        try:
            _apply_migrations(con, postgres, current)
            return
        except duckdb.Error:
            if not postgres:
                raise
            # Replicas starting together: the lock makes the others wait until the first has upgraded, but their
            # transaction's snapshot (the extension's is REPEATABLE READ) was taken before the wait and does not see
            # its tables, so they fail redoing its work. A new transaction sees it done.
            con.execute("CALL pg_clear_cache()")
            if schema_version(con) == current:
                raise


def _apply_migrations(con: duckdb.DuckDBPyConnection, postgres: bool, current: int) -> None:
    con.begin()
    try:
        if postgres:
            # No lock timeout: another replica's upgrade may take a while, and waiting for it is the point.
            _limit_waits(con, lock_timeout=False)
            postgres_execute(con, f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        if current == 0:
            con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            migration = MIGRATIONS[version - 1]
            if isinstance(migration, PostgresOnly):
                if postgres:
                    postgres_execute(con, migration)
            elif isinstance(migration, FileOnly):
                if not postgres:
                    con.execute(migration)
            elif isinstance(migration, DataFix):
                _run_data_fix(migration, con)
            else:
                con.execute(_for_postgres(migration) if postgres else migration)
            con.execute("INSERT INTO schema_version VALUES (?, current_timestamp)", [version])
        con.commit()
    except BaseException:
        con.rollback()
        raise


def _run_data_fix(fix: DataFix, con: duckdb.DuckDBPyConnection) -> None:
    module, _, function = fix.partition(":")
    # Imported only now: the modules holding data fixes import this one.
    getattr(importlib.import_module(module), function)(con)


def _for_postgres(ddl: str) -> str:
    """A migration as PostgreSQL gets it: JSON columns become text there, because the extension sends updated
    values as text, which PostgreSQL refuses to put into a ``json`` column without a cast. DuckDB reads both the
    same way."""
    return re.sub(r"\bJSON\b", "VARCHAR", ddl)


def migrate(location: Store | str | os.PathLike) -> tuple[int, int]:
    """Sets up or upgrades the store's schema now; returns the versions before and after."""
    target = resolve(location)
    _migrated.discard(target.share_key)
    with connect(target, migrate=False) as con:
        before = schema_version(con)
        _migrate(con, target.is_postgres)
        _migrated.add(target.share_key)
        return before, schema_version(con)


@dataclass
class _LocalCopy:
    """A table of LOCAL_CATALOG, the version of the rows it holds, and the cursors whose unit of work reads it."""

    name: str
    version: tuple
    readers: set[int] = field(default_factory=set)


@dataclass
class _Shared:
    connection: duckdb.DuckDBPyConnection
    users: int = 0
    release_timer: threading.Timer | None = None
    # The current copy in LOCAL_CATALOG of each (table, key), least recently used first; and the copies no longer
    # current (a newer version, or evicted) that units of work still read, dropped when the last one ends.
    local_copies: OrderedDict[tuple[str, int], _LocalCopy] = field(default_factory=OrderedDict)
    retired_copies: list[_LocalCopy] = field(default_factory=list)
    local_generation: int = 0
    local_lock: threading.Lock = field(default_factory=threading.Lock)


_shared: dict[str, _Shared] = {}
_shared_lock = threading.RLock()
# One per store: DuckDB holds one handle per file in a process, so a file being closed (idle) must not be opened
# again by another thread until it is closed ("Unique file handle conflict"). Taken before ``_shared_lock``.
_gates: dict[str, threading.Lock] = {}
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


@contextmanager
def connect(location: Store | str | os.PathLike, migrate: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for one unit of work.

    Opening a DuckDB file costs about 12 ms, more than most of the app's queries, so units of work in one process
    share an open file through cursors. The file is closed once nobody has used it for ``IDLE_RELEASE_SECONDS``,
    which lets another process (a scheduled run from the command line, say) take it in turn; that process waits
    for it for up to ``BUSY_WAIT_SECONDS``. A PostgreSQL store is shared the same way but stays attached, since
    PostgreSQL takes many connections at once."""
    target = resolve(location)
    key = target.share_key
    # Opening may wait for another process, so it holds this store's gate but not the lock every store shares.
    with _gate(key):
        opened = None if key in _shared else _open(target)
        with _shared_lock:
            shared = _shared[key] if opened is None else _shared.setdefault(key, _Shared(opened))
            if shared.release_timer:
                shared.release_timer.cancel()
                shared.release_timer = None
            shared.users += 1
            cursor = shared.connection.cursor()
    try:
        if target.is_postgres:
            cursor.execute(f"USE {POSTGRES_CATALOG}")
        if migrate and key not in _migrated:
            with _migrate_lock:
                _migrate(cursor, target.is_postgres)
                _migrated.add(key)
        yield cursor
    except duckdb.Error as error:
        if target.is_postgres and redact(str(error)) != str(error):
            raise type(error)(redact(str(error))) from None
        raise
    finally:
        if target.is_postgres:
            _stop_reading_local_copies(shared, cursor)
        cursor.close()
        with _shared_lock:
            shared.users -= 1
            if shared.users == 0 and not target.is_postgres:
                shared.release_timer = threading.Timer(IDLE_RELEASE_SECONDS, _release_if_idle, (key, shared))
                shared.release_timer.daemon = True
                shared.release_timer.start()


def _gate(key: str) -> threading.Lock:
    with _shared_lock:
        return _gates.setdefault(key, threading.Lock())


def _release_if_idle(key: str, shared: _Shared) -> None:
    with _gate(key), _shared_lock:
        if shared.users == 0 and _shared.get(key) is shared:
            del _shared[key]
            if shared.release_timer:
                shared.release_timer.cancel()
            shared.connection.close()


def release(location: Store | str | os.PathLike | None = None) -> None:
    """Closes the shared connection to one store (every store without ``location``) now if nobody is using it:
    before copying a database file, or handing it to another process straight away."""
    with _shared_lock:
        held = [(key, _shared[key]) for key in ([resolve(location).share_key] if location else list(_shared))
                if key in _shared]
    for key, shared in held:
        _release_if_idle(key, shared)


atexit.register(release)


def is_empty(location: Store | str | os.PathLike) -> bool:
    """Whether the store holds nothing yet (no file, or a database without any data or instance): a first start."""
    target = resolve(location)
    if not target.is_postgres:
        return not target.path.exists()
    with connect(target) as con:
        return not con.execute("SELECT (SELECT count(*) FROM datasets) + (SELECT count(*) FROM instances)"
                               ).fetchall()[0][0]


@contextmanager
def transaction(location: Store | str | os.PathLike) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection inside one transaction: everything it writes lands together, or nothing does."""
    target = resolve(location)
    with connect(target) as con:
        con.begin()
        try:
            if target.is_postgres:
                _limit_waits(con, lock_timeout=True)
            yield con
            con.commit()
        except BaseException:
            con.rollback()
            raise


def _limit_waits(con: duckdb.DuckDBPyConnection, lock_timeout: bool) -> None:
    """Inside a PostgreSQL transaction: see IDLE_IN_TRANSACTION_SECONDS."""
    postgres_execute(con, "SET LOCAL idle_in_transaction_session_timeout = "
                          f"'{int(IDLE_IN_TRANSACTION_SECONDS * 1000)}ms'")
    if lock_timeout:
        postgres_execute(con, f"SET LOCAL lock_timeout = '{int(BUSY_WAIT_SECONDS * 1000)}ms'")


def write(location: Store | str | os.PathLike, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """Runs ``work`` in a transaction, retrying briefly when a concurrent writer conflicts with it.

    A key collision counts as a conflict too: two writers may pick the same next id at once; on the retry
    ``work`` sees the other's row, and its own checks (a taken name, say) answer with a clear message."""
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    delay = 0.02
    while True:
        try:
            with transaction(location) as con:
                return work(con)
        except duckdb.Error as error:
            if not _is_write_conflict(error):
                raise
            if time.monotonic() > deadline:
                raise StoreBusy("Someone else is saving changes right now. Try again in a moment.") from error
            time.sleep(delay)
            delay = min(delay * 2, 0.3)


def claim(location: Store | str | os.PathLike, work: Callable[[duckdb.DuckDBPyConnection], int | None],
          working: set[int]) -> int | None:
    """``write(location, work)`` for work that claims a row for this process (a delivery to send, a load) and
    returns its key, or None when there is nothing to claim. The key is in ``working`` (what ``worker_alive`` asks
    of this process) from before the claim commits, so that no recovery in between takes it for one whose process
    died; an attempt that did not commit leaves it out."""
    attempts: list[int] = []

    def claiming(con: duckdb.DuckDBPyConnection) -> int | None:
        key = work(con)
        # A key already in ``working`` is another claim's of this process (a retry may first try the id a
        # concurrent claim has just committed): only what this call added is its own to take back.
        if key is not None and key not in working:
            attempts.append(key)
            working.add(key)
        return key

    key = None
    try:
        key = write(location, claiming)
    finally:
        working.difference_update(set(attempts) - {key})
    return key


def query_df(location: Store | str | os.PathLike, sql: str, params: list | dict | None = None):
    """Runs one read query and returns a pandas DataFrame."""
    with connect(location) as con:
        return con.execute(sql, params or []).df()


def local_copy(location: Store | str | os.PathLike, con: duckdb.DuckDBPyConnection, table: str, key_column: str,
               key: int, version: tuple) -> str:
    """Where ``con`` (a connection from :func:`connect` to the store at ``location``, outside a transaction) reads
    the rows of ``table`` whose integer ``key_column`` is ``key``, rows that stay the same as long as ``version``
    does (a run's scores): a table name, for the same queries on either backend, valid until ``con``'s unit of work
    ends.

    On a DuckDB file that is the table itself. On PostgreSQL every query pulls the rows it reads over the network,
    which costs more than answering it (the segment builder measures a rule at each move of its slider); there the
    rows are read once per process into ``LOCAL_CATALOG`` and again, into a new table, when ``version`` changes.
    The ``MAX_LOCAL_COPIES`` most recently used stay; a copy is dropped only once no unit of work reads it, so a
    session never finds the table it was given gone. Identifiers are ours, never user input."""
    target = resolve(location)
    if not target.is_postgres:
        return table
    with _shared_lock:
        shared = _shared[target.share_key]
    with shared.local_lock:
        copy = shared.local_copies.get((table, key))
        if copy is None or copy.version != version:
            shared.local_generation += 1
            name = f"{LOCAL_CATALOG}.main.{table}_{int(key)}_{shared.local_generation}"
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM {table} WHERE {key_column} = ?", [key])
            if copy is not None:
                shared.retired_copies.append(copy)
            copy = shared.local_copies[(table, key)] = _LocalCopy(name, version)
        shared.local_copies.move_to_end((table, key))
        copy.readers.add(id(con))
        while len(shared.local_copies) > MAX_LOCAL_COPIES:
            shared.retired_copies.append(shared.local_copies.popitem(last=False)[1])
        _drop_unread_copies(shared)
    return copy.name


def _stop_reading_local_copies(shared: _Shared, con: duckdb.DuckDBPyConnection) -> None:
    with shared.local_lock:
        for copy in [*shared.local_copies.values(), *shared.retired_copies]:
            copy.readers.discard(id(con))
        _drop_unread_copies(shared)


def _drop_unread_copies(shared: _Shared) -> None:
    """Drops the copies no longer current that nobody reads (``shared.local_lock`` held), on a cursor of its own:
    the unit of work ending may have left its own in a failed transaction."""
    unread = [copy for copy in shared.retired_copies if not copy.readers]
    if unread:
        with shared.connection.cursor() as cursor:
            for copy in unread:
                cursor.execute(f"DROP TABLE IF EXISTS {copy.name}")
    shared.retired_copies = [copy for copy in shared.retired_copies if copy.readers]


def rows_with_keys(con: duckdb.DuckDBPyConnection, table: str, columns: list[str], key_column: str,
                   keys: list[int]):
    """The rows of ``table`` whose integer ``key_column`` is one of ``keys``, as a DataFrame (identifiers are ours).

    On PostgreSQL the extension pushes an IN list down as a range (min to max), so a page of 50 members spread over
    the whole table would pull all of it; there PostgreSQL answers the list itself, from an index."""
    keys = [int(key) for key in keys]
    if not keys:
        return con.execute(f"SELECT {', '.join(columns)} FROM {table} LIMIT 0").df()
    if _is_postgres_connection(con):
        statement = (f"SELECT {', '.join(columns)} FROM {table} WHERE {key_column} = ANY('{{"
                     f"{','.join(map(str, keys))}}}'::bigint[])")
        return con.execute("SELECT * FROM postgres_query(?, ?)", [POSTGRES_CATALOG, statement]).df()
    placeholders = ", ".join("?" * len(keys))
    return con.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {key_column} IN ({placeholders})", keys).df()


def _is_postgres_connection(con: duckdb.DuckDBPyConnection) -> bool:
    return con.execute("SELECT type FROM duckdb_databases() WHERE database_name = current_database()"
                       ).fetchall()[0][0] == "postgres"


def next_id(con: duckdb.DuckDBPyConnection, table: str, column: str) -> int:
    """The next free integer key of ``table.column`` (identifiers are ours, never user input)."""
    return con.execute(f"SELECT coalesce(max({column}), 0) + 1 FROM {table}").fetchall()[0][0]


def copy(source: Store | str | os.PathLike, target: Store | str | os.PathLike, replace: bool = False) -> dict[str, int]:
    """Copies every table of ``source`` into ``target`` (either kind to either kind) in one transaction on the
    target; returns the rows copied per table. A target that already holds data is refused unless ``replace``."""
    source, target = resolve(source), resolve(target)
    if source.share_key == target.share_key:
        raise CaiError("The source and the target are the same database.")
    if not source.is_postgres and not source.path.exists():
        raise CaiError(f"There is no database file at {source}.")
    for each in (source, target):
        migrate(each)
        release(each)
    con = _duckdb_for(source, target)
    try:
        _attach(con, source, "cai_source", read_only=True)
        _attach(con, target, "cai_target")
        tables = [name for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'cai_target' "
            "AND schema_name IN ('main', 'public') AND table_name <> 'schema_version' ORDER BY table_name").fetchall()]
        held = sum(con.execute(f"SELECT count(*) FROM cai_target.{table}").fetchall()[0][0] for table in tables)
        if held and not replace:
            raise CaiError(f"The target {target} already holds data ({held:,} rows). Copy into an empty database, "
                           "or replace its contents with --replace.")
        copied = {}
        con.begin()
        for table in tables:
            columns = ", ".join(name for (name,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = 'cai_target' AND table_name = ? "
                "ORDER BY column_index", [table]).fetchall())
            if replace:
                con.execute(f"DELETE FROM cai_target.{table}")
            con.execute(f"INSERT INTO cai_target.{table} ({columns}) SELECT {columns} FROM cai_source.{table}")
            copied[table] = con.execute(f"SELECT count(*) FROM cai_source.{table}").fetchall()[0][0]
        con.commit()
        return copied
    except duckdb.Error as error:
        raise CaiError(f"The copy failed and the target is unchanged: {redact(str(error))}") from None
    finally:
        con.close()


def process_alive(pid: int | None) -> bool:
    """Whether a process of this machine with that id still runs (a run or a delivery it started, say)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def this_host() -> str:
    """The machine a run is recorded on: ``$CAI_HOST`` where machines may share a host name (some container
    platforms), else the host name."""
    return os.environ.get(HOST_ENV_VAR) or socket.gethostname()


def start_heartbeat(location: Store | str | os.PathLike, table: str, key_column: str, key: int,
                    working_status: str) -> None:
    """On PostgreSQL, stamps the ``heartbeat_at`` of a row being worked on (a run, a delivery) every
    ``RUN_HEARTBEAT_SECONDS`` from a daemon thread, until its status is no longer ``working_status`` (finished,
    failed or marked interrupted) or the process ends. A DuckDB file is one machine's, where the process id tells
    whether the work is alive, so it gets no heartbeat (nor the writes). Identifiers are ours, never user input."""
    target = resolve(location)
    if not target.is_postgres:
        return

    def stamp(con: duckdb.DuckDBPyConnection) -> bool:
        # The extension takes no RETURNING on a PostgreSQL table, so the status is read back in the same transaction.
        con.execute(f"UPDATE {table} SET heartbeat_at = current_timestamp WHERE {key_column} = ? AND status = ?",
                    [key, working_status])
        return bool(con.execute(f"SELECT count(*) FROM {table} WHERE {key_column} = ? AND status = ?",
                                [key, working_status]).fetchall()[0][0])

    def beat() -> None:
        while not _heartbeats_stopping.wait(RUN_HEARTBEAT_SECONDS):
            try:
                working = write(target, stamp)
            except (duckdb.Error, CaiError):
                continue  # a missed beat is harmless; the next one tries again
            if not working:
                return

    thread = threading.Thread(target=beat, name=f"{table}-{key}-heartbeat", daemon=True)
    _heartbeats.append(thread)
    thread.start()


_heartbeats: list[threading.Thread] = []
_heartbeats_stopping = threading.Event()


def _stop_heartbeats() -> None:
    """At exit, before the shared connections close: a daemon thread killed inside DuckDB aborts the process."""
    _heartbeats_stopping.set()
    for thread in _heartbeats:
        thread.join(timeout=BUSY_WAIT_SECONDS + 5)


# Registered after release(), so it runs before it (atexit runs the last registered first).
atexit.register(_stop_heartbeats)


def worker_alive(con: duckdb.DuckDBPyConnection, table: str, key_column: str, key: int, pid: int | None,
                 host: str | None, postgres: bool, working_here: Callable[[int], bool]) -> bool:
    """Whether the process working on a row (a run, a delivery) still is: one on another machine sharing a
    PostgreSQL store while its heartbeat is recent; one of this machine while it runs (and, on PostgreSQL, beats);
    this very process while ``working_here(key)`` says so (a process id is reused once the work ends, by the next
    unit of work here)."""
    if postgres and host not in (None, this_host()):
        return _beating(con, table, key_column, key)
    if pid == os.getpid():
        return working_here(key)
    # A container restarted under the same host name numbers its processes again from 1, so the id may now be
    # another process's: on PostgreSQL, where every worker beats, a silent heartbeat says the worker is gone.
    return process_alive(pid) and (not postgres or _beating(con, table, key_column, key))


def _beating(con: duckdb.DuckDBPyConnection, table: str, key_column: str, key: int) -> bool:
    return bool(con.execute(
        f"SELECT count(*) FROM {table} WHERE {key_column} = ? AND coalesce(heartbeat_at, started_at) "
        "> current_timestamp::TIMESTAMP - to_seconds(?)", [key, RUN_STALE_SECONDS]).fetchall()[0][0])
