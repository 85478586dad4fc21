"""Customer AI: the entry script routes to the pages; on the first start it builds the demo store."""

from pathlib import Path

import streamlit as st

from cai.errors import CaiError
from ui import access, bootstrap, state

STATIC = Path(__file__).parent / "static"

# The tab icon is a file shipped with the app: a `:material/` page icon is fetched from a third-party font server.
st.set_page_config(page_title="Customer AI", page_icon=STATIC / "icon.png", layout="wide")
st.html(STATIC / "app.css")
viewer = access.current()

pages = {
    "Customer AI": [
        st.Page("pages/instances.py", title="Customer AI", icon=":material/model_training:", default=True),
        st.Page("pages/dashboard.py", title="Dashboard", icon=":material/dashboard:"),
    ],
    "Audiences": [
        st.Page("pages/segment_builder.py", title="Segment builder", icon=":material/tune:"),
        st.Page("pages/segments.py", title="Segments", icon=":material/groups:"),
        st.Page("pages/profiles.py", title="Profiles", icon=":material/person_search:"),
    ],
    "Data": [
        st.Page("pages/data.py", title="Data", icon=":material/database:"),
        st.Page("pages/audit.py", title="Audit log", icon=":material/history:"),
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
