"""The private-style quota (KILN_STYLE_IMPORTS_MAX, KILN_STYLE_IMPORTS_MAX_BYTES): a tenant's
own imports past it are 429 (styles) or 413 (bytes), charge nothing and store nothing;
deleting frees the share; artist styles, the admin's imports and trained styles are never
refused; two imports in parallel at the edge cannot both pass (SQLite and PostgreSQL)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from secrets_for_tests import TEST_SECRET
from sqlalchemy import func, select

import serving.core.styles.service as style_service
from serving.core.ledger import Ledger
from serving.core.ledger.schema import entries
from serving.core.ledger.schema import styles as styles_table
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.core.styles import StyleImport, StyleQuota, StyleQuotaExceeded, Styles, StyleUsage
from serving.http.app import create_app

sys.path.insert(0, str(Path(__file__).parents[1] / "styles"))
from lora_makers import kohya_lora  # noqa: E402


@pytest.fixture(scope="module")
def loras(catalog, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three different LoRA files of one size for tiny-sd15."""
    out = tmp_path_factory.mktemp("quota-loras")
    sd15 = str(catalog.get("tiny-sd15").source)
    made = [kohya_lora(sd15, "sd15", out / f"{i}.safetensors", seed=i) for i in range(3)]
    assert len({p.stat().st_size for p in made}) == 1
    return made


def stored(styles_dir: Path) -> list[str]:
    """Every file under the styles folder, hidden ones (staged, set aside) included."""
    return sorted(p.name for p in styles_dir.iterdir()) if styles_dir.exists() else []


# Through the real app: status, code, header, nothing stored, nothing charged


@pytest.fixture(scope="module")
def models(catalog) -> LocalModelClient:
    return LocalModelClient(catalog, device="cpu")


def quota_app(home: Path, catalog, models, **quota):
    settings = Settings(home=home, secret=TEST_SECRET, style_max_rank=4, **quota)
    return create_app(settings, catalog, models)


def admin_client(app) -> TestClient:
    accounts = app.state.kiln.accounts
    key = accounts.create_key(accounts.create_tenant("admin").id, role="admin").key
    return TestClient(
        app, raise_server_exceptions=False, headers={"authorization": f"Bearer {key}"}
    )


def upload(client: TestClient, path: Path, **form) -> object:
    fields = {"name": path.stem, "model": "tiny-sd15", **form}
    with open(path, "rb") as f:
        return client.post("/v1/styles", data=fields, files={"file": (path.name, f)})


def ledger_entries(app) -> int:
    with app.state.kiln.ledger.engine.begin() as conn:
        return conn.execute(select(func.count()).select_from(entries)).scalar_one()


def test_the_number_of_styles_is_429_past_the_quota_and_a_delete_frees_a_place(
    tmp_path, catalog, models, make_client, loras
):
    app = quota_app(tmp_path, catalog, models, style_imports_max=2)
    alice = make_client(app, credits=5, name="alice")
    bob = make_client(app, credits=0, name="bob")
    admin = admin_client(app)
    first, second = (upload(alice, p).json() for p in loras[:2])
    # Artist styles belong to no tenant, and the admin's own imports are not bounded.
    assert upload(admin, loras[2], kind="artist").status_code == 201
    assert [upload(admin, p).status_code for p in loras] == [201, 201, 201]
    files, entries_before = stored(app.state.kiln.settings.styles_dir), ledger_entries(app)

    refused = upload(alice, loras[2])
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "style_quota_exceeded" and error["type"] == "rate_limit_error"
    assert "2 private styles" in error["message"] and "KILN_STYLE_IMPORTS_MAX" in error["message"]
    assert refused.headers["x-should-retry"] == "false" and "retry-after" not in refused.headers
    assert [s["id"] for s in alice.get("/v1/styles").json()["data"] if s["kind"] == "private"] == [
        second["id"], first["id"],
    ]  # fmt: skip
    assert stored(app.state.kiln.settings.styles_dir) == files
    assert ledger_entries(app) == entries_before
    assert alice.get("/v1/credits").json()["balance"] == 5
    # The quota is checked before the file is parsed: a full tenant's bad file is 429 too.
    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(b"not a LoRA" * 100)
    assert upload(alice, noise).status_code == 429
    assert upload(bob, loras[2]).status_code == 201  # another tenant's quota is its own

    assert alice.delete(f"/v1/styles/{first['id']}").status_code == 200
    assert upload(alice, loras[2]).status_code == 201


