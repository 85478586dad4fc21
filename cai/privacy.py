"""Masking of direct identifiers (emails, phone numbers, postal addresses) for people allowed to view but not to see
identities, and neutralising of spreadsheet formulas in CSV exports and of control sequences in terminal output.

A value is personal by what it is, wherever it sits: any email address, and any phone number written as one (with a
leading ``+`` or as ``(555) 123-4567``), inside any text. A value is also personal by where it came from: everything
in an identity namespace, column or JSON attribute whose name says it holds contact details (``Email``,
``EmailAddress``, ``Phone_E.164``, ``mobile``, ``tel``, ``homeAddress``, ``street1``, ``postalCode`` ...), whatever
its shape. A postal address has no shape of its own, so it is found only by such a name."""

from __future__ import annotations

import json
import re

import pandas as pd

# Names in English and in the words files from elsewhere use (Telefon, teléfono, celular, móvil, courriel, correo).
_CONTACT_NAME = re.compile(r"mail|phone|mobile|msisdn|whatsapp|fax|address|street|postal|post_?code|zip_?code"
                           r"|telefon|tel[eé]fono|celular|m[oó]vil|courriel|correo"
                           r"|(^|[^a-z])(tel|cell|sms|zip)([^a-z]|$)", re.IGNORECASE)
# An address as it is written, or with its ``@`` in a form a screen still shows as one: percent-encoded in a link
# (``?email=jane%40doe.com``, twice: ``%2540``), an HTML entity (``&#64;``), the fullwidth or small at sign, or
# spelled out (``jane (at) doe.com``, whose domain must then hold a dot, as ``meet (at) noon`` is no address).
_OTHER_AT = r"%(?:25)?40|&#0*64;|&#[xX]0*40;|&commat;|" + "[\uff20\ufe6b]"
_SPELLED_AT = r" ?[(\[]at[)\]] ?"
_AT_SIGN = re.compile(f"@|{_OTHER_AT}|{_SPELLED_AT}", re.IGNORECASE)
# An address cut short right after its ``@`` (a message quoting the first 40 characters of a value) is one too.
_EMAIL_TEXT = (r"[^\s@:;,'\"<>()\[\]{}]+@(?:[^\s@:;,'\"<>()\[\]{}]+|$|['\"…])"
               f"|[\\w.+-]+(?:{_OTHER_AT})[\\w.-]+|(?i:[\\w.+-]+{_SPELLED_AT}[\\w-]+(?:\\.[\\w-]+)+)")
# A number with its country code (``+44 7700 900123``, ``+44/7700/900123``, ``%2B44...`` in a link,
# ``0044 7700 900123``), in the North American shapes (``(212) 555-0199``, ``212-555-0199``, ``212 555 0199``), or
# grouped after a trunk ``0`` (``07700 900123``, ``030 1234 5678``, ``06 12 34 56 78``): written so, digits are a
# number to call; run together they may as well be an account number, and are left alone.
_PHONE_TEXT = (r"(?:\+|%2[bB])\d[\d ()./-]{5,}\d|\b00[1-9]\d{0,2}[ ()./-][\d ()./-]{4,}\d"
               r"|\(\d{3}\) ?\d{3}[ .-]\d{4}|\b\d{3}[ .-]\d{3}[ .-]\d{4}\b"
               r"|\b0\d{2,4}[ /-]\d{3,4}[ -]?\d{3,4}\b|\b0\d(?:[ .-]\d{2}){4}\b")
