"""Browser tests of the console: one headless Chromium (Debian's ``/usr/bin/chromium``) for the session, a
real cloud (``LiveCloud``: uvicorn, embedded worker, SQLite; ``pg_console`` the same on PostgreSQL) seeded
once through its API, a fresh browser context per test logged in as the role it needs. A failing test leaves a screenshot in
``var/test-screenshots/``; with ``EDGEHOUSE_CONSOLE_SCREENSHOTS=<dir>`` each page test also saves the
page it checked there (the README's pictures).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cloud"))  # cloud_testkit, live_cloud, model_testkit

from cloud_testkit import make_settings
from live_cloud import LiveCloud
from model_testkit import write_key
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from seed import Seeded, seed

from cloud.auth import CONSOLE_COOKIE
from tests.helpers.postgres import fresh_database

CHROMIUM = "/usr/bin/chromium"
FAILURES = Path(__file__).resolve().parents[2] / "var" / "test-screenshots"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class Console:
    """The running cloud, what was seeded into it, and browser pages logged in as a role."""

    def __init__(self, cloud: LiveCloud, seeded: Seeded, browser: Browser) -> None:
        self.cloud = cloud
        self.seeded = seeded
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.pages: list[Page] = []

    @property
    def url(self) -> str:
        return self.cloud.url

    def token(self, role: str) -> str:
        return self.seeded.tokens[role]

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}

    def page(self, role: str | None) -> Page:
        """A new page, logged in as ``role`` (None: not logged in)."""
        context = self.browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
        if role is not None:
            context.add_cookies([{"name": CONSOLE_COOKIE, "value": self.token(role), "url": self.url,
                                  "httpOnly": True, "sameSite": "Strict"}])
        context.set_default_timeout(30_000)
        self.contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors  # type: ignore[attr-defined]
        self.pages.append(page)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()
        self.pages.clear()


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveCloud, Seeded]]:
    root = tmp_path_factory.mktemp("console")
    write_key(root / "release.pem")
    settings = make_settings(f"sqlite:///{root / 'cloud.db'}", signing_key_file=root / "release.pem",
                             rollout_tick_s=3600, train_workdir=root / "train")
    with LiveCloud(settings) as cloud:
        yield cloud, seed(cloud.url)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[Any]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def pg_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveCloud, Seeded]]:
    """The same cloud and seed on a throwaway PostgreSQL database (dropped at the end)."""
    root = tmp_path_factory.mktemp("console-pg")
    write_key(root / "release.pem")
    with fresh_database() as url:
        settings = make_settings(url, signing_key_file=root / "release.pem", rollout_tick_s=3600,
                                 train_workdir=root / "train")
        with LiveCloud(settings) as cloud:
            yield cloud, seed(cloud.url)


def _console(request: pytest.FixtureRequest, live: tuple[LiveCloud, Seeded], browser: Browser) -> Iterator[Console]:
    c = Console(live[0], live[1], browser)
    yield c
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        FAILURES.mkdir(parents=True, exist_ok=True)
        for i, page in enumerate(c.pages):
            if not page.is_closed():
                page.screenshot(path=str(FAILURES / f"{request.node.name}-{i}.png"), full_page=True)
    c.close()


@pytest.fixture
def console(request: pytest.FixtureRequest, live: tuple[LiveCloud, Seeded], browser: Browser) -> Iterator[Console]:
    yield from _console(request, live, browser)


@pytest.fixture
def pg_console(request: pytest.FixtureRequest, pg_live: tuple[LiveCloud, Seeded],
               browser: Browser) -> Iterator[Console]:
    yield from _console(request, pg_live, browser)


@pytest.fixture
def shot() -> Callable[[Page, str], None]:
    """Save the page for the README when EDGEHOUSE_CONSOLE_SCREENSHOTS names a directory."""
    target = os.environ.get("EDGEHOUSE_CONSOLE_SCREENSHOTS")

    def take(page: Page, name: str) -> None:
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=False)

    return take
