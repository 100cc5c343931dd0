"""What every browser test shares: one headless Chromium per module and the folder for screenshots."""

import pytest
from live_app import SERVER_LOGS, SHOTS, launch_chromium, ray_in_use, what_the_page_shows


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, drawing with software GL (live_app.CHROMIUM_FLAGS)."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test says what its tab showed (and keeps a screenshot) and its server's last
    log lines, so a failure on a CI machine explains itself."""
    report = (yield).get_result()
    if report.when != "call" or not report.failed:
        return
    tabs = [value for value in item.funcargs.values() if hasattr(value, "screenshot") and hasattr(value, "url")]
    for tab in tabs:
        try:
            shot = SHOTS / f"FAILED-{item.name}.png"
            tab.screenshot(path=str(shot), full_page=True)
            report.sections.append(("what the tab showed", f"{what_the_page_shows(tab)}\nscreenshot: {shot}"))
        except Exception as exc:  # the tab or browser itself is gone: say so, keep the test's own failure
            report.sections.append(("what the tab showed", f"(could not be read: {exc!r})"))
    if "ray_address" in item.fixturenames:
        try:
            report.sections.append(("the test session's Ray", ray_in_use()))
        except Exception as exc:  # Ray itself is gone: say so, keep the test's own failure
            report.sections.append(("the test session's Ray", f"(could not be read: {exc!r})"))
    server = item.funcargs.get("server")
    if isinstance(server, str) and server in SERVER_LOGS and SERVER_LOGS[server].is_file():
        tail = SERVER_LOGS[server].read_text(errors="replace").splitlines()[-40:]
        report.sections.append(("the server's log, last lines", "\n".join(tail)))
