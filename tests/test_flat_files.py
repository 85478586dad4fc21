"""Flat files as people and tools write them: any list separator, headers in any spelling, XDM records flattened into
one column per field path, and Experience Platform's Phone_E.164 namespace. Each loads as the file it stands for."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cai import flat_files, identity, ingest, profiles, store

EVENTS = pd.DataFrame({
    "timestamp": ["2024-03-01T10:00:00Z", "2024-03-02T11:30:00Z", "2024-03-02T12:00:00Z"],
    "event_type": ["commerce.productViews", "commerce.purchases", "web.webpagedetails.pageViews"],
    "email": ["ana@shop.example", "ana@shop.example", "bo@shop.example"],
    "sku": ["SKU-1", "SKU-1", None],
    "value": [None, "59.90", None],
})


def _without_nan(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(object).where(frame.notna(), None)


def _stored_events(db) -> list[tuple]:
    return [tuple(row) for row in store.query_df(db, """
        SELECT CAST(e.ts AS VARCHAR) AS ts, e.event_type, i.id_value, e.sku, e.value
        FROM events e JOIN identities i ON i.profile_id = e.profile_id AND i.namespace = 'Email'
        ORDER BY ts, event_type""").pipe(_without_nan).itertuples(index=False)]


def _written(frame: pd.DataFrame, separator: str, header: str = "") -> bytes:
    return (header + frame.to_csv(index=False, sep=separator)).encode()


@pytest.mark.parametrize("separator, header", [
    (";", ""), ("\t", ""), ("|", ""), (";", "sep=;\n"), (",", "sep=,\n"), ("\t", "SEP=\t\r\n")],
    ids=["semicolon", "tab", "pipe", "excel-sep-line", "excel-sep-line-comma", "excel-sep-line-crlf"])
def test_a_table_in_any_list_separator_loads_as_the_comma_separated_one(empty_db, tmp_path, separator, header):
    reference = tmp_path / "reference.duckdb"
    ingest.ingest_bytes(reference, _written(EVENTS, ","), "events.csv", kind="events")
    report = ingest.ingest_bytes(empty_db, _written(EVENTS, separator, header), "events.csv")
    assert (report.kind, report.rows_accepted) == ("events", len(EVENTS))
    assert _stored_events(empty_db) == _stored_events(reference)
    # The same events are the same events: the comma-separated file adds nothing more.
    again = ingest.ingest_bytes(empty_db, _written(EVENTS, ","), "events.csv", kind="events")
    assert (again.rows_accepted, again.rows_duplicate) == (0, len(EVENTS))


@pytest.mark.parametrize("separator", [";", "\t"])
def test_decimal_commas_of_a_european_export_are_the_amounts_they_write(empty_db, tmp_path, separator):
    points = EVENTS.assign(value=[None, "1234.50", "59.90"], sku=["12,5", "SKU-1", None],
                           event_type="commerce.purchases")
    commas = points.assign(value=[None, "1.234,50", "59,90"])
    reference = tmp_path / "reference.duckdb"
    ingest.ingest_bytes(reference, _written(points, ","), "events.csv", kind="events")
    ingest.ingest_bytes(empty_db, _written(commas, separator), "events.csv", kind="events")
    stored = _stored_events(empty_db)
    assert stored == _stored_events(reference)
    assert sorted(row[4] for row in stored if row[4] is not None) == [59.9, 1234.5]
    assert "12,5" in [row[3] for row in stored]  # a product code is text: its comma stays


def test_a_separator_inside_quotes_does_not_decide_the_separator(empty_db):
    frame = EVENTS.rename(columns={"sku": "sku;code"}).assign(**{"sku;code": ["a;b", "c;d", None]})
    ingest.ingest_bytes(empty_db, _written(frame, ","), "events.csv", kind="events")
    assert store.query_df(empty_db, "SELECT count(*) AS n FROM events")["n"][0] == len(EVENTS)


@pytest.mark.parametrize("spelling", [
    {"timestamp": "Timestamp", "event_type": "eventType", "email": "Email Address", "sku": "SKU", "value": "Value"},
    {"timestamp": "TIMESTAMP", "event_type": "Event Type", "email": "e-mail", "sku": "sku", "value": "value"},
    {"timestamp": "timestamp", "event_type": "event-type", "email": "emailAddress", "sku": "Sku", "value": "VALUE"},
], ids=["camel and words", "capitals and spaces", "hyphens"])
def test_headers_in_any_spelling_name_the_same_columns(empty_db, tmp_path, spelling):
    reference = tmp_path / "reference.duckdb"
    ingest.ingest_bytes(reference, _written(EVENTS, ","), "events.csv", kind="events")
    report = ingest.ingest_bytes(empty_db, _written(EVENTS.rename(columns=spelling), ","), "events.csv")
    assert report.kind == "events"
    assert _stored_events(empty_db) == _stored_events(reference)


def test_two_columns_that_are_one_column_spelled_twice_are_refused_by_name(empty_db):
    frame = EVENTS.assign(eventType=EVENTS["event_type"])
    with pytest.raises(ingest.ValidationError, match="`event_type` and `eventType`"):
        ingest.ingest_bytes(empty_db, _written(frame, ","), "events.csv", kind="events")
    assert store.is_empty(empty_db) or store.query_df(empty_db, "SELECT count(*) AS n FROM events")["n"][0] == 0


@pytest.mark.parametrize("name, key", [
    ("eventType", "event_type"), ("ECID", "ecid"), ("CRMID", "crmid"), ("crmId", "crm_id"), ("LoyaltyID", "loyalty_id"),
    (" First Name ", "first_name"), ("signupDate", "signup_date"), ("Phone_E.164", "phone_e.164"),
    ("loyalty-points", "loyalty_points")])
def test_column_keys(name, key):
    assert flat_files.column_key(name) == key


NESTED_EVENTS = [
    {"_id": "evt-1", "timestamp": "2024-03-01T10:00:00Z", "eventType": "commerce.purchases",
     "identityMap": {"Email": [{"id": "Ana@Shop.example", "primary": True}], "ECID": [{"id": "11112222333344445555"}]},
     "commerce": {"order": {"priceTotal": 59.9, "purchaseID": "ORD-7"}, "purchases": {"value": 1}},
     "productListItems": [{"SKU": "SKU-1", "name": "Tent", "quantity": 2, "priceTotal": 59.9}]},
    {"_id": "evt-2", "timestamp": "2024-03-02T08:00:00Z",
     "identityMap": {"ECID": [{"id": "99998888777766665555", "primary": True}]},
     "web": {"webPageDetails": {"name": "home", "pageViews": {"value": 1}}}},
]


def _flattened(paths_as: str) -> pd.DataFrame:
    """The nested events as a BI tool gets them from Query Service: one column per field path; ``identityMap``, a
    map, either kept whole as JSON text or spelled out item by item."""
    index = (lambda key, i: f"{key}[{i}]") if paths_as == "brackets" else (lambda key, i: f"{key}.{i}")
    rows = []
    for event in NESTED_EVENTS:
        row = {"_id": event["_id"], "timestamp": event["timestamp"], "eventType": event.get("eventType")}
        if paths_as == "json":
            row["identityMap"] = json.dumps(event["identityMap"])
        else:
            for namespace, entries in event["identityMap"].items():
                for i, entry in enumerate(entries):
                    row[f"{index(f'identityMap.{namespace}', i)}.id"] = entry["id"]
                    row[f"{index(f'identityMap.{namespace}', i)}.primary"] = str(entry.get("primary", False)).lower()
        for path in ("commerce.order.priceTotal", "commerce.order.purchaseID", "commerce.purchases.value",
                     "web.webPageDetails.name", "web.webPageDetails.pageViews.value"):
            value = event
            for key in path.split("."):
                value = value.get(key, {}) if isinstance(value, dict) else {}
            row[path] = None if value == {} else str(value)
        for key in ("SKU", "name", "quantity", "priceTotal"):
            items = event.get("productListItems", [])
            row[f"{index('productListItems', 0)}.{key}"] = str(items[0][key]) if items else None
        rows.append(row)
    return pd.DataFrame(rows)


def _events_as_stored(db) -> list[tuple]:
    return [tuple(row) for row in store.query_df(db, """
        SELECT e.xdm_id, CAST(e.ts AS VARCHAR) AS ts, e.event_type, e.value, e.order_id, e.sku, e.product_name,
               e.quantity, e.page_name, string_agg(i.namespace || ':' || i.id_value, ' ' ORDER BY i.namespace) AS ids
        FROM events e JOIN identities i USING (profile_id)
        GROUP BY ALL ORDER BY e.xdm_id""").pipe(_without_nan).itertuples(index=False)]


@pytest.mark.parametrize("paths_as", ["json", "dots", "brackets"])
def test_a_flattened_xdm_table_loads_as_the_nested_export_it_was_made_from(empty_db, tmp_path, paths_as):
    reference = tmp_path / "reference.duckdb"
    ingest.ingest_bytes(reference, json.dumps(NESTED_EVENTS).encode(), "events.json", kind="events")
    table = _flattened(paths_as)
    report = ingest.ingest_bytes(empty_db, table.to_csv(index=False).encode(), "query-service.csv")
    assert (report.kind, report.rows_accepted) == ("events", 2)
    stored = _events_as_stored(empty_db)
    assert stored == _events_as_stored(reference)
    # The second event's type is told by its page view, as in the nested export.
    assert [row[2] for row in stored] == ["commerce.purchases", "web.webpagedetails.pageViews"]
    assert report.inferred_event_types == {"web.webpagedetails.pageViews": 1}


def test_a_flattened_table_names_the_line_of_a_bad_row(empty_db):
    table = _flattened("dots")
    table.loc[1, "timestamp"] = "next tuesday"
    with pytest.raises(ingest.ValidationError) as refused:
        ingest.ingest_bytes(empty_db, table.to_csv(index=False).encode(), "query-service.csv")
    assert any(line.startswith("Row 3:") and "timestamp" in line for line in refused.value.problems)


def test_a_flattened_profile_table_fills_the_profile_columns_and_identities(empty_db):
    table = pd.DataFrame({
        "person.name.firstName": ["Ana"], "person.name.lastName": ["Lima"], "personalEmail.address": ["ana@x.example"],
        "mobilePhone.number": ["+1 555 010 0200"], "homeAddress.city": ["Porto"], "loyalty.points": ["120"],
        "loyalty.tier": ["gold"], "_acme.crmId": ["CRM-77"], "_acme.favouriteStore": ["Baixa"]})
    report = ingest.ingest_bytes(empty_db, table.to_csv(index=False).encode(), "profiles.csv")
    assert (report.kind, report.rows_accepted) == ("profiles", 1)
    profile = profiles.find(empty_db, "Email", "ana@x.example")
    assert profile is not None
    assert profiles.find(empty_db, "Phone", "+15550100200") == profile
    assert profiles.find(empty_db, "CRMID", "CRM-77") == profile
    row = store.query_df(empty_db, "SELECT first_name, last_name, city, loyalty_tier, CAST(loyalty_points AS INTEGER) "
                                   "AS points, CAST(attributes AS VARCHAR) AS extra FROM profiles").iloc[0]
    assert (row["first_name"], row["last_name"], row["city"], row["loyalty_tier"], row["points"]) == (
        "Ana", "Lima", "Porto", "gold", 120)
    assert json.loads(row["extra"])["_acme"]["favouriteStore"] == "Baixa"


def test_a_flattened_events_table_loaded_as_profiles_is_refused(empty_db):
    with pytest.raises(ingest.ValidationError, match="holds experience events"):
        ingest.ingest_bytes(empty_db, _flattened("dots").to_csv(index=False).encode(), "events.csv", kind="profiles")


def test_a_plain_table_with_a_dotted_column_stays_a_plain_table(empty_db):
    frame = EVENTS.assign(**{"utm.source": ["news", "news", None], "No.": ["1", "2", "3"]})
    ingest.ingest_bytes(empty_db, _written(frame, ","), "events.csv", kind="events")
    assert len(_stored_events(empty_db)) == len(EVENTS)


@pytest.mark.parametrize("columns", [
    {"productListItems[999999999].SKU": "x"},  # an index that would make a list of a billion items
    {"commerce": "not an object", "commerce.order.priceTotal": "10"},  # a value and fields below it
    {"productListItems.0": "x", "productListItems.0.SKU": "y"},
    {"identityMap": "{not json", "identityMap.ECID.0.id": "11112222333344445555"},
])
def test_hostile_field_paths_load_or_are_refused_with_a_message(empty_db, columns):
    table = pd.DataFrame([{"timestamp": "2024-03-01T10:00:00Z", "eventType": "commerce.productViews",
                           "identityMap.Email.0.id": "ana@shop.example", **columns}])
    report = ingest.ingest_bytes(empty_db, table.to_csv(index=False).encode(), "events.csv")
    assert report.rows_accepted == 1


@pytest.mark.parametrize("column", ["Phone_E.164", "PHONE", " phone "])
def test_a_phone_column_under_a_namespace_spelling_is_the_phone_identity(empty_db, column):
    frame = pd.DataFrame({"crmid": ["CRM-1"], column: ["+1 (555) 010-0300"]})
    ingest.ingest_bytes(empty_db, frame.to_csv(index=False).encode(), "crm.csv", kind="profiles")
    assert profiles.find(empty_db, "Phone", "+15550100300") == profiles.find(empty_db, "CRMID", "CRM-1") is not None


def test_a_telephone_column_stays_an_attribute_so_a_shared_switchboard_number_merges_nobody(empty_db):
    frame = pd.DataFrame({"email": ["ana@x.example", "bo@y.example"], "first_name": ["Ana", "Bo"],
                          "telephone": ["+44 20 7946 0000", "+44 20 7946 0000"], "mobile_phone": ["unknown", None]})
    report = ingest.ingest_bytes(empty_db, frame.to_csv(index=False).encode(), "crm.csv", kind="profiles")
    assert (report.rows_accepted, report.profiles_created, report.profiles_merged) == (2, 2, 0)


def test_an_xdm_phone_e164_identity_joins_the_customer_a_csv_gave_the_same_number(empty_db):
    crm = pd.DataFrame({"crmid": ["CRM-9"], "phone": ["+1 555 010 0400"]})
    ingest.ingest_bytes(empty_db, crm.to_csv(index=False).encode(), "crm.csv", kind="profiles")
    event = [{"timestamp": "2024-03-01T10:00:00Z", "eventType": "commerce.purchases",
              "identityMap": {"Phone_E.164": [{"id": "+15550100400", "primary": True}]}}]
    report = ingest.ingest_bytes(empty_db, json.dumps(event).encode(), "events.json", kind="events")
    assert (report.rows_accepted, report.profiles_created) == (1, 0)
    assert store.query_df(empty_db, "SELECT DISTINCT namespace FROM identities ORDER BY 1")["namespace"].tolist() == [
        "CRMID", "Phone"]


@pytest.mark.both_backends
def test_the_upgrade_folds_stored_phone_e164_identities_into_phone_and_merges_their_customers(trained_db):
    """A store that loaded Phone_E.164 identities before they were Phone numbers: the upgrade moves them, merging
    a customer with the one the same number under Phone belongs to, and leaves a value that is no number alone."""
    with store.connect(trained_db) as con:
        tutorial_number, tutorial_primary = con.execute(
            "SELECT id_value, is_primary FROM identities WHERE namespace = 'Phone' AND profile_id = 1").fetchall()[0]
        con.execute("INSERT INTO identities VALUES ('Phone_E.164', ?, 5, false), ('Phone_E.164', '+15559990000', 7, "
                    "true), ('Phone_E.164', 'unknown', 8, false)", [tutorial_number])
        con.execute("DELETE FROM schema_version WHERE version = ?", [store.SCHEMA_VERSION])
        events_before = con.execute("SELECT count(*) FROM events WHERE profile_id IN (1, 5)").fetchall()[0][0]
    store.release(trained_db)

    assert store.migrate(trained_db) == (store.SCHEMA_VERSION - 1, store.SCHEMA_VERSION)
    with store.connect(trained_db) as con:
        moved = con.execute("SELECT namespace, id_value, profile_id, is_primary FROM identities "
                            "WHERE id_value IN (?, '+15559990000', 'unknown') ORDER BY id_value",
                            [tutorial_number]).fetchall()
        merges = con.execute("SELECT merged_profile_id, into_profile_id, batch_id FROM profile_merges").fetchall()
        events_after = con.execute("SELECT count(*) FROM events WHERE profile_id = 1").fetchall()[0][0]
    assert moved == [("Phone", tutorial_number, 1, tutorial_primary), ("Phone", "+15559990000", 7, True),
                     ("Phone_E.164", "unknown", 8, False)]
    assert merges == [(5, 1, identity.UPGRADE_BATCH_ID)] and events_after == events_before


# What a hostile reading of the first version found: each case loaded (or loaded right) before flat files were read
# this way, or is a file a real tool writes.

@pytest.mark.parametrize("frame, kind", [
    (EVENTS.assign(**{"device.category": ["mobile", "desktop", None]}), "events"),  # a GA4-style flattened column
    (EVENTS.assign(identityMap=["", "{}", None]), "events"),
    (EVENTS.assign(**{"_id.$oid": ["a1", "a2", "a3"]}), "events"),  # a flattened MongoDB id
    (pd.DataFrame({"email": ["ana@x.example"], "first_name": ["Ana"], "homeAddress.city": ["Lisbon"]}), "profiles"),
], ids=["device.category", "empty identityMap", "mongo _id", "profile with a field path"])
def test_a_flat_table_with_an_xdm_looking_column_of_its_own_stays_a_flat_table(empty_db, frame, kind):
    report = ingest.ingest_bytes(empty_db, frame.to_csv(index=False).encode(), f"{kind}.csv")
    assert (report.kind, report.rows_accepted) == (kind, len(frame))
    if kind == "profiles":
        assert store.query_df(empty_db, "SELECT first_name FROM profiles")["first_name"].tolist() == ["Ana"]


def test_a_flattened_parquet_file_loads_as_the_nested_export(empty_db, tmp_path):
    reference = tmp_path / "reference.duckdb"
    ingest.ingest_bytes(reference, json.dumps(NESTED_EVENTS).encode(), "events.json", kind="events")
    table = _flattened("dots")
    table["commerce.order.priceTotal"] = pd.to_numeric(table["commerce.order.priceTotal"])
    report = ingest.ingest_bytes(empty_db, table.to_parquet(index=False), "query-service.parquet")
    assert (report.kind, report.rows_accepted) == ("events", 2)
    assert _events_as_stored(empty_db) == _events_as_stored(reference)


@pytest.mark.parametrize("spelling", [
    {"_id": "@id", "eventType": "xdm:eventType", "timestamp": "Timestamp"},
    {"eventType": "https://ns.adobe.com/xdm/eventType", "timestamp": "xdm:timestamp"},
    {"eventType": "event_type"},
])
def test_a_flattened_table_takes_the_record_fields_in_any_spelling(empty_db, tmp_path, spelling):
    reference = tmp_path / "reference.duckdb"
    ingest.ingest_bytes(reference, json.dumps(NESTED_EVENTS).encode(), "events.json", kind="events")
    ingest.ingest_bytes(empty_db, _flattened("dots").rename(columns=spelling).to_csv(index=False).encode(), "qs.csv")
    assert _events_as_stored(empty_db) == _events_as_stored(reference)


def test_a_namespace_with_a_dot_keeps_its_identity_in_a_flattened_path(empty_db):
    crm = pd.DataFrame({"crmid": ["CRM-9"], "phone": ["+1 555 010 0400"]})
    ingest.ingest_bytes(empty_db, crm.to_csv(index=False).encode(), "crm.csv", kind="profiles")
    table = pd.DataFrame({"timestamp": ["2024-03-01T10:00:00Z"], "eventType": ["commerce.purchases"],
                          "identityMap.Phone_E.164.0.id": ["+15550100400"], "commerce.order.priceTotal": ["9.5"]})
    report = ingest.ingest_bytes(empty_db, table.to_csv(index=False).encode(), "qs.csv")
    assert (report.rows_accepted, report.profiles_created) == (1, 0)


def test_an_american_thousands_comma_is_never_read_as_a_decimal_comma(empty_db):
    frame = EVENTS.assign(value=[None, "1,250", "2,500"])
    with pytest.raises(ingest.ValidationError) as refused:
        ingest.ingest_bytes(empty_db, _written(frame, "\t"), "events.tsv", kind="events")
    assert any("`value` is not a number" in line for line in refused.value.problems)
    assert store.is_empty(empty_db) or store.query_df(empty_db, "SELECT count(*) AS n FROM events")["n"][0] == 0


def test_in_a_column_of_decimal_commas_a_point_separates_thousands_and_text_is_refused_alone(empty_db):
    frame = EVENTS.assign(value=["59,90", "1.250", "n/a"])
    with pytest.raises(ingest.ValidationError) as refused:
        ingest.ingest_bytes(empty_db, _written(frame, ";"), "events.csv", kind="events")
    assert [line[:6] for line in refused.value.problems] == ["Row 4:"]
    ingest.ingest_bytes(empty_db, _written(frame.iloc[:2], ";"), "events.csv", kind="events")
    assert sorted(store.query_df(empty_db, "SELECT value FROM events")["value"].tolist()) == [59.9, 1250.0]


@pytest.mark.parametrize("text", [
    "timestamp,event_type,email,sku\r2024-03-01T10:00:00Z,commerce.purchases,a@x.example,a;b;c;d\r",  # CR-only lines
    "timestamp,event_type,email,a;b;c;d;e\n2024-03-01T10:00:00Z,commerce.purchases,a@x.example,x\n",
])
def test_a_comma_file_with_more_semicolons_than_commas_in_its_first_line_stays_comma_separated(empty_db, text):
    report = ingest.ingest_bytes(empty_db, text.encode(), "events.csv", kind="events")
    assert report.rows_accepted == 1


@pytest.mark.parametrize("spelling", [
    {"timestamp": "TimeStamp", "email": "emailId"}, {"timestamp": "Time Stamp", "email": "EmailID"}])
def test_headers_that_break_words_elsewhere_name_the_same_columns(empty_db, tmp_path, spelling):
    reference = tmp_path / "reference.duckdb"
    ingest.ingest_bytes(reference, _written(EVENTS, ","), "events.csv", kind="events")
    ingest.ingest_bytes(empty_db, _written(EVENTS.rename(columns=spelling), ","), "events.csv", kind="events")
    assert _stored_events(empty_db) == _stored_events(reference)


def test_a_signup_date_header_spelled_in_words_fills_the_column(empty_db):
    frame = pd.DataFrame({"email": ["ana@x.example"], "SignUpDate": ["2023-05-01"]})
    ingest.ingest_bytes(empty_db, frame.to_csv(index=False).encode(), "crm.csv", kind="profiles")
    assert str(store.query_df(empty_db, "SELECT signup_date FROM profiles")["signup_date"][0])[:10] == "2023-05-01"


def test_a_cell_nesting_deeper_than_a_record_may_is_that_row_s_problem(empty_db):
    table = _flattened("json")
    table.loc[1, "identityMap"] = "[" * 5000 + "]" * 5000
    with pytest.raises(ingest.ValidationError) as refused:
        ingest.ingest_bytes(empty_db, table.to_csv(index=False).encode(), "qs.csv")
    assert [line[:6] for line in refused.value.problems] == ["Row 3:"]


def test_a_column_named_with_a_superscript_digit_is_a_name(empty_db):
    frame = EVENTS.assign(**{"size.\u00b2": ["1", "2", "3"]})
    assert ingest.ingest_bytes(empty_db, _written(frame, ","), "events.csv").rows_accepted == len(EVENTS)


# What a second hostile reading found.

def test_a_file_loaded_before_headers_were_matched_in_any_spelling_adds_nothing_when_loaded_again(empty_db):
    """`Product Name` and `Email Address` were not read before: a file that loaded without them keeps its events'
    ids now that they are read, so loading it again adds nothing."""
    frame = EVENTS.assign(**{"Product Name": ["Tent", "Tent", None], "Email Address": ["a@b.example"] * 3})
    before = EVENTS.assign(product_name=None)  # the same file as the app read it before
    first = ingest.ingest_bytes(empty_db, _written(before, ","), "events.csv", kind="events")
    again = ingest.ingest_bytes(empty_db, _written(frame, ","), "events.csv", kind="events")
    assert (first.rows_accepted, again.rows_accepted, again.rows_duplicate) == (len(EVENTS), 0, len(EVENTS))


@pytest.mark.parametrize("column", ["Profile ID", "profileId", "Event ID"])
def test_another_system_s_ids_are_not_taken_for_the_app_s_own(empty_db, column):
    frame = EVENTS.assign(**{column: ["P-001", "P-002", "P-003"]})
    report = ingest.ingest_bytes(empty_db, _written(frame, ","), "events.csv", kind="events")
    assert report.rows_accepted == len(EVENTS)
    assert not store.query_df(empty_db, "SELECT xdm_id FROM events")["xdm_id"].str.startswith("P-").any()


def test_a_flattened_parquet_file_with_typed_times_and_decimals_loads(empty_db, tmp_path):
    import decimal

    table = _flattened("dots")
    table["timestamp"] = pd.to_datetime(table["timestamp"], utc=True)
    table["commerce.order.priceTotal"] = [decimal.Decimal("59.90"), None]
    report = ingest.ingest_bytes(empty_db, table.to_parquet(index=False), "query-service.parquet")
    assert report.rows_accepted == 2
    reference = tmp_path / "reference.duckdb"
    ingest.ingest_bytes(reference, json.dumps(NESTED_EVENTS).encode(), "events.json", kind="events")
    assert _events_as_stored(empty_db) == _events_as_stored(reference)


def test_a_flattened_profile_table_s_valid_from_dates_its_values(empty_db):
    table = pd.DataFrame({"identityMap": [json.dumps({"Email": [{"id": "a@x.example"}]})], "loyalty.tier": ["gold"],
                          "valid_from": ["2024-01-01"]})
    ingest.ingest_bytes(empty_db, table.to_csv(index=False).encode(), "profiles.csv", kind="profiles")
    dated = store.query_df(empty_db, "SELECT CAST(valid_from AS DATE) AS day FROM profile_attribute_versions "
                                     "WHERE attribute = 'loyalty_tier'")["day"].astype(str).tolist()
    assert dated == ["2024-01-01"]
    extra = store.query_df(empty_db, "SELECT CAST(attributes AS VARCHAR) AS extra FROM profiles")["extra"][0]
    assert extra is None or "valid_from" not in extra


@pytest.mark.parametrize("header", ["email,email", "timestamp,event_type,email,web.webPageDetails.name,"
                                                   "web.webPageDetails.name"])
def test_two_columns_of_one_name_are_refused_by_name(empty_db, header):
    columns = header.split(",")
    text = header + "\n" + ",".join(["2024-03-01T10:00:00Z", "purchase", "a@x.example", "x", "y"][-len(columns):]
                                    if len(columns) > 2 else ["a@x.example", "b@x.example"]) + "\n"
    with pytest.raises(ingest.ValidationError, match="two columns named"):
        ingest.ingest_bytes(empty_db, text.encode(), "file.csv")


def test_flattened_events_forced_as_profiles_are_refused_whatever_the_time_s_spelling(empty_db):
    table = _flattened("dots").rename(columns={"timestamp": "xdm:timestamp", "eventType": "xdm:eventType"})
    with pytest.raises(ingest.ValidationError, match="holds experience events"):
        ingest.ingest_bytes(empty_db, table.to_csv(index=False).encode(), "events.csv", kind="profiles")


def test_a_file_with_carriage_returns_only_is_told_to_hold_events(empty_db):
    text = "timestamp,event_type,email,value\r2024-03-01T10:00:00Z,commerce.purchases,a@x.example,5\r"
    report = ingest.ingest_bytes(empty_db, text.encode(), "mac.csv")
    assert (report.kind, report.rows_accepted) == ("events", 1)


def test_dotted_european_dates_are_read_day_first_and_impossible_ones_refused(empty_db, tmp_path):
    reference = tmp_path / "reference.duckdb"
    ingest.ingest_bytes(reference, _written(EVENTS, ","), "events.csv", kind="events")
    european = EVENTS.assign(timestamp=["01.03.2024 10:00", "2.3.2024 11:30:00", "02.03.2024 12:00"])
    ingest.ingest_bytes(empty_db, _written(european, ";"), "events.csv", kind="events")
    assert _stored_events(empty_db) == _stored_events(reference)
    for written in ("31.02.2024 10:00", "03/01/2024 10:00"):  # no such day; a slash leaves day and month unknown
        with pytest.raises(ingest.ValidationError) as refused:
            ingest.ingest_bytes(tmp_path / "other.duckdb", _written(EVENTS.assign(timestamp=written), ";"), "e.csv",
                                kind="events")
        assert any(line.startswith("Row 2:") and written in line for line in refused.value.problems)


def test_a_profile_file_s_dotted_dates_date_its_values(empty_db):
    frame = pd.DataFrame({"email": ["ana@x.example"], "signup_date": ["05.01.2023"], "loyalty_tier": ["gold"],
                          "valid_from": ["01.02.2024"]})
    ingest.ingest_bytes(empty_db, _written(frame, ";"), "crm.csv", kind="profiles")
    row = store.query_df(empty_db, "SELECT CAST(signup_date AS DATE) AS signed, (SELECT CAST(min(valid_from) AS DATE) "
                                   "FROM profile_attribute_versions WHERE attribute = 'loyalty_tier') AS dated "
                                   "FROM profiles").astype(str).iloc[0].tolist()
    assert row == ["2023-01-05", "2024-02-01"]
