"""Every page renders again after another page was shown in the same session, as a return through the navigation
does (Streamlit forgets the values of widgets that were not on screen), and cached charts render as drawn ones."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

TIMEOUT = 120
PAGES = ["app_pages/dashboard.py", "app_pages/segment_builder.py", "app_pages/profiles.py", "app_pages/segments.py",
         "app_pages/data.py", "app_pages/instances.py", "app_pages/audit.py"]


@pytest.fixture(autouse=True)
def fresh_caches():
    import streamlit as st

    st.cache_data.clear()
    yield
    st.cache_data.clear()


def test_every_page_renders_again_after_the_others(trained_db):
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    titles = {}
    for path in PAGES + PAGES:
        app.switch_page(path).run()
        assert not app.exception, f"{path}: {app.exception[0].message if app.exception else ''}"
        titles.setdefault(path, []).append([title.value for title in app.title])
    assert all(first == again and first for first, again in titles.values())


def test_choosing_a_factor_redraws_its_breakdown_from_the_cached_charts(trained_db):
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    app.switch_page("app_pages/dashboard.py").run()
    app.session_state["dashboard_breakdown_chart"] = True
    app.run()
    breakdown_before = app.get("vega_lite_chart")[-1].proto.spec
    charts_before = len(app.get("vega_lite_chart"))
    labels = app.selectbox(key="dashboard_factor").options
    app.selectbox(key="dashboard_factor").set_value(labels[-1]).run()
    assert not app.exception
    assert app.selectbox(key="dashboard_factor").value == labels[-1]
    assert labels[-1] in " ".join(markdown.value for markdown in app.markdown)
    # Donut, distribution, factors and the opened breakdown, now of the chosen factor.
    assert len(app.get("vega_lite_chart")) == charts_before == 4
    assert app.get("vega_lite_chart")[-1].proto.spec != breakdown_before


def _chart_rows(chart) -> list[str]:
    return sorted(json.dumps(pa.ipc.open_stream(dataset.data.data).read_all().to_pylist(), sort_keys=True)
                  for dataset in chart.proto.datasets)


def test_a_cached_chart_sends_the_rows_streamlit_sends_for_the_chart_itself():
    def script():
        import pandas as pd
        import streamlit as st

        from cai import charts
        from ui import cached

        deciles = pd.DataFrame({"decile": [1, 2, 3], "lift": [2.5, 1.1, 0.4], "rate": [0.3, 0.12, 0.05],
                                "profiles": [10, 10, 9]})
        cached.chart(st, charts.lift_chart, deciles)
        st.altair_chart(charts.lift_chart(deciles))

    app = AppTest.from_function(script, default_timeout=TIMEOUT).run()
    assert not app.exception
    cached_chart, drawn_chart = app.get("vega_lite_chart")
    assert len(cached_chart.proto.datasets) == 2
    assert _chart_rows(cached_chart) == _chart_rows(drawn_chart)
