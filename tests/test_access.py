"""Access control: open by default (and saying so), sign-in when OpenID Connect is configured, an editor allow-list,
masked identities for viewers, and an audit log page that shows who did what."""

from __future__ import annotations

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cai import audit, instances, privacy, segments
from tests.conftest import ROOT
from ui.components import plain

TIMEOUT = 120
pytestmark = pytest.mark.both_backends
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "test-cookie-secret",
        "client_id": "customer-ai", "client_secret": "not-a-real-secret",
        "server_metadata_url": "https://login.example.com/.well-known/openid-configuration"}
EDITOR, VIEWER = "boss@example.com", "analyst@example.com"


@pytest.fixture(autouse=True)
def fresh_caches():
    import streamlit as st

    st.cache_data.clear()
    yield
    st.cache_data.clear()


def _app(user: dict | None = None, identity_viewers: tuple[str, ...] = ()) -> AppTest:
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    if user is not None:
        app.secrets["auth"] = AUTH
        app.secrets["cai"] = {"editors": [EDITOR.upper()], "identity_viewers": list(identity_viewers)}
        for key, value in user.items():
            app.user[key] = value
    return app.run()


def _frame_with(app: AppTest, column: str) -> pd.DataFrame:
    return next(frame.value for frame in app.dataframe if column in frame.value.columns)


def _signed_in(email: str, **settings) -> AppTest:
    return _app({"is_logged_in": True, "email": email, "email_verified": True, "sub": f"sub-{email}",
                 "name": email.split("@")[0]}, **settings)


def test_every_page_is_reached_only_through_the_entry_script():
    """A folder named pages/ beside the entry script switches Streamlit into its older multipage mode, where a
    bookmarked page address runs that page alone, skipping sign-in; the pages are routed from app_pages/ instead."""
    entry = (ROOT / "streamlit_app.py").read_text()
    routed = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "app_pages").glob("*.py"))
    assert not (ROOT / "pages").exists()
    assert routed and all(f'st.Page("{page}"' in entry for page in routed)


def test_without_login_configured_the_app_is_open_and_says_so(trained_db):
    app = _app()
    assert not app.exception
    assert any("Open access" in warning.value for warning in app.sidebar.warning)
    assert not app.button(key="instances_run").disabled


def test_with_login_configured_nobody_gets_in_without_signing_in(trained_db):
    app = _app({"is_logged_in": False})
    assert not app.exception
    assert app.button(key="access_login").label == "Sign in"
    assert not app.dataframe and not app.selectbox
    assert [title.value for title in app.title] == ["Customer AI"]


def test_a_viewer_sees_everything_but_can_change_nothing(trained_db):
    app = _signed_in(VIEWER)
    assert not app.exception
    assert app.button(key="instances_run").disabled and app.button(key="instances_clone").disabled
    # The person's own email is plain text: escaped, so the browser's Markdown cannot make a mailto: link of it
    # (tests/e2e/test_user_text_in_browser.py shows an escaped email stays text in Chromium).
    captions = [caption.value for caption in app.sidebar.caption]
    assert any(plain(VIEWER) in caption and "viewer" in caption for caption in captions)
    assert not any(VIEWER in caption for caption in captions)
    builder = app.switch_page("app_pages/segment_builder.py").run()
    assert builder.button(key="builder_save").disabled
    data = app.switch_page("app_pages/data.py").run()
    assert not data.exception and data.metric[0].value == "6,000"


def test_a_viewer_sees_emails_and_phones_masked(trained_db):
    app = _signed_in(VIEWER)
    app.query_params.update({"namespace": "Email", "value": "hbirkenshawa@businessweek.com"})
    profile = app.switch_page("app_pages/profiles.py").run()
    assert not profile.exception
    identities = _frame_with(profile, "namespace")
    shown = dict(zip(identities["namespace"], identities["identity"]))
    assert shown["Email"] == "h•••@businessweek.com"
    assert "hbirkenshawa" not in " ".join(identities["identity"])
    assert all(value.startswith("•••") for value in identities.loc[identities["namespace"] == "Phone", "identity"])
    assert any(not value.startswith("•••") for value in identities.loc[identities["namespace"] == "ECID", "identity"])


def test_an_identity_viewer_sees_emails_unmasked(trained_db):
    app = _signed_in(VIEWER, identity_viewers=(VIEWER,))
    assert app.button(key="access_logout").label == "Sign out"
    app.query_params.update({"namespace": "Email", "value": "hbirkenshawa@businessweek.com"})
    profile = app.switch_page("app_pages/profiles.py").run()
    assert "hbirkenshawa@businessweek.com" in _frame_with(profile, "namespace")["identity"].tolist()


