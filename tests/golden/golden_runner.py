"""Running the golden request set through the real app, as a client would.

One app (``serving.http.app.create_app`` over a ``LocalModelClient``: tiny models in this
process, no Ray) and one tenant serve the whole set. Everything is set up over HTTP, with
the admin key: the tenant, its credits and key, the two LoRA styles (``POST /v1/styles``,
artist with the admin key, private with the tenant's) and the two pins (``POST
/v1/pins``), so the run leans on no internal object the core refactor may move. The
batch line runs through ``serving.ray.batch.worker.BatchWorker.run_line`` in this process
(as ``tests/batch`` does), on the same KILN_HOME and tenant.

Requests run on first ask and are cached (a test of one request runs only it and the
requests whose assets it names), in any order: each is seeded and a model's adapters
are set at the start of every call, so order must not matter.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fastapi.testclient import TestClient
from golden_requests import BY_NAME, GoldenRequest, input_b64, input_png
from secrets_for_tests import TEST_ADMIN_KEY, TEST_SECRET

from serving.core.accounts import prepare_admin
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app

_PLACEHOLDER = re.compile(r"\{(asset|style|pin):([a-z0-9_]+)\}")
# Fields of an answer that differ on every run (ids, times, file hashes of PNGs that
# carry the asset id, URLs holding ids) or are not the image's behaviour (timings).
_VOLATILE = {
    "id", "asset_id", "created", "b64_json", "url", "generation_id", "parent_id",
    "style", "sha256", "bytes", "preview_url", "original_url", "license_id", "timings",
}  # fmt: skip


@dataclass(frozen=True)
class Delivered:
    """What one request delivered: the image's bytes and the stable part of the answer."""

    data: bytes
    answer: dict[str, Any]
    asset_id: str | None


