"""Profiles: browse by any identity as in lab 5.3 (Browse, View, click the Profile ID), or open one directly; then
the profile's attributes with its Customer AI output, score history, events and segments."""

import streamlit as st

from cai import charts, identity, profiles
from ui import access, cached, components, state, tables
from ui.components import plain

EVENTS_PAGE = 50
NAMESPACES = [*identity.KNOWN_NAMESPACES, profiles.PROFILE_ID]
db = state.db_path()
viewer = access.current()
# The tutorial's customer: a demo store's real profile, so masked for a viewer like any other.
EXAMPLE = access.shown_text(viewer, "hbirkenshawa@businessweek.com")


st.title("Profiles")
params = st.query_params
if params.get("namespace") in NAMESPACES and params.get("value") and "profile" not in params:
    # A link naming one exact identity opens that profile directly.
    found = profiles.find(db, params["namespace"], params["value"])
    if found is not None:
        st.query_params.update({"profile": str(found)})
    del st.query_params["namespace"], st.query_params["value"]
opened = int(params["profile"]) if params.get("profile", "").isdigit() else None

if opened is None:
    browse, direct = st.tabs(["Browse", "Open by identity"])
    with browse:
        with st.form("profiles_browse", border=False):
            columns = st.columns([1, 3], vertical_alignment="bottom")
            namespace = columns[0].selectbox("Identity namespace", NAMESPACES, key="profiles_namespace")
            value = columns[1].text_input("Identity value", key="profiles_value", placeholder=EXAMPLE)
            if st.form_submit_button("View", type="primary"):
                st.session_state["profiles_viewed"] = (namespace, value.strip())
        viewed_namespace, viewed_value = st.session_state.get("profiles_viewed", (None, ""))
        if not viewed_value:
            st.caption(f"Choose a namespace, enter an identity (for example Email {plain(EXAMPLE)}) and press View.")
        else:
            results = profiles.search(db, viewed_namespace, viewed_value,
                                      by_prefix=access.may_search_by_prefix(viewer, viewed_namespace),
                                      personal_hits=viewer.sees_identities)
            if results.empty:
                st.warning(f"No profile has the {viewed_namespace} identity “{plain(viewed_value)}”, and no identity "
                           "or name starts with it.")
            else:
                picked = components.profile_results(access.shown(viewer, results))
                if picked is not None:
                    st.query_params["profile"] = str(picked)
                    st.rerun()
    with direct:
        columns = st.columns([1, 3], vertical_alignment="bottom")
        direct_namespace = columns[0].selectbox("Namespace", NAMESPACES, key="profiles_direct_namespace")
        direct_value = columns[1].text_input("Exact identity (press Enter)", key="profiles_direct_value",
                                             placeholder=EXAMPLE)
        if direct_value.strip():
            found = profiles.find(db, direct_namespace, direct_value)
            if found is None:
                st.warning(f"No profile has exactly the {direct_namespace} identity “{plain(direct_value.strip())}”. "
                           "Browse finds close matches.")
            else:
                st.query_params["profile"] = str(found)
                st.rerun()
    st.stop()

attributes = profiles.attributes(db, opened)
if not attributes:
    st.warning(f"There is no profile {opened} (it may have been merged into another).")
    st.stop()
if st.button("← Back to the results", type="tertiary", key="profiles_back"):
    del st.query_params["profile"]
    st.rerun()
st.subheader(plain(f"{attributes.get('first_name') or ''} {attributes.get('last_name') or ''} · profile {opened}"))
outputs = profiles.customer_ai(db, opened)
tab_attributes, tab_history, tab_events, tab_segments = st.tabs(["Attributes", "Score history", "Events", "Segments"])
with tab_attributes:
    st.markdown("**Attributes**")
    tables.show(components.attribute_rows(attributes, outputs), hide_index=True, height="content",
                key="profiles_attributes",
                column_config={"attribute": st.column_config.TextColumn("Attribute", width="large"), "value": "Value"})
    st.markdown("**Identities**")
    tables.show(profiles.identities(db, opened), hide_index=True, key="profiles_identities",
                column_config={"namespace": "Namespace",
                               "identity": st.column_config.TextColumn("Identity", width="large"),
                               "primary": "Primary"})
    if not outputs:
        st.info("No Customer AI instance scored this profile in its latest run (it may not be eligible).")
    for output in outputs:
        with st.container(border=True, key=f"profiles_cai_{output['run_id']}"):
            st.markdown(f"**Customer AI · {plain(output['instance'])}** ({output['propensity_type']}), scored on "
                        f"{output['score_date']:%d %b %Y}")
            cells = st.columns(4)
            cells[0].metric("Propensity score", f"{output['score']:.1f}")
            cells[1].metric("Probability", f"{output['probability']:.1%}")
            cells[2].metric("Percentile", output["percentile"])
            cells[3].metric("Bucket", output["bucket"].capitalize())
            for factor in output["factors"]:
                st.markdown(f"- {plain(factor['sentence'])} *(importance {factor['importance']})*")
with tab_history:
    history = profiles.score_history(db, opened)
    if history.empty:
        st.info("No scores yet.")
    else:
        cached.chart(st, charts.score_history, history, width="stretch")
        moves = profiles.score_moves(db, opened)
        if moves:
            st.markdown("**Why the score moved**")
            for move in moves:
                st.markdown(f"- {plain(move.sentence())}")
with tab_events:
    total = profiles.total_events(db, opened)
    counts = profiles.event_counts(db, opened)
    if not counts.empty:
        cached.chart(st, charts.event_timeline, counts, width="stretch")
    offset = components.page_offset(total, EVENTS_PAGE, "profiles_events_page", "events")
    tables.show(profiles.events(db, opened, EVENTS_PAGE, offset), hide_index=True, key="profiles_events",
                column_config=tables.EVENT_COLUMNS)
with tab_segments:
    member_of = profiles.profile_segments(db, opened)
    if member_of:
        for name in member_of:
            st.markdown(f"- {plain(name)}")
    else:
        st.info("This profile is in no saved segment.")
