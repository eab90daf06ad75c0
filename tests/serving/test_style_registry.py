"""Styles in serving: the registry on SQLite and PostgreSQL (``db_url``), and the
``/v1/styles`` routes through the real app: import in both layouts, refusals that store
nothing, admin-only artist styles, isolation of private styles between tenants, and
deletes racing imports of the same bytes (never a style without its file)."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from secrets_for_tests import TEST_SECRET
from sqlalchemy import event, func, select

import serving.core.styles.service as style_service
from pipelines.params import ParamError
from serving.core.ledger import Ledger, UnknownTenant
from serving.core.ledger.schema import styles as styles_table
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.core.styles import StyleAdminOnly, StyleImport, Styles, UnknownStyle
from serving.http.app import create_app
from styles.lora_file import StyleFileError, StyleFileTooLarge, sha256_of

sys.path.insert(0, str(Path(__file__).parents[1] / "styles"))
from lora_makers import fresh_pipeline, kohya_lora, peft_lora  # noqa: E402


@pytest.fixture(scope="module")
def loras(catalog, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """LoRA files for the tiny models: sd15 in both layouts, one for SDXL, one of rank 8."""
    out = tmp_path_factory.mktemp("serving-loras")
    sd15 = str(catalog.get("tiny-sd15").source)
    sdxl = str(catalog.get("tiny-sdxl").source)
    return {
        "kohya": kohya_lora(sd15, "sd15", out / "kohya.safetensors"),
        "peft": peft_lora(sd15, "sd15", out / "peft.safetensors"),
        "sdxl": kohya_lora(sdxl, "sdxl", out / "sdxl.safetensors"),
        "rank8": kohya_lora(sd15, "sd15", out / "rank8.safetensors", rank=8, seed=3),
    }


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, loras) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the refusal says)."""
    out = tmp_path_factory.mktemp("bad-loras")
    pickled = out / "pickle.safetensors"
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(4, 4)}, pickled)
    noise = out / "random.safetensors"
    noise.write_bytes(os.urandom(2048))
    truncated = out / "truncated.safetensors"
    truncated.write_bytes(loras["kohya"].read_bytes()[:-100])
    return {
        "pickle": (pickled, "pickle"),
        "random": (noise, "not a safetensors file"),
        "truncated": (truncated, "truncated"),
        "sdxl on sd15": (loras["sdxl"], "does not fit model 'tiny-sd15'"),
    }


# The registry, on both databases


@pytest.fixture
def ledger(db_url: str):
    with Ledger(db_url) as opened:
        yield opened


@pytest.fixture
def registry(ledger, catalog, tmp_path: Path) -> Styles:
    return Styles(ledger.engine, catalog, tmp_path / "styles", max_bytes=1 << 24, max_rank=4)


def stored_state(registry: Styles) -> tuple[int, list[str]]:
    """(rows in styles, files under the styles folder)."""
    with registry.engine.begin() as conn:
        rows = conn.execute(select(func.count()).select_from(styles_table)).scalar_one()
    files = (
        sorted(p.name for p in registry.styles_dir.glob("*"))
        if registry.styles_dir.exists()
        else []
    )
    return rows, files


