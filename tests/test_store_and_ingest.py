"""The store, identity stitching, the demo generator and every ingestion format."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from cai import audit, demo, ingest, online_retail, store
from cai.errors import SchemaTooNew, ValidationError
from tests.conftest import ROOT

pytestmark = pytest.mark.both_backends
ONLINE_RETAIL = ROOT.parent / "shared" / "datasets" / "online-retail" / "online_retail.csv.gz"


def _counts(db: Path) -> tuple[int, int, int]:
    with store.connect(db) as con:
        return con.execute("SELECT (SELECT count(*) FROM profiles), (SELECT count(*) FROM identities), "
                           "(SELECT count(*) FROM events)").fetchall()[0]


def _xdm(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records))
    return path


def test_cai_never_imports_streamlit():
    code = ("import sys, pkgutil, importlib, cai\n"
            "for m in pkgutil.walk_packages(cai.__path__, 'cai.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "print('streamlit' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"


def test_new_database_gets_the_current_schema(empty_db):
    with store.connect(empty_db) as con:
        assert store.schema_version(con) == store.SCHEMA_VERSION


def test_an_older_database_is_upgraded_on_open(tmp_path):
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)")
    con.execute(store.MIGRATIONS[0])
    con.execute("INSERT INTO schema_version VALUES (1, current_timestamp)")
    con.close()
    with store.connect(db) as con:
        assert store.schema_version(con) == store.SCHEMA_VERSION
        assert con.execute("SELECT count(*) FROM segments").fetchall()[0][0] == 0


def test_a_newer_database_is_refused_with_a_clear_message(tmp_path):
    db = tmp_path / "new.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)")
    con.execute("INSERT INTO schema_version VALUES (99, current_timestamp)")
    con.close()
    with pytest.raises(SchemaTooNew, match="newer version"):
        with store.connect(db):
            pass


def test_demo_is_deterministic_and_holds_the_tutorial_profile(tmp_path):
    first = demo.build_demo(tmp_path / "a.duckdb", profiles=2_000, seed=3)
    second = demo.build_demo(tmp_path / "b.duckdb", profiles=2_000, seed=3)
    assert first == second
    assert first.profiles == 2_000 and first.events > 20_000
    assert (first.last_event - first.first_event).days >= 240
    with store.connect(tmp_path / "a.duckdb") as con:
        owner = con.execute("SELECT profile_id FROM identities WHERE namespace = 'Email' AND id_value = ?",
                            [demo.TUTORIAL_EMAIL]).fetchall()
        types = {row[0] for row in con.execute("SELECT DISTINCT event_type FROM events").fetchall()}
    assert owner == [(1,)]
    assert types == set(demo.EVENT_TYPES)


def test_xdm_file_ingests_once_and_dedupes_by_id(demo_db, tmp_path):
    records = [
        {"_id": "a1", "timestamp": "2026-10-01T10:00:00Z", "eventType": "commerce.productViews",
         "endUserIDs": {"_experience": {"emailid": {"id": "new@shop.test"}, "mcid": {"id": "ECID-9"}}}},
        {"_id": "a2", "xdm:timestamp": "2026-10-02T10:00:00+02:00",
         "commerce": {"purchases": {"value": 1}, "order": {"priceTotal": 55.5}},
         "identityMap": {"ECID": [{"id": "ECID-9", "primary": True}]}},
    ]
    path = _xdm(tmp_path / "events.json", records)
    before = _counts(demo_db)
    report = ingest.ingest_file(demo_db, path)
    assert (report.rows_accepted, report.profiles_created) == (2, 1)
    again = ingest.ingest_file(demo_db, path)
    assert (again.rows_accepted, again.rows_duplicate) == (0, 2)
    profiles, identities, events = _counts(demo_db)
    assert (profiles, identities, events) == (before[0] + 1, before[1] + 2, before[2] + 2)
    with store.connect(demo_db) as con:
        purchase = con.execute("SELECT event_type, value, ts FROM events WHERE xdm_id = 'a2'").fetchall()[0]
    assert purchase[0] == "commerce.purchases" and purchase[1] == 55.5
    assert purchase[2].hour == 8  # +02:00 normalised to UTC


def test_a_load_is_audited_under_who_did_it_and_a_refused_one_is_not(empty_db):
    ingest.ingest_bytes(empty_db, b"timestamp,event_type,email\n2026-01-01,search,a@b.c\n", "ok.csv",
                        actor="ana@example.com")
    with pytest.raises(ValidationError):
        ingest.ingest_bytes(empty_db, b"", "bad.csv", actor="ana@example.com")
    log = audit.entries(empty_db, actor="ana@example.com")
    assert log[["action", "object_kind", "object_name"]].values.tolist() == [["load", "dataset", "ok"]]


def test_an_event_linking_an_email_to_an_existing_ecid_merges_profiles(demo_db, tmp_path):
    with store.connect(demo_db) as con:
        ecid_of_2 = con.execute("SELECT id_value FROM identities WHERE profile_id = 2 AND namespace = 'ECID'"
                                ).fetchall()[0][0]
    link = [{"_id": "m1", "timestamp": "2026-10-05T10:00:00Z", "eventType": "search",
             "identityMap": {"Email": [{"id": demo.TUTORIAL_EMAIL}], "ECID": [{"id": ecid_of_2}]}}]
    before = _counts(demo_db)
    report = ingest.ingest_file(demo_db, _xdm(tmp_path / "link.json", link))
    assert report.profiles_merged == 1
    with store.connect(demo_db) as con:
        owners = con.execute("SELECT DISTINCT profile_id FROM identities WHERE profile_id IN (1, 2)").fetchall()
        events_of_2 = con.execute("SELECT count(*) FROM events WHERE profile_id = 2").fetchall()[0][0]
    assert owners == [(1,)] and events_of_2 == 0
    assert _counts(demo_db)[0] == before[0] - 1


BAD_INPUTS = ROOT / "tests" / "data" / "bad_inputs"
ACCEPTED_INPUTS = ROOT / "tests" / "data" / "accepted_inputs"
EXPECTED_MESSAGES = json.loads((BAD_INPUTS / "expected.json").read_text())


def _refused_without_change(db, content: bytes, name: str) -> str:
    """Ingests a bad file (profiles when its name says so); returns the whole message, after checking that nothing
    in the store changed, not even its datasets."""
    before = _counts(db), ingest.datasets_overview(db)["dataset"].tolist()
    with pytest.raises(ValidationError) as caught:
        ingest.ingest_bytes(db, content, name, kind="profiles" if name.startswith("profiles_") else "events")
    assert (_counts(db), ingest.datasets_overview(db)["dataset"].tolist()) == before
    return " ".join([str(caught.value), *caught.value.problems])


@pytest.fixture(scope="module")
def catalogue_db(tmp_path_factory) -> Path:
    """One demo store for the whole catalogue: each refused file must leave it unchanged, so they can share it."""
    db = tmp_path_factory.mktemp("catalogue") / "demo.duckdb"
    demo.build_demo(db, profiles=2_000)
    return db


@pytest.mark.parametrize("name", sorted(EXPECTED_MESSAGES))
def test_each_bad_file_in_the_catalogue_is_refused_with_its_message(catalogue_db, name):
    assert EXPECTED_MESSAGES[name] in _refused_without_change(catalogue_db, (BAD_INPUTS / name).read_bytes(), name)


def test_the_catalogue_has_an_expected_message_for_every_file():
    assert set(EXPECTED_MESSAGES) == {path.name for path in BAD_INPUTS.iterdir()} - {"expected.json"}


def test_a_one_megabyte_field_and_a_file_over_the_limit_are_refused(demo_db, monkeypatch):
    # Made here rather than kept in the repository, for their size.
    huge = b"timestamp,event_type,email,sku\n2026-01-01,search,a@b.c," + b"x" * 1_000_000 + b"\n"
    assert "longer than" in _refused_without_change(demo_db, huge, "huge_field.csv")
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", 1_000)
    assert "upload limit" in _refused_without_change(demo_db, b"timestamp,event_type,email\n" * 100, "big.csv")


def test_mixed_time_zones_are_normalised_to_utc(empty_db):
    ingest.ingest_file(empty_db, ACCEPTED_INPUTS / "mixed_time_zones.json")
    with store.connect(empty_db) as con:
        stamps = con.execute("SELECT DISTINCT ts FROM events").fetchall()
    assert stamps == [(dt.datetime(2026, 1, 1, 8, 0),)]


def test_duplicate_ids_in_a_file_are_loaded_once_and_reported(empty_db):
    report = ingest.ingest_file(empty_db, ACCEPTED_INPUTS / "duplicate_ids.json")
    assert (report.rows_accepted, report.rows_duplicate) == (2, 1)


def test_a_file_with_bad_rows_names_the_rows_and_records_a_failed_batch_in_its_existing_dataset(demo_db):
    ingest.ingest_bytes(demo_db, b"timestamp,event_type,email\n2026-01-01,search,a@b.c\n", "rows.csv")
    content = b"timestamp,event_type,email\n2026-01-01,search,a@b.c\n,search,a@b.c\n2026-02-01,search,\n"
    with pytest.raises(ValidationError) as caught:
        ingest.ingest_bytes(demo_db, content, "rows.csv")
    assert caught.value.problems == ["Row 3: no timestamp", "Row 4: no identity (Email, ECID or another namespace)"]
    failed = ingest.batches(demo_db).iloc[0]
    assert failed["status"] == "failed" and failed["rows_rejected"] == 2


def test_csv_and_parquet_events_and_profile_files_load(empty_db, tmp_path):
    events = pd.DataFrame({"timestamp": ["2026-03-01T10:00:00", "2026-03-02T10:00:00"],
                           "event_type": ["commerce.purchases", "search"], "email": ["x@y.z", "x@y.z"],
                           "crmid": ["C1", None], "value": [20.0, None]})
    events.to_parquet(tmp_path / "events.parquet")
    report = ingest.ingest_file(empty_db, tmp_path / "events.parquet")
    assert (report.kind, report.rows_accepted, report.profiles_created) == ("events", 2, 1)
    (tmp_path / "people.csv").write_text("email,first_name,loyalty_tier,favourite_colour\nx@y.z,Ana,gold,green\n")
    profile_report = ingest.ingest_file(empty_db, tmp_path / "people.csv")
    assert profile_report.kind == "profiles" and profile_report.profiles_created == 0
    with store.connect(empty_db) as con:
        row = con.execute("SELECT first_name, loyalty_tier, attributes FROM profiles").fetchall()[0]
    assert row[:2] == ("Ana", "gold") and json.loads(row[2]) == {"favourite_colour": "green"}


def test_injection_text_is_stored_verbatim(empty_db):
    nasty = "'; DROP TABLE events; --%_\"ü"
    content = f"timestamp,event_type,crmid\n2026-01-01,search,{nasty.replace(chr(34), '')}\n".encode()
    ingest.ingest_bytes(empty_db, content, "nasty.csv")
    with store.connect(empty_db) as con:
        assert con.execute("SELECT id_value FROM identities").fetchall()[0][0] == nasty.replace('"', "")
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == 1


def test_cli_demo_and_datasets_json(new_store):
    db = new_store
    run = [sys.executable, "-m", "cai", "--db", str(db)]
    subprocess.run([*run, "demo", "--profiles", "1500"], check=True, cwd=ROOT, capture_output=True)
    output = subprocess.run([*run, "datasets", "--json"], check=True, cwd=ROOT, capture_output=True, text=True)
    parsed = json.loads(output.stdout)
    assert parsed["datasets"][0]["rows_accepted"] == parsed["store"]["events"] > 0
    assert parsed["store"]["meets_two_quarters"] is True
    found = subprocess.run([*run, "profiles", "find", "Email", demo.TUTORIAL_EMAIL], cwd=ROOT, capture_output=True)
    missing = subprocess.run([*run, "profiles", "find", "Email", "nobody@nowhere"], cwd=ROOT, capture_output=True,
                             text=True)
    assert found.returncode == 0 and missing.returncode == 1 and "No profile" in missing.stderr


@pytest.mark.skipif(not ONLINE_RETAIL.exists(), reason="shared/datasets is not beside the project")
def test_a_sample_of_the_online_retail_log_ingests_as_purchases(empty_db):
    report = online_retail.load(empty_db, ONLINE_RETAIL, max_customers=200)
    assert report.profiles_created == 200 and report.rows_accepted > 500
    with store.connect(empty_db) as con:
        types = con.execute("SELECT DISTINCT event_type FROM events").fetchall()
        namespaces = con.execute("SELECT DISTINCT namespace FROM identities").fetchall()
    assert types == [("commerce.purchases",)] and namespaces == [("CRMID",)]


def test_a_file_store_finds_a_page_of_members_identities_by_an_index(tmp_path):
    """A page of segment members reads its 50 profiles' identities by profile id (store.rows_with_keys); without an
    index on that column a file scanned every identity (47 ms at a million profiles, 3 ms with it)."""
    db = tmp_path / "cai.duckdb"
    with store.connect(db) as con:
        indexed = {(row[0], row[1]) for row in con.execute(
            "SELECT table_name, expressions FROM duckdb_indexes()").fetchall()}
    assert ("identities", "[profile_id]") in indexed


def _attributes_of(db, email: str) -> dict:
    with store.connect(db) as con:
        text = con.execute("SELECT CAST(p.attributes AS VARCHAR) FROM profiles p JOIN identities i USING (profile_id) "
                           "WHERE i.namespace = 'Email' AND i.id_value = ?", [email]).fetchall()[0][0]
    return json.loads(text)


def test_a_second_profile_file_adds_attributes_key_by_key_and_keeps_the_others(empty_db):
    ingest.ingest_bytes(empty_db, b"email,first_name,segment_code,store\nbo@shop.test,Bo,VIP,Oslo\n", "crm.csv")
    consents = {"personalEmail": {"address": "bo@shop.test"}, "store": "Bergen", "dropped": None,
                "consents": {"marketing": {"email": {"val": "y"}}}}
    ingest.ingest_bytes(empty_db, json.dumps(consents).encode(), "consents.json")
    # The newer file wins where both have a key; a null in it erases nothing.
    assert _attributes_of(empty_db, "bo@shop.test") == {"segment_code": "VIP", "store": "Bergen",
                                                         "consents": {"marketing": {"email": {"val": "y"}}}}


def test_a_merge_keeps_the_attributes_only_the_merged_profile_had(empty_db):
    ingest.ingest_bytes(empty_db, b"email,segment_code,colour\ncy@shop.test,VIP,blue\n", "first.csv")
    ingest.ingest_bytes(empty_db, b"crmid,colour,favourite_store\nC-9,red,Oslo\n", "second.csv")
    report = ingest.ingest_bytes(empty_db, b"crmid,email\nC-9,cy@shop.test\n", "link.csv")
    assert report.profiles_merged == 1
    # The surviving (older) profile's value wins; what only the merged one knew is kept.
    assert _attributes_of(empty_db, "cy@shop.test") == {"segment_code": "VIP", "colour": "blue",
                                                         "favourite_store": "Oslo"}


def test_several_rows_of_one_profile_in_a_file_combine_rather_than_the_last_replacing_the_others(empty_db):
    # Profile fragments from two sources, as an export of one person's records writes them.
    ingest.ingest_bytes(empty_db, b"email,city,loyalty_tier,source_note,segment\n"
                                  b"bo@shop.test,Oslo,,crm,\nbo@shop.test,,gold,,vip\n", "fragments.csv")
    with store.connect(empty_db) as con:
        profile = con.execute("SELECT city, loyalty_tier, CAST(attributes AS VARCHAR) FROM profiles").fetchall()
    assert len(profile) == 1 and profile[0][:2] == ("Oslo", "gold")
    assert json.loads(profile[0][2]) == {"source_note": "crm", "segment": "vip"}
