"""Signed, expiring file URLs: good links work without a key, anything else is 404."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from serving.core.errors import KilnError
from serving.core.files.refs import SignedFileRef
from serving.core.files.store import FileStore


def flip(digit: str) -> str:
    """Another hex digit than ``digit``."""
    return "1" if digit == "0" else "0"


def test_signed_url_round_trip_and_refusals(tmp_path):
    store = FileStore(tmp_path, "secret", ttl_s=60)
    file_id = store.save(b"png-bytes", "png")
    url = store.signed_url("http://host:1/", file_id, now=1000.0)
    parts = urlsplit(url)
    assert parts.path == f"/v1/files/{file_id}"
    query = dict(p.split("=") for p in parts.query.split("&"))
    assert query["expires"] == "1060"
    ref = SignedFileRef(file_id, query["expires"], query["sig"])
    path, media = store.resolve(ref, now=1059.0)
    assert path.read_bytes() == b"png-bytes" and media == "image/png"

    bad = [
        # Tampered: the last hex digit always changes (a fixed "0" would not when it is "0").
        SignedFileRef(file_id, query["expires"], query["sig"][:-1] + flip(query["sig"][-1])),
        SignedFileRef(file_id, "1061", query["sig"]),  # extended expiry
        SignedFileRef(file_id, None, query["sig"]),
        SignedFileRef(file_id, query["expires"], None),
        SignedFileRef("../secret.key", query["expires"], query["sig"]),
    ]
    for ref in bad:
        with pytest.raises(KilnError) as info:
            store.resolve(ref, now=1000.0)
        assert info.value.status == 404
    with pytest.raises(KilnError):  # expired
        store.resolve(SignedFileRef(file_id, query["expires"], query["sig"]), now=1061.0)
    other = FileStore(tmp_path, "another secret", ttl_s=60)
    with pytest.raises(KilnError):
        other.resolve(SignedFileRef(file_id, query["expires"], query["sig"]), now=1000.0)


def test_a_valid_signature_for_a_missing_file_is_the_same_404(tmp_path):
    store = FileStore(tmp_path, "secret", ttl_s=60)
    missing = "0" * 32 + ".png"
    expires = int(time.time()) + 30
    with pytest.raises(KilnError) as info:
        store.resolve(SignedFileRef(missing, str(expires), store.sign(missing, expires)))
    assert info.value.message == "file not found or link expired"


def test_files_route_serves_signed_links_only(client: TestClient):
    store = client.app.state.kiln.files
    file_id = store.save(b"\x89PNG fake", "png")
    url = store.signed_url("http://testserver", file_id)
    r = client.get(url)
    assert r.status_code == 200 and r.content == b"\x89PNG fake"
    assert r.headers["content-type"] == "image/png"
    tampered = client.get(url.replace("sig=", "sig=f"))
    assert tampered.status_code == 404 and tampered.json()["error"]["param"] is None
    assert client.get(f"/v1/files/{file_id}").status_code == 404
    unknown = client.get("/v1/files/nope.png?expires=1&sig=2")
    assert unknown.json() == tampered.json()
