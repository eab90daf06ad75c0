"""A second live server, on PostgreSQL, with a model that loads and then always fails.

One ``kiln serve`` for the whole module (its own KILN_HOME, the session's tiny models
linked in, a fresh PostgreSQL schema as ``KILN_DATABASE_URL``, and ``KILN_CATALOG``
adding ``broken-sd15``: the tiny SDXL folder loaded as SD 1.5, which loads but whose UNet
then wants SDXL's added conditioning on every call). The tests talk HTTP only:

- no double spending under 40 concurrent requests, with the ledger on PostgreSQL;
- a failing model releases its own reservation and nothing else, the server stays up;
- text holding NUL, which PostgreSQL's text cannot store, is a 400 that charges nothing;
- a restart on the same database and KILN_HOME loses no key, asset, byte or entry.

The restart test replaces the module's server, so it runs last (pytest keeps file order).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_accounts import (
    ADMIN_KEY,
    assert_error,
    assert_forty_requests_spend_exactly_ten,
    bearer,
    create_tenant,
    credits_of,
)

MODEL = "tiny-sdxl"  # 1 credit an image at 128px
GOOD = "tiny-sd15"  # 1 credit an image at 128px
BROKEN = "broken-sd15"
CHEAP = {"model": MODEL, "prompt": "a kiln", "resolution": "128px", "steps": 1}

BROKEN_CATALOG = """\
[models.broken-sd15]
kind = "base"
family = "sd15"
# An SDXL folder loaded as SD 1.5: it loads, then every generation fails (the UNet
# wants SDXL's added conditioning).
source = "models/tiny-sdxl"
tiny = "sdxl"
aspect_ratios = ["1:1"]
default_steps = 2

[models.broken-sd15.resolutions]
"128px" = 128

[models.broken-sd15.credits]
"128px" = 1

# Not called here: loaded on first use, so each of the module's two starts loads one
# replica fewer on CI's 2 cores.
[models.tiny-instruct]
min_replicas = 0
"""


@dataclass
class PostgresStack:
    """What the module's server runs on, and the server now running on it (conftest's
    ``LiveServer``, started and stopped through ``control``)."""

    control: Any  # conftest's ServerControl
    home: Path
    logs: Path
    env: dict[str, str]
    server: Any = None
    started: int = 0

    def start(self) -> Any:
        log = self.logs / f"kiln-serve-{self.started}.log"  # one log per start
        self.server = self.control.start(self.home, log, self.env)
        self.started += 1
        return self.server

    def stop(self) -> None:
        code = self.control.stop(self.server)
        assert code == 0, f"kiln serve exited with {code} after SIGINT:\n{self.server.log_tail()}"

    def restart(self) -> Any:
        self.stop()
        return self.start()


@pytest.fixture(scope="module")
def postgres_schema_url(postgres_url: str, postgres_schema) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for this module."""
    with postgres_schema(postgres_url, "e2e") as url:
        yield url


@pytest.fixture(scope="module")
def stack(
    catalog, kiln_home: Path, postgres_schema_url: str, server_control, tmp_path_factory
) -> Iterator[PostgresStack]:
    """The module's live server on PostgreSQL; stopped (cleanly) at the end."""
    root = tmp_path_factory.mktemp("pg_server")
    home = root / "home"
    home.mkdir()
    # The session's tiny models, built once: relative catalog sources resolve here.
    (home / "models").symlink_to(kiln_home / "models", target_is_directory=True)
    catalog_file = root / "catalog" / "models.toml"
    catalog_file.parent.mkdir()
    catalog_file.write_text(BROKEN_CATALOG)
    env = {
        "KILN_ADMIN_KEY": ADMIN_KEY,
        "KILN_DATABASE_URL": postgres_schema_url,
        "KILN_CATALOG": str(catalog_file),
    }
    live = PostgresStack(server_control, home, root, env)
    live.start()
    yield live
    live.stop()


def post(url: str, path: str, body: dict, headers: dict) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=120)


def get(url: str, path: str, key: str, **params) -> httpx.Response:
    return httpx.get(f"{url}{path}", params=params, headers=bearer(key), timeout=60)


def assets_of(url: str, key: str) -> list[dict]:
    r = get(url, "/v1/assets", key, limit=100)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_forty_concurrent_requests_from_ten_credits_on_postgres(stack):
    url = stack.server.url
    user = assert_forty_requests_spend_exactly_ten(url, "ten credits on postgres")
    assert len(assets_of(url, user.key)) == 10


