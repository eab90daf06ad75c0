"""Settings: every variable parsed from the environment, defaults, errors, the secret."""

from __future__ import annotations

import os
import pickle
import stat
from dataclasses import fields
from pathlib import Path

import pytest

from pipelines.env_fields import env_vars
from pipelines.fast_path import FastPathOptions, FastPathSwitches
from pipelines.params import GenerationDefaults
from serving.core.settings import (
    ENV_VARS,
    Settings,
    SettingsError,
    load_or_create_secret,
    setting_names,
)
from serving.core.settings_table import README, configuration_table, readme_with_table


def test_defaults_without_environment(tmp_path: Path):
    s = Settings.from_env({})
    assert s.home == Path("~/.kiln").expanduser()
    assert (s.host, s.port, s.device) == ("127.0.0.1", 8000, "auto")
    assert (s.max_batch_size, s.batch_wait_s, s.max_queued) == (8, 0.02, 512)
    assert (s.replica_cpus, s.ingress_cpus, s.url_ttl_s, s.max_prompt_chars) == (
        0.25, 0.1, 3600, 4000,
    )  # fmt: skip
    assert s.catalog_path == s.home / "models.toml"
    assert s.database_url == f"sqlite:///{s.home / 'kiln.db'}"
    assert s.generation_defaults == GenerationDefaults()
    assert s.effective_ray_num_cpus() == os.cpu_count()
    assert s.effective_torch_threads() == max(1, os.cpu_count() - 1)
    assert s.engine_device is None
    assert (s.style_max_bytes, s.style_max_rank) == (256 * 1024 * 1024, 64)


