"""Ingestion of event and profile files (XDM JSON, CSV, Parquet): validate everything, then write one batch or nothing."""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from cai import audit, identity, store
from cai.errors import CaiError, ValidationError

MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_TEXT_CHARS = 10_000
MAX_PROBLEMS_REPORTED = 10
FUTURE_TOLERANCE = dt.timedelta(days=1)
EARLIEST_TIMESTAMP = pd.Timestamp("1990-01-01")

EVENT_COLUMNS = ["xdm_id", "ts", "event_type", "value", "order_id", "sku", "product_name", "quantity",
                 "price_total", "channel", "page_name", "tracking_code", "raw"]
NUMERIC_EVENT_COLUMNS = ["value", "quantity", "price_total"]
TEXT_EVENT_COLUMNS = ["xdm_id", "event_type", "order_id", "sku", "product_name", "channel", "page_name",
                      "tracking_code"]
PROFILE_ATTRIBUTES = {
    "first_name": "first_name", "firstname": "first_name", "last_name": "last_name", "lastname": "last_name",
    "gender": "gender", "birth_year": "birth_year", "birthyear": "birth_year", "city": "city",
    "country": "country", "loyalty_tier": "loyalty_tier", "loyaltytier": "loyalty_tier",
    "loyalty_points": "loyalty_points", "loyaltypoints": "loyalty_points", "signup_date": "signup_date",
    "signupdate": "signup_date",
}
XDM_COMMERCE_TYPES = ["purchases", "checkouts", "productListAdds", "productListRemovals", "productViews"]
EXPERIENCE_ID_NAMESPACES = {"emailid": "Email", "mcid": "ECID", "ecid": "ECID"}


@dataclass
class BatchReport:
    """What one file did to the store."""

    file_name: str
    dataset: str
    kind: str
    status: str
    rows_total: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    profiles_created: int = 0
    profiles_merged: int = 0
    problems: list[str] = field(default_factory=list)
    batch_id: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Parsed:
    """Rows in our normalised columns plus, per row, the identities it carries."""

    frame: pd.DataFrame
    identities: list[list[identity.IdentityKey]]
    primaries: list[identity.IdentityKey | None]
    problems: list[tuple[int, str]]


# --- Reading files -------------------------------------------------------------------------------------------


def _decode(data: bytes, file_name: str) -> str:
    if b"\x00" in data:
        raise ValidationError(f"{file_name} contains NUL bytes, so it is not a text file we can read.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValidationError(
            f"{file_name} is not UTF-8 text (an unreadable byte at position {error.start:,}). "
            "Save or export it as UTF-8 and upload it again."
        ) from None