def test_bytes_are_413_past_the_quota_each_style_counting_its_whole_file(
    tmp_path, catalog, models, make_client, loras
):
    size = loras[0].stat().st_size
    app = quota_app(tmp_path, catalog, models, style_imports_max_bytes=2 * size - 1)
    alice = make_client(app, credits=0, name="alice")
    kept = upload(alice, loras[0]).json()
    files = stored(app.state.kiln.settings.styles_dir)

    # The same bytes again share the file on disk, but the tenant asked to keep them twice.
    for path in (loras[0], loras[1]):
        refused = upload(alice, path)
        assert refused.status_code == 413, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("style_quota_exceeded", "file")
        assert f"hold {size} bytes" in error["message"], error
        assert "KILN_STYLE_IMPORTS_MAX_BYTES" in error["message"]
        assert stored(app.state.kiln.settings.styles_dir) == files

    assert app.state.kiln.styles.usage(alice.tenant_id) == StyleUsage(styles=1, bytes=size)
    alice.delete(f"/v1/styles/{kept['id']}")
    assert app.state.kiln.styles.usage(alice.tenant_id) == StyleUsage(styles=0, bytes=0)
    assert upload(alice, loras[1]).status_code == 201


# The registry on both databases: trained styles, and imports in parallel at the edge


@pytest.fixture
def ledger(db_url: str):
    with Ledger(db_url) as opened:
        yield opened


def registry(ledger, catalog, folder: Path, max_styles: int, max_bytes: int = 1 << 30) -> Styles:
    return Styles(
        ledger.engine,
        catalog,
        folder,
        max_bytes=1 << 24,
        max_rank=4,
        quota=StyleQuota(max_styles, max_bytes),
    )


def test_trained_styles_count_but_are_never_refused(ledger, catalog, tmp_path, loras):
    styles = registry(ledger, catalog, tmp_path / "styles", max_styles=1)
    alice = ledger.create_tenant("alice").id
    styles.import_file(loras[0], StyleImport("own", "tiny-sd15"), alice, within_quota=True)
    # The training job registers its result without ``within_quota``: paid for already.
    styles.import_file(loras[1], StyleImport("trained", "tiny-sd15"), alice)
    assert styles.usage(alice).styles == 2
    with pytest.raises(StyleQuotaExceeded) as refused:
        styles.import_file(loras[2], StyleImport("more", "tiny-sd15"), alice, within_quota=True)
    assert refused.value.status == 429


def test_parallel_imports_at_the_edge_do_not_both_pass(
    ledger, catalog, tmp_path, loras, monkeypatch
):
    styles = registry(ledger, catalog, tmp_path / "styles", max_styles=2)
    alice = ledger.create_tenant("alice").id
    styles.import_file(loras[0], StyleImport("first", "tiny-sd15"), alice, within_quota=True)

    # Each import counts twice: early, before reading its file, and with its row. Here
    # both wait after the second count until the other has counted too (or 1 s has passed:
    # a lock may rightly keep the other out until this one commits). Without a lock both
    # would count one style and both would pass.
    real_usage_of = style_service.usage_of
    counted = threading.local()
    arrived = threading.Condition()
    at_the_edge: list[str] = []

    def count_then_meet(*args, **kwargs):
        used = real_usage_of(*args, **kwargs)
        counted.times = getattr(counted, "times", 0) + 1
        if counted.times == 2:
            with arrived:
                at_the_edge.append(threading.current_thread().name)
                arrived.notify_all()
                arrived.wait_for(lambda: len(at_the_edge) == 2, timeout=1.0)
        return used

    monkeypatch.setattr(style_service, "usage_of", count_then_meet)
    outcomes: list[object] = []

    def run(path: Path) -> None:
        try:
            outcomes.append(
                styles.import_file(
                    path, StyleImport(path.stem, "tiny-sd15"), alice, within_quota=True
                )
            )
        except StyleQuotaExceeded as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in loras[1:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    refused = [o for o in outcomes if isinstance(o, StyleQuotaExceeded)]
    assert len(outcomes) == 2 and len(refused) == 1, outcomes
    assert refused[0].status == 429
    with ledger.engine.begin() as conn:
        shas = conn.execute(select(styles_table.c.sha256)).scalars().all()
    assert len(shas) == 2
    # The refused import left nothing: no row, no file, no staged copy.
    assert stored(styles.styles_dir) == sorted(f"{sha}.safetensors" for sha in shas)
