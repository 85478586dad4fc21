"""Profiles: browse by any identity, then the profile's attributes, Customer AI output, history and events."""

import pandas as pd
import streamlit as st

from cai import charts, identity, profiles
from ui import access, cached, state

EVENTS_PAGE = 50
NAMESPACES = [*identity.KNOWN_NAMESPACES, profiles.PROFILE_ID]

db = state.db_path()
viewer = access.current()
st.title("Profiles")
params = st.query_params
if "namespace" in params and params["namespace"] in NAMESPACES and "profiles_namespace" not in st.session_state:
    st.session_state["profiles_namespace"] = params["namespace"]
    st.session_state["profiles_value"] = params.get("value", "")

columns = st.columns([1, 3])
namespace = columns[0].selectbox("Identity namespace", NAMESPACES, key="profiles_namespace")
value = columns[1].text_input("Identity value", key="profiles_value", placeholder="hbirkenshawa@businessweek.com")
if not value.strip():
    st.info("Choose a namespace and enter an identity, for example Email hbirkenshawa@businessweek.com.")
    st.stop()
st.query_params.update({"namespace": namespace, "value": value.strip()})

profile_id = profiles.find(db, namespace, value)
if profile_id is None:
    matches = profiles.search(db, namespace, value, by_prefix=access.may_search_by_prefix(viewer, namespace),
                              personal_hits=viewer.sees_identities)
    if matches.empty:
        st.warning(f"No profile has the {namespace} identity {value.strip()!r}, and nothing starts with it.")
        st.stop()
    st.caption(f"No exact {namespace} match; {len(matches)} close matches (identity prefix, any case, or name):")
    st.dataframe(access.shown(viewer, matches), hide_index=True, key="profiles_matches")
    chosen = st.selectbox("Open profile", matches["profile_id"].tolist(), key="profiles_pick")
    profile_id = int(chosen)

attributes = profiles.attributes(db, profile_id)
st.subheader(access.shown_text(
    viewer, f"{attributes.get('first_name') or ''} {attributes.get('last_name') or ''} · profile {profile_id}"))
tab_attributes, tab_history, tab_events, tab_segments = st.tabs(["Attributes", "Score history", "Events", "Segments"])
with tab_attributes:
    left, right = st.columns(2)
    left.markdown("**Attributes**")
    left.dataframe(access.shown(viewer, pd.DataFrame({"attribute": list(attributes),
                                                      "value": [str(v) for v in attributes.values()]})),
                   hide_index=True, key="profiles_attributes")
    right.markdown("**Identities**")
    right.dataframe(access.shown(viewer, profiles.identities(db, profile_id)), hide_index=True,
                    key="profiles_identities")
    outputs = profiles.customer_ai(db, profile_id)
    if not outputs:
        st.info("No Customer AI instance scored this profile in its latest run (it may not be eligible).")
    for output in outputs:
        with st.container(border=True, key=f"profiles_cai_{output['run_id']}"):
            st.markdown(f"**Customer AI · {output['instance']}** ({output['propensity_type']})")
            cells = st.columns(5)
            cells[0].metric("Propensity score", f"{output['score']:.1f}")
            cells[1].metric("Probability", f"{output['probability']:.1%}")
            cells[2].metric("Percentile", output["percentile"])
            cells[3].metric("Bucket", output["bucket"].capitalize())
            cells[4].metric("Score date", str(output["score_date"]))
            for factor in output["factors"]:
                st.markdown(f"- {access.shown_text(viewer, factor['sentence'])} *(importance {factor['importance']})*")
with tab_history:
    history = profiles.score_history(db, profile_id)
    if history.empty:
        st.info("No scores yet.")
    else:
        cached.chart(st, charts.score_history, history, width="stretch")
with tab_events:
    total = profiles.total_events(db, profile_id)
    counts = access.shown(viewer, profiles.event_counts(db, profile_id))
    if not counts.empty:
        cached.chart(st, charts.event_timeline, counts, width="stretch")
    pages = max(1, -(-total // EVENTS_PAGE))
    page = st.number_input(f"Page (of {pages}, {total:,} events)", 1, pages, 1, key="profiles_events_page")
    st.dataframe(access.shown(viewer, profiles.events(db, profile_id, EVENTS_PAGE, (page - 1) * EVENTS_PAGE)),
                 hide_index=True,
                 key="profiles_events")
with tab_segments:
    member_of = profiles.profile_segments(db, profile_id)
    if member_of:
        for name in member_of:
            st.markdown(f"- {name}")
    else:
        st.info("This profile is in no saved segment.")
