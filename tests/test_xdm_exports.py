"""Experience Platform's exports as users download them: Parquet dataset exports, part files in a zip or a folder,
identities in every place and case, and timestamps in every form; what loads is checked, not only accepted."""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import io
import json
import tracemalloc
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cai import ingest, store
from cai.errors import ValidationError

NOW = dt.datetime(2026, 4, 1)
IDENTITY = pa.struct([("id", pa.string()), ("authenticatedState", pa.string()), ("primary", pa.bool_())])
IDENTITY_MAP = pa.map_(pa.string(), pa.list_(IDENTITY))
PRODUCT_LINE = pa.struct([("SKU", pa.string()), ("name", pa.string()), ("quantity", pa.int64()),
                          ("priceTotal", pa.decimal128(12, 2))])
EVENT_SCHEMA = pa.schema([
    ("_id", pa.string()),
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("eventType", pa.string()),
    ("identityMap", IDENTITY_MAP),
    ("commerce", pa.struct([("order", pa.struct([("purchaseID", pa.string()), ("priceTotal", pa.decimal128(12, 2))])),
                            ("purchases", pa.struct([("value", pa.float64())]))])),
    ("productListItems", pa.list_(PRODUCT_LINE)),
    ("_acme", pa.struct([("storeId", pa.string()), ("identification", pa.struct([("crmId", pa.string())]))])),
])
PROFILE_SCHEMA = pa.schema([
    ("_id", pa.string()),
    ("identityMap", IDENTITY_MAP),
    ("person", pa.struct([("name", pa.struct([("firstName", pa.string()), ("lastName", pa.string()),
                                              ("middleName", pa.string())])),
                          ("birthDate", pa.date32()), ("gender", pa.string())])),
    ("personalEmail", pa.struct([("address", pa.string()), ("status", pa.string())])),
    ("mobilePhone", pa.struct([("number", pa.string())])),
    ("homeAddress", pa.struct([("city", pa.string()), ("countryCode", pa.string()), ("postalCode", pa.string())])),
    ("loyalty", pa.struct([("tier", pa.string()), ("points", pa.decimal128(10, 0)),
                           ("joinDate", pa.timestamp("ms", tz="UTC")), ("loyaltyID", pa.list_(pa.string()))])),
    ("_repo", pa.struct([("modifyDate", pa.timestamp("us", tz="UTC"))])),
])


def _rows(db, sql: str, params: list | None = None) -> list[tuple]:
    with store.connect(db) as con:
        return con.execute(sql, params or []).fetchall()


def _identity(namespace: str, value: str, primary: bool | None = None, state: str | None = None) -> tuple:
    return namespace, [{"id": value, "authenticatedState": state, "primary": primary}]


def _purchase(number: int, when: dt.datetime, ecid: str, email: str | None = None) -> dict:
    identity_map = [_identity("ECID", ecid, True, "ambiguous")]
    if email:
        identity_map.append(_identity("Email", email, False, "authenticated"))
    return {"_id": f"evt-{number}", "timestamp": when, "eventType": "commerce.purchases", "identityMap": identity_map,
            "commerce": {"order": {"purchaseID": f"ORD-{number}", "priceTotal": decimal.Decimal("30.25")},
                         "purchases": {"value": 1.0}},
            "productListItems": [{"SKU": "SKU-A", "name": "Mug", "quantity": 2, "priceTotal": decimal.Decimal("20.00")},
                                 {"SKU": "SKU-B", "name": "Tea", "quantity": 1,
                                  "priceTotal": decimal.Decimal("10.25")}],
            "_acme": {"storeId": "berlin-3", "identification": None}}


def _page_view(number: int, when: dt.datetime, identity_map: list | None, crm_id: str | None = None) -> dict:
    return {"_id": f"evt-{number}", "timestamp": when, "eventType": "web.webpagedetails.pageViews",
            "identityMap": identity_map, "commerce": None, "productListItems": None,
            "_acme": {"storeId": None, "identification": {"crmId": crm_id}} if crm_id else None}


