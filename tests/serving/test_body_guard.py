"""The body guard in the app, over real sockets: who is calling is known before a body byte
is read, and every route family's byte limit holds for declared and streamed bodies and
for each part of a multipart form (the Serve proxy's copy: tests/e2e/test_body_limits_live.py).

The app runs under uvicorn in a thread with small limits; no model is loaded (the guard
answers first, or the route refuses the request for its own reasons).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from PIL import Image
from raw_http import stream_body
from secrets_for_tests import TEST_SECRET

from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from serving.http.body_guard import BodyCounter, BodyLimits, BodyRefused
from weights.catalog import load_catalog

MiB = 1 << 20
LIMITS = {
    "body_max_json": 1 * MiB,
    "body_max_images": 4 * MiB,
    "image_max_bytes": 512 * 1024,
    "style_max_bytes": 1 * MiB,
    "batch_max_bytes": 256 * 1024,
    "training_image_max_bytes": 256 * 1024,
    "multipart_max_parts": 8,
}
# What can sit in socket buffers and uvicorn's read buffer before a server that reads
# nothing stops the sender (loopback buffers grow to a few MiB).
UNREAD_SLACK = 16 * MiB


class Served:
    def __init__(self, app, host: str, port: int, keys: dict[str, str]):
        self.app, self.host, self.port, self.keys = app, host, port, keys

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def auth(self, who: str = "studio") -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    home: Path = tmp_path_factory.mktemp("guard_home")
    settings = Settings(home=home, secret=TEST_SECRET, **LIMITS)
    catalog = load_catalog(home)
    app = create_app(settings, catalog, LocalModelClient(catalog, device="cpu"))
    state = app.state.kiln
    tenant = state.accounts.create_tenant("studio")
    state.ledger.grant(tenant.id, 100)
    keys = {"studio": state.accounts.create_key(tenant.id).key}
    revoked = state.accounts.create_key(tenant.id)
    state.accounts.revoke(revoked.record.id)
    keys["revoked"] = revoked.key
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Served(app, "127.0.0.1", port, keys)
    server.should_exit = True
    thread.join(10)


def _error(result) -> dict:
    import json

    return json.loads(result.body)["error"]


def _png(size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 90, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_unauthenticated_stream_is_answered_401_before_its_body_is_read(served: Served):
    result = stream_body(served.host, served.port, "/v1/generations", {}, total=300 * MiB)
    assert result.status == 401 and _error(result)["code"] == "missing_api_key"
    assert result.sent < UNREAD_SLACK, f"the server took {result.sent} bytes before 401"
    assert result.closed and result.seconds < 10


@pytest.mark.parametrize("who", ["unknown", "revoked"])
def test_an_unknown_or_revoked_key_is_401_before_the_body(served: Served, who: str):
    headers = {"authorization": "Bearer kiln_not-a-key"} if who == "unknown" else served.auth(who)
    result = stream_body(served.host, served.port, "/v1/styles", headers, total=100 * MiB)
    assert result.status == 401 and _error(result)["code"] == "invalid_api_key"
    assert result.sent < UNREAD_SLACK and result.closed


def test_a_declared_length_over_the_limit_is_413_at_once(served: Served):
    result = stream_body(
        served.host, served.port, "/v1/generations", served.auth(), total=300 * MiB,
        chunked=False,
    )  # fmt: skip
    assert result.status == 413
    error = _error(result)
    assert error["code"] == "request_too_large" and "KILN_BODY_MAX_JSON" in error["message"]
    assert result.sent < UNREAD_SLACK and result.closed


@pytest.mark.parametrize("path", ["/v1/generations", "/v1/agentic/generations", "/v1/pins"])
def test_a_chunked_json_body_is_cut_with_413_as_it_passes_the_limit(served: Served, path: str):
    limit = LIMITS["body_max_json"]
    headers = {**served.auth(), "content-type": "application/json"}
    result = stream_body(served.host, served.port, path, headers, total=300 * MiB)
    assert result.status == 413 and _error(result)["code"] == "request_too_large"
    assert limit <= result.sent < limit + UNREAD_SLACK
    assert result.closed, "the connection is closed after a 413 mid-stream"
    # The server goes on serving.
    assert httpx.get(f"{served.url}/v1/models", headers=served.auth()).status_code == 200


def test_a_streamed_file_part_is_cut_with_413_as_it_passes_its_limit(served: Served):
    boundary = "kilnboundary0123"
    prefix = (
        f'--{boundary}\r\ncontent-disposition: form-data; name="prompt"\r\n\r\nx\r\n'
        f'--{boundary}\r\ncontent-disposition: form-data; name="image"; '
        'filename="a.png"\r\ncontent-type: image/png\r\n\r\n'
    ).encode()
    headers = {**served.auth(), "content-type": f"multipart/form-data; boundary={boundary}"}
    result = stream_body(
        served.host, served.port, "/v1/images/edits", headers, total=300 * MiB, prefix=prefix
    )
    assert result.status == 413, result.response[:300]
    assert (_error(result)["code"], _error(result)["param"]) == ("upload_too_large", "image")
    assert LIMITS["image_max_bytes"] <= result.sent < LIMITS["image_max_bytes"] + UNREAD_SLACK
    assert result.closed


def test_bodies_under_the_limits_reach_their_routes(served: Served):
    headers = served.auth()
    generation = httpx.post(
        f"{served.url}/v1/generations", headers=headers, json={"model": "no-such", "prompt": "x"}
    )
    assert generation.status_code == 404  # the route's own answer, not the guard's
    edit = httpx.post(
        f"{served.url}/v1/images/variations",
        headers=headers,
        files={"image": ("a.png", _png(), "image/png")},
        data={"model": "no-such"},
    )
    assert edit.status_code in (400, 404), edit.text
    assert edit.json()["error"]["code"] not in ("request_too_large", "upload_too_large")


def test_public_routes_need_no_key(served: Served):
    assert httpx.get(f"{served.url}/openapi.json").status_code == 200
    assert httpx.get(f"{served.url}/metrics").status_code == 200
    unsigned = httpx.get(f"{served.url}/v1/files/0123.png")
    assert unsigned.status_code != 401  # a signed URL's HMAC is its credential


def _multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    boundary = "kilnboundary0123"
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{boundary}\r\ncontent-disposition: {disposition}\r\n\r\n".encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _post_form(served: Served, path: str, parts: list[tuple[str, str | None, bytes]]):
    body, content_type = _multipart(parts)
    headers = {**served.auth(), "content-type": content_type}
    return httpx.post(f"{served.url}{path}", headers=headers, content=body)


def test_a_file_part_over_its_limit_is_413_naming_the_field(served: Served):
    # 600 KiB: under the images family's 4 MiB, over one image's 512 KiB.
    big = b"\x89PNG" + b"\0" * (600 * 1024)
    response = _post_form(
        served, "/v1/images/edits", [("prompt", None, b"x"), ("image", "a.png", big)]
    )
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("upload_too_large", "image")
    assert "KILN_IMAGE_MAX_BYTES" in error["message"]


def test_a_text_field_over_a_mebibyte_is_413(served: Served):
    response = _post_form(served, "/v1/images/edits", [("prompt", None, b"x" * (MiB + 1))])
    assert response.status_code == 413
    assert response.json()["error"]["param"] == "prompt"


def test_too_many_parts_is_413(served: Served):
    parts = [("image[]", f"{i}.png", _png(8)) for i in range(LIMITS["multipart_max_parts"] + 1)]
    response = _post_form(served, "/v1/images/edits", parts)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_parts"


def test_a_style_file_over_its_limit_is_413_while_it_streams(served: Served):
    over = b"\0" * (LIMITS["style_max_bytes"] + 1)
    response = _post_form(
        served, "/v1/styles", [("name", None, b"s"), ("model", None, b"tiny-sd15"),
                               ("file", "s.safetensors", over)],
    )  # fmt: skip
    assert response.status_code == 413
    assert response.json()["error"]["param"] == "file"


def test_the_counter_refuses_at_the_first_byte_past_a_limit():
    limits = BodyLimits.of(Settings(secret=TEST_SECRET, **LIMITS))
    json_limit = limits.for_route("POST", "/v1/generations")
    counter = BodyCounter(json_limit, limits, "application/json")
    counter.feed(b"\0" * json_limit.max_bytes)  # exactly the limit is fine
    with pytest.raises(BodyRefused):
        counter.feed(b"\0")
    assert limits.for_route("POST", "/v1/styles/train/").family == "training"
    assert limits.for_route("GET", "/v1/styles").family == "json"
