"""The one mapping from exceptions to OpenAI-shaped error answers."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from pipelines.params import ParamError
from serving.http.errors import KilnError, api_error_for, validation_error
from weights.catalog import UnknownModelError


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


def test_domain_errors_map_to_status_and_param():
    e = api_error_for(ParamError("size", "size '9x9' is not offered"))
    assert (e.status, e.param, e.message) == (400, "size", "size '9x9' is not offered")
    e = api_error_for(UnknownModelError("nope", ["a", "b"]))
    assert (e.status, e.param, e.code) == (404, "model", "model_not_found")
    assert "a, b" in e.message
    e = api_error_for(HTTPException(404))
    assert (e.status, e.type) == (404, "invalid_request_error")
    assert api_error_for(HTTPException(405, "Method Not Allowed")).status == 405


def test_anything_else_is_a_500_that_tells_nothing():
    e = api_error_for(RuntimeError("/secret/path exploded"))
    assert (e.status, e.type) == (500, "server_error")
    assert "secret" not in e.message


def test_ray_backpressure_is_503_with_retry_after():
    from ray.serve.exceptions import BackPressureError

    e = api_error_for(BackPressureError(num_queued_requests=5, max_queued_requests=5))
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
