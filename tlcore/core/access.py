"""Who may do what: the shared password, run owners and admins, and what visitors are shown.

Plain rules with no Streamlit in them; ``ui/access.py`` wires them to the
login screen and the pages. Access is off by default (a laptop demo): no
password, no login, everyone manages every run. ``TL_PASSWORD`` (or Streamlit's
OIDC login) turns it on; ``TL_READ_ONLY=1`` serves a public demo; ``TL_ADMINS``
names the people who manage every run.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from tlcore.core.errors import ConfigError
from tlcore.core.settings import Settings, keras_cache_dir, load_settings

FIRST_DELAY = 1.0
"""Seconds an address waits after its first wrong password; each further wrong try doubles it."""
MAX_DELAY = 16.0
"""The longest wait after a wrong password, in seconds."""
KERAS_CACHE_WORDS = "the server's Keras cache"
DATA_FOLDER_WORDS = "the server's data folder"
ALLOWED_FOLDER_WORDS = "an allowed folder on the server"
SERVER_FOLDER_WORDS = "a folder on the server"
MAX_NAME_LENGTH = 40
"""The longest name a visitor may give on the password form, in characters."""
PROXY_HEADERS = frozenset({"forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip"})
"""Headers a reverse proxy adds when it passes on someone else's request (compared in lower case)."""
_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=^\"'])")
"""ASCII punctuation that Markdown (CommonMark, GFM, math, directives) may read as markup."""
_SHORTCODE = re.compile(r":(?=[\w+-][\w+/-]*:)")
"""A colon that starts something like ``:smile:`` or ``:material/home:`` (replaced after escapes are read)."""


def markdown_text(text: object) -> str:
    """``text`` (a class, file or run name) as Markdown that shows exactly its characters.

    Every ASCII punctuation mark Markdown could read as markup is backslash-escaped,
    so ``**bold** [link](http://x)`` shows as typed: no bold, no link, no image, no
    HTML, no math, no autolink (the escaped colon breaks ``http://``). A colon that
    would start an emoji or icon shortcode (``:smile:``) also gets a zero-width
    space after it, since those are replaced after escapes are read. Line breaks
    become spaces.
    """
    plain = _SHORTCODE.sub(":\u200b", " ".join(str(text).split()))
    return _MARKUP.sub(r"\\\1", plain)


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object, *, quote: str = "") -> str:
    r"""``text`` (a class, file, run or dataset name) on one line that shows every character.

    A backslash and every character ``str.isprintable`` rejects (line breaks of
    every kind: ``\n``, ``\r``, U+0085, U+2028, U+2029, ``\x0b``, ``\x0c``,
    ``\x1c``-``\x1e``; tabs, controls, bidi overrides, zero-width characters) are
    written as Python escapes: ``\\``, ``\n``, ``\x85``, ``\u2028``, ... Printable
    letters of any script stay as they are. The escapes read back with
    ``s.encode("ascii", "backslashreplace").decode("unicode_escape")``.

    Args:
        text: the string.
        quote: ``'"'`` (or ``"'"``) for a Python string literal: that quote is
            escaped too and the result is wrapped in it.
    """
    text = str(text)
    if text.isprintable() and "\\" not in text and (not quote or quote not in text):
        return f"{quote}{text}{quote}"
    shown = []
    for char in text:
        if char in _ESCAPES:
            shown.append(_ESCAPES[char])
        elif char == quote:
            shown.append("\\" + char)
        elif char.isprintable():
            shown.append(char)
        else:
            code = ord(char)
            shown.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                         else f"\\U{code:08x}")
    return quote + "".join(shown) + quote


_MESSAGE_MARKUP = re.compile(r"[\\`*\[\]<>~$|]|(?<!\w)_|_(?!\w)|:(?=//)|(?<=www)\.|@|^[#>+-]|^\d+(?=[.)])")
"""What Markdown could read as markup in a sentence: emphasis, code, links, images, HTML, math,
tables, autolinks (``://``, ``www.``, e-mail), and a line that starts a heading, quote or list."""


