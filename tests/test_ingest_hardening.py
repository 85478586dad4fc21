"""Ingestion under hostile or careless input: stitching at size, identity values, memory limits, refusals."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys

import pandas as pd
import pytest

from cai import ingest, store
from cai.errors import ValidationError
from tests.conftest import ROOT


def _events(records: list[dict]) -> bytes:
    return json.dumps(records).encode()


def _event(number: int, ids: dict) -> dict:
    return {"_id": f"e{number}", "timestamp": "2026-02-01T10:00:00Z", "eventType": "search",
            "identityMap": {namespace: [{"id": value} for value in values] for namespace, values in ids.items()}}


def _scalar(db, sql: str):
    with store.connect(db) as con:
        return con.execute(sql).fetchall()[0][0]


def test_a_chain_of_ten_thousand_linked_records_stitches_into_one_profile(empty_db):
    chain = [_event(i, {"ECID": [f"E{i}", f"E{i + 1}"]}) for i in range(10_000)]
    report = ingest.ingest_bytes(empty_db, _events(chain), "chain.json")
    assert (report.rows_accepted, report.profiles_created) == (10_000, 1)
    assert _scalar(empty_db, "SELECT count(DISTINCT profile_id) FROM identities") == 1


def test_a_shared_kiosk_ecid_joins_thousands_of_emails_and_merges_existing_profiles(empty_db):
    people = [_event(i, {"Email": [f"p{i}@shop.test"]}) for i in range(3_000)]
    assert ingest.ingest_bytes(empty_db, _events(people), "people.json").profiles_created == 3_000
    kiosk = [_event(10_000 + i, {"Email": [f"p{i}@shop.test"], "ECID": ["KIOSK-1"]}) for i in range(3_000)]
    report = ingest.ingest_bytes(empty_db, _events(kiosk), "kiosk.json")
    assert report.profiles_merged == 2_999
    assert _scalar(empty_db, "SELECT count(*) FROM profiles") == 1


def test_emails_match_whatever_their_case_and_spaces(empty_db):
    ingest.ingest_bytes(empty_db, b"timestamp,event_type,email\n2026-01-01,search,Ana.Lima@Shop.TEST\n", "a.csv")
    ingest.ingest_bytes(empty_db, b"email,first_name\n  ana.lima@shop.test ,Ana\n", "people.csv")
    ingest.ingest_bytes(empty_db, _events([_event(1, {"EMAIL": ["ANA.LIMA@SHOP.TEST"]})]), "b.json")
    assert _scalar(empty_db, "SELECT count(*) FROM profiles") == 1
    assert _scalar(empty_db, "SELECT string_agg(id_value, ',') FROM identities") == "ana.lima@shop.test"


@pytest.mark.parametrize("bad_value, reason", [
    ("null", "holds 'null'"), ("UNDEFINED", "holds 'UNDEFINED'"), ("0", "holds '0'"), ("none", "holds 'none'"),
    ("x" * 257, "longer than 256"), ("a\x00b", "control characters"), (["E1"], "nested object"),
    ({"id": "E1"}, "nested object"), (True, "true/false"), (float("inf"), "not an identity value"),
])
def test_values_that_are_not_identities_refuse_their_row_and_link_nobody(empty_db, bad_value, reason):
    records = [_event(1, {"ECID": ["SHARED"]}), {**_event(2, {}), "identityMap": {"ECID": [{"id": bad_value}]}}]
    with pytest.raises(ValidationError) as caught:
        ingest.ingest_bytes(empty_db, json.dumps(records).encode(), "junk.json")
    assert any(line.startswith("Row 2:") and reason in line for line in caught.value.problems)
    assert not empty_db.exists() or _scalar(empty_db, "SELECT count(*) FROM identities") == 0


def test_an_empty_identity_value_is_absent_not_a_link(empty_db):
    records = [_event(1, {"ECID": ["", "E1"]}), _event(2, {"ECID": ["  ", "E2"]})]
    assert ingest.ingest_bytes(empty_db, _events(records), "blank.json").profiles_created == 2


@pytest.mark.parametrize("make, max_rows, message", [
    (lambda: b"[" + b",".join([b"{}"] * 20_000) + b"]", ingest.MAX_ROWS, "records that small"),
    (lambda: b"\n".join([b"{}"] * 20_000), ingest.MAX_ROWS, "records that small"),
    (lambda: b"[" + b",".join([json.dumps(_event(i, {"ECID": ["E"]})).encode() for i in range(1_001)]) + b"]",
     1_000, "more than 1,000 records"),
])
def test_json_that_decodes_to_too_many_records_is_refused_before_it_fills_memory(empty_db, monkeypatch, make,
                                                                                   max_rows, message):
    monkeypatch.setattr(ingest, "MAX_ROWS", max_rows)
    with pytest.raises(ValidationError, match=message):
        ingest.ingest_bytes(empty_db, make(), "many.json", kind="events")


def test_a_small_parquet_or_csv_that_decodes_to_too_many_rows_is_refused(empty_db, monkeypatch, tmp_path):
    monkeypatch.setattr(ingest, "MAX_ROWS", 1_000)
    frame = pd.DataFrame({"timestamp": ["2026-01-01"] * 5_000, "event_type": "search", "ecid": "E1"})
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    with pytest.raises(ValidationError, match="decodes to 5,000 rows"):
        ingest.ingest_bytes(empty_db, buffer.getvalue(), "tiny.parquet")
    with pytest.raises(ValidationError, match="decodes to 5,000 rows"):
        ingest.ingest_bytes(empty_db, frame.to_csv(index=False).encode(), "rows.csv")
    monkeypatch.setattr(ingest, "MAX_CELLS", 3)
    with pytest.raises(ValidationError, match="cells"):
        ingest.ingest_bytes(empty_db, frame.head(2).to_csv(index=False).encode(), "wide.csv")


def test_a_gzip_bomb_and_one_huge_record_are_refused(empty_db, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", 100_000)
    bomb = gzip.compress(b"[" + b" " * 1_000_000 + b"]")
    with pytest.raises(ValidationError, match="expands to more than"):
        ingest.ingest_bytes(empty_db, bomb, "bomb.json.gz")
    monkeypatch.setattr(ingest, "MAX_RECORD_CHARS", 1_000)
    huge = _events([{**_event(1, {"ECID": ["E1"]}), "note": "x" * 2_000}])
    with pytest.raises(ValidationError) as caught:
        ingest.ingest_bytes(empty_db, huge, "huge.json")
    assert caught.value.problems == ["Row 1: the record is larger than 0 MB"]


def test_a_refused_file_leaves_no_dataset_so_it_loads_next_time_as_the_right_kind(empty_db):
    people = b"email,first_name\nana@shop.test,Ana\n"
    with pytest.raises(ValidationError):
        ingest.ingest_bytes(empty_db, people, "people.csv", kind="events")
    assert ingest.datasets_overview(empty_db).empty and ingest.batches(empty_db).empty
    report = ingest.ingest_bytes(empty_db, people, "people.csv", kind="profiles")
    assert (report.dataset, report.profiles_created) == ("people", 1)


def test_a_non_numeric_or_unknown_profile_id_is_refused_at_once_not_reported_busy(demo_db):
    for value, message in [("abc", "`profile_id` is not a number"), ("1.5", "not a whole number"),
                           ("-3", "not a whole number"), ("99999999", "do not exist")]:
        content = f"timestamp,event_type,profile_id\n2026-01-01,search,{value}\n".encode()
        with pytest.raises(ValidationError) as caught:
            ingest.ingest_bytes(demo_db, content, "ids.csv")
        assert message in " ".join([str(caught.value), *caught.value.problems])


def test_the_command_line_answers_a_refused_file_with_one_message_and_exit_1(tmp_path):
    bad = ROOT / "tests" / "data" / "bad_inputs"
    for name in ("deep_nesting.json", "quantity_beyond_64_bit.json", "timestamp_is_object.json"):
        result = subprocess.run([sys.executable, "-m", "cai", "--db", str(tmp_path / "cli.duckdb"), "ingest",
                                 str(bad / name), "--kind", "events"], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 1 and "Traceback" not in result.stderr, name
        assert result.stderr.startswith((name, "This file was not loaded")), result.stderr


def test_gzip_is_told_by_its_content_and_every_member_of_it_is_read(empty_db):
    first, second = [_event(1, {"ECID": ["G1"]})], [_event(2, {"ECID": ["G2"]})]
    unnamed = ingest.ingest_bytes(empty_db, gzip.compress(_events(first)), "export.json", dataset="gz")
    concatenated = gzip.compress(b"\n".join(json.dumps(r).encode() for r in first)) + gzip.compress(
        b"\n" + b"\n".join(json.dumps(r).encode() for r in second))
    joined = ingest.ingest_bytes(empty_db, concatenated, "parts.jsonl.gz", dataset="gz")
    assert (unnamed.rows_accepted, joined.rows_accepted, joined.rows_duplicate) == (1, 1, 1)
    assert _scalar(empty_db, "SELECT count(*) FROM events") == 2


def test_a_gzip_file_cut_short_is_refused_even_at_a_record_boundary(empty_db):
    lines = b"\n".join(json.dumps(_event(n, {"ECID": [f"CUT{n}"]})).encode() for n in range(2000))
    compressed = gzip.compress(lines)
    with pytest.raises(ValidationError, match="cut short"):
        ingest.ingest_bytes(empty_db, compressed[:-8], "cut.jsonl.gz")  # the trailer (checksum, size) is gone
    assert _scalar(empty_db, "SELECT count(*) FROM events") == 0


def test_events_without_an_id_are_added_once_however_often_their_file_is_loaded(empty_db):
    first = (b"timestamp,event_type,email,value\n2026-01-01T10:00:00Z,commerce.purchases,ana@shop.test,10\n"
             b"2026-01-01T10:00:00Z,commerce.purchases,ana@shop.test,10\n"  # bought twice that second: kept
             b"2026-01-02T10:00:00Z,search,ana@shop.test,\n")
    # The next export overlaps the first by a day, written differently (case, offset, number format).
    overlapping = (b"timestamp,event_type,email,value\n2026-01-02T11:00:00+01:00,search,Ana@Shop.test,\n"
                   b"2026-01-03T10:00:00Z,commerce.purchases,ana@shop.test,12.50\n")
    reports = [ingest.ingest_bytes(empty_db, data, name, dataset="shop") for data, name in
               ((first, "day1.csv"), (first, "day1.csv"), (overlapping, "day2.csv"))]
    assert [(r.rows_accepted, r.rows_duplicate) for r in reports] == [(3, 0), (0, 3), (1, 1)]
    assert _scalar(empty_db, "SELECT count(*) FROM events") == 4
    assert _scalar(empty_db, "SELECT sum(value) FROM events") == 32.5


def test_the_kind_of_a_table_is_told_by_its_columns_not_by_a_word_in_its_first_bytes(empty_db, tmp_path):
    # A Parquet file keeps its schema at its end: the word `timestamp` is not in its first kilobytes.
    events = pd.DataFrame({"timestamp": pd.to_datetime(["2026-01-01T10:00:00Z"] * 3000),
                           "event_type": ["search"] * 3000, "email": [f"u{n}@shop.test" for n in range(3000)]})
    buffer = io.BytesIO()
    events.to_parquet(buffer)
    assert ingest.ingest_bytes(empty_db, buffer.getvalue(), "events.parquet").kind == "events"
    crm = b"email,first_name,last_order_timestamp,note\nbo@shop.test,Bo,2026-01-01,see timestamp\n"
    assert ingest.ingest_bytes(empty_db, crm, "crm.csv").kind == "profiles"
    assert _scalar(empty_db, "SELECT count(*) FROM events") == 3000


def test_an_email_without_an_at_sign_refuses_its_row_instead_of_stitching_customers_together(empty_db):
    # A CRM export writes 'unknown' where it has no address: as an identity it would make one customer of all.
    crm = b"crmid,email\nC-1,unknown\nC-2,unknown\nC-3,ana@shop.test\n"
    with pytest.raises(ValidationError) as refused:
        ingest.ingest_bytes(empty_db, crm, "crm.csv", kind="profiles")
    assert refused.value.problems == ["Row 2: `Email` has no @, so it is not an email address",
                                      "Row 3: `Email` has no @, so it is not an email address"]
    assert _scalar(empty_db, "SELECT count(*) FROM profiles") == 0


def test_a_file_whose_kind_is_told_goes_to_events_on_any_sign_of_one(empty_db):
    """An events file without its time column is refused as events (saying so), never read as profiles, which
    would have filed its columns into customers' attributes."""
    with pytest.raises(ValidationError, match="timestamp"):
        ingest.ingest_bytes(empty_db, b"date,event_type,email\n2026-03-01,commerce.purchases,a@shop.test\n",
                            "events.csv")
    with store.connect(empty_db) as con:
        assert con.execute("SELECT count(*) FROM profiles").fetchall()[0][0] == 0
    report = ingest.ingest_bytes(empty_db, b"email,first_name\na@shop.test,Ann\n", "crm.csv")
    assert (report.kind, report.rows_accepted) == ("profiles", 1)
