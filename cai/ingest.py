"""Ingestion of event and profile files (XDM JSON, CSV, Parquet): validate everything, then write one batch or nothing."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import math
import os
import re
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cai import attributes as attribute_versions
from cai import audit, flat_files, identity, store, xdm
from cai.errors import CaiError, StoreBusy, ValidationError

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 200 * 1024 * 1024
# What a file may decode to, whatever its size on disk: these bound the memory a load takes.
MAX_ROWS = 1_000_000
MAX_CELLS = 20_000_000
MAX_RECORD_CHARS = 1_000_000
# Records shorter than this on average (`{}` is 2) cannot be events or profiles; refusing them early keeps a small
# file from decoding into millions of rows.
MIN_AVERAGE_RECORD_CHARS = 20
DENSITY_CHECK_AFTER_RECORDS = 10_000
MAX_NESTING_DEPTH = flat_files.MAX_NESTING_DEPTH
MAX_TEXT_CHARS = 10_000
MAX_ABS_NUMBER = 1e12
MAX_INTEGER = 2**31 - 1
MAX_PROBLEMS_REPORTED = 10
FUTURE_TOLERANCE = dt.timedelta(days=1)
EARLIEST_TIMESTAMP = pd.Timestamp("1990-01-01")
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
GZIP_MAGIC = b"\x1f\x8b"
# Parquet record batches turned into Python objects at a time: bounds the memory of one step of reading.
PARQUET_BATCH_ROWS = 10_000
# Experience Platform's columns that make a Parquet file an XDM export rather than a flat table.
XDM_TOP_LEVEL_FIELDS = {"eventtype", "identitymap", "enduserids"}
# The statuses of a load's record (table `loads`) until its batch is written: in progress, and found cut off.
LOADING = "loading"
INTERRUPTED = "interrupted"
LOAD_INTERRUPTED = "The app stopped while loading this file; nothing from it was kept. Load it again."

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


# A flat file's column in any spelling of these names is that column (`TimeStamp`, `Event Type`, `emailId`).
_spelled = flat_files.column_keys([
    "timestamp", "event_type", *EVENT_COLUMNS[3:-1], *PROFILE_ATTRIBUTES, attribute_versions.VALID_FROM_COLUMN,
    *identity.NAMESPACE_SPELLINGS])
# Ids are named exactly: another system's `Profile ID` is no profile of this store, and an `Event ID` read under
# another spelling would give a file loaded before a new id, so its events twice.
_EXACT_NAMES = ("profile_id", "event_id")


def _written_key(column) -> str:
    """A column's name as the app matched it before it matched spellings: trimmed and lower-case."""
    return str(column).strip().lower()


def _column_key(column) -> str:
    key = _spelled(column)
    return key if key not in _EXACT_NAMES or _written_key(column) == key else _written_key(column)


def _is_plain_column(column) -> bool:
    """A column of the app's own flat format: an identity named after its namespace, `profile_id`, or a profile
    attribute."""
    key = _column_key(column)
    return identity.canonical_namespace(key) in identity.KNOWN_NAMESPACES or key in ("profile_id", *PROFILE_ATTRIBUTES)


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
    load_id: int | None = None  # the load's record while it is in progress
    inferred_event_types: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Parsed:
    """Rows in our normalised columns plus, per row, the identities it carries."""

    frame: pd.DataFrame
    identities: list[list[identity.IdentityKey]]
    primaries: list[identity.IdentityKey | None]
    problems: list[tuple[int, str]]
    unreadable_rows: set[int] = field(default_factory=set)  # refused whole; their fields are not checked
    # The identities as written of the rows where they differ from those stored (see _content_ids).
    written_identities: dict[int, list[identity.IdentityKey]] = field(default_factory=dict)
    # Columns read from a header in a spelling the app did not match before (see _content_ids).
    respelled: list[str] = field(default_factory=list)


# --- Reading files -------------------------------------------------------------------------------------------


@dataclass
class _Upload:
    """The files one upload holds, each un-gzipped: the file itself, or the part files of an export (a .zip or a
    folder), loaded together as one batch with rows numbered across the parts in name order."""

    name: str
    parts: list[tuple[str, bytes]]
    part_starts: list[int] = field(default_factory=list)  # the first row of each part, once its rows are read
    first_row: int = 1  # the number of a part's first row (2 in a table, after its header)

    def release_data(self) -> None:
        """Lets the parts' bytes go once their rows are read (the names still label rows): a large file is then
        not held while it is written."""
        self.parts = [(name, b"") for name, _ in self.parts]

    def row_label(self, row: int) -> str:
        if len(self.parts) < 2 or not self.part_starts:
            return f"Row {row}"
        index = max(i for i, start in enumerate(self.part_starts) if start <= row)
        return f"Row {row:,} ({self.parts[index][0]}, row {row - self.part_starts[index] + self.first_row:,})"


def _unpacked(data: bytes, file_name: str, budget: int | None = None) -> list[tuple[str, bytes]]:
    """The data files ``data`` holds, uncompressed, refused as soon as they would hold more than ``budget`` bytes
    (the upload limit by default; what is left of it for a part of an export)."""
    budget = MAX_FILE_BYTES if budget is None else budget
    if file_name.lower().endswith(".zip"):
        return _zip_parts(data, file_name, budget)
    inner_name = file_name[:-3] if file_name.lower().endswith(".gz") else file_name
    # Gzip is told by its content too: exports and downloads often keep `.json` on a compressed file.
    if inner_name != file_name or data[:2] == GZIP_MAGIC:
        data = _gunzip(data, file_name, budget)
    if len(data) > budget:
        raise _expands_too_far(file_name)
    return [(inner_name, data)]


def _parts_within(files, budget: int, file_name: str) -> list[tuple[str, bytes]]:
    """The data files of an export's parts (name, bytes read when asked), uncompressed one after the other, each
    within what the ones before it left of ``budget``: never more than the limit is held at once."""
    parts: list[tuple[str, bytes]] = []
    for name, read in files:
        unpacked = _unpacked(read(budget + 1), name, budget)
        budget -= sum(len(data) for _, data in unpacked)
        if budget < 0:
            raise _expands_too_far(file_name)
        parts.extend(unpacked)
    return parts


