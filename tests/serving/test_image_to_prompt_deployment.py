"""The image-to-prompt CLIP deployment: bound into the app with CPU or GPU from settings,
and its replica class run in-process (the constructor a replica runs, no Ray cluster)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from secrets_for_tests import TEST_SECRET

from pipelines.image_to_prompt.pipeline import ImageToPromptParams
from serving.core.settings import Settings
from serving.ray.app import build_application
from serving.ray.image_to_prompt.client import RayImageToPromptClient
from serving.ray.image_to_prompt.deployment import (
    CLIP_DEPLOYMENT,
    ClipDeployment,
    clip_deployment_options,
)
from weights.catalog import load_catalog
from weights.tiny import build_tiny_component


def test_the_clip_runs_on_cpu_unless_settings_give_it_a_gpu_share():
    assert Settings().clip_device == "cpu"
    cpu = clip_deployment_options(Settings(replica_cpus=1))
    assert cpu["name"] == CLIP_DEPLOYMENT
    assert cpu["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 0.0}
    settings = Settings.from_env({"KILN_CLIP_GPUS": "0.25"})
    assert settings.clip_gpus == 0.25 and settings.clip_device == "cuda"
    assert clip_deployment_options(settings)["ray_actor_options"]["num_gpus"] == 0.25


def test_the_app_binds_one_clip_deployment_for_the_catalogs_clip(tmp_path):
    settings = Settings(home=tmp_path, secret=TEST_SECRET, clip_gpus=0.1)
    app = build_application(settings, load_catalog(tmp_path), cluster_gpus=1)
    clip = app._bound_deployment.init_args[3]
    assert clip._bound_deployment.name == CLIP_DEPLOYMENT
    assert clip._bound_deployment.ray_actor_options["num_gpus"] == 0.1
    catalog = load_catalog(tmp_path)
    catalog.components.clear()
    bare = build_application(settings, catalog, cluster_gpus=0)
    assert bare._bound_deployment.init_args[3] is None


def test_without_a_deployment_the_ray_client_answers_503():
    from serving.core.errors import KilnError

    client = RayImageToPromptClient(None, None)
    with pytest.raises(KilnError) as info:
        asyncio.run(client.extract(np.zeros((8, 8, 3), np.uint8), ImageToPromptParams()))
    assert info.value.status == 503 and info.value.code == "not_deployed"


def test_a_replica_embeds_the_vocabulary_once_at_start_and_answers(tmp_path):
    catalog = load_catalog(tmp_path)
    component = catalog.component("tiny-clip")
    build_tiny_component(component.tiny, component.source)
    settings = Settings(home=tmp_path, secret=TEST_SECRET, torch_threads=1)
    replica = ClipDeployment.func_or_class(settings, component)
    assert replica.pipeline.embedding_source == "computed"
    assert list((tmp_path / "cache" / "image_to_prompt").glob("*.safetensors"))
    pixels = np.full((40, 30, 3), 120, np.uint8)
    out = asyncio.run(replica.extract(pixels, ImageToPromptParams(extract="pose", top_k=2)))
    assert list(out.extract.terms) == ["pose"] and len(out.extract.terms["pose"]) == 2
    assert replica.pipeline.embedding_source == "memory"
    assert asyncio.run(replica.ready()) == "tiny-clip"
    # A second replica on the same KILN_HOME reads the cached embeddings.
    assert ClipDeployment.func_or_class(settings, component).pipeline.embedding_source == "disk"
