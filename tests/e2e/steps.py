"""Steps a person takes in the app, shared by the browser tests."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from cai import instances

TIMEOUT_MS = 60_000
# A run trains a model: seconds on a quiet machine, minutes on a 2-core one shared by other jobs.
RUN_TIMEOUT_MS = 600_000


def shot(page: Page, name: str) -> None:
    """With CAI_SCREENSHOTS=FOLDER set, each step is saved there (this is how docs/ screenshots are made)."""
    folder = os.environ.get("CAI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def no_exception(page: Page) -> None:
    expect(page.locator("[data-testid=stException]")).to_have_count(0)


def open_page(page: Page, menu_entry: str) -> None:
    """Opens a page from the left menu, as a person does (opening a page by its address logs 404s)."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=menu_entry, exact=True).click()


def open_dashboard(page: Page, instance: str = instances.TUTORIAL_INSTANCE) -> None:
    """On the Customer AI page, "click on the instance name to view the dashboard"."""
    page.get_by_role("link", name=instance).first.click()
    expect(page.get_by_role("heading", name=instance)).to_be_visible()
    expect(page.get_by_role("heading", name="Model evaluation")).to_be_visible()


def _figures(page: Page) -> Locator:
    """The open dashboard's figures, in page order: each propensity card (count, share, mean probability, expected
    conversions), then every metric (the cards' again, profiles scored, score date, the evaluation)."""
    cards = ", ".join(f".st-key-dashboard_card_{bucket}" for bucket in ("high", "medium", "low"))
    return page.locator(f"{cards}, [data-testid=stMetric]")


def dashboard_figures(page: Page) -> list[str]:
    """The texts of the open dashboard's figures, read once the whole page has drawn."""
    expect(page.locator(".st-key-dashboard_card_low")).to_contain_text("LOW PROPENSITY")
    expect(page.locator("[data-testid=stMetric]").filter(has_text="Quality")).to_be_visible()
    return _figures(page).all_inner_texts()


def expect_dashboard_figures(page: Page, figures: list[str]) -> None:
    """Waits until the open dashboard shows exactly ``figures`` (fails if it never does)."""
    expect(_figures(page)).to_have_text(figures, use_inner_text=True)


def model_note(page: Page) -> str:
    """The open dashboard's "Show more" line on the model, which says whether the run trained or reused one."""
    page.get_by_text("Show more: definition, data and model").click()
    line = page.get_by_role("listitem").filter(has_text="Model: scikit-learn")
    expect(line).to_be_visible()
    return line.inner_text()


def save_high_propensity_segment(page: Page, name: str) -> str:
    """From the open dashboard: Create Segment on the high card, name it, Save; returns the card's profile count."""
    high_card = page.locator(".st-key-dashboard_card_high")
    card_count = high_card.locator("[data-testid=stMetricValue]").inner_text()
    high_card.get_by_role("button", name="Create Segment").click()
    expect(page.get_by_role("heading", name="Segment builder")).to_be_visible()
    # "You'll see that a segment definition is created automatically."
    expect(page.get_by_text('CustomerAI["Product Purchase Propensity"].score >= 75')).to_be_visible()
    field = page.get_by_label("Segment name")
    expect(field).to_have_value(f"{instances.TUTORIAL_INSTANCE} - Customer AI High Propensity")
    shot(page, "segment-builder")
    # "Give your segment a name ... Click Save."
    field.fill(name)
    field.press("Enter")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", name="Segments", exact=True)).to_be_visible()
    expect(page.get_by_text(f"Saved “{name}” with {card_count} profiles.")).to_be_visible()
    expect(page.get_by_role("heading", name=name)).to_be_visible()  # the page opens on the segment just saved
    no_exception(page)
    return card_count


def wait_until_idle(page: Page) -> None:
    """Until the app's script has finished running: a widget used mid-rerun can be replaced by the rerun's own,
    and what was chosen in it is lost."""
    expect(page.locator("[data-testid=stApp]")).to_have_attribute("data-test-script-state", "notRunning")


def load_file(page: Page, file: Path) -> None:
    """On the Data page: choose ``file`` (its kind told from it, the default) and press Load file."""
    wait_until_idle(page)
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(file))
    expect(page.get_by_text(file.name)).to_be_visible()
    page.get_by_role("button", name="Load file").click()


def run_now(page: Page, instance: str = instances.TUTORIAL_INSTANCE) -> None:
    """On the Customer AI page: Run now on the selected instance, and wait for its result."""
    page.get_by_role("button", name="Run now").click()
    expect(page.get_by_text(re.compile(rf"{re.escape(instance)}: [\d,]+ profiles scored, AUC"))).to_be_visible(
        timeout=RUN_TIMEOUT_MS)
    no_exception(page)


def table_cells(page: Page, containing: str) -> list[str]:
    """The texts of the page's ``st.dataframe`` cells (from its hidden accessible table), once one contains
    ``containing``."""
    cells = page.locator("[data-testid=stDataFrame] td[role=gridcell]")
    expect(cells.filter(has_text=containing).first).to_be_attached()
    return cells.all_inner_texts()
