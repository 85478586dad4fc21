"""Identity stitching: records that share any identity value belong to one profile (connected components)."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from cai import attributes, audit, store

# The typed columns of a profile, besides its JSON attributes.
PROFILE_COLUMNS = ["first_name", "last_name", "gender", "birth_year", "city", "country", "loyalty_tier",
                   "loyalty_points", "signup_date"]

KNOWN_NAMESPACES = ["Email", "ECID", "Phone", "CRMID", "LoyaltyID"]
_NAMESPACE_BY_LOWER = {name.lower(): name for name in KNOWN_NAMESPACES} | {
    "emailid": "Email", "email_address": "Email", "mcid": "ECID", "crm_id": "CRMID", "loyalty_id": "LoyaltyID",
    "phone_e.164": "Phone"}
# Every spelling of a known namespace, lower-case: a flat file's column so named holds that identity.
NAMESPACE_SPELLINGS = tuple(_NAMESPACE_BY_LOWER)
MAX_IDENTITY_CHARS = 256
# Text that stands for "no value" in exports; it must never link two customers.
PLACEHOLDER_VALUES = {"null", "none", "undefined", "nan", "n/a", "0", "-"}
PHONE_NAMESPACE = "Phone"
# E.164 numbers have at most 15 digits; fewer than 5 is no number anyone can be called on.
PHONE_MIN_DIGITS, PHONE_MAX_DIGITS = 5, 15
# Separators between a number's digits: spaces (NFKC has made non-breaking, thin and other wide spaces plain ones,
# and fullwidth digits ASCII), hyphens and dashes, dots, parentheses and slashes.
_PHONE_SEPARATORS = str.maketrans("", "", " -.()/\u2010\u2011\u2012\u2013\u2014\u2015\u2212")
# Every way of marking an extension holds one of these; the pattern is tried only then (it costs more).
_EXTENSION_SIGNS = "xX#;"
_PHONE_DIGITS = re.compile(r"\+?[0-9]+")
_TRUNK_PREFIX = re.compile(r"\(\s*0\s*\)")
_PHONE_EXTENSION = re.compile(
    r"(?P<number>.*?[0-9)])\s*(?:;\s*ext\s*=|,?\s*(?:extension|ext\.?|x|#))\s*(?P<extension>[0-9]{1,8})",
    re.IGNORECASE)
# profile_merges of a schema upgrade, which no load's batch made (batches are numbered from 1).
UPGRADE_BATCH_ID = 0
UPGRADE_ACTOR = "schema upgrade"

IdentityKey = tuple[str, str]


def canonical_namespace(name: str) -> str:
    """``email`` and ``EMAIL`` are the Email namespace; names we do not know keep their spelling."""
    return _NAMESPACE_BY_LOWER.get(name.strip().lower(), name.strip())


def identity_value(namespace: str, value) -> tuple[str | None, str | None]:
    """(the value as stored, None) for a real identity; (None, None) when absent (empty); (None, reason) for a
    value that is not an identity. Emails are stored lower-case, so they match whatever the case; phone numbers
    in one canonical form (see ``phone_number``), so they match however they were written."""
    written, reason = written_value(namespace, value)
    if written is None:
        return None, reason
    return stored_value(namespace, written)


def written_value(namespace: str, value) -> tuple[str | None, str | None]:
    """The value as written (trimmed; emails lower-case), as ``identity_value`` answers, before a phone number is
    put in its canonical form: what an event's content id is made from, so ids made before phone numbers were
    normalised stay the same."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, (dict, list)):
        return None, f"`{namespace}` is a nested object, not an identity value"
    if isinstance(value, bool):
        return None, f"`{namespace}` is true/false, not an identity value"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            return None, f"`{namespace}` is not an identity value ({value})"
        value = int(value)
    text = str(value).strip()
    if text.lower() in PLACEHOLDER_VALUES:
        return None, f"`{namespace}` holds {text[:12]!r}, which is not an identity value"
    if len(text) > MAX_IDENTITY_CHARS:
        return None, f"`{namespace}` is longer than {MAX_IDENTITY_CHARS} characters, so it is not an identity value"
    if any(ord(character) < 32 for character in text):
        return None, f"`{namespace}` contains control characters (NUL, line breaks), so it is not an identity value"
    if namespace == "Email" and "@" not in text[1:-1]:
        # 'unknown' or 'no email' in every customer's row would otherwise stitch them all into one profile.
        return None, "`Email` has no @, so it is not an email address"
    return (text.lower() if namespace == "Email" else text), None


def stored_value(namespace: str, written: str) -> tuple[str | None, str | None]:
    """A value ``written_value`` accepted, as stored: a phone number in its canonical form, anything else as is."""
    return phone_number(written) if namespace == PHONE_NAMESPACE else (written, None)


