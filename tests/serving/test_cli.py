"""The ``kiln`` command line: parsing and the commands that need no server."""

from __future__ import annotations

import pytest

from serving.cli import main, make_parser


def test_parser_knows_the_commands():
    parser = make_parser()
    args = parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "9000"])
    assert (args.host, args.port, args.func.__name__) == ("0.0.0.0", 9000, "cmd_serve")
    assert parser.parse_args(["serve"]).port is None  # falls back to KILN_PORT
    assert parser.parse_args(["models", "list"]).func.__name__ == "cmd_models_list"
    assert parser.parse_args(["weights", "build-tiny"]).func.__name__ == "cmd_build_tiny"
    with pytest.raises(SystemExit):
        parser.parse_args(["models"])


def test_models_list_prints_sizes_and_prices(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny-sdxl  kind=base  family=sdxl" in out
    assert "128x128 128x64 64x128 256x256 256x192 192x256" in out
    assert "128px=1, 256px=2" in out


def test_bad_configuration_is_a_clean_error(monkeypatch, capsys):
    monkeypatch.setenv("KILN_PORT", "not-a-port")
    assert main(["models", "list"]) == 2
    assert "KILN_PORT" in capsys.readouterr().err


def test_build_tiny_reports_models_and_manifests(catalog, kiln_home, capsys):
    # ``catalog`` (tests/conftest.py) has built the tiny models once for the session.
    assert main(["weights", "build-tiny"]) == 0
    out = capsys.readouterr().out
    for spec in catalog:
        assert f"{spec.id}: present at {spec.source}" in out
        assert f"sha256 manifest: {spec.source / 'kiln-manifest.json'}" in out


def test_tenants_keys_and_credits_on_the_database(tmp_path, monkeypatch, capsys):
    from serving.core.accounts import Accounts
    from serving.core.ledger import Ledger

    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    monkeypatch.delenv("KILN_DATABASE_URL", raising=False)
    assert main(["tenants", "create", "studio"]) == 0
    tenant_id = capsys.readouterr().out.split()[1]
    assert main(["keys", "create", tenant_id]) == 0
    out = capsys.readouterr().out
    key_id, key = out.split()[1], out.split()[-1]
    assert main(["credits", "grant", tenant_id, "25"]) == 0
    assert "balance 25" in capsys.readouterr().out
    assert main(["keys", "list", tenant_id]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and key[:12] in listed and key not in listed
    with Ledger(f"sqlite:///{tmp_path / 'kiln.db'}") as ledger:
        principal = Accounts(ledger).authenticate(key)
        assert principal is not None and principal.tenant_id == tenant_id
        assert ledger.balance(tenant_id).available == 25
    assert main(["keys", "revoke", key_id]) == 0
    assert main(["keys", "create", "ten_nope"]) == 1
    assert main(["keys", "list", "ten_nope"]) == 1
    assert main(["keys", "revoke", "key_nope"]) == 1
    assert main(["credits", "grant", "ten_nope", "5"]) == 1
    assert "ten_nope" in capsys.readouterr().err
    assert main(["credits", "grant", tenant_id, "0"]) == 2
    assert main(["credits", "grant", tenant_id, str(10**30)]) == 1  # was a traceback
    assert "at most" in capsys.readouterr().err
    with Ledger(f"sqlite:///{tmp_path / 'kiln.db'}") as ledger:
        assert Accounts(ledger).authenticate(key) is None


def test_assets_purge_deletes_old_unlicensed_assets(tmp_path, monkeypatch, capsys):
    import numpy as np
    from sqlalchemy import update

    from serving.core.assets import Assets, BlobStore, ImageRecord
    from serving.core.ledger import Ledger
    from serving.core.ledger.schema import assets as assets_table

    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    monkeypatch.delenv("KILN_DATABASE_URL", raising=False)
    monkeypatch.delenv("KILN_ASSET_RETENTION_DAYS", raising=False)
    with Ledger(f"sqlite:///{tmp_path / 'kiln.db'}") as ledger:
        tenant = ledger.create_tenant("studio")
        assets = Assets(ledger.engine, BlobStore(tmp_path / "assets"))
        record = ImageRecord(kind="base", model="m", prompt="p", seed=1, width=8, height=8)
        pixels = np.zeros((8, 8, 3), dtype=np.uint8)
        old, _ = assets.create(tenant.id, record, pixels)
        new, _ = assets.create(tenant.id, record, pixels)
        with ledger.engine.begin() as conn:
            conn.execute(
                update(assets_table)
                .where(assets_table.c.id == old.id)
                .values(created=old.created.replace(year=old.created.year - 1))
            )
    assert main(["assets", "purge"]) == 2  # no --days and no setting
    assert "KILN_ASSET_RETENTION_DAYS" in capsys.readouterr().err
    assert main(["assets", "purge", "--days", "30"]) == 0
    assert "deleted 1 " in capsys.readouterr().out
    with Ledger(f"sqlite:///{tmp_path / 'kiln.db'}") as ledger:
        listed, _ = Assets(ledger.engine, BlobStore(tmp_path / "assets")).list(tenant.id)
    assert [a.id for a in listed] == [new.id]


def test_serve_prints_a_generated_admin_key_once(tmp_path, capsys):
    from serving.cli.serve import _admin_key_beside_ray, _print_new_admin_key
    from serving.core.settings import Settings

    def prepare_admin(settings: Settings) -> str | None:  # as cmd_serve does, two threads
        key = _admin_key_beside_ray(settings)
        _print_new_admin_key(settings, key)
        return key

    settings = Settings(home=tmp_path)
    key = prepare_admin(settings)
    out = capsys.readouterr().out
    assert key is not None and key in out and str(tmp_path / "admin.key") in out
    assert prepare_admin(settings) is None  # the next start prints nothing
    assert capsys.readouterr().out == ""
    assert (
        prepare_admin(Settings(home=tmp_path, admin_key="kiln_configured-admin-key-for-tests-0001"))
        is None
    )
    assert "kiln_configured-admin-key-for-tests-0001" not in capsys.readouterr().out
