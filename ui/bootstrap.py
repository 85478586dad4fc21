"""First start: build the demo store and train the tutorial's instance so the dashboard is full at once.

The work runs in a thread of its own, not in the session that asked for it, so a reloaded page or a second tab
watches the same job instead of stopping it or starting another. It builds a side file that becomes the database
only once the tutorial's instance is scored (on PostgreSQL, the side file is copied in, in one transaction): a first
start killed halfway leaves no database, and the next start begins again, never from an empty store or an instance
in Error."""

from __future__ import annotations

import fcntl
import importlib
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from cai import store
from cai.errors import CaiError

if TYPE_CHECKING:
    import pandas as pd

# A watching page wakes at every report of the job, and looks again after this long without one.
POLL_SECONDS = 0.25
# What the pages and the first start import (pandas, scikit-learn, Altair: two seconds and more on a busy machine),
# loaded once the first start's progress is on screen, while the demo is generated; the entry script and this
# module import none of them.
PAGE_MODULES = ("cai.engine", "ui.cached")
# None builds the demo at its default size.
DEMO_PROFILES: int | None = None
# How much of the bar building the demo store takes; training and scoring fill the rest.
GENERATE_SHARE = 0.3

log = logging.getLogger(__name__)


@dataclass
class FirstStart:
    """One process's job of making the demo store at ``db``; sessions read its progress."""

    db: store.Store
    fraction: float = 0.0
    message: str = "Starting"
    error: str | None = None
    # The demo's events per month and type, once generated: shown while the model trains.
    events_per_month: pd.DataFrame | None = None
    done: threading.Event = field(default_factory=threading.Event)
    # Counts the job's reports, so a watching page wakes at each one instead of finding it on its next look.
    reports: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def report(self, fraction: float, message: str) -> None:
        with self._changed:
            self.fraction, self.message = min(max(fraction, 0.0), 1.0), message
            self.reports += 1
            self._changed.notify_all()

    def finish(self) -> None:
        with self._changed:
            self.done.set()
            self._changed.notify_all()

    def wait_for_report(self, seen: int, timeout: float) -> int:
        """Waits up to ``timeout`` seconds for a report after the ``seen``-th, or the end; returns the count now."""
        with self._changed:
            self._changed.wait_for(lambda: self.reports != seen or self.done.is_set(), timeout)
            return self.reports


_jobs: dict[str, FirstStart] = {}
_jobs_lock = threading.Lock()


def _local_folder(db: store.Store) -> Path:
    """The folder the first start works in: the database file's, or a temporary one for PostgreSQL."""
    return db.path.parent if not db.is_postgres else Path(tempfile.gettempdir()) / "cai-first-start"


def side_file(db: store.Store) -> Path:
    """Where the first start builds the store before it becomes ``db``."""
    if db.is_postgres:
        return _local_folder(db) / "demo.duckdb.first-start"
    return db.path.with_name(db.path.name + ".first-start")


def first_start(db: store.Store) -> FirstStart:
    """This process's first-start job for ``db``: the running one, else a new one (after a failed one too)."""
    key = db.share_key
    with _jobs_lock:
        job = _jobs.get(key)
        if job is None or (job.done.is_set() and job.error):
            job = _jobs[key] = FirstStart(db)
            threading.Thread(target=build, args=(job,), name="cai-first-start", daemon=True).start()
        return job


def build(job: FirstStart) -> None:
    """Makes the demo store at ``job.db`` unless it exists; any error is kept on the job for the pages to show."""
    db = job.db
    try:
        _local_folder(db).mkdir(parents=True, exist_ok=True)
        folder = os.open(_local_folder(db), os.O_RDONLY)
        try:
            # Another server on the same folder may be building this store: wait for it, then find it done.
            fcntl.flock(folder, fcntl.LOCK_EX)
            if not store.is_empty(db):
                job.report(1.0, "Demo ready")
            else:
                _build_side_file(job)
                _move_into_place(side_file(db), db)
        finally:
            os.close(folder)
    except Exception as error:  # noqa: BLE001 - the job's thread must report every failure to the pages
        log.exception("The first start failed")
        job.error = str(error) if isinstance(error, CaiError) else f"{type(error).__name__}: {error}"
    finally:
        job.finish()