def phone_number(text: str) -> tuple[str | None, str | None]:
    """(the canonical form, None) of a phone number, or (None, reason) for text that is not one.

    The canonical form is the number's digits, after a ``+`` when it has its country code: ``tel:`` and the
    separators exports write go (spaces of any width, ``-``, ``.``, ``(``, ``)``, ``/``), a leading ``00`` is the
    international ``+``, and after a country code a ``(0)`` (the trunk prefix dialled at home) goes too. A number
    without a country code is not given one: ``555 123 4567`` is ``5551234567``, another identity than
    ``+15551234567``, since guessing the country could join two customers. An extension (``ext. 12``, ``x12``,
    ``#12``, ``;ext=12``) stays part of the identity, as ``+15551234567;ext=12``: a switchboard's number is shared
    by everyone behind it, so it never joins its extensions, nor a customer who gave it without one."""
    text = _without_tel(text)
    extension = _PHONE_EXTENSION.fullmatch(text) if any(sign in text for sign in _EXTENSION_SIGNS) else None
    if extension:
        text = extension.group("number")
    if text.startswith(("+", "00")):
        text = _TRUNK_PREFIX.sub("", text, count=1)
    digits = _without_separators(text)
    if not _PHONE_DIGITS.fullmatch(digits):
        return None, (f"`{PHONE_NAMESPACE}` holds letters or signs that a phone number does not have, so it is not "
                      "a phone number")
    count = len(digits.lstrip("+"))
    if not PHONE_MIN_DIGITS <= count <= PHONE_MAX_DIGITS:
        return None, (f"`{PHONE_NAMESPACE}` has {count} digits, and a phone number has {PHONE_MIN_DIGITS} to "
                      f"{PHONE_MAX_DIGITS}, so it is not a phone number")
    if digits.startswith("+0"):
        return None, (f"`{PHONE_NAMESPACE}` starts with +0, and no country code starts with 0, so it is not a phone "
                      "number")
    return (f"{digits};ext={extension.group('extension')}" if extension else digits), None


def phone_prefix(text: str) -> str:
    """The start of a phone number as typed, written as its canonical form starts (a search by prefix)."""
    return _without_separators(_without_tel(text))


def _without_tel(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).strip()
    return text[4:].strip() if text[:4].lower() == "tel:" else text


def _without_separators(text: str) -> str:
    digits = text.translate(_PHONE_SEPARATORS)
    return "+" + digits[2:] if digits.startswith("00") else digits


class _UnionFind:
    """Iterative, with union by size and path halving: no recursion limit, near-linear in the links."""

    def __init__(self) -> None:
        self.parent: dict = {}
        self.size: dict = {}

    def find(self, node):
        parent = self.parent
        if node not in parent:
            parent[node] = node
            self.size[node] = 1
            return node
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(self, a, b) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return
        if self.size[root_a] < self.size[root_b]:
            root_a, root_b = root_b, root_a
        self.parent[root_b] = root_a
        self.size[root_a] += self.size[root_b]


@dataclass
class StitchResult:
    """Which profile each identity belongs to after stitching, and what changed to get there."""

    profile_of: dict[IdentityKey, int]
    new_profiles: list[int] = field(default_factory=list)
    merges: list[tuple[int, int]] = field(default_factory=list)  # (merged away, kept)
    new_identities: list[tuple[str, str, int, bool]] = field(default_factory=list)


def _existing_owners(con: duckdb.DuckDBPyConnection, keys: list[IdentityKey]) -> dict[IdentityKey, int]:
    if not keys:
        return {}
    wanted = pd.DataFrame(keys, columns=["namespace", "id_value"])
    con.register("wanted_identities", wanted)
    rows = con.execute(
        "SELECT i.namespace, i.id_value, i.profile_id FROM identities i "
        "JOIN wanted_identities w USING (namespace, id_value)"
    ).fetchall()
    con.unregister("wanted_identities")
    return {(namespace, value): profile_id for namespace, value, profile_id in rows}


def stitch(
    con: duckdb.DuckDBPyConnection,
    record_identities: Iterable[list[IdentityKey]],
    primary_keys: set[IdentityKey],
) -> StitchResult:
    """Resolves each record's identities to a profile, creating and merging profiles inside ``con``'s transaction.

    ``record_identities`` holds, per distinct record, the identities it carries; ``primary_keys`` are those a
    record marked primary. The oldest profile of a linked group survives a merge.
    """
    groups = [list(dict.fromkeys(keys)) for keys in record_identities]
    all_keys = list(dict.fromkeys(key for keys in groups for key in keys))
    owners = _existing_owners(con, all_keys)

    components = _UnionFind()
    for keys in groups:
        for key in keys:
            components.find(("id",) + key)
        for other in keys[1:]:
            components.union(("id",) + keys[0], ("id",) + other)
    for key, profile_id in owners.items():
        components.union(("profile", profile_id), ("id",) + key)

    members: dict = {}
    for key in all_keys:
        members.setdefault(components.find(("id",) + key), []).append(key)

    result = StitchResult(profile_of={})
    next_profile = store.next_id(con, "profiles", "profile_id")
    for keys in members.values():
        existing = sorted({owners[key] for key in keys if key in owners})
        if existing:
            kept = existing[0]
            result.merges.extend((merged, kept) for merged in existing[1:])
        else:
            kept = next_profile
            next_profile += 1
            result.new_profiles.append(kept)
        for key in keys:
            result.profile_of[key] = kept
            if key not in owners:
                result.new_identities.append((key[0], key[1], kept, key in primary_keys))
    return result


