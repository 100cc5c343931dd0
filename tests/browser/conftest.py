"""What every browser test shares: one headless Chromium per module and the folder for screenshots."""

import pytest
from live_app import SHOTS, launch_chromium


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, drawing with software GL (live_app.CHROMIUM_FLAGS)."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()
