"""Access for a team, in one place: the password or sign-in screen, read-only mode, run owners,
and what visitors are shown (no server paths, names as plain text).

Off by default (a laptop demo): no password, no sign-in, everyone manages every run.
- ``TL_PASSWORD`` (or ``password = "..."`` in ``.streamlit/secrets.toml``): every page asks for it
  first (``tlcore.check_password``, constant time); wrong tries are limited per client address and in
  all, across sessions and restarts (``tlcore.try_verdict``: TL_PASSWORD_TRIES_PER_ADDRESS and
  TL_PASSWORD_TRIES_PER_HOUR), with a wait that doubles after each wrong try from an address.
- Streamlit's OIDC login (an ``[auth]`` section in the secrets): people sign in instead (``st.login``).
- ``TL_READ_ONLY=1``: predict, look and explore; no Train page, no uploads of models or weights,
  no deletions.
- Visitors have a name: the signed-in login (e-mail), or with the password a name they type on
  the password form (``tlcore.check_person_name``). With a shared password the name is claimed,
  not proven. Runs belong to who started them: only they, or a name in ``TL_ADMINS``, stop or
  delete them (``tlcore.can_manage``), and each person has at most TL_MAX_JOBS_PER_PERSON jobs
  in line and training.
- Server paths are shown only to a browser on the server's own machine, told by its connection
  (``tlcore.is_local_client``), never by the URL the browser reports.
The entrypoint calls ``gate()`` before any page runs.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping

import streamlit as st

import tlcore
from tlcore import check_password, is_local_client, markdown_text, message_text, redact_paths

PASSED, VISITOR = "_access_passed", "_access_visitor"
"""Session-state keys: the password was given; who is here (the name given with it, else this session's id)."""
GIVEN_NAME = "visitor_name"
"""Session-state key: the name a visitor gave in the sidebar when there is no password or sign-in."""
SESSION_PREFIX = "session "
"""How a session with no name is recorded as an owner ("session 0b01f2b4")."""
_log = logging.getLogger("transfer_lab.access")
_LET_IN: set[str] = set()
"""Ids of the browser sessions past the gate in this server process (read by ``ui.upload_gate``)."""
_LET_IN_LOCK = threading.Lock()
_LET_IN_PRUNE_AT = 4_096
"""Past this many ids, those of sessions that have ended are forgotten."""


def _secret(key: str):
    """A value from ``.streamlit/secrets.toml``, or None (also when there is no secrets file)."""
    try:
        return st.secrets.get(key)
    except Exception:  # no secrets file: Streamlit raises, naming where it looked (never shown)
        return None


def password() -> str:
    """The shared password: ``TL_PASSWORD``, else ``password`` in the secrets; "" for none."""
    return tlcore.load_settings().password or str(_secret("password") or "")


def login_configured() -> bool:
    """Whether Streamlit's OIDC login is set up (an ``[auth]`` section in the secrets)."""
    return isinstance(_secret("auth"), Mapping)


def enabled() -> bool:
    """Whether access control is on (a password or a sign-in); off, everyone manages every run."""
    return login_configured() or bool(password())


def read_only() -> bool:
    """``TL_READ_ONLY``: a public demo without training, uploads of models, or deletions."""
    return bool(tlcore.load_settings().read_only)


def _signed_in() -> bool:
    return bool(st.user.get("is_logged_in"))


def user() -> str:
    """Who is here: the login name (e-mail) when signed in, the name given with the password,
    else the name this visitor gave in the sidebar (no access control: it is only a label),
    else this browser session's id (shown as "a visitor who gave no name")."""
    if _signed_in():
        return str(st.user.get("email") or st.user.get("name") or st.user.get("sub") or "")
    if not st.session_state.get(PASSED) and st.session_state.get(GIVEN_NAME):
        try:
            return tlcore.check_person_name(st.session_state[GIVEN_NAME])
        except tlcore.TLError:
            pass  # the sidebar says why; the session's id is used meanwhile
    if VISITOR not in st.session_state:
        st.session_state[VISITOR] = f"{SESSION_PREFIX}{uuid.uuid4().hex[:8]}"
    return st.session_state[VISITOR]


def name_box() -> None:
    """Without a password or sign-in: an optional name, so runs and demos show who started them.

    Nothing checks it (everyone manages everything on such a server); with a password or
    sign-in the name comes from there and this box is not drawn.
    """
    if enabled():
        return
    given = st.text_input("Your name (optional)", key=GIVEN_NAME, max_chars=tlcore.MAX_NAME_LENGTH,
                          placeholder="e.g. Ann",
                          help="Runs and demos you start say \"started by\" this name instead of \"a visitor\". "
                               "Nothing checks it: on this server everyone may stop or delete any run.")
    if given:
        try:
            tlcore.check_person_name(given)
        except tlcore.TLError as exc:
            st.caption(message(exc))


def is_admin() -> bool:
    return tlcore.person_key(user()) in tlcore.admin_names()


def may_manage(run: object) -> bool:
    """Whether the person here may stop or delete ``run`` (a RunRecord or an owner's name)."""
    return not enabled() or tlcore.can_manage(run, user())


def owner_label(owner: str) -> str:
    """Who started a run, in words for a table: "you", their name, or "a visitor who gave no name"."""
    if not owner:
        return "(before owners were kept)"
    if owner.strip().casefold() == user().strip().casefold():
        return "you"
    return "a visitor who gave no name" if owner.startswith(SESSION_PREFIX) else owner


def _connection() -> tuple[str | None, list[tuple[str, str]]]:
    """This session's connection as the server received it: the peer's address and the request's
    headers; (None, []) when unknown (bare mode, a test)."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    if context is None or not Runtime.exists():
        return None, []
    client = Runtime.instance().get_client(context.session_id)
    client_context = getattr(client, "client_context", None)
    if client_context is None:
        return None, []
    return client_context.remote_ip, list(client_context.headers)


def is_local() -> bool:
    """Whether the browser is on the server's own machine, so server paths may be shown.

    Told by the connection (a loopback peer and no reverse proxy's header), never by the URL
    the browser reports (``st.context.url``), which any client may set.
    """
    peer, headers = _connection()
    return is_local_client(peer, headers)


def shown(text: object) -> str:
    """Text for a visitor: server paths replaced by words unless the app is served on localhost."""
    return str(text) if is_local() else redact_paths(str(text))


def message(error: object) -> str:
    """An error's message for a visitor: no server paths, and any names it quotes shown literally."""
    return message_text(shown(error))


def plain(text: object) -> str:
    """A user-supplied name (class, file, run, dataset) as Markdown that shows it literally."""
    return markdown_text(text)


def _providers(auth: Mapping) -> list[str]:
    """Named OIDC providers (``[auth.google]``...); [] when ``[auth]`` itself holds one."""
    if "client_id" in auth:
        return []
    return [name for name, value in auth.items() if isinstance(value, Mapping)]


def _sign_in() -> None:
    st.title("Transfer Lab")
    st.write("Sign in to continue.")
    providers = _providers(_secret("auth") or {})
    for provider in providers or [None]:
        label = f"Sign in with {provider.capitalize()}" if provider else "Sign in"
        st.button(label, type="primary", icon=":material/login:", on_click=st.login,
                  args=(provider,) if provider else (), key=f"login-{provider or 'default'}",
                  help="Opens the sign-in page of this server's provider, then brings you back here.")


def _password_form(expected: str) -> None:
    st.title("Transfer Lab")
    with st.form("access", clear_on_submit=True):
        named = st.text_input("Your name", key="access_name", max_chars=tlcore.MAX_NAME_LENGTH,
                              help="Runs you start are recorded under it: type the same name after a reload "
                                   "to stop or delete them. Anyone with the password may type any name.")
        given = st.text_input("Password", type="password", key="access_password",
                              help="The password this server's team shares; ask whoever runs it.")
        submitted = st.form_submit_button("Enter", type="primary")
    if not submitted:
        return
    try:
        name = tlcore.check_person_name(named)
    except tlcore.TLError as exc:  # checked before the password: a mistyped name costs no try
        st.error(message(exc))
        return
    address = st.context.ip_address
    verdict = tlcore.try_verdict(address)  # per address and in all, across sessions (tlcore.core.tries)
    if not verdict.allowed:
        _log.warning("Password try refused before checking: %s", verdict.reason)
        st.error(f"Too many wrong passwords: try again in {verdict.wait:.0f} s. {verdict.reason}.")
        return
    right = check_password(given, expected)
    tlcore.record_try(address, right)
    if right:
        st.session_state[PASSED], st.session_state[VISITOR] = True, name
        st.rerun()
    wait = tlcore.try_verdict(address).wait
    _log.warning("Wrong password from %s", address or "an unknown address")
    st.error(f"That is not the password. After each wrong try the next answer takes longer "
             f"({wait:.0f} s now).")


def _let_in() -> None:
    """Remember that this browser session is past the gate, so its uploads are accepted."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    if context is None:  # bare mode (a plain Python run): no server, no uploads
        return
    with _LET_IN_LOCK:
        _LET_IN.add(context.session_id)
        if len(_LET_IN) > _LET_IN_PRUNE_AT and Runtime.exists():
            _LET_IN.intersection_update(s for s in list(_LET_IN) if Runtime.instance().is_active_session(s))


def may_upload(session_id: str) -> bool:
    """Whether the server accepts an upload from browser session ``session_id``.

    Without a password or sign-in, every session may; with one, only sessions that
    passed the gate. Called by ``ui.upload_gate`` for every upload request, before
    its body is read, so nothing heavy is reachable before sign-in.
    """
    if not enabled():
        return True
    with _LET_IN_LOCK:
        return session_id in _LET_IN


def gate() -> None:
    """Ask for the password, or a sign-in, before any page; stops the script until given.

    With Streamlit's OIDC login configured, people sign in (the password is not
    asked); otherwise with a password set, each browser session types it once.
    Signed-in people see who they are and a sign-out button in the sidebar.
    """
    if login_configured():
        if not _signed_in():
            _sign_in()
            st.stop()
        _let_in()
        with st.sidebar:
            st.caption(f"Signed in as {plain(user())}" + (" (admin)" if is_admin() else ""))
            st.button("Sign out", on_click=st.logout, key="logout", icon=":material/logout:",
                      help="Ends your sign-in in this browser; your runs stay.")
        return
    expected = password()
    if expected and not st.session_state.get(PASSED):
        _password_form(expected)
        st.stop()
    _let_in()
    if expected:
        st.sidebar.caption(f"Here as {plain(user())}" + (" (admin)" if is_admin() else "")
                           + ", a name given with the shared password")