_EMAIL = re.compile(_EMAIL_TEXT)
# Characters a screen does not show (zero-width spaces and joiners, the soft hyphen, the byte-order mark) and those
# that reorder what it shows (bidirectional embeddings, overrides and isolates): inside an address or a number they
# would hide it from the patterns above while the screen shows it whole, or show its hidden part where the masked
# part should be.
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_PHONE = re.compile(_PHONE_TEXT)
_LETTER = re.compile(r"[^\W\d_]")
# A number after a label naming contact details (``Mobile: 07700 900456``, ``Phone_E.164: 15550001111``,
# ``?tel=0770...``, ``{'mobile': '0770...'}`` as Python writes a dict): bare digits, but the label says what they are.
_LABELLED_NUMBER = re.compile(r"([\w.]+)(['\"]?\s*[:=]\s*['\"]?)((?:\+|%2[bB])?\d[\d ()./-]{3,}\d)")
# The same shapes for DuckDB's regexp_matches (RE2), so SQL can leave personal-looking values out of a search,
# matched once INVISIBLE_PATTERN's characters are taken out (as ``visible`` does).
PERSONAL_VALUE_PATTERN = f"{_EMAIL_TEXT}|{_PHONE_TEXT}"
INVISIBLE_PATTERN = _INVISIBLE.pattern
# Identity namespaces of ids a system gives (a browser's ECID, a CRM's or a loyalty programme's account number),
# which reach nobody; the app's own, so a viewer may search them by prefix and see them whole.
PSEUDONYMOUS_NAMESPACES = ("ECID", "CRMID", "LoyaltyID")
# Keys of a frame that name what the value beside them is (an identity's namespace, an attribute's name).
_KEY_COLUMNS = ("namespace", "attribute")
_VALUE_COLUMNS = ("identity", "id_value", "value")
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Where a spreadsheet may start a cell inside one text: at its start, after a ';' or a line break, and past the
# spaces an import may trim (Google Sheets does; the fullwidth signs are formulas to Excel in East Asian locales).
_FORMULA_STARTS = re.compile(
    r"(?:^|(?<=[;\n\r]))(?=[ \u00a0\u3000]*[" + re.escape("".join(FORMULA_LEADS)) + "])")


def is_contact_name(name: str) -> bool:
    """Whether a namespace, column or attribute named ``name`` holds contact details (emails, phone numbers)."""
    return bool(_CONTACT_NAME.search(str(name)))


def is_contact_namespace(namespace: str) -> bool:
    """Whether the identities of ``namespace`` are to be masked whole: one named for contact details, and any the app
    does not know to hold system ids only, as a namespace of one's own may be named anything (``Kontakt``, ``Line``)
    and hold phone numbers as bare digits, which no pattern tells from an account number."""
    return is_contact_name(namespace) or namespace not in PSEUDONYMOUS_NAMESPACES


def looks_personal(value: str) -> bool:
    """Whether ``value`` holds an email or phone number that ``mask_text`` masks."""
    return mask_text(value) != visible(value)


def mask_email(value: str) -> str:
    """``hbirkenshawa@businessweek.com`` → ``h•••@businessweek.com``: the domain stays, as it tells a business
    customer from a private one without naming anybody."""
    at = _AT_SIGN.search(value)
    if at is None or not value[at.end():]:
        return "•••"
    return f"{value[:1]}•••{at.group(0)}{value[at.end():]}"


def visible(text: str) -> str:
    """``text`` without the characters a screen does not show or that reorder what it shows."""
    return _INVISIBLE.sub("", text)


def mask_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return f"•••{digits[-2:]}" if len(digits) > 2 else "•••"


def mask_contact(value: str) -> str:
    """A value from a contact namespace or column: all of it is personal, whatever it looks like. A value holding
    several addresses (``a@x.com; b@y.com``, a list) has each of them masked, not only the first; a JSON object (a
    postal address's lines) has each of its values masked."""
    value = visible(value)
    parsed = _json_container(value)
    if parsed is not None:
        return json.dumps(_mask_contact_json(parsed), ensure_ascii=False)
    if len(_EMAIL.findall(value)) > 1:
        return mask_text(value)
    if _AT_SIGN.search(value):
        return mask_email(value)
    # A number keeps its last two digits, as phone numbers do; a street line keeps nothing.
    return "•••" if _LETTER.search(value) else mask_phone(value)


