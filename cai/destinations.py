"""Destinations: where segments are sent (a folder or S3 prefix, a webhook, a PostgreSQL table), their secrets, and
the three ways of handing members over."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import fsspec
import httpx
import pandas as pd

from cai import audit, privacy, store
from cai.errors import CaiError, NotFound, ValidationError

KINDS = ("folder", "s3", "webhook", "table")
FILE_FORMATS = ("csv", "parquet")
SIGNATURE_HEADER = "X-CAI-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_BATCH_SIZE = 500
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_ATTEMPTS = 4
DEFAULT_BACKOFF_S = 0.5
DEFAULT_TABLE = "cai_segment_members"
SECRETS_FILES = (Path.home() / ".streamlit" / "secrets.toml", Path(".streamlit") / "secrets.toml")
MAX_NAME_CHARS = 64


@dataclass(frozen=True)
class Destination:
    name: str
    kind: str
    target: str
    options: dict = field(default_factory=dict)
    destination_id: int | None = None

    def describe(self) -> str:
        if self.kind in ("folder", "s3"):
            return f"{self.options.get('format', 'csv').upper()} files under {self.target}"
        if self.kind == "webhook":
            return f"signed JSON batches to {self.target}"
        return f"rows of {self.options.get('table', DEFAULT_TABLE)} in {self.target}"


def lost_on_restart(db_path, destination: Destination) -> str | None:
    """Why the files ``destination`` writes may not last, or None: a store in PostgreSQL is how the app is deployed
    to survive restarts (Streamlit Community Cloud's containers start again on an empty disk), and a folder on the
    app's own machine is emptied by the same restart, though its deliveries stay recorded as sent."""
    if destination.kind != "folder" or not store.resolve(db_path).is_postgres:
        return None
    return (f"{destination.name} writes into {destination.target} on the app's own machine; when its container "
            "restarts (Streamlit Community Cloud's do), the files there are gone while the deliveries stay recorded "
            "as sent. Use an s3 or table destination, or a folder on a disk that outlives the container.")


def secret_variable(destination: str, key: str) -> str:
    return f"CAI_DESTINATION_{re.sub(r'[^A-Z0-9]+', '_', destination.upper())}_{key.upper()}"


def secret(destination: str, key: str) -> str | None:
    """``$CAI_DESTINATION_<NAME>_<KEY>``, else ``[cai.destinations.<name>] <key>`` in ``.streamlit/secrets.toml``
    (the project's, then the user's); never stored in the database."""
    variable = secret_variable(destination, key)
    if os.environ.get(variable):
        return os.environ[variable]
    for path in reversed(SECRETS_FILES):
        if path.is_file():
            section = tomllib.loads(path.read_text()).get("cai", {}).get("destinations", {}).get(destination, {})
            if section.get(key):
                return str(section[key])
    return None


def _required_secret(destination: Destination, key: str) -> str:
    value = secret(destination.name, key)
    if not value:
        raise CaiError(f"The destination {destination.name!r} needs its {key}: set "
                       f"{secret_variable(destination.name, key)}, or `{key}` under "
                       f"[cai.destinations.{destination.name}] in .streamlit/secrets.toml.")
    return value


def _validate(destination: Destination) -> Destination:
    name = (destination.name or "").strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValidationError(f"Give the destination a name of 1 to {MAX_NAME_CHARS} characters.")
    if destination.kind not in KINDS:
        raise ValidationError(f"A destination is a folder, s3, webhook or table, not {destination.kind!r}.")
    target = (destination.target or "").strip()
    parts = urlsplit(target)
    if parts.password or "token=" in parts.query.lower() or "password=" in parts.query.lower():
        raise ValidationError("Leave passwords and tokens out of the address: put them in .streamlit/secrets.toml "
                              "or an environment variable (see the README), so they are never stored or shown.")
    expected = {"s3": ("s3",), "webhook": ("http", "https"), "table": ("postgresql", "postgres")}
    if destination.kind in expected and parts.scheme not in expected[destination.kind]:
        examples = {"s3": "s3://bucket/prefix", "webhook": "https://example.com/hook",
                    "table": "postgresql://user@host:5432/database"}
        raise ValidationError(f"A {destination.kind} destination needs an address like {examples[destination.kind]}.")
    if destination.kind == "folder" and not target:
        raise ValidationError("Give the folder to write into.")
    file_format = destination.options.get("format", "csv")
    if destination.kind in ("folder", "s3") and file_format not in FILE_FORMATS:
        raise ValidationError("Files are written as csv or parquet.")
    table = destination.options.get("table", DEFAULT_TABLE)
    if destination.kind == "table" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", table):
        raise ValidationError("A table name has letters, digits and underscores, and starts with a letter.")
    return Destination(name, destination.kind, target, destination.options)


def create_destination(db_path: Path, destination: Destination, actor: str = "local") -> Destination:
    destination = _validate(destination)

    def work(con):
        if con.execute("SELECT count(*) FROM destinations WHERE name = ?", [destination.name]).fetchall()[0][0]:
            raise ValidationError(f"A destination named {destination.name!r} already exists. Choose another name.")
        destination_id = store.next_id(con, "destinations", "destination_id")
        con.execute("INSERT INTO destinations (destination_id, name, kind, target, options, created_by) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [destination_id, destination.name, destination.kind, destination.target,
                     json.dumps(destination.options, sort_keys=True), actor])
        audit.record(con, actor, "create", "destination", destination.name,
                     {"kind": destination.kind, "target": destination.target})
        return Destination(destination.name, destination.kind, destination.target, destination.options,
                           destination_id)

    return store.write(db_path, work)