def _is_export_part(path: str) -> bool:
    """A data file of an export; Spark's `_SUCCESS` and `.crc` files, hidden files and macOS's zip extras are not."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return bool(name) and not name.startswith(("_", ".")) and not name.endswith(".crc") and "__MACOSX/" not in path


def _zip_parts(data: bytes, file_name: str, budget: int) -> list[tuple[str, bytes]]:
    def reader(info: zipfile.ZipInfo):
        def read(limit: int) -> bytes:
            with archive.open(info) as member:
                return member.read(limit)
        return read

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = sorted((info for info in archive.infolist() if not info.is_dir() and _is_export_part(info.filename)),
                         key=lambda info: info.filename)
        parts = _parts_within([(info.filename.rsplit("/", 1)[-1], reader(info)) for info in members], budget,
                              file_name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, EOFError, OSError) as error:
        # RuntimeError is what zipfile raises for an encrypted member.
        raise ValidationError(f"{file_name} is not a zip file we can read ({error}). Zip the export's files again, "
                              "without a password.") from None
    if not parts:
        raise ValidationError(f"{file_name} holds no data files (.json, .json.gz, .parquet or .csv).")
    return parts


def _expands_too_far(file_name: str) -> ValidationError:
    return ValidationError(f"{file_name} expands to more than {MAX_FILE_BYTES / 1e6:,.0f} MB; the limit applies to "
                           "the uncompressed content too. Split it into smaller files.")


def _folder_parts(folder: Path) -> list[tuple[str, bytes]]:
    """The export part files of a folder and its subfolders (an export writes one per `exportTime=...`)."""
    files = sorted(path for path in folder.rglob("*")
                   if path.is_file() and _is_export_part(path.relative_to(folder).as_posix()))
    if sum(path.stat().st_size for path in files) > MAX_FILE_BYTES:
        raise ValidationError(f"The files of {folder.name} add up to more than {MAX_FILE_BYTES / 1e6:,.0f} MB. "
                              "Load its part files in smaller groups.")
    parts = _parts_within([(path.name, lambda limit, path=path: path.read_bytes()) for path in files],
                          MAX_FILE_BYTES, folder.name)
    if not parts:
        raise ValidationError(f"The folder {folder.name} holds no data files (.json, .json.gz, .parquet or .csv).")
    return parts


def _is_record_part(name: str, data: bytes) -> bool:
    """Whether a part holds XDM records (JSON, or Parquet with nested fields as Experience Platform exports it)
    rather than a flat table."""
    suffix = Path(name).suffix.lower()
    if suffix in JSON_SUFFIXES:
        return True
    if suffix != ".parquet" or not data.startswith(b"PAR1"):
        return False
    try:
        schema = pq.ParquetFile(io.BytesIO(data)).schema_arrow
    except (ValueError, OSError, pa.ArrowException):
        return False
    names = {name.lower() for name in schema.names}
    nested = any(pa.types.is_nested(column.type) for column in schema)
    if not nested and flat_files.is_flattened_xdm(schema.names, _is_plain_column):
        return False  # a flattened table: its rows are rebuilt as records from their columns' paths
    return "event_type" not in names and (bool(names & XDM_TOP_LEVEL_FIELDS) or nested)


def _upload_format(upload: _Upload) -> str:
    """"records" or "table"; an upload whose parts mix both is refused."""
    kinds = {_is_record_part(name, data) for name, data in upload.parts}
    if len(kinds) > 1:
        raise ValidationError(f"{upload.name} mixes XDM files (JSON or nested Parquet) with flat tables (CSV or "
                              "flat Parquet). Load each kind on its own.")
    return "records" if kinds.pop() else "table"


def _parquet_records(data: bytes, file_name: str):
    """Yields (row number, record with plain keys, None) for each row of an XDM Parquet export, a batch of rows at a
    time, each as its JSON export would have it (`identityMap` a map of namespaces, times as ISO 8601 text)."""
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        _check_table_size(parquet.metadata.num_rows, parquet.metadata.num_columns, file_name)
        number = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                yield number, xdm.normalise(xdm.from_parquet(row)), None
    except CaiError:
        raise
    except (ValueError, OSError, OverflowError, pa.ArrowException) as error:
        raise ValidationError(f"{file_name} is a Parquet file we cannot read ({str(error)[:200]}).") from None


def _upload_records(upload: _Upload):
    """Yields (row number, record or None, problem or None) for every record of every part, numbered across parts.

    A compressed Parquet file can hold far more than its size: its records may add up to at most what a JSON upload
    may hold (their text, as compact JSON), so a Parquet load takes no more memory than the largest JSON load."""
    upload.part_starts = []
    number, decoded = 0, 0
    for name, data in upload.parts:
        upload.part_starts.append(number + 1)
        is_json = Path(name).suffix.lower() in JSON_SUFFIXES
        records = _xdm_records(_decode(data, name), name) if is_json else _parquet_records(data, name)
        decoded += len(data) if is_json else 0
        for _, record, problem in records:
            number += 1
            if number > MAX_ROWS:
                raise ValidationError(f"{upload.name} holds more than {MAX_ROWS:,} records; the limit per load is "
                                      f"{MAX_ROWS:,}. Load its parts in smaller groups.")
            if not is_json:
                decoded += len(json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str))
            if decoded > MAX_FILE_BYTES:
                raise ValidationError(
                    f"{upload.name} decodes to more than {MAX_FILE_BYTES / 1e6:,.0f} MB of records (as JSON), the "
                    f"limit of one load, by row {number:,}. Load its parts, or a shorter period, in smaller groups.")
            yield number, record, problem


def _upload_table(upload: _Upload) -> pd.DataFrame:
    """The flat tables of an upload's parts, one under the other (the parts of one export share their columns)."""
    tables = [_read_table(data, name) for name, data in upload.parts]
    columns = [list(table.columns) for table in tables]
    if any(names != columns[0] for names in columns):
        odd = next(name for (name, _), names in zip(upload.parts, columns) if names != columns[0])
        raise ValidationError(f"{odd} has other columns than {upload.parts[0][0]}; the parts of one load must have "
                              "the same columns.")
    table = tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True)
    _check_table_size(len(table), len(table.columns), upload.name)
    upload.first_row = 2
    upload.part_starts = list(np.cumsum([0, *(len(part) for part in tables[:-1])]) + upload.first_row)
    return table


def _gunzip(data: bytes, file_name: str, budget: int) -> bytes:
    """The content of a gzip file, every member of it (concatenated gzip files are one file), refused once it would
    grow past ``budget`` bytes (a gzip bomb stops there) or when it is cut short."""
    parts, size, rest = [], 0, data
    while rest:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(rest, budget + 1 - size)
        except zlib.error:
            raise ValidationError(f"{file_name} is not a readable gzip file.") from None
        size += len(part)
        parts.append(part)
        if size > budget or inflater.unconsumed_tail:
            raise _expands_too_far(file_name)
        if not inflater.eof:
            raise ValidationError(f"{file_name} is a gzip file cut short (its end is missing); nothing was loaded. "
                                  "Download or export it again.")
        rest = inflater.unused_data.lstrip(b"\x00")  # some writers pad the end with zeros
    return b"".join(parts)


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


def _depth(value) -> int:
    """How deeply a parsed JSON value nests, measured without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _json_error(file_name: str, text: str, error: json.JSONDecodeError | RecursionError,
                position: int) -> ValidationError:
    if isinstance(error, RecursionError):
        return ValidationError(f"{file_name} nests objects more than {MAX_NESTING_DEPTH} levels deep; "
                               "that is not an experience event or a profile.")
    line = text.count("\n", 0, error.pos) + 1
    if position == 0 and not text.lstrip().startswith(("[", "{")):
        return ValidationError(f"{file_name} is not JSON: it should hold an object, an array of objects or one "
                               "object per line (JSON lines).")
    return ValidationError(f"{file_name} is not valid JSON: {error.msg} at line {line:,}. The file may be truncated.")


def _json_records(text: str, file_name: str):
    """Yields each record of a JSON file (an array, one object, or objects one after another as in JSON lines),
    with the length of its text, parsing one record at a time so memory follows the largest record."""
    decoder = json.JSONDecoder()
    length, position = len(text), 0

    def skip_space(at: int) -> int:
        while at < length and text[at] in " \t\r\n":
            at += 1
        return at

    position = skip_space(position)
    if position == length:
        raise ValidationError(f"{file_name} is empty.")
    in_array = text[position] == "["
    if in_array:
        position = skip_space(position + 1)
        if position < length and text[position] == "]":
            return
    count = 0
    while position < length:
        try:
            record, end = decoder.raw_decode(text, position)
        except (json.JSONDecodeError, RecursionError) as error:
            raise _json_error(file_name, text, error, position) from None
        count += 1
        if count > MAX_ROWS:
            raise ValidationError(f"{file_name} holds more than {MAX_ROWS:,} records; the limit per file is "
                                  f"{MAX_ROWS:,}. Split it into smaller files.")
        if count >= DENSITY_CHECK_AFTER_RECORDS and end < count * MIN_AVERAGE_RECORD_CHARS:
            raise ValidationError(
                f"{file_name} holds {count:,} records in its first {end:,} characters; records that small "
                "(empty objects) are not events or profiles.")
        yield record, end - position
        position = skip_space(end)
        if in_array:
            if position < length and text[position] == ",":
                position = skip_space(position + 1)
            elif position < length and text[position] == "]":
                if skip_space(position + 1) < length:
                    raise ValidationError(f"{file_name} has text after its closing ']'.")
                return
            else:
                raise ValidationError(f"{file_name} is not valid JSON: the array is not closed with ']'. "
                                      "The file may be truncated.")


def _xdm_records(text: str, file_name: str):
    """Yields (row number, record with plain keys or None, problem or None) for each record of an XDM file."""
    for number, (record, size) in enumerate(_json_records(text, file_name), start=1):
        if not isinstance(record, dict):
            yield number, None, "is not a JSON object"
        elif size > MAX_RECORD_CHARS:
            yield number, None, f"the record is larger than {MAX_RECORD_CHARS / 1e6:,.0f} MB"
        elif _depth(record) > MAX_NESTING_DEPTH:
            yield number, None, f"the record nests more than {MAX_NESTING_DEPTH} levels deep"
        else:
            yield number, xdm.normalise(record), None


def _stored_and_written_identities(pairs, row: int, problems: list[tuple[int, str]]) -> tuple[
        list[identity.IdentityKey], list[identity.IdentityKey]]:
    """A row's identities as stored, and as written (see ``identity.written_value``)."""
    keys, written = [], []
    for namespace, value in pairs:
        text, reason = identity.written_value(namespace, value)
        if text is not None:
            cleaned, reason = identity.stored_value(namespace, text)
        if reason:
            problems.append((row, reason))
        elif text is not None:
            keys.append((namespace, cleaned))
            written.append((namespace, text))
    return list(dict.fromkeys(keys)), list(dict.fromkeys(written))


