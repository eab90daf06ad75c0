"""``preview_every`` at the edge (issue 22): a request field on the image routes and the
``KILN_PREVIEW_EVERY`` setting, both 0-1000; out of range is a 400 in the error shape
naming it (nothing held or charged), or a setting refused at start."""

from __future__ import annotations

import pytest

from serving.core.settings import Settings, SettingsError


@pytest.mark.parametrize("value", [-1, 1001, "5"])
def test_a_bad_preview_every_is_a_400_naming_it(client, value):
    before = client.get("/v1/credits").json()["balance"]
    body = {"model": "tiny-sd15", "prompt": "a kiln", "preview_every": value}
    answer = client.post("/v1/generations", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "preview_every"
    assert client.get("/v1/credits").json()["balance"] == before


def test_the_setting_is_the_default_of_requests_that_do_not_ask():
    assert Settings.from_env({}).generation_defaults.preview_every == 0
    settings = Settings.from_env({"KILN_PREVIEW_EVERY": "5"})
    assert settings.generation_defaults.preview_every == 5
    with pytest.raises(SettingsError, match="KILN_PREVIEW_EVERY"):
        Settings.from_env({"KILN_PREVIEW_EVERY": "1001"})
