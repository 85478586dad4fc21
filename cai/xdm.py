"""XDM as Adobe writes it: key spellings, identities, event types inferred from field groups, Individual Profiles."""

from __future__ import annotations

import datetime as dt
import decimal

from cai import identity

IDENTITY_URI_PREFIX = "https://data.adobe.io/entities/identity/"
NAMESPACE_URI_PREFIX = "https://data.adobe.io/entities/namespace/"
XDM_URI_PREFIX = "https://ns.adobe.com/xdm/"
UNSPECIFIED_EVENT_TYPE = "unspecified"

# Experience Platform's standard namespace ids, as they appear in namespace URIs.
NAMESPACE_BY_ID = {"0": "CORE", "4": "ECID", "6": "Email", "7": "Phone", "8": "WAID", "9": "TNTID", "10": "AAID",
                   "411": "AdCloud", "20914": "GAID", "20915": "IDFA"}
# The keys of `endUserIDs` (`_experience.<key>` or `https://ns.adobe.com/experience/<key>`).
NAMESPACE_BY_END_USER_KEY = {"mcid": "ECID", "emailid": "Email", "aaid": "AAID", "tntid": "TNTID"}

# Customer AI's standard events: the first populated measure (`{"value": n}` with n > 0) names the event type.
INFERRED_EVENT_TYPES: list[tuple[str, str]] = [
    ("commerce.purchases", "commerce.purchases"),
    ("commerce.checkouts", "commerce.checkouts"),
    ("commerce.productListAdds", "commerce.productListAdds"),
    ("commerce.productListRemovals", "commerce.productListRemovals"),
    ("commerce.productListOpens", "commerce.productListOpens"),
    ("commerce.productListReopens", "commerce.productListReopens"),
    ("commerce.productListViews", "commerce.productListViews"),
    ("commerce.saveForLaters", "commerce.saveForLaters"),
    ("commerce.productViews", "commerce.productViews"),
    ("application.installs", "application.installs"),
    ("application.upgrades", "application.upgrades"),
    ("application.firstLaunches", "application.firstLaunches"),
    ("application.launches", "application.launches"),
    ("application.featureUsages", "application.featureUsages"),
    ("application.crashes", "application.crashes"),
    ("application.closes", "application.closes"),
    ("directMarketing.unsubscriptions", "directMarketing.emailUnsubscribed"),
    ("directMarketing.clicks", "directMarketing.emailClicked"),
    ("directMarketing.opens", "directMarketing.emailOpened"),
    ("directMarketing.hardBounces", "directMarketing.emailBounced"),
    ("directMarketing.softBounces", "directMarketing.emailBouncedSoft"),
    ("directMarketing.sends", "directMarketing.emailSent"),
    ("web.webInteraction.linkClicks", "web.webinteraction.linkClicks"),
    ("web.webPageDetails.pageViews", "web.webpagedetails.pageViews"),
    ("searchRequest", "search"),
    ("pushNotificationTracking.customAction", "pushTracking.customAction"),
    ("media.mediaTimed.completes", "media.mediaTimed.completes"),
    ("media.mediaTimed.thirdQuartiles", "media.mediaTimed.thirdQuartiles"),
    ("media.mediaTimed.midpoints", "media.mediaTimed.midpoints"),
    ("media.mediaTimed.firstQuartiles", "media.mediaTimed.firstQuartiles"),
    ("media.mediaTimed.starts", "media.mediaTimed.starts"),
    ("media.mediaTimed.impressions", "media.mediaTimed.impressions"),
    ("advertising.conversions", "advertising.conversions"),
    ("advertising.clicks", "advertising.clicks"),
    ("advertising.completes", "advertising.completes"),
    ("advertising.thirdQuartiles", "advertising.thirdQuartiles"),
    ("advertising.midpoints", "advertising.midpoints"),
    ("advertising.firstQuartiles", "advertising.firstQuartiles"),
    ("advertising.starts", "advertising.starts"),
    ("advertising.impressions", "advertising.impressions"),
]
# A search is also told by its keywords alone.
SEARCH_TEXT_FIELDS = [("search", "keywords"), ("siteSearch", "query")]


def normalise_key(key: str) -> str:
    """``xdm:eventType`` and ``https://ns.adobe.com/xdm/eventType`` are ``eventType``; ``@id`` is ``_id``."""
    if key == "@id":
        return "_id"
    if key.startswith("xdm:"):
        return key[4:]
    if key.startswith(XDM_URI_PREFIX) and "/" not in key[len(XDM_URI_PREFIX):]:
        return key[len(XDM_URI_PREFIX):]
    return key


def normalise(value):
    """The record with every field key in its plain spelling (maps keyed by URIs keep their keys)."""
    if isinstance(value, dict):
        return {normalise_key(key): normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalise(item) for item in value]
    return value