def _with_tenant_identities(record: dict, keys: list[identity.IdentityKey], written: list[identity.IdentityKey]
                            ) -> tuple[list[identity.IdentityKey], list[identity.IdentityKey]]:
    """The record's identities, as stored and as written, and those of its tenant fields named after a namespace
    that hold a real identity."""
    keys, written = list(keys), list(written)
    for namespace, value in xdm.tenant_identities(record):
        text = identity.written_value(namespace, value)[0]
        if text is not None:
            written.append((namespace, text))
            cleaned = identity.stored_value(namespace, text)[0]
            if cleaned is not None:
                keys.append((namespace, cleaned))
    return list(dict.fromkeys(keys)), list(dict.fromkeys(written))


def _cleaned_primary(primary, row_keys: list[identity.IdentityKey]) -> identity.IdentityKey | None:
    """The identity a record marks primary, as stored (an email lower-case), if it is one of the record's."""
    if primary is None:
        return None
    key = (primary[0], identity.identity_value(*primary)[0])
    return key if key in row_keys else None


def _xdm_event(record: dict) -> dict:
    commerce = record.get("commerce") if isinstance(record.get("commerce"), dict) else {}
    items = record.get("productListItems") if isinstance(record.get("productListItems"), list) else []
    first_item = items[0] if items and isinstance(items[0], dict) else {}
    event_type, inferred = xdm.event_type(record)
    order_total = xdm.dig(commerce, "order", "priceTotal")
    if order_total is None and items:
        order_total = _item_sum([item.get("priceTotal") for item in items if isinstance(item, dict)], False)
    quantities = [item.get("quantity") for item in items if isinstance(item, dict) and "quantity" in item]
    value = order_total if event_type == "commerce.purchases" else None
    if value is None and isinstance(event_type, str) and event_type.startswith("commerce."):
        value = xdm.dig(commerce, event_type.split(".", 1)[1], "value")
    channel = record.get("channel")
    if isinstance(channel, dict):
        channel = channel.get("_type") or channel.get("@type") or channel.get("_id") or channel.get("typeAtSource")
        channel = str(channel).rstrip("/").rsplit("/", 1)[-1] if channel else None
    return {
        "xdm_id": record.get("_id"),
        "ts": record.get("timestamp"),
        "event_type": event_type,
        "value": value,
        "order_id": xdm.dig(commerce, "order", "purchaseID") or xdm.dig(commerce, "order", "purchaseOrderNumber"),
        "sku": first_item.get("SKU") or first_item.get("sku"),
        "product_name": first_item.get("name"),
        "quantity": _item_sum(quantities, True),
        "price_total": order_total if order_total is not None else first_item.get("priceTotal"),
        "channel": channel,
        "page_name": xdm.dig(record, "web", "webPageDetails", "name"),
        "tracking_code": xdm.dig(record, "marketing", "trackingCode"),
        "raw": json.dumps(record, ensure_ascii=False, allow_nan=True),
        "type_inferred": inferred,
    }


def _item_sum(values: list, whole: bool):
    """The sum of the product lines' numbers (exports write them as numbers or as numeric text); None when a line
    has none; a value that is not a number is returned as it is, for validation to name its row."""
    numbers = [_number(value, whole) for value in values]
    refused = [value for value, (_, reason) in zip(values, numbers) if reason]
    if refused:
        return refused[0]
    if not numbers or any(number is None for number, _ in numbers):
        return None
    return sum(number for number, _ in numbers)


def _parse_xdm(records, first_row: int = 1) -> _Parsed:
    """The events of (row number, record, problem) triples, as `_upload_records` yields them, numbered from
    ``first_row``."""
    rows, keys, primaries, problems, unreadable, written_identities = [], [], [], [], set(), {}
    columns = [*EVENT_COLUMNS, "type_inferred"]
    for number, record, problem in records:
        if record is None:
            problems.append((number, problem))
            unreadable.add(number)
            rows.append((None,) * len(columns))
            keys.append([])
            primaries.append(None)
            continue
        event = _xdm_event(record)
        rows.append(tuple(event[column] for column in columns))  # a tuple costs a fraction of the dict
        pairs, primary = xdm.identities(record)
        record_keys, written = _with_tenant_identities(record, *_stored_and_written_identities(pairs, number, problems))
        if written != record_keys:
            written_identities[len(keys)] = written
        keys.append(record_keys)
        primaries.append(_cleaned_primary(primary, record_keys))
    # Object columns keep None (absent) apart from NaN (a value the file wrote, refused later).
    frame = pd.DataFrame({column: pd.Series([row[index] for row in rows], dtype=object)
                          for index, column in enumerate(columns)})
    del rows
    frame["row"] = np.arange(first_row, len(frame) + first_row)
    return _Parsed(frame, keys, primaries, problems, unreadable, written_identities)


def _check_table_size(rows: int, columns: int, file_name: str) -> None:
    if rows > MAX_ROWS or rows * columns > MAX_CELLS:
        raise ValidationError(
            f"{file_name} decodes to {rows:,} rows of {columns:,} columns; the limit per file is {MAX_ROWS:,} rows "
            f"and {MAX_CELLS:,} cells. Split it into smaller files.")


def _read_table(data: bytes, file_name: str) -> pd.DataFrame:
    suffix = Path(file_name).suffix.lower()
    if suffix == ".parquet":
        if not data.startswith(b"PAR1"):
            raise ValidationError(f"{file_name} is named .parquet but is not a Parquet file. Is it really a CSV?")
        try:
            metadata = pq.ParquetFile(io.BytesIO(data)).metadata
            _check_table_size(metadata.num_rows, metadata.num_columns, file_name)
            table = pd.read_parquet(io.BytesIO(data))
        except CaiError:
            raise
        except Exception as error:
            raise ValidationError(f"{file_name} is a damaged Parquet file ({error}).") from None
        frame = table.astype(object).where(table.notna(), None)
        _refuse_case_twins(frame.columns, file_name)
    else:
        text = _decode(data, file_name)
        if not text.strip():
            raise ValidationError(f"{file_name} is empty.")
        text, separator = flat_files.separated(text)
        header = text[:text.find("\n")] if "\n" in text else text
        lines = text.count("\n") + (0 if text.endswith("\n") else 1)
        _check_table_size(lines - 1, header.count(separator) + 1, file_name)
        try:
            frame = pd.read_csv(io.StringIO(text), sep=separator, dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, ValueError) as error:
            raise ValidationError(f"{file_name} is not a readable CSV file: {error}") from None
        if separator != ",":
            frame = flat_files.with_decimal_points(frame)
        # pandas renames a second `email` column `email.1`: the names as written are checked.
        _refuse_case_twins(flat_files.header(text, separator), file_name)
    return frame


def _refuse_case_twins(columns, file_name: str) -> None:
    seen: dict[str, str] = {}
    for column in columns:
        key = _column_key(column)
        if key in seen:
            how = (f"two columns named `{column}`" if seen[key] == str(column) else
                   f"the columns `{seen[key]}` and `{column}`, which differ only in case, spaces or underscores")
            raise ValidationError(f"{file_name} has {how}. Rename or remove one of them.")
        seen[key] = str(column)


