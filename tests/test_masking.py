"""Masking is a property of the data: after files put emails and phone numbers in every place a file can put them,
a viewer who may not see identities finds none of them anywhere on any page, in any table, chart, header, message
or option; an identity viewer sees them all."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cai import ingest, instances, privacy, profiles, segments
from cai.errors import ValidationError
from tests.conftest import ROOT
from ui.components import WORD_JOINER
from tests.test_access import AUTH, EDITOR, VIEWER, fresh_caches  # noqa: F401 - the autouse fixture applies here

TIMEOUT = 120
PAGES = ["app_pages/instances.py", "app_pages/dashboard.py", "app_pages/segment_builder.py", "app_pages/segments.py",
         "app_pages/profiles.py", "app_pages/data.py", "app_pages/audit.py"]
# Each personal value a file can bring, and the place it came through.
SECRETS = {
    "profile email identity": "secret.person@private-mail.org",
    "profile phone identity": "+447700900123",
    "a first name that is an email": "jane.doe@hidden.example",
    "a city that is a phone number": "+1 (212) 555-0199",
    "a `mobile` column (JSON attribute, bare digits)": "07700900456",
    "a JSON attribute holding an email": "alt.contact@hidden.example",
    "the second of two addresses in a contact column": "second.address@hidden.example",
    "an XDM EmailAddress namespace": "xdm.person@hidden.example",
    "an XDM Phone_E.164 namespace": "+15550001111",
    "an event's product name": "gift.for.bob@hidden.example",
    "an event's page name": "+33 6 12 34 56 78",
    "an event's tracking code": "track.me@hidden.example",
    "a file name (dataset, batch, audit log)": "carol.export@hidden.example",
    "a rejected value quoted in a batch error": "dave.rejected@hidden.example",
    "a rejected phone quoted in a batch error": "+49 30 1234 5678",
}
TUTORIAL_EMAIL = "hbirkenshawa@businessweek.com"
# The profile phone identity as the file writes it: it is stored, and shown, in the form SECRETS holds.
WRITTEN_PHONE = "+44 7700 900123"


def _seed(db) -> int:
    """Loads the personal values through the real ingestion path; returns the profile the XDM file created."""
    crmid = profiles.identities(db, profiles.find(db, "Email", TUTORIAL_EMAIL))
    crmid = crmid.loc[crmid["namespace"] == "CRMID", "identity"].iloc[0]
    profile_file = pd.DataFrame({
        "crmid": [crmid], "email": [SECRETS["profile email identity"]], "phone": [WRITTEN_PHONE],
        "first_name": [SECRETS["a first name that is an email"]], "city": [SECRETS["a city that is a phone number"]],
        "mobile": [SECRETS["a `mobile` column (JSON attribute, bare digits)"]],
        "backup_contact": [SECRETS["a JSON attribute holding an email"]],
        "other_emails": [f"first.address@hidden.example; {SECRETS['the second of two addresses in a contact column']}"],
    })
    ingest.ingest_bytes(db, profile_file.to_csv(index=False).encode(), "crm-profiles.csv", kind="profiles")
    latest = ingest.store_summary(db)["last_event"]
    events = pd.DataFrame({
        "timestamp": [latest, latest], "event_type": ["web.webpagedetails.pageViews"] * 2,
        "email": [TUTORIAL_EMAIL] * 2, "product_name": [SECRETS["an event's product name"], "Gift card"],
        "page_name": [SECRETS["an event's page name"], "Home"],
        "tracking_code": [SECRETS["an event's tracking code"], "spring"],
    })
    ingest.ingest_bytes(db, events.to_csv(index=False).encode(),
                        f"{SECRETS['a file name (dataset, batch, audit log)']}.csv", kind="events")
    xdm = [{"_id": "xdm-secret-1", "timestamp": latest, "eventType": "web.webpagedetails.pageViews",
            "identityMap": {"EmailAddress": [{"id": SECRETS["an XDM EmailAddress namespace"], "primary": True}],
                            "Phone_E.164": [{"id": SECRETS["an XDM Phone_E.164 namespace"]}]}}]
    ingest.ingest_bytes(db, json.dumps(xdm).encode(), "xdm.json", kind="events")
    rejected = pd.DataFrame({"timestamp": [SECRETS["a rejected value quoted in a batch error"],
                                           SECRETS["a rejected phone quoted in a batch error"]],
                             "event_type": ["search", "search"], "email": [TUTORIAL_EMAIL] * 2})
    with pytest.raises(ValidationError):
        # Into a dataset that exists, so the refused file is kept as a failed batch whose errors quote the values.
        ingest.ingest_bytes(db, rejected.to_csv(index=False).encode(), "rejected.csv", kind="events", dataset="xdm")
    segments.create_segment(db, "Everyone scored", segments.Rule(instance=instances.TUTORIAL_INSTANCE))
    return profiles.find(db, "EmailAddress", SECRETS["an XDM EmailAddress namespace"])


def _rendered(app: AppTest) -> str:
    """Everything the page sent to the browser: every element's and block's message, tables and chart data
    included (Arrow keeps text as UTF-8, so a value in a cell is found as it is)."""
    chunks = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            chunks.append(proto.SerializeToString().decode("utf-8", errors="replace"))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(app._tree)
    return "\n".join(chunks)


def _every_page(identity_viewers: tuple[str, ...], profile_ids: list[int]) -> str:
    texts = []
    for page in PAGES:
        openings = [{}]
        if page == "app_pages/profiles.py":
            openings = [{"namespace": "Email", "value": TUTORIAL_EMAIL},
                        *({"namespace": profiles.PROFILE_ID, "value": str(pid)} for pid in profile_ids),
                        {"namespace": "Email", "value": "secret"}, {"namespace": "Phone", "value": "+44"},
                        {"namespace": "ECID", "value": "jane"}]
        texts += [_rendered(_viewer_page(page, params, identity_viewers)) for params in openings]
    return "\n".join(texts)


def _viewer_page(page: str, params: dict, identity_viewers: tuple[str, ...] = ()) -> AppTest:
    """``page`` opened at ``params`` by a signed-in viewer (who sees identities only if in ``identity_viewers``)."""
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    app.secrets["auth"] = AUTH
    app.secrets["cai"] = {"editors": [EDITOR], "identity_viewers": list(identity_viewers)}
    for key, value in {"is_logged_in": True, "email": VIEWER, "email_verified": True, "sub": "v-1"}.items():
        app.user[key] = value
    app.query_params.update(params)
    app.switch_page(page).run()
    assert not app.exception, (page, params, app.exception)
    return app


@pytest.fixture
def seeded(trained_db):
    tutorial_profile = profiles.find(trained_db, "Email", TUTORIAL_EMAIL)
    return trained_db, [tutorial_profile, _seed(trained_db)]


def test_a_viewer_finds_no_seeded_email_or_phone_on_any_page(seeded):
    _, profile_ids = seeded
    shown = _every_page((), profile_ids)
    leaks = {place: value for place, value in SECRETS.items()
             if value in shown or value.split("@")[0] in shown}
    assert leaks == {}
    # The tutorial's email, the look-up box's example too, is on show only masked.
    assert "h•••@businessweek.com" in shown and TUTORIAL_EMAIL not in shown
    assert "s•••@private-mail.org" in shown and "•••23" in shown


def test_an_identity_viewer_sees_the_same_pages_unmasked(seeded):
    _, profile_ids = seeded
    shown = _every_page((VIEWER,), profile_ids)
    missing = {place: value for place, value in SECRETS.items() if value not in shown}
    assert missing == {}


def test_a_viewer_cannot_rebuild_a_masked_value_by_prefix_search(seeded):
    db, _ = seeded
    assert profiles.search(db, "Email", "secret.p")["profile_id"].tolist()
    for namespace, typed in (("Email", "secret.p"), ("Phone", "+44 77"), ("Email", "jane.doe@"),
                             ("EmailAddress", "xdm.p"), ("ECID", "jane.doe")):
        hits = profiles.search(db, namespace, typed, by_prefix=not privacy.is_contact_name(namespace),
                               personal_hits=False)
        assert hits.empty, (namespace, typed)
    assert not profiles.search(db, "CRMID", "CRM0000000", personal_hits=False).empty


def test_a_viewer_cannot_rebuild_a_phone_number_stored_without_country_code(empty_db):
    # Stored as bare digits, which no phone pattern tells from an account number: the namespace says it.
    ingest.ingest_bytes(empty_db, b"email,phone,first_name\nnum@example.com,555-123-4567,Num\n", "crm.csv",
                        kind="profiles")
    assert profiles.search(empty_db, "Phone", "555-12")["profile_id"].tolist()
    assert profiles.search(empty_db, "Phone", "555-12", personal_hits=False).empty


@pytest.mark.parametrize("value, masked", [
    ("a@b.com", "a•••@b.com"),
    ("Row 2: unparseable timestamp 'dave@x.org'", "Row 2: unparseable timestamp 'd•••@x.org'"),
    ("call +1 (212) 555-0199 now", "call •••99 now"),
    ("https://shop.test/cart?u=jane.doe%40mail.com&x=1", "https://shop.test/cart?u=j•••%40mail.com&x=1"),
    ("(212) 555-0199", "•••99"),
    ("212-555-0199", "•••99"),
    ('{"mobile": "07700900456", "tier": "gold"}', '{"mobile": "•••56", "tier": "gold"}'),
    ("2026-01-05T10:00:00+01:00", "2026-01-05T10:00:00+01:00"),
    ("CRM00000012", "CRM00000012"),
    ("123456789012345678", "123456789012345678"),
    ("order 4412 of 3 items, 129.50", "order 4412 of 3 items, 129.50"),
])
def test_personal_values_are_found_by_what_they_are(value, masked):
    assert privacy.mask_text(value) == masked


@pytest.mark.parametrize("name, contact", [
    ("Email", True), ("EmailAddress", True), ("Phone_E.164", True), ("mobile", True), ("tel", True),
    ("cell_number", True), ("ECID", False), ("CRMID", False), ("LoyaltyID", False), ("city", False),
    ("hotel", False), ("cancelled", False),
])
def test_contact_namespaces_and_columns_are_found_by_name(name, contact):
    assert privacy.is_contact_name(name) is contact


@pytest.mark.parametrize("value, masked", [
    ("jane@doe.com;jsmith@xyzinc.com", "j•••@doe.com;j•••@xyzinc.com"),
    ("['personal.email1@gmail.com', 'work.email1@adobe.com']", "['p•••@gmail.com', 'w•••@adobe.com']"),
    ("jane@doe.com, +1 (212) 555-0199, ann@x.org", "j•••@doe.com, •••99, a•••@x.org"),
])
def test_a_contact_value_holding_several_addresses_has_each_masked(value, masked):
    assert privacy.mask_contact(value) == masked
    assert privacy.mask_frame(pd.DataFrame({"emails": [value]}))["emails"].iloc[0] == masked


def test_a_list_or_object_of_addresses_under_a_contact_key_is_masked_throughout():
    # As Adobe's consent field group writes them: identities by namespace, several per namespace.
    text = json.dumps({"consentPolicy2": {"Email": ["personal.email1@gmail.com", "work.email1@adobe.com"],
                                          "phone": {"home": "4085551234", "work": None}}})
    assert json.loads(privacy.mask_text(text)) == {"consentPolicy2": {"Email": ["p•••@gmail.com", "w•••@adobe.com"],
                                                                      "phone": {"home": "•••34", "work": None}}}


# What other people type or a file names, each holding an address: names are shown everywhere, as page titles,
# choices, chart legends, messages and in the page's address.
TYPED = {
    "an instance name": "Churn of owner.one@names.example",
    "an instance description": "Ask desc.two@names.example",
    "a goal condition's value": "sku.three@names.example",
    "a custom event type from a file": "promo for event.four@names.example",
    "a segment name": "Buyers of seg.five@names.example",
    "a second segment that masks alike": "Buyers of seg.fiver@names.example",
    "a segment description": "Owner desc.six@names.example",
    "a segment rule's value": "country.seven@names.example",
    "a destination name": "feed for dest.eight@names.example",
    "a key of a JSON attribute": "referral.nine@names.example",
}
# Contact details a profile file keeps in its JSON attributes, nested or as a postal address.
NESTED = {"a street line": "345 Park Ave", "a second address's street": "77 Hidden Lane", "a postal code": "95110",
          "a nested mobile number": "07700900999"}


def _seed_typed(db) -> None:
    latest = ingest.store_summary(db)["last_event"]
    custom = pd.DataFrame({"timestamp": [latest] * 3, "event_type": [TYPED["a custom event type from a file"]] * 3,
                           "email": [TUTORIAL_EMAIL] * 3})
    ingest.ingest_bytes(db, custom.to_csv(index=False).encode(), "custom.csv", kind="events")
    crmid = profiles.identities(db, profiles.find(db, "Email", TUTORIAL_EMAIL))
    crmid = crmid.loc[crmid["namespace"] == "CRMID", "identity"].iloc[0]
    xdm = [{"identityMap": {"CRMID": [{"id": crmid}]},
            "homeAddress": {"street1": NESTED["a street line"], "postalCode": NESTED["a postal code"]},
            "shippingAddress": {"street1": NESTED["a second address's street"]},
            "contact": {"preferred": {"mobile": NESTED["a nested mobile number"]}},
            "referrals": {TYPED["a key of a JSON attribute"]: "friend"}}]
    ingest.ingest_bytes(db, json.dumps(xdm).encode(), "profile.json", kind="profiles")
    from cai import destinations, engine
    from cai.instances import Condition, Definition, Goal

    name = TYPED["an instance name"]
    instances.create_instance(db, Definition(
        name=name, description=TYPED["an instance description"],
        goals=(Goal("commerce.purchases", Condition("sku", "!=", TYPED["a goal condition's value"])),),
        custom_events=(TYPED["a custom event type from a file"],)))
    assert engine.run_instance(db, name).error is None
    segments.create_segment(db, TYPED["a segment name"], segments.Rule(
        instance=name, country=TYPED["a segment rule's value"]), description=TYPED["a segment description"])
    segments.create_segment(db, TYPED["a second segment that masks alike"], segments.Rule(instance=name))
    destination = TYPED["a destination name"]
    destinations.create_destination(db, destinations.Destination(destination, "webhook", "https://hooks.invalid/x"))
    from cai import activation

    # Delivered without its secret: the failure, quoting the destination's name, is shown with the segment.
    activation.activate(db, TYPED["a segment name"], destination)
    activation.deliver_pending(db, segment=TYPED["a segment name"])


def _typed_pages(db, identity_viewers: tuple[str, ...] = ()) -> dict[str, AppTest]:
    """Every page, opened by links that name the values (as someone who may see them would share them)."""
    name, segment = TYPED["an instance name"], TYPED["a segment name"]
    openings = {
        "instances": ("app_pages/instances.py", {}),
        "dashboard": ("app_pages/dashboard.py", {"instance": name}),
        "builder": ("app_pages/segment_builder.py", {"instance": name, "bucket": "high"}),
        "segments": ("app_pages/segments.py", {"segment": segment}),
        "profile": ("app_pages/profiles.py", {"profile": str(profiles.find(db, "Email", TUTORIAL_EMAIL))}),
        "data": ("app_pages/data.py", {}),
        "audit": ("app_pages/audit.py", {}),
    }
    apps = {place: _viewer_page(page, params, identity_viewers) for place, (page, params) in openings.items()}
    apps["instances"].selectbox(key="instances_selected").set_value(name).run()
    assert not apps["instances"].exception
    return apps


def _shown_with_address(app: AppTest) -> str:
    return _rendered(app) + "\n" + json.dumps(dict(app.query_params), ensure_ascii=False)


def test_a_viewer_finds_no_address_in_names_people_typed_nor_in_nested_contact_details(trained_db):
    _seed_typed(trained_db)
    apps = _typed_pages(trained_db)
    shown = {place: _shown_with_address(app) for place, app in apps.items()}
    every = "\n".join(shown.values())
    leaks = {place: value for place, value in {**TYPED, **NESTED}.items()
             if value in every or ("@" in value and value.split("@")[0] in every)}
    assert leaks == {}
    # The pages still name what they show, masked, and the page's address holds the masked name.
    title = apps["dashboard"].title[0].value.replace("\\", "").replace(WORD_JOINER, "")
    assert title == "Churn of o•••@names.example"
    assert apps["dashboard"].query_params["instance"] == "Churn of o•••@names.example"
    assert apps["segments"].query_params["segment"] == "Buyers of s•••@names.example"
    # Two names that mask alike stay two choices, each of which opens its own segment.
    options = apps["segments"].selectbox(key="segments_selected").options
    assert len(options) == len(set(options)) and "Buyers of s•••@names.example (2)" in options


def test_a_masked_name_in_the_address_opens_what_it_names_for_everyone(trained_db):
    _seed_typed(trained_db)
    masked = {"instance": "Churn of o•••@names.example", "segment": "Buyers of s•••@names.example (2)"}
    for identity_viewers in ((), (VIEWER,)):
        dashboard = _viewer_page("app_pages/dashboard.py", {"instance": masked["instance"]}, identity_viewers)
        assert not dashboard.error and "names" in dashboard.title[0].value
        opened = _viewer_page("app_pages/segments.py", {"segment": masked["segment"]}, identity_viewers)
        assert opened.selectbox(key="segments_selected").value == TYPED["a second segment that masks alike"]
    # Someone who sees identities gets the names themselves, in the page and its address.
    shown = "\n".join(_shown_with_address(app) for app in _typed_pages(trained_db, (VIEWER,)).values())
    unescaped = shown.replace("\\", "").replace(WORD_JOINER, "")
    assert {place: value for place, value in TYPED.items() if value not in unescaped} == {}


def test_a_viewer_cannot_rebuild_a_masked_name_by_searching_the_audit_log(trained_db):
    _seed_typed(trained_db)
    app = _viewer_page("app_pages/audit.py", {})
    app.text_input(key="audit_name").input("seg.five").run()
    assert not app.exception and not app.dataframe
    app.text_input(key="audit_name").input("Buyers of s").run()
    assert len(app.dataframe[0].value) >= 2


def test_a_table_headed_by_values_from_the_data_or_holding_categories_is_masked_throughout():
    frame = pd.DataFrame({"promo for ann.lee@x.org": [3], "segment": pd.Categorical(["Buyers of bo@x.org"])})
    masked = privacy.mask_frame(frame)
    assert masked.columns.tolist() == ["promo for a•••@x.org", "segment"]
    assert masked["segment"].tolist() == ["Buyers of b•••@x.org"]


@pytest.mark.parametrize("name", ["homeAddress", "shippingAddress", "street1", "postalCode", "zip", "zipCode"])
def test_a_postal_address_is_contact_details(name):
    assert privacy.is_contact_name(name)


def test_json_keys_and_address_lines_are_masked_but_their_numbers_keep_two_digits():
    text = json.dumps({"homeAddress": {"street1": "345 Park Ave", "postalCode": "95110", "primary": True},
                       "referrals": {"ann.lee@x.org": "friend"}})
    assert json.loads(privacy.mask_text(text)) == {
        "homeAddress": {"street1": "•••", "postalCode": "•••10", "primary": True},
        "referrals": {"a•••@x.org": "friend"}}


def test_every_table_and_chart_is_drawn_through_the_sinks_that_mask():
    """``tables.show`` and ``cached.chart`` mask for the viewer; a page calling Streamlit's table or chart elements
    itself would send raw values to the browser of someone who may not see them."""
    direct = (".dataframe(", ".data_editor(", ".table(", ".json(", ".write(", "_chart(")
    sinks = {"tables.py": ".dataframe(", "cached.py": "_chart("}
    for path in [ROOT / "streamlit_app.py", *ROOT.glob("app_pages/*.py"), *ROOT.glob("ui/*.py")]:
        text = path.read_text()
        for call in direct:
            assert call not in text or sinks.get(path.name) == call, (path.name, call)
