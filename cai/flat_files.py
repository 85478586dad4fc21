"""Flat files as people and tools write them: the list separator of their locale, headers in any spelling, and XDM
records flattened into one column per field path (as Query Service hands them to BI tools)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator

import pandas as pd

from cai import xdm

# Separators a spreadsheet or an export writes between fields: Excel in most of Europe saves `;`.
SEPARATORS = (",", ";", "\t", "|")
# Excel's own first line naming the separator, e.g. `sep=;`.
_SEPARATOR_LINE = re.compile(r"sep=([,;\t|])(?:\r\n|\r|\n)", re.IGNORECASE)
_LINE_END = re.compile(r"\r\n|\r|\n")
# The last key of a column (or field path) that holds an amount or a count: the app reads these as numbers.
AMOUNT_KEYS = frozenset({"value", "quantity", "price_total", "loyalty_points", "points"})
# A number written with a decimal comma (points, if any, between its thousands), or a whole number with points
# between its thousands; and one whose comma cannot be a thousands separator (not followed by three digits, or
# after points): a column holding one of these writes its amounts with decimal commas.
_COMMA_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]+)(?:,[0-9]+)?")
_SURELY_COMMA_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,3}(?:\.[0-9]{3})+,[0-9]+|[0-9]+,(?:[0-9]{1,2}|[0-9]{4,}))")
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_GAPS = re.compile(r"[\s\-]+")
# An XDM field path's top (a standard field group's object, or a tenant's `_acme` and Adobe's `_experience`) that
# marks a column named by its path as a field of a flattened record.
XDM_TOPS = frozenset({
    "identityMap", "endUserIDs", "commerce", "productListItems", "web", "marketing", "channel", "application",
    "directMarketing", "search", "siteSearch", "device", "environment", "placeContext", "media", "advertising",
    "pushNotificationTracking", "person", "personalEmail", "workEmail", "mobilePhone", "homePhone", "homeAddress",
    "workAddress", "loyalty", "consents", "userAccount"})
# The top-level fields of a record, as a flattened table may spell them (`Timestamp`, `event_type`).
_RECORD_FIELDS = {"timestamp": "timestamp", "event_type": "eventType", "identity_map": "identityMap",
                  "end_user_ids": "endUserIDs"}
# A list index has at most three digits: a column naming item 10**9 must not make a list that long.
_INDEX = r"[0-9]{1,3}"
_INDEXED = re.compile(rf"(?P<key>[^\[\]]*)\[(?P<index>{_INDEX})\]")
# An identity's path, whose namespace may hold dots (`identityMap.Phone_E.164.0.id`).
_IDENTITY_PATH = re.compile(rf"identityMap\.(?P<namespace>.+?)(?:\.(?P<index>{_INDEX})|\[(?P<bracketed>{_INDEX})\])"
                            r"(?:\.(?P<field>[^.]+))?")
# How deeply JSON may nest: a record of a JSON file, and JSON in a flattened table's cell.
MAX_NESTING_DEPTH = 64


def _outside_quotes(line: str) -> str:
    return "".join(line.split('"')[::2])


def header(text: str, separator: str) -> list[str]:
    """The names of a separated text's columns, as its first line writes them."""
    return next(csv.reader([_LINE_END.split(text, maxsplit=1)[0]], delimiter=separator), [])


def separated(text: str) -> tuple[str, str]:
    """(the text without Excel's `sep=` line, the field separator): the one named by that line, else the candidate
    the header line holds most often outside quotes that the second line holds as often (a comma on a tie; the
    header's most frequent one when no candidate agrees, a comma when it holds none)."""
    named = _SEPARATOR_LINE.match(text)
    if named:
        return text[named.end():], named.group(1)
    lines = _LINE_END.split(text, maxsplit=2)
    header = _outside_quotes(lines[0])
    second = _outside_quotes(lines[1]) if len(lines) > 1 and lines[1].strip() else None
    ranked = sorted(SEPARATORS, key=lambda separator: -header.count(separator))
    for separator in ranked:
        if header.count(separator) and (second is None or second.count(separator) == header.count(separator)):
            return text, separator
    return text, ranked[0] if header.count(ranked[0]) else ","


def with_decimal_points(table: pd.DataFrame) -> pd.DataFrame:
    """A table whose separator is not a comma, as Excel in most of Europe writes it, with the amounts of a column
    that writes them with decimal commas (``59,90``, ``1.234,50``, and then ``1.250`` is a thousand and more) in
    decimal points. A column none of whose values must be a decimal comma (``1,250`` may be a thousand, as an
    American export writes it) stays as written, as do the other columns and any cell that is no such number."""
    converted = table.copy()
    for column in table.columns:
        if column_key(str(column).rsplit(".", 1)[-1]) not in AMOUNT_KEYS:
            continue
        written = table[column].astype(object)
        text = written.where(written.isna(), written.astype(str).str.strip())
        present = text.dropna()
        if not present.str.fullmatch(_SURELY_COMMA_DECIMAL).any():
            continue
        numbers = text.notna() & text.astype(str).str.fullmatch(_COMMA_DECIMAL)
        converted[column] = written.where(~numbers, text.astype(str).str.replace(".", "", regex=False).str.replace(
            ",", ".", regex=False))
    return converted


def column_key(name) -> str:
    """A column's name in words joined by underscores: `eventType`, `Event Type`, `event-type` and `EVENT_TYPE` are
    all `event_type` (a run of capitals, as in `ECID` or `CRMID`, stays one word)."""
    return _GAPS.sub("_", _WORD_START.sub("_", str(name).strip())).lower()