def _table_identities(table: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """Identity columns of a flat file: a column named after a namespace (``email``, ``ecid`` ...)."""
    namespaces = {}
    for column in table.columns:
        namespace = identity.canonical_namespace(_column_key(column))
        if namespace in identity.KNOWN_NAMESPACES:
            namespaces[column] = namespace
    return list(namespaces), namespaces


def _row_identities(table: pd.DataFrame, columns: list[str], namespaces: dict[str, str], first_row: int,
                    problems: list[tuple[int, str]], respelled: frozenset[str] = frozenset()):
    """Each row's identities and primary identity, and the identities as written of the rows where they differ
    (without those of ``respelled`` columns: see ``_content_ids``)."""
    keys, primaries, written_identities = [], [], {}
    values = {column: table[column].tolist() for column in columns}
    for index in range(len(table)):
        row_keys, written = _stored_and_written_identities(
            ((namespaces[column], values[column][index]) for column in columns), index + first_row, problems)
        if respelled:
            written = list(dict.fromkeys(
                (namespaces[column], text) for column in columns if column not in respelled
                for text in [identity.written_value(namespaces[column], values[column][index])[0]]
                if text is not None))
        if written != row_keys:
            written_identities[index] = written
        keys.append(row_keys)
        primaries.append(row_keys[0] if row_keys else None)
    return keys, primaries, written_identities


def _parse_event_table(table: pd.DataFrame) -> _Parsed:
    spellings = {_column_key(column): _written_key(column) for column in table.columns}
    table = table.rename(columns=_column_key)
    table = table.astype(object).where(table.notna(), None)
    missing = [column for column in ("timestamp", "event_type") if column not in table.columns]
    if missing:
        raise ValidationError(
            "This events file has no " + " and no ".join(f"`{column}`" for column in missing)
            + " column. Event files need `timestamp`, `event_type` and at least one identity column "
            "(email, ecid, phone, crmid, loyaltyid or profile_id). If the file holds profiles, load it as profiles."
        )
    id_columns, namespaces = _table_identities(table)
    if not id_columns and "profile_id" not in table.columns:
        raise ValidationError(
            "This events file has no identity column. Add one of: email, ecid, phone, crmid, loyaltyid, profile_id."
        )
    # Email is the primary identity when present, as in the tutorial's data.
    id_columns.sort(key=lambda column: namespaces[column] != "Email")
    event_type = table["event_type"].where(table["event_type"].notna(), xdm.UNSPECIFIED_EVENT_TYPE)
    frame = pd.DataFrame({
        "xdm_id": table.get("_id", table.get("event_id")),
        "ts": table["timestamp"],
        "event_type": event_type,
        **{column: table.get(column) for column in EVENT_COLUMNS[3:-1]},
        "raw": None,
        "type_inferred": False,
    })
    problems: list[tuple[int, str]] = []
    # Columns the app read only once it matched spellings (`Product Name`, `Email Address`): an event's content id
    # leaves them out, so a file loaded before keeps its events' ids (a file none of whose identities was read
    # before could not load, and keeps them all).
    unread_identities = frozenset(column for column in id_columns
                                  if identity.canonical_namespace(spellings[column]) not in identity.KNOWN_NAMESPACES)
    if len(unread_identities) == len(id_columns):
        unread_identities = frozenset()
    keys, primaries, written_identities = _row_identities(table, id_columns, namespaces, 2, problems,
                                                          unread_identities)
    frame["known_profile_id"] = table.get("profile_id")
    frame["row"] = np.arange(2, len(frame) + 2)
    return _Parsed(frame, keys, primaries, problems, written_identities=written_identities,
                   respelled=[column for column in EVENT_COLUMNS[3:-1] if spellings.get(column, column) != column])


# --- Validation ----------------------------------------------------------------------------------------------


def _is_nested(value) -> bool:
    return isinstance(value, (dict, list))


def _number(value, whole: bool) -> tuple[float | None, str | None]:
    """(the number, None) or (None, why it is not an acceptable number); absent values are (None, None)."""
    if value is None:
        return None, None
    if isinstance(value, str):
        if not value.strip():
            return None, None
        text = value.strip()
    elif isinstance(value, bool) or _is_nested(value):
        return None, "is not a number"
    else:
        text = value
    try:
        number = float(text)
    except (TypeError, ValueError, OverflowError):
        return None, "is not a number"
    if not math.isfinite(number):
        return None, "is not a finite number (infinity or NaN)"
    if abs(number) > (MAX_INTEGER if whole else MAX_ABS_NUMBER):
        return None, "is too large"
    if whole and not number.is_integer():
        return None, "is not a whole number"
    return number, None


def _numbers(series: pd.Series, column: str, whole: bool, rows, problems) -> pd.Series:
    converted = []
    for row, value in zip(rows, series.tolist()):
        number, reason = _number(value, whole)
        if reason:
            problems.append((int(row), f"`{column}` {reason}"))
        converted.append(number)
    return pd.Series(converted, index=series.index, dtype=float)


def _epoch_unit(value) -> str | None:
    """The unit of an epoch number, told by its size (seconds, milliseconds, microseconds or nanoseconds since 1970,
    for the years 1973-5138 each); None for a value that is not a number. Digit strings count from 9 digits on, and
    a number whose eight digits read as a date (20260301) is that date, not a time in 1970."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not (len(value.strip()) >= 9 and value.strip().isdigit()):
            return None
        value = int(value)
    if isinstance(value, np.number):
        value = value.item()
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if _is_date_digits(value):
        return None
    size = abs(value)
    return "s" if size < 1e11 else "ms" if size < 1e14 else "us" if size < 1e17 else "ns"


def _is_date_digits(number: int | float) -> bool:
    """Whether ``number`` is a whole number whose eight digits read as a date (YYYYMMDD)."""
    if not float(number).is_integer() or not 10_000_000 <= number <= 99_999_999:
        return False
    try:
        dt.datetime.strptime(str(int(number)), "%Y%m%d")
    except ValueError:
        return False
    return True


# A date as Excel writes it in most of Europe (`05.01.2024`, `05.01.2024 10:00`): the day first, always.
_DOTTED_DATE = re.compile(r"(?P<day>[0-9]{1,2})\.(?P<month>[0-9]{1,2})\.(?P<year>[0-9]{4})"
                          r"(?:[ T](?P<hour>[0-9]{1,2}):(?P<rest>[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?))?")


def _iso_date_text(text: str) -> str:
    """A dotted European date (and time) as ISO 8601 text; any other text as it is."""
    dotted = _DOTTED_DATE.fullmatch(text.strip()) if "." in text[:3] else None
    if not dotted:
        return text
    day = f"{dotted['year']}-{int(dotted['month']):02d}-{int(dotted['day']):02d}"
    return f"{day}T{int(dotted['hour']):02d}:{dotted['rest']}" if dotted["hour"] else day


def _timestamp_text(value) -> str | None:
    """A timestamp as ISO 8601 text, epoch numbers and dotted European dates included."""
    if value is None:
        return None
    unit = _epoch_unit(value)
    if unit:
        try:
            number = int(value) if isinstance(value, str) else value  # ints stay exact to the nanosecond
            return pd.Timestamp(number, unit=unit, tz="UTC").isoformat()
        except (OverflowError, ValueError):
            return str(value)
    return _iso_date_text(str(value))


def _as_given(given, when: pd.Timestamp) -> str:
    """A timestamp as the file wrote it, with the date it was read as when that is not plain to see (an epoch)."""
    text = str(given)[:40]
    return f"{text} (read as {when:%Y-%m-%d %H:%M} UTC)" if _epoch_unit(given) else text


def _coerce_events(parsed: _Parsed, now: dt.datetime) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    frame = parsed.frame
    problems = list(parsed.problems)
    rows = frame["row"].to_numpy()
    readable = ~np.isin(rows, list(parsed.unreadable_rows))

    def flag(mask, reason):
        mask = np.asarray(mask, dtype=bool) & readable
        for row in rows[mask][:MAX_PROBLEMS_REPORTED]:
            problems.append((int(row), reason))
        return int(mask.sum())

    raw_ts = frame["ts"]
    nested_ts = raw_ts.map(_is_nested).to_numpy(dtype=bool)
    flag(nested_ts, "timestamp is an object, not a date")
    raw_ts = raw_ts.where(~nested_ts, None)
    missing_ts = (raw_ts.isna() | (raw_ts.astype(str).str.strip() == "")) & ~nested_ts
    flag(missing_ts, "no timestamp")
    as_text = raw_ts.where(~missing_ts, None).astype(object)
    parsed_ts = pd.to_datetime(as_text.map(_timestamp_text), utc=True, errors="coerce", format="ISO8601")
    bad_ts = ~missing_ts & ~nested_ts & parsed_ts.isna()
    for row, value in zip(rows[bad_ts.to_numpy()][:MAX_PROBLEMS_REPORTED], as_text[bad_ts].head(MAX_PROBLEMS_REPORTED)):
        reason = "timestamp is a number too large for a date" if isinstance(value, (int, float)) or pd.notna(
            pd.to_numeric(value, errors="coerce")) else f"unparseable timestamp {str(value)[:40]!r}"
        problems.append((int(row), reason))
    ts = parsed_ts.dt.tz_convert("UTC").dt.tz_localize(None)
    future = ts > pd.Timestamp(now + FUTURE_TOLERANCE)
    for row, given, when in zip(rows[future.to_numpy()][:MAX_PROBLEMS_REPORTED], as_text[future], ts[future]):
        problems.append((int(row), f"timestamp {_as_given(given, when)} is in the future (after "
                                   f"{now + FUTURE_TOLERANCE:%Y-%m-%d}); the event cannot have happened yet"))
    early = ts < EARLIEST_TIMESTAMP
    for row, given, when in zip(rows[early.to_numpy()][:MAX_PROBLEMS_REPORTED], as_text[early], ts[early]):
        problems.append((int(row), f"timestamp {_as_given(given, when)} is before 1990, so it is not a real event "
                                   "time (a missing date is often exported as 1970-01-01)"))

    no_identity = np.array([not keys for keys in parsed.identities], dtype=bool)
    known = None
    if "known_profile_id" in frame:
        known = _numbers(frame["known_profile_id"].astype(object), "profile_id", False, rows, problems)
        bad_id = known.notna() & ((known % 1 != 0) | (known <= 0))
        flag(bad_id, "`profile_id` is not a whole number above 0")
        no_identity &= known.isna().to_numpy() & frame["known_profile_id"].isna().to_numpy()
    flag(no_identity, "no identity (Email, ECID or another namespace)")

    numbers = {column: _numbers(frame[column].astype(object), column, column == "quantity", rows, problems)
               for column in NUMERIC_EVENT_COLUMNS}
    flag(numbers["quantity"] < 0, "negative quantity")
    flag(numbers["price_total"] < 0, "negative price total")

    for column in TEXT_EVENT_COLUMNS:
        text = frame[column].where(frame[column].notna(), None)
        non_text = text.map(_is_nested)
        flag(non_text, f"`{column}` should be text, not a nested object")
        lengths = text.map(lambda value: len(str(value)) if value is not None else 0)
        flag(lengths > MAX_TEXT_CHARS, f"`{column}` is longer than {MAX_TEXT_CHARS:,} characters")
        flag(text.map(lambda value: value is not None and "\x00" in str(value)), f"`{column}` contains a NUL byte")

    def as_text_or_none(value):
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)

    clean = pd.DataFrame({
        "xdm_id": frame["xdm_id"].map(as_text_or_none),
        "ts": ts,
        "event_type": frame["event_type"].map(lambda value: (as_text_or_none(value) or "").strip()
                                              or xdm.UNSPECIFIED_EVENT_TYPE),
        "value": numbers["value"],
        "order_id": frame["order_id"], "sku": frame["sku"], "product_name": frame["product_name"],
        "quantity": numbers["quantity"].round().astype("Int64"),
        "price_total": numbers["price_total"],
        "channel": frame["channel"], "page_name": frame["page_name"], "tracking_code": frame["tracking_code"],
        "raw": frame["raw"],
    })
    for column in ("order_id", "sku", "product_name", "channel", "page_name", "tracking_code"):
        clean[column] = clean[column].map(as_text_or_none)
    if known is not None:
        clean["known_profile_id"] = known.where(known % 1 == 0).astype("Int64")
    return clean, problems


def _problem_report(problems: list[tuple[int, str]], total: int, noun: str,
                    upload: _Upload | None = None) -> ValidationError:
    problems = sorted(set(problems))
    bad_rows = sorted({row for row, _ in problems})
    lines = [f"{upload.row_label(row) if upload else f'{noun} {row}'}: {reason}"
             for row, reason in problems[:MAX_PROBLEMS_REPORTED]]
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
    """Logs a refused file under its dataset when that dataset already holds data of this kind; a refused file
    never creates a dataset (an empty one would block loading the file again as the right kind)."""
    def record(con):
        rows = con.execute("SELECT dataset_id FROM datasets WHERE name = ? AND kind = ?",
                           [report.dataset, report.kind]).fetchall()
        if not rows:
            return None
        batch_id = store.next_id(con, "batches", "batch_id")
        con.execute(
            "INSERT INTO batches (batch_id, dataset_id, file_name, status, rows_total, rows_rejected, errors, "
            "started_at, finished_at, load_id) VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, current_timestamp, ?)",
            [batch_id, rows[0][0], report.file_name, report.rows_total, report.rows_rejected,
             json.dumps(report.problems), started, report.load_id],
        )
        return batch_id

    try:
        report.batch_id = store.write(db_path, record)
    except (CaiError, duckdb.Error):
        log.warning("Could not record the refused batch of %s", report.file_name, exc_info=True)


_loading_here: set[int] = set()


def _start_load(db_path: Path, report: BatchReport, kind: str | None, started: dt.datetime, actor: str) -> int:
    """Records the load as in progress, in a transaction of its own, so that a restart cutting it off leaves a trace
    (its own transaction leaves none). This process counts it as loading from before that commits: a recovery in
    another session in between would take it for one whose process died."""
    def work(con) -> int:
        # Records are dropped once settled, so the batches' ids count too: a reused id would read as batched.
        load_id = con.execute("SELECT greatest((SELECT coalesce(max(load_id), 0) FROM loads), "
                              "(SELECT coalesce(max(load_id), 0) FROM batches)) + 1").fetchall()[0][0]
        con.execute(
            "INSERT INTO loads (load_id, file_name, dataset, kind, actor, status, pid, host, started_at, heartbeat_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)",
            [load_id, report.file_name, report.dataset, kind, actor, LOADING, os.getpid(), store.this_host(),
             started])
        return load_id

    load_id = store.claim(db_path, work, _loading_here)
    store.start_heartbeat(db_path, "loads", "load_id", load_id, LOADING)
    return load_id


def _end_load(db_path: Path, load_id: int) -> None:
    """Drops the load's record once the load is settled: its batch (a success, or a refusal under a dataset that
    exists) names it, or whoever loaded the file saw its error. The heartbeat stops with it."""
    try:
        store.write(db_path, lambda con: con.execute("DELETE FROM loads WHERE load_id = ?", [load_id]))
    except (CaiError, duckdb.Error):
        # The record stays "loading"; the next recovery tidies it away, or marks it interrupted if no batch names it.
        log.warning("Could not close the record of load %s", load_id, exc_info=True)
    finally:
        _loading_here.discard(load_id)


def recover_interrupted_loads(con: duckdb.DuckDBPyConnection, postgres: bool) -> int:
    """Inside the caller's transaction, marks loads whose process (or, on PostgreSQL, machine) is gone as interrupted
    with ``LOAD_INTERRUPTED``, in the Data page's batches and the audit log: their own transaction never committed,
    so nothing of them was kept. One whose batch committed just before its process went is only tidied away.
    Returns the loads marked."""
    unfinished = con.execute("SELECT load_id, pid, host, file_name, dataset, kind, actor FROM loads WHERE status = ?",
                             [LOADING]).fetchall()
    marked = 0
    for load_id, pid, host, file_name, dataset, kind, actor in unfinished:
        if store.worker_alive(con, "loads", "load_id", load_id, pid, host, postgres, _loading_here.__contains__):
            continue
        if con.execute("SELECT count(*) FROM batches WHERE load_id = ?", [load_id]).fetchall()[0][0]:
            con.execute("DELETE FROM loads WHERE load_id = ?", [load_id])
            continue
        con.execute("UPDATE loads SET status = ?, finished_at = current_timestamp, error = ? WHERE load_id = ?",
                    [INTERRUPTED, LOAD_INTERRUPTED, load_id])
        audit.record(con, actor, "load interrupted", "dataset", dataset,
                     {"file": file_name, "kind": kind, "reason": LOAD_INTERRUPTED})
        marked += 1
    return marked


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


def _record_batch(con: duckdb.DuckDBPyConnection, report: BatchReport, stitched: identity.StitchResult, batch_id: int,
                  dataset_id: int, started: dt.datetime, actor: str) -> None:
    """The end of a successful load's transaction: its profile counts, its batch row and its audit entry."""
    report.profiles_created = len(stitched.new_profiles)
    report.profiles_merged = len(stitched.merges)
    if stitched.merges:
        # Last, so a run's swap that meets this load waits only for its commit.
        identity.claim_profile_set(con)
    con.execute(
        "INSERT INTO batches (batch_id, dataset_id, file_name, status, rows_total, rows_accepted, "
        "rows_duplicate, profiles_created, profiles_merged, errors, started_at, finished_at, load_id) "
        "VALUES (?, ?, ?, 'success', ?, ?, ?, ?, ?, '[]', ?, current_timestamp, ?)",
        [batch_id, dataset_id, report.file_name, report.rows_total, report.rows_accepted,
         report.rows_duplicate, report.profiles_created, report.profiles_merged, started, report.load_id],
    )
    _audit_load(con, actor, report)


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
        if "known_profile_id" in clean:
            given = clean["known_profile_id"].iloc[kept_positions]
            profile_ids = [p if p is not None else (None if pd.isna(g) else int(g))
                           for p, g in zip(profile_ids, given)]
            unknown = _unknown_profiles(con, [p for p in profile_ids if p is not None])
            if unknown:
                raise ValidationError(
                    f"This file names {len(unknown):,} profile ids that do not exist (for example {unknown[0]}). "
                    "Use an identity column (email, ecid ...) for new customers.",
                    [f"unknown profile_id {value}" for value in unknown[:MAX_PROBLEMS_REPORTED]],
                )
        rows = rows.drop(columns=["known_profile_id"], errors="ignore")
        rows.insert(1, "profile_id", pd.array(profile_ids, dtype="Int64"))
        rows["batch_id"] = batch_id
        # Stored in profile and time order; sorted here, where it moves pointers, since a sort in the database would
        # hold another copy of every event (its raw record included) at once.
        rows = rows.sort_values(["profile_id", "ts"], kind="stable")
        con.register("incoming_events", rows)
        con.execute(
            "INSERT INTO events SELECT xdm_id, profile_id, ts, event_type, value, order_id, sku, product_name, "
            "quantity, price_total, channel, page_name, tracking_code, batch_id, raw FROM incoming_events"
        )
        con.unregister("incoming_events")
        report.rows_accepted = len(rows)
        report.rows_duplicate = report.rows_total - len(rows)
        inferred = parsed.frame["type_inferred"].iloc[kept_positions].to_numpy(dtype=bool)
        report.inferred_event_types = rows["event_type"][inferred].value_counts().to_dict()
        _record_batch(con, report, stitched, batch_id, dataset_id, started, actor)
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
    attributes["valid_from"] = None
    for column in table.columns:
        if column in id_columns or column == "identityMap":
            continue
        if _column_key(column) == attribute_versions.VALID_FROM_COLUMN:
            attributes["valid_from"] = table[column]
            continue
        target = PROFILE_ATTRIBUTES.get(_column_key(column))
        if target:
            attributes[target] = table[column]
        else:
            extras[str(column)] = table[column]
    for column in identity.PROFILE_COLUMNS:
        if column not in attributes:
            attributes[column] = None
    extra_frame = pd.DataFrame(extras)
    attributes["attributes"] = [
        {key: value for key, value in row.items() if value is not None and not pd.isna(value)} or None
        for row in extra_frame.to_dict("records")
    ] if extras else None
    return attributes


