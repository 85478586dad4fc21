"""Text from data in a real browser: Markdown and HTML in names, cities, event types, instance and segment names
show as literal text on every page, and never become a link, an image, a script or a request."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from playwright.sync_api import Page, expect

from cai import ingest, instances, profiles, segments, store
from cai.instances import Definition, Goal
from ui.components import WORD_JOINER

pytestmark = pytest.mark.e2e
TIMEOUT_MS = 60_000
EVIL = "evil.example"
LINK = f"[Claim your prize](https://{EVIL}/prize)"
IMAGE = f"![pixel](https://{EVIL}/p.png)"
ANCHOR = f'<a href="https://{EVIL}/a">anchor</a>'
IMG = f'<img src="https://{EVIL}/i.png">'
SCRIPT = f'<script src="https://{EVIL}/s.js"></script>'
EMAIL = f"mallory@{EVIL}"
# Attributes through which an element fetches or links to an address; an address is checked where it leads (the
# app's own links carry instance names, markup included, as query parameters, which is harmless).
URL_ATTRIBUTES = ["href", "src", "srcset", "action", "formaction", "poster", "data", "xlink:href", "background"]
FIND_REFERENCES = """([host, names]) => {
    const found = [];
    const leadsOut = (address) => {
        try {
            const url = new URL(address.trim().split(/\\s+/)[0], location.href);
            return url.hostname.endsWith(host) || url.protocol === "mailto:";
        } catch (error) {
            return false;
        }
    };
    const where = (element) => element.parentElement.closest("[data-testid]")?.outerHTML.slice(0, 300);
    for (const element of document.querySelectorAll("*")) {
        for (const name of names) {
            const value = element.getAttribute(name);
            if (value && value.split(",").some(leadsOut)) found.push(`${element.tagName} ${name}=${value} in ${where(element)}`);
        }
        const style = element.getAttribute("style") || "";
        if (style.includes(host)) found.push(`${element.tagName} style=${style}`);
        if (element.tagName === "SCRIPT" && element.text.includes(host)) found.push(`SCRIPT ${element.text}`);
    }
    return found;
}"""


def _seed(db) -> int:
    """A customer whose name, city and events carry markup, an instance and segments named with markup; returns
    the customer's profile id."""
    customer = pd.DataFrame({"email": [EMAIL], "first_name": [LINK], "last_name": [f"{ANCHOR} {EMAIL}"],
                             "city": [IMG], "country": [SCRIPT]})
    ingest.ingest_bytes(db, customer.to_csv(index=False).encode(), "customers.csv", kind="profiles", dataset=IMG)
    visits = pd.DataFrame({"timestamp": ["2026-10-30T10:00:00Z", "2026-10-30T11:00:00Z"],
                           "event_type": [IMAGE, SCRIPT], "email": [EMAIL, EMAIL], "product_name": [ANCHOR, LINK]})
    ingest.ingest_bytes(db, visits.to_csv(index=False).encode(), f"{LINK}.csv", kind="events", dataset=SCRIPT)
    instances.create_instance(db, Definition(name=LINK, description=f"{ANCHOR} {IMAGE}", goals=(Goal(IMAGE),)))
    segments.create_segment(db, SCRIPT, segments.Rule(instance=instances.TUTORIAL_INSTANCE, minimum=75))
    segments.create_segment(db, IMG, segments.Rule(instance=instances.TUTORIAL_INSTANCE), description=ANCHOR)
    customer_id = profiles.find(db, "Email", EMAIL)
    store.release(db)
    return customer_id


def _shown(text: str) -> re.Pattern:
    """The text as the page shows it: the same characters, with the invisible word joiners that keep addresses
    from becoming links allowed anywhere."""
    characters = [re.escape(character).replace("/", "\\/") for character in text]  # Playwright reads /.../
    return re.compile(f"(?:\\u{ord(WORD_JOINER):04x})?".join(characters))


