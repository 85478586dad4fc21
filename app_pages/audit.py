"""The audit log: who created, ran, edited or deleted what, and when."""

import streamlit as st

from cai import audit
from ui import access, state, tables

db = state.db_path()
viewer = access.current()
st.title("Audit log")
st.caption("Every change to instances and segments, every run and every file loaded, recorded in the same "
           "transaction as the change.")
facets = audit.facets(db)
columns = st.columns(3)
actor = columns[0].selectbox("Who", ["Everyone", *facets["actors"]], key="audit_actor",
                             format_func=access.option_labels(viewer, facets["actors"]))
action = columns[1].selectbox("Action", ["All", *facets["actions"]], key="audit_action")
name = columns[2].text_input("Instance, segment or dataset name contains", key="audit_name")
log = audit.entries(db, None if actor == "Everyone" else actor, None if action == "All" else action, name.strip())
log = access.containing_as_shown(viewer, log, "object_name", name.strip())
if log.empty:
    st.info("Nothing recorded yet matches." if facets["actors"] else "Nothing has been recorded yet.")
else:
    tables.show(log, hide_index=True, key="audit_table",
                column_config={"happened_at": st.column_config.DatetimeColumn("When (UTC)"), "actor": "Who",
                               "action": "Action", "object_kind": "Kind", "object_name": "Name",
                               "details": "Details"})
