"""Model deployment placement from settings and catalog entries (serving.ray.placement), as the
app builder turns it into Serve options; no cluster is started."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from secrets_for_tests import TEST_SECRET

from serving.core.settings import Settings, SettingsError
from serving.ray.app import build_application, model_client, model_deployment_options
from serving.ray.model_deployment import ModelDeployment
from serving.ray.placement import local_ray_cpus, on_demand_models, placement_for
from weights.catalog import CatalogError, load_catalog

SHARED_CARD = """
[models.tiny-sd15]
gpus = 0.25
min_replicas = 0
max_replicas = 3

[models.tiny-sdxl]
gpus = 0.5
"""


def catalog_with(home: Path, text: str):
    (home / "models.toml").write_text(text)
    return load_catalog(home)


def test_defaults_are_one_fixed_replica_with_the_settings_gpu_share(tmp_path: Path):
    catalog = load_catalog(tmp_path)
    options = model_deployment_options(Settings(), 1.0, 3, catalog.get("tiny-sd15"))
    assert options["num_replicas"] == 1 and "autoscaling_config" not in options
    assert options["ray_actor_options"] == {"num_cpus": 0.25, "num_gpus": 1 / 3}
    # Dynamic batching settings reach the deployment's queue sizes.
    batching = model_deployment_options(Settings(max_batch_size=3, max_queued=9), 0)
    assert (batching["max_ongoing_requests"], batching["max_queued_requests"]) == (6, 9)


def test_catalog_entries_set_fractional_gpus_and_scale_to_zero(tmp_path: Path):
    catalog = catalog_with(tmp_path, SHARED_CARD)
    settings = Settings(max_batch_size=4, model_idle_s=120)
    small = model_deployment_options(settings, 1.0, 3, catalog.get("tiny-sd15"))
    assert small["ray_actor_options"]["num_gpus"] == 0.25
    assert "num_replicas" not in small
    assert small["autoscaling_config"] == {
        "min_replicas": 0,
        "initial_replicas": 0,  # nothing loads until the model is used
        "max_replicas": 3,
        "target_ongoing_requests": 4,  # one batch in flight per replica
        "upscale_delay_s": 30.0,
        "downscale_delay_s": 120,
        "downscale_to_zero_delay_s": 120,
    }
    xl = model_deployment_options(settings, 1.0, 3, catalog.get("tiny-sdxl"))
    assert xl["ray_actor_options"]["num_gpus"] == 0.5 and xl["num_replicas"] == 1
    # Serve accepts the options as they are (its own validation runs here).
    deployment = ModelDeployment.options(name="tiny-sd15", **small)
    assert deployment._deployment_config.autoscaling_config.min_replicas == 0
    # The shipped FLUX models scale to zero too (min_replicas = 0 in default_models.toml).
    assert on_demand_models(settings, list(catalog)) == {
        "tiny-sd15",
        "tiny-flux1",
        "tiny-flux2-klein",
        "tiny-flux1-kontext",
        "tiny-flux1-fill",
    }


def test_the_ingress_client_knows_which_models_may_be_asleep(tmp_path: Path):
    catalog = catalog_with(tmp_path, SHARED_CARD)
    handles = {model_id: object() for model_id in ("tiny-sd15", "tiny-sdxl")}  # not called
    client = model_client(Settings(model_idle_s=4), catalog, handles)
    assert client.on_demand == {"tiny-sd15"} and client.ready_ttl_s == 2.0
    assert not client.is_ready("tiny-sd15")  # asleep until a request wakes it


def test_settings_make_every_model_scale_to_zero(tmp_path: Path):
    catalog = load_catalog(tmp_path)
    env = {"KILN_MODEL_MIN_REPLICAS": "0", "KILN_MODEL_MAX_REPLICAS": "2"}
    settings = Settings.from_env(env, home=str(tmp_path), secret=TEST_SECRET)
    placement = placement_for(settings, catalog.get("tiny-sdxl"), cluster_gpus=0)
    assert (placement.min_replicas, placement.max_replicas, placement.gpus) == (0, 2, 0.0)
    assert on_demand_models(settings, list(catalog)) == set(catalog.ids())
    # The app binds with them (a deploy on a CPU-only head node, say).
    app = build_application(settings, catalog, cluster_gpus=0)
    assert type(app).__name__ == "Application"


@pytest.mark.parametrize(
    "entry, message",
    [
        ('gpus = "half"', "gpus must be a number"),
        ("gpus = -1", "gpus must not be negative"),
        ("min_replicas = -1", "min_replicas must be a whole number of at least 0"),
        ("max_replicas = 0", "max_replicas must be a whole number of at least 1"),
        ("max_replicas = 1.5", "max_replicas must be a whole number"),
        ("min_replicas = 3", r"min_replicas \(3\) exceeds max_replicas \(1\)"),
    ],
)
def test_bad_placement_entries_stop_the_build_naming_the_entry(tmp_path, entry, message):
    catalog = catalog_with(tmp_path, f"[models.tiny-sd15]\n{entry}\n")
    with pytest.raises(CatalogError, match=f"catalog entry 'tiny-sd15': {message}"):
        build_application(Settings(home=tmp_path, secret=TEST_SECRET), catalog, cluster_gpus=0)


def test_settings_with_a_min_over_the_max_are_refused(tmp_path: Path):
    catalog = load_catalog(tmp_path)
    settings = Settings(model_min_replicas=2, model_max_replicas=1)
    with pytest.raises(SettingsError, match=r"min_replicas \(2\) exceeds max_replicas \(1\)"):
        placement_for(settings, catalog.get("tiny-sd15"), cluster_gpus=0)


def test_a_local_ray_fits_every_replica_clip_the_ingress_and_a_training_task(tmp_path: Path):
    # The shipped catalog: 7 models and the CLIP component at 0.25 CPUs each, the ingress
    # 0.1, a training task 0.5: 2.6 logical CPUs, more than a 2-core machine's 2.
    catalog = load_catalog(tmp_path)
    assert catalog.first_component("clip") is not None
    demand = 0.25 * len(list(catalog)) + 0.25 + 0.1 + 0.5
    assert local_ray_cpus(Settings(), catalog) == max(os.cpu_count() or 1, math.ceil(demand))
    assert local_ray_cpus(Settings(), catalog) >= math.ceil(demand) > 2
    # A model's most replicas count: three of tiny-sd15 ask for two quarters more.
    card = catalog_with(tmp_path, SHARED_CARD)
    more = local_ray_cpus(Settings(replica_cpus=1.0, training_cpus=4.0), card)
    assert more == max(
        os.cpu_count() or 1, math.ceil(1.0 * (len(list(card)) + 2) + 1.0 + 0.1 + 4.0)
    )
    # KILN_RAY_NUM_CPUS is taken as it is, even below the demand.
    assert local_ray_cpus(Settings(ray_num_cpus=1), catalog) == 1