def _open(page: Page, menu_entry: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=menu_entry, exact=True).click()


def _assert_text_stays_text(page: Page, where: str) -> None:
    expect(page.locator("[data-testid=stException]")).to_have_count(0)
    references = page.evaluate(FIND_REFERENCES, [EVIL, URL_ATTRIBUTES])
    assert not references, (where, references)


def test_markup_from_data_shows_as_text_on_every_page(app_page: Page, app_server):
    page = app_page
    base, db = app_server
    page.set_default_timeout(TIMEOUT_MS)
    customer_id = _seed(db)
    attempted = []
    page.on("request", lambda request: attempted.append(request.url) if EVIL in request.url else None)

    page.goto(base)
    expect(page.get_by_role("heading", name="Customer AI").first).to_be_visible()
    expect(page.get_by_text(_shown(LINK)).first).to_be_visible()
    _assert_text_stays_text(page, "instances")

    page.get_by_role("link", name=_shown(LINK)).first.click()
    expect(page.get_by_role("heading", name=_shown(LINK))).to_be_visible()
    _assert_text_stays_text(page, "dashboard of the instance named with markup")
    _open(page, "Customer AI")
    page.get_by_role("link", name=instances.TUTORIAL_INSTANCE).first.click()
    expect(page.get_by_role("heading", name="Influential factors")).to_be_visible()
    _assert_text_stays_text(page, "dashboard")

    _open(page, "Segment builder")
    expect(page.get_by_role("heading", name="Segment builder")).to_be_visible()
    _assert_text_stays_text(page, "segment builder")

    _open(page, "Segments")
    page.get_by_label("Open segment").click()
    page.get_by_role("option", name=IMG).click()
    expect(page.get_by_role("heading", name=_shown(IMG))).to_be_visible()
    expect(page.get_by_text(_shown(ANCHOR)).first).to_be_visible()
    for tab in ("Members", "Overlap", "Export", "Activation", "Edit"):
        page.get_by_role("tab", name=tab).click()
        _assert_text_stays_text(page, f"segments, {tab}")

    _open(page, "Profiles")
    page.get_by_role("tab", name="Open by identity").click()
    exact = page.get_by_label("Exact identity (press Enter)")
    exact.fill(EMAIL)
    exact.press("Enter")
    heading = page.get_by_role("heading", name=_shown(f"{LINK} {ANCHOR} {EMAIL} · profile {customer_id}"))
    expect(heading).to_be_visible()
    for tab in ("Attributes", "Score history", "Events", "Segments"):
        page.get_by_role("tab", name=tab).click()
        _assert_text_stays_text(page, f"profile, {tab}")

    _open(page, "Data")
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    _assert_text_stays_text(page, "data")
    _open(page, "Audit log")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    _assert_text_stays_text(page, "audit")
    assert not attempted


def test_tables_offer_no_download_that_writes_their_cells_raw(app_page: Page, app_server):
    page = app_page
    base, db = app_server
    page.set_default_timeout(TIMEOUT_MS)
    customer_id = _seed(db)
    page.goto(base)
    _open(page, "Profiles")
    page.get_by_role("tab", name="Open by identity").click()
    exact = page.get_by_label("Exact identity (press Enter)")
    exact.fill(EMAIL)
    exact.press("Enter")
    expect(page.get_by_role("heading", name=re.compile(f"profile {customer_id}$"))).to_be_visible()
    page.get_by_role("tab", name="Events").click()
    table = page.locator("[data-testid=stElementContainer]:has([data-testid=stDataFrame]:visible)").first
    table.hover()

    # The table's own toolbar is there (so the hover reached it), without the download that writes cells raw.
    toolbar = table.get_by_test_id("stElementToolbar")
    expect(toolbar.get_by_role("button", name="Search")).to_be_visible()
    expect(toolbar.get_by_role("button", name=re.compile("download", re.IGNORECASE))).to_have_count(0)