def column_keys(known: Iterable[str]) -> Callable[[object], str]:
    """``column_key``, giving a known name for any spelling that differs from it only in where its words break
    (`TimeStamp`, `SignUpDate` and `emailId` are `timestamp`, `signup_date` and `emailid`)."""
    by_letters = {name.replace("_", ""): name for name in known}

    def key(name) -> str:
        words = column_key(name)
        return by_letters.get(words.replace("_", ""), words)

    return key


def _steps(part: str) -> list[str | int] | None:
    indexed = _INDEXED.fullmatch(part)
    if indexed:
        return ([indexed["key"]] if indexed["key"] else []) + [int(indexed["index"])]
    if re.fullmatch(_INDEX, part):
        return [int(part)]
    return [part] if part and " " not in part else None


def _path(column) -> list[str | int] | None:
    """The field path a column names (`productListItems[0].SKU`, `identityMap.Email.0.id`, `xdm:eventType`), or
    None for a name that is no path."""
    name = xdm.normalise_key(str(column).strip())
    identity = _IDENTITY_PATH.fullmatch(name)
    if identity:
        index = int(identity["index"] or identity["bracketed"])
        return ["identityMap", identity["namespace"], index, *([identity["field"]] if identity["field"] else [])]
    steps: list[str | int] = []
    for part in name.split("."):
        found = _steps(part)
        if found is None or (not steps and isinstance(found[0], int)):
            return None
        steps += found
    if isinstance(steps[0], str) and not steps[0].startswith("_") and len(steps) == 1:
        steps[0] = _RECORD_FIELDS.get(column_key(steps[0]), steps[0])
    return steps


def record_field(column) -> str | None:
    """The top-level field of a record a column names by itself (`xdm:timestamp` and `Timestamp` name
    `timestamp`), or None."""
    path = _path(column)
    return path[0] if path and len(path) == 1 and isinstance(path[0], str) else None


def _is_field_path(column) -> bool:
    path = _path(column)
    return bool(path) and isinstance(path[0], str) and (path[0] in XDM_TOPS or path[0].startswith("_")) and (
        len(path) > 1 or path[0] in ("identityMap", "endUserIDs"))


def is_flattened_xdm(columns, is_plain: Callable[[object], bool]) -> bool:
    """Whether a table's columns are XDM field paths: one at least names a field below a standard field group's
    object or a tenant's (`commerce.order.priceTotal`, `_acme.loyaltyId`) or is `identityMap`, and none is a column
    of the app's own flat format (``is_plain``: `email`, `first_name` ...), which keeps a table that also has a
    dotted column of its own (`device.category`) a flat table."""
    columns = list(columns)
    return any(_is_field_path(column) for column in columns) and not any(is_plain(column) for column in columns)


def _json_depth(text: str) -> int:
    """How deeply JSON text nests, counted without parsing it (a parser recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for character in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped = character == "\\"
            in_string = character != '"'
        elif character == '"':
            in_string = True
        elif character in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif character in "}]":
            depth -= 1
    return deepest


def _cell(value):
    """A cell as the record holds it: an object or list written as JSON text (a map a flattening keeps whole, such
    as `identityMap`) is read back, unless it nests deeper than a record may; other text stays text; an empty cell
    is no field."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if not isinstance(value, str):
        return xdm.from_parquet(value)  # a typed Parquet column's time or decimal, as the JSON export writes it
    if value.lstrip()[:1] in ("{", "[") and _json_depth(value) <= MAX_NESTING_DEPTH:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _get(node, step):
    if isinstance(step, int):
        return node[step] if isinstance(node, list) and step < len(node) else None
    return node.get(step) if isinstance(node, dict) else None


def _set(node, step, value) -> bool:
    if isinstance(step, int) and isinstance(node, list):
        node.extend(None for _ in range(step + 1 - len(node)))
        node[step] = value
        return True
    if isinstance(step, str) and isinstance(node, dict):
        node[step] = value
        return True
    return False


def _place(record: dict, path: list[str | int], value) -> None:
    """Sets the field at ``path``, making the objects and lists on the way: a deeper column replaces a value its
    path crosses (shorter paths are placed first)."""
    node = record
    for step, following in zip(path, path[1:]):
        kind = list if isinstance(following, int) else dict
        child = _get(node, step)
        if not isinstance(child, kind):
            child = kind()
            if not _set(node, step, child):
                return
        node = child
    _set(node, path[-1], value)


def _compact(value):
    """Without the list slots no column filled (a product line the export had no values for)."""
    if isinstance(value, dict):
        return {key: _compact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_compact(item) for item in value if item not in (None, {})]
    return value


def xdm_records(table: pd.DataFrame, first_row: int) -> Iterator[tuple[int, dict, None]]:
    """(row number, nested record, None) for every row of a flattened table, as `ingest` reads an XDM export's."""
    paths = {column: _path(column) or [str(column)] for column in table.columns}
    columns = {column: table[column].tolist() for column in table.columns}
    for index in range(len(table)):
        record: dict = {}
        # Shorter paths first, so that `commerce.order` written as JSON is refined by `commerce.order.priceTotal`.
        for column in sorted(table.columns, key=lambda name: len(paths[name])):
            value = _cell(columns[column][index])
            if value is not None:
                _place(record, paths[column], value)
        yield index + first_row, _compact(record), None
