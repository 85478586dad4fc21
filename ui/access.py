"""Who is using the app. With OpenID Connect configured in Streamlit's secrets (an ``[auth]`` section) everyone must
sign in; ``[cai] editors`` lists who may change things, and ``[cai] identity_viewers`` who else may see emails and
phone numbers. Without ``[auth]`` the app runs open, for local use, and says so."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from cai import privacy

LOCAL_ACTOR = "local"
VIEW_ONLY = "View only: ask an editor to make this change."


@dataclass(frozen=True)
class Viewer:
    email: str | None
    can_edit: bool
    sees_identities: bool

    @property
    def actor(self) -> str:
        """The name the audit log records."""
        return self.email or LOCAL_ACTOR


def _secrets(section: str) -> dict:
    try:
        return dict(st.secrets.get(section, {}))
    except (FileNotFoundError, st.errors.StreamlitSecretNotFoundError):
        return {}


def _emails(values) -> set[str]:
    return {str(value).strip().lower() for value in values or []}


def login_configured() -> bool:
    return bool(_secrets("auth"))


def current() -> Viewer:
    """The signed-in person and what they may do; shows the sign-in screen and stops when nobody is signed in."""
    if not login_configured():
        return Viewer(None, can_edit=True, sees_identities=True)
    if not st.user.is_logged_in:
        st.title("Customer AI")
        st.info("This deployment holds customer data. Sign in with your work account to continue.")
        provider = _secrets("cai").get("login_provider")
        st.button("Sign in", type="primary", key="access_login",
                  on_click=st.login, args=(provider,) if provider else ())
        st.stop()
    email = str(st.user.get("email") or "").strip().lower()
    settings = _secrets("cai")
    editors = _emails(settings.get("editors"))
    can_edit = not editors or email in editors
    return Viewer(email, can_edit, can_edit or email in _emails(settings.get("identity_viewers")))


def sidebar(viewer: Viewer) -> None:
    if viewer.email is None:
        st.sidebar.warning("Open access: no sign-in is configured, so anyone who can reach this app can view and "
                           "change everything. Configure login before sharing it (see the README).")
        return
    role = "editor" if viewer.can_edit else "viewer" + ("" if viewer.sees_identities else ", identities masked")
    st.sidebar.caption(f"Signed in as {viewer.email} ({role})")
    st.sidebar.button("Sign out", key="access_logout", on_click=st.logout)


def shown(viewer: Viewer, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as this viewer may see it."""
    return frame if viewer.sees_identities else privacy.mask_frame(frame)


def view_only_note(viewer: Viewer) -> None:
    if not viewer.can_edit:
        st.caption(VIEW_ONLY)