def message_text(text: object) -> str:
    """A message (which may quote user-supplied names) as Markdown that shows it literally.

    Lighter than ``markdown_text``, so the message stays readable as source too:
    ``TL_MAX_ARCHIVE_FILES``, ``.zip`` and ``32x32`` are left alone, while
    emphasis, links, images, HTML, math and autolinks are escaped.
    """
    plain = _SHORTCODE.sub(":\u200b", str(text))
    return _MESSAGE_MARKUP.sub(lambda match: "\\" + match.group(0), plain.replace("\r", ""))


def check_password(given: str, expected: str) -> bool:
    """Whether ``given`` is the password, compared in constant time.

    Both are compared as UTF-8 bytes with ``hmac.compare_digest``, so the time
    taken does not tell how many leading characters were right. An empty
    ``expected`` (no password set) never matches.
    """
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def wrong_try_delay(failures: int) -> float:
    """Seconds to wait after an address's ``failures``-th wrong password in a row (0 for none).

    1 s after the first, then doubling (2, 4, 8) up to 16 s: a person who mistypes barely
    notices; ``tlcore.core.tries`` applies it per client address, across sessions.
    """
    if failures <= 0:
        return 0.0
    return min(FIRST_DELAY * 2 ** (failures - 1), MAX_DELAY)


def admin_names(admins: str | Iterable[str] | None = None) -> frozenset[str]:
    """The names in ``TL_ADMINS`` (comma-separated; case and spaces ignored), or in ``admins``."""
    if admins is None:
        admins = load_settings().admins
    parts = admins.split(",") if isinstance(admins, str) else admins
    return frozenset(person_key(part) for part in parts if part and part.strip())


def person_key(name: str | None) -> str:
    """A person's name as compared: spaces around it dropped, case ignored ("Ann " is "ann")."""
    return (name or "").strip().casefold()


def check_person_name(name: object) -> str:
    """A name a visitor gives (on the password form), trimmed; refused unless it is 1 to 40 printable characters.

    With a shared password, the name is what runs are recorded under, what the per-person
    job limit counts and what ``TL_ADMINS`` is matched against. It is claimed, not proven:
    anyone who knows the password may type any name.

    Raises:
        ConfigError: an empty name, one over ``MAX_NAME_LENGTH`` characters, or one with a
            character that does not print (a control character, a line break, an invisible
            format character).
    """
    text = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(text) <= MAX_NAME_LENGTH or not text.isprintable():
        problem = ("no name" if not text else f"{len(text)} characters" if len(text) > MAX_NAME_LENGTH
                   else f"a character that does not print ({_unprintable(text)})")
        raise ConfigError(f"Your name must be 1 to {MAX_NAME_LENGTH} printable characters (letters, digits, "
                          f"spaces, punctuation). Received: {problem}")
    return text


def _unprintable(text: str) -> str:
    return ", ".join(sorted({f"U+{ord(c):04X}" for c in text if not c.isprintable()}))


def can_manage(run: object, user: str, admins: str | Iterable[str] | None = None) -> bool:
    """Whether ``user`` may stop or delete ``run``: its owner, or a name in ``admins``.

    Names are compared as ``person_key`` does (case and surrounding spaces ignored), so
    "Ann" typed on the password form after a reload still manages the runs "ann" started.

    Args:
        run: a ``RunRecord`` (its ``owner``), or the owner's name itself. Runs
            stored before runs had owners have none: only admins manage them.
        user: who asks (a login name, a name given with the password, or a browser session's id).
        admins: names that manage every run; ``TL_ADMINS`` when None.
    """
    owner = person_key(run if isinstance(run, str) else (getattr(run, "owner", "") or ""))
    user = person_key(user)
    if user and user in admin_names(admins):
        return True
    return bool(owner) and bool(user) and hmac.compare_digest(owner.encode("utf-8"), user.encode("utf-8"))


