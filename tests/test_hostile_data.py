"""An attacker who can load files and name things writes emails and phone numbers in the shapes a screen still shows
as such (entities, fullwidth signs, invisible characters, bare digits under a telling label or in a namespace of
their own): a viewer who may not see identities sees none of them, and cannot find them by searching."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cai import ingest, privacy, profiles
from tests.test_access import fresh_caches  # noqa: F401 - the autouse fixture applies here
from tests.test_masking import _rendered, _viewer_page

# Each as a file can write it, and what a viewer sees of it.
DISGUISED = [
    ("zed&#64;entity.example", "z•••&#64;entity.example"),
    ("zed&#x40;entity.example", "z•••&#x40;entity.example"),
    ("zed＠fullwidth.example", "z•••＠fullwidth.example"),
    ("zed%2540twice.example", "z•••%2540twice.example"),
    ("write to zed (at) spelled.example", "write to z••• (at) spelled.example"),
    ("zed\u200b@zero-width.example", "z•••@zero-width.example"),
    # Shown right to left as dez@..., the local part it hides where the masked domain should be.
    ("\u202emoc.elpmaxe.idib@zed", "m•••@zed"),
    ("+44\u200b7700900777", "•••77"),
    ("+44/7700/900778", "•••78"),
    ("call 0044 7700 900779", "call •••79"),
    ("212 555 0177", "•••77"),
    ("Mobile: 07700900555", "Mobile: •••55"),
    ("Phone_E.164: 15550009999", "Phone_E.164: •••99"),
    ("https://shop.test/?tel=07700900555&x=1", "https://shop.test/?tel=•••55&x=1"),
    ("https://shop.test/?to=%2B447700900556", "https://shop.test/?to=•••56"),
    ("{'mobile': '07700900558', 'tier': 'gold'}", "{'mobile': '•••58', 'tier': 'gold'}"),
    ("mobile 07700 900557, office 030 1234 5678", "mobile •••57, office •••78"),
    ("06 12 34 56 78", "•••78"),
    # A batch error quotes a value's first 40 characters: cut right after the @, the rest is still an address.
    ("unparseable timestamp 'shifted column text jane.doe@'", "unparseable timestamp 'shifted column text j•••@'"),
]
# Look alike, but are not personal: they stay as they are.
HARMLESS = ["meet (at) noon.", "hotel: 12345", "Email opens: 12 in 30 days", "order 4412 of 3 items, 129.50",
            "2026-01-05T10:00:00+01:00", "2026-01-05 10:00:00", "01-02-2026", "CRM00000012", "07700900123",
            "Row 3: loyalty_points 12345", "v0.12.34.56"]


@pytest.mark.parametrize("value, masked", DISGUISED)
def test_an_address_or_number_in_disguise_is_masked(value, masked):
    assert privacy.mask_text(value) == masked
    assert privacy.looks_personal(value)


@pytest.mark.parametrize("value", HARMLESS)
def test_text_that_only_looks_alike_is_left_alone(value):
    assert privacy.mask_text(value) == value


@pytest.mark.parametrize("name", ["Telefon", "Telefonnummer", "teléfono", "celular", "móvil", "courriel", "correo"])
def test_contact_details_are_found_by_their_name_in_other_languages(name):
    assert privacy.is_contact_name(name)
    assert privacy.mask_frame(pd.DataFrame({name: ["07700900123"]}))[name].iloc[0] == "•••23"


def test_identities_of_a_namespace_the_app_does_not_know_are_masked_whole():
    frame = pd.DataFrame({"namespace": ["Kontakt", "Line", "ECID", "CRMID"],
                          "identity": ["07700900556", "jane_line_id", "47309871234", "CRM00000012"]})
    assert privacy.mask_frame(frame)["identity"].tolist() == ["•••56", "•••", "47309871234", "CRM00000012"]
    # Attributes keep their own rule: a city is not masked for not being a known namespace.
    attributes = pd.DataFrame({"attribute": ["City", "mobile"], "value": ["San Jose", "07700900456"]})
    assert privacy.mask_frame(attributes)["value"].tolist() == ["San Jose", "•••56"]


BARE = {"Telefon": "15550009999", "Mobile": "07700900555", "Kontakt": "07700900556"}


@pytest.fixture
def disguised_db(trained_db):
    """A profile whose primary identity is a phone number as bare digits, with numbers in namespaces of a file's own,
    and a profile whose names and notes hold every disguise."""
    profile = [{"identityMap": {namespace: [{"id": value, "primary": namespace == "Telefon"}]
                                for namespace, value in BARE.items()},
                "person": {"name": {"firstName": "Quinlan", "lastName": "Probe"}}}]
    ingest.ingest_bytes(trained_db, json.dumps(profile).encode(), "profile.json", kind="profiles")
    names = pd.DataFrame({"crmid": ["CRMDISGUISED"], "first_name": [DISGUISED[0][0]],
                          "last_name": [DISGUISED[2][0]], "city": [DISGUISED[9][0]],
                          "notes": [" ".join(value for value, _ in DISGUISED[3:])]})
    ingest.ingest_bytes(trained_db, names.to_csv(index=False).encode(), "crm.csv", kind="profiles")
    return trained_db


def test_a_viewer_finds_no_disguised_value_on_the_profile_pages(disguised_db):
    shown = []
    for crmid_or_phone in (("Telefon", BARE["Telefon"]), ("CRMID", "CRMDISGUISED")):
        opened = profiles.find(disguised_db, *crmid_or_phone)
        shown.append(_rendered(_viewer_page("app_pages/profiles.py", {"profile": str(opened)})))
    browse = _viewer_page("app_pages/profiles.py", {})
    browse.selectbox(key="profiles_namespace").set_value("ECID")
    browse.text_input(key="profiles_value").input("Quinlan")
    browse.button(key="FormSubmitter:profiles_browse-View").click().run()
    assert not browse.exception
    shown.append(_rendered(browse))
    every = "\n".join(shown)
    # The results name the primary identity by its namespace, its number masked.
    assert "Telefon: •••99" in [text.value for text in browse.text]
    leaks = [value for value in [*BARE.values(), *(value for value, _ in DISGUISED)] if value in every]
    assert leaks == []


def test_a_viewer_cannot_search_for_a_number_split_by_an_invisible_character(disguised_db):
    # The zero-width space is typed too: the search must not confirm the digits one at a time.
    hidden = "+44\u200b7700900777"
    ingest.ingest_bytes(disguised_db, f"crmid,first_name\nCRMZW,{hidden}\n".encode(), "zw.csv", kind="profiles")
    assert not profiles.search(disguised_db, "ECID", "+44\u200b77").empty
    assert profiles.search(disguised_db, "ECID", "+44\u200b77", personal_hits=False).empty
    assert profiles.search(disguised_db, "Kontakt", "0770", by_prefix=False, personal_hits=False).empty


# Shown right to left, "Churn of" + this reads "Churn of ...Buyers" backwards: a name rearranging the sentence it is in.
REORDERING = "\u202eBuyers\u2066 of \u200bjane\u2069"


def test_no_name_reorders_or_hides_text_on_a_page(trained_db):
    from cai import segments
    from tests.test_user_text import _markdown_texts, _page

    segments.create_segment(trained_db, REORDERING, segments.Rule(instance="Product Purchase Propensity"))
    app = _page("app_pages/segments.py", segment=REORDERING)
    assert not app.exception and "Buyers" in app.subheader[0].value
    shown = [*_markdown_texts(app), *app.selectbox(key="segments_selected").options, app.query_params["segment"]]
    assert [text for text in shown if privacy.visible(text) != text] == []
    # The address it puts in the bar opens the segment again.
    assert _page("app_pages/segments.py", segment=app.query_params["segment"]).selectbox(
        key="segments_selected").value == REORDERING


def test_the_command_line_prints_bidirectional_controls_as_escapes(capsys, trained_db):
    from cai import cli, segments

    segments.create_segment(trained_db, REORDERING, segments.Rule(instance="Product Purchase Propensity"))
    assert cli.main(["--db", str(trained_db), "segments", "list"]) == 0
    out = capsys.readouterr().out
    assert "\\u202eBuyers\\u2066 of" in out and not any(control in out for control in "\u202e\u2066\u2069")


@pytest.mark.parametrize("name, file_name", [
    ("Buyers\u202etxt.exe", "Buyerstxt.exe.csv"), ("../../etc/passwd", "_.._etc_passwd.csv"),
    ("Q3: who? <all>", "Q3_ who_ _all_.csv"), ("...", "segment.csv"), ("Ünïcødé ✓ 名前", "Ünïcødé ✓ 名前.csv"),
])
def test_a_download_is_saved_under_a_name_read_as_it_is(name, file_name):
    from cai import segments

    assert segments.export_file_name(name, "csv") == file_name
