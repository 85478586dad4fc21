"""XDM as Adobe writes it: our own fixtures in each shape, then Adobe's published examples when they are beside us."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cai import ingest, store
from cai.errors import ValidationError
from tests.conftest import ROOT

OWN = ROOT / "tests" / "data" / "xdm"
ADOBE = ROOT.parent / "shared" / "datasets" / "xdm-examples"
needs_adobe_examples = pytest.mark.skipif(not ADOBE.exists(), reason="shared/datasets is not beside the project")

# Field groups whose example implies one of Customer AI's standard event types; the others load as `unspecified`
# unless they carry their own `eventType`.
IMPLIED_TYPES = {
    "experienceevent-advertising.example.1.json": "advertising.firstQuartiles",
    "experienceevent-application.example.1.json": "application.launches",
    "experienceevent-commerce.example.1.json": "commerce.purchases",
    "experienceevent-directmarketing.example.1.json": "directMarketing.emailSent",
    "experienceevent-search.example.1.json": "search",
    "experienceevent-site-search.example.1.json": "search",
    "experienceevent-web.example.1.json": "web.webpagedetails.pageViews",
}
CLASS_EXAMPLE_TYPES = {1: "commerce.purchases", 2: "advertising.firstQuartiles", 3: "advertising.firstQuartiles",
                       4: "media.mediaTimed.thirdQuartiles", 5: "advertising.completes", 6: "unspecified",
                       7: "pushTracking.customAction"}


def _rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    with store.connect(db) as con:
        return con.execute(sql, params or []).fetchall()


def _identities_of(db: Path, namespace: str, value: str) -> list[tuple]:
    return _rows(db, "SELECT namespace, id_value FROM identities WHERE profile_id = (SELECT profile_id FROM "
                     "identities WHERE namespace = ? AND id_value = ?) ORDER BY 1, 2", [namespace, value])


def test_a_single_pretty_printed_object_with_prefixes_and_namespace_uris_is_one_event(empty_db):
    report = ingest.ingest_file(empty_db, OWN / "single_event_pretty.json")
    assert (report.kind, report.rows_accepted, report.inferred_event_types) == ("events", 1,
                                                                                 {"commerce.purchases": 1})
    event = _rows(empty_db, "SELECT xdm_id, event_type, value, order_id, sku, quantity, ts::VARCHAR, "
                            "raw->>'$._luma.storeId' FROM events")[0]
    assert event == ("own-single-1", "commerce.purchases", 120.5, "ORDER-1", "SKU-1", 2, "2026-03-02 09:00:00",
                     "berlin-3")
    assert _identities_of(empty_db, "ECID", "ECID-SINGLE-1") == [("ECID", "ECID-SINGLE-1"),
                                                                  ("Email", "single.buyer@shop.test")]
    assert _rows(empty_db, "SELECT namespace FROM identities WHERE is_primary") == [("ECID",)]


def test_both_end_user_id_forms_and_identity_maps_stitch_one_customer_with_inferred_types(empty_db):
    report = ingest.ingest_file(empty_db, OWN / "events_array.json")
    assert (report.rows_accepted, report.profiles_created) == (4, 1)
    assert report.inferred_event_types == {"directMarketing.emailOpened": 1, "media.mediaTimed.starts": 1,
                                           "unspecified": 1}
    assert _identities_of(empty_db, "ECID", "ECID-ARRAY-1") == [
        ("ECID", "ECID-ARRAY-1"), ("Email", "array.buyer@shop.test"), ("LoyaltyID", "L-ARRAY-1"),
        ("tnt0051", "TNT-ARRAY-1")]
    per_batch = ingest.batch_event_types(empty_db)
    assert per_batch.set_index("event_type")[["events", "inferred"]].to_dict("index") == {
        "commerce.productViews": {"events": 1, "inferred": 0},
        "directMarketing.emailOpened": {"events": 1, "inferred": 1},
        "media.mediaTimed.starts": {"events": 1, "inferred": 1},
        "unspecified": {"events": 1, "inferred": 1}}


@pytest.mark.parametrize("name", ["events_lines.jsonl", "events_lines.jsonl.gz"])
def test_json_lines_plain_or_gzipped_infer_page_views_launches_and_searches(empty_db, name):
    report = ingest.ingest_file(empty_db, OWN / name)
    assert report.dataset == "events_lines"
    assert report.inferred_event_types == {"web.webpagedetails.pageViews": 1, "application.launches": 1,
                                           "search": 1}


def test_gzipped_csv_and_gzipped_single_object_load(empty_db):
    csv_report = ingest.ingest_file(empty_db, OWN / "events.csv.gz")
    json_report = ingest.ingest_file(empty_db, OWN / "single_event_pretty.json.gz")
    assert (csv_report.rows_accepted, csv_report.profiles_created) == (2, 1)  # one customer, whatever the case
    assert json_report.rows_accepted == 1
    assert _rows(empty_db, "SELECT event_type FROM events WHERE value IS NULL AND raw IS NULL") == [("unspecified",)]


def test_an_individual_profile_object_maps_onto_profile_attributes_and_identities(empty_db):
    report = ingest.ingest_file(empty_db, OWN / "profile_single.json")
    assert (report.kind, report.profiles_created) == ("profiles", 1)
    profile = _rows(empty_db, "SELECT first_name, last_name, gender, birth_year, city, country, loyalty_tier, "
                              "loyalty_points, signup_date::VARCHAR, attributes->>'$._luma.favouriteStore' "
                              "FROM profiles")[0]
    assert profile == ("Ana", "Lima", "female", 1988, "Porto", "PT", "gold", 1200, "2024-02-01", "Porto Centro")
    assert _identities_of(empty_db, "CRMID", "CRM-PROFILE-1") == [
        ("CRMID", "CRM-PROFILE-1"), ("Email", "ana.lima@mail.test"), ("Phone", "+351912000111")]


def test_many_individual_profiles_in_an_array_load_each(empty_db):
    report = ingest.ingest_file(empty_db, OWN / "profiles_array.json")
    assert (report.rows_accepted, report.profiles_created) == (2, 2)
    assert _rows(empty_db, "SELECT first_name, last_name, birth_year, city, country FROM profiles ORDER BY 1") == [
        ("Bo", None, 1990, "Oslo", "Norway"), ("Cy", "Ng", None, None, None)]


@needs_adobe_examples
@pytest.mark.parametrize("number", sorted(CLASS_EXAMPLE_TYPES))
def test_each_adobe_experience_event_class_example_loads_as_it_is(empty_db, number):
    path = ADOBE / "experienceevent-class" / f"experienceevent.example.{number}.json"
    report = ingest.ingest_file(empty_db, path)
    assert (report.kind, report.rows_accepted) == ("events", 1)
    assert _rows(empty_db, "SELECT event_type FROM events") == [(CLASS_EXAMPLE_TYPES[number],)]
    assert _rows(empty_db, "SELECT count(*) FROM identities WHERE namespace = 'ECID'") == [(1,)]


@needs_adobe_examples
def test_every_adobe_field_group_example_merged_into_a_minimal_event_loads_with_its_type(empty_db):
    examples = sorted((ADOBE / "experienceevent-fieldgroups").glob("*.json"))
    assert len(examples) == 104
    for path in examples:
        fragment = json.loads(path.read_text())
        event = {"@id": f"fg-{path.stem}", "xdm:timestamp": "2026-01-01T00:00:00Z",
                 "xdm:identityMap": {"ECID": [{"xdm:id": f"ECID-{path.stem}"}]}, **fragment}
        report = ingest.ingest_bytes(empty_db, json.dumps(event).encode(), path.name, kind="events",
                                     dataset="field groups")
        assert report.rows_accepted == 1, path.name
        loaded = _rows(empty_db, "SELECT event_type FROM events WHERE batch_id = ?", [report.batch_id])[0][0]
        given = fragment.get("xdm:eventType")
        assert loaded == (given or IMPLIED_TYPES.get(path.name, "unspecified")), path.name


@needs_adobe_examples
def test_the_adobe_end_user_ids_example_gives_three_identities(empty_db):
    fragment = json.loads((ADOBE / "experienceevent-fieldgroups" / "experienceevent-enduserids.example.1.json")
                          .read_text())
    event = {"xdm:timestamp": "2026-01-01T00:00:00Z", **fragment}
    ingest.ingest_bytes(empty_db, json.dumps(event).encode(), "enduserids.json")
    assert _rows(empty_db, "SELECT namespace, id_value FROM identities ORDER BY 1") == [
        ("AVID", "2394509340-30453470347"), ("ECID", "92312748749128"),
        ("tnt0051", "1233ce17-20e0-4a2c-8198-2a77fd60cf4d")]


@needs_adobe_examples
def test_the_adobe_profile_example_loads_as_a_profile_with_name_emails_and_phone(empty_db):
    report = ingest.ingest_file(empty_db, ADOBE / "profile-class" / "profile.example.1.json")
    assert (report.kind, report.profiles_created) == ("profiles", 1)
    assert _rows(empty_db, "SELECT first_name, last_name, gender FROM profiles") == [("Jane", "Doe", "female")]
    assert _rows(empty_db, "SELECT namespace, id_value FROM identities ORDER BY 1, 2") == [
        ("ECID", "92312748749128"), ("Email", "jane@doe.com"), ("Email", "jsmith@xyzinc.com"),
        ("Phone", "14088888888")]


def test_expanded_uri_keys_read_as_their_plain_names(empty_db):
    event = {"@id": "expanded-1", "https://ns.adobe.com/xdm/timestamp": "2026-02-01T10:00:00Z",
             "https://ns.adobe.com/xdm/eventType": "commerce.checkouts",
             "https://ns.adobe.com/xdm/identityMap": {"ECID": [{"https://ns.adobe.com/xdm/id": "ECID-EXPANDED"}]}}
    report = ingest.ingest_bytes(empty_db, json.dumps(event).encode(), "expanded.json")
    assert report.rows_accepted == 1
    assert _rows(empty_db, "SELECT xdm_id, event_type FROM events") == [("expanded-1", "commerce.checkouts")]
    assert _rows(empty_db, "SELECT id_value FROM identities") == [("ECID-EXPANDED",)]


def test_fields_of_mapped_profile_blocks_that_are_not_columns_are_kept_as_attributes(empty_db):
    record = {"xdm:person": {"xdm:name": {"xdm:firstName": "Al", "xdm:middleName": "Q"},
                             "xdm:birthDate": "1980-02-03"},
              "xdm:homeAddress": {"xdm:city": "Rome", "xdm:postalCode": "00100"},
              "xdm:loyalty": {"xdm:tier": "gold", "xdm:program": "Rewards", "xdm:pointsRedeemed": 40},
              "xdm:personalEmail": {"xdm:address": "al@mail.test", "xdm:status": "active"}}
    ingest.ingest_bytes(empty_db, json.dumps(record).encode(), "al.json")
    row = _rows(empty_db, "SELECT first_name, birth_year, city, loyalty_tier, attributes FROM profiles")[0]
    assert row[:4] == ("Al", 1980, "Rome", "gold")
    assert json.loads(row[4]) == {"person": {"name": {"middleName": "Q"}, "birthDate": "1980-02-03"},
                                  "homeAddress": {"postalCode": "00100"},
                                  "loyalty": {"program": "Rewards", "pointsRedeemed": 40},
                                  "personalEmail": {"status": "active"}}


@needs_adobe_examples
def test_the_adobe_loyalty_examples_load_keyed_by_their_loyalty_ids_and_keep_the_programme(empty_db):
    folder = ADOBE / "profile-fieldgroups"
    for number in (1, 2, 3):
        report = ingest.ingest_file(empty_db, folder / f"profile-loyalty-details.example.{number}.json")
        assert report.rows_accepted == 1
    # Examples 1 and 2 share the member id L79UH4XR1: one customer with both ids.
    assert _identities_of(empty_db, "LoyaltyID", "ALT-12345") == [("LoyaltyID", "ALT-12345"),
                                                                   ("LoyaltyID", "L79UH4XR1")]
    assert _rows(empty_db, "SELECT loyalty_tier, loyalty_points, attributes->>'$.loyalty.program' FROM profiles "
                           "ORDER BY 1") == [("Gold", 15800, "Nordhaven Rewards"),
                                             ("silver", 8974, "purchase rewards")]


def test_product_line_prices_and_quantities_written_as_text_are_summed(empty_db):
    event = {"_id": "text-numbers", "timestamp": "2026-01-05T10:00:00Z", "eventType": "commerce.purchases",
             "identityMap": {"ECID": [{"id": "ECID-TEXT"}]},
             "productListItems": [{"SKU": "a", "priceTotal": "12.50", "quantity": "2"},
                                  {"SKU": "b", "priceTotal": 7.5, "quantity": 1}]}
    ingest.ingest_bytes(empty_db, json.dumps(event).encode(), "text-numbers.json")
    assert _rows(empty_db, "SELECT value, price_total, quantity FROM events") == [(20.0, 20.0, 3)]


def test_a_product_line_price_that_is_not_a_number_refuses_the_row(empty_db):
    event = {"_id": "bad-line", "timestamp": "2026-01-05T10:00:00Z", "eventType": "commerce.purchases",
             "identityMap": {"ECID": [{"id": "ECID-BAD"}]},
             "productListItems": [{"SKU": "a", "priceTotal": 5}, {"SKU": "b", "priceTotal": "lots"}]}
    with pytest.raises(ValidationError) as refused:
        ingest.ingest_bytes(empty_db, json.dumps(event).encode(), "bad-line.json")
    assert "Row 1: `value` is not a number" in refused.value.problems
    assert _rows(empty_db, "SELECT count(*) FROM events") == [(0,)]


@needs_adobe_examples
def test_a_file_loaded_as_the_wrong_kind_is_refused_with_what_it_holds(empty_db):
    event = ADOBE / "experienceevent-class" / "experienceevent.example.1.json"
    with pytest.raises(ValidationError, match="holds experience events .* load it as events"):
        ingest.ingest_file(empty_db, event, kind="profiles")
    with pytest.raises(ValidationError, match="holds experience events .* load it as events"):
        ingest.ingest_bytes(empty_db, b"timestamp,event_type,email\n2026-01-01,search,a@shop.test\n", "e.csv",
                            kind="profiles")
    with pytest.raises(ValidationError, match="holds profiles .* load it as profiles"):
        ingest.ingest_file(empty_db, ADOBE / "profile-class" / "profile.example.1.json", kind="events")
    assert _rows(empty_db, "SELECT (SELECT count(*) FROM profiles), (SELECT count(*) FROM datasets)") == [(0, 0)]


def test_the_primary_identity_a_profile_marks_stays_primary_whatever_the_case_of_its_email(empty_db):
    record = {"identityMap": {"CRMID": [{"id": "CRM-CASE"}], "Email": [{"id": " Ana@Shop.TEST ", "primary": True}]}}
    ingest.ingest_bytes(empty_db, json.dumps(record).encode(), "case.json", kind="profiles")
    assert _rows(empty_db, "SELECT namespace, id_value FROM identities WHERE is_primary") == [("Email",
                                                                                               "ana@shop.test")]
