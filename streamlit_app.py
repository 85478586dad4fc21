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

# The pages live in app_pages/, not pages/: Streamlit treats a folder named pages/ as its older multipage mode, in
# which a fresh server asked for /dashboard runs that page without this script: no sign-in and no first start.
instances_page = st.Page("app_pages/instances.py", title="Customer AI", icon=":material/model_training:", default=True)
dashboard_page = st.Page("app_pages/dashboard.py", title="Dashboard", icon=":material/dashboard:")
pages = {
    "Customer AI": [instances_page, dashboard_page],
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
    if bootstrap.ensure_database(state.db_path()) and navigation is instances_page:
        # Whoever opened the app and watched the demo being built lands on its dashboard, full of scores.
        st.switch_page(dashboard_page)
    navigation.run()
except CaiError as error:
    # A busy database, or an instance someone else just deleted, is a message to act on, never a traceback; it may
    # quote a name from the address bar or another user, so it is shown as literal text.
    from ui.components import plain

    st.error(plain(error))
