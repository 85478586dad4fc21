"""Data: datasets and batches, events over time, the history requirement, and uploads."""

import pandas as pd
import streamlit as st

from cai import charts, ingest
from cai.errors import CaiError, ValidationError
from ui import access, cached, state, tables
from ui.components import plain

db = state.db_path()
viewer = access.current()
st.title("Data")
state.show_flash()

summary = cached.store_summary(db)
columns = st.columns(4)
columns[0].metric("Profiles", f"{summary['profiles']:,}")
columns[1].metric("Identities", f"{summary['identities']:,}")
columns[2].metric("Events", f"{summary['events']:,}")
columns[3].metric("Days covered", f"{summary['days_covered']:,}")
if summary["first_event"]:
    verdict = "meets" if summary["meets_two_quarters"] else "does not yet meet"
    first, last = (f"{pd.Timestamp(summary[key]):%d %b %Y}" for key in ("first_event", "last_event"))
    st.caption(f"Events from {first} to {last}: this {verdict} Customer AI's requirement of at least two quarters "
               "(183 days) of history.")

st.subheader("Events per month")
per_month = cached.events_per_month(db)
if per_month.empty:
    st.info("No events yet. Upload a file below.")
else:
    cached.chart(st, charts.events_per_month, per_month, width="stretch")

st.subheader("Datasets")
tables.show(cached.datasets_overview(db), hide_index=True, key="data_datasets", column_config=tables.DATASET_COLUMNS)
loaded = ingest.batches(db)
# Open when the newest load is still running or was cut off by a restart, which nothing else on the page tells.
unfinished = not loaded.empty and loaded["status"].iloc[0] in (ingest.LOADING, ingest.INTERRUPTED)
with st.expander("Files loaded and their problems", expanded=unfinished):
    tables.show(loaded, hide_index=True, key="data_batches", column_config=tables.BATCH_COLUMNS)
    st.caption("Events per type in the latest files; “inferred” counts events typed from their XDM field groups "
               "because they had no `eventType` (“unspecified” when none applies).")
    tables.show(ingest.batch_event_types(db), hide_index=True, key="data_batch_event_types")

# None lets the load tell the kind: a `timestamp` column or an XDM event record means events.
FILE_KINDS = {None: "Tell from the file", "events": "Events", "profiles": "Profiles"}

st.subheader("Upload a file")
st.caption("XDM ExperienceEvent or Profile JSON (one object, an array or JSON lines; gzip too) or Parquet as Experience Platform "
           "exports them (a .zip of an export's part files loads as one), or CSV/Parquet with `timestamp`, `event_type` and "
           "identity columns; profile files with identity and attribute columns. A file is loaded whole or not at all.")
access.view_only_note(viewer)
with st.form("data_upload", clear_on_submit=True):
    upload = st.file_uploader("File", type=["json", "jsonl", "ndjson", "csv", "parquet", "gz", "zip"], key="data_file")
    kind = st.radio("It holds", list(FILE_KINDS), format_func=FILE_KINDS.get, horizontal=True, key="data_kind")
    dataset = st.text_input("Dataset name (optional)", key="data_dataset")
    submitted = st.form_submit_button("Load file", type="primary", disabled=not viewer.can_edit)
if submitted and upload is not None:
    try:
        report = ingest.ingest_bytes(db, upload.getvalue(), upload.name, kind=kind, dataset=dataset or None,
                                     actor=viewer.actor)
    except ValidationError as error:
        cached.invalidate()
        st.error(plain(error))
        for problem in error.problems:
            st.markdown(f"- {plain(problem)}")
    except CaiError as error:
        st.error(plain(error))
    else:
        cached.invalidate()
        state.flash(f"Loaded {plain(report.file_name)} as {report.kind}: {report.rows_accepted:,} events or rows "
                    f"accepted, {report.rows_duplicate:,} duplicates skipped, {report.profiles_created:,} new profiles, "
                    f"{report.profiles_merged:,} merged.")
        st.rerun()
