"""The cluster deploy files match the code: deploy/serve.yaml (``serve deploy``) and
deploy/kuberay/rayservice.yaml (KubeRay) parse, name the real builder, real settings and
the builder's deployment names, and carry the same application."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray._common.utils import import_attr
from secrets_for_tests import TEST_SECRET

from serving.core.settings import Settings, setting_names
from serving.ray.app import INGRESS_NAME, build_app, build_application
from serving.ray.serve_proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV
from serving.ray.serve_tuning import SERVE_LATENCY_ENV
from weights.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]
SERVE_YAML = ROOT / "deploy" / "serve.yaml"
RAYSERVICE_YAML = ROOT / "deploy" / "kuberay" / "rayservice.yaml"


@pytest.fixture(scope="module")
def serve_config() -> dict[str, Any]:
    return yaml.safe_load(SERVE_YAML.read_text())


@pytest.fixture(scope="module")
def kuberay() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(RAYSERVICE_YAML.read_text())}


def builder_deployments(home: Path) -> dict[str, Any]:
    """The deployments ``serve deploy`` makes of the default catalog's application, by
    name (Serve's own application builder, as the controller runs it)."""
    from ray.serve._private.build_app import build_app as serve_build

    app = build_application(
        Settings(home=home, secret=TEST_SECRET), load_catalog(home), cluster_gpus=0
    )
    return {d.name: d for d in serve_build(app, name="kiln").deployments}


def test_serve_yaml_is_a_deploy_config_of_the_real_builder(serve_config):
    # A Serve config cannot set the proxy's middlewares: the nodes' environment does.
    assert f"{PROXY_CALLBACK_ENV}={PROXY_CALLBACK}" in SERVE_YAML.read_text()
    for name, value in SERVE_LATENCY_ENV.items():
        assert f"{name}={value}" in SERVE_YAML.read_text()
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(serve_config)
    (app,) = serve_config["applications"]
    module, _, attribute = app["import_path"].partition(":")
    assert getattr(importlib.import_module(module), attribute) is build_app
    assert app["runtime_env"]["env_vars"]["HF_HUB_OFFLINE"] == "1"
    assert set(app["args"]) <= set(setting_names())
    settings = Settings.from_env({}, **app["args"])  # each arg parses as its variable would
    assert (settings.oom_retry, settings.oom_max_failures) == (True, 3)


def test_serve_yaml_names_every_deployment_the_builder_makes(serve_config, tmp_path):
    (app,) = serve_config["applications"]
    listed = {d["name"]: d for d in app["deployments"]}
    built = builder_deployments(tmp_path)
    assert set(listed) == set(built)
    assert listed[INGRESS_NAME]["ray_actor_options"]["num_gpus"] == 0  # ingress on CPU
    models = [spec.id for spec in load_catalog(tmp_path) if spec.id in built]
    assert models and all(listed[m]["ray_actor_options"]["num_gpus"] > 0 for m in models)
    assert any("autoscaling_config" in listed[m] for m in models)
    for model in models:
        # Scale to zero is set in models.toml, where the ingress can see it, never here.
        assert listed[model].get("autoscaling_config", {}).get("min_replicas", 1) >= 1


def test_rayservice_runs_the_same_app_on_a_cpu_head_and_gpu_workers(serve_config, kuberay):
    service = kuberay["RayService"]
    assert service["apiVersion"] == "ray.io/v1"
    served = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert served["applications"] == serve_config["applications"]
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__

    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    (head_container,) = head["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in head_container["resources"]["limits"]
    (gpu_group,) = cluster["workerGroupSpecs"]
    (worker,) = gpu_group["template"]["spec"]["containers"]
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1

    claim = kuberay["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for pod, container in ((head, head_container), (gpu_group, worker)):
        env = {e["name"]: e for e in container["env"]}
        database = env["KILN_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        # The Serve proxy of every pod runs the body guard (serving/http/body_guard.py).
        callback = env[PROXY_CALLBACK_ENV]["value"]
        assert callback == PROXY_CALLBACK and callable(import_attr(callback))
        # ... and Serve's request path without thread hops (serving/ray/serve_tuning.py).
        assert {name: env[name]["value"] for name in SERVE_LATENCY_ENV} == SERVE_LATENCY_ENV
        assert database["name"] and database["key"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["template"]["spec"]["volumes"]}
        home = [name for name, path in mounts.items() if path == env["KILN_HOME"]["value"]]
        (volume,) = [volumes[name] for name in home]
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_serve_latency_settings_keep_what_the_environment_already_says():
    from serving.ray.serve_tuning import apply_serve_latency_env

    environ = {"RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1"}
    applied = apply_serve_latency_env(environ)
    assert applied == {**SERVE_LATENCY_ENV, "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1"}
    assert environ == applied