def test_every_variable_is_read(tmp_path: Path):
    env = {
        "KILN_HOME": str(tmp_path),
        "KILN_HOST": "0.0.0.0",
        "KILN_PORT": "9001",
        "KILN_CATALOG": str(tmp_path / "extra.toml"),
        "KILN_DEVICE": "cpu",
        "KILN_GPUS_PER_REPLICA": "0.25",
        "KILN_REPLICA_CPUS": "1.5",
        "KILN_INGRESS_CPUS": "0.2",
        "KILN_TORCH_THREADS": "3",
        "KILN_RAY_NUM_CPUS": "4",
        "KILN_RAY_ADDRESS": "ray://head:10001",
        "KILN_MAX_BATCH_SIZE": "4",
        "KILN_BATCH_WAIT_S": "0.05",
        "KILN_MAX_QUEUED": "100",
        "KILN_URL_TTL_S": "60",
        "KILN_SECRET": "k" * 32,
        "KILN_PUBLIC_URL": "https://kiln.example",
        "KILN_MAX_PROMPT_CHARS": "500",
        "KILN_DEFAULT_STEPS": "12",
        "KILN_DEFAULT_GUIDANCE": "3.5",
        "KILN_DEFAULT_SCHEDULER": "ddim",
        "KILN_PREVIEW_EVERY": "5",
        "KILN_DATABASE_URL": "postgresql+psycopg://kiln@db/kiln",
        "KILN_ADMIN_KEY": "kiln_admin-key-for-settings-tests-0001",
        "KILN_TENANT_MAX_CONCURRENT": "2",
        "KILN_TENANT_MAX_QUEUED_IMAGES": "24",
        "KILN_FAIR_QUEUE": "off",
        "KILN_SCHEDULER_CLASS_WEIGHTS": "interactive=9,batch=1",
        "KILN_ASSET_RETENTION_DAYS": "30",
        "KILN_C2PA_CERT": str(tmp_path / "chain.pem"),
        "KILN_C2PA_KEY": str(tmp_path / "key.pem"),
        "KILN_C2PA_ALG": "es384",
        "KILN_STYLES_PER_REPLICA": "3",
        "KILN_STYLE_MAX_BYTES": "1048576",
        "KILN_STYLE_MAX_RANK": "32",
        "KILN_PIN_SCALE_CHARACTER": "0.9",
        "KILN_PIN_SCALE_PRODUCT": "0.4",
        "KILN_TRAINING_STEPS": "50",
        "KILN_TRAINING_MAX_STEPS": "60",
        "KILN_TRAINING_RANK": "4",
        "KILN_TRAINING_LEARNING_RATE": "0.01",
        "KILN_TRAINING_CPUS": "0.25",
        "KILN_TRAINING_GPUS": "0.5",
        "KILN_TRAINING_IMAGE_MAX_BYTES": "1000",
        "KILN_TRAINING_IMAGE_MAX_PIXELS": "2000",
        "KILN_AGENTIC_MAX_CANDIDATES": "3",
        "KILN_AGENTIC_MAX_ROUNDS": "0",
        "KILN_IMAGE_MAX_BYTES": "3000",
        "KILN_IMAGE_MAX_PIXELS": "4000",
        "KILN_CLIP_GPUS": "0.1",
        "KILN_BATCH_MAX_BYTES": "5000",
        "KILN_BATCH_MAX_LINES": "7",
        "KILN_OOM_RETRY": "off",
        "KILN_OOM_MAX_FAILURES": "5",
        "KILN_MODEL_MIN_REPLICAS": "0",
        "KILN_MODEL_MAX_REPLICAS": "4",
        "KILN_MODEL_IDLE_S": "90",
        "KILN_COMPILE": "off",
        "KILN_COMPILE_BACKEND": "aot_eager",
        "KILN_COMPILE_MODE": "max-autotune-no-cudagraphs",
        "KILN_CUDA_GRAPHS": "0",
        "KILN_FUSED_QKV": "1",
        "KILN_CHANNELS_LAST": "1",
        "KILN_VAE_TILE_MIN_PIXELS": "0",
        "KILN_VAE_DTYPE": "fp32",
        "KILN_FA3": "0",
        "KILN_FP8": "1",
        "KILN_WARMUP": "0",
        "KILN_BODY_MAX_JSON": "6000",
        "KILN_BODY_MAX_IMAGES": "7000",
        "KILN_BODY_MAX_STYLE": "8000",
        "KILN_BODY_MAX_TRAINING": "9000",
        "KILN_MULTIPART_MAX_PARTS": "11",
        "KILN_SVG_MAX_CONCURRENT": "3",
        "KILN_EVENT_STREAMS_PER_TENANT": "12",
        "KILN_RESERVATION_LEASE_S": "45.5",
        "KILN_STYLE_IMPORTS_MAX": "13",
        "KILN_STYLE_IMPORTS_MAX_BYTES": "14000",
        "KILN_BENCH": "1",
        "KILN_HTTP_SERVER": "serve",
        "KILN_SCHEDULER": "actor",
    }
    assert {var.name for var in ENV_VARS} == set(env), "every variable is declared and tested"
    s = Settings.from_env(env)
    assert s.home == tmp_path and s.catalog_path == tmp_path / "extra.toml"
    assert (s.host, s.port, s.device, s.engine_device) == ("0.0.0.0", 9001, "cpu", "cpu")
    assert (s.http_server, s.scheduler) == ("serve", "actor")
    assert (s.gpus_per_replica, s.replica_cpus, s.ingress_cpus) == (0.25, 1.5, 0.2)
    assert (s.effective_torch_threads(), s.effective_ray_num_cpus()) == (3, 4)
    assert s.ray_address == "ray://head:10001"
    assert (s.max_batch_size, s.batch_wait_s, s.max_queued, s.url_ttl_s) == (4, 0.05, 100, 60)
    assert (s.secret, s.public_url, s.max_prompt_chars) == ("k" * 32, "https://kiln.example", 500)
    assert s.generation_defaults == GenerationDefaults(
        steps=12, guidance=3.5, scheduler="ddim", preview_every=5
    )
    assert s.database_url == "postgresql+psycopg://kiln@db/kiln"
    assert (s.admin_key, s.tenant_max_concurrent) == ("kiln_admin-key-for-settings-tests-0001", 2)
    assert (s.tenant_max_queued_images, s.fair_queue) == (24, False)
    assert s.scheduler_class_weights == "interactive=9,batch=1"
    assert s.asset_retention_days == 30 and s.assets_dir == tmp_path / "assets"
    assert (s.c2pa_cert, s.c2pa_key) == (tmp_path / "chain.pem", tmp_path / "key.pem")
    assert s.c2pa_alg == "es384"
    assert s.styles_per_replica == 3 and s.styles_dir == tmp_path / "styles"
    assert (s.style_max_bytes, s.style_max_rank) == (1048576, 32)
    assert (s.pin_scale_character, s.pin_scale_product) == (0.9, 0.4)
    assert (s.training_steps, s.training_max_steps, s.training_rank) == (50, 60, 4)
    assert (s.training_learning_rate, s.training_cpus) == (0.01, 0.25)
    assert s.effective_training_gpus(cluster_gpus=0) == 0.5 and s.jobs_dir == tmp_path / "jobs"
    assert (s.training_image_max_bytes, s.training_image_max_pixels) == (1000, 2000)
    assert (s.agentic_max_candidates, s.agentic_max_rounds) == (3, 0)
    assert (s.image_max_bytes, s.image_max_pixels) == (3000, 4000)
    assert (s.clip_gpus, s.clip_device) == (0.1, "cuda")
    assert (s.batch_max_bytes, s.batch_max_lines) == (5000, 7)
    assert (s.oom_retry, s.oom_max_failures) == (False, 5)
    assert (s.model_min_replicas, s.model_max_replicas, s.model_idle_s) == (0, 4, 90.0)
    assert (s.body_max_json, s.body_max_images) == (6000, 7000)
    assert (s.body_max_style, s.body_max_training, s.multipart_max_parts) == (8000, 9000, 11)
    assert (s.svg_max_concurrent, s.event_streams_per_tenant) == (3, 12)
    assert s.reservation_lease_s == 45.5
    assert (s.style_imports_max, s.style_imports_max_bytes) == (13, 14000)
    assert s.bench is True
    fast = s.fast_path()  # every fast-path variable reaches the engine's options
    assert (fast.compile, fast.compile_backend, fast.mode) == (
        "off", "aot_eager", "max-autotune-no-cudagraphs",
    )  # fmt: skip
    assert (fast.fused_qkv, fast.channels_last, fast.vae_tile_min_pixels) == (True, True, 0)
    assert (fast.vae_dtype, fast.fa3, fast.fp8, fast.warmup) == ("fp32", False, True, False)
    assert fast.lora_hotswap_rank == 32
    assert "kiln_admin-key-for-settings-tests-0001" not in repr(s)