def from_parquet(value):
    """A value read from a Parquet export in the shape the JSON export of the same dataset has: times and dates as
    ISO 8601 text (a time without a zone is UTC, as Experience Platform writes it), decimals as numbers, and no
    null fields (a JSON export leaves them out), so both exports load alike and their events get the same ids."""
    if isinstance(value, dict):
        return {key: from_parquet(item) for key, item in value.items() if item is not None}
    if isinstance(value, list) and value and all(isinstance(item, tuple) for item in value):
        return _map_from_parquet(value)
    if isinstance(value, list):
        return [from_parquet(item) for item in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _map_from_parquet(pairs: list[tuple]) -> dict:
    """A Parquet MAP (pyarrow gives its (key, value) pairs) as an object; a key written twice, as an `identityMap`
    namespace can be, keeps the items of both lists."""
    mapped: dict = {}
    for key, item in pairs:
        item = from_parquet(item)
        if item is None:
            continue
        if isinstance(mapped.get(key), list) and isinstance(item, list):
            mapped[key] = mapped[key] + item
        else:
            mapped[key] = item
    return mapped


def dig(record, *path):
    for key in path:
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def namespace_of(name: str) -> str:
    """A namespace code, URI or id as the app names it; unknown ones are kept as given."""
    name = str(name).strip()
    if name.startswith(NAMESPACE_URI_PREFIX):
        return NAMESPACE_BY_ID.get(name[len(NAMESPACE_URI_PREFIX):].strip("/"), name)
    return identity.canonical_namespace(name)


def _identity_value(entry: dict):
    value = entry.get("id", entry.get("_id"))
    if isinstance(value, str) and value.startswith(IDENTITY_URI_PREFIX):
        return value[len(IDENTITY_URI_PREFIX):]
    return value


def _is_primary(entry: dict) -> bool:
    """An identity marked primary: `true`, or the text `true` of a flattened table's cell."""
    flag = entry.get("primary")
    return flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")


def identities(record: dict) -> tuple[list[tuple[str, object]], tuple[str, object] | None]:
    """(namespace, value) pairs from ``identityMap``, ``endUserIDs`` and ``stitchedID``, and the primary one.

    Values are returned as given (they may be junk); the caller decides what is an identity."""
    found: list[tuple[str, object]] = []
    primary = None
    identity_map = record.get("identityMap")
    if isinstance(identity_map, dict):
        for namespace, entries in identity_map.items():
            for entry in entries if isinstance(entries, list) else [entries]:
                if isinstance(entry, dict):
                    key = (namespace_of(namespace), _identity_value(entry))
                    found.append(key)
                    if _is_primary(entry) and primary is None:
                        primary = key
    end_user_ids = record.get("endUserIDs")
    if isinstance(end_user_ids, dict):
        experience = end_user_ids.get("_experience")
        entries = experience if isinstance(experience, dict) else {
            name.rstrip("/").rsplit("/", 1)[-1]: entry for name, entry in end_user_ids.items()}
        for name, entry in entries.items():
            if not isinstance(entry, dict):
                continue
            code = dig(entry, "namespace", "code")
            namespace = code if isinstance(code, str) and code else NAMESPACE_BY_END_USER_KEY.get(name.lower(), name)
            key = (namespace_of(namespace), _identity_value(entry))
            found.append(key)
            if primary is None and (_is_primary(entry) or key[0] == "Email"):
                primary = key
    stitched = record.get("stitchedID")
    if isinstance(stitched, dict) and isinstance(dig(stitched, "namespace", "code"), str):
        found.append((namespace_of(stitched["namespace"]["code"]), _identity_value(stitched)))
    return found, primary


# Top-level fields with an underscore that are Adobe's, not a tenant's custom field groups.
ADOBE_UNDERSCORE_FIELDS = {"_id", "_experience", "_repo", "_dc", "_schema", "_acp_system_metadata"}
# The names of the tenant blocks whose fields identify the record's own person (the Identification field group).
IDENTIFICATION_BLOCKS = {"identification", "identity", "identities"}


def tenant_identities(record: dict) -> list[tuple[str, object]]:
    """(namespace, value) of fields of the tenant's own field groups named after a namespace the app knows, at the
    tenant's top (`_acme.crmId`) or in an identification block (`_acme.identification.core.email`): a schema marks
    such a field as an identity, and an export does not copy it into `identityMap`. Fields named so elsewhere
    (`_acme.store.phone`, `_acme.salesperson.email`) describe someone else, and would stitch every customer who
    shares them into one profile. Values are returned as given; being a guess from a name, the caller skips any
    that is no identity."""
    found = []
    # (a block, whether its fields identify the record's person, whether its sub-blocks' fields do)
    stack = [(value, True, False) for key, value in record.items()
             if key.startswith("_") and key not in ADOBE_UNDERSCORE_FIELDS and isinstance(value, dict)]
    while stack:
        block, identifying, inherited = stack.pop()
        for key, value in block.items():
            if isinstance(value, dict):
                below = inherited or key.lower() in IDENTIFICATION_BLOCKS
                stack.append((value, below, below))
            elif identifying and isinstance(value, (str, int)) and not isinstance(value, bool):
                namespace = identity.canonical_namespace(key)
                if namespace in identity.KNOWN_NAMESPACES:
                    found.append((namespace, value))
    return found


def _measured(record: dict, path: str) -> bool:
    """Whether the measure at ``path`` counts something: a number above 0, or such a number as text (a flattened
    table's cells are text)."""
    value = dig(record, *path.split("."), "value")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def event_type(record: dict) -> tuple[str, bool]:
    """The record's event type and whether it was inferred (``eventType`` absent) rather than given."""
    given = record.get("eventType")
    if isinstance(given, str) and given.strip():
        return given.strip(), False
    if given is not None and not isinstance(given, str):
        return given, False  # not text: validation names the row
    for path, name in INFERRED_EVENT_TYPES:
        if _measured(record, path):
            return name, True
    if dig(record, "pushNotificationTracking", "isLaunch") is True:
        return "pushTracking.applicationOpened", True
    for path in SEARCH_TEXT_FIELDS:
        text = dig(record, *path)
        if isinstance(text, str) and text.strip():
            return "search", True
    return UNSPECIFIED_EVENT_TYPE, True


def _year_of(birth_date) -> object:
    if isinstance(birth_date, str) and len(birth_date) >= 4 and birth_date[:4].isdigit():
        return int(birth_date[:4])
    return birth_date


# Individual Profile fields that become profile columns; everything else is kept in `attributes`.
PROFILE_FIELDS = {
    "first_name": ("person", "name", "firstName"),
    "last_name": ("person", "name", "lastName"),
    "gender": ("person", "gender"),
    "birth_year": ("person", "birthYear"),
    "city": ("homeAddress", "city"),
    "country": ("homeAddress", "country"),
    "loyalty_tier": ("loyalty", "tier"),
    "loyalty_points": ("loyalty", "points"),
    "signup_date": ("loyalty", "joinDate"),
}
PROFILE_IDENTITY_FIELDS = [("Email", ("personalEmail", "address")), ("Email", ("workEmail", "address")),
                           ("Phone", ("mobilePhone", "number")), ("LoyaltyID", ("loyalty", "loyaltyID"))]
_PROFILE_SHAPE_KEYS = {"person", "personalEmail", "workEmail", "mobilePhone", "homeAddress", "loyalty", "identityMap"}


def is_profile_shape(record: dict) -> bool:
    return any(key in record for key in _PROFILE_SHAPE_KEYS - {"identityMap"}) or (
        "identityMap" in record and "timestamp" not in record)


def profile_row(record: dict) -> tuple[dict, list[tuple[str, object]], tuple[str, object] | None]:
    """One Individual Profile record as (profile columns with the other fields under ``attributes``, identities,
    primary identity)."""
    row = {column: dig(record, *path) for column, path in PROFILE_FIELDS.items()}
    if row["birth_year"] is None:
        row["birth_year"] = _year_of(dig(record, "person", "birthDate"))
    if row["country"] is None:
        row["country"] = dig(record, "homeAddress", "countryCode")
    keys, primary = identities(record)
    for namespace, path in PROFILE_IDENTITY_FIELDS:
        value = dig(record, *path)
        # The loyalty field group holds a list of the member's loyalty ids.
        for item in value if isinstance(value, list) and namespace == "LoyaltyID" else [value]:
            if item is not None:
                keys.append((namespace, item))
    # Only the fields that became columns or identities leave the record: the rest of a mapped block (a middle
    # name, a postal code, the loyalty programme) is kept, as every other field is.
    # (A birth date stays: the column keeps only its year.)
    country_path = ("homeAddress", "country") if dig(record, "homeAddress", "country") is not None else (
        "homeAddress", "countryCode")
    mapped = [path for path in (*PROFILE_FIELDS.values(), *(path for _, path in PROFILE_IDENTITY_FIELDS),
                                country_path) if dig(record, *path) is not None]
    extras = _without(record, [("identityMap",), *mapped])
    row["attributes"] = extras or None
    return row, keys, primary


def _without(record: dict, paths: list[tuple[str, ...]]) -> dict:
    """A copy of ``record`` without the fields at ``paths``; objects left empty by that go too."""
    kept = dict(record)
    for head in {path[0] for path in paths}:
        if (head,) in paths:
            kept.pop(head, None)
        elif isinstance(kept.get(head), dict):
            rest = _without(kept[head], [path[1:] for path in paths if path[0] == head])
            if rest:
                kept[head] = rest
            else:
                kept.pop(head)
    return kept