def _row(row) -> Destination:
    return Destination(row[1], row[2], row[3], json.loads(row[4]), row[0])


def get_destination(db_path: Path, name: str) -> Destination:
    with store.connect(db_path) as con:
        rows = con.execute("SELECT destination_id, name, kind, target, options FROM destinations WHERE name = ?",
                           [name]).fetchall()
    if not rows:
        raise NotFound(f"There is no destination named {name!r}. Create it first (destinations create).")
    return _row(rows[0])


def list_destinations(db_path: Path) -> list[Destination]:
    with store.connect(db_path) as con:
        rows = con.execute("SELECT destination_id, name, kind, target, options FROM destinations "
                           "ORDER BY name").fetchall()
    return [_row(row) for row in rows]


# Files: a full snapshot per delivery, its manifest written last, so a reader who trusts only manifests never
# sees half a delivery.

def _filesystem(destination: Destination):
    options = {}
    if destination.kind == "s3":
        key, secret_key = secret(destination.name, "key"), secret(destination.name, "secret")
        if key and secret_key:
            options.update(key=key, secret=secret_key)
        if destination.options.get("endpoint_url"):
            options["endpoint_url"] = destination.options["endpoint_url"]
    return fsspec.core.url_to_fs(destination.target, **options)


def folder_name(segment: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", segment).strip("-.") or "segment"


def write_snapshot(destination: Destination, segment: str, run_id: int, frame: pd.DataFrame,
                   manifest: dict) -> str:
    """Writes ``<prefix>/<segment>/run-<id>/members.<format>``, then its ``manifest.json``, then ``latest.json``."""
    file_format = destination.options.get("format", "csv")
    buffer = io.BytesIO()
    if file_format == "parquet":
        frame.to_parquet(buffer, index=False)
    else:
        # A CSV is opened in spreadsheets too: no identity or other text from the data may run as a formula.
        privacy.spreadsheet_safe(frame).to_csv(buffer, index=False)
    data = buffer.getvalue()
    try:
        fs, root = _filesystem(destination)
        folder = f"{root.rstrip('/')}/{folder_name(segment)}/run-{run_id}"
        fs.makedirs(folder, exist_ok=True)
        file_name = f"members.{file_format}"
        with fs.open(f"{folder}/{file_name}", "wb") as out:
            out.write(data)
        manifest = {**manifest, "file": file_name, "format": file_format, "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(), "columns": list(frame.columns)}
        text = json.dumps(manifest, indent=2, default=str).encode()
        with fs.open(f"{folder}/manifest.json", "wb") as out:
            out.write(text)
        with fs.open(f"{root.rstrip('/')}/{folder_name(segment)}/latest.json", "wb") as out:
            out.write(json.dumps({**manifest, "folder": f"run-{run_id}"}, indent=2, default=str).encode())
    except (OSError, ValueError) as error:
        raise CaiError(f"Could not write to {destination.target}: {error}") from error
    return f"{destination.target.rstrip('/')}/{folder_name(segment)}/run-{run_id}"


# Webhooks: JSON batches, each signed and carrying an idempotency key, retried on 5xx and timeouts only.

def signature(secret_value: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret_value.encode(), body, hashlib.sha256).hexdigest()


def post_batch(destination: Destination, body: bytes) -> None:
    """POSTs one batch; a 5xx, timeout or broken connection is retried with exponential backoff, a 4xx is not."""
    signing_secret = _required_secret(destination, "secret")
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(signing_secret, body),
               IDEMPOTENCY_HEADER: hashlib.sha256(body).hexdigest()}
    attempts = int(destination.options.get("attempts", DEFAULT_ATTEMPTS))
    backoff = float(destination.options.get("backoff_s", DEFAULT_BACKOFF_S))
    timeout = float(destination.options.get("timeout_s", DEFAULT_TIMEOUT_S))
    problem = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            response = httpx.post(destination.target, content=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            problem = f"no answer within {timeout:g} s"
            continue
        except httpx.TransportError as error:
            problem = f"could not connect ({error})"
            continue
        if response.status_code < 300:
            return
        problem = f"HTTP {response.status_code}: {response.text[:200]}"
        if response.status_code < 500:
            raise CaiError(f"The webhook refused the delivery ({problem}); not retried. Check the address and "
                           "the shared secret.")
    raise CaiError(f"The webhook did not accept the delivery after {attempts} attempts ({problem}).")


# PostgreSQL tables, through DuckDB's postgres extension loaded from its pinned package (no network).

def postgres_connection(url: str, password: str | None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the PostgreSQL database at ``url`` attached as ``pg``."""
    if password:
        parts = urlsplit(url)
        url = parts._replace(netloc=f"{parts.username or ''}:{password}@{parts.hostname}"
                             f"{':' + str(parts.port) if parts.port else ''}").geturl()
    return store.attached(url, "pg")


def apply_to_table(destination: Destination, segment: str, run_id: int, added: pd.DataFrame,
                   removed_ids: list[str]) -> None:
    """Upserts the added members and deletes the removed ones in one PostgreSQL transaction."""
    table = destination.options.get("table", DEFAULT_TABLE)
    try:
        con = postgres_connection(destination.target, secret(destination.name, "password"))
    except CaiError as error:
        raise CaiError(f"Could not connect to {destination.target}: {error}") from None
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS pg.public.{table} (segment VARCHAR NOT NULL, "
                    "identity VARCHAR NOT NULL, run_id BIGINT NOT NULL, score DOUBLE, bucket VARCHAR, "
                    "probability DOUBLE, percentile INTEGER, updated_at TIMESTAMP NOT NULL, "
                    "PRIMARY KEY (segment, identity))")
        rows = added.reindex(columns=["identity", "score", "bucket", "probability", "percentile"])
        con.register("added_rows", rows)
        con.begin()
        con.execute(f"DELETE FROM pg.public.{table} WHERE segment = $segment AND "
                    "(list_contains($removed, identity) OR identity IN (SELECT identity FROM added_rows))",
                    {"segment": segment, "removed": removed_ids})
        con.execute(f"INSERT INTO pg.public.{table} SELECT $segment, identity, $run, score, bucket, probability, "
                    "percentile, now()::TIMESTAMP FROM added_rows", {"segment": segment, "run": run_id})
        con.commit()
    except duckdb.Error as error:
        raise CaiError(f"Could not update {table} in {destination.target}: {str(error).splitlines()[0]}") from error
    finally:
        con.close()
