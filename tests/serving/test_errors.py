"""Errors as values: every domain error carries its answer; HTTP maps the base type once."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from pipelines.oom import OutOfGpuMemory
from pipelines.params import ParamError
from serving.core.accounts.service import UnknownKey
from serving.core.asset_rights import ReferenceLicenseRequired
from serving.core.assets.service import Asset, LicenseRequired, UnknownAsset
from serving.core.errors import KilnError
from serving.core.image_inputs import UnsupportedImageFormat, UploadTooLarge
from serving.core.jobs.service import UnknownJob
from serving.core.ledger.types import IdempotencyConflict, InsufficientCredits, UnknownTenant
from serving.core.licenses.service import LicenseNotRequired, UnknownLicense
from serving.core.lower_errors import kiln_error_for
from serving.core.pagination import UnknownCursor
from serving.core.pins.service import UnknownPin
from serving.core.styles.service import StyleAdminOnly, UnknownStyle
from serving.http.errors import api_error_for, validation_error
from styles.lora_file import StyleFileError, StyleFileTooLarge
from weights.catalog import UNSPECIFIED_TERMS, CatalogError, UnknownModelError


def test_body_has_the_openai_shape():
    body = KilnError(400, "bad n", param="n", code="invalid_value").body()
    assert body == {
        "error": {
            "message": "bad n",
            "type": "invalid_request_error",
            "param": "n",
            "code": "invalid_value",
        }
    }


def _style_asset(asset_id: str = "ast_1") -> Asset:
    return Asset(
        id=asset_id, tenant_id="ten_1", kind="artist_style", model="m", style=None,
        prompt="p", negative_prompt=None, seed=1, params={}, width=8, height=8,
        media_type="image/png", bytes=1, sha256="0", preview_sha256="0",
        invisible_watermark=None, generation_id=None, created=datetime.now(UTC),
        license_id=None,
    )  # fmt: skip


# Each domain error's answer: status, code, param, message (as the API always said it).
DOMAIN_ERRORS = [
    (UnknownAsset("ast_1"), 404, "asset_not_found", None, "no asset 'ast_1'"),
    (UnknownTenant("ten_x"), 404, "tenant_not_found", None, "no tenant 'ten_x'"),
    (UnknownKey("key_x"), 404, "key_not_found", None, "no API key 'key_x'"),
    (UnknownLicense("lic_x"), 404, "license_not_found", None, "no license 'lic_x'"),
    (UnknownStyle("sty_x"), 404, "style_not_found", None, "no style 'sty_x'"),
    (UnknownJob("job_x"), 404, "job_not_found", None, "no job 'job_x'"),
    (UnknownPin("pin_x"), 404, "pin_not_found", None, "no pin 'pin_x'"),
    (UnknownCursor("ast_9"), 400, "invalid_value", "after",
     "no 'ast_9' to page after: not one of your ids"),
    (LicenseRequired("ast_1"), 403, "license_required", None,
     "asset 'ast_1' is a style image: buy its license (POST /v1/assets/ast_1/license) to "
     "download the original"),
    (ReferenceLicenseRequired(_style_asset(), "reference.asset_id"), 403, "license_required",
     "reference.asset_id",
     "reference.asset_id: asset 'ast_1' is an unlicensed artist-style image; buy its license "
     "(POST /v1/assets/ast_1/license) to use it as a reference, pin, image-to-prompt or "
     "agentic source"),
    (LicenseNotRequired("ast_1", "base", UNSPECIFIED_TERMS), 400, "license_not_required", None,
     "asset 'ast_1' is a base image: it is free to download, no license is sold for it; "
     "commercial use is subject to its model provider's terms, which its catalog entry does "
     "not state"),
    (LicenseNotRequired("ast_1", "agentic", None), 400, "license_not_required", None,
     "asset 'ast_1' is a agentic image: it is free to download and use, no license is sold "
     "for it"),
    (StyleAdminOnly("deleting"), 403, "admin_required", None,
     "deleting an artist style needs the admin key"),
    (IdempotencyConflict("k", "body_mismatch"), 409, "idempotency_key_reused",
     "Idempotency-Key", "idempotency key 'k' was used with a different request body"),
    (IdempotencyConflict("k", "in_flight"), 409, "idempotency_key_in_flight",
     "Idempotency-Key", "idempotency key 'k' is still in flight"),
    (UploadTooLarge("image", "image is too big"), 413, "upload_too_large", "image",
     "image is too big"),
    (UnsupportedImageFormat("mask", "a GIF"), 400, "unsupported_image_format", "mask",
     "mask is a GIF: Kiln takes still PNG, JPEG and WebP images"),
]  # fmt: skip


def _name(value: object) -> str | None:
    return type(value).__name__ if isinstance(value, Exception) else None


@pytest.mark.parametrize(("error", "status", "code", "param", "message"), DOMAIN_ERRORS, ids=_name)
def test_domain_errors_carry_their_answer(error, status, code, param, message):
    assert isinstance(error, KilnError)
    assert api_error_for(error) is error and kiln_error_for(error) is error
    assert (error.status, error.code, error.param, error.message) == (status, code, param, message)
    assert str(error) == message


def test_insufficient_credits_tells_the_sdk_not_to_retry():
    e = InsufficientCredits("ten_1", needed=8, available=3)
    assert (e.status, e.code, e.type) == (402, "insufficient_credits", "insufficient_credits")
    assert e.message == "not enough credits: this request needs 8, 3 available"
    assert e.headers == {"x-should-retry": "false"}
    assert (e.needed, e.available) == (8, 3)


def test_an_unsupported_format_is_still_a_param_error():
    assert isinstance(UnsupportedImageFormat("image", "a GIF"), ParamError)


@pytest.mark.parametrize("error", [e[0] for e in DOMAIN_ERRORS]
                         + [InsufficientCredits("ten_1", 8, 3)])  # fmt: skip
def test_domain_errors_cross_processes_whole(error):
    # A Ray worker pickles what it raises; the answer must arrive unchanged.
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert (back.status, back.code, back.param, back.message, back.headers, str(back)) == (
        error.status, error.code, error.param, error.message, error.headers, str(error),
    )  # fmt: skip


def test_lower_layer_errors_are_translated():
    e = api_error_for(ParamError("size", "size '9x9' is not offered"))
    assert (e.status, e.param, e.message) == (400, "size", "size '9x9' is not offered")
    e = api_error_for(UnknownModelError("nope", ["a", "b"]))
    assert (e.status, e.param, e.code) == (404, "model", "model_not_found")
    assert "a, b" in e.message
    e = kiln_error_for(StyleFileTooLarge("the LoRA file is 9 MiB, over the limit"))
    assert (e.status, e.param, e.code) == (413, "file", "upload_too_large")
    e = kiln_error_for(StyleFileError("not a safetensors file"))
    assert (e.status, e.param, e.code) == (400, "file", "invalid_style_file")
    e = kiln_error_for(OutOfGpuMemory("out of GPU memory: 1 image(s) do not fit"))
    assert (e.status, e.code, e.headers["retry-after"]) == (503, "out_of_memory", "10")
    assert e.message == "out of GPU memory: 1 image(s) do not fit; retry later"
    e = kiln_error_for(CatalogError("models.toml: bad entry /srv/models"))
    assert (e.status, e.code) == (500, "internal_error") and "/srv" not in e.message


def test_http_exceptions_keep_their_status():
    e = api_error_for(HTTPException(404))
    assert (e.status, e.type) == (404, "invalid_request_error")
    assert api_error_for(HTTPException(405, "Method Not Allowed")).status == 405


def test_anything_else_is_a_500_that_tells_nothing():
    e = api_error_for(RuntimeError("/secret/path exploded"))
    assert (e.status, e.type) == (500, "server_error")
    assert "secret" not in e.message


def test_ray_backpressure_is_503_with_retry_after():
    from ray.serve.exceptions import BackPressureError

    from serving.ray.errors import core_error

    e = core_error(BackPressureError(num_queued_requests=5, max_queued_requests=5))
    assert isinstance(e, KilnError)
    assert (e.status, e.code) == (503, "overloaded")
    assert int(e.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    "errors, param",
    [
        ([{"loc": ("body", "n"), "msg": "too big", "type": "less_than_equal"}], "n"),
        ([{"loc": ("body", "data", 0, "x"), "msg": "bad", "type": "x"}], "data.0.x"),
        ([{"loc": ("query", "expires"), "msg": "bad", "type": "x"}], "expires"),
        ([{"loc": ("body",), "msg": "Field required", "type": "missing"}], None),
    ],
)
def test_validation_errors_name_the_field_without_body(errors, param):
    e = api_error_for(RequestValidationError(errors))
    assert (e.status, e.param) == (400, param)


def test_malformed_json_and_unknown_fields_read_well():
    e = validation_error(
        [{"loc": ("body", 7), "msg": "JSON decode error", "type": "json_invalid",
          "ctx": {"error": "Expecting value"}}]
    )  # fmt: skip
    assert (e.status, e.param, e.code) == (400, None, "invalid_json")
    assert "Expecting value" in e.message
    e = validation_error([{"loc": ("body", "colour"), "msg": "x", "type": "extra_forbidden"}])
    assert (e.param, e.message) == ("colour", "colour: unknown field")