def _profiles_from_table(table: pd.DataFrame, problems: list[tuple[int, str]], first_row: int):
    """Profile columns, identities and primaries of a flat profile file (CSV, Parquet or flat JSON)."""
    table = table.astype(object).where(table.notna(), None)
    if "identityMap" in table.columns:
        pairs = [xdm.identities({"identityMap": value}) for value in table["identityMap"]]
        keys = [_stored_and_written_identities(found, index + first_row, problems)[0]
                for index, (found, _) in enumerate(pairs)]
        primaries = [_cleaned_primary(primary, row_keys) for (_, primary), row_keys in zip(pairs, keys)]
        id_columns: list[str] = []
    else:
        id_columns, namespaces = _table_identities(table)
        id_columns.sort(key=lambda column: namespaces[column] != "Email")
        keys, primaries, _ = _row_identities(table, id_columns, namespaces, first_row, problems)
    return _profile_attributes(table, id_columns), keys, primaries


def _profiles_from_xdm(records: list[dict], problems: list[tuple[int, str]], now: dt.datetime, first_row: int = 1):
    """Profile columns, identities and primaries of XDM Individual Profile records, numbered from ``first_row``."""
    rows, keys, primaries = [], [], []
    for number, record in enumerate(records, start=first_row):
        row, found, primary = xdm.profile_row(record)
        rows.append(row)
        row_keys, _ = _with_tenant_identities(record, *_stored_and_written_identities(found, number, problems))
        keys.append(row_keys)
        primaries.append(_cleaned_primary(primary, row_keys) or (row_keys[0] if row_keys else None))
    frame = pd.DataFrame(rows, columns=[*identity.PROFILE_COLUMNS, "attributes"], dtype=object)
    frame["valid_from"] = _modify_dates(records, now)
    return frame, keys, primaries


