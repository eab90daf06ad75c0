"""Who a batch runs as and what it costs, on a real SQLite ledger: ``--tenant`` by id or
name, the unmetered operator tenant, and the zero-priced catalog of an unmetered run."""

from __future__ import annotations

import pytest

from serving.core.credits.charging import unit_price
from serving.core.ledger import Ledger, UnknownTenant
from serving.ray.batch.runner import (
    OPERATOR_TENANT_ID,
    BatchOptions,
    UnknownBatchTenant,
    accounting,
    resolve_tenant,
    run_batch,
    unmetered,
)


def test_a_tenant_is_found_by_id_or_by_its_only_name(batch_settings):
    with Ledger(batch_settings.database_url) as ledger:
        studio = ledger.create_tenant("studio")
        twins = [ledger.create_tenant("twin"), ledger.create_tenant("twin")]
    assert resolve_tenant(batch_settings, studio.id) == studio.id
    assert resolve_tenant(batch_settings, "studio") == studio.id
    assert resolve_tenant(batch_settings, twins[1].id) == twins[1].id
    with pytest.raises(UnknownBatchTenant, match="several tenants are named 'twin'"):
        resolve_tenant(batch_settings, "twin")
    with pytest.raises(UnknownBatchTenant, match="no tenant with id or name 'nobody'"):
        resolve_tenant(batch_settings, "nobody")


def test_a_metered_run_keeps_the_prices_and_checks_the_tenant(batch_settings, catalog):
    with Ledger(batch_settings.database_url) as ledger:
        studio = ledger.create_tenant("studio")
    assert accounting(batch_settings, catalog, studio.id) == (studio.id, catalog)
    with pytest.raises(UnknownTenant):
        accounting(batch_settings, catalog, "ten_nobody")


def test_an_unknown_tenant_stops_a_run_before_anything_is_written(
    batch_settings, catalog, tmp_path
):
    out = tmp_path / "out"
    with pytest.raises(UnknownTenant):
        run_batch(batch_settings, catalog, [], BatchOptions(out, tenant_id="ten_nobody"))
    assert not out.exists()


def test_an_unmetered_run_is_the_operator_tenant_at_price_zero(batch_settings, catalog):
    first = accounting(batch_settings, catalog, None)
    tenant_id, priced = accounting(batch_settings, catalog, None)  # idempotent
    assert tenant_id == first[0] == OPERATOR_TENANT_ID
    assert all(price == 0 for price in priced.prices.values())
    assert priced.prices.keys() == catalog.prices.keys()
    for spec in priced:
        assert all(unit_price(spec, tier) == 0 for tier in spec.resolutions)
        assert spec.resolutions == catalog.get(spec.id).resolutions
    assert unit_price(catalog.get("tiny-sd15"), "128px") == 1  # the original is untouched
    with Ledger(batch_settings.database_url) as ledger:
        balance = ledger.balance(OPERATOR_TENANT_ID)
        assert (balance.available, balance.held) == (0, 0)
        assert ledger.entries(OPERATOR_TENANT_ID) == []
    assert unmetered(catalog).ids() == catalog.ids()