def _mask_contact_json(data):
    """Every value under a contact key, however deeply it is nested (a list of addresses, an object of them)."""
    if isinstance(data, dict):
        return {mask_text(key): _mask_contact_json(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_mask_contact_json(item) for item in data]
    if data is None or isinstance(data, bool):
        return data
    return mask_contact(str(data))


def _mask_json(data):
    if isinstance(data, dict):
        # Keys are data too: an object of referrals or contacts keyed by their addresses.
        return {mask_text(key): _mask_contact_json(value) if is_contact_name(key) else _mask_json(value)
                for key, value in data.items()}
    if isinstance(data, list):
        return [_mask_json(item) for item in data]
    return mask_text(data) if isinstance(data, str) else data


def _json_container(text: str):
    """``text`` read as a JSON object or array, else None."""
    stripped = text.strip()
    if stripped[:1] in "{[" and stripped[-1:] in "}]":
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    return None


def mask_text(text: str) -> str:
    """Masks every email and every phone number inside free text (a name, a file name, a batch error quoting a
    rejected value); in a JSON object also every value under a contact key. Bare digits are left alone: they are
    dates, amounts and ids far more often than phone numbers."""
    text = visible(text)
    parsed = _json_container(text)
    if parsed is not None:
        return json.dumps(_mask_json(parsed), ensure_ascii=False)
    text = _EMAIL.sub(lambda match: mask_email(match.group(0)), text)
    text = _LABELLED_NUMBER.sub(_masked_labelled_number, text)
    return _PHONE.sub(lambda match: mask_phone(match.group(0)), text)


def _masked_labelled_number(match: re.Match) -> str:
    label, separator, number = match.groups()
    return label + separator + (mask_phone(number) if is_contact_name(label) else number)


def mask_identity(namespace: str, value: str) -> str:
    return mask_contact(value) if is_contact_namespace(namespace) else mask_text(value)


def _mask_beside(key_column: str, key: str, value: str) -> str:
    if key_column == "namespace":
        return mask_identity(key, value)
    return mask_contact(value) if is_contact_name(key) else mask_text(value)


def mask_value(value):
    """Any cell: text is masked where it holds an email or phone number, other values are returned as they are."""
    return mask_text(value) if isinstance(value, str) else value


def mask_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with emails and phone numbers masked: whole columns named for contact details, values beside a
    ``namespace`` or ``attribute`` that names contact details, and any email or phone number in any other text or
    header."""
    masked = frame.copy()
    key_column = next((column for column in _KEY_COLUMNS if column in masked.columns), None)
    for column in masked.columns:
        values = masked[column]
        if is_contact_name(column):
            masked[column] = values.map(lambda v: mask_contact(v) if isinstance(v, str) else v)
        elif key_column and column in _VALUE_COLUMNS:
            masked[column] = [_mask_beside(key_column, str(key), v) if isinstance(v, str) else mask_value(v)
                              for key, v in zip(frame[key_column], values)]
        elif _text_cells(values):
            masked[column] = values.astype(object).map(mask_value)
    # Headers too: a table pivoted by a value from the data (an event type) is headed by it.
    return masked.rename(columns=mask_value)


def _text_cells(values: pd.Series) -> bool:
    """Whether a column can hold text: any but numbers, booleans and dates (categories and objects included)."""
    return not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
                or pd.api.types.is_datetime64_any_dtype(values))


def _formula_free(value):
    if not isinstance(value, str):
        return value
    return _FORMULA_STARTS.sub("'", value)


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells and headers cannot run as spreadsheet formulas: a cell starting with ``=``, ``+``,
    ``-``, ``@`` (or their fullwidth forms), a tab or a carriage return, after spaces or not, gets a leading
    apostrophe (OWASP's rule for CSV injection), and so does each part of a cell after a ``;`` or a line break: a
    spreadsheet set to a locale whose list separator is ``;`` (most of Europe) splits a comma-separated file there,
    quotes or not, and each part becomes a cell of its own (two emails of one member are exported as
    ``a@x.com;b@y.com``). Numbers are untouched."""
    safe = frame.rename(columns=_formula_free)
    for column in safe.columns:
        if _text_cells(safe[column]):
            safe[column] = safe[column].astype(object).map(_formula_free)
    return safe


# Every C0 and C1 control character but the tab and the line feed: ESC and CSI start the sequences by which a
# terminal makes a link (OSC 8), rewrites the screen or renames its window; a carriage return overwrites a line.
# And the bidirectional controls, by which a terminal that lays out right-to-left text shows a file name or a
# line in an order other than its own (``invoice\u202egpj.exe`` read as ``invoiceexe.jpg``).
_TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_text(text: str) -> str:
    """``text`` for a terminal: control characters from the data are written as escapes (``\\x1b``, ``\\u202e``),
    not obeyed."""
    return _TERMINAL_CONTROLS.sub(lambda match: _escape(match.group(0)), text)


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code <= 0xff else f"\\u{code:04x}"


def terminal_json(text: str) -> str:
    """JSON text for a terminal: the control characters ``json.dumps`` leaves raw (DEL and C1) as JSON's own
    ``\\u`` escapes, so the text stays JSON (``\\x85`` would not be) and nothing is left for the terminal to obey."""
    return _TERMINAL_CONTROLS.sub(lambda match: f"\\u{ord(match.group(0)):04x}", text)


class TerminalSafe:
    """A text stream (``sys.stdout``) through which no control sequence from the data reaches the terminal."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(terminal_text(text))

    def __getattr__(self, name):
        return getattr(self._stream, name)
