"""Activation widgets: a segment's destinations, deliveries and history, and activating it (editors only)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from cai import activation, destinations
from cai.errors import CaiError
from ui import access, tables
from ui.components import plain

IDENTITY_LABELS = {"crmid": "CRMID", "email": "Email", "email_sha256": "Email, SHA-256 of the lower-cased address",
                   "ecid": "ECID"}
TARGET_HINTS = {"folder": "/mnt/exports", "s3": "s3://bucket/prefix", "webhook": "https://example.com/hook",
                "table": "postgresql://user@host:5432/database"}


def _show_results(results: list[activation.DeliveryResult]) -> None:
    for result in results:
        # A line names the destination and quotes the error, a webhook's answer included.
        (st.error if result.status == activation.FAILED else st.success)(plain(result.line()))


def section(db: Path, viewer: access.Viewer, segment: str) -> None:
    """The segment's activations with their last delivery, the history, Deliver now and the Activate form."""
    table = activation.list_activations(db, segment)
    known = destinations.list_destinations(db)
    used = set(table["destination"])
    if table.empty:
        st.info("This segment is not sent anywhere yet. Activate it below: it is delivered now and again after "
                "every successful run of its instance.")
    else:
        tables.show(table.drop(columns=["activation_id", "segment"]), hide_index=True, key="activation_table")
        for destination in (destination for destination in known if destination.name in used):
            lost = destinations.lost_on_restart(db, destination)
            if lost:
                st.warning(plain(lost))
        for row in table[table["last_status"] == activation.FAILED].itertuples():
            st.warning(f"The last delivery to {plain(row.destination)} failed: {plain(row.error)} It is retried by "
                       "the next `run-due`, or now with Deliver now.")
        for row in _owing_the_current_run(table).itertuples():
            last = "nothing yet" if pd.isna(row.last_run) else f"run {int(row.last_run)}"
            st.warning(f"Run {int(row.current_run)}, the instance's latest, is not delivered to "
                       f"{plain(row.destination)} yet (it holds {last}): that run has just finished, or the app "
                       "stopped before sending it (a restart, say). Deliver now sends it; so does the next `run-due`.")
        with st.expander("Delivery history"):
            tables.show(activation.delivery_history(db, segment), hide_index=True, key="activation_history")
        if st.button("Deliver now", key="activation_deliver", disabled=not viewer.can_edit,
                     help="Sends the latest run wherever it has not been delivered yet; a run is never sent twice."):
            _show_results(activation.deliver_pending(db, segment=segment, actor=viewer.actor))
    access.view_only_note(viewer)
    names = [destination.name for destination in known]
    if names:
        with st.form("activation_form"):
            st.markdown("**Activate**")
            destination = st.selectbox("Destination", names, key="activation_destination",
                                       format_func=access.option_labels(viewer, names))
            identity = st.selectbox("Identity to send", list(IDENTITY_LABELS), format_func=IDENTITY_LABELS.get,
                                    key="activation_identity")
            columns = st.multiselect("Columns to send", list(activation.OPTIONAL_COLUMNS), ["score", "bucket"],
                                     key="activation_columns")
            submitted = st.form_submit_button("Activate", disabled=not viewer.can_edit)
        if submitted:
            try:
                activation.activate(db, segment, destination, identity, tuple(columns), actor=viewer.actor)
            except CaiError as error:
                st.error(plain(error))
            else:
                _show_results(activation.deliver_pending(db, segment=segment, actor=viewer.actor))
    if viewer.can_edit:
        with st.expander("New destination"):
            _destination_form(db, viewer)


def _owing_the_current_run(table: pd.DataFrame) -> pd.DataFrame:
    """Active activations whose latest delivery is neither of the instance's current run, nor failed (said
    already), nor in flight."""
    behind = table["current_run"].notna() & (table["last_run"] != table["current_run"])
    settled = ~table["last_status"].isin([activation.FAILED, activation.SENDING])
    return table[table["active"] & behind & settled]


def _destination_form(db: Path, viewer: access.Viewer) -> None:
    with st.form("activation_new_destination"):
        name = st.text_input("Name", key="activation_new_name", max_chars=destinations.MAX_NAME_CHARS)
        kind = st.selectbox("Kind", destinations.KINDS, key="activation_new_kind")
        target = st.text_input("Address (no passwords: they go in the secrets)", key="activation_new_target",
                               placeholder=" | ".join(TARGET_HINTS.values()))
        file_format = st.selectbox("File format (folder, s3)", destinations.FILE_FORMATS, key="activation_new_format")
        submitted = st.form_submit_button("Create destination")
    if submitted:
        options = {"format": file_format} if kind in ("folder", "s3") else {}
        try:
            destinations.create_destination(db, destinations.Destination(name, kind, target, options),
                                            actor=viewer.actor)
        except CaiError as error:
            st.error(plain(error))
        else:
            st.rerun()


def choose_on_save(db: Path, viewer: access.Viewer) -> list[str]:
    """Segment builder: destinations to activate the segment to as soon as it is saved."""
    names = [destination.name for destination in destinations.list_destinations(db)]
    if not names:
        return []
    return st.multiselect("Activate to, right after saving (optional)", names, key="builder_activate_to",
                          disabled=not viewer.can_edit, format_func=access.option_labels(viewer, names))


def activate_saved(db: Path, viewer: access.Viewer, segment: str, chosen: list[str]) -> str:
    """Activates a just-saved segment to each chosen destination (by CRMID, with score and bucket) and says how
    each delivery went, for the message shown after saving."""
    lines = []
    for destination in chosen:
        try:
            activation.activate(db, segment, destination, actor=viewer.actor)
        except CaiError as error:
            lines.append(str(error))
    if chosen:
        lines += [result.line() for result in activation.deliver_pending(db, segment=segment, actor=viewer.actor)]
    return " ".join(lines)