def test_an_editors_changes_are_audited_under_their_email(trained_db):
    app = _signed_in(EDITOR)
    assert not app.button(key="instances_run").disabled
    app.button(key="instances_clone").click().run()
    assert not app.exception
    log = audit.entries(trained_db, actor=EDITOR)
    assert log["action"].tolist() == ["create"] and "copy" in log["object_name"][0].lower()
    page = app.switch_page("app_pages/audit.py").run()
    assert not page.exception
    assert EDITOR in _frame_with(page, "actor")["actor"].tolist()


def test_audit_log_filters_by_person_and_action(trained_db):
    segments.create_segment(trained_db, "Audited", segments.bucket_rule(instances.TUTORIAL_INSTANCE, "high", 25, 75),
                            actor="someone@example.com")
    assert audit.entries(trained_db, actor="someone@example.com")["object_name"].tolist() == ["Audited"]
    assert audit.entries(trained_db, action="run")["object_name"].unique().tolist() == [instances.TUTORIAL_INSTANCE]
    assert audit.entries(trained_db, object_name="'; DROP TABLE audit_log; --").empty
    assert len(audit.entries(trained_db)) >= 3


def test_masking_rules():
    assert privacy.mask_email("hbirkenshawa@businessweek.com") == "h•••@businessweek.com"
    assert privacy.mask_phone("+1-555-0001234") == "•••34"
    assert privacy.mask_text("Email: a@b.com, Phone: +1 555 123 4567, on 2026-01-05") == (
        "Email: a•••@b.com, Phone: •••67, on 2026-01-05")
    frame = pd.DataFrame({"profile_id": [1], "email": ["x@y.z"], "ecid": ["123-456"]})
    assert privacy.mask_frame(frame).iloc[0].tolist() == [1, "x•••@y.z", "123-456"]


@pytest.mark.parametrize("claims", [
    {"email": EDITOR, "email_verified": False},
    {"email": EDITOR, "email_verified": "false"},
    {"email": EDITOR},
])
def test_an_unverified_email_gets_neither_editor_rights_nor_identities(trained_db, claims):
    app = _app({"is_logged_in": True, "sub": "google-oauth2|1234", **claims}, identity_viewers=(EDITOR,))
    assert not app.exception
    assert app.button(key="instances_run").disabled and app.button(key="instances_clone").disabled
    assert any("no verified email" in caption.value for caption in app.sidebar.caption)
    app.query_params.update({"namespace": "Email", "value": "hbirkenshawa@businessweek.com"})
    profile = app.switch_page("app_pages/profiles.py").run()
    assert not profile.exception
    assert _frame_with(profile, "namespace")["identity"].iloc[0] == "h•••@businessweek.com"


def test_a_provider_without_the_verified_claim_can_be_trusted_by_setting(trained_db):
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    app.secrets["auth"] = AUTH
    app.secrets["cai"] = {"editors": [EDITOR], "trust_email_without_verified_claim": True}
    for key, value in {"is_logged_in": True, "email": EDITOR, "sub": "entra|42"}.items():
        app.user[key] = value
    app.run()
    assert not app.exception and not app.button(key="instances_run").disabled


@pytest.mark.parametrize("claims, recorded", [
    ({"sub": "github|9876", "email": None}, "sub:github|9876"),
    ({"sub": "github|9876", "email": "who@example.com", "email_verified": False},
     "sub:github|9876 (unverified who@example.com)"),
])
def test_a_person_without_a_verified_email_is_recorded_under_their_subject_id(trained_db, claims, recorded):
    from ui import access

    viewer = access.Viewer(claims.get("email"), can_edit=False, sees_identities=False, subject=claims["sub"],
                           email_verified=bool(claims.get("email_verified", False)))
    assert viewer.actor == recorded != access.LOCAL_ACTOR
    app = _app({"is_logged_in": True, **claims})
    assert not app.exception
    assert any(plain(claims["sub"]) in caption.value or plain("who@example.com") in caption.value
               for caption in app.sidebar.caption)
    assert not [warning for warning in app.sidebar.warning if "Open access" in warning.value]


FORMULAS = ['=HYPERLINK("http://evil.example","x")@a.com', "+cmd@b.com", "-2+3@c.com", "@SUM(A1)@d.com"]