def filled(first: str, second: str) -> str:
    """The SET list giving each of ``PROFILE_COLUMNS`` the value of relation ``first``, else that of ``second``
    (relation names of ours, never user input)."""
    return ", ".join(f"{column} = coalesce({first}.{column}, {second}.{column})" for column in PROFILE_COLUMNS)


def claim_profile_set(con: duckdb.DuckDBPyConnection) -> None:
    """Writes the one row that every load removing profiles and every run's swap write. Two such transactions that
    overlap cannot both commit (DuckDB and PostgreSQL both refuse the second writer of a row changed by a transaction
    it cannot see), and ``store.write`` starts the refused one over, now seeing the other's profiles or scores: a
    run never keeps results of profiles a load removed, and a load never misses the scores it must remove."""
    con.execute("INSERT OR REPLACE INTO profile_set_guard VALUES (1, current_timestamp)")


def apply_merges(con: duckdb.DuckDBPyConnection, merges: list[tuple[int, int]], batch_id: int) -> None:
    """Moves everything of each merged-away profile onto the profile it joins, then removes it."""
    if not merges:
        return
    frame = pd.DataFrame(merges, columns=["merged_id", "kept_id"])
    con.register("profile_merge_plan", frame)
    for table in ("identities", "events"):
        con.execute(
            f"UPDATE {table} SET profile_id = m.kept_id FROM profile_merge_plan m "
            f"WHERE {table}.profile_id = m.merged_id"
        )
    # A merged profile fills only the attributes the kept profile does not have.
    firsts = ", ".join(f"arg_min(p.{column}, p.profile_id) AS {column}" for column in PROFILE_COLUMNS)
    con.execute(
        f"UPDATE profiles SET {filled('profiles', 'src')} "
        f"FROM (SELECT m.kept_id, {firsts} FROM profile_merge_plan m JOIN profiles p ON p.profile_id = m.merged_id "
        "GROUP BY m.kept_id) src WHERE profiles.profile_id = src.kept_id"
    )
    _merge_json_attributes(con)
    # Scores of a merged-away profile described a customer who no longer exists on their own; the runs that held
    # them keep counts that agree with the scores left.
    con.execute("CREATE TEMP TABLE runs_losing_scores AS SELECT DISTINCT run_id FROM scores "
                "WHERE profile_id IN (SELECT merged_id FROM profile_merge_plan)")
    con.execute("DELETE FROM scores WHERE profile_id IN (SELECT merged_id FROM profile_merge_plan)")
    con.execute("DELETE FROM score_factors WHERE profile_id IN (SELECT merged_id FROM profile_merge_plan)")
    con.execute(
        """
        UPDATE runs SET profiles_scored = counted.scored, buckets = counted.buckets FROM (
            SELECT l.run_id, count(s.profile_id) AS scored, CAST(json_object(
                'high', count(s.profile_id) FILTER (WHERE s.bucket = 'high'),
                'medium', count(s.profile_id) FILTER (WHERE s.bucket = 'medium'),
                'low', count(s.profile_id) FILTER (WHERE s.bucket = 'low')) AS VARCHAR) AS buckets
            FROM runs_losing_scores l LEFT JOIN scores s USING (run_id) GROUP BY l.run_id
        ) counted WHERE runs.run_id = counted.run_id
        """
    )
    con.execute("DROP TABLE runs_losing_scores")
    attributes.move_on_merge(con)
    con.execute("DELETE FROM profiles WHERE profile_id IN (SELECT merged_id FROM profile_merge_plan)")
    con.execute(
        "INSERT INTO profile_merges (merged_profile_id, into_profile_id, batch_id) "
        "SELECT merged_id, kept_id, $batch FROM profile_merge_plan",
        {"batch": batch_id},
    )
    con.unregister("profile_merge_plan")