def _build_side_file(job: FirstStart) -> None:
    from cai import demo, ingest, instances  # not at the top: see PAGE_MODULES

    profiles = DEMO_PROFILES or demo.DEFAULT_PROFILES
    side = side_file(job.db)
    store.release(side)
    for leftover in (side, side.with_name(side.name + ".wal")):
        leftover.unlink(missing_ok=True)
    job.report(0.02, f"Generating {profiles:,} demo profiles and their events")
    summary = demo.build_demo(side, profiles=profiles)
    instances.ensure_tutorial_instance(side)
    job.events_per_month = ingest.events_per_month(side)
    job.report(GENERATE_SHARE, f"{summary.events:,} events from {summary.first_event:%d %b %Y} to "
                               f"{summary.last_event:%d %b %Y}; training “{instances.TUTORIAL_INSTANCE}”")
    from cai import engine  # loaded by now: see PAGE_MODULES

    result = engine.run_instance(
        side, instances.TUTORIAL_INSTANCE,
        progress=lambda fraction, message: job.report(GENERATE_SHARE + (1 - GENERATE_SHARE) * fraction, message))
    if result.error:
        raise CaiError(f"Training the tutorial's model failed: {result.error}")
    job.report(1.0, f"Demo ready: {result.profiles_scored:,} profiles scored")


def _move_into_place(side: Path, db: store.Store) -> None:
    store.release(side)
    if db.is_postgres:
        try:
            store.copy(side, db)
        except CaiError:
            # Replicas starting together on one empty database each build the demo (the lock above is one
            # machine's); the first copy in wins and the others' is refused: theirs is the same demo.
            if store.is_empty(db):
                raise
            log.info("Another server built the store first; its copy is kept.")
        side.unlink()
        return
    db = db.path
    side_wal, db_wal = side.with_name(side.name + ".wal"), db.with_name(db.name + ".wal")
    if side_wal.exists():
        os.replace(side_wal, db_wal)
    os.replace(side, db)


# Stores this process has seen holding data: a store never becomes empty again, and on PostgreSQL asking costs a
# query on every rerun of every page.
_holding_data: set[str] = set()


def _holds_data(db: store.Store) -> bool:
    if db.share_key not in _holding_data and not store.is_empty(db):
        _holding_data.add(db.share_key)
    return db.share_key in _holding_data


def ensure_database(db: store.Store) -> bool:
    """Runs the first start if ``db`` is empty, showing its progress, and says whether it did; otherwise marks the
    runs of processes that died as interrupted (a millisecond). Warns in the sidebar when a PostgreSQL store has no
    model key."""
    if db.is_postgres and not db.model_key:
        st.sidebar.warning(store.NO_MODEL_KEY)
    if _holds_data(db):
        from cai import engine  # see PAGE_MODULES
        from ui import cached

        if engine.recover_interrupted_runs(db):
            # A run found interrupted now (its machine fell silent minutes ago) is still Training in cached reads.
            cached.invalidate()
        return False
    job = first_start(db)
    with st.status("First start: building the demo store and training the tutorial's model…",
                   expanded=True) as box:
        bar = st.progress(job.fraction, text=job.message)
        data_chart = st.empty()
        for module in PAGE_MODULES:
            importlib.import_module(module)
        from ui import cached  # loaded by now: see PAGE_MODULES
        from cai import charts

        chart_drawn, seen = False, 0
        while not job.done.is_set():
            seen = job.wait_for_report(seen, POLL_SECONDS)
            bar.progress(job.fraction, text=job.message)
            # The data the model is about to learn from, shown while it trains; the browser also loads its chart
            # renderer here rather than when the dashboard opens.
            if job.events_per_month is not None and not chart_drawn:
                cached.chart(data_chart, charts.events_per_month, job.events_per_month, width="stretch")
                chart_drawn = True
        if job.error:
            box.update(label="The first start did not finish", state="error")
            from ui.components import plain  # loaded by now: see PAGE_MODULES

            st.error(f"{plain(job.error)} Reload the page to try again.")
            st.stop()
        box.update(label=job.message, state="complete", expanded=False)
    return True
