"""Flat files as people and tools write them: the list separator of their locale, headers in any spelling, and XDM
records flattened into one column per field path (as Query Service hands them to BI tools)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pandas as pd

# Separators a spreadsheet or an export writes between fields: Excel in most of Europe saves `;`.
SEPARATORS = (",", ";", "\t", "|")
# Excel's own first line naming the separator, e.g. `sep=;`.
_SEPARATOR_LINE = re.compile(r"sep=(.)\r?\n", re.IGNORECASE)
# The last key of a column (or field path) that holds an amount or a count: the app reads these as numbers.
AMOUNT_KEYS = frozenset({"value", "quantity", "price_total", "loyalty_points", "points"})
# A number with a decimal comma and points between its thousands, or a whole number.
_DECIMAL_COMMA_NUMBER = r"[+-]?(?:[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]+)(?:,[0-9]+)?"
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_GAPS = re.compile(r"[\s\-]+")
# An XDM field path's top (a standard field group's object, or a tenant's `_acme` and Adobe's `_experience`) that
# marks a column named by its path as a field of a flattened record.
XDM_TOPS = frozenset({
    "identityMap", "endUserIDs", "commerce", "productListItems", "web", "marketing", "channel", "application",
    "directMarketing", "search", "siteSearch", "device", "environment", "placeContext", "media", "advertising",
    "pushNotificationTracking", "person", "personalEmail", "workEmail", "mobilePhone", "homePhone", "homeAddress",
    "workAddress", "loyalty", "consents", "userAccount"})
# A list index has at most three digits: a column naming item 10**9 must not make a list that long.
_INDEXED = re.compile(r"^(?P<key>[^\[\]]*)\[(?P<index>[0-9]{1,3})\]$")


def separated(text: str) -> tuple[str, str]:
    """(the text without Excel's `sep=` line, the field separator): the one named by that line, else the candidate
    that the header line holds most often outside quotes (a comma when it holds none)."""
    named = _SEPARATOR_LINE.match(text)
    if named:
        return text[named.end():], named.group(1)
    header = text.split("\n", 1)[0]
    outside_quotes = "".join(header.split('"')[::2])
    counts = {separator: outside_quotes.count(separator) for separator in SEPARATORS}
    best = max(SEPARATORS, key=lambda separator: counts[separator])
    return text, best if counts[best] else ","


def with_decimal_points(table: pd.DataFrame) -> pd.DataFrame:
    """A table whose separator is not a comma, as Excel in most of Europe writes it, with its numbers in decimal
    commas (``59,90``, ``1.234,50``) written with decimal points, in the columns the app reads as amounts. Only a
    column of numbers alone, one at least with a decimal comma, changes: text in another column stays as written."""
    converted = table.copy()
    for column in table.columns:
        if column_key(str(column).rsplit(".", 1)[-1]) not in AMOUNT_KEYS:
            continue
        values = table[column].dropna().astype(str).str.strip()
        if len(values) and values.str.fullmatch(_DECIMAL_COMMA_NUMBER).all() and values.str.contains(",").any():
            written = table[column].astype(object)
            converted[column] = written.where(written.isna(), written.astype(str).str.strip().str.replace(
                ".", "", regex=False).str.replace(",", ".", regex=False))
    return converted


def column_key(name) -> str:
    """A column's name as the app matches it: `eventType`, `Event Type`, `event-type` and `EVENT_TYPE` are all
    `event_type` (a run of capitals, as in `ECID` or `CRMID`, stays one word)."""
    return _GAPS.sub("_", _WORD_START.sub("_", str(name).strip())).lower()


def _path(column: str) -> list[str | int] | None:
    """The field path a column names (`productListItems[0].SKU` or `identityMap.Email.0.id`), or None."""
    steps: list[str | int] = []
    for part in str(column).strip().split("."):
        indexed = _INDEXED.match(part)
        if indexed:
            if indexed["key"]:
                steps.append(indexed["key"])
            steps.append(int(indexed["index"]))
        elif part.isdigit() and len(part) <= 3 and steps:
            steps.append(int(part))
        elif part and " " not in part:
            steps.append(part)
        else:
            return None
    return steps


def is_flattened_xdm(columns) -> bool:
    """Whether a table's columns are XDM field paths: at least one names a field below a standard field group's
    object or a tenant's (`commerce.order.priceTotal`, `_acme.loyaltyId`), or the table has `identityMap`."""
    for column in columns:
        path = _path(column)
        if path and isinstance(path[0], str) and (path[0] in XDM_TOPS or path[0].startswith("_")) and (
                len(path) > 1 or path[0] in ("identityMap", "endUserIDs")):
            return True
    return False


def _cell(value):
    """A cell as the record holds it: an object or list written as JSON text (a map a flattening keeps whole, such
    as `identityMap`) is read back; other text stays text; an empty cell is no field."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
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
    """Sets the field at ``path``, making the objects and lists on the way; a path that crosses a value of the
    other kind (a list where a column made an object) is left out."""
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