def is_local_client(peer: str | None, headers: Iterable[tuple[str, str]] | Mapping[str, str] = (),
                    *, show_paths: bool | None = None) -> bool:
    """Whether a visitor's browser runs on the server's own machine, so server paths may be shown.

    Decided by the connection, never by what the browser reports (its URL, its Host
    header): the TCP peer ``peer`` (as the server received it; ``st.context.ip_address``
    hides loopback) must be a loopback address, which only a process on this machine
    can be. A reverse proxy on this machine is such a process too, passing on other
    people's requests: any proxy header (``Forwarded``, ``X-Forwarded-For``,
    ``X-Forwarded-Host``, ``X-Real-IP``) makes the visitor not local. A header can only
    hide paths, never show them. A proxy that adds none of them looks local: set
    ``TL_SHOW_SERVER_PATHS=0`` there.

    Args:
        peer: the connection's remote address; None (unknown) is not local.
        headers: the connection's request headers, as pairs or a mapping.
        show_paths: ``TL_SHOW_SERVER_PATHS`` when None; False makes no one local.
    """
    if show_paths is None:
        show_paths = bool(load_settings().show_server_paths)
    if not show_paths or not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    if not (mapped or address).is_loopback:
        return False
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return not any(str(name).strip().lower() in PROXY_HEADERS for name, _ in pairs)


def server_places(settings: Settings | None = None) -> dict[str, str]:
    """Server folders a visitor must not see, each with the words shown instead."""
    settings = settings or load_settings()
    places = {str(keras_cache_dir()): KERAS_CACHE_WORDS,
              str(keras_cache_dir().parent): KERAS_CACHE_WORDS,
              str(settings.data_dir): DATA_FOLDER_WORDS}
    for root in settings.dataset_roots:
        places[str(root)] = ALLOWED_FOLDER_WORDS
        places[os.path.realpath(root)] = ALLOWED_FOLDER_WORDS
    for path in (settings.data_dir, keras_cache_dir()):
        places.setdefault(os.path.realpath(path), places[str(path)])
    places[str(Path(__file__).resolve().parents[2])] = SERVER_FOLDER_WORDS  # where the app is installed
    places[str(Path.home())] = SERVER_FOLDER_WORDS
    return {path: words for path, words in places.items() if len(path) > 1}


_PART = r"\.?[\w@+-]+(?:\.+[\w@+-]+)*"
"""One path component (``.keras``, ``vgg16.h5``), never ending in a dot (a sentence's full stop stays)."""
_END = r"(?![\w@+-]|\.[\w@+-])"
_ABSOLUTE_PATH = re.compile(rf"(?<![\w.:/])/(?:{_PART}/)*{_PART}/?{_END}")
"""An absolute POSIX path that is not part of a URL (``https://host/x`` is left alone)."""


def _shown(words: str, path: str) -> str:
    """Words for a folder, with the file name a path ends in (one with a dot) kept."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return f"{words} ({name})" if "." in name and not name.startswith(".") else words


def redact_paths(text: str, places: Mapping[str, str] | None = None) -> str:
    """``text`` with every server folder replaced by words, for visitors who are not on the server.

    Known folders (the Keras cache, the data folder, allowed dataset folders, the
    app's own folder) become their words ("the server's Keras cache"); any other
    absolute path becomes "a folder on the server". A file name at the end of a
    path is kept ("the server's Keras cache (vgg16_weights.h5)"). URLs are left as they are.
    """
    places = server_places() if places is None else places
    for path in sorted(places, key=len, reverse=True):
        pattern = r"(?<![\w.@+/-])" + re.escape(path.rstrip("/")) + rf"(?:/{_PART})*/?{_END}"
        text = re.sub(pattern, lambda match, words=places[path]: _shown(words, match.group(0)), text)
    return _ABSOLUTE_PATH.sub(lambda match: _shown(SERVER_FOLDER_WORDS, match.group(0)), text)
