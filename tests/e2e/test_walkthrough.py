"""The tutorial's walkthrough (Adobe lab 5.3) and bringing your own data, in a real browser."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Page, expect

from cai import instances, store

pytestmark = pytest.mark.e2e
TIMEOUT_MS = 60_000
SEGMENT = "Demo - Customer AI High Propensity"


def _shot(page: Page, name: str) -> None:
    """With CAI_SCREENSHOTS=FOLDER set, each step is saved there (this is how docs/ screenshots are made)."""
    folder = os.environ.get("CAI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def _no_exception(page: Page) -> None:
    expect(page.locator("[data-testid=stException]")).to_have_count(0)


def _hover_top_factor(page: Page) -> None:
    """Hovers the longest bar of the factor chart (the top factor) and reads its breakdown in the tooltip."""
    chart = page.locator(".st-key-dashboard_factors [data-testid=stVegaLiteChart]")
    chart.scroll_into_view_if_needed()
    expect(chart.locator("canvas, svg").first).to_be_visible()
    box = chart.bounding_box()
    tooltip = page.locator("#vg-tooltip-element")
    # The top bar spans most of the plot's width; walk down its middle until the tooltip names a factor.
    for offset in range(4, int(box["height"]) // 3, 4):
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + offset)
        if tooltip.is_visible() and "By bucket" in tooltip.inner_text():
            break
    expect(tooltip).to_be_visible()
    expect(tooltip).to_contain_text("Share of influence")
    expect(tooltip).to_contain_text(re.compile(r"By bucket.*high bucket", re.S))
    _shot(page, "dashboard-factor-hover")


def test_tutorial_walkthrough(page: Page, app_server):
    base, db = app_server
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(base)
    expect(page.get_by_role("heading", name="Customer AI").first).to_be_visible()
    expect(page.get_by_role("link", name=instances.TUTORIAL_INSTANCE).first).to_be_visible()
    _shot(page, "instances")

    page.get_by_role("link", name=instances.TUTORIAL_INSTANCE).first.click()
    expect(page.get_by_role("heading", name=instances.TUTORIAL_INSTANCE)).to_be_visible()
    expect(page).to_have_url(re.compile(r"instance=Product\+Purchase\+Propensity"))
    for section in ("Score summary", "Distribution of scores", "Influential factors", "Model evaluation"):
        expect(page.get_by_role("heading", name=section)).to_be_visible()
    expect(page.locator("[data-testid=stVegaLiteChart]").first).to_be_visible()
    expect(page.get_by_text(re.compile(r"high bucket median|high bucket mostly")).first).to_be_visible()
    _no_exception(page)
    _shot(page, "dashboard")
    _hover_top_factor(page)

    high_card = page.locator(".st-key-dashboard_card_high")
    card_count = high_card.locator("[data-testid=stMetricValue]").inner_text()
    high_card.get_by_role("button", name="Create Segment").click()
    expect(page.get_by_role("heading", name="Segment builder")).to_be_visible()
    expect(page.get_by_text('CustomerAI["Product Purchase Propensity"].score >= 75')).to_be_visible()
    name = page.get_by_label("Segment name")
    expect(name).to_have_value(f"{instances.TUTORIAL_INSTANCE} - Customer AI High Propensity")
    _shot(page, "segment-builder")
    name.fill(SEGMENT)
    name.press("Enter")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", name="Segments", exact=True)).to_be_visible()
    expect(page.get_by_text(f"Saved '{SEGMENT}' with {card_count} profiles.")).to_be_visible()
    _no_exception(page)
    page.get_by_role("tab", name="Export").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    exported = pd.read_csv(download.value.path())
    assert len(exported) == int(card_count.replace(",", "")) and exported["profile_id"].is_unique

    page.get_by_role("link", name="Profiles").click()
    expect(page.get_by_role("heading", name="Profiles")).to_be_visible()
    value = page.get_by_label("Identity value")
    value.fill("hbirkenshawa@businessweek.com")
    value.press("Enter")
    expect(page.get_by_role("tab", name="Attributes")).to_be_visible()
    score_metric = page.locator("[data-testid=stMetric]").filter(has_text="Propensity score")
    shown = score_metric.locator("[data-testid=stMetricValue]").inner_text()
    _no_exception(page)
    _shot(page, "profile")

    with store.connect(db) as con:
        stored = con.execute("SELECT s.score FROM scores s JOIN instances i ON s.run_id = i.current_run_id "
                             "WHERE s.profile_id = 1").fetchall()[0][0]
        saved = con.execute("SELECT count(*) FROM segments WHERE name = ?", [SEGMENT]).fetchall()[0][0]
    assert shown == f"{stored:.1f}"
    assert saved == 1  # one click on Save stored exactly one segment


def test_upload_a_file_and_see_a_malformed_one_refused(page: Page, app_server, tmp_path):
    base, db = app_server
    page.set_default_timeout(TIMEOUT_MS)
    good = tmp_path / "retail-v1.json"
    good.write_text(json.dumps([
        {"_id": "web-1", "timestamp": "2026-10-30T10:00:00Z", "eventType": "commerce.productViews",
         "endUserIDs": {"_experience": {"emailid": {"id": "new.shopper@example.com"}, "mcid": {"id": "77"}}}},
    ]))
    bad = tmp_path / "broken.json"
    bad.write_text('[{"_id": "x", "timestamp": ')
    page.goto(f"{base}/data")
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()

    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(bad))
    page.get_by_role("button", name="Load file").click()
    expect(page.get_by_text(re.compile("not valid JSON"))).to_be_visible()
    _no_exception(page)

    page.goto(f"{base}/data")
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(good))
    expect(page.get_by_text("retail-v1.json")).to_be_visible()
    page.get_by_role("button", name="Load file").click()
    expect(page.get_by_text(re.compile(r"Loaded retail-v1\.json: 1 events"))).to_be_visible()
    _no_exception(page)
    with store.connect(db) as con:
        assert con.execute("SELECT count(*) FROM events WHERE xdm_id = 'web-1'").fetchall()[0][0] == 1
        assert con.execute("SELECT count(*) FROM batches WHERE status = 'failed'").fetchall()[0][0] == 1