def _modify_dates(records: list[dict], now: dt.datetime) -> pd.Series:
    """When each record's values were last changed (`_repo.modifyDate`), so an older export loaded after a newer one
    fills history instead of replacing current values, and loading an export again replaces its own versions. The
    date is repository metadata, not the customer's data: one that is unreadable or in the future is not used, and
    the load's time stands instead, as for a file without it."""
    given = pd.Series([_timestamp_text(xdm.dig(record, "_repo", "modifyDate")) for record in records], dtype=object)
    dates = pd.to_datetime(given, errors="coerce", format="ISO8601", utc=True).dt.tz_localize(None)
    usable = dates.notna() & (dates <= pd.Timestamp(now + FUTURE_TOLERANCE))
    return dates.astype(object).where(usable, None)


def _dates(values: pd.Series, column: str, rows: np.ndarray, problems: list[tuple[int, str]]) -> pd.Series:
    """Dates (or date-times) of a profile column; anything else is a problem of its row."""
    cleaned = values.map(lambda v: None if _is_nested(v) or isinstance(v, bool) else v)
    parsed = pd.to_datetime(cleaned.map(lambda v: None if v is None else _iso_date_text(str(v))), errors="coerce",
                            format="ISO8601", utc=True).dt.tz_localize(None)
    for row in rows[(values.notna() & parsed.isna()).to_numpy(dtype=bool)][:MAX_PROBLEMS_REPORTED]:
        problems.append((int(row), f"`{column}` is not a date"))
    return parsed


def _typed_profile_attributes(attributes: pd.DataFrame, problems: list[tuple[int, str]],
                              first_row: int, now: dt.datetime) -> pd.DataFrame:
    """Checks every profile column (text is text, numbers are whole and in range, dates are dates) and types it."""
    rows = np.arange(first_row, len(attributes) + first_row)
    for column in ("first_name", "last_name", "gender", "city", "country", "loyalty_tier"):
        values = attributes[column]
        for row in rows[values.map(_is_nested).to_numpy(dtype=bool)][:MAX_PROBLEMS_REPORTED]:
            problems.append((int(row), f"`{column}` should be text, not a nested object"))
        for row in rows[values.map(lambda v: v is not None and len(str(v)) > MAX_TEXT_CHARS).to_numpy(dtype=bool)][
                :MAX_PROBLEMS_REPORTED]:
            problems.append((int(row), f"`{column}` is longer than {MAX_TEXT_CHARS:,} characters"))
        attributes[column] = values.map(lambda v: None if v is None or _is_nested(v) else str(v))
    for column in ("birth_year", "loyalty_points"):
        attributes[column] = _numbers(attributes[column].astype(object), column, True, rows, problems).astype("Int32")
    attributes["signup_date"] = _dates(attributes["signup_date"], "signup_date", rows, problems).dt.date
    # A value dated in the future would be seen by snapshots before it was true.
    valid_from = _dates(attributes["valid_from"].astype(object), attribute_versions.VALID_FROM_COLUMN, rows, problems)
    for row in rows[(valid_from > pd.Timestamp(now + FUTURE_TOLERANCE)).to_numpy(dtype=bool)][:MAX_PROBLEMS_REPORTED]:
        problems.append((int(row), f"`{attribute_versions.VALID_FROM_COLUMN}` is in the future"))
    attributes["valid_from"] = valid_from.fillna(pd.Timestamp(now))
    attributes["attributes"] = [_attributes_json(extra, row, problems)
                                for row, extra in zip(rows, attributes["attributes"].tolist())]
    return attributes


def _attributes_json(extra, row: int, problems: list[tuple[int, str]]) -> str | None:
    if extra is None:
        return None
    if _depth(extra) > MAX_NESTING_DEPTH:
        problems.append((int(row), f"an attribute nests more than {MAX_NESTING_DEPTH} levels deep"))
        return None
    try:
        # Absent and null are one thing; a null would also erase the value an earlier file gave (merge patch).
        return json.dumps(_without_nulls(extra), default=str, allow_nan=False)
    except ValueError:
        problems.append((int(row), "an attribute is not a finite number (infinity or NaN)"))
        return None