def _member_with_formula_emails(db) -> None:
    """One scored member whose emails are formulas, and a segment 'All' holding every member."""
    from cai import ingest, scores, store

    run_id = scores.latest_run(db, instances.TUTORIAL_INSTANCE)["run_id"]
    crmid = store.query_df(db, "SELECT min(id_value) AS crmid FROM identities JOIN scores USING (profile_id) "
                           "WHERE namespace = 'CRMID' AND run_id = ?", [run_id])["crmid"][0]
    frame = pd.DataFrame({"crmid": [crmid] * len(FORMULAS), "email": FORMULAS})
    ingest.ingest_bytes(db, frame.to_csv(index=False).encode(), "formulas.csv", kind="profiles")
    segments.create_segment(db, "All", segments.Rule(instance=instances.TUTORIAL_INSTANCE))


def test_csv_exports_neutralise_formulas_and_parquet_keeps_raw_values(trained_db, tmp_path):
    from cai import scores

    _member_with_formula_emails(trained_db)
    formulas = FORMULAS
    exports = {"segment": lambda out: segments.export(trained_db, "All", out),
               "scores": lambda out: scores.export_scores(trained_db, instances.TUTORIAL_INSTANCE, out)}
    for export in exports.values():
        export(tmp_path / "out.csv")
        export(tmp_path / "out.parquet")
        csv = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
        raw = pd.read_parquet(tmp_path / "out.parquet")
        text_cells = [cell for column in ("email", "ecid", "phone", "crmid", "loyaltyid", "bucket", "factors")
                      for cell in csv[column]]
        assert not any(cell.startswith(privacy.FORMULA_LEADS) for cell in text_cells)
        row = csv.index[csv["email"].str.contains("cmd@b.com", regex=False)][0]
        assert csv["email"][row].startswith("'+cmd@b.com")
        assert raw["email"][row].startswith("+cmd@b.com") and all(value.lower() in raw["email"][row] for value in formulas)
        assert (csv["phone"][csv["phone"] != ""].str.startswith("'+1555")).all()
        assert (raw["phone"].dropna().str.startswith("+1555")).all()
        assert pd.to_numeric(csv["score"]).between(0, 100).all()


def test_a_csv_export_opened_where_lists_are_separated_by_semicolons_holds_no_formula(trained_db, tmp_path):
    """Excel in most European locales splits a .csv at every ';', inside quotes or not; a member's emails are
    exported joined by ';', so each part must be as safe as a cell's start."""
    _member_with_formula_emails(trained_db)
    segments.export(trained_db, "All", tmp_path / "out.csv")
    parts = [part for line in (tmp_path / "out.csv").read_text().splitlines() for part in line.split(";")]
    assert any("+cmd@b.com" in part for part in parts)
    assert [part for part in parts if part.startswith(privacy.FORMULA_LEADS)] == []


@pytest.mark.parametrize("cell, safe", [
    ("=1+1", "'=1+1"), ("+1-555-0100", "'+1-555-0100"), ("-3", "'-3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tTAB", "'\tTAB"), ("\rCR", "'\rCR"), ("a=b", "a=b"), ("", ""),
    ("a@x.com;=1+1", "a@x.com;'=1+1"), ("+1-555-0100;+1-555-0101", "'+1-555-0100;'+1-555-0101"),
    ("x\n@SUM(A1)", "x\n'@SUM(A1)"), ("a; =1", "a;' =1"), ("  =1+1", "'  =1+1"), ("\u00a0@SUM(A1)", "'\u00a0@SUM(A1)"),
    ("\uff1d1+1", "'\uff1d1+1"), ("a;\u3000\uff0bcmd", "a;'\u3000\uff0bcmd"), ("a b=c", "a b=c"), ("  ok", "  ok"),
])
def test_spreadsheet_safe_cells(cell, safe):
    frame = pd.DataFrame({"text": [cell], "number": [-3.5]})
    assert privacy.spreadsheet_safe(frame).iloc[0].tolist() == [safe, -3.5]


def test_spreadsheet_safe_covers_headers_and_category_columns():
    frame = pd.DataFrame({"=cmd": pd.Categorical(["=1+1", "ok"]), "score": [-1.0, 2.0]})
    safe = privacy.spreadsheet_safe(frame)
    assert safe.columns.tolist() == ["'=cmd", "score"]
    assert safe["'=cmd"].tolist() == ["'=1+1", "ok"] and safe["score"].tolist() == [-1.0, 2.0]
