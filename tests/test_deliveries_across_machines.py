"""A delivery in progress in one process (on another machine, for PostgreSQL) is not sent again by another process,
and is retried once that process, or its machine, is gone: the same liveness rule as runs."""
import os
import subprocess
import sys
import time

import pytest

from cai import activation, destinations, instances, segments, store
from tests.conftest import ROOT

pytestmark = pytest.mark.both_backends
SEGMENT = "Across machines - high"
# Delivers the segment and stops for good as it starts writing the members file, as a machine that hangs would.
HOLD_A_DELIVERY = """
import sys, time
from fsspec.implementations import local
from cai import activation, store
store.RUN_HEARTBEAT_SECONDS = 0.2
def hang(self, path, *args, **kwargs):
    print("sending", flush=True)
    time.sleep(600)
local.LocalFileSystem._open = hang
activation.deliver_pending(sys.argv[1])
"""


@pytest.fixture
def delivery_held_elsewhere(trained_db, tmp_path):
    definition = instances.get_instance(trained_db, instances.TUTORIAL_INSTANCE).definition
    segments.create_segment(trained_db, SEGMENT, segments.bucket_rule(
        instances.TUTORIAL_INSTANCE, "high", definition.low_threshold, definition.high_threshold))
    destinations.create_destination(trained_db, destinations.Destination("share", "folder", str(tmp_path / "share")))
    activation.activate(trained_db, SEGMENT, "share")
    store.release(trained_db)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_A_DELIVERY, str(trained_db)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, store.HOST_ENV_VAR: "machine-a"})
    assert holder.stdout.readline().strip() == "sending"
    yield holder
    holder.kill()
    holder.wait()


def _finished_process_id() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(finished.stdout)


def _delivery(db) -> tuple:
    with store.connect(db) as con:
        return con.execute("SELECT status, host, attempts, heartbeat_at FROM deliveries").fetchall()[0]


def test_a_delivery_in_another_process_is_not_sent_twice_and_is_retried_once_it_is_gone(
        trained_db, delivery_held_elsewhere, backend, monkeypatch, tmp_path):
    [result] = activation.deliver_pending(trained_db, segment=SEGMENT)
    status, host, attempts, first_beat = _delivery(trained_db)
    assert (result.status, status, host, attempts) == ("up to date", activation.SENDING, "machine-a", 1)
    assert not list((tmp_path / "share").rglob("manifest.json"))
    if backend == "postgres":
        deadline = time.monotonic() + 30
        while _delivery(trained_db)[3] == first_beat and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _delivery(trained_db)[3] > first_beat
        # Machine A's process id means nothing here: one that no process of this machine has must not matter.
        # Retried: the other process's heartbeat may update the row between this update's read and its write.
        store.write(trained_db, lambda con: con.execute("UPDATE deliveries SET pid = ?", [_finished_process_id()]))
        assert activation.deliver_pending(trained_db, segment=SEGMENT)[0].status == "up to date"

    delivery_held_elsewhere.kill()
    delivery_held_elsewhere.wait()
    monkeypatch.setattr(store, "RUN_STALE_SECONDS", 1.0)
    deadline = time.monotonic() + 60
    while (result := activation.deliver_pending(trained_db, segment=SEGMENT)[0]).status != activation.SUCCESS \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert result.status == activation.SUCCESS and result.members > 0
    assert _delivery(trained_db)[:3] == (activation.SUCCESS, store.this_host(), 2)
    assert len(list((tmp_path / "share").rglob("manifest.json"))) == 1