class GoldenRun:
    """The app, its tenant, and the results of the requests run so far."""

    def __init__(self, home: Path, catalog: Any, loras: tuple[Path, Path]):
        self.settings = Settings(
            home=home,
            secret=TEST_SECRET,
            admin_key=TEST_ADMIN_KEY,
            # The batch worker sets torch's threads from this: keep the session's.
            torch_threads=torch.get_num_threads(),
        )
        self.catalog = catalog
        # As a server start does (serving.ray.app.build_app): the configured admin key is live.
        prepare_admin(self.settings.database_url, home, TEST_ADMIN_KEY)
        self.app = create_app(self.settings, catalog, LocalModelClient(catalog, device="cpu"))
        self.admin = _client(self.app, TEST_ADMIN_KEY)
        tenant = self._ok(self.admin.post("/v1/admin/tenants", json={"name": "golden"}))
        self.tenant_id = tenant["id"]
        credits = {"amount": 10_000}
        self._ok(self.admin.post(f"/v1/admin/tenants/{self.tenant_id}/credits", json=credits))
        key = self._ok(self.admin.post(f"/v1/admin/tenants/{self.tenant_id}/keys"))["key"]
        self.client = _client(self.app, key)
        self.loras = loras
        self._results: dict[str, Delivered] = {}
        self._named: dict[str, str] = {}  # "style:artist" -> its id, ...
        self._worker: Any = None

    # --- the set-up that requests name ------------------------------------------------

    def _style(self, which: str) -> str:
        lora, client, form = {
            "artist": (self.loras[0], self.admin,
                       {"name": "Ink wash", "kind": "artist", "trigger_words": "inkwash"}),
            "private": (self.loras[1], self.client, {"name": "Our look"}),
        }[which]  # fmt: skip
        files = {"file": (lora.name, lora.read_bytes(), "application/octet-stream")}
        data = {"model": "tiny-sd15", **form}
        return self._ok(client.post("/v1/styles", files=files, data=data))["id"]

    def _pin(self, kind: str) -> str:
        images = [input_b64(f"{kind}_a"), input_b64(f"{kind}_b")]
        body = {"kind": kind, "name": f"golden {kind}", "images": images}
        return self._ok(self.client.post("/v1/pins", json=body))["id"]

    def _resolve(self, value: Any) -> Any:
        """``value`` with its placeholders replaced (golden_requests' module docstring)."""
        if isinstance(value, dict):
            return {k: self._resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v) for v in value]
        if not isinstance(value, str):
            return value
        if value.startswith("$image:"):
            return input_b64(value.removeprefix("$image:"))
        return _PLACEHOLDER.sub(lambda m: self._named_id(m[1], m[2]), value)

    def _named_id(self, kind: str, name: str) -> str:
        if kind == "asset":
            asset_id = self.result(name).asset_id
            assert asset_id is not None, f"{name} made no asset"
            return asset_id
        key = f"{kind}:{name}"
        if key not in self._named:
            self._named[key] = self._style(name) if kind == "style" else self._pin(name)
        return self._named[key]

    # --- running ------------------------------------------------------------------------

    def result(self, name: str) -> Delivered:
        """What request ``name`` delivered (run now unless it ran already)."""
        if name not in self._results:
            self._results[name] = self._run(BY_NAME[name])
        return self._results[name]

    def _run(self, request: GoldenRequest) -> Delivered:
        if request.method == "BATCH":
            return self._run_batch_line(request)
        path = self._resolve(request.path)
        body_json = self._resolve(request.json)
        before = self._balance()
        if request.method == "GET":
            response = self.client.get(path, params=request.params)
        elif request.files is not None:
            files = {field: (f"{name}.png", input_png(name), "image/png")
                     for field, name in request.files.items()}  # fmt: skip
            response = self.client.post(path, data=request.form, files=files)
        else:
            response = self.client.post(path, json=body_json)
        assert response.status_code == 200, f"{request.name}: {response.text[:500]}"
        answer: dict[str, Any] = {
            "status": response.status_code,
            "balance_change": self._balance() - before,
        }
        if request.deliver == "body":
            answer["content_type"] = response.headers["content-type"]
            answer["credits_charged"] = int(response.headers["x-credits-charged"])
            return Delivered(response.content, answer, None)
        body = response.json()
        answer["response"] = _stable(body)
        if request.deliver == "original":
            asset_id = body["asset"]["id"]
            data = self._ok_bytes(self.client.get(f"/v1/assets/{asset_id}/original"))
        else:
            first = body["data"][0]
            asset_id, data = first["asset_id"], base64.b64decode(first["b64_json"])
        answer["asset"] = _stable(self._ok(self.client.get(f"/v1/assets/{asset_id}")))
        return Delivered(data, answer, asset_id)

    def _run_batch_line(self, request: GoldenRequest) -> Delivered:
        from serving.ray.batch.worker import BatchWorker

        if self._worker is None:
            self._worker = BatchWorker(self.settings, self.catalog, self.tenant_id, "golden")
        before = self._balance()
        line = self._worker.run_line(1, request.json)
        assert line.error is None, f"{request.name}: {line.error}"
        answer = {
            "balance_change": self._balance() - before,
            "credits_charged": line.credits_charged,
            "seeds": line.seeds,
            "asset": _stable(self._ok(self.client.get(f"/v1/assets/{line.asset_ids[0]}"))),
        }
        return Delivered(line.images[0], answer, line.asset_ids[0])

    def _balance(self) -> int:
        return self._ok(self.client.get("/v1/credits"))["balance"]

    def close(self) -> None:
        if self._worker is not None:
            self._worker.loop.close()

    @staticmethod
    def _ok(response: Any) -> dict[str, Any]:
        assert response.status_code in (200, 201), response.text[:500]
        return response.json()

    @staticmethod
    def _ok_bytes(response: Any) -> bytes:
        assert response.status_code == 200, response.text[:500]
        return response.content


def _client(app: Any, key: str) -> TestClient:
    # raise_server_exceptions=False: a 500 comes back as a response, as over HTTP.
    return TestClient(
        app, raise_server_exceptions=False, headers={"authorization": f"Bearer {key}"}
    )


def _stable(value: Any) -> Any:
    """The part of an answer that is the same on every run: no ids, times or hashes; of
    lists of images only the first (the delivered one); the agent's diagnostics (score,
    scores, knobs, recipe, plan, trace: floats it computes from pixels, which may move in
    a last digit between machines) are left out."""
    if isinstance(value, dict):
        skip = _VOLATILE | {"score", "scores", "knobs", "recipe", "plan", "trace", "grading_cube"}
        kept = {k: _stable(v) for k, v in value.items() if k not in skip}
        if "data" in kept and isinstance(kept["data"], list):
            kept["data"] = kept["data"][:1]
        return kept
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value