def _parquet(rows: list[dict], schema: pa.Schema = EVENT_SCHEMA) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink)
    return sink.getvalue()


def _export_events() -> list[dict]:
    day = dt.datetime(2026, 3, 1, 10, tzinfo=dt.timezone.utc)
    return [_purchase(1, day, "ECID-1", "Ann@Shop.test"),
            _page_view(2, day + dt.timedelta(hours=1), [_identity("ecid", "ECID-1")]),
            _page_view(3, day + dt.timedelta(hours=2), None, crm_id="CRM-9"),
            _purchase(4, day + dt.timedelta(days=1), "ECID-2")]


def test_a_parquet_dataset_export_loads_its_nested_events_with_values_identities_and_tenant_fields(empty_db, tmp_path):
    path = tmp_path / "part-00000-tid-1-c000.snappy.parquet"
    path.write_bytes(_parquet(_export_events()))
    report = ingest.ingest_file(empty_db, path)
    assert (report.kind, report.rows_accepted, report.profiles_created) == ("events", 4, 3)
    assert _rows(empty_db, "SELECT xdm_id, ts::VARCHAR, event_type, value, order_id, sku, quantity, price_total, "
                           "raw->>'$._acme.storeId' FROM events ORDER BY xdm_id") == [
        ("evt-1", "2026-03-01 10:00:00", "commerce.purchases", 30.25, "ORD-1", "SKU-A", 3, 30.25, "berlin-3"),
        ("evt-2", "2026-03-01 11:00:00", "web.webpagedetails.pageViews", None, None, None, None, None, None),
        ("evt-3", "2026-03-01 12:00:00", "web.webpagedetails.pageViews", None, None, None, None, None, None),
        ("evt-4", "2026-03-02 10:00:00", "commerce.purchases", 30.25, "ORD-4", "SKU-A", 3, 30.25, "berlin-3")]
    # `ECID` and `ecid` are one namespace; the email is stored lower-case; the CRM id lives only in a tenant field.
    assert _rows(empty_db, "SELECT e.xdm_id, i.namespace, i.id_value, i.is_primary FROM events e "
                           "JOIN identities i USING (profile_id) ORDER BY 1, 2") == [
        ("evt-1", "ECID", "ECID-1", True), ("evt-1", "Email", "ann@shop.test", False),
        ("evt-2", "ECID", "ECID-1", True), ("evt-2", "Email", "ann@shop.test", False),
        ("evt-3", "CRMID", "CRM-9", False), ("evt-4", "ECID", "ECID-2", True)]
    # Null structs are left out, as the JSON export leaves them out; they are not written as nulls.
    assert _rows(empty_db, "SELECT raw FROM events WHERE xdm_id = 'evt-2'")[0][0].find("commerce") == -1