def _strip_xdm_prefix(value):
    if isinstance(value, dict):
        return {key.removeprefix("xdm:"): _strip_xdm_prefix(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strip_xdm_prefix(item) for item in value]
    return value


def _load_json_records(text: str, file_name: str) -> list:
    stripped = text.strip()
    if not stripped:
        raise ValidationError(f"{file_name} is empty.")
    if stripped[0] == "[":
        try:
            records = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise ValidationError(
                f"{file_name} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}. "
                "The file may be truncated."
            ) from None
        return records
    if stripped[0] != "{":
        raise ValidationError(f"{file_name} is not JSON: it should start with '[' (an array) or '{{' (JSON lines).")
    records = []
    for line_number, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if line_number == 1:
                try:
                    json.loads(stripped)
                except json.JSONDecodeError:
                    pass
                else:
                    raise ValidationError(
                        f"{file_name} holds a single JSON object; expected an array of records or one record "
                        "per line (JSON lines)."
                    ) from None
            raise ValidationError(
                f"{file_name} is not valid JSON lines: line {line_number}: {error.msg}. The file may be truncated."
            ) from None
    if len(records) == 1 and not ("timestamp" in records[0] or "xdm:timestamp" in records[0]) and any(
        isinstance(item, list) for item in records[0].values()
    ):
        raise ValidationError(
            f"{file_name} holds a single JSON object; expected an array of records or one record per line."
        )
    return records


def _dig(record: dict, *path):
    for key in path:
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def _xdm_identities(record: dict) -> tuple[list[identity.IdentityKey], identity.IdentityKey | None]:
    keys: list[identity.IdentityKey] = []
    primary = None
    identity_map = record.get("identityMap")
    if isinstance(identity_map, dict):
        for namespace, entries in identity_map.items():
            for entry in entries if isinstance(entries, list) else [entries]:
                if isinstance(entry, dict) and entry.get("id") not in (None, ""):
                    key = (identity.canonical_namespace(namespace), str(entry["id"]))
                    keys.append(key)
                    if entry.get("primary") and primary is None:
                        primary = key
    experience = _dig(record, "endUserIDs", "_experience")
    if isinstance(experience, dict):
        for name, entry in experience.items():
            if isinstance(entry, dict) and entry.get("id") not in (None, ""):
                namespace = EXPERIENCE_ID_NAMESPACES.get(name.lower()) or _dig(entry, "namespace", "code") or name
                key = (identity.canonical_namespace(str(namespace)), str(entry["id"]))
                keys.append(key)
                if primary is None and (entry.get("primary") or key[0] == "Email"):
                    primary = key
    return keys, primary


def _xdm_event(record: dict) -> dict:
    commerce = record.get("commerce") if isinstance(record.get("commerce"), dict) else {}
    items = record.get("productListItems") if isinstance(record.get("productListItems"), list) else []
    first_item = items[0] if items and isinstance(items[0], dict) else {}
    event_type = record.get("eventType")
    if not event_type:
        populated = [name for name in XDM_COMMERCE_TYPES if _dig(commerce, name, "value")]
        if populated:
            event_type = f"commerce.{populated[0]}"
        elif _dig(record, "web", "webPageDetails", "pageViews", "value"):
            event_type = "web.webpagedetails.pageViews"
    order_total = _dig(commerce, "order", "priceTotal")
    if order_total is None and items:
        totals = [item.get("priceTotal") for item in items if isinstance(item, dict)]
        if totals and all(isinstance(total, (int, float)) for total in totals):
            order_total = sum(totals)
    quantities = [item.get("quantity") for item in items if isinstance(item, dict) and "quantity" in item]
    value = order_total if event_type == "commerce.purchases" else None
    if value is None and isinstance(event_type, str) and event_type.startswith("commerce."):
        value = _dig(commerce, event_type.split(".", 1)[1], "value")
    channel = record.get("channel")
    if isinstance(channel, dict):
        channel = channel.get("_type") or channel.get("_id") or channel.get("typeAtSource")
        channel = str(channel).rstrip("/").rsplit("/", 1)[-1] if channel else None
    return {
        "xdm_id": record.get("_id"),
        "ts": record.get("timestamp"),
        "event_type": event_type,
        "value": value,
        "order_id": _dig(commerce, "order", "purchaseID") or _dig(commerce, "order", "purchaseOrderNumber"),
        "sku": first_item.get("SKU") or first_item.get("sku"),
        "product_name": first_item.get("name"),
        "quantity": sum(quantities) if quantities and all(isinstance(q, (int, float)) for q in quantities)
        else (quantities[0] if quantities else None),
        "price_total": order_total if order_total is not None else first_item.get("priceTotal"),
        "channel": channel,
        "page_name": _dig(record, "web", "webPageDetails", "name"),
        "tracking_code": _dig(record, "marketing", "trackingCode"),
        "raw": json.dumps(record, ensure_ascii=False),
    }


def _parse_xdm(text: str, file_name: str) -> _Parsed:
    records = _load_json_records(text, file_name)
    if isinstance(records, dict):
        raise ValidationError(
            f"{file_name} holds a single JSON object; expected an array of experience events."
        )
    rows, keys, primaries, problems = [], [], [], []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            problems.append((number, "is not a JSON object"))
            rows.append({})
            keys.append([])
            primaries.append(None)
            continue
        record = _strip_xdm_prefix(record)
        rows.append(_xdm_event(record))
        record_keys, primary = _xdm_identities(record)
        keys.append(record_keys)
        primaries.append(primary)
    frame = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    frame["row"] = np.arange(1, len(frame) + 1)
    return _Parsed(frame, keys, primaries, problems)


def _read_table(data: bytes, file_name: str) -> pd.DataFrame:
    suffix = Path(file_name).suffix.lower()
    if suffix == ".parquet":
        if not data.startswith(b"PAR1"):
            raise ValidationError(f"{file_name} is named .parquet but is not a Parquet file. Is it really a CSV?")
        try:
            table = pd.read_parquet(io.BytesIO(data))
        except Exception as error:
            raise ValidationError(f"{file_name} is a damaged Parquet file ({error}).") from None
        return table.astype(object).where(table.notna(), None)
    text = _decode(data, file_name)
    if not text.strip():
        raise ValidationError(f"{file_name} is empty.")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, ValueError) as error:
        raise ValidationError(f"{file_name} is not a readable CSV file: {error}") from None


