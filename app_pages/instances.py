"""Customer AI instances: the list, set-up, run now, edit, clone, delete and run history."""

import pandas as pd
import streamlit as st

from cai import ingest, instances, scores
from cai.errors import CaiError
from ui import access, cached, components, state, tables
from ui.components import plain

COLUMN_WIDTHS = [3.2, 1.5, 3.6, 1.2, 1.6, 1, 1]

db = state.db_path()
viewer = access.current()
st.title("Customer AI")
st.caption("Each instance predicts, for every eligible customer, how likely a goal is within an outcome window.")
state.show_flash()

table = cached.instances_table(db)
if table.empty:
    st.info("No instances yet. Create one below.")
else:
    header = st.columns(COLUMN_WIDTHS)
    for column, title in zip(header, ["Name", "Type", "Goal", "Status", "Last run", "Scored", "Quality"]):
        column.markdown(f"**{title}**")
    for row in table.itertuples():
        cells = st.columns(COLUMN_WIDTHS)
        with cells[0].container(key=f"instances_link_{row.Index}"):
            st.page_link("app_pages/dashboard.py", label=plain(row.name),
                         query_params={"instance": access.reference(viewer, row.name, table["name"])})
        cells[1].text(row.propensity_type.capitalize())
        cells[2].text(access.shown_text(viewer, row.goal))
        cells[3].text(row.status)
        cells[4].text(f"{row.last_run_date:%d %b %Y}" if pd.notna(row.last_run_date) else "—")
        cells[5].text(f"{int(row.profiles_scored):,}" if pd.notna(row.profiles_scored) else "—")
        cells[6].text(row.quality if pd.notna(row.quality) else "—")
        if row.status == instances.ERROR and pd.notna(row.status_reason):
            st.error(plain(f"{row.name}: {row.status_reason}"))

st.divider()
names = table["name"].tolist()
if names:
    chosen = st.selectbox("Instance", names, key="instances_selected", format_func=access.option_labels(viewer, names))
    run = scores.latest_run(db, chosen)
    definition = run["definition"]
    summary, actions = st.columns([3, 2])
    with summary:
        st.subheader("Summary")
        st.markdown(
            f"**Status:** {run['status']}  \n**Goal:** {plain(definition.goal_text())}  \n"
            f"**Type:** {definition.propensity_type}  \n**Eligible:** active in the last {definition.eligible_days} "
            f"days{' and did ' + plain(definition.population_event_type) if definition.population_event_type else ''}"
            f"  \n**Schedule:** {definition.schedule}  \n**Description:** {plain(definition.description or '—')}"
        )
        if run["run_id"]:
            st.markdown(
                f"**Last successful run:** score date {run['as_of']:%d %b %Y}, {run['profiles_scored']:,} profiles, "
                f"{run['duration_s']:.1f} s, AUC {run['metrics']['auc']:.3f} ({run['metrics']['grade']})"
            )
        if run["status_reason"]:
            st.warning(plain(run["status_reason"]))
        for check in cached.attribute_checks(db, definition):
            if check.tracks_goal:
                kept = check.attribute in definition.allow_leaky_attributes
                st.warning(plain(check.warning() + (" It is used because the set-up insists." if kept else "")))
    with actions:
        st.subheader("Actions")
        access.view_only_note(viewer)
        if st.button("Run now", type="primary", key="instances_run", disabled=not viewer.can_edit):
            result = components.run_with_progress(db, chosen, viewer.actor)
            cached.invalidate()
            if result.error:
                st.error(plain(result.error))
            else:
                state.flash(f"{plain(chosen)}: {result.profiles_scored:,} profiles scored, AUC {result.metrics['auc']:.3f}.")
                st.rerun()
        if st.button("Clone", key="instances_clone", disabled=not viewer.can_edit):
            clone = instances.clone_instance(db, chosen, actor=viewer.actor)
            cached.invalidate()
            state.flash(f"Cloned as “{plain(clone.name)}”.")
            st.rerun()
        if st.toggle("Delete…", key="instances_delete_toggle", disabled=not viewer.can_edit):
            st.warning(f"Deleting “{plain(chosen)}” removes its runs, scores and segments.")
            if st.button("Yes, delete", key="instances_delete_confirm"):
                instances.delete_instance(db, chosen, actor=viewer.actor)
                cached.invalidate()
                state.flash(f"Deleted “{plain(chosen)}”.")
                st.rerun()
    with st.expander("Run history"):
        tables.show(instances.run_history(db, chosen), hide_index=True, key="instances_history",
                    column_config=tables.RUN_HISTORY_COLUMNS)
    with st.expander("Edit the set-up", expanded=False):
        if not viewer.can_edit:
            st.info(access.VIEW_ONLY)
        elif run["status"] not in instances.EDITABLE_STATUSES:
            st.info(f"“{plain(chosen)}” is {run['status']}: definitions can be edited only while awaiting training or in "
                    "error, as in Adobe's product. Clone it to change the set-up.")
        else:
            edited = components.instance_form("instances_edit", ingest.event_types(db), definition)
            if edited:
                try:
                    instances.update_instance(db, chosen, edited, actor=viewer.actor)
                except CaiError as error:
                    st.error(plain(error))
                else:
                    cached.invalidate()
                    state.flash(f"Saved “{plain(edited.name)}”.")
                    st.rerun()

with st.expander("Create an instance", expanded=not names and viewer.can_edit):
    created = components.instance_form("instances_create", ingest.event_types(db)) if viewer.can_edit else None
    access.view_only_note(viewer)
    if created:
        try:
            instance = instances.create_instance(db, created, actor=viewer.actor)
        except CaiError as error:
            st.error(plain(error))
        else:
            cached.invalidate()
            state.flash(f"Created “{plain(instance.name)}”. Run it to see its dashboard.")
            st.rerun()