def test_empty_values_mean_unset():
    assert Settings.from_env({"KILN_PORT": "", "KILN_DEVICE": "  "}).port == 8000


@pytest.mark.parametrize(
    "name, value",
    [
        ("KILN_PORT", "eighty"),
        ("KILN_PORT", "70000"),
        ("KILN_DEVICE", "tpu"),
        ("KILN_HTTP_SERVER", "nginx"),
        ("KILN_SCHEDULER", "ray"),
        ("KILN_MAX_BATCH_SIZE", "0"),
        ("KILN_REPLICA_CPUS", "-1"),
        ("KILN_PIN_SCALE_CHARACTER", "2.5"),
        ("KILN_OOM_RETRY", "maybe"),
        ("KILN_MODEL_MAX_REPLICAS", "0"),
        ("KILN_TENANT_MAX_QUEUED_IMAGES", "0"),
        ("KILN_SCHEDULER_CLASS_WEIGHTS", "interactive=4,urgent=1"),
        ("KILN_SCHEDULER_CLASS_WEIGHTS", "batch=0"),
        ("KILN_SCHEDULER_CLASS_WEIGHTS", "batch=101"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_overrides_by_field_name_parse_strings_like_the_environment():
    s = Settings.from_env({"KILN_PORT": "9001"}, port="9002", max_batch_size=2)
    assert (s.port, s.max_batch_size) == (9002, 2)
    with pytest.raises(SettingsError, match="unknown setting 'batch'"):
        Settings.from_env({}, batch=3)
    assert s.with_overrides(host=None, port=1).port == 1


def test_gpus_per_replica_defaults_follow_the_device():
    assert Settings(device="cpu").effective_gpus_per_replica(cluster_gpus=8) == 0
    assert Settings(device="cuda").effective_gpus_per_replica(cluster_gpus=0) == 1
    assert Settings().effective_gpus_per_replica(cluster_gpus=0) == 0
    assert Settings().effective_gpus_per_replica(cluster_gpus=2) == 1
    assert Settings(gpus_per_replica=0.5).effective_gpus_per_replica(cluster_gpus=0) == 0.5


def test_training_gpus_default_to_one_where_the_cluster_has_one():
    assert Settings().effective_training_gpus(cluster_gpus=0) == 0
    assert Settings().effective_training_gpus(cluster_gpus=4) == 1
    assert Settings(device="cpu").effective_training_gpus(cluster_gpus=4) == 0


def test_models_share_the_gpus_when_there_are_fewer_gpus_than_models():
    assert Settings().effective_gpus_per_replica(cluster_gpus=1, deployments=2) == 0.5
    assert Settings(device="cuda").effective_gpus_per_replica(1, deployments=4) == 0.25
    assert Settings().effective_gpus_per_replica(cluster_gpus=8, deployments=2) == 1
    explicit = Settings(gpus_per_replica=1)
    assert explicit.effective_gpus_per_replica(cluster_gpus=1, deployments=2) == 1


def test_settings_pickle_and_hide_the_secret():
    s = Settings(secret="hunter2-hunter2-hunter2-hunter2-hunter2", port=9000)
    assert pickle.loads(pickle.dumps(s)) == s
    assert "hunter2-hunter2-hunter2-hunter2-hunter2" not in repr(s)


def test_secret_is_created_once_private_and_reused(tmp_path: Path):
    s = Settings(home=tmp_path / "home")
    key = s.effective_secret()
    path = tmp_path / "home" / "secret.key"
    assert len(key) >= 32 and path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, "a KILN_HOME made here is private"
    assert s.effective_secret() == key == load_or_create_secret(path)
    assert (
        Settings(
            home=tmp_path / "home", secret="explicit-secret-for-settings-tests-0001"
        ).effective_secret()
        == "explicit-secret-for-settings-tests-0001"
    )
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"], "no temp files left"


@pytest.mark.parametrize("variable", ["KILN_SECRET", "KILN_ADMIN_KEY"])
def test_a_short_secret_or_admin_key_is_refused_naming_the_variable(variable: str):
    with pytest.raises(SettingsError, match=f"{variable} is 31 characters"):
        Settings.from_env({variable: "x" * 31})
    field = "secret" if variable == "KILN_SECRET" else "admin_key"
    with pytest.raises(SettingsError, match=variable):
        Settings(**{field: "short"})
    assert getattr(Settings.from_env({variable: "x" * 32}), field) == "x" * 32
    # Unset or empty still means "generate one".
    assert getattr(Settings.from_env({variable: ""}), field) is None
    assert getattr(Settings(**{field: ""}), field) == ""


def test_every_setting_is_one_declared_variable():
    names = [var.name for var in ENV_VARS]
    assert len(names) == len(set(names)), "no variable is declared twice"
    assert [var.field for var in ENV_VARS] == setting_names()
    assert set(setting_names()) == {f.name for f in fields(Settings)}, "every field is one"
    # The fast path's variables are declared in pipelines (FastPathSwitches), not in serving.
    fast_path = env_vars(FastPathSwitches)
    assert {var.name for var in fast_path} <= set(names) and len(fast_path) == 11
    assert {f.name for f in fields(FastPathOptions)} - {var.field for var in fast_path} == {
        "lora_hotswap_rank",
        "style_slot",
    }, "every fast-path option but the hotswap rank (KILN_STYLE_MAX_RANK) and the slot (the "
    "replica's model kind: serving/ray/model_deployment.py) is a variable"


def test_the_readme_table_is_made_from_the_declarations():
    readme = README.read_text()
    assert readme_with_table(readme) == readme, (
        "README.md's configuration table differs from the declarations: run "
        "`.venv/bin/python -m serving.core.settings_table`"
    )
    table = configuration_table()
    assert all(f"| `{var.name}` | " in table for var in ENV_VARS), "every variable is listed"
    assert table.count("| `KILN_") == len(ENV_VARS)
