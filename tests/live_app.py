"""The app as a person gets it: a fresh server process and headless Debian Chromium.

Shared by tests/browser/, tests/hostile/, bench/first_answer.py and docs/make_screenshots.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"  # st.App around app/streamlit_app.py, as ./lab app runs it
SHOTS = ROOT / "screenshots"  # what browser tests saw (printed at the end of a run)
SERVER_LOGS: dict[str, Path] = {}
"""The log of each running server, by its URL: a failed browser test shows its last lines."""

# Software GL (SwiftShader through ANGLE) instead of --disable-gpu: the GPU process composites
# canvases the way a person's browser does, so st.dataframe's grid (a canvas) and WebGL draw.
CHROMIUM_FLAGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                  "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
WEBGL_RENDERER = """() => {
  const gl = document.createElement('canvas').getContext('webgl');
  if (!gl) return null;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  return info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(log: Path, *, env: dict[str, str] | None = None,
                     timeout: float = 90) -> Iterator[str]:
    """Start ``streamlit run app.py`` on a free loopback port, headless.

    Yields the server's URL once ``/_stcore/health`` answers; stops the process afterwards.
    """
    port = free_port()
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--server.fileWatcherType", "none"],
            stdout=out, stderr=subprocess.STDOUT, env=env or os.environ.copy(), cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the app did not start in {timeout:.0f} s:\n{log.read_text()}") from None
                time.sleep(0.2)
        SERVER_LOGS[url] = log
        yield url
    finally:
        SERVER_LOGS.pop(url, None)
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def launch_chromium(playwright):
    """Debian's chromium, headless, drawing with software GL."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)


def wait_until_idle(tab, timeout: float = 120_000) -> None:
    """Wait for Streamlit to finish running the script, as Streamlit's own browser tests do.

    The app's root says its connection and its script's state (``data-test-script-state``:
    ``initial`` before the first run, then ``running``, ``rerunRequested``, ``notRunning``); the
    status widget alone is not enough, for it shows only after a run has lasted a moment, so a
    fresh page's first run looked idle. A short first pause lets a click's rerun begin.
    """
    tab.wait_for_timeout(200)
    tab.wait_for_load_state("networkidle")
    tab.locator('[data-testid="stApp"][data-test-connection-state="CONNECTED"]').wait_for(
        state="attached", timeout=timeout)
    tab.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
        state="attached", timeout=timeout)
    tab.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout
    )


def what_the_page_shows(tab, *, lines: int = 60) -> str:
    """A failed test's evidence: the tab's address, whether the script was still running, and the text
    of its messages, tracebacks, spinners and progress bars (the screen's other text is in the screenshot)."""
    running = tab.locator('[data-testid="stApp"][data-test-script-state="running"]').count() > 0 \
        or tab.locator('[data-testid="stStatusWidget"]').count() > 0
    notes = tab.locator('[data-testid="stAlert"], [data-testid="stException"], [data-testid="stSpinner"], '
                        '[data-testid="stProgress"]')
    shown = [text.strip() for text in notes.all_inner_texts()]
    shown = shown or ["(no message, traceback, spinner or progress bar on the page)"]
    return "\n".join([f"address: {tab.url}", f"the script was {'still running' if running else 'idle'}",
                      *(f"- {text}" for text in shown)][:lines])


def ray_in_use() -> str:
    """What holds the test session's Ray when a test fails: its free CPUs and its placement groups, so a
    job that waited for a CPU another test kept says so."""
    if "ray" not in sys.modules:
        return "(this process has not joined Ray)"
    import ray

    if not ray.is_initialized():
        return "(this process has not joined Ray)"
    total, free = ray.cluster_resources(), ray.available_resources()
    groups = [f"{group.get('name') or group_id[:8]}: {group.get('state')} {group.get('bundles')}"
              for group_id, group in ray.util.placement_group_table().items() if group.get("state") != "REMOVED"]
    return "\n".join([f"CPU free {free.get('CPU', 0):g} of {total.get('CPU', 0):g}, "
                      f"memory free {free.get('memory', 0) / 2**30:.1f} of {total.get('memory', 0) / 2**30:.1f} GiB",
                      f"placement groups not removed: {len(groups)}", *groups])


def picture(locator, *, min_colours: int = 20, settle: float = 30.0):
    """What a person sees of one element, as a Pillow RGB image.

    Scrolls the element into view and takes its screenshot again until it holds at least
    ``min_colours`` colours (a grid or chart still loading is one flat grey box) or ``settle``
    seconds pass; the caller asserts what the picture must show.
    """
    from PIL import Image

    locator.scroll_into_view_if_needed()
    deadline = time.monotonic() + settle
    while True:
        image = Image.open(io.BytesIO(locator.screenshot(animations="disabled"))).convert("RGB")
        if len(image.getcolors(1 << 24)) >= min_colours or time.monotonic() > deadline:
            return image
        time.sleep(0.25)
