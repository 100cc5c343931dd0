"""Password tries, counted per client address and in all, across sessions and restarts.

A wait kept in a browser session is gone with a new session: a script that opens one per
guess tried 3.4 passwords a second, about 300,000 a day (issue 23). Here every wrong try is
written to ``<data_dir>/access/tries.sqlite`` with the client's address and the time, and a
try is answered only while both limits hold for the last hour:

- ``TL_PASSWORD_TRIES_PER_ADDRESS`` wrong tries from one address (default 20), and after
  each wrong try from that address a wait that doubles (``wrong_try_delay``: 1, 2, 4 ... 16 s);
- ``TL_PASSWORD_TRIES_PER_HOUR`` wrong tries from all addresses together (default 200), so
  many addresses together still get at most 4,800 guesses a day.

A right password clears its address's wrong tries. Nothing here sleeps: a try that must
wait is refused at once with the time left, so waiting holds no thread of the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tlcore.core.access import wrong_try_delay
from tlcore.core.settings import Settings, load_settings

WINDOW_SECONDS = 3_600.0
"""Wrong tries count for an hour."""
UNKNOWN_ADDRESS = "unknown"
"""The address of a client whose address the server cannot tell (all such clients share one)."""
_LOCK = threading.Lock()
clock = time.time
"""The time a try is counted at (tests put their own clock here)."""


@dataclasses.dataclass(frozen=True)
class TryVerdict:
    """Whether a password try may be checked now.

    Attributes:
        allowed: the try may be checked.
        wait: seconds until the next try is answered (0 when allowed).
        reason: why not, in words, naming the limit and its setting ("" when allowed).
    """

    allowed: bool
    wait: float = 0.0
    reason: str = ""


def _database(settings: Settings) -> Path:
    folder = settings.data_dir / "access"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "tries.sqlite"


@contextlib.contextmanager
def _connection(settings: Settings) -> Iterator[sqlite3.Connection]:
    with _LOCK, contextlib.closing(sqlite3.connect(_database(settings), timeout=10)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE IF NOT EXISTS wrong (address TEXT NOT NULL, at REAL NOT NULL)")
        connection.execute("CREATE INDEX IF NOT EXISTS wrong_address ON wrong (address, at)")
        with connection:
            yield connection


def _address(address: object) -> str:
    """The key wrong tries are counted under: the address as text, at most 64 characters."""
    return (address.strip()[:64] if isinstance(address, str) else "") or UNKNOWN_ADDRESS


def try_verdict(address: str | None) -> TryVerdict:
    """Whether a password try from ``address`` is answered now, under both hourly limits.

    Args:
        address: the client's IP address (``st.context.ip_address``); None or "" when unknown.

    Returns:
        The verdict, with the wait and the limit that holds the try back.
    """
    settings, moment, address = load_settings(), clock(), _address(address)
    since = moment - WINDOW_SECONDS
    with _connection(settings) as db:
        db.execute("DELETE FROM wrong WHERE at < ?", (since,))
        mine = [at for (at,) in db.execute(
            "SELECT at FROM wrong WHERE address = ? ORDER BY at", (address,))]
        everyone = [at for (at,) in db.execute(
            "SELECT at FROM wrong ORDER BY at LIMIT ?", (max(settings.password_tries_per_hour, 1),))]
        total = db.execute("SELECT COUNT(*) FROM wrong").fetchone()[0]
    if total >= settings.password_tries_per_hour:
        wait = everyone[0] + WINDOW_SECONDS - moment if everyone else WINDOW_SECONDS
        return TryVerdict(False, max(wait, 1.0), (
            f"This server answers at most {settings.password_tries_per_hour:,} wrong passwords an hour from "
            f"everyone together (TL_PASSWORD_TRIES_PER_HOUR). Received: {total:,} in the last hour"))
    if len(mine) >= settings.password_tries_per_address:
        wait = mine[0] + WINDOW_SECONDS - moment
        return TryVerdict(False, max(wait, 1.0), (
            f"This server answers at most {settings.password_tries_per_address:,} wrong passwords an hour from "
            f"one address (TL_PASSWORD_TRIES_PER_ADDRESS). Received: {len(mine):,} from yours in the last hour"))
    if mine:
        wait = mine[-1] + wrong_try_delay(len(mine)) - moment
        if wait > 0:
            return TryVerdict(False, wait, (
                f"After {len(mine)} wrong password(s) in a row from one address the next try waits "
                f"{wrong_try_delay(len(mine)):.0f} s. Received: a try {wrong_try_delay(len(mine)) - wait:.0f} s after the last"))
    return TryVerdict(True)


def record_try(address: str | None, right: bool) -> None:
    """Count a wrong try from ``address``, or clear its wrong tries after a right one."""
    settings, address = load_settings(), _address(address)
    with _connection(settings) as db:
        if right:
            db.execute("DELETE FROM wrong WHERE address = ?", (address,))
        else:
            db.execute("INSERT INTO wrong (address, at) VALUES (?, ?)", (address, clock()))