def normalise_stored_phone_numbers(con: duckdb.DuckDBPyConnection) -> None:
    """A schema upgrade, inside its transaction: the phone numbers a store holds as written, or under another
    spelling of the Phone namespace (Experience Platform's ``Phone_E.164``), in their canonical form under Phone
    (``phone_number``). Profiles whose numbers turn out to be one are one customer and merge as a load merges them;
    a stored value that is no phone number is left as it was (a load now refuses it)."""
    namespaces = [namespace for (namespace,) in con.execute("SELECT DISTINCT namespace FROM identities").fetchall()
                  if canonical_namespace(namespace) == PHONE_NAMESPACE]
    rows = con.execute("SELECT namespace, id_value, is_primary FROM identities WHERE list_contains(?, namespace)",
                       [namespaces]).fetchall()
    if not rows:
        return  # an empty store stays empty: a copy is refused a target holding any row
    # Claimed even with nothing to change: a run's swap must not keep scores of profiles merged here, and on
    # PostgreSQL a second replica upgrading at once, whose snapshot predates this one's commit, is refused for
    # writing the same row and finds the upgrade done (see store._migrate).
    claim_profile_set(con)
    canonical = {(namespace, value): phone_number(value)[0] for namespace, value, _ in rows}
    forms: dict[str, list[IdentityKey]] = {}
    for key, cleaned in canonical.items():
        if cleaned is not None and key != (PHONE_NAMESPACE, cleaned):
            forms.setdefault(cleaned, [(PHONE_NAMESPACE, cleaned)]).append(key)
    if not forms:
        return
    stitched = stitch(con, forms.values(), set())
    apply_merges(con, stitched.merges, UPGRADE_BATCH_ID)
    primary = {canonical[(namespace, value)] for namespace, value, is_primary in rows if is_primary}
    # Every stored form goes, the canonical one too when stored already: it comes back with its merged profile.
    con.register("replaced_phone_numbers", pd.DataFrame(
        [key for keys in forms.values() for key in keys], columns=["namespace", "id_value"]))
    con.register("canonical_phone_numbers", pd.DataFrame(
        [(PHONE_NAMESPACE, cleaned, stitched.profile_of[(PHONE_NAMESPACE, cleaned)], cleaned in primary)
         for cleaned in forms], columns=["namespace", "id_value", "profile_id", "is_primary"]))
    con.execute("DELETE FROM identities WHERE EXISTS (SELECT 1 FROM replaced_phone_numbers r "
                "WHERE r.namespace = identities.namespace AND r.id_value = identities.id_value)")
    con.execute("INSERT INTO identities SELECT namespace, id_value, profile_id, is_primary "
                "FROM canonical_phone_numbers")
    con.unregister("replaced_phone_numbers")
    con.unregister("canonical_phone_numbers")
    audit.record(con, UPGRADE_ACTOR, "merge", "identities", PHONE_NAMESPACE, {
        "numbers_rewritten": sum(len(keys) - 1 for keys in forms.values()),
        "profiles_merged": len(stitched.merges)})


def _merge_json_attributes(con: duckdb.DuckDBPyConnection) -> None:
    """Inside a merge: the kept profile's JSON attributes gain, key by key, those only the merged ones have (the
    kept profile's value wins, then the oldest merged profile's, as for the other attributes)."""
    rows = con.execute(
        "SELECT m.kept_id, p.profile_id, CAST(p.attributes AS VARCHAR) FROM ("
        "SELECT kept_id, merged_id AS profile_id FROM profile_merge_plan "
        "UNION SELECT DISTINCT kept_id, kept_id FROM profile_merge_plan) m JOIN profiles p USING (profile_id) "
        "WHERE p.attributes IS NOT NULL").fetchall()
    sources: dict[int, list[tuple[int, str]]] = {}
    for kept_id, profile_id, text in rows:
        sources.setdefault(kept_id, []).append((profile_id, text))
    merged = {}
    for kept_id, found in sources.items():
        if [profile_id for profile_id, _ in found] == [kept_id]:
            continue
        # Lowest precedence first: the newest merged profile, ..., the oldest, then the kept one.
        found.sort(key=lambda item: (item[0] == kept_id, -item[0]))
        merged[kept_id] = merge_json([json.loads(text) for _, text in found])
    if merged:
        con.register("merged_attributes", pd.DataFrame({"profile_id": list(merged), "attributes": list(merged.values())}))
        con.execute("UPDATE profiles SET attributes = m.attributes::JSON FROM merged_attributes m "
                    "WHERE profiles.profile_id = m.profile_id")
        con.unregister("merged_attributes")


def merge_json(objects: list[dict]) -> str | None:
    """JSON objects laid one over the other, the last one on top, as JSON text (None when there are none)."""
    if not objects:
        return None
    combined: dict = {}
    for item in objects:
        combined = _merge_patch(combined, item)
    return json.dumps(combined, ensure_ascii=False)


def _merge_patch(base, patch):
    """``patch`` laid over ``base``: objects merge key by key, any other value replaces."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return patch
    combined = dict(base)
    for key, value in patch.items():
        combined[key] = _merge_patch(combined.get(key), value)
    return combined