def _table_identities(table: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """Identity columns of a flat file: a column named after a namespace (``email``, ``ecid`` ...)."""
    namespaces = {}
    for column in table.columns:
        namespace = identity.canonical_namespace(str(column))
        if namespace in identity.KNOWN_NAMESPACES:
            namespaces[column] = namespace
    return list(namespaces), namespaces


def _row_identities(table: pd.DataFrame, columns: list[str], namespaces: dict[str, str]):
    keys, primaries = [], []
    values = {column: table[column].tolist() for column in columns}
    for index in range(len(table)):
        row_keys = [
            (namespaces[column], str(values[column][index]).strip())
            for column in columns
            if values[column][index] is not None and str(values[column][index]).strip() not in ("", "nan", "None")
        ]
        keys.append(row_keys)
        primaries.append(row_keys[0] if row_keys else None)
    return keys, primaries


def _parse_event_table(table: pd.DataFrame) -> _Parsed:
    table = table.rename(columns={column: str(column).strip().lower() for column in table.columns})
    missing = [column for column in ("timestamp", "event_type") if column not in table.columns]
    if missing:
        raise ValidationError(
            "This events file has no " + " and no ".join(f"`{column}`" for column in missing)
            + " column. Event files need `timestamp`, `event_type` and at least one identity column "
            "(email, ecid, phone, crmid, loyaltyid or profile_id)."
        )
    id_columns, namespaces = _table_identities(table)
    if not id_columns and "profile_id" not in table.columns:
        raise ValidationError(
            "This events file has no identity column. Add one of: email, ecid, phone, crmid, loyaltyid, profile_id."
        )
    # Email is the primary identity when present, as in the tutorial's data.
    id_columns.sort(key=lambda column: namespaces[column] != "Email")
    frame = pd.DataFrame({
        "xdm_id": table.get("_id", table.get("event_id")),
        "ts": table["timestamp"],
        "event_type": table["event_type"],
        **{column: table.get(column) for column in EVENT_COLUMNS[3:-1]},
        "raw": None,
    })
    keys, primaries = _row_identities(table, id_columns, namespaces)
    frame["known_profile_id"] = table.get("profile_id")
    frame["row"] = np.arange(2, len(frame) + 2)
    return _Parsed(frame, keys, primaries, [])


# --- Validation ----------------------------------------------------------------------------------------------


def _coerce_events(parsed: _Parsed, now: dt.datetime) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    frame = parsed.frame
    problems = list(parsed.problems)
    rows = frame["row"].to_numpy()

    def flag(mask, reason):
        for row in rows[np.asarray(mask, dtype=bool)][:MAX_PROBLEMS_REPORTED]:
            problems.append((int(row), reason))
        return int(np.asarray(mask, dtype=bool).sum())

    raw_ts = frame["ts"]
    missing_ts = raw_ts.isna() | (raw_ts.astype(str).str.strip() == "")
    flag(missing_ts, "no timestamp")
    as_text = raw_ts.where(~missing_ts, None).astype(object)
    parsed_ts = pd.to_datetime(as_text, utc=True, errors="coerce", format="ISO8601")
    bad_ts = ~missing_ts & parsed_ts.isna()
    for row, value in zip(rows[bad_ts.to_numpy()][:MAX_PROBLEMS_REPORTED], as_text[bad_ts].head(MAX_PROBLEMS_REPORTED)):
        reason = "timestamp is a number, not a date" if pd.notna(pd.to_numeric(value, errors="coerce")) \
            else f"unparseable timestamp {str(value)[:40]!r}"
        problems.append((int(row), reason))
    ts = parsed_ts.dt.tz_convert("UTC").dt.tz_localize(None)
    future = ts > pd.Timestamp(now + FUTURE_TOLERANCE)
    flag(future, "timestamp is in the future")
    flag(ts < EARLIEST_TIMESTAMP, "timestamp is before 1990")

    missing_type = frame["event_type"].isna() | (frame["event_type"].astype(str).str.strip() == "")
    flag(missing_type, "no event type (and none could be inferred from commerce or web fields)")

    no_identity = np.array([not keys for keys in parsed.identities], dtype=bool)
    if "known_profile_id" in frame:
        no_identity &= frame["known_profile_id"].isna().to_numpy()
    flag(no_identity, "no identity (Email, ECID or another namespace)")

    numbers = {}
    for column in NUMERIC_EVENT_COLUMNS:
        raw = frame[column]
        given = raw.notna() & (raw.astype(str).str.strip() != "")
        is_bool = raw.map(lambda value: isinstance(value, bool))
        converted = pd.to_numeric(raw.where(given & ~is_bool, None), errors="coerce")
        flag(given & (converted.isna() | is_bool), f"`{column}` is not a number")
        numbers[column] = converted
    flag(numbers["quantity"] < 0, "negative quantity")
    flag(numbers["price_total"] < 0, "negative price total")

    for column in TEXT_EVENT_COLUMNS:
        text = frame[column].where(frame[column].notna(), None)
        non_text = text.map(lambda value: value is not None and isinstance(value, (dict, list)))
        flag(non_text, f"`{column}` should be text, not a nested object")
        lengths = text.map(lambda value: len(str(value)) if value is not None else 0)
        flag(lengths > MAX_TEXT_CHARS, f"`{column}` is longer than {MAX_TEXT_CHARS:,} characters")
        flag(text.map(lambda value: value is not None and "\x00" in str(value)), f"`{column}` contains a NUL byte")

    clean = pd.DataFrame({
        "xdm_id": frame["xdm_id"].map(lambda value: None if value is None or pd.isna(value) else str(value)),
        "ts": ts,
        "event_type": frame["event_type"].map(lambda value: None if value is None or pd.isna(value)
                                              else str(value).strip()),
        "value": numbers["value"].astype(float),
        "order_id": frame["order_id"], "sku": frame["sku"], "product_name": frame["product_name"],
        "quantity": numbers["quantity"].round().astype("Int64"),
        "price_total": numbers["price_total"].astype(float),
        "channel": frame["channel"], "page_name": frame["page_name"], "tracking_code": frame["tracking_code"],
        "raw": frame["raw"],
    })
    for column in ("order_id", "sku", "product_name", "channel", "page_name", "tracking_code"):
        clean[column] = clean[column].map(lambda value: None if value is None or pd.isna(value) else str(value))
    return clean, problems


def _problem_report(problems: list[tuple[int, str]], total: int, noun: str) -> ValidationError:
    problems = sorted(set(problems))
    bad_rows = sorted({row for row, _ in problems})
    lines = [f"{noun} {row}: {reason}" for row, reason in problems[:MAX_PROBLEMS_REPORTED]]
    message = (
        f"This file was not loaded: {len(bad_rows):,}{'+' if len(problems) > MAX_PROBLEMS_REPORTED else ''} of "
        f"{total:,} {noun.lower()}s have problems. Fix them and upload the file again; nothing was changed."
    )
    return ValidationError(message, lines)


# --- Writing -------------------------------------------------------------------------------------------------


def _dataset_id(con: duckdb.DuckDBPyConnection, name: str, kind: str) -> int:
    rows = con.execute("SELECT dataset_id, kind FROM datasets WHERE name = ?", [name]).fetchall()
    if rows:
        row = rows[0]
        if row[1] != kind:
            raise CaiError(f"The dataset {name!r} holds {row[1]}, not {kind}. Choose another dataset name.")
        return row[0]
    dataset_id = store.next_id(con, "datasets", "dataset_id")
    con.execute("INSERT INTO datasets (dataset_id, name, kind) VALUES (?, ?, ?)", [dataset_id, name, kind])
    return dataset_id


def _record_failed_batch(db_path: Path, report: BatchReport, started: dt.datetime) -> None:
    def record(con):
        dataset_id = _dataset_id(con, report.dataset, report.kind)
        batch_id = store.next_id(con, "batches", "batch_id")
        con.execute(
            "INSERT INTO batches (batch_id, dataset_id, file_name, status, rows_total, rows_rejected, errors, "
            "started_at, finished_at) VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, current_timestamp)",
            [batch_id, dataset_id, report.file_name, report.rows_total, report.rows_rejected,
             json.dumps(report.problems), started],
        )
        return batch_id

    try:
        report.batch_id = store.write(db_path, record)
    except CaiError:
        pass  # The file's own problems matter more to the user than failing to log them.


def _insert_identities_and_profiles(con, stitched: identity.StitchResult, batch_id: int) -> None:
    if stitched.new_profiles:
        con.register("new_profile_ids", pd.DataFrame({"profile_id": stitched.new_profiles}))
        con.execute("INSERT INTO profiles (profile_id) SELECT profile_id FROM new_profile_ids")
        con.unregister("new_profile_ids")
    identity.apply_merges(con, stitched.merges, batch_id)
    if stitched.new_identities:
        frame = pd.DataFrame(stitched.new_identities, columns=["namespace", "id_value", "profile_id", "is_primary"])
        con.register("new_identity_rows", frame)
        con.execute(
            "INSERT INTO identities SELECT namespace, id_value, profile_id, is_primary FROM new_identity_rows"
        )
        con.unregister("new_identity_rows")


def _profile_for_rows(stitched: identity.StitchResult, keys: list[list[identity.IdentityKey]]) -> list[int | None]:
    merged_into = dict(stitched.merges)
    result = []
    for row_keys in keys:
        profile = stitched.profile_of[row_keys[0]] if row_keys else None
        result.append(merged_into.get(profile, profile))
    return result


def _audit_load(con, actor: str, report: BatchReport) -> None:
    audit.record(con, actor, "load", "dataset", report.dataset,
                 {"file": report.file_name, "kind": report.kind, "rows": report.rows_accepted})


def _write_events(db_path, clean, parsed, report, started, actor: str) -> BatchReport:
    def work(con):
        dataset_id = _dataset_id(con, report.dataset, "events")
        batch_id = store.next_id(con, "batches", "batch_id")
        keep = pd.Series(True, index=clean.index)
        ids = clean["xdm_id"]
        keep &= ~(ids.notna() & ids.duplicated(keep="first"))
        if ids.notna().any():
            con.register("incoming_ids", pd.DataFrame({"xdm_id": ids.dropna().unique()}))
            known = {row[0] for row in con.execute(
                "SELECT i.xdm_id FROM incoming_ids i SEMI JOIN events e ON e.xdm_id = i.xdm_id").fetchall()}
            con.unregister("incoming_ids")
            keep &= ~ids.isin(known)
        kept_positions = np.flatnonzero(keep.to_numpy())
        keys = [parsed.identities[i] for i in kept_positions]
        primaries = {parsed.primaries[i] for i in kept_positions if parsed.primaries[i]}
        distinct_groups = list({tuple(group): None for group in keys if group})
        stitched = identity.stitch(con, distinct_groups, primaries)
        _insert_identities_and_profiles(con, stitched, batch_id)

        rows = clean.iloc[kept_positions].copy()
        profile_ids = _profile_for_rows(stitched, keys)
        if "known_profile_id" in parsed.frame:
            given = pd.to_numeric(parsed.frame["known_profile_id"].iloc[kept_positions], errors="coerce")
            profile_ids = [p if p is not None else (None if pd.isna(g) else int(g))
                           for p, g in zip(profile_ids, given)]
            unknown = _unknown_profiles(con, [p for p in profile_ids if p is not None])
            if unknown:
                raise ValidationError(
                    f"This file names {len(unknown):,} profile ids that do not exist (for example {unknown[0]}). "
                    "Use an identity column (email, ecid ...) for new customers.",
                    [f"unknown profile_id {value}" for value in unknown[:MAX_PROBLEMS_REPORTED]],
                )
        rows.insert(1, "profile_id", pd.array(profile_ids, dtype="Int64"))
        rows["batch_id"] = batch_id
        con.register("incoming_events", rows)
        con.execute(
            "INSERT INTO events SELECT xdm_id, profile_id, ts, event_type, value, order_id, sku, product_name, "
            "quantity, price_total, channel, page_name, tracking_code, batch_id, raw FROM incoming_events "
            "ORDER BY profile_id, ts"
        )
        con.unregister("incoming_events")
        report.rows_accepted = len(rows)
        report.rows_duplicate = report.rows_total - len(rows)
        report.profiles_created = len(stitched.new_profiles)
        report.profiles_merged = len(stitched.merges)
        con.execute(
            "INSERT INTO batches (batch_id, dataset_id, file_name, status, rows_total, rows_accepted, "
            "rows_duplicate, profiles_created, profiles_merged, errors, started_at, finished_at) "
            "VALUES (?, ?, ?, 'success', ?, ?, ?, ?, ?, '[]', ?, current_timestamp)",
            [batch_id, dataset_id, report.file_name, report.rows_total, report.rows_accepted,
             report.rows_duplicate, report.profiles_created, report.profiles_merged, started],
        )
        _audit_load(con, actor, report)
        return batch_id

    report.batch_id = store.write(db_path, work)
    report.status = "success"
    return report


def _unknown_profiles(con, profile_ids: list[int]) -> list[int]:
    if not profile_ids:
        return []
    con.register("given_profiles", pd.DataFrame({"profile_id": sorted(set(profile_ids))}))
    unknown = [row[0] for row in con.execute(
        "SELECT g.profile_id FROM given_profiles g ANTI JOIN profiles p USING (profile_id) ORDER BY 1").fetchall()]
    con.unregister("given_profiles")
    return unknown


def _profile_attributes(table: pd.DataFrame, id_columns: list[str]) -> pd.DataFrame:
    attributes = pd.DataFrame(index=table.index)
    extras = {}
    for column in table.columns:
        if column in id_columns or column == "identityMap":
            continue
        target = PROFILE_ATTRIBUTES.get(str(column).strip().lower().replace(" ", "_"))
        if target:
            attributes[target] = table[column]
        else:
            extras[str(column)] = table[column]
    for column in ("first_name", "last_name", "gender", "birth_year", "city", "country", "loyalty_tier",
                   "loyalty_points", "signup_date"):
        if column not in attributes:
            attributes[column] = None
    extra_frame = pd.DataFrame(extras)
    attributes["attributes"] = [
        json.dumps({key: value for key, value in row.items() if value is not None and not pd.isna(value)},
                   default=str) if extras else None
        for row in extra_frame.to_dict("records")
    ] if extras else None
    return attributes


def _write_profiles(db_path: Path, table: pd.DataFrame, report: BatchReport, started, actor: str) -> BatchReport:
    if "identityMap" in table.columns:
        pairs = [_xdm_identities({"identityMap": value}) for value in table["identityMap"]]
        keys = [pair[0] for pair in pairs]
        primaries = [pair[1] for pair in pairs]
        id_columns = []
    else:
        id_columns, namespaces = _table_identities(table)
        id_columns.sort(key=lambda column: namespaces[column] != "Email")
        keys, primaries = _row_identities(table, id_columns, namespaces)
    attributes = _profile_attributes(table, id_columns)
    problems: list[tuple[int, str]] = []
    for index, row_keys in enumerate(keys):
        if not row_keys:
            problems.append((index + 2, "no identity (email, ecid, phone, crmid or loyaltyid)"))
    birth_year = pd.to_numeric(attributes["birth_year"], errors="coerce")
    for index in np.flatnonzero((attributes["birth_year"].notna() & birth_year.isna()).to_numpy()):
        problems.append((index + 2, "`birth_year` is not a number"))
    points = pd.to_numeric(attributes["loyalty_points"], errors="coerce")
    for index in np.flatnonzero((attributes["loyalty_points"].notna() & points.isna()).to_numpy()):
        problems.append((index + 2, "`loyalty_points` is not a number"))
    signup = pd.to_datetime(attributes["signup_date"], errors="coerce", format="ISO8601")
    for index in np.flatnonzero((attributes["signup_date"].notna() & signup.isna()).to_numpy()):
        problems.append((index + 2, "`signup_date` is not a date"))
    if problems:
        raise _problem_report(problems, len(table), "Row")
    attributes["birth_year"] = birth_year.astype("Int32")
    attributes["loyalty_points"] = points.astype("Int32")
    attributes["signup_date"] = signup.dt.date

    def work(con):
        dataset_id = _dataset_id(con, report.dataset, "profiles")
        batch_id = store.next_id(con, "batches", "batch_id")
        stitched = identity.stitch(con, [tuple(group) for group in keys], {p for p in primaries if p})
        _insert_identities_and_profiles(con, stitched, batch_id)
        frame = attributes.copy()
        frame.insert(0, "profile_id", _profile_for_rows(stitched, keys))
        frame = frame.drop_duplicates("profile_id", keep="last")
        con.register("incoming_profiles", frame)
        # A profile file's values win over what the profile had; missing values keep the old ones.
        con.execute(
            """
            UPDATE profiles SET
                first_name = coalesce(i.first_name, profiles.first_name),
                last_name = coalesce(i.last_name, profiles.last_name),
                gender = coalesce(i.gender, profiles.gender),
                birth_year = coalesce(i.birth_year, profiles.birth_year),
                city = coalesce(i.city, profiles.city),
                country = coalesce(i.country, profiles.country),
                loyalty_tier = coalesce(i.loyalty_tier, profiles.loyalty_tier),
                loyalty_points = coalesce(i.loyalty_points, profiles.loyalty_points),
                signup_date = coalesce(i.signup_date, profiles.signup_date),
                attributes = coalesce(i.attributes::JSON, profiles.attributes)
            FROM incoming_profiles i WHERE profiles.profile_id = i.profile_id
            """
        )
        con.unregister("incoming_profiles")
        report.rows_accepted = len(table)
        report.profiles_created = len(stitched.new_profiles)
        report.profiles_merged = len(stitched.merges)
        con.execute(
            "INSERT INTO batches (batch_id, dataset_id, file_name, status, rows_total, rows_accepted, "
            "profiles_created, profiles_merged, errors, started_at, finished_at) "
            "VALUES (?, ?, ?, 'success', ?, ?, ?, ?, '[]', ?, current_timestamp)",
            [batch_id, dataset_id, report.file_name, report.rows_total, report.rows_accepted,
             report.profiles_created, report.profiles_merged, started],
        )
        _audit_load(con, actor, report)
        return batch_id

    report.batch_id = store.write(db_path, work)
    report.status = "success"
    return report


def _detect_kind(file_name: str, data: bytes) -> str:
    head = data[:4096].lower()
    if Path(file_name).suffix.lower() in (".json", ".jsonl", ".ndjson"):
        return "events" if b"timestamp" in head or b"eventtype" in head else "profiles"
    return "events" if b"timestamp" in head else "profiles"


def ingest_bytes(db_path: Path, data: bytes, file_name: str, kind: str | None = None,
                 dataset: str | None = None, now: dt.datetime | None = None, actor: str = "local") -> BatchReport:
    """Validates and loads one file as one batch; raises ValidationError (and logs a failed batch) if it is bad."""
    started = dt.datetime.now()
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    kind = kind or _detect_kind(file_name, data)
    if kind not in ("events", "profiles"):
        raise CaiError(f"Unknown kind {kind!r}: choose events or profiles.")
    report = BatchReport(file_name=file_name, dataset=dataset or Path(file_name).stem, kind=kind, status="failed")
    try:
        if len(data) > MAX_FILE_BYTES:
            raise ValidationError(
                f"{file_name} is {len(data) / 1e6:,.0f} MB; the upload limit is {MAX_FILE_BYTES / 1e6:,.0f} MB. "
                "Split it into smaller files."
            )
        if not data.strip():
            raise ValidationError(f"{file_name} is empty.")
        suffix = Path(file_name).suffix.lower()
        if kind == "events":
            if suffix in (".json", ".jsonl", ".ndjson"):
                parsed = _parse_xdm(_decode(data, file_name), file_name)
            else:
                parsed = _parse_event_table(_read_table(data, file_name))
            report.rows_total = len(parsed.frame)
            if report.rows_total == 0:
                raise ValidationError(f"{file_name} has no events.")
            clean, problems = _coerce_events(parsed, now)
            if problems:
                report.rows_rejected = len({row for row, _ in problems})
                raise _problem_report(problems, report.rows_total, "Row")
            return _write_events(db_path, clean, parsed, report, started, actor)
        if suffix in (".json", ".jsonl", ".ndjson"):
            records = _load_json_records(_decode(data, file_name), file_name)
            table = pd.DataFrame([_strip_xdm_prefix(r) for r in records if isinstance(r, dict)])
        else:
            table = _read_table(data, file_name)
        report.rows_total = len(table)
        if report.rows_total == 0:
            raise ValidationError(f"{file_name} has no profiles.")
        return _write_profiles(db_path, table, report, started, actor)
    except ValidationError as error:
        report.problems = [str(error), *error.problems]
        _record_failed_batch(db_path, report, started)
        raise


def ingest_file(db_path: Path, path: Path, kind: str | None = None, dataset: str | None = None,
                actor: str = "local") -> BatchReport:
    path = Path(path)
    if not path.is_file():
        raise CaiError(f"There is no file at {path}.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValidationError(
            f"{path.name} is {path.stat().st_size / 1e6:,.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:,.0f} MB."
        )
    return ingest_bytes(db_path, path.read_bytes(), path.name, kind=kind, dataset=dataset, actor=actor)


def datasets_overview(db_path: Path) -> pd.DataFrame:
    """One row per dataset: kind, batches, rows and the date range its events cover."""
    return store.query_df(
        db_path,
        """
        SELECT d.name AS dataset, d.kind,
               count(b.batch_id) AS batches,
               count(b.batch_id) FILTER (WHERE b.status = 'failed') AS failed_batches,
               coalesce(sum(b.rows_accepted), 0)::BIGINT AS rows_accepted,
               coalesce(sum(b.rows_rejected), 0)::BIGINT AS rows_rejected,
               coalesce(sum(b.rows_duplicate), 0)::BIGINT AS rows_duplicate,
               (SELECT min(e.ts) FROM events e JOIN batches eb USING (batch_id) WHERE eb.dataset_id = d.dataset_id)
                   AS first_event,
               (SELECT max(e.ts) FROM events e JOIN batches eb USING (batch_id) WHERE eb.dataset_id = d.dataset_id)
                   AS last_event,
               d.created_at
        FROM datasets d LEFT JOIN batches b USING (dataset_id)
        GROUP BY ALL ORDER BY d.created_at
        """,
    )


def batches(db_path: Path) -> pd.DataFrame:
    return store.query_df(
        db_path,
        """
        SELECT b.batch_id, d.name AS dataset, b.file_name, b.status, b.rows_total, b.rows_accepted,
               b.rows_rejected, b.rows_duplicate, b.profiles_created, b.profiles_merged, b.errors,
               b.started_at, b.finished_at
        FROM batches b JOIN datasets d USING (dataset_id) ORDER BY b.batch_id DESC
        """,
    )


def store_summary(db_path: Path) -> dict:
    """Counts and the covered date range, for the Data page and `datasets --json`."""
    with store.connect(db_path) as con:
        profiles, identities = con.execute(
            "SELECT (SELECT count(*) FROM profiles), (SELECT count(*) FROM identities)").fetchall()[0]
        events, first, last = con.execute("SELECT count(*), min(ts), max(ts) FROM events").fetchall()[0]
    days = (last - first).days if first and last else 0
    return {"profiles": profiles, "identities": identities, "events": events,
            "first_event": first.isoformat() if first else None, "last_event": last.isoformat() if last else None,
            "days_covered": days, "meets_two_quarters": days >= 183}


def events_per_month(db_path: Path) -> pd.DataFrame:
    return store.query_df(
        db_path,
        "SELECT date_trunc('month', ts)::DATE AS month, event_type, count(*) AS events "
        "FROM events GROUP BY ALL ORDER BY month, event_type",
    )


def event_types(db_path: Path) -> list[str]:
    """Event types present in the store, most frequent first (the choices for goals and custom events)."""
    return store.query_df(db_path, "SELECT event_type FROM events GROUP BY ALL ORDER BY count(*) DESC")[
        "event_type"].tolist()
