"""Kiln Studio in a real browser: one live ``kiln serve``, one Chromium, one page.

The server is the real thing: the e2e session's ``kiln serve`` (tests/e2e/conftest.py),
shared with the other live tests; the browser is Debian's Chromium at ``/usr/bin/chromium``,
driven by Playwright (``.ci/run`` installs it; ``playwright install`` is never run: it
downloads). Where Chromium or Playwright is missing the tests skip, except under CI
(``CI=true``), where that fails them. Tests share one signed-in page per module (few
page loads) and each saves a screenshot under ``test-artifacts/studio/`` (git-ignored;
``KILN_TEST_ARTIFACTS`` moves it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_accounts import ADMIN_KEY, create_tenant

CHROMIUM = Path("/usr/bin/chromium")
# What the issue asks Chromium to run with (no sandbox as root in CI; no network
# besides the server; no GPU on CI machines).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
CREDITS = 100_000
ARTIFACTS = (
    Path(os.environ.get("KILN_TEST_ARTIFACTS", Path(__file__).parents[3] / "test-artifacts"))
    / "studio"
)


def _required() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if _required():
        pytest.fail(f"{reason} (CI: .ci/run installs Chromium; pip installs the dev extras)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright's launch options: Debian's Chromium, never a downloaded one."""
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture(scope="module")
def browser(browser_type_launch_args: dict) -> Iterator[Any]:
    """Chromium for one test module, under a Playwright that stops with it.

    Playwright's sync API keeps an asyncio event loop running on the main thread while
    it lives: pytest-playwright's own ``browser`` (session-wide) would leave it running
    through every later test of the session, where ``asyncio.run`` then fails."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(**browser_type_launch_args)
        yield chromium
        chromium.close()


@dataclass
class Studio:
    """The live server of the session (its url and log) and its accounts."""

    url: str
    log: Path

    def tenant(self, name: str, credits: int) -> str:
        """A new tenant's API key, the tenant granted ``credits``."""
        return create_tenant(self.url, name, credits).key


@pytest.fixture(scope="session")
def studio_server(server) -> Studio:
    """The e2e session's live ``kiln serve`` (tests/e2e/conftest.py): the browser tests
    share it rather than start a second server and Ray; their tenants are their own."""
    return Studio(server.url, server.log)


@pytest.fixture(scope="session")
def studio_key(studio_server: Studio) -> str:
    """The key of the session's artist tenant."""
    return studio_server.tenant("studio artist", CREDITS)


@pytest.fixture(scope="session")
def studio_http(studio_server: Studio, studio_key: str) -> Iterator[httpx.Client]:
    """httpx on the live server as the artist (to check what the browser did)."""
    headers = {"authorization": f"Bearer {studio_key}"}
    with httpx.Client(base_url=studio_server.url, headers=headers, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def studio_styles(studio_server: Studio, studio_key: str, tiny_sd15_loras) -> dict[str, dict]:
    """An artist style (admin) whose name holds markup, and a private one (the artist's)."""
    made = {}
    specs = [
        ("artist", "<script>window.__pwned = 1</script> Ink <b>wash</b>", ADMIN_KEY),
        ("private", "My private glaze", studio_key),
    ]
    for (kind, name, key), path in zip(specs, tiny_sd15_loras, strict=True):
        with path.open("rb") as f:
            r = httpx.post(
                f"{studio_server.url}/v1/styles",
                files={"file": (path.name, f, "application/octet-stream")},
                data={"name": name, "model": "tiny-sd15", "kind": kind},
                headers={"authorization": f"Bearer {key}"},
                timeout=120,
            )
        assert r.status_code == 201, r.text
        made[kind] = r.json()
    return made


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def screenshot(page, artifacts: Path, name: str) -> Path:
    """Save the page as ``<name>.png`` among the test artifacts."""
    path = artifacts / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def shot(request: pytest.FixtureRequest, artifacts: Path):
    """Call with the page at the end of a test: its screenshot, named after the test.
    Also saved on failure (the last page state) by the teardown."""
    pages = []

    def take(page) -> Path:
        pages.append(page)
        return screenshot(page, artifacts, request.node.name)

    yield take
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed and pages:
        screenshot(pages[-1], artifacts, f"{request.node.name}-failed")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
