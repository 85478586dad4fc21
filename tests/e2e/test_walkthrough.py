"""The tutorial's walkthrough (Adobe lab 5.3) and bringing your own data, in a real browser."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from playwright.sync_api import Page, expect

from cai import demo, instances, store
from tests.e2e.steps import TIMEOUT_MS, load_file, no_exception, open_page, save_high_propensity_segment, shot

pytestmark = pytest.mark.e2e
SEGMENT = "Demo - Customer AI High Propensity"


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
    shot(page, "dashboard-factor-hover")


@pytest.mark.both_backends
def test_tutorial_walkthrough(app_page: Page, app_server):
    """Lab 5.3 in its own words, with every request outside the app blocked and no console error; on a DuckDB file
    and on PostgreSQL."""
    page = app_page
    base, db = app_server
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(base)
    expect(page.get_by_role("heading", name="Customer AI").first).to_be_visible()
    expect(page.get_by_role("link", name=instances.TUTORIAL_INSTANCE).first).to_be_visible()
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
    shot(page, "instances")

    # "Click on the instance name to view the dashboard."
    page.get_by_role("link", name=instances.TUTORIAL_INSTANCE).first.click()
    expect(page.get_by_role("heading", name=instances.TUTORIAL_INSTANCE)).to_be_visible()
    expect(page).to_have_url(re.compile(r"instance=Product\+Purchase\+Propensity"))
    for section in ("Score summary", "Distribution of scores", "Influential factors", "Model evaluation"):
        expect(page.get_by_role("heading", name=section)).to_be_visible()
    expect(page.locator("[data-testid=stVegaLiteChart]").first).to_be_visible()
    expect(page.get_by_text(re.compile(r"high bucket median|high bucket mostly")).first).to_be_visible()
    no_exception(page)
    shot(page, "dashboard")
    # "Hover on the influential factors to view the further breakdown of data distribution."
    _hover_top_factor(page)
    # The breakdown's and the evaluation's charts are drawn when opened, not with the page.
    charts = page.locator("[data-testid=stVegaLiteChart]")
    expect(charts).to_have_count(3)
    page.get_by_text("Chart of this factor in each bucket").click()
    page.get_by_text("Lift, gains, calibration and expected vs actual").click()
    expect(page.get_by_text("Calibration: points on the dashed line")).to_be_visible()
    expect(charts).to_have_count(3 + 1 + 4)
    no_exception(page)

    # "Click on the Create Segment button on the propensity cards."
    card_count = save_high_propensity_segment(page, SEGMENT)
    page.get_by_role("tab", name="Export").click()
    download_csv = page.get_by_role("button", name="Download CSV")
    expect(download_csv).to_be_enabled()
    with page.expect_download() as download:
        download_csv.click()
    exported = pd.read_csv(download.value.path())
    assert len(exported) == int(card_count.replace(",", "")) and exported["profile_id"].is_unique

    # "Go to Profiles in the left menu and select Browse."
    open_page(page, "Profiles")
    expect(page.get_by_role("heading", name="Profiles")).to_be_visible()
    page.get_by_role("tab", name="Browse").click()
    # "Search for a profile using any of the identifiers, like for instance EMAIL hbirkenshawa@businessweek.com"
    expect(page.get_by_label("Identity namespace")).to_have_value("Email")
    value = page.get_by_label("Identity value")
    value.fill(demo.TUTORIAL_EMAIL)
    page.get_by_role("button", name="View", exact=True).click()
    results = page.locator(".st-key-profiles_results")
    expect(results).to_contain_text(demo.TUTORIAL_EMAIL)
    expect(page.locator("[data-testid=stMetric]").filter(has_text="Propensity score")).to_have_count(0)
    # "Click the Profile ID to open the profile."
    results.get_by_role("button", name="1", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"Harriet Birkenshaw · profile 1"))).to_be_visible()
    # "Go to Attributes, which contains the output from your Customer AI model."
    page.get_by_role("tab", name="Attributes").click()
    field = f'CustomerAI["{instances.TUTORIAL_INSTANCE}"]'
    cells = page.locator("[data-testid=stDataFrame] td[role=gridcell]")
    expect(cells.filter(has_text=f"{field}.score").first).to_be_attached()
    expect(cells.filter(has_text=f"{field}.bucket").first).to_be_attached()
    # "Scroll down to see the Propensity Score as calculated by your Customer AI model."
    score_metric = page.locator("[data-testid=stMetric]").filter(has_text="Propensity score")
    score_metric.scroll_into_view_if_needed()
    shown = score_metric.locator("[data-testid=stMetricValue]").inner_text()
    expect(page.locator("[data-testid=stMetric]").filter(has_text="Bucket")).to_contain_text("High")
    no_exception(page)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "profile")

    with store.connect(db) as con:
        stored = con.execute("SELECT s.score FROM scores s JOIN instances i ON s.run_id = i.current_run_id "
                             "WHERE s.profile_id = 1").fetchall()[0][0]
        saved = con.execute("SELECT count(*) FROM segments WHERE name = ?", [SEGMENT]).fetchall()[0][0]
    assert shown == f"{stored:.1f}"
    assert saved == 1  # one click on Save stored exactly one segment


def test_upload_a_file_and_see_a_malformed_one_refused(app_page: Page, app_server, tmp_path):
    page = app_page
    base, db = app_server
    page.set_default_timeout(TIMEOUT_MS)
    good = tmp_path / "retail-v1.json"
    good.write_text(json.dumps([
        {"_id": "web-1", "timestamp": "2026-10-30T10:00:00Z", "eventType": "commerce.productViews",
         "endUserIDs": {"_experience": {"emailid": {"id": "new.shopper@example.com"}, "mcid": {"id": "77"}}}},
    ]))
    bad = tmp_path / "broken.json"
    bad.write_text('[{"_id": "x", "timestamp": ')
    page.goto(base)
    open_page(page, "Data")
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()

    load_file(page, bad)
    expect(page.get_by_text(re.compile("not valid JSON"))).to_be_visible()
    no_exception(page)

    open_page(page, "Audit log")
    open_page(page, "Data")
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    load_file(page, good)
    expect(page.get_by_text(re.compile(r"Loaded retail-v1\.json as events: 1 events"))).to_be_visible()
    no_exception(page)
    with store.connect(db) as con:
        assert con.execute("SELECT count(*) FROM events WHERE xdm_id = 'web-1'").fetchall()[0][0] == 1

    # The page's default tells the kind from the file: a CRM extract without a timestamp is profiles.
    crm = tmp_path / "crm.csv"
    crm.write_text("email,first_name,loyalty_tier\nnew.shopper@example.com,Noor,gold\n")
    load_file(page, crm)
    expect(page.get_by_text(re.compile(r"Loaded crm\.csv as profiles: 1 events or rows accepted"))).to_be_visible()
    no_exception(page)
    with store.connect(db) as con:
        assert con.execute("SELECT p.first_name, p.loyalty_tier FROM profiles p JOIN identities i USING (profile_id) "
                           "WHERE i.namespace = 'Email' AND i.id_value = 'new.shopper@example.com'"
                           ).fetchall() == [("Noor", "gold")]
        # The refused file was for a dataset of its own, so it left nothing behind: no dataset, no batch.
        assert con.execute("SELECT count(*) FROM datasets WHERE name = 'broken'").fetchall()[0][0] == 0
        assert con.execute("SELECT count(*) FROM batches WHERE status = 'failed'").fetchall()[0][0] == 0



def _parquet_part(events: list[dict]) -> bytes:
    identity_map = pa.map_(pa.string(), pa.list_(pa.struct([("id", pa.string()), ("primary", pa.bool_())])))
    schema = pa.schema([("_id", pa.string()), ("timestamp", pa.timestamp("ms", tz="UTC")),
                        ("eventType", pa.string()), ("identityMap", identity_map)])
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(events, schema=schema), sink)
    return sink.getvalue()


def test_upload_a_zipped_parquet_export_and_see_a_bad_row_named_by_its_part(app_page: Page, app_server, tmp_path):
    page = app_page
    base, db = app_server
    page.set_default_timeout(TIMEOUT_MS)

    def event(number: int, year: int) -> dict:
        return {"_id": f"zip-{number}", "timestamp": dt.datetime(year, 10, 30, 10, tzinfo=dt.timezone.utc),
                "eventType": "commerce.productViews", "identityMap": [("ECID", [{"id": f"zip-ecid-{number}",
                                                                                 "primary": True}])]}

    def export(name: str, second_year: int):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("exportTime=202611010000/part-00000-a-c000.snappy.parquet",
                             _parquet_part([event(1, 2026)]))
            archive.writestr("exportTime=202611010000/part-00001-a-c000.snappy.parquet",
                             _parquet_part([event(2, 2026), event(3, second_year)]))
            archive.writestr("exportTime=202611010000/_SUCCESS", b"")
        return path

    page.goto(base)
    open_page(page, "Data")
    load_file(page, export("bad.zip", 2999))
    expect(page.get_by_text(re.compile(r"Row 3 \(part-00001-a-c000\.snappy\.parquet, row 2\).*timestamp 2999-10-30"
                                       r".* is in the future"))).to_be_visible()
    no_exception(page)
    load_file(page, export("web.zip", 2026))
    expect(page.get_by_text(re.compile(r"Loaded web\.zip as events: 3 events"))).to_be_visible()
    no_exception(page)
    with store.connect(db) as con:
        assert con.execute("SELECT count(*) FROM events WHERE xdm_id LIKE 'zip-%'").fetchall()[0][0] == 3
