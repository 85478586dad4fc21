"""Who is using the app. With OpenID Connect configured in Streamlit's secrets (an ``[auth]`` section) everyone must
sign in; ``[cai] editors`` lists who may change things, and ``[cai] identity_viewers`` who else may see emails and
phone numbers. Without ``[auth]`` the app runs open, for local use, and says so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import streamlit as st

# The entry script imports this module before a first start can show its progress, so pandas (which `cai.privacy`
# and `ui.components` bring: half a second) is imported where it is used, once a page needs it.
if TYPE_CHECKING:
    import pandas as pd

LOCAL_ACTOR = "local"
VIEW_ONLY = "View only: ask an editor to make this change."


@dataclass(frozen=True)
class Viewer:
    email: str | None
    can_edit: bool
    sees_identities: bool
    subject: str | None = None
    email_verified: bool = True

    @property
    def signed_in(self) -> bool:
        return self.email is not None or self.subject is not None

    @property
    def actor(self) -> str:
        """The name the audit log records: the verified email, else the provider's subject id (never the open
        mode's name for a signed-in person)."""
        if self.email and self.email_verified:
            return self.email
        if self.signed_in:
            who = f"sub:{self.subject or 'unknown'}"
            return f"{who} (unverified {self.email})" if self.email else who
        return LOCAL_ACTOR


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
    email = str(st.user.get("email") or "").strip().lower() or None
    subject = str(st.user.get("sub") or "").strip() or None
    settings = _secrets("cai")
    verified = _email_verified(st.user.get("email_verified"), settings)
    if not (email and verified):
        # Rights follow the email; an email the provider has not verified could be anybody's.
        return Viewer(email, can_edit=False, sees_identities=False, subject=subject, email_verified=False)
    editors = _emails(settings.get("editors"))
    can_edit = not editors or email in editors
    return Viewer(email, can_edit, can_edit or email in _emails(settings.get("identity_viewers")), subject)


def _email_verified(claim, settings: dict) -> bool:
    """The token's ``email_verified`` claim; a provider that never sends one (some do not) is trusted only when
    ``[cai] trust_email_without_verified_claim = true``."""
    if claim is None:
        return bool(settings.get("trust_email_without_verified_claim", False))
    return claim is True or str(claim).strip().lower() == "true"


def sidebar(viewer: Viewer) -> None:
    if not viewer.signed_in:
        st.sidebar.warning("Open access: no sign-in is configured, so anyone who can reach this app can view and "
                           "change everything. Configure login before sharing it (see the README).")
        return
    role = "editor" if viewer.can_edit else "viewer" + ("" if viewer.sees_identities else ", identities masked")
    if not viewer.email_verified:
        role = "viewer, identities masked: your sign-in carries no verified email"
    from ui.components import literal

    # The person's own address, unmasked: only they see their sidebar.
    st.sidebar.caption(f"Signed in as {literal(viewer.email or viewer.subject)} ({role})")
    st.sidebar.button("Sign out", key="access_logout", on_click=st.logout)


def shown(viewer: Viewer, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as this viewer may see it (tables, and the data behind charts and their tooltips)."""
    from cai import privacy

    return frame if viewer.sees_identities else privacy.mask_frame(frame)


def shown_text(viewer: Viewer, text) -> str:
    """A text from the data (a name, a message quoting a file) as this viewer may see it."""
    from cai import privacy

    return str(text) if viewer.sees_identities else privacy.mask_text(str(text))


def _option_labels(values, masked: bool) -> dict:
    from cai import privacy

    labels, taken = {}, {}
    for value in dict.fromkeys(values):
        label = privacy.mask_text(str(value)) if masked else privacy.visible(str(value))
        taken[label] = taken.get(label, 0) + 1
        labels[value] = label if taken[label] == 1 else f"{label} ({taken[label]})"
    return labels


def option_labels(viewer: Viewer, values):
    """A ``format_func`` for choices that come from data or from other people (instance, segment and destination
    names, factors): masked for this viewer, without characters that hide or reorder text, and told apart when that
    makes two read alike, since a choice must name one option."""
    labels = _option_labels(values, not viewer.sees_identities)
    return lambda value: labels.get(value, shown_text(viewer, value))


def reference(viewer: Viewer, name: str, names) -> str:
    """How a name goes into the page's address (the address bar, the history, a shared link): as this viewer sees it
    in the page's choices."""
    return option_labels(viewer, names)(name)


def resolve(reference_text: str | None, names) -> str | None:
    """The name a page address refers to: the name itself, or the one a viewer sees as ``reference_text``."""
    names = list(names)
    if reference_text in names:
        return reference_text
    return {label: name for name, label in _option_labels(names, True).items()}.get(reference_text)


def containing_as_shown(viewer: Viewer, frame: pd.DataFrame, column: str, text: str) -> pd.DataFrame:
    """The rows of a search by ``text`` that this viewer can see match it: a search on the raw value would tell a
    viewer, one typed character at a time, what a masked name hides."""
    if viewer.sees_identities or not text:
        return frame
    return frame[shown(viewer, frame[[column]])[column].str.lower().str.contains(text.lower(), regex=False)]


def may_search_by_prefix(viewer: Viewer, namespace: str) -> bool:
    """Prefix search would let a viewer rebuild a masked value one character at a time: viewers get exact
    matches only in namespaces whose identities they see masked (and, elsewhere, no prefix hits on values that look
    personal)."""
    from cai import privacy

    return viewer.sees_identities or not privacy.is_contact_namespace(namespace)


def view_only_note(viewer: Viewer) -> None:
    if not viewer.can_edit:
        st.caption(VIEW_ONLY)
