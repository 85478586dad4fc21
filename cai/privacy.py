"""Masking of direct identifiers (emails and phone numbers) for people allowed to view but not to see identities."""

from __future__ import annotations

import re

import pandas as pd

MASKED_NAMESPACES = {"email", "phone"}
_EMAIL = re.compile(r"([^\s@:;,]+)@([^\s@:;,]+)")
_LABELLED_PHONE = re.compile(r"(Phone:\s*)(\+?[\d ()./-]+\d)", re.IGNORECASE)


def mask_email(value: str) -> str:
    """``hbirkenshawa@businessweek.com`` → ``h•••@businessweek.com``: the domain stays, as it tells a business
    customer from a private one without naming anybody."""
    local, _, domain = value.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def mask_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return f"•••{digits[-2:]}" if len(digits) > 2 else "•••"


def mask_text(text: str) -> str:
    """Masks every email, and every phone number labelled ``Phone:``, inside free text such as ``Email: a@b.com``
    (unlabelled digits are left alone: they are dates, amounts and ids far more often than phone numbers)."""
    text = _EMAIL.sub(lambda match: mask_email(match.group(0)), text)
    return _LABELLED_PHONE.sub(lambda match: match.group(1) + mask_phone(match.group(2)), text)


def mask_identity(namespace: str, value: str) -> str:
    if namespace.lower() == "email":
        return mask_email(value)
    if namespace.lower() == "phone":
        return mask_phone(value)
    return value


def mask_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with emails and phone numbers masked: columns named after those namespaces, identity columns beside
    a ``namespace`` column, and any other text column that contains one."""
    masked = frame.copy()
    for column in masked.columns:
        values = masked[column]
        if column.lower() in MASKED_NAMESPACES:
            masked[column] = values.map(lambda v: mask_identity(column, v) if isinstance(v, str) else v)
        elif column in ("identity", "id_value") and "namespace" in masked.columns:
            masked[column] = [mask_identity(ns, v) if isinstance(v, str) else v
                              for ns, v in zip(masked["namespace"], values)]
        elif pd.api.types.is_string_dtype(values) or values.dtype == object:
            masked[column] = values.map(lambda v: mask_text(v) if isinstance(v, str) else v)
    return masked