def _without_nulls(value):
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _one_row_per_profile(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of one profile (fragments from several sources, dated versions) combined as successive loads would
    combine them: in date order, each value a later row gives wins, a value it lacks keeps the earlier one, and JSON
    attributes add up key by key."""
    ordered = frame.sort_values("valid_from", kind="stable")
    repeated = ordered["profile_id"].duplicated(keep=False)
    if not repeated.any():
        return ordered
    groups = ordered[repeated].groupby("profile_id", sort=False)
    combined = groups.last()  # the last value that is not missing, column by column
    combined["attributes"] = groups["attributes"].agg(
        lambda texts: identity.merge_json([json.loads(text) for text in texts.dropna()]))
    return pd.concat([ordered[~repeated], combined.reset_index()], ignore_index=True)


def _write_profiles(db_path: Path, attributes: pd.DataFrame, keys, primaries, problems, upload: _Upload,
                    report: BatchReport, started, actor: str, now: dt.datetime) -> BatchReport:
    first_row = upload.first_row
    for index, row_keys in enumerate(keys):
        if not row_keys:
            problems.append((index + first_row, "no identity (email, ecid, phone, crmid or loyaltyid)"))
    attributes = _typed_profile_attributes(attributes, problems, first_row, now)
    if problems:
        report.rows_rejected = len({row for row, _ in problems})
        raise _problem_report(problems, len(attributes), "Row", upload)

    def work(con):
        dataset_id = _dataset_id(con, report.dataset, "profiles")
        batch_id = store.next_id(con, "batches", "batch_id")
        stitched = identity.stitch(con, [tuple(group) for group in keys], {p for p in primaries if p})
        _insert_identities_and_profiles(con, stitched, batch_id)
        frame = attributes.copy()
        frame.insert(0, "profile_id", _profile_for_rows(stitched, keys))
        attribute_versions.record_versions(con, frame, batch_id)
        frame = _one_row_per_profile(frame)
        # Values dated before what a profile already holds fill its history only; the newest stay current.
        newest = attribute_versions.latest_dates(con, frame["profile_id"].dropna().astype(int).tolist())
        current = frame["valid_from"] >= frame["profile_id"].map(newest).fillna(pd.Timestamp.min)
        con.register("incoming_profiles", frame[current].drop(columns="valid_from"))
        # A profile file's values win over what the profile had; missing values (JSON attributes included, key by
        # key) keep the old ones.
        con.execute(
            f"UPDATE profiles SET {identity.filled('i', 'profiles')}, "
            "attributes = CASE WHEN i.attributes IS NULL THEN profiles.attributes "
            "ELSE json_merge_patch(coalesce(profiles.attributes, '{}'), i.attributes::JSON) END "
            "FROM incoming_profiles i WHERE profiles.profile_id = i.profile_id"
        )
        con.unregister("incoming_profiles")
        report.rows_accepted = len(attributes)
        _record_batch(con, report, stitched, batch_id, dataset_id, started, actor)
        return batch_id

    report.batch_id = store.write(db_path, work)
    report.status = "success"
    return report


# Names (keys of a record, lower-case columns of a table) that only an events file has.
EVENT_SIGNS = frozenset({"timestamp", "eventType", "event_type", "eventtype"})


def _first_record(upload: _Upload):
    """The upload's first record; the parts' first rows, which a full read found, stay as they were for its labels."""
    part_starts = upload.part_starts
    try:
        return next(_upload_records(upload), (None, None, None))[1]
    finally:
        upload.part_starts = part_starts


def _detect_kind(upload: _Upload) -> str:
    """A table with a `timestamp` or `event_type` column holds events; XDM records (JSON or nested Parquet) are told
    by the first. An events file missing its time is sent down the events path, which says so, rather than read as
    profiles, which would file its columns into customers' attributes."""
    name, data = upload.parts[0]
    if _is_record_part(name, data):
        try:
            first = _first_record(upload)
        except CaiError:
            return "events"  # the events path names what is wrong with the file
        is_event = not isinstance(first, dict) or not EVENT_SIGNS.isdisjoint(first)
        return "events" if is_event else "profiles"
    return "profiles" if EVENT_SIGNS.isdisjoint(_table_column_names(data, name)) else "events"


def _table_column_names(data: bytes, file_name: str) -> set[str]:
    """The column names of a CSV (its header line) or Parquet file (its schema, at the end of the file), as the app
    matches them and as XDM keys (`xdm:timestamp` is `timestamp`); an unreadable file has none here, and the load
    that follows says what is wrong with it."""
    try:
        if Path(file_name).suffix.lower() == ".parquet":
            names = pq.ParquetFile(io.BytesIO(data)).schema_arrow.names
        else:
            names = flat_files.header(*flat_files.separated(data[:65536].decode("utf-8-sig", errors="replace")))
    except (ValueError, OSError, csv.Error):
        return set()
    return {_column_key(name) for name in names} | {xdm.normalise_key(str(name).strip()) for name in names}


def _first_record_is_profile(upload: _Upload) -> bool:
    first = _first_record(upload)
    return isinstance(first, dict) and "eventType" not in first and xdm.is_profile_shape(first)


def _load_events(upload: _Upload, report: BatchReport, now: dt.datetime):
    records = _upload_format(upload) == "records"
    if records:
        parsed = _parse_xdm(_upload_records(upload))
    else:
        table = _upload_table(upload)
        parsed = (_parse_xdm(flat_files.xdm_records(table, upload.first_row), upload.first_row)
                  if flat_files.is_flattened_xdm(table.columns, _is_plain_column) else _parse_event_table(table))
    report.rows_total = len(parsed.frame)
    if report.rows_total == 0:
        raise ValidationError(f"{upload.name} has no events.")
    if records and parsed.frame["ts"].isna().all() and _first_record_is_profile(upload):
        raise _wrong_kind(upload.name, "profiles")
    clean, problems = _coerce_events(parsed, now)
    if problems:
        report.rows_rejected = len({row for row, _ in problems})
        raise _problem_report(problems, report.rows_total, "Row", upload)
    # Only events without an id need one made: hashing every event's content would briefly hold a second copy of
    # the whole file in memory.
    missing = np.flatnonzero(clean["xdm_id"].isna().to_numpy())
    if len(missing):
        clean.loc[clean.index[missing], "xdm_id"] = _content_ids(parsed.respelled,
            clean.iloc[missing], [parsed.written_identities.get(i, parsed.identities[i]) for i in missing])
    return clean, parsed


def _canonical(value) -> str:
    """A value as text that stays the same across library versions (an id made from it must not change)."""
    if value is None:
        return "\x00"
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _content_ids(respelled: list[str], clean: pd.DataFrame, identities: list[list[identity.IdentityKey]]
                 ) -> pd.Series:
    """An id made from each event's content (every field and identity as written), for events that bring no `_id`,
    so that a file loaded twice, or two exports that overlap, add each event once. The n-th copy of an event within
    one file gets its own id, so events a file repeats on purpose (two equal purchases in one second) are all kept.
    A phone number counts as written, not in its canonical form, and a column read from a header in a spelling
    matched only since (`Product Name`) counts as absent: ids made before either rule stay."""
    text = pd.Series(["\x1f".join(f"{namespace}\x1e{value}" for namespace, value in sorted(keys))
                      for keys in identities], index=clean.index, dtype=object)
    for column in clean.columns.drop("xdm_id"):
        values = pd.Series(None, index=clean.index, dtype=object) if column in respelled else clean[column]
        text = text + "\x1f" + values.astype(object).where(values.notna(), None).map(_canonical)
    digests = pd.Series([hashlib.sha256(value.encode()).hexdigest()[:32] for value in text], index=clean.index)
    copy = digests.groupby(digests, sort=False).cumcount() + 1
    ids = ("content:" + digests).where(copy == 1, "content:" + digests + ":" + copy.astype(str))
    return ids.astype(object)


def _is_event_record(record: dict) -> bool:
    """An experience event: a time with an event type, or with XDM identities and nothing of a profile."""
    return "timestamp" in record and (
        "eventType" in record or "event_type" in record
        or (not xdm.is_profile_shape(record) and ("identityMap" in record or "endUserIDs" in record)))


def _wrong_kind(file_name: str, holds: str) -> ValidationError:
    """A file loaded as the other kind would write junk (profiles made of events, events without a time)."""
    if holds == "events":
        return ValidationError(f"{file_name} holds experience events (every record has a timestamp), "
                               "not profiles. Nothing was changed: load it as events.")
    return ValidationError(f"{file_name} holds profiles (no record has a timestamp), not experience events. "
                           "Nothing was changed: load it as profiles.")


def _load_profiles(upload: _Upload, report: BatchReport, now: dt.datetime):
    problems: list[tuple[int, str]] = []
    if _upload_format(upload) == "records":
        records = []
        for number, record, problem in _upload_records(upload):
            if record is None:
                problems.append((number, problem))
            records.append(record or {})
        if any(records) and all(_is_event_record(record) for record in records if record):
            raise _wrong_kind(upload.name, "events")
        if any(xdm.is_profile_shape(record) for record in records):
            attributes, keys, primaries = _profiles_from_xdm(records, problems, now)
        else:
            table = pd.DataFrame(records)
            _refuse_case_twins(table.columns, upload.name)
            attributes, keys, primaries = _profiles_from_table(table, problems, first_row=1)
    else:
        table = _upload_table(upload)
        flattened = flat_files.is_flattened_xdm(table.columns, _is_plain_column)
        if {"timestamp", "event_type"} <= {_column_key(column) for column in table.columns} or (
                flattened and "timestamp" in {flat_files.record_field(column) for column in table.columns}):
            raise _wrong_kind(upload.name, "events")
        if flattened:
            dated_by = [column for column in table.columns
                        if _column_key(column) == attribute_versions.VALID_FROM_COLUMN]
            records = [record for _, record, _ in flat_files.xdm_records(table.drop(columns=dated_by),
                                                                         upload.first_row)]
            attributes, keys, primaries = _profiles_from_xdm(records, problems, now, upload.first_row)
            if dated_by:
                # The file's own column dates its values, as in a flat profile file; a row without one keeps the
                # date its record gives.
                given = table[dated_by[0]].to_numpy(dtype=object)
                attributes["valid_from"] = np.where(pd.notna(given), given, attributes["valid_from"].to_numpy())
        else:
            attributes, keys, primaries = _profiles_from_table(table, problems, first_row=upload.first_row)
    report.rows_total = len(attributes)
    if report.rows_total == 0:
        raise ValidationError(f"{upload.name} has no profiles.")
    return attributes, keys, primaries, problems


def ingest_bytes(db_path: Path, data: bytes, file_name: str, kind: str | None = None,
                 dataset: str | None = None, now: dt.datetime | None = None, actor: str = "local") -> BatchReport:
    """Validates and loads one file (or a .zip of an export's part files) as one batch; raises ValidationError (and
    logs a failed batch) if it is bad."""
    def parts():
        if len(data) > MAX_FILE_BYTES:
            raise ValidationError(
                f"{file_name} is {len(data) / 1e6:,.0f} MB; the upload limit is {MAX_FILE_BYTES / 1e6:,.0f} MB. "
                "Split it into smaller files."
            )
        return _unpacked(data, file_name)

    return _ingest(db_path, file_name, _dataset_name(file_name), parts, kind, dataset, now, actor)


def _dataset_name(file_name: str) -> str:
    return Path(file_name[:-3] if file_name.lower().endswith(".gz") else file_name).stem


def _ingest(db_path: Path, file_name: str, default_dataset: str, read_parts, kind: str | None, dataset: str | None,
            now: dt.datetime | None, actor: str) -> BatchReport:
    started = dt.datetime.now()
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    if kind not in (None, "events", "profiles"):
        raise CaiError(f"Unknown kind {kind!r}: choose events or profiles.")
    report = BatchReport(file_name=file_name, dataset=dataset or default_dataset, kind=kind or "events",
                         status="failed")
    report.load_id = _start_load(db_path, report, kind, started, actor)
    try:
        try:
            upload = _Upload(file_name, [(name, data) for name, data in read_parts() if data and not data.isspace()])
            if not upload.parts:
                raise ValidationError(f"{file_name} is empty.")
            report.kind = kind = kind or _detect_kind(upload)
            if kind == "events":
                clean, parsed = _load_events(upload, report, now)
            else:
                attributes, keys, primaries, problems = _load_profiles(upload, report, now)
            upload.release_data()
        except (CaiError, StoreBusy):
            raise
        except (ValueError, TypeError, OverflowError, RecursionError, KeyError, IndexError, MemoryError) as error:
            # Every check we know of has its own message; this net keeps an unforeseen one from becoming a traceback.
            log.exception("Unexpected problem reading %s", file_name)
            raise ValidationError(
                f"{file_name} could not be read ({type(error).__name__}: {str(error)[:120]}). Nothing was changed; "
                "check that it is an events or profiles file in one of the supported formats.") from None
        if kind == "events":
            return _write_events(db_path, clean, parsed, report, started, actor)
        return _write_profiles(db_path, attributes, keys, primaries, problems, upload, report, started, actor, now)
    except ValidationError as error:
        report.problems = [str(error), *error.problems]
        _record_failed_batch(db_path, report, started)
        raise
    finally:
        _end_load(db_path, report.load_id)


def ingest_file(db_path: Path, path: Path, kind: str | None = None, dataset: str | None = None,
                actor: str = "local") -> BatchReport:
    """Loads a file, or a folder of an export's part files (all of them, as one batch)."""
    path = Path(path)
    if path.is_dir():
        return _ingest(db_path, path.name, path.name, lambda: _folder_parts(path), kind, dataset, None, actor)
    if not path.is_file():
        raise CaiError(f"There is no file at {path}.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValidationError(
            f"{path.name} is {path.stat().st_size / 1e6:,.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:,.0f} MB."
        )
    # The file is read inside the load, so its bytes can be let go once parsed rather than held by this frame.
    return _ingest(db_path, path.name, _dataset_name(path.name), lambda: _unpacked(path.read_bytes(), path.name),
                   kind, dataset, None, actor)


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


# Loads no batch names yet: in progress, or interrupted (see recover_interrupted_loads).
_UNFINISHED_LOADS = "loads l WHERE NOT EXISTS (SELECT 1 FROM batches b WHERE b.load_id = l.load_id)"


def batches(db_path: Path) -> pd.DataFrame:
    """Every file loaded or refused, newest first, with the loads in progress ("loading") and those a restart cut
    off ("interrupted", their problem saying so), which have no batch and brought no rows."""
    return store.query_df(
        db_path,
        f"""
        SELECT b.batch_id, d.name AS dataset, b.file_name, b.status, b.rows_total, b.rows_accepted,
               b.rows_rejected, b.rows_duplicate, b.profiles_created, b.profiles_merged, b.errors::VARCHAR AS errors,
               b.started_at, b.finished_at
        FROM batches b JOIN datasets d USING (dataset_id)
        UNION ALL
        SELECT NULL, l.dataset, l.file_name, l.status, 0, 0, 0, 0, 0, 0,
               CASE WHEN l.error IS NOT NULL THEN to_json([l.error])::VARCHAR END, l.started_at, l.finished_at
        FROM {_UNFINISHED_LOADS}
        ORDER BY started_at DESC, batch_id DESC
        """,
    )


def unfinished_loads(db_path: Path) -> pd.DataFrame:
    """Loads in progress and loads a restart cut off, newest first (the command line's listing)."""
    return store.query_df(
        db_path, f"SELECT l.file_name, l.dataset, l.kind, l.actor, l.status, l.started_at, l.error "
                 f"FROM {_UNFINISHED_LOADS} ORDER BY l.started_at DESC")


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


def batch_event_types(db_path: Path, batches_shown: int = 20) -> pd.DataFrame:
    """Per batch and event type: how many events it brought and how many of their types were inferred from the
    XDM field groups because the record had no `eventType`."""
    return store.query_df(
        db_path,
        """
        SELECT batch_id, event_type, count(*) AS events,
               count(*) FILTER (WHERE raw IS NOT NULL AND (raw->>'eventType') IS NULL) AS inferred
        FROM events WHERE batch_id IN (SELECT batch_id FROM batches ORDER BY batch_id DESC LIMIT $batches)
        GROUP BY ALL ORDER BY batch_id DESC, events DESC, event_type
        """,
        {"batches": batches_shown},
    )
