"""Point in time: the default as-of leaves out a partly loaded last day, and (a documented limit) an identity merge
made after a snapshot already counts the merged customer's earlier anonymous events at that snapshot."""

from __future__ import annotations

import datetime as dt

import pytest

from cai import engine, features, ingest, instances, store
from cai.instances import Definition, Goal

pytestmark = pytest.mark.both_backends

FIRST_DAY = dt.date(2026, 3, 1)
DAYS = 40


def _load_days(db, last_day_events: int) -> dt.date:
    """Twenty page views a day from 20 customers for ``DAYS`` days, then ``last_day_events`` on the last day."""
    rows = ["timestamp,event_type,email"]
    for offset in range(DAYS):
        day = FIRST_DAY + dt.timedelta(days=offset)
        count = last_day_events if offset == DAYS - 1 else 20
        rows += [f"{day}T{8 + index % 10:02d}:00:00Z,web.webpagedetails.pageViews,c{index}@example.com"
                 for index in range(count)]
    ingest.ingest_bytes(db, "\n".join(rows).encode(), "days.csv")
    return FIRST_DAY + dt.timedelta(days=DAYS - 1)


def _default_as_of(db) -> dt.date:
    with store.connect(db) as con:
        return features.default_as_of(con)


def test_a_partly_loaded_last_day_is_left_out_of_the_default_as_of(empty_db):
    last_day = _load_days(empty_db, last_day_events=6)
    assert _default_as_of(empty_db) == last_day
    instances.create_instance(empty_db, Definition(name="views", goals=(Goal("web.webpagedetails.pageViews"),)))
    assert engine.run_instance(empty_db, "views").as_of == last_day.isoformat()


def test_a_full_or_merely_quiet_last_day_counts_and_the_default_is_the_day_after(empty_db):
    last_day = _load_days(empty_db, last_day_events=11)
    assert _default_as_of(empty_db) == last_day + dt.timedelta(days=1)


def test_sparse_data_keeps_the_day_after_the_last_event(empty_db):
    ingest.ingest_bytes(empty_db, b"timestamp,event_type,email\n2026-03-01T10:00:00Z,search,a@b.io\n"
                                  b"2026-03-20T10:00:00Z,search,a@b.io\n", "sparse.csv")
    assert _default_as_of(empty_db) == dt.date(2026, 3, 21)


def test_a_merge_after_a_snapshot_moves_the_anonymous_events_into_it_as_documented(empty_db):
    """Known limit (README, 'How a score is made'): features follow today's identity graph."""
    ingest.ingest_bytes(empty_db, b"timestamp,event_type,email\n2026-03-02T10:00:00Z,search,known@x.io\n",
                        "known.csv")
    ingest.ingest_bytes(empty_db, b"timestamp,event_type,ecid\n2026-03-03T10:00:00Z,search,998877\n"
                                  b"2026-03-04T10:00:00Z,search,998877\n", "anonymous.csv")
    definition = Definition(name="search", goals=(Goal("search"),), eligible_days=30)
    with store.connect(empty_db) as con:
        before = features.build(con, definition, [dt.date(2026, 3, 10)], with_labels=False)
    assert sorted(before["searches_30d"]) == [1, 2]

    # Linked on 29 November, long after the snapshot of 10 March.
    ingest.ingest_bytes(empty_db, b"email,ecid\nknown@x.io,998877\n", "link.csv", kind="profiles")
    with store.connect(empty_db) as con:
        after = features.build(con, definition, [dt.date(2026, 3, 10)], with_labels=False)
        merged_at = con.execute("SELECT min(merged_at) FROM profile_merges").fetchall()[0][0]
    assert merged_at.date() > dt.date(2026, 3, 10)
    assert after["searches_30d"].tolist() == [3]