def test_registry_isolates_private_styles(registry, ledger, loras):
    alice, bob = ledger.create_tenant("alice").id, ledger.create_tenant("bob").id
    artist = registry.import_file(loras["kohya"], StyleImport("Ink", "tiny-sd15", "artist"), None)
    mine = registry.import_file(
        loras["peft"],
        StyleImport(" Mine ", "tiny-sd15", "private", ("mystyle", " mystyle", "ink"), 0.7),
        alice,
    )
    assert (mine.name, mine.owner, mine.trigger_words, mine.default_strength) == (
        "Mine", alice, ("mystyle", "ink"), 0.7,
    )  # fmt: skip
    assert (mine.family, mine.base_model, mine.rank) == ("sd15", "tiny-sd15", 4)
    assert registry.resolve(alice, mine.id) == mine
    assert registry.get(bob, artist.id) == artist
    with pytest.raises(UnknownStyle):
        registry.resolve(bob, mine.id)
    with pytest.raises(UnknownStyle):
        registry.get(bob, "sty_nope")
    assert [s.id for s in registry.list(alice)] == [mine.id, artist.id]
    assert [s.id for s in registry.list(bob)] == [artist.id]
    assert registry.file_path(mine).read_bytes() == loras["peft"].read_bytes()

    # Deleting: never another's private style, an artist one only as the admin.
    with pytest.raises(UnknownStyle):
        registry.delete(bob, mine.id)
    with pytest.raises(StyleAdminOnly):
        registry.delete(alice, artist.id)
    registry.delete(alice, mine.id)
    assert not registry.file_path(mine).exists()
    registry.delete(bob, artist.id, admin=True)
    assert stored_state(registry) == (0, [])


def test_same_bytes_twice_share_one_file(registry, ledger, loras):
    alice = ledger.create_tenant("alice").id
    first = registry.import_file(loras["kohya"], StyleImport("A", "tiny-sd15"), alice)
    second = registry.import_file(loras["kohya"], StyleImport("B", "tiny-sd15"), alice)
    assert first.sha256 == second.sha256 == sha256_of(loras["kohya"])
    assert stored_state(registry) == (2, [f"{first.sha256}.safetensors"])
    registry.delete(alice, first.id)
    assert registry.file_path(second).is_file()  # still named by the other style
    registry.delete(alice, second.id)
    assert stored_state(registry) == (0, [])


def test_registry_refusals_store_nothing(registry, ledger, loras, bad_files):
    alice = ledger.create_tenant("alice").id
    refusals = [
        (loras["rank8"], StyleImport("r", "tiny-sd15"), alice, StyleFileError, "rank 8"),
        (loras["kohya"], StyleImport("", "tiny-sd15"), alice, ParamError, "name"),
        (loras["kohya"], StyleImport("a\x00b", "tiny-sd15"), alice, ParamError, "NUL"),
        (
            loras["kohya"],
            StyleImport("n", "tiny-sd15", trigger_words=("ok", "a\x00b")),
            alice,
            ParamError,
            "trigger_words must not contain NUL",
        ),
        (loras["kohya"], StyleImport("n", "tiny-sd15", "secret"), alice, ParamError, "kind"),
        (
            loras["kohya"],
            StyleImport("n", "tiny-sd15", default_strength=3),
            alice,
            ParamError,
            "2.0",
        ),
        (loras["kohya"], StyleImport("n", "tiny-sd15", "artist"), alice, ParamError, "owner"),
        (loras["kohya"], StyleImport("n", "tiny-sd15"), "ten_nobody", UnknownTenant, "ten_nobody"),
    ]
    refusals += [
        (path, StyleImport("n", "tiny-sd15"), alice, StyleFileError, why)
        for path, why in bad_files.values()
    ]
    for path, request, owner, error, why in refusals:
        with pytest.raises(error, match=why):
            registry.import_file(path, request, owner)
    small = Styles(
        registry.engine, registry.catalog, registry.styles_dir, max_bytes=1000, max_rank=4
    )
    with pytest.raises(StyleFileTooLarge):
        small.import_file(loras["kohya"], StyleImport("n", "tiny-sd15"), alice)
    assert stored_state(registry) == (0, [])


# Shared files: a delete while the same bytes are imported, on both databases


def every_row_has_its_file(registry: Styles) -> None:
    with registry.engine.begin() as conn:
        shas = set(conn.execute(select(styles_table.c.sha256)).scalars())
    names = sorted(p.name for p in registry.styles_dir.iterdir())
    # No row without its file, no file without a row, nothing staged or set aside left.
    assert names == sorted(f"{sha}.safetensors" for sha in shas)


