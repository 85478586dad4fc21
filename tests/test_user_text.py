"""Text people type (names, descriptions, rule values, searches, goal conditions) reaches SQL only as a bound
parameter: hostile or odd strings are stored and matched literally, and every table survives them."""

from __future__ import annotations

import re

import pytest

from cai import activation, audit, destinations, engine, ingest, instances, profiles, segments, store
from cai.instances import Condition, Definition, Goal

HOSTILE = ["'; DROP TABLE events; --", "%", "_", "\" OR 1=1 --", "Ünïcødé ✓ 名前", "a'b\"c\\d"]


def _table_sizes(db) -> dict[str, int]:
    with store.connect(db) as con:
        return {table: con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
                for table in ("events", "identities", "profiles", "scores")}


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_stored_and_matched_literally(trained_db, text):
    before = _table_sizes(trained_db)
    instances.create_instance(trained_db, Definition(
        name=f"Instance {text}", description=text, goals=(Goal("commerce.purchases", Condition("sku", "=", text)),)))
    stored = instances.get_instance(trained_db, f"Instance {text}").definition
    assert stored.description == text and stored.goals[0].condition.value == text

    rule = segments.Rule(instance=instances.TUTORIAL_INSTANCE, country=text, loyalty_tier=text)
    assert segments.measure(trained_db, rule)["size"] == 0
    segments.create_segment(trained_db, f"Segment {text}", segments.Rule(instance=instances.TUTORIAL_INSTANCE),
                            description=text)
    assert segments.get_segment(trained_db, f"Segment {text}")["description"] == text

    assert profiles.find(trained_db, "Email", text) is None
    assert profiles.search(trained_db, "Email", text).empty
    assert audit.entries(trained_db, object_name=text)["object_name"].tolist() == [f"Segment {text}",
                                                                                   f"Instance {text}"]
    assert _table_sizes(trained_db) == before


def test_a_goal_condition_with_hostile_text_trains_without_touching_sql(trained_db):
    name = "Purchases of a hostile SKU"
    instances.create_instance(trained_db, Definition(
        name=name, goals=(Goal("commerce.purchases", Condition("sku", "!=", HOSTILE[0])),), min_examples=50))
    result = engine.run_instance(trained_db, name)
    assert result.error is None and result.profiles_scored > 0


LINK = "[Claim your prize](http://evil.test/x)"
PIXEL = "![pixel](http://evil.test/p.png)"
HTML = "<img src=http://evil.test/h.png onerror=alert(1)>"
AUTOLINKS = "www.evil.test mallory@evil.test"
MARKUP = [LINK, PIXEL, HTML, AUTOLINKS, "**bold** :red[red] $x^2$"]


def _seed_hostile_text(db) -> None:
    """Markdown and HTML in every place a file or another user can put text."""
    store.write(db, lambda con: con.execute(
        "UPDATE profiles SET first_name = ?, last_name = ?, city = ? WHERE profile_id = 1", [LINK, HTML, PIXEL]))
    events = (f"timestamp,event_type,email\n2026-10-30T10:00:00Z,{PIXEL},hbirkenshawa@businessweek.com\n"
              f"2026-10-30T11:00:00Z,\"{LINK}\",hbirkenshawa@businessweek.com\n")
    ingest.ingest_bytes(db, events.encode(), f"{LINK}.csv", kind="events", dataset=PIXEL)
    instances.create_instance(db, Definition(name=LINK, description=" ".join(MARKUP), goals=(Goal(PIXEL),)))
    segments.create_segment(db, PIXEL, segments.Rule(instance=instances.TUTORIAL_INSTANCE), description=HTML)
    segments.create_segment(db, HTML, segments.Rule(instance=instances.TUTORIAL_INSTANCE, minimum=75))
    # A destination another editor named, whose failed delivery (no secret set) quotes that name.
    destinations.create_destination(db, destinations.Destination(LINK, "webhook", "https://hooks.invalid/x"))
    activation.activate(db, PIXEL, LINK)
    activation.deliver_pending(db, segment=PIXEL)


def _markdown_texts(app) -> list[str]:
    """Everything Streamlit renders as Markdown: titles, headings, text, captions, messages and labels."""
    texts = [element.value for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                                        "error", "success") for element in getattr(app, kind)]
    texts += [element.label for kind in ("button", "metric", "selectbox", "text_input", "expander", "tabs")
              for element in getattr(app, kind)]
    return [str(text) for text in texts]


def _page(path: str, **query):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    for key, value in query.items():
        app.query_params[key] = value
    return app.switch_page(path).run()


def test_text_from_data_never_forms_links_images_or_html_on_any_page(trained_db):
    _seed_hostile_text(trained_db)
    apps = {
        "instances": _page("app_pages/instances.py"),
        "dashboard": _page("app_pages/dashboard.py", instance=LINK),
        # A link someone sent, naming no instance: the page says so, quoting the name.
        "unknown instance": _page("app_pages/dashboard.py", instance=f"{PIXEL} {LINK}"),
        "builder": _page("app_pages/segment_builder.py", instance=instances.TUTORIAL_INSTANCE, bucket="high"),
        "segments": _page("app_pages/segments.py", segment=PIXEL),
        "browse": _page("app_pages/profiles.py"),
        "profile": _page("app_pages/profiles.py", profile="1"),
        "data": _page("app_pages/data.py"),
        "audit": _page("app_pages/audit.py"),
    }
    apps["instances"].selectbox(key="instances_selected").set_value(LINK).run()
    apps["browse"].text_input(key="profiles_value").input("hbirkenshawa@businessweek.com")
    apps["browse"].button(key="FormSubmitter:profiles_browse-View").click().run()
    # What Markdown still reads as markup once backslash-escaped punctuation is taken out.
    shown = {name: re.sub(r"\\[!-/:-@\[-`{-~]", "", "\n".join(_markdown_texts(app))) for name, app in apps.items()}
    for name, app in apps.items():
        assert not app.exception, name
        for dangerous in ("](", "<img", "http://", "www.evil", "@evil", "**bold", ":red["):
            assert dangerous not in shown[name], (name, dangerous)
    # The hostile text is still there, escaped, where the page names it.
    assert "Claim your prize" in apps["dashboard"].title[0].value
    assert "Claim your prize" in apps["profile"].subheader[0].value
    assert any("pixel" in text for text in _markdown_texts(apps["segments"]))
    assert any("Claim your prize" in error.value for error in apps["unknown instance"].error)
    assert any("Claim your prize" in warning.value and "failed" in warning.value
               for warning in apps["segments"].warning)
