"""The objects the API shows of assets and styles: one shape, in the core, for the
routes and for job results (stored as JSON), written as pydantic writes them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from serving.core.assets.service import Asset
from serving.core.objects import asset_object, style_object, timestamp
from serving.http.assets.protocol import AssetObject
from serving.http.styles.protocol import StyleObject
from styles.record import StyleRecord
from weights.catalog import ProviderTerms

CREATED = datetime(2026, 3, 4, 5, 6, 7, 89000, tzinfo=UTC)
TERMS = ProviderTerms("apache-2.0", "https://example.com/LICENSE", True, False)


def an_asset(**changes) -> Asset:
    fields = dict(
        id="ast_1", tenant_id="ten_1", kind="artist_style", model="tiny-sd15",
        style="sty_1", prompt="a kiln", negative_prompt=None, seed=7,
        params={"steps": 2, "size": (64, 64), "nested": {"a": [1.5]}}, width=64, height=64,
        media_type="image/png", bytes=123, sha256="ab", preview_sha256="cd",
        invisible_watermark="00ff", generation_id="gen_1", created=CREATED, license_id=None,
        parent_id="ast_0", terms=TERMS,
    )  # fmt: skip
    return Asset(**{**fields, **changes})


def a_style(**changes) -> StyleRecord:
    fields = dict(
        id="sty_1", name="Ink", kind="private", owner="ten_1", family="sd15",
        base_model="tiny-sd15", sha256="ef", rank=4, trigger_words=("inkwash",),
        default_strength=1, created=CREATED,
    )  # fmt: skip
    return StyleRecord(**{**fields, **changes})


def test_an_asset_reads_as_the_route_shows_it():
    shown = asset_object(an_asset())
    assert shown == {
        "object": "asset", "id": "ast_1", "kind": "artist_style", "model": "tiny-sd15",
        "style": "sty_1", "prompt": "a kiln", "negative_prompt": None, "seed": 7,
        "params": {"steps": 2, "size": (64, 64), "nested": {"a": [1.5]}},
        "width": 64, "height": 64, "media_type": "image/png", "bytes": 123, "sha256": "ab",
        "invisible_watermark": "00ff", "visible_watermark": True,
        "license": {"state": "required", "license_id": None}, "generation_id": "gen_1",
        "parent_id": "ast_0",
        "terms": {
            "license_id": "apache-2.0", "license_url": "https://example.com/LICENSE",
            "commercial_model_use": True, "commercial_outputs": False,
        },
        "created": "2026-03-04T05:06:07.089000Z",
        "preview_url": "/v1/assets/ast_1/preview", "original_url": "/v1/assets/ast_1/original",
    }  # fmt: skip
    licensed = asset_object(an_asset(kind="base", license_id="lic_1"))
    assert licensed["license"] == {"state": "licensed", "license_id": "lic_1"}
    assert licensed["visible_watermark"] is False


def test_the_wire_models_write_the_same_json():
    for asset in (
        an_asset(),
        an_asset(created=CREATED.replace(microsecond=0), params={}, terms=None),
    ):
        wire = AssetObject.of(asset).model_dump(mode="json")
        assert json.dumps(wire) == json.dumps(asset_object(asset))
    for record in (a_style(), a_style(kind="artist", owner=None, default_strength=0.75)):
        wire = StyleObject.of(record).model_dump(mode="json")
        assert json.dumps(wire) == json.dumps(style_object(record))


def test_timestamps_are_written_as_pydantic_writes_them():
    assert timestamp(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    other = timezone(timedelta(hours=2))
    assert timestamp(datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=other)) == (
        "2026-01-02T03:04:05.000001+02:00"
    )