def test_a_delete_while_the_same_bytes_are_imported_keeps_the_new_styles_file(
    registry, ledger, loras, monkeypatch
):
    lora = loras["kohya"]
    alice = ledger.create_tenant("alice").id
    old = registry.import_file(lora, StyleImport("old", "tiny-sd15"), alice)

    # The import of the same bytes is held just after its file is in place (the file is
    # already there: the old style's). The old style is deleted in another thread then,
    # given 0.5 s to finish: a correct registry makes it wait for the import instead.
    real_store = style_service.store_lora_file
    deleting = threading.Thread(target=registry.delete, args=(alice, old.id))

    def store_then_delete(*args, **kwargs):
        stored = real_store(*args, **kwargs)
        deleting.start()
        deleting.join(0.5)
        return stored

    monkeypatch.setattr(style_service, "store_lora_file", store_then_delete)
    new = registry.import_file(lora, StyleImport("new", "tiny-sd15"), alice)
    deleting.join(30)
    assert not deleting.is_alive()

    assert [s.id for s in registry.list(alice)] == [new.id]
    assert registry.file_path(new).read_bytes() == lora.read_bytes()
    every_row_has_its_file(registry)


def test_imports_and_deletes_of_the_same_bytes_in_parallel_never_lose_a_file(
    registry, ledger, loras
):
    lora = loras["kohya"]
    tenants = [ledger.create_tenant(name).id for name in ("alice", "bob")]
    missing: list[str] = []

    def churn(tenant: str) -> None:
        for round_ in range(12):
            record = registry.import_file(lora, StyleImport(f"r{round_}", "tiny-sd15"), tenant)
            if not registry.file_path(record).is_file():
                missing.append(record.id)
            registry.delete(tenant, record.id)

    threads = [threading.Thread(target=churn, args=(t,)) for t in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert missing == []
    every_row_has_its_file(registry)
    assert not any(registry.styles_dir.iterdir())


def test_a_delete_whose_commit_fails_puts_the_file_back(registry, ledger, loras):
    alice = ledger.create_tenant("alice").id
    record = registry.import_file(loras["kohya"], StyleImport("kept", "tiny-sd15"), alice)

    def fail_once(_conn) -> None:
        event.remove(registry.engine, "commit", fail_once)
        raise RuntimeError("the database went away at the commit")

    event.listen(registry.engine, "commit", fail_once)
    with pytest.raises(RuntimeError, match="went away"):
        registry.delete(alice, record.id)
    assert registry.get(alice, record.id) == record  # rolled back: the row stays...
    every_row_has_its_file(registry)  # ...and so does its file, under its own name


# The routes, through the real app


@pytest.fixture(scope="module")
def models(catalog) -> LocalModelClient:
    return LocalModelClient(catalog, device="cpu")


@pytest.fixture
def app(tmp_path: Path, catalog, models):
    settings = Settings(
        home=tmp_path, secret=TEST_SECRET, style_max_bytes=1 << 20, style_max_rank=4
    )
    return create_app(settings, catalog, models)


@pytest.fixture
def alice(app, make_client) -> TestClient:
    return make_client(app, credits=0, name="alice")


@pytest.fixture
def bob(app, make_client) -> TestClient:
    return make_client(app, credits=0, name="bob")


@pytest.fixture
def admin(app) -> TestClient:
    accounts = app.state.kiln.accounts
    tenant = accounts.create_tenant("studio admin")
    key = accounts.create_key(tenant.id, role="admin").key
    return TestClient(
        app, raise_server_exceptions=False, headers={"authorization": f"Bearer {key}"}
    )


def upload(client: TestClient, path: Path, **form) -> object:
    fields = {"name": "Ink wash", "model": "tiny-sd15", **form}
    with open(path, "rb") as f:
        return client.post("/v1/styles", data=fields, files={"file": (path.name, f)})


def nothing_stored(app) -> bool:
    state = app.state.kiln
    with state.ledger.engine.begin() as conn:
        rows = conn.execute(select(func.count()).select_from(styles_table)).scalar_one()
    folder = state.settings.styles_dir
    return rows == 0 and (not folder.exists() or not any(folder.iterdir()))


def test_import_both_layouts_and_list_them(app, alice, bob, admin, loras, catalog):
    r = upload(alice, loras["kohya"], trigger_words=["inkwash, sumi"], default_strength="0.8")
    assert r.status_code == 201, r.text
    private = r.json()
    assert private["object"] == "style" and private["id"].startswith("sty_")
    assert (private["kind"], private["owner"], private["base_model"]) == (
        "private", alice.tenant_id, "tiny-sd15",
    )  # fmt: skip
    assert (private["family"], private["rank"], private["default_strength"]) == ("sd15", 4, 0.8)
    assert private["trigger_words"] == ["inkwash", "sumi"]

    r = upload(admin, loras["peft"], name="House style", kind="artist", trigger_words="house")
    assert r.status_code == 201, r.text
    artist = r.json()
    assert (artist["kind"], artist["owner"], artist["trigger_words"]) == ("artist", None, ["house"])

    # The stored files are the uploads, byte for byte, and diffusers loads them.
    state = app.state.kiln
    pipe = fresh_pipeline(str(catalog.get("tiny-sd15").source), "sd15")
    for style, source in ((private, loras["kohya"]), (artist, loras["peft"])):
        path = state.styles.file_path(state.styles.resolve(alice.tenant_id, style["id"]))
        assert path.read_bytes() == source.read_bytes()
        pipe.load_lora_weights(str(path), adapter_name=style["id"])
    assert set(pipe.get_list_adapters()) == {"unet", "text_encoder"}

    listed = alice.get("/v1/styles").json()
    assert listed["object"] == "list" and listed["has_more"] is False
    assert [s["id"] for s in listed["data"]] == [artist["id"], private["id"]]
    assert alice.get(f"/v1/styles/{private['id']}").json() == private
    assert [s["id"] for s in bob.get("/v1/styles").json()["data"]] == [artist["id"]]
    assert bob.get(f"/v1/styles/{artist['id']}").status_code == 200


def test_another_tenants_private_style_is_404(alice, bob, loras):
    style = upload(alice, loras["kohya"]).json()
    for response in (
        bob.get(f"/v1/styles/{style['id']}"),
        bob.delete(f"/v1/styles/{style['id']}"),
        bob.get("/v1/styles/sty_unknown"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "style_not_found"
        assert "x-request-id" in response.headers
    assert style["id"] not in json.dumps(bob.get("/v1/styles").json())
    assert alice.delete(f"/v1/styles/{style['id']}").json() == {
        "object": "style.deleted", "id": style["id"], "deleted": True,
    }  # fmt: skip
    assert alice.get(f"/v1/styles/{style['id']}").status_code == 404


def test_artist_styles_need_the_admin_key(app, alice, admin, loras):
    r = upload(alice, loras["kohya"], kind="artist")
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    assert nothing_stored(app)
    artist = upload(admin, loras["kohya"], kind="artist").json()
    r = alice.delete(f"/v1/styles/{artist['id']}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    assert admin.delete(f"/v1/styles/{artist['id']}").status_code == 200
    assert nothing_stored(app)


def test_bad_uploads_are_refused_and_store_nothing(app, alice, loras, bad_files, tmp_path):
    cases = {**bad_files, "rank over the limit": (loras["rank8"], "rank 8, over the limit of 4")}
    for case, (path, why) in cases.items():
        r = upload(alice, path)
        assert r.status_code == 400, (case, r.text)
        error = r.json()["error"]
        assert error["param"] == "file" and why in error["message"], (case, error)
        assert error["code"] == "invalid_style_file"
        assert nothing_stored(app), case
    # Over KILN_STYLE_MAX_BYTES: the body guard cuts the file part as it streams (413).
    big = tmp_path / "big.safetensors"
    big.write_bytes(b"\0" * ((1 << 20) + 1))
    r = upload(alice, big)
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == ("file", "upload_too_large")
    assert "KILN_STYLE_MAX_BYTES" in error["message"]
    assert nothing_stored(app)


def test_bad_fields_are_400_and_store_nothing(app, alice, loras):
    for form, param in (
        ({"name": "  "}, "name"),
        ({"kind": "public"}, "kind"),
        ({"default_strength": "2.5"}, "default_strength"),
        ({"default_strength": "strong"}, "default_strength"),
        ({"trigger_words": ["ok", "x" * 65]}, "trigger_words"),
    ):
        r = upload(alice, loras["kohya"], **form)
        assert r.status_code == 400, (form, r.text)
        assert r.json()["error"]["param"] == param, (form, r.json())
    r = upload(alice, loras["kohya"], model="no-such-model")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = alice.post("/v1/styles", data={"name": "x", "model": "tiny-sd15"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    assert nothing_stored(app)


# The command line, on the database


def test_cli_imports_and_lists_styles(catalog, loras, bad_files, tmp_path, monkeypatch, capsys):
    from serving.cli import main

    # A fresh KILN_HOME whose catalog points at the session's built tiny models.
    extra = tmp_path / "models.toml"
    extra.write_text("".join(f'[models.{spec.id}]\nsource = "{spec.source}"\n' for spec in catalog))
    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    monkeypatch.setenv("KILN_CATALOG", str(extra))
    with Ledger(f"sqlite:///{tmp_path / 'kiln.db'}") as ledger:
        alice, bob = ledger.create_tenant("alice").id, ledger.create_tenant("bob").id
    common = ["--name", "Ink", "--model", "tiny-sd15"]

    assert main(["styles", "import", str(loras["kohya"]), *common, "--tenant", alice,
                 "--trigger", "ink", "wash", "--strength", "0.5"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"kind=private  tenant={alice}" in out and "rank=4" in out
    private_id = out.split()[1]
    assert main(["styles", "import", str(loras["peft"]), *common, "--artist"]) == 0
    artist_id = capsys.readouterr().out.split()[1]

    with Ledger(f"sqlite:///{tmp_path / 'kiln.db'}") as ledger:
        registry = Styles.from_settings(ledger.engine, catalog, Settings(home=tmp_path))
        record = registry.resolve(alice, private_id)
        assert (record.trigger_words, record.default_strength) == (("ink", "wash"), 0.5)
        assert registry.file_path(record).read_bytes() == loras["kohya"].read_bytes()

    assert main(["styles", "list", "--tenant", bob]) == 0
    out = capsys.readouterr().out
    assert artist_id in out and private_id not in out
    assert main(["styles", "list"]) == 0
    out = capsys.readouterr().out
    assert artist_id in out and private_id in out

    # Refusals: exit 1 with the reason, nothing stored; a bad command line exits 2.
    files = sorted((tmp_path / "styles").iterdir())
    for path, why in bad_files.values():
        assert main(["styles", "import", str(path), *common, "--tenant", alice]) == 1
        assert why in capsys.readouterr().err
    assert main(["styles", "import", str(loras["kohya"]), *common, "--tenant", "ten_x"]) == 1
    assert "ten_x" in capsys.readouterr().err
    assert main(["styles", "import", str(loras["kohya"]), *common]) == 2
    assert (
        main(["styles", "import", str(loras["kohya"]), *common, "--artist", "--tenant", bob]) == 2
    )
    assert sorted((tmp_path / "styles").iterdir()) == files
    with Ledger(f"sqlite:///{tmp_path / 'kiln.db'}") as ledger, ledger.engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(styles_table)).scalar_one() == 2
