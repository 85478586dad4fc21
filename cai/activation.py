"""Activation: a segment sent to a destination, kept fresh after every successful run, each delivery recorded."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from cai import audit, destinations, segments, store
from cai.destinations import Destination
from cai.errors import CaiError, NotFound, ValidationError

log = logging.getLogger(__name__)

# identity choice -> (namespace, hashed): ad platforms' customer-match uploads expect a lower-cased email's SHA-256.
IDENTITIES = {"crmid": ("CRMID", False), "email": ("Email", False), "email_sha256": ("Email", True),
              "ecid": ("ECID", False)}
OPTIONAL_COLUMNS = ("score", "bucket", "probability", "percentile")
SUCCESS, FAILED, SENDING, SUPERSEDED = "success", "failed", "sending", "superseded"
# What a delivery cut off by its process or machine stopping says (recover_interrupted_deliveries).
INTERRUPTED = "It was cut off: its process or machine stopped before it finished (a restart, say)."

_sending_here: set[int] = set()


@dataclass
class DeliveryResult:
    segment: str
    destination: str
    run_id: int | None
    status: str
    members: int = 0
    added: int = 0
    removed: int = 0
    location: str | None = None
    error: str | None = None

    def line(self) -> str:
        head = f"{self.segment} -> {self.destination} (run {self.run_id}): {self.status}"
        if self.status == SUCCESS:
            return f"{head}, {self.members:,} members (+{self.added:,} -{self.removed:,})" + (
                f" at {self.location}" if self.location else "")
        return f"{head}. {self.error}" if self.error else head

    def as_dict(self) -> dict:
        return asdict(self)


def activate(db_path: Path, segment: str, destination: str, identity: str = "crmid",
             columns: tuple[str, ...] = ("score", "bucket"), actor: str = "local") -> int:
    """Connects a segment to a destination; it is delivered now (by the caller) and after every successful run."""
    if identity not in IDENTITIES:
        raise ValidationError(f"Send members by {', '.join(IDENTITIES)}, not {identity!r}.")
    unknown = [column for column in columns if column not in OPTIONAL_COLUMNS]
    if unknown:
        raise ValidationError(f"Optional columns are {', '.join(OPTIONAL_COLUMNS)}; {', '.join(unknown)} is not one.")
    target = destinations.get_destination(db_path, destination)
    segment_id = segments.get_segment(db_path, segment)["segment_id"]

    def work(con):
        if con.execute("SELECT count(*) FROM activations WHERE segment_id = ? AND destination_id = ?",
                       [segment_id, target.destination_id]).fetchall()[0][0]:
            raise ValidationError(f"{segment!r} is already activated to {destination!r}.")
        activation_id = store.next_id(con, "activations", "activation_id")
        con.execute("INSERT INTO activations (activation_id, segment_id, destination_id, identity, columns, "
                    "created_by) VALUES (?, ?, ?, ?, ?, ?)",
                    [activation_id, segment_id, target.destination_id, identity, json.dumps(list(columns)), actor])
        audit.record(con, actor, "activate", "segment", segment,
                     {"destination": destination, "identity": identity, "columns": list(columns)})
        return activation_id

    return store.write(db_path, work)


def forget_segments(con, segment_ids: list[int]) -> None:
    """Drops the activations of deleted segments, inside the deleting transaction, so a later segment that gets
    the same id does not inherit them (their deliveries stay in the audit log)."""
    activations = "SELECT activation_id FROM activations WHERE list_contains($ids, segment_id)"
    for table in ("delivered_members", "deliveries"):
        con.execute(f"DELETE FROM {table} WHERE activation_id IN ({activations})", {"ids": segment_ids})
    con.execute("DELETE FROM activations WHERE list_contains($ids, segment_id)", {"ids": segment_ids})


def list_activations(db_path: Path, segment: str | None = None) -> pd.DataFrame:
    """Every activation (or one segment's) with its destination, its instance's current run and its latest
    delivery."""
    return store.query_df(
        db_path,
        """
        SELECT a.activation_id, s.name AS segment, d.name AS destination, d.kind, a.identity,
               array_to_string(CAST(a.columns AS VARCHAR[]), ',') AS columns, a.active,
               i.current_run_id AS current_run, l.run_id AS last_run, l.status AS last_status,
               l.finished_at AS last_delivered_at, l.members, l.added, l.removed, l.error
        FROM activations a JOIN segments s USING (segment_id) JOIN destinations d USING (destination_id)
        JOIN instances i ON i.instance_id = s.instance_id
        LEFT JOIN (SELECT * FROM deliveries QUALIFY row_number() OVER (PARTITION BY activation_id
                                                                       ORDER BY delivery_id DESC) = 1) l
               USING (activation_id)
        WHERE $segment IS NULL OR s.name = $segment
        ORDER BY s.name, d.name
        """,
        {"segment": segment},
    )


def delivery_history(db_path: Path, segment: str, limit: int = 100) -> pd.DataFrame:
    """A segment's deliveries, newest first."""
    return store.query_df(
        db_path,
        """
        SELECT e.started_at, d.name AS destination, e.run_id, e.status, e.mode, e.members, e.added, e.removed,
               e.attempts, e.location, e.error
        FROM deliveries e JOIN activations a USING (activation_id) JOIN segments s USING (segment_id)
        JOIN destinations d USING (destination_id)
        WHERE s.name = $segment ORDER BY e.delivery_id DESC LIMIT $limit
        """,
        {"segment": segment, "limit": limit},
    )


def _activation(con, activation_id: int) -> dict:
    rows = con.execute(
        "SELECT a.activation_id, a.identity, a.columns, s.name, d.name, i.current_run_id "
        "FROM activations a JOIN segments s USING (segment_id) JOIN destinations d USING (destination_id) "
        "JOIN instances i ON i.instance_id = s.instance_id WHERE a.activation_id = ?", [activation_id]).fetchall()
    if not rows:
        raise NotFound(f"There is no activation {activation_id}.")
    keys = ["activation_id", "identity", "columns", "segment", "destination", "run_id"]
    activation = dict(zip(keys, rows[0]))
    activation["columns"] = json.loads(activation["columns"])
    return activation


def _members(con, activation: dict) -> pd.DataFrame:
    """The segment's members in the run being delivered, one row per member who has the chosen identity."""
    rule = segments.get_segment_rule(con, activation["segment"])
    sql, params = segments.members_query(rule, activation["run_id"])
    namespace, hashed = IDENTITIES[activation["identity"]]
    params["namespace"] = namespace
    identity = "sha256(lower(trim(i.id_value)))" if hashed else "i.id_value"
    return con.execute(
        f"""
        WITH m AS ({sql}),
             i AS (SELECT profile_id, arg_min(id_value, (NOT is_primary, id_value)) AS id_value FROM identities
                   WHERE namespace = $namespace GROUP BY profile_id)
        SELECT m.profile_id, {identity} AS identity, round(m.score, 2) AS score, m.bucket,
               m.probability, m.percentile
        FROM m JOIN i USING (profile_id) ORDER BY identity
        """,
        params,
    ).df()


def _claim(con, activation: dict, mode: str, postgres: bool) -> int | None:
    """Marks the (activation, run) delivery as being sent by this process; None when it is done or in flight here
    or on another machine (the same liveness rule as runs)."""
    rows = con.execute("SELECT delivery_id, status, pid, host FROM deliveries WHERE activation_id = ? AND run_id = ?",
                       [activation["activation_id"], activation["run_id"]]).fetchall()
    if rows:
        delivery_id, status, pid, host = rows[0]
        if status == SUCCESS or (status == SENDING and _being_sent(con, delivery_id, pid, host, postgres)):
            return None
        con.execute("UPDATE deliveries SET status = ?, attempts = attempts + 1, pid = ?, host = ?, error = NULL, "
                    "started_at = current_timestamp, heartbeat_at = current_timestamp, finished_at = NULL "
                    "WHERE delivery_id = ?", [SENDING, os.getpid(), store.this_host(), delivery_id])
        return delivery_id
    delivery_id = store.next_id(con, "deliveries", "delivery_id")
    con.execute("INSERT INTO deliveries (delivery_id, activation_id, run_id, status, mode, added, removed, pid, host, "
                "heartbeat_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?, current_timestamp)",
                [delivery_id, activation["activation_id"], activation["run_id"], SENDING, mode, os.getpid(),
                 store.this_host()])
    return delivery_id


def _claim_here(db_path: Path, activation: dict, mode: str, postgres: bool) -> int | None:
    """``_claim`` in a transaction of its own, the delivery counted as sent by this process before the claim
    commits, so that no recovery in between takes it for one whose process died."""
    return store.claim(db_path, lambda con: _claim(con, activation, mode, postgres), _sending_here)


def _being_sent(con, delivery_id: int, pid: int | None, host: str | None, postgres: bool) -> bool:
    return store.worker_alive(con, "deliveries", "delivery_id", delivery_id, pid, host, postgres,
                              _sending_here.__contains__)


def recover_interrupted_deliveries(con, postgres: bool) -> int:
    """Inside the caller's transaction, marks deliveries whose process (or, on PostgreSQL, machine) is gone as failed
    with ``INTERRUPTED``, so the page says what happened instead of "sending" for good; the next delivery of their
    activation sends them again (a webhook's after its last acknowledged batch)."""
    stale = [delivery_id for delivery_id, pid, host in con.execute(
        "SELECT delivery_id, pid, host FROM deliveries WHERE status = ?", [SENDING]).fetchall()
        if not _being_sent(con, delivery_id, pid, host, postgres)]
    for delivery_id in stale:
        con.execute("UPDATE deliveries SET status = ?, pid = NULL, finished_at = current_timestamp, error = ? "
                    "WHERE delivery_id = ?", [FAILED, INTERRUPTED, delivery_id])
    return len(stale)


def _diff(current: pd.DataFrame, previous: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Members to add (new, or with a new identity value) and identity values to remove."""
    keys = ["profile_id", "identity"]
    merged = current.merge(previous, on=keys, how="outer", indicator=True)
    added = current.merge(merged.loc[merged["_merge"] == "left_only", keys], on=keys)
    removed = merged.loc[merged["_merge"] == "right_only", keys].sort_values("identity")
    return added, removed


def _record(db_path: Path, delivery_id: int, status: str, **fields) -> None:
    assignments = ", ".join(f"{name} = ?" for name in fields)
    store.write(db_path, lambda con: con.execute(
        f"UPDATE deliveries SET status = ?, pid = NULL, finished_at = current_timestamp"
        f"{', ' if fields else ''}{assignments} WHERE delivery_id = ?", [status, *fields.values(), delivery_id]))


def _acknowledge(db_path: Path, delivery_id: int, activation_id: int, added: pd.DataFrame,
                 removed: pd.DataFrame) -> None:
    """What the destination now holds, in the same transaction as the delivery's counts."""
    def work(con):
        con.register("acked_added", added[["profile_id", "identity"]])
        con.register("acked_removed", removed[["profile_id", "identity"]])
        con.execute("DELETE FROM delivered_members WHERE activation_id = $a AND (profile_id, identity_value) IN "
                    "(SELECT (profile_id, identity) FROM acked_removed)", {"a": activation_id})
        con.execute("INSERT OR REPLACE INTO delivered_members SELECT $a, profile_id, identity FROM acked_added",
                    {"a": activation_id})
        con.execute("UPDATE deliveries SET added = added + ?, removed = removed + ? WHERE delivery_id = ?",
                    [len(added), len(removed), delivery_id])

    store.write(db_path, work)


def _send_webhook(db_path: Path, destination: Destination, activation: dict, delivery_id: int,
                  added: pd.DataFrame, removed: pd.DataFrame) -> None:
    """Batches of added, then of removed members; each acknowledged batch is recorded at once, so a retry sends
    only the rest, and an unacknowledged one goes again with the same body and idempotency key."""
    size = int(destination.options.get("batch_size", destinations.DEFAULT_BATCH_SIZE))
    fields = ["identity", *activation["columns"]]
    head = {"segment": activation["segment"], "destination": destination.name, "run_id": activation["run_id"],
            "identity_type": activation["identity"]}
    for start in range(0, len(added), size):
        chunk = added.iloc[start:start + size]
        body = {**head, "added": json.loads(chunk[fields].to_json(orient="records")), "removed": []}
        destinations.post_batch(destination, json.dumps(body, sort_keys=True).encode())
        _acknowledge(db_path, delivery_id, activation["activation_id"], chunk, removed.iloc[0:0])
    for start in range(0, len(removed), size):
        chunk = removed.iloc[start:start + size]
        body = {**head, "added": [], "removed": [{"identity": value} for value in chunk["identity"]]}
        destinations.post_batch(destination, json.dumps(body, sort_keys=True).encode())
        _acknowledge(db_path, delivery_id, activation["activation_id"], added.iloc[0:0], chunk)


def _score_date(con, run_id: int) -> str:
    return con.execute("SELECT CAST(as_of AS VARCHAR) FROM runs WHERE run_id = ?", [run_id]).fetchall()[0][0]


def deliver(db_path: Path, activation_id: int, actor: str = "local") -> DeliveryResult:
    """Delivers the segment of the instance's latest successful run, unless that run was already delivered."""
    with store.connect(db_path) as con:
        activation = _activation(con, activation_id)
    destination = destinations.get_destination(db_path, activation["destination"])
    result = DeliveryResult(activation["segment"], destination.name, activation["run_id"], "up to date")
    if activation["run_id"] is None:
        result.status, result.error = FAILED, "The segment's instance has no successful run yet."
        return result
    mode = "diff" if destination.kind in ("webhook", "table") else "snapshot"
    postgres = store.resolve(db_path).is_postgres
    delivery_id = _claim_here(db_path, activation, mode, postgres)
    if delivery_id is None:
        return result
    # Counted as sent here until its outcome is committed: a page's recovery in another session of this process
    # would otherwise take it, in between, for a delivery whose process died, and a second sender could claim it.
    try:
        return _send(db_path, activation, destination, delivery_id, result, actor)
    finally:
        _sending_here.discard(delivery_id)


def _send(db_path: Path, activation: dict, destination: Destination, delivery_id: int, result: DeliveryResult,
          actor: str) -> DeliveryResult:
    activation_id = activation["activation_id"]
    store.start_heartbeat(db_path, "deliveries", "delivery_id", delivery_id, SENDING)
    try:
        with store.connect(db_path) as con:
            current = _members(con, activation)
            previous = con.execute("SELECT profile_id, identity_value AS identity FROM delivered_members "
                                   "WHERE activation_id = ?", [activation_id]).df()
            score_date = _score_date(con, activation["run_id"])
        added, removed = _diff(current, previous)
        location = None
        if destination.kind == "webhook":
            _send_webhook(db_path, destination, activation, delivery_id, added, removed)
        else:
            if destination.kind == "table":
                destinations.apply_to_table(destination, activation["segment"], activation["run_id"],
                                            added.assign(**{c: None for c in OPTIONAL_COLUMNS
                                                            if c not in activation["columns"]}),
                                            removed["identity"].tolist())
            else:
                location = destinations.write_snapshot(
                    destination, activation["segment"], activation["run_id"],
                    current[["identity", *activation["columns"]]].rename(columns={"identity": activation["identity"]}),
                    {"segment": activation["segment"], "run_id": activation["run_id"], "score_date": score_date,
                     "identity": activation["identity"], "members": len(current), "added": len(added),
                     "removed": len(removed), "written_at": dt.datetime.now(dt.UTC).isoformat()})
            _acknowledge(db_path, delivery_id, activation_id, added, removed)
    except CaiError as error:
        _record(db_path, delivery_id, FAILED, error=str(error))
        result.status, result.error = FAILED, str(error)
        return result
    except Exception as error:
        log.exception("Delivery %s failed", delivery_id)
        message = f"The delivery failed unexpectedly ({type(error).__name__}: {error}); it is retried next time."
        _record(db_path, delivery_id, FAILED, error=message)
        result.status, result.error = FAILED, message
        return result

    def finish(con):
        con.execute("UPDATE deliveries SET status = ?, pid = NULL, finished_at = current_timestamp, members = ?, "
                    "location = ? WHERE delivery_id = ?", [SUCCESS, len(current), location, delivery_id])
        con.execute("UPDATE deliveries SET status = ? WHERE activation_id = ? AND status = ? AND delivery_id < ?",
                    [SUPERSEDED, activation_id, FAILED, delivery_id])
        audit.record(con, actor, "deliver", "segment", activation["segment"],
                     {"destination": destination.name, "run_id": activation["run_id"], "members": len(current)})
        return con.execute("SELECT added, removed FROM deliveries WHERE delivery_id = ?",
                           [delivery_id]).fetchall()[0]

    result.added, result.removed = store.write(db_path, finish)
    result.status, result.members, result.location = SUCCESS, len(current), location
    return result


def deliver_pending(db_path: Path, segment: str | None = None, instance_id: int | None = None,
                    actor: str = "local") -> list[DeliveryResult]:
    """Every active activation (of one segment, or of one instance's segments) whose latest run is not delivered
    yet: new runs, failed and interrupted deliveries. A delivered run is never sent twice."""
    if segment is not None:
        segments.get_segment(db_path, segment)
    with store.connect(db_path) as con:
        ids = [row[0] for row in con.execute(
            "SELECT a.activation_id FROM activations a JOIN segments s USING (segment_id) "
            "WHERE a.active AND ($segment IS NULL OR s.name = $segment) "
            "AND ($instance IS NULL OR s.instance_id = $instance) ORDER BY a.activation_id",
            {"segment": segment, "instance": instance_id}).fetchall()]
    return [deliver(db_path, activation_id, actor) for activation_id in ids]


def deliver_after_run(db_path: Path, instance_id: int, actor: str = "local") -> list[DeliveryResult]:
    """The hook at the end of a successful run; a destination's failure is recorded, never fails the run."""
    try:
        return deliver_pending(db_path, instance_id=instance_id, actor=actor)
    except Exception:
        log.exception("Deliveries after the run of instance %s could not start", instance_id)
        return []
