"""The Ray app as configured (without starting Ray) and import hygiene; the deploy YAML
files are checked in test_deploy_files.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from secrets_for_tests import TEST_SECRET

from serving.core.settings import Settings
from serving.ray.app import build_application, model_deployment_options
from weights.catalog import Catalog, load_catalog

ROOT = Path(__file__).resolve().parents[2]


def test_model_deployment_options_follow_settings():
    cpu = model_deployment_options(Settings(device="auto", max_queued=7), cluster_gpus=0)
    assert cpu["ray_actor_options"] == {"num_cpus": 0.25, "num_gpus": 0.0}
    assert cpu["max_queued_requests"] == 7
    assert cpu["max_ongoing_requests"] >= Settings().max_batch_size
    gpu = model_deployment_options(Settings(replica_cpus=2, gpus_per_replica=0.5), 4)
    assert gpu["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 0.5}


def test_build_application_binds_without_a_cluster(tmp_path: Path):
    settings = Settings(home=tmp_path, secret=TEST_SECRET)
    app = build_application(settings, load_catalog(tmp_path), cluster_gpus=0)
    assert type(app).__name__ == "Application"


def test_ingress_modules_do_not_import_torch():
    code = (
        "import sys, serving.ray.app, serving.http.app, serving.cli, serving.ray.model_deployment;"
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_kiln_serve_starts_base_models_first(tmp_path: Path):
    """serving/ray/http_front.py's start order: text-to-image models first, the
    edit/inpainting checkpoints (and CLIP) once those run; without a base model, all at
    once."""
    from serving.ray.http_front import start_stages

    catalog = load_catalog(tmp_path)
    first, later = start_stages(catalog)
    # The FLUX models are deployed with the base models, at zero replicas (min_replicas 0).
    assert first == ["tiny-sd15", "tiny-sdxl", "tiny-flux1", "tiny-flux2-klein"]
    assert later == ["tiny-instruct", "tiny-flux1-kontext", "tiny-flux1-fill"]
    edit_model = catalog.get("tiny-instruct")
    assert start_stages(Catalog({edit_model.id: edit_model})) == (["tiny-instruct"], [])
