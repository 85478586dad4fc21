"""Phone numbers are one identity however an export writes them: loads store one canonical form, and the schema
upgrade rewrites the numbers an older store holds as written, merging the profiles that turn out to share one."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from cai import cli, identity, ingest, privacy, profiles, store
from cai.errors import ValidationError
from tests.conftest import ROOT
from tests.test_access import VIEWER, _frame_with, _signed_in
from tests.test_restarts import _raw, start_replicas_together

PHONE_UPGRADE = next(version for version, migration in enumerate(store.MIGRATIONS, start=1)
                     if isinstance(migration, store.DataFix) and "phone" in migration)
# The demo's numbers of its tutorial customer (profile 1) and of profile 5, a customer with events of their own.
TUTORIAL_NUMBER, WEB_NUMBER = "+15551000001", "+15551000005"
WEB_PROFILE, WEB_EMAIL = 5, "xdelacroix5@inbox.example"


@pytest.mark.parametrize("written, stored", [
    ("+1 (555) 123-4567", "+15551234567"),
    ("+1 555-123-4567", "+15551234567"),
    ("+1.555.123.4567", "+15551234567"),
    ("+1 555/123 4567", "+15551234567"),
    ("+1\u00a0555\u2009123\u202f4567", "+15551234567"),  # non-breaking, thin and narrow spaces
    ("+1 555 \u2013 123 \u2013 4567", "+15551234567"),  # dashes a word processor puts in
    ("\uff0b\uff11 \uff15\uff15\uff15 \uff11\uff12\uff13 \uff14\uff15\uff16\uff17", "+15551234567"),  # fullwidth
    ("tel:+1-555-123-4567", "+15551234567"),
    ("TEL: +1 555 123 4567", "+15551234567"),
    ("0044 20 7946 0958", "+442079460958"),
    ("+44 (0)20 7946 0958", "+442079460958"),
    ("555 123 4567", "5551234567"),  # no country code is guessed
    ("020 7946 0958", "02079460958"),
    ("+1 555 123 4567 ext. 12", "+15551234567;ext=12"),
    ("+1 555 123 4567 x12", "+15551234567;ext=12"),
    ("(555) 123-4567 #12", "5551234567;ext=12"),
    ("tel:+1-555-123-4567;ext=12", "+15551234567;ext=12"),
])
def test_a_phone_number_is_stored_in_one_canonical_form_however_it_is_written(written, stored):
    assert identity.identity_value("Phone", written) == (stored, None)
    assert identity.identity_value("Phone", stored) == (stored, None)  # the canonical form is its own


@pytest.mark.parametrize("written, reason", [
    ("unknown", "`Phone` holds letters or signs that a phone number does not have, so it is not a phone number"),
    ("555-CALL-NOW", "`Phone` holds letters or signs that a phone number does not have, so it is not a phone number"),
    ("tel:+1-555-123-4567;phone-context=example.com", "`Phone` holds letters or signs"),
    ("12-34", "`Phone` has 4 digits, and a phone number has 5 to 15, so it is not a phone number"),
    ("+1 555 123 4567 8901 2", "`Phone` has 16 digits, and a phone number has 5 to 15, so it is not a phone number"),
    ("+0 555 123 4567", "`Phone` starts with +0, and no country code starts with 0, so it is not a phone number"),
])
def test_a_value_that_is_no_phone_number_is_refused_with_the_reason(written, reason):
    stored, refused = identity.identity_value("Phone", written)
    assert stored is None and refused.startswith(reason)


def test_a_file_with_a_value_that_is_no_phone_number_is_refused_naming_its_row(empty_db):
    events = (b"timestamp,event_type,phone\n2026-03-01T10:00:00Z,commerce.productViews,+1 555 123 4567\n"
              b"2026-03-01T11:00:00Z,commerce.productViews,ask at the desk\n")
    with pytest.raises(ValidationError) as refused:
        ingest.ingest_bytes(empty_db, events, "web.csv")
    assert "Row 3: `Phone` holds letters or signs that a phone number does not have" in str(refused.value.problems)
    assert store.query_df(empty_db, "SELECT count(*) AS n FROM identities")["n"][0] == 0


def _profile_and_events(db, namespace: str, value: str) -> tuple[int | None, int]:
    profile_id = profiles.find(db, namespace, value)
    return profile_id, profiles.total_events(db, profile_id) if profile_id else 0


def test_one_number_from_a_crm_csv_and_xdm_events_written_three_ways_is_one_profile(demo_db):
    crm = b"email,phone,first_name\nnew.customer@example.com,+1 (555) 987-6543,Nia\n"
    assert ingest.ingest_bytes(demo_db, crm, "crm.csv", kind="profiles").profiles_created == 1
    web = [{"_id": f"web-{number}", "timestamp": "2026-03-01T10:00:00Z", "eventType": "web.webpagedetails.pageViews",
            "identityMap": {"ECID": [{"id": f"ECID-{number}"}], "Phone": [{"id": written}]}}
           for number, written in enumerate(["+1 555-123-0000", "+1 555-987-6543", "tel:+1-555-987-6543",
                                             "+15559876543"])]
    report = ingest.ingest_bytes(demo_db, json.dumps(web).encode(), "web.json")
    assert (report.rows_accepted, report.profiles_created) == (4, 1)  # only +1 555-123-0000 is somebody new
    crm_profile = profiles.find(demo_db, "Email", "new.customer@example.com")
    assert {profiles.find(demo_db, "ECID", f"ECID-{number}") for number in (1, 2, 3)} == {crm_profile}
    assert profiles.total_events(demo_db, crm_profile) == 3
    identities = profiles.identities(demo_db, crm_profile)
    assert identities.loc[identities["namespace"] == "Phone", "identity"].tolist() == ["+15559876543"]
    # An XDM profile's mobile number with the 00 prefix, and a CSV event with the + of its country code.
    uk = {"personalEmail": {"address": "uk.customer@example.com"}, "mobilePhone": {"number": "0044 7700 900123"}}
    ingest.ingest_bytes(demo_db, json.dumps(uk).encode(), "uk.json", kind="profiles")
    ingest.ingest_bytes(demo_db, b"timestamp,event_type,phone\n2026-03-02T10:00:00Z,commerce.purchases,"
                                 b"+44 (0)7700 900 123\n", "shop.csv")
    assert _profile_and_events(demo_db, "Email", "uk.customer@example.com")[1] == 1
    # The demo's numbers are stored canonical too, so a file writing one another way finds its customer.
    before = profiles.total_events(demo_db, 1)
    ingest.ingest_bytes(demo_db, b"timestamp,event_type,phone\n2026-03-03T10:00:00Z,commerce.productViews,"
                                 b"+1 555-100-0001\n", "tutorial.csv")
    assert _profile_and_events(demo_db, "Phone", "tel:+1 (555) 100-0001") == (1, before + 1)


def test_a_number_without_its_country_code_is_not_given_one(empty_db):
    ingest.ingest_bytes(empty_db, b"email,phone\na@example.com,+1 555 123 4567\nb@example.com,555 123 4567\n",
                        "crm.csv", kind="profiles")
    assert profiles.find(empty_db, "Phone", "+1 (555) 123-4567") == profiles.find(empty_db, "Email", "a@example.com")
    assert profiles.find(empty_db, "Phone", "555-123-4567") == profiles.find(empty_db, "Email", "b@example.com")
    assert profiles.find(empty_db, "Email", "a@example.com") != profiles.find(empty_db, "Email", "b@example.com")


def test_an_event_id_made_from_its_content_is_the_one_made_before_numbers_were_normalised(empty_db):
    """A file without event ids loaded before the upgrade and again after it adds nothing twice: the id is made from
    the number as written (the ids below are those the app made before)."""
    csv = (b"timestamp,event_type,phone,email\n"
           b"2026-03-01T10:00:00Z,commerce.productViews,+1 (555) 123-4567,ana@example.com\n")
    xdm_event = [{"timestamp": "2026-03-01T10:00:00Z", "eventType": "commerce.productViews",
                  "identityMap": {"Phone": [{"id": "+1 555-123-4567"}]}, "_acme": {"phone": "tel:+1-555-123-4567"}}]
    ingest.ingest_bytes(empty_db, csv, "web.csv")
    ingest.ingest_bytes(empty_db, json.dumps(xdm_event).encode(), "web.json")
    rows = store.query_df(empty_db, "SELECT xdm_id, profile_id FROM events ORDER BY xdm_id")
    assert rows["xdm_id"].tolist() == ["content:9735647883da16fd1ab2cd22e7ce3ae6",
                                       "content:d92eb0dc60e369af5fc739c338d8b5b4"]
    assert rows["profile_id"].nunique() == 1


def test_a_search_by_the_start_of_a_number_finds_it_however_the_start_is_typed(demo_db):
    expected = store.query_df(demo_db, "SELECT profile_id FROM identities WHERE namespace = 'Phone' "
                                       "AND id_value LIKE '+1555100000%' ORDER BY 1")["profile_id"].tolist()
    assert 1 in expected and len(expected) < 10
    for typed in ("+1 (555) 100-000", "tel:+1 555 100 000", "001-555-100-000"):
        assert profiles.search(demo_db, "Phone", typed)["profile_id"].tolist() == expected


def test_the_command_line_finds_and_shows_the_canonical_number(trained_db, capsys):
    assert cli.main(["--db", str(trained_db), "profiles", "find", "Phone", "+1 (555) 100-0001"]) == 0
    shown = capsys.readouterr().out
    assert "Profile 1" in shown and f"Phone: {TUTORIAL_NUMBER}" in shown


def test_the_profile_page_shows_the_canonical_number_and_a_viewer_sees_it_masked(trained_db):
    page = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    page.query_params.update({"namespace": "Phone", "value": "+1 555-100-0001"})
    page = page.switch_page("app_pages/profiles.py").run()
    assert not page.exception
    identities = _frame_with(page, "namespace")
    assert identities.loc[identities["namespace"] == "Phone", "identity"].tolist() == [TUTORIAL_NUMBER]

    viewer = _signed_in(VIEWER)
    viewer.query_params.update({"namespace": "Phone", "value": "+1 555-100-0001"})
    viewer = viewer.switch_page("app_pages/profiles.py").run()
    assert not viewer.exception
    masked = _frame_with(viewer, "namespace")
    assert masked.loc[masked["namespace"] == "Phone", "identity"].tolist() == ["•••01"]
    assert "5551000001" not in masked.to_string()
    assert privacy.mask_text(f"Phone {TUTORIAL_NUMBER};ext=12") == "Phone •••01;ext=12"


def _store_before_the_phone_upgrade(source: Path, location, written_as_then: bool = True) -> None:
    """``location`` (empty) as the app left it before the upgrade: the schema up to the version before it, holding
    ``source``'s rows; unless ``written_as_then`` is off, with every number as the demo wrote it then
    (+1-555-1000001), profile 5's number replaced by profile 1's written another way, and profile 3 given a value
    that is no phone number."""
    target = store.resolve(location)
    if target.is_postgres:
        con = _raw(target.location)
    else:
        con = duckdb.connect()
        con.execute(f"ATTACH '{target.location}' AS raw")
    con.execute(f"ATTACH '{source}' AS demo (READ_ONLY)")
    con.execute("USE raw")
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)")
    for version, migration in enumerate(store.MIGRATIONS[:PHONE_UPGRADE - 1], start=1):
        if isinstance(migration, store.PostgresOnly):
            if target.is_postgres:
                con.execute(f"CALL postgres_execute('raw', '{migration}')")
        elif not isinstance(migration, store.FileOnly) or not target.is_postgres:
            con.execute(store._for_postgres(migration) if target.is_postgres else migration)
        con.execute("INSERT INTO schema_version VALUES (?, current_timestamp)", [version])
    tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'raw' "
                         "AND schema_name IN ('main', 'public') AND table_name <> 'schema_version'").fetchall()
    for schema, table in tables:
        columns = ", ".join(name for (name,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = 'raw' AND table_name = ? AND column_name "
            "IN (SELECT column_name FROM duckdb_columns() WHERE database_name = 'demo' AND table_name = ?)",
            [table, table]).fetchall())
        con.execute(f"INSERT INTO raw.{schema}.{table} ({columns}) SELECT {columns} FROM demo.main.{table}")
    if not written_as_then:
        con.close()
        return
    con.execute("UPDATE identities SET id_value = '+1-555-' || substr(id_value, 6) WHERE namespace = 'Phone'")
    con.execute("UPDATE identities SET id_value = '+1 (555) 100-0001' WHERE namespace = 'Phone' AND profile_id = ?",
                [WEB_PROFILE])
    con.execute("INSERT INTO identities VALUES ('Phone', 'ask at the desk', 3, false)")
    con.close()


def _counts(db, migrate: bool = True) -> dict[str, int]:
    with store.connect(db, migrate=migrate) as con:
        return dict(zip(["events", "profiles", "phones", "tutorial_events", "web_events", "merges"], con.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM profiles), "
            "(SELECT count(*) FROM identities WHERE namespace = 'Phone'), "
            "(SELECT count(*) FROM events WHERE profile_id = 1), (SELECT count(*) FROM events WHERE profile_id = ?), "
            "(SELECT count(*) FROM profile_merges)", [WEB_PROFILE]).fetchall()[0]))


@pytest.mark.both_backends
def test_the_upgrade_rewrites_stored_numbers_and_merges_two_profiles_that_share_one(trained_db_template, new_store):
    store.release(trained_db_template)
    _store_before_the_phone_upgrade(trained_db_template, new_store)
    before = _counts(new_store, migrate=False)
    assert before["tutorial_events"] and before["web_events"] and before["merges"] == 0

    assert store.migrate(new_store) == (PHONE_UPGRADE - 1, store.SCHEMA_VERSION)
    after = _counts(new_store)
    assert after["events"] == before["events"]
    assert after["tutorial_events"] == before["tutorial_events"] + before["web_events"]
    assert (after["web_events"], after["profiles"], after["phones"]) == (0, before["profiles"] - 1,
                                                                        before["phones"] - 1)
    with store.connect(new_store) as con:
        assert con.execute("SELECT merged_profile_id, into_profile_id, batch_id FROM profile_merges").fetchall() == [
            (WEB_PROFILE, 1, identity.UPGRADE_BATCH_ID)]
        phones = dict(con.execute("SELECT id_value, profile_id FROM identities WHERE namespace = 'Phone'").fetchall())
        moved = con.execute("SELECT namespace, profile_id FROM identities WHERE id_value = ?", [WEB_EMAIL]).fetchall()
        audited = con.execute("SELECT actor, CAST(details AS VARCHAR) FROM audit_log WHERE action = 'merge'").fetchall()
        scored = con.execute("SELECT count(*) FROM scores WHERE profile_id = ?", [WEB_PROFILE]).fetchall()[0][0]
    assert phones[TUTORIAL_NUMBER] == 1 and WEB_NUMBER not in phones
    assert phones["ask at the desk"] == 3  # no phone number: left as it was
    assert all(value.startswith("+1555") and value[1:].isdigit() for value in phones if value != "ask at the desk")
    assert moved == [("Email", 1)] and scored == 0
    assert audited == [(identity.UPGRADE_ACTOR, json.dumps({"numbers_rewritten": before["phones"] - 1,
                                                            "profiles_merged": 1}))]
    assert profiles.find(new_store, "Phone", "+1 555 100 0001") == 1


@pytest.mark.parametrize("written_as_then", [True, False], ids=["numbers to rewrite", "nothing to rewrite"])
def test_replicas_upgrading_one_store_together_rewrite_and_merge_it_once(trained_db_template, pg_url,
                                                                         written_as_then):
    """Each replica waits for the migration lock; the first upgrades, the others find it done. Their snapshot,
    taken before the wait, does not show the first one's work: their own writes, the profile set's row above all
    (even with no number to rewrite), make PostgreSQL refuse them instead of letting them record the version
    again or merge twice."""
    store.release(trained_db_template)
    _store_before_the_phone_upgrade(trained_db_template, pg_url, written_as_then)
    before = _counts(pg_url, migrate=False)
    store.release(pg_url)
    start_replicas_together(pg_url)
    merged = 1 if written_as_then else 0
    after = _counts(pg_url)
    assert (after["merges"], after["events"], after["profiles"]) == (merged, before["events"],
                                                                     before["profiles"] - merged)
