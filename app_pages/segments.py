"""Saved segments: sizes then and now, members, overlap, export for activation, rename and delete."""

import functools

import streamlit as st

from cai import segments
from cai.errors import CaiError
from ui import access, activation, cached, components, state, tables
from ui.components import plain

PAGE_SIZE = 50

db = state.db_path()
viewer = access.current()
st.title("Segments")
state.show_flash()
table = cached.list_segments(db)
if table.empty:
    st.info("No segments yet. Open an instance's dashboard and press Create Segment on a propensity card.")
    st.stop()
tables.show(table, hide_index=True, key="segments_table", column_config=tables.SEGMENT_COLUMNS)

names = table["name"].tolist()
requested = access.resolve(st.query_params.get("segment"), names)
if requested in names and requested != st.session_state.get("segments_shown"):
    # Arriving from Save in the segment builder (or from a shared link): open that segment.
    st.session_state["segments_selected"] = requested
chosen = st.selectbox("Open segment", names, key="segments_selected", format_func=access.option_labels(viewer, names))
st.session_state["segments_shown"] = chosen
st.query_params["segment"] = access.reference(viewer, chosen, names)
segment = segments.get_segment(db, chosen)
st.subheader(plain(chosen))
st.code(access.shown_text(viewer, segment["rule_text"]), language=None)
if segment["description"]:
    st.markdown(plain(segment["description"]))
st.caption(f"Evaluated against the latest successful run of “{plain(segment['instance'])}” (run "
           f"{segment['current_run_id']}); created from run {segment['run_id_at_creation']} with "
           f"{segment['size_at_creation']:,} profiles.")

members_tab, overlap_tab, export_tab, activation_tab, edit_tab = st.tabs(
    ["Members", "Overlap", "Export", "Activation", "Edit"])
with members_tab:
    size = int(table.loc[table["name"] == chosen, "size_now"].fillna(0).iloc[0])
    offset = components.page_offset(size, PAGE_SIZE, "segments_page")
    tables.show(segments.members(db, chosen, PAGE_SIZE, offset), hide_index=True, key="segments_members",
                column_config=tables.MEMBER_COLUMNS)
with overlap_tab:
    shared = segments.overlap(db, chosen)
    if shared.empty:
        st.info("There are no other segments to compare with.")
    else:
        tables.show(shared, hide_index=True, key="segments_overlap",
                    column_config={"segment": "Other segment", "shared_profiles": "Shared profiles",
                                   "share_of_this_segment": st.column_config.ProgressColumn(
                        "Share of this segment", format="percent", min_value=0, max_value=1)})
with export_tab:
    st.caption("Every member with all identities, probability, score, percentile, bucket, score date and factors.")
    if not viewer.sees_identities:
        st.info("Exports hold every member's identities, which your account may not see. Ask an editor.")
    for file_format, mime in (("csv", "text/csv"), ("parquet", "application/octet-stream")):
        # Made only when clicked: an export of a large segment takes a while, and is audited when it happens.
        st.download_button(f"Download {file_format.upper()}",
                           functools.partial(segments.export_bytes, db, chosen, file_format, viewer.actor),
                           file_name=segments.export_file_name(chosen, file_format), mime=mime,
                           key=f"segments_export_{file_format}",
                           disabled=not viewer.sees_identities)
with activation_tab:
    activation.section(db, viewer, chosen)
with edit_tab:
    access.view_only_note(viewer)
    # Prefilled as this viewer may see them: only those who see identities may edit.
    new_name = st.text_input("Name", access.shown_text(viewer, chosen), max_chars=segments.MAX_NAME_CHARS,
                             key="segments_new_name")
    description = st.text_area("Description", access.shown_text(viewer, segment["description"] or ""),
                               key="segments_description")
    if st.button("Save changes", key="segments_save", disabled=not viewer.can_edit):
        try:
            segments.update_segment(db, chosen, new_name, description, actor=viewer.actor)
        except CaiError as error:
            st.error(plain(error))
        else:
            cached.invalidate()
            state.flash(f"Saved “{plain(new_name)}”.")
            st.query_params["segment"] = new_name
            st.rerun()
    if st.toggle("Delete…", key="segments_delete_toggle", disabled=not viewer.can_edit):
        if st.button(f"Yes, delete “{plain(chosen)}”", key="segments_delete_confirm"):
            segments.delete_segment(db, chosen, actor=viewer.actor)
            cached.invalidate()
            state.flash(f"Deleted “{plain(chosen)}”.")
            st.rerun()
