"""Customer AI: the entry script routes to the pages; on the first start it builds the demo store."""

import os
from pathlib import Path

import streamlit as st

from cai.errors import CaiError
from ui import access, bootstrap, state

# scikit-learn's OpenMP threads wait for each other at every tree, by default spinning on their core: while the
# browser or another program held the other core, that took the first start's training from 7 s to 54 s; sleeping
# instead cost nothing measurable. OpenMP reads it once, when scikit-learn first loads: none of the modules above
# load it, the pages and the first start's thread do.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

STATIC = Path(__file__).parent / "static"

# The tab icon is a file shipped with the app: a `:material/` page icon is fetched from a third-party font server.
st.set_page_config(page_title="Customer AI", page_icon=STATIC / "icon.png", layout="wide")
st.html(STATIC / "app.css")
viewer = access.current()

# The pages live in app_pages/, not pages/: Streamlit treats a folder named pages/ as its older multipage mode, in
# which a fresh server asked for /dashboard runs that page without this script: no sign-in and no first start.
pages = {
    "Customer AI": [
        st.Page("app_pages/instances.py", title="Customer AI", icon=":material/model_training:", default=True),
        st.Page("app_pages/dashboard.py", title="Dashboard", icon=":material/dashboard:"),
    ],
    "Audiences": [
        st.Page("app_pages/segment_builder.py", title="Segment builder", icon=":material/tune:"),
        st.Page("app_pages/segments.py", title="Segments", icon=":material/groups:"),
        st.Page("app_pages/profiles.py", title="Profiles", icon=":material/person_search:"),
    ],
    "Data": [
        st.Page("app_pages/data.py", title="Data", icon=":material/database:"),
        st.Page("app_pages/audit.py", title="Audit log", icon=":material/history:"),
    ],
}
access.sidebar(viewer)
navigation = st.navigation(pages)
try:
    bootstrap.ensure_database(state.db_path())
    navigation.run()
except CaiError as error:
    # A busy database, or an instance someone else just deleted, is a message to act on, never a traceback.
    st.error(str(error))