@pytest.mark.parametrize("arrow_type, stored", [
    (pa.timestamp("us", tz="UTC"), 1_772_359_200_123_456),
    (pa.timestamp("ms", tz="Europe/Berlin"), 1_772_359_200_123),
    (pa.timestamp("ns"), 1_772_359_200_123_456_789),
    (pa.timestamp("us", tz="+01:00"), 1_772_359_200_123_456),
    (pa.int64(), 1_772_359_200_123),
])
def test_parquet_timestamps_of_every_unit_and_zone_and_epoch_milliseconds_load_as_the_same_utc_time(
        empty_db, arrow_type, stored):
    schema = pa.schema([("_id", pa.string()), ("timestamp", arrow_type), ("eventType", pa.string()),
                        ("identityMap", IDENTITY_MAP)])
    table = pa.table({"_id": ["t1"], "timestamp": pa.array([stored], arrow_type), "eventType": ["app.launch"],
                      "identityMap": pa.array([[_identity("ECID", "E-1")]], IDENTITY_MAP)}, schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    ingest.ingest_bytes(empty_db, sink.getvalue(), "export.parquet", now=NOW)
    assert _rows(empty_db, "SELECT strftime(ts, '%Y-%m-%d %H:%M:%S.%f') FROM events") == [
        ("2026-03-01 10:00:00.123000",) if arrow_type.equals(pa.int64()) or arrow_type.unit == "ms"
        else ("2026-03-01 10:00:00.123456",)]


def test_a_parquet_profile_export_maps_its_blocks_and_is_dated_by_its_modify_date(empty_db):
    rows = [{"_id": "p1", "identityMap": [_identity("ECID", "ECID-1"), _identity("Email", "Ann@Shop.test", True)],
             "person": {"name": {"firstName": "Ann", "lastName": "Lee", "middleName": "Q"},
                        "birthDate": dt.date(1984, 5, 17), "gender": "female"},
             "personalEmail": {"address": "ann@shop.test", "status": "active"},
             "mobilePhone": {"number": "+49 170 1234567"},
             "homeAddress": {"city": "Berlin", "countryCode": "DE", "postalCode": "10115"},
             "loyalty": {"tier": "gold", "points": decimal.Decimal("1200"),
                         "joinDate": dt.datetime(2024, 1, 15, tzinfo=dt.timezone.utc), "loyaltyID": ["L-1"]},
             "_repo": {"modifyDate": dt.datetime(2026, 2, 1, 8, 30, tzinfo=dt.timezone.utc)}},
            {"_id": "p2", "identityMap": [_identity("crmid", "C-2")]}]
    data = _parquet(rows, PROFILE_SCHEMA)
    report = ingest.ingest_bytes(empty_db, data, "profiles.parquet", now=NOW)
    assert (report.kind, report.rows_accepted, report.profiles_created) == ("profiles", 2, 2)
    assert _rows(empty_db, "SELECT first_name, last_name, gender, birth_year, city, country, loyalty_tier, "
                           "loyalty_points, signup_date::VARCHAR, attributes->>'$.homeAddress.postalCode' "
                           "FROM profiles ORDER BY profile_id") == [
        ("Ann", "Lee", "female", 1984, "Berlin", "DE", "gold", 1200, "2024-01-15", "10115"),
        (None, None, None, None, None, None, None, None, None, None)]
    assert _rows(empty_db, "SELECT namespace, id_value, is_primary FROM identities ORDER BY 1, 2") == [
        ("CRMID", "C-2", True), ("ECID", "ECID-1", False), ("Email", "ann@shop.test", True),
        ("LoyaltyID", "L-1", False), ("Phone", "+491701234567", False)]
    assert _rows(empty_db, "SELECT DISTINCT valid_from::VARCHAR FROM profile_attribute_versions") == [
        ("2026-02-01 08:30:00",)]
    # The same export again changes nothing: no profile, identity or dated version is added twice.
    ingest.ingest_bytes(empty_db, data, "profiles.parquet", now=NOW + dt.timedelta(days=1))
    assert _rows(empty_db, "SELECT (SELECT count(*) FROM profiles), (SELECT count(*) FROM identities), "
                           "(SELECT count(*) FROM profile_attribute_versions)") == [(2, 5, 6)]


def test_an_older_profile_export_loaded_after_a_newer_one_does_not_replace_its_values_nor_a_reload_add_any(empty_db):
    def export(tier: str, modified: dt.datetime) -> bytes:
        return json.dumps({"identityMap": {"Email": [{"id": "ann@shop.test"}]}, "loyalty": {"tier": tier},
                           "_repo": {"modifyDate": modified.isoformat() + "Z"}}).encode()

    ingest.ingest_bytes(empty_db, export("gold", dt.datetime(2026, 3, 1)), "march.json", now=NOW)
    ingest.ingest_bytes(empty_db, export("silver", dt.datetime(2026, 1, 1)), "january.json", now=NOW)
    # The March export again, a day later, replaces its own version instead of adding a second one.
    ingest.ingest_bytes(empty_db, export("gold", dt.datetime(2026, 3, 1)), "march.json",
                        now=NOW + dt.timedelta(days=1))
    assert _rows(empty_db, "SELECT loyalty_tier FROM profiles") == [("gold",)]
    assert _rows(empty_db, "SELECT valid_from::DATE::VARCHAR, value FROM profile_attribute_versions ORDER BY 1") == [
        ("2026-01-01", "silver"), ("2026-03-01", "gold")]


def _zip(members: dict[str, bytes]) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return sink.getvalue()


def test_a_zip_of_parquet_part_files_loads_as_one_batch_once_and_skips_spark_markers(empty_db):
    events = _export_events()
    data = _zip({"export/exportTime=202603020000/part-00000-a-c000.snappy.parquet": _parquet(events[:2]),
                 "export/exportTime=202603020000/part-00001-a-c000.snappy.parquet": _parquet(events[2:]),
                 "export/exportTime=202603020000/_SUCCESS": b"",
                 "export/exportTime=202603020000/.part-00000-a-c000.snappy.parquet.crc": b"\x00crc"})
    report = ingest.ingest_bytes(empty_db, data, "acme_events.zip", now=NOW)
    assert (report.dataset, report.rows_total, report.rows_accepted) == ("acme_events", 4, 4)
    again = ingest.ingest_bytes(empty_db, data, "acme_events.zip", now=NOW)
    assert (again.rows_accepted, again.rows_duplicate, again.profiles_created) == (0, 4, 0)
    assert _rows(empty_db, "SELECT count(*), count(DISTINCT batch_id) FROM events") == [(4, 1)]


def _ndjson_gz(records: list[dict]) -> bytes:
    return gzip.compress("".join(json.dumps(record) + "\n" for record in records).encode())


def _json_event(number: int, timestamp, **fields) -> dict:
    return {"_id": f"j-{number}", "timestamp": timestamp, "eventType": "commerce.productViews",
            "identityMap": {"ECID": [{"id": f"E-{number}"}]}, **fields}


def test_a_folder_of_json_gz_parts_loads_as_one_batch_named_after_the_folder(empty_db, tmp_path):
    folder = tmp_path / "acme_web"
    (folder / "exportTime=202603020000").mkdir(parents=True)
    (folder / "exportTime=202603020000" / "part-00000-b-c000.json.gz").write_bytes(
        _ndjson_gz([_json_event(1, "2026-03-01T10:00:00Z"), _json_event(2, "2026-03-01T10:00:00.5+01:00")]))
    (folder / "exportTime=202603020000" / "part-00001-b-c000.json.gz").write_bytes(_ndjson_gz([]))
    (folder / "exportTime=202603030000").mkdir()
    (folder / "exportTime=202603030000" / "part-00000-c-c000.json.gz").write_bytes(
        _ndjson_gz([_json_event(3, 1772359200000)]))
    (folder / "exportTime=202603030000" / "_SUCCESS").write_bytes(b"")
    report = ingest.ingest_file(empty_db, folder)
    assert (report.dataset, report.rows_accepted) == ("acme_web", 3)
    assert _rows(empty_db, "SELECT xdm_id, ts::VARCHAR FROM events ORDER BY 1") == [
        ("j-1", "2026-03-01 10:00:00"), ("j-2", "2026-03-01 09:00:00.5"), ("j-3", "2026-03-01 10:00:00")]


def test_a_bad_row_in_a_later_part_names_that_part_and_nothing_of_the_export_is_loaded(empty_db):
    data = _zip({"part-00000.json": json.dumps([_json_event(1, "2026-03-01T10:00:00Z")]).encode(),
                 "part-00001.json": json.dumps([_json_event(2, "2026-03-01T10:00:00Z"),
                                                _json_event(3, "yesterday")]).encode()})
    with pytest.raises(ValidationError) as refused:
        ingest.ingest_bytes(empty_db, data, "export.zip", now=NOW)
    assert refused.value.problems == ["Row 3 (part-00001.json, row 2): unparseable timestamp 'yesterday'"]
    assert _rows(empty_db, "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM profiles), "
                           "(SELECT count(*) FROM identities)") == [(0, 0, 0)]


@pytest.mark.parametrize("timestamp, message", [
    ("1970-01-01T00:00:00Z", "Row 2: timestamp 1970-01-01T00:00:00Z is before 1990, so it is not a real event time"),
    (0, "Row 2: timestamp 0 (read as 1970-01-01 00:00 UTC) is before 1990"),
    ("2999-12-31T23:59:59.999+01:00", "Row 2: timestamp 2999-12-31T23:59:59.999+01:00 is in the future (after "
                                      "2026-04-02)"),
])
def test_an_event_dated_1970_or_2999_is_refused_naming_its_row_and_date_and_moves_no_date(
        demo_db, timestamp, message):
    before = ingest.store_summary(demo_db)
    data = "\n".join(json.dumps(record) for record in [_json_event(1, "2026-03-01T10:00:00Z"),
                                                       _json_event(2, timestamp)]).encode()
    with pytest.raises(ValidationError) as refused:
        ingest.ingest_bytes(demo_db, data, "events.ndjson", now=NOW)
    assert refused.value.problems[0].startswith(message)
    assert ingest.store_summary(demo_db) == before


def test_iso_forms_and_epoch_numbers_load_as_the_times_they_write(empty_db):
    forms = ["2026-03-01T10:00:00Z", "2026-03-01T11:00:00+01:00", "2026-03-01T10:00:00.123Z",
             "2026-03-01T10:00:00.123456Z", "2026-03-01T10:00:00.123456789Z", 1772359200000, 1772359200,
             "1772359200123"]
    data = json.dumps([_json_event(number, form) for number, form in enumerate(forms)]).encode()
    ingest.ingest_bytes(empty_db, data, "events.json", now=NOW)
    assert [row[0] for row in _rows(empty_db, "SELECT strftime(ts, '%H:%M:%S.%f') FROM events ORDER BY xdm_id")] == [
        "10:00:00.000000", "10:00:00.000000", "10:00:00.123000", "10:00:00.123456", "10:00:00.123456",
        "10:00:00.000000", "10:00:00.000000", "10:00:00.123000"]


def test_a_tenant_field_named_like_a_namespace_that_holds_no_identity_is_ignored_not_refused(empty_db):
    record = _json_event(1, "2026-03-01T10:00:00Z", _acme={"campaign": {"email": "spring newsletter"}})
    report = ingest.ingest_bytes(empty_db, json.dumps(record).encode(), "events.json", now=NOW)
    assert report.rows_accepted == 1
    assert _rows(empty_db, "SELECT namespace, id_value FROM identities") == [("ECID", "E-1")]


def test_identities_only_in_end_user_ids_or_a_tenant_field_stitch_with_the_identity_map(empty_db):
    records = [
        {"timestamp": "2026-03-01T10:00:00Z", "eventType": "a",
         "identityMap": {"Email": [{"id": "Ann@Shop.test", "primary": True}], "ECID": [{"id": "E-1"}]}},
        {"timestamp": "2026-03-01T11:00:00Z", "eventType": "b", "endUserIDs": {"_experience": {
            "emailid": {"id": "ANN@shop.test", "authenticatedState": "authenticated"}}}},
        {"timestamp": "2026-03-01T12:00:00Z", "eventType": "c", "endUserIDs": {"_experience": {"mcid": {"id": "E-2"}}},
         "_acme": {"crmId": "C-1"}},
        {"timestamp": "2026-03-01T13:00:00Z", "eventType": "d", "identityMap": {"crmid": [{"id": "C-1"}],
                                                                                "ecid": [{"id": "E-1"}]}},
    ]
    report = ingest.ingest_bytes(empty_db, "\n".join(map(json.dumps, records)).encode(), "e.ndjson", now=NOW)
    assert (report.rows_accepted, report.profiles_created) == (4, 1)
    assert _rows(empty_db, "SELECT namespace, id_value, is_primary FROM identities ORDER BY 1, 2") == [
        ("CRMID", "C-1", False), ("ECID", "E-1", False), ("ECID", "E-2", False), ("Email", "ann@shop.test", True)]


def test_a_zip_mixing_xdm_parts_with_flat_tables_or_holding_no_data_is_refused_plainly(empty_db):
    mixed = _zip({"part-00000.json": json.dumps(_json_event(1, "2026-03-01T10:00:00Z")).encode(),
                  "part-00001.csv": b"timestamp,event_type,email\n2026-03-01T10:00:00Z,a,a@b.test\n"})
    with pytest.raises(ValidationError, match="mixes XDM files"):
        ingest.ingest_bytes(empty_db, mixed, "export.zip", now=NOW)
    with pytest.raises(ValidationError, match="holds no data files"):
        ingest.ingest_bytes(empty_db, _zip({"_SUCCESS": b""}), "export.zip", now=NOW)
    with pytest.raises(ValidationError, match="not a zip file we can read"):
        ingest.ingest_bytes(empty_db, b"PK\x03\x04 not really", "export.zip", now=NOW)


def test_a_zip_whose_parts_expand_past_the_limit_is_refused(empty_db, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", 10_000)
    data = _zip({f"part-0000{number}.json": b" " * 6_000 for number in range(2)})
    assert len(data) < 10_000
    with pytest.raises(ValidationError, match="expands to more than"):
        ingest.ingest_bytes(empty_db, data, "export.zip", now=NOW)


@pytest.mark.parametrize("nested", [False, True], ids=["gzip parts", "zips in a zip"])
def test_a_zip_of_compressed_parts_is_refused_before_it_holds_more_than_the_limit(empty_db, monkeypatch, nested):
    """Each part within the limit, together past it: the parts are uncompressed one after the other within what
    the ones before left, so the refusal comes before twenty parts' worth is held (a real export of ten 150 MB
    parts held 1.5 GB before its refusal, enough to end the app's container)."""
    limit = 1_000_000
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", limit)
    part = gzip.compress(b" " * (limit * 9 // 10))
    if nested:
        part = _zip({"part-00000.json.gz": part})
    data = _zip({f"part-{number:05}.json{'.zip' if nested else '.gz'}": part for number in range(20)})
    tracemalloc.start()
    try:
        with pytest.raises(ValidationError, match="expands to more than"):
            ingest.ingest_bytes(empty_db, data, "export.zip", now=NOW)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * limit


def test_flat_csv_parts_of_one_zip_load_together_and_a_bad_row_names_its_part(empty_db):
    header = b"timestamp,event_type,email\n"
    good = _zip({"a.csv": header + b"2026-03-01T10:00:00Z,a,a@b.test\n",
                 "b.csv": header + b"2026-03-01T11:00:00Z,b,c@d.test\n"})
    assert ingest.ingest_bytes(empty_db, good, "flat.zip", now=NOW).rows_accepted == 2
    bad = _zip({"a.csv": header + b"2026-03-02T10:00:00Z,a,a@b.test\n",
                "b.csv": header + b"2026-03-02T11:00:00Z,b,c@d.test\n2999-01-01T00:00:00Z,c,c@d.test\n"})
    with pytest.raises(ValidationError) as refused:
        ingest.ingest_bytes(empty_db, bad, "flat.zip", now=NOW)
    assert refused.value.problems[0].startswith("Row 4 (b.csv, row 3): timestamp 2999-01-01T00:00:00Z is in the")
    assert _rows(empty_db, "SELECT count(*) FROM events") == [(2,)]


def test_a_parquet_identity_map_that_names_a_namespace_twice_keeps_the_identities_of_both(empty_db):
    table = pa.table({"timestamp": ["2026-03-01T10:00:00Z"], "eventType": ["a"],
                      "identityMap": pa.array([[_identity("ECID", "E-1"), _identity("ECID", "E-2")]], IDENTITY_MAP)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    ingest.ingest_bytes(empty_db, sink.getvalue(), "export.parquet", now=NOW)
    assert _rows(empty_db, "SELECT namespace, id_value FROM identities ORDER BY 2") == [("ECID", "E-1"),
                                                                                         ("ECID", "E-2")]


def test_a_small_parquet_whose_records_decode_past_the_upload_limit_is_refused(empty_db, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", 20_000)
    day = dt.datetime(2026, 3, 1, 10, tzinfo=dt.timezone.utc)
    data = _parquet([_purchase(number, day, "ECID-1") for number in range(200)])
    assert len(data) < 20_000
    with pytest.raises(ValidationError, match=r"decodes to more than 0 MB of records \(as JSON\).*by row \d+"):
        ingest.ingest_bytes(empty_db, data, "export.parquet", now=NOW)
    assert _rows(empty_db, "SELECT count(*) FROM events") == [(0,)]


def test_a_tenant_field_describing_someone_else_never_stitches_the_customers_who_share_it(empty_db):
    """A store's phone or a salesperson's email under a tenant block is named like a namespace but is shared by many
    customers: taken as an identity, it merged them all into one profile."""
    records = [_json_event(number, "2026-03-01T10:00:00Z",
                           identityMap={"Email": [{"id": f"cust{number}@shop.test"}]},
                           _acme={"store": {"phone": "+1 212 555 0100"}, "salesperson": {"email": "rep@shop.test"},
                                  "identification": {"core": {"crmId": f"C-{number}"}}})
               for number in range(3)]
    report = ingest.ingest_bytes(empty_db, "\n".join(map(json.dumps, records)).encode(), "e.ndjson", now=NOW)
    assert (report.rows_accepted, report.profiles_created) == (3, 3)
    assert sorted(_rows(empty_db, "SELECT namespace, count(*) FROM identities GROUP BY 1")) == [
        ("CRMID", 3), ("Email", 3)]


def test_a_date_written_as_an_eight_digit_number_is_that_date_not_a_time_in_1970(empty_db):
    """Epoch numbers are told by their size; eight digits (20250301) are a date, in Parquet and JSON as in CSV."""
    table = pa.table({"timestamp": pa.array([20250301, 20250302], pa.int64()), "event_type": ["a", "b"],
                      "email": ["a@shop.test", "b@shop.test"]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    assert ingest.ingest_bytes(empty_db, buffer.getvalue(), "events.parquet", kind="events", now=NOW).rows_accepted == 2
    ingest.ingest_bytes(empty_db, json.dumps(_json_event(1, 20250303)).encode(), "events.json", now=NOW)
    assert [row[0] for row in _rows(empty_db, "SELECT strftime(ts, '%Y-%m-%d %H:%M') FROM events ORDER BY ts")] == [
        "2025-03-01 00:00", "2025-03-02 00:00", "2025-03-03 00:00"]


def test_rows_of_a_zip_whose_records_have_no_time_are_named_by_their_own_part(empty_db):
    """Checking whether such records are profiles read the first record again, which reset the parts' first rows:
    row 3 was named as row 3 of the first part."""
    records = [{"_id": f"n-{number}", "eventType": "a", "identityMap": {"ECID": [{"id": f"E-{number}"}]}}
               for number in range(4)]
    data = _zip({"part-00000.json": json.dumps(records[:2]).encode(),
                 "part-00001.json": json.dumps(records[2:]).encode()})
    with pytest.raises(ValidationError) as refused:
        ingest.ingest_bytes(empty_db, data, "export.zip", kind="events", now=NOW)
    assert "Row 3 (part-00001.json, row 1)" in " ".join(refused.value.problems)
