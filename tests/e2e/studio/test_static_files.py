"""The Studio's files as the ingress serves them (no browser): the page ``no-cache``,
files under a digest of their contents for a year, a CSP without inline script or style
on each, no key needed, and nothing in the code that parses text as HTML."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from secrets_for_tests import TEST_SECRET

from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from serving.http.studio.routes import CSP, STATIC, StudioFiles
from weights.catalog import load_catalog


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    home = tmp_path_factory.mktemp("studio_static")
    catalog = load_catalog(home)
    app = create_app(Settings(home=home, secret=TEST_SECRET), catalog, LocalModelClient(catalog))
    return TestClient(app)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if self.tags and self.tags[-1][0] in ("script", "style") and data.strip():
            self.text_in_script = True


def test_the_page_is_no_cache_with_a_strict_csp_and_no_inline_code(client: TestClient):
    r = client.get("/")  # no key: the page asks for one
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
    assert "img-src 'self' blob: data:" in CSP
    parser = _Tags()
    parser.feed(r.text)
    assert not parser.text_in_script
    assert not any(tag == "style" for tag, _ in parser.tags)
    assert not any(
        "style" in attrs or any(a.startswith("on") for a in attrs) for _, attrs in parser.tags
    )
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts and all(a.get("src") and a.get("type") == "module" for a in scripts)
    digest = StudioFiles.load().digest
    for url in re.findall(r'(?:src|href)="([^"#]+)"', r.text):
        assert url.startswith(f"/studio/{digest}/"), url


def test_files_are_served_under_their_digest_for_a_year(client: TestClient):
    files = StudioFiles.load()
    for path, data in files.files.items():
        r = client.get(f"/studio/{files.digest}/{path}")
        assert r.status_code == 200, path
        assert r.content == data
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-content-type-options"] == "nosniff"
    assert (
        client.get(f"/studio/{files.digest}/js/main.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    for missing in (
        f"/studio/{'0' * 16}/js/main.js",  # another version's digest: not today's bytes
        f"/studio/{files.digest}/js/nope.js",
        f"/studio/{files.digest}/../routes.py",
        f"/studio/{files.digest}/index.html",  # the page only at /
    ):
        r = client.get(missing)
        assert r.status_code == 404, missing
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_the_digest_changes_with_any_file(tmp_path: Path):
    copy = tmp_path / "static"
    shutil.copytree(STATIC, copy)
    before = StudioFiles.load(copy)
    assert before.digest == StudioFiles.load(STATIC).digest
    (copy / "css" / "studio.css").write_text((copy / "css" / "studio.css").read_text() + "\n")
    after = StudioFiles.load(copy)
    assert after.digest != before.digest
    assert f"/studio/{after.digest}/".encode() in after.page


# What would let text become markup or code: none of it in the Studio's sources. Text
# is set with textContent / Node.append (js/dom.js), attributes with setAttribute.
FORBIDDEN = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
    r"createContextualFragment|DOMParser|srcdoc|javascript:|new EventSource|localStorage|"
    r"setAttribute\(\s*[\"']style"
)


def test_the_sources_never_parse_text_as_html_nor_use_inline_style():
    sources = sorted(STATIC.rglob("*.js"))
    assert sources
    for path in sources:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith(("//", "*", "/*")):
                continue  # comments may name what the code avoids
            assert not FORBIDDEN.search(line), f"{path.name}:{number}: {line.strip()}"