def test_a_failing_model_releases_only_its_own_reservation(stack):
    url = stack.server.url
    user = create_tenant(url, "broken model", 10)
    broken = {"model": BROKEN, "prompt": "never", "resolution": "128px", "n": 3}

    # Alone: the whole reservation comes back, nothing is stored.
    r = post(url, "/v1/generations", broken, user.headers)
    assert 500 <= r.status_code < 600, r.text
    assert assert_error(r, r.status_code, "internal_error")["type"] == "server_error"
    credits = credits_of(url, user.key)
    assert (credits["balance"], credits["held"]) == (10, 0)
    entries = list(reversed(credits["entries"]))
    assert [(e["kind"], e["amount"], e["held"]) for e in entries] == [
        ("grant", 10, 0),
        ("reserve", -3, 3),
        ("release", 3, -3),
    ]
    assert assets_of(url, user.key) == []

    # At the same moment as a good request of the same tenant: each settles its own.
    barrier = threading.Barrier(2)

    def send(body: dict) -> httpx.Response:
        barrier.wait()
        return post(url, "/v1/generations", body, user.headers)

    good = {"model": GOOD, "prompt": "fine", "resolution": "128px", "steps": 1}
    with ThreadPoolExecutor(2) as pool:
        failed, ok = pool.map(send, [broken, good])
    assert 500 <= failed.status_code < 600, failed.text
    assert_error(failed, failed.status_code, "internal_error")
    assert ok.status_code == 200 and ok.json()["credits_charged"] == 1, ok.text
    credits = credits_of(url, user.key)
    assert (credits["balance"], credits["held"]) == (9, 0)
    assert sum(e["amount"] for e in credits["entries"]) == credits["balance"]
    by_request: dict[str | None, list[tuple[str, int, int]]] = {}
    for e in reversed(credits["entries"][:4]):  # the two requests' entries, oldest first
        by_request.setdefault(e["reference"], []).append((e["kind"], e["amount"], e["held"]))
    assert by_request == {
        failed.headers["x-request-id"]: [("reserve", -3, 3), ("release", 3, -3)],
        ok.headers["x-request-id"]: [("reserve", -1, 1), ("capture", 0, -1)],
    }
    assets = assets_of(url, user.key)
    assert [(a["id"], a["model"]) for a in assets] == [(ok.json()["data"][0]["asset_id"], GOOD)]

    # The failing replica stays up; the server answers as before.
    assert httpx.get(f"{url}/healthz").status_code == 200
    r = post(url, "/v1/generations", {**good, "seed": 5}, user.headers)
    assert r.status_code == 200, r.text
    # The replica failed the way the catalog entry promises (its log reaches the driver's
    # log a moment later).
    deadline = time.monotonic() + 15
    while "TypeError" not in stack.server.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, stack.server.log_tail()
        time.sleep(0.5)


def test_text_holding_a_nul_character_is_a_400_that_charges_nothing(stack):
    """PostgreSQL's text refuses NUL (0x00); on it these were 500s, a prompt's after
    its model call. Now the prompt and the names are refused before any work, naming
    their field, and an id in a path or a query is refused at its lookup."""
    url = stack.server.url
    user = create_tenant(url, "nul text", 5)
    good = {"model": MODEL, "prompt": "fine", "resolution": "128px", "steps": 1}
    for field in ("prompt", "negative_prompt"):  # tiny-sdxl takes a negative prompt (CFG)
        r = post(url, "/v1/generations", {**good, field: "a\u0000b"}, user.headers)
        assert assert_error(r, 400, "invalid_value")["param"] == field
    openai = {"model": MODEL, "prompt": "a\u0000b", "size": "128x128"}
    r = post(url, "/v1/images/generations", openai, user.headers)
    assert assert_error(r, 400, "invalid_value")["param"] == "prompt"
    r = post(url, "/v1/generations", {**good, "style": "a\u0000b"}, user.headers)
    assert_error(r, 400, "invalid_value")
    for path in ("/v1/assets/a%00b", "/v1/assets?model=a%00b", "/v1/jobs/a%00b"):
        r = httpx.get(f"{url}{path}", headers=user.headers, timeout=60)
        assert_error(r, 400, "invalid_value")
    r = post(url, "/v1/admin/tenants", {"name": "a\u0000b"}, bearer(ADMIN_KEY))
    assert assert_error(r, 400, "invalid_value")["param"] == "name"

    credits = credits_of(url, user.key)
    assert (credits["balance"], credits["held"]) == (5, 0)
    assert [e["kind"] for e in credits["entries"]] == ["grant"]
    assert assets_of(url, user.key) == []
    # The same text without the NUL goes through.
    r = post(url, "/v1/generations", {**good, "prompt": "ab"}, user.headers)
    assert r.status_code == 200 and r.json()["credits_charged"] == 1, r.text


def test_a_restart_loses_nothing(stack):
    url = stack.server.url
    user = create_tenant(url, "survives restarts", 20)
    r = post(url, "/v1/generations", {**CHEAP, "n": 2, "seed": 42}, user.headers)
    assert r.status_code == 200, r.text
    body = {"model": GOOD, "prompt": "openai", "size": "128x128", "steps": 1}
    assert post(url, "/v1/images/generations", body, user.headers).status_code == 200
    before_assets = assets_of(url, user.key)
    assert len(before_assets) == 3
    originals = {}
    for asset in before_assets:
        original = get(url, f"/v1/assets/{asset['id']}/original", user.key)
        assert original.status_code == 200 and original.content, original.text
        originals[asset["id"]] = original.content
    before_credits = credits_of(url, user.key)
    assert before_credits["balance"] == 17

    new_url = stack.restart().url

    assert get(new_url, "/v1/models", user.key).status_code == 200
    assert assets_of(new_url, user.key) == before_assets
    for asset_id, content in originals.items():
        original = get(new_url, f"/v1/assets/{asset_id}/original", user.key)
        assert original.status_code == 200 and original.content == content, asset_id
    assert credits_of(new_url, user.key) == before_credits
    # And it still works: a new image is charged on top of the old ledger.
    r = post(new_url, "/v1/generations", CHEAP, user.headers)
    assert r.status_code == 200 and r.json()["credits_charged"] == 1, r.text
    assert credits_of(new_url, user.key)["balance"] == 16
