"""Debian's Chromium, headless, driven by Playwright: the one browser of the browser tests.

Never a downloaded browser: ``tests/run.sh`` installs Debian's ``chromium``. Every host
name under ``news.test`` resolves to 127.0.0.1, so a test can serve a news site at
``www.news.test`` and the service at ``auth.news.test``: two hosts of one site.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from support.settings import REPOSITORY

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP *.news.test 127.0.0.1",
]
ARTIFACTS = REPOSITORY / "test-artifacts"
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the tests of one module."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def snap(page: Page, name: str) -> None:
    """Save a full-page screenshot to ``test-artifacts/``."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
