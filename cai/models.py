"""Fitted models kept in the store, signed: their bytes are unpickled only when the HMAC made with the app's key
matches, so whoever can write the database still cannot make the app run code."""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import duckdb
import joblib
import sklearn

from cai import store

log = logging.getLogger(__name__)

KEY_FILE_ENV_VAR = "CAI_MODEL_KEY_FILE"


@dataclass(frozen=True)
class SignedModel:
    cache_key: str
    payload: bytes
    signature: str


def _key_file() -> Path:
    configured = os.environ.get(KEY_FILE_ENV_VAR)
    if configured:
        return Path(configured)
    config_home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config_home) / "cai" / "model-key"


def _account_key() -> bytes:
    """This account's own random key, made on first use and readable only by it (see the README on model keys)."""
    path = _key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
        # Two processes making a key at once: the first one's key wins, and the second reads it.
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        temporary.unlink()
    return path.read_text().strip().encode()


def signing_key(target: store.Store) -> bytes:
    """The configured ``[cai] model_key`` / ``$CAI_MODEL_KEY``, else this account's key file."""
    return target.model_key.encode() if target.model_key else _account_key()


def _signature(key: bytes, cache_key: str, sklearn_version: str, payload: bytes) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in (cache_key.encode(), b"\0", sklearn_version.encode(), b"\0", payload):
        mac.update(part)
    return mac.hexdigest()


def sign(location, cache_key: str, model: object) -> SignedModel:
    """The model's bytes and their signature, ready to ``save`` inside a run's final transaction."""
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    payload = buffer.getvalue()
    target = store.resolve(location)
    return SignedModel(cache_key, payload,
                       _signature(signing_key(target), cache_key, sklearn.__version__, payload))


def save(con: duckdb.DuckDBPyConnection, model: SignedModel) -> None:
    """Stores (or replaces) a signed model inside the caller's transaction."""
    con.execute("DELETE FROM models WHERE cache_key = ?", [model.cache_key])
    con.execute("INSERT INTO models (cache_key, model, signature, sklearn_version) VALUES (?, ?, ?, ?)",
                [model.cache_key, model.payload, model.signature, sklearn.__version__])


def load(location, cache_key: str) -> tuple[object | None, str]:
    """The stored model for ``cache_key`` and a note on what happened; never unpickles bytes whose signature does
    not match this app's key."""
    target = store.resolve(location)
    with store.connect(target) as con:
        rows = con.execute("SELECT model, signature, sklearn_version FROM models WHERE cache_key = ?",
                           [cache_key]).fetchall()
    if not rows:
        return None, "no cached model"
    payload, signature, version = rows[0]
    if version != sklearn.__version__:
        return None, f"cached model was written by scikit-learn {version}; retrained"
    expected = _signature(signing_key(target), cache_key, version, bytes(payload))
    if not hmac.compare_digest(expected, signature):
        log.warning("The stored model %s does not carry this app's signature; refusing to load it.", cache_key[:12])
        note = "cached model failed its signature check and was not loaded; retrained"
        return None, note if target.model_key else f"{note}. {store.NO_MODEL_KEY}"
    return joblib.load(io.BytesIO(bytes(payload))), "reused cached model"
