"""The ``kiln`` command line: ``serve``, ``models list``, ``weights build-tiny``, ``batch``, and the
admin's ``tenants create``, ``keys create|list|revoke``, ``credits grant``,
``styles import|list|train`` (directly on the database at ``KILN_DATABASE_URL``, no
server needed).

The only module that prints: everything else logs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from serving.core.settings import Settings, SettingsError

logger = logging.getLogger("kiln")

APP_NAME = "kiln"


def _load_catalog(settings: Settings) -> Any:
    from weights.catalog import load_catalog

    return load_catalog(settings.home, settings.catalog_path)


def _build_tiny(catalog: Any) -> list[Any]:
    """Build the catalog's missing tiny models and tiny components."""
    from weights.tiny import ensure_tiny_components, ensure_tiny_models

    return ensure_tiny_models(catalog) + ensure_tiny_components(catalog.components.values())


def _build_tiny_model(spec: Any) -> None:
    """Build one model's tiny weights if the catalog entry has them and they are missing."""
    from weights.tiny import ensure_tiny_models

    ensure_tiny_models([spec])


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Start a local Ray (or join ``KILN_RAY_ADDRESS``), deploy, serve until interrupted."""
    import ray
    from ray import serve

    from serving.ray.app import build_application
    from serving.ray.serve_proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV

    settings = settings.with_overrides(host=args.host, port=args.port)
    _prepare_admin(settings)
    catalog = _load_catalog(settings)
    built = _build_tiny(catalog)
    for path in built:
        print(f"built tiny model {path}")

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    # Serve's HTTP proxy reads request bodies first: it installs the body guard from this
    # variable, which the proxy processes of a local Ray inherit from this one.
    os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
    if settings.ray_address:
        logger.warning(
            "joining the Ray cluster at %s: its nodes must have been started with %s=%s "
            "for the HTTP proxy to check keys and body limits (README: Scaling out)",
            settings.ray_address, PROXY_CALLBACK_ENV, PROXY_CALLBACK,
        )  # fmt: skip
        ray.init(address=settings.ray_address, include_dashboard=False)
    else:
        ray.init(num_cpus=settings.effective_ray_num_cpus(), include_dashboard=False)
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_application(settings, catalog), name=APP_NAME, route_prefix="/")
        url = f"http://{settings.host}:{settings.port}"
        logger.info("Kiln serving %s at %s", ", ".join(catalog.ids()), url)
        print(f"Kiln is serving at {url} (API docs at {url}/docs); Ctrl-C stops it", flush=True)
        # A short timeout keeps the main thread responsive to signals.
        while not stop.wait(0.5):
            pass
        print("shutting down", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


def _prepare_admin(settings: Settings) -> str | None:
    """Migrate the database, ensure the admin key; print a newly generated one, once."""
    from serving.core.accounts import prepare_admin
    from serving.core.accounts.service import ADMIN_KEY_FILE

    admin_key = prepare_admin(settings.database_url, settings.home, settings.admin_key)
    if admin_key is not None:
        print(f"admin API key (shown once; also in {settings.home / ADMIN_KEY_FILE}):")
        print(f"  {admin_key}", flush=True)
    return admin_key


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the catalog."""
    catalog = _load_catalog(settings)
    for spec in catalog:
        prices = ", ".join(f"{tier}={credits:g}" for tier, credits in spec.credits.items())
        print(f"{spec.id}  kind={spec.kind}  family={spec.family}")
        print(f"  sizes: {' '.join(spec.sizes)}")
        print(f"  credits per image: {prices}")
        print(f"  source: {spec.source}")
    return 0


def cmd_build_tiny(args: argparse.Namespace, settings: Settings) -> int:
    """Build missing tiny models; print each one's folder and sha256 manifest."""
    from weights.tiny import MANIFEST

    catalog = _load_catalog(settings)
    started = time.perf_counter()
    built = {str(p) for p in _build_tiny(catalog)}
    tiny = [spec for spec in catalog if spec.tiny is not None]
    if not tiny:
        print("the catalog lists no tiny models")
    for spec in tiny:
        state = "built" if str(spec.source) in built else "present"
        print(f"{spec.id}: {state} at {spec.source}")
        print(f"  sha256 manifest: {spec.source / MANIFEST}")
    print(f"done in {time.perf_counter() - started:.1f}s")
    return 0


class _CommandFailed(Exception):
    """A known, user-facing failure of an accounts command (exit status 1)."""


@contextlib.contextmanager
def _accounts(settings: Settings) -> Iterator[Any]:
    """Accounts on the configured database, closed afterwards; unknown ids become errors."""
    from serving.core.accounts import Accounts, UnknownKey
    from serving.core.ledger import Ledger, UnknownTenant

    accounts = Accounts(Ledger.of(settings))
    try:
        yield accounts
    except (UnknownTenant, UnknownKey) as exc:
        raise _CommandFailed(str(exc)) from None
    finally:
        accounts.ledger.close()


def cmd_tenants_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create a tenant; print its id."""
    with _accounts(settings) as accounts:
        tenant = accounts.create_tenant(args.name)
    print(f"tenant {tenant.id}  name={tenant.name}")
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create an API key; print it (the only time it is shown)."""
    with _accounts(settings) as accounts:
        issued = accounts.create_key(args.tenant_id, role=args.role)
    print(f"key {issued.record.id}  tenant={issued.record.tenant_id}  role={issued.record.role}")
    print("API key (shown once; only its hash is stored):")
    print(f"  {issued.key}")
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    """List a tenant's keys by prefix."""
    with _accounts(settings) as accounts:
        keys = accounts.keys(args.tenant_id)
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "live"
        print(f"{key.id}  {key.prefix}…  role={key.role}  {state}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke a key."""
    with _accounts(settings) as accounts:
        key = accounts.revoke(args.key_id)
    print(f"revoked {key.id} ({key.prefix}…)")
    return 0


def cmd_credits_grant(args: argparse.Namespace, settings: Settings) -> int:
    """Grant credits to a tenant; print the new balance."""
    if args.amount <= 0:
        print("kiln: the amount must be a positive whole number of credits", file=sys.stderr)
        return 2
    with _accounts(settings) as accounts:
        accounts.ledger.grant(args.tenant_id, args.amount, reference="cli grant")
        balance = accounts.ledger.balance(args.tenant_id)
    print(f"tenant {args.tenant_id}: balance {balance.available} (held {balance.held})")
    return 0


def cmd_assets_purge(args: argparse.Namespace, settings: Settings) -> int:
    """Delete unlicensed assets older than N days (a cron job's retention sweep)."""
    from serving.core.assets import Assets, BlobStore
    from serving.core.ledger import Ledger

    days = args.days or settings.asset_retention_days
    if days is None or days < 1:
        print("kiln: give --days N (at least 1) or set KILN_ASSET_RETENTION_DAYS", file=sys.stderr)
        return 2
    ledger = Ledger.of(settings)
    try:
        purged = Assets(ledger.engine, BlobStore(settings.assets_dir)).purge_expired(days)
    finally:
        ledger.close()
    print(f"deleted {purged} unlicensed asset(s) older than {days} day(s)")
    return 0


def cmd_styles_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import a LoRA file as an artist style (``--artist``) or a tenant's private style
    (``--tenant``), with the same checks as ``POST /v1/styles``."""
    from pathlib import Path

    from pipelines.params import ParamError
    from serving.core.ledger import Ledger, UnknownTenant
    from serving.core.styles import StyleImport, Styles
    from styles.lora_file import StyleFileError
    from weights.catalog import UnknownModelError

    if args.artist == (args.tenant is not None):
        print(
            "kiln: give --artist or --tenant TENANT_ID (a private style), not both", file=sys.stderr
        )
        return 2
    path = Path(args.file)
    if not path.is_file():
        raise _CommandFailed(f"no file {path}")
    catalog = _load_catalog(settings)
    if args.model in catalog:
        _build_tiny_model(catalog.get(args.model))  # the model's config is read for the check
    request = StyleImport(
        name=args.name,
        base_model=args.model,
        kind="artist" if args.artist else "private",
        trigger_words=tuple(args.trigger),
        default_strength=args.strength,
    )
    ledger = Ledger.of(settings)
    try:
        styles = Styles.from_settings(ledger.engine, catalog, settings)
        record = styles.import_file(path, request, args.tenant)
    except (ParamError, StyleFileError, UnknownModelError, UnknownTenant) as exc:
        raise _CommandFailed(str(exc)) from None
    finally:
        ledger.close()
    owner = f"tenant={record.owner}" if record.owner else "visible to every tenant"
    print(f"style {record.id}  name={record.name}  kind={record.kind}  {owner}")
    print(f"  model={record.base_model}  family={record.family}  rank={record.rank}")
    print(f"  file: {styles.file_path(record)}")
    return 0


def cmd_styles_list(args: argparse.Namespace, settings: Settings) -> int:
    """List every style, or those one tenant may use (``--tenant``)."""
    from serving.core.ledger import Ledger
    from serving.core.styles import Styles

    ledger = Ledger.of(settings)
    try:
        styles = Styles.from_settings(ledger.engine, _load_catalog(settings), settings)
        records = styles.list(args.tenant) if args.tenant else styles.all()
    finally:
        ledger.close()
    for record in records:
        owner = record.owner or "everyone"
        print(
            f"{record.id}  {record.kind}  owner={owner}  model={record.base_model}  {record.name}"
        )
    return 0


# The formats every image input accepts (serving.core.image_inputs): PNG, JPEG, WebP.
TRAINING_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class _ProgressBar:
    """One stderr line, rewritten in place: ``[####......] 120/500 loss 0.1234``."""

    WIDTH = 30

    def __init__(self, total: int) -> None:
        self.total = total

    def update(self, progress: dict[str, Any]) -> None:
        step, total = progress.get("step", 0), progress.get("total", self.total) or 1
        filled = round(self.WIDTH * step / total)
        loss = f"  loss {progress['loss']:.4f}" if "loss" in progress else ""
        stage = "" if loss else f"  {progress.get('stage', '')}"
        bar = "#" * filled + "." * (self.WIDTH - filled)
        print(f"\r[{bar}] {step}/{total}{loss}{stage}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        print(file=sys.stderr, flush=True)


def cmd_styles_train(args: argparse.Namespace, settings: Settings) -> int:
    """Train a private style for ``--tenant`` from the images in DIR (captions from
    ``<image>.txt`` beside them), here and now, with the price and checks of
    ``POST /v1/styles/train``; Ctrl-C cancels and keeps nothing."""
    from pathlib import Path

    from pipelines.params import ParamError
    from serving.core.image_inputs import UploadTooLarge
    from serving.core.jobs.runner import execute_job
    from serving.core.jobs.style_training import (
        StyleTrainingRequest,
        check_image_bytes,
        check_request,
        decode_training_image,
        submit_style_training,
    )
    from serving.core.ledger import InsufficientCredits, Ledger, UnknownTenant
    from weights.catalog import UnknownModelError

    folder = Path(args.dir)
    if not folder.is_dir():
        raise _CommandFailed(f"no folder {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in TRAINING_IMAGE_SUFFIXES)
    captions = [p.with_suffix(".txt") for p in files]
    texts = [c.read_text().strip() if c.is_file() else "" for c in captions]
    catalog = _load_catalog(settings)
    request = StyleTrainingRequest(
        name=args.name,
        model=args.model,
        trigger_word=args.trigger,
        captions=tuple(texts) if any(texts) else (),
        steps=args.steps,
        seed=args.seed,
    )
    ledger = Ledger.of(settings)
    try:
        request = check_request(request, len(files), settings, catalog)
        _build_tiny_model(catalog.get(args.model))
        images = []
        for index, path in enumerate(files):
            check_image_bytes(path.stat().st_size, index, settings)
            images.append(decode_training_image(path.read_bytes(), index, settings))
        job = submit_style_training(
            args.tenant, request, images, settings=settings, catalog=catalog, ledger=ledger
        )
        print(
            f"job {job.id}: {request.steps} steps on {len(files)} images of {folder} "
            f"({job.price} credits if it succeeds)",
            flush=True,
        )
        bar = _ProgressBar(request.steps or 0)
        try:
            done = execute_job(
                settings, job.id, ledger=ledger, catalog=catalog, listener=bar.update
            )
        except KeyboardInterrupt:
            bar.close()
            print("kiln: training cancelled; nothing was kept or charged", file=sys.stderr)
            return 130
        bar.close()
    except (ParamError, UploadTooLarge, UnknownModelError, UnknownTenant) as exc:
        raise _CommandFailed(f"{getattr(exc, 'param', None) or 'error'}: {exc}") from None
    except InsufficientCredits as exc:
        message = f"not enough credits: {exc.needed} needed, {exc.available} available"
        raise _CommandFailed(message) from None
    finally:
        ledger.close()
    if done.state != "succeeded":
        print(f"kiln: training {done.state}: {done.error or ''}", file=sys.stderr)
        return 1
    result = done.result or {}
    print(f"style {result['style_id']}  name={request.name}  private to tenant={args.tenant}")
    print(
        f"  model={request.model}  steps={result['steps']}  final loss={result['final_loss']:.4f}"
        f"  credits charged={result['credits_charged']}"
    )
    return 0


def cmd_batch(args: argparse.Namespace, settings: Settings) -> int:
    """Render a JSONL batch into ``--out`` on Ray Data (serving/batch): invalid lines are
    listed and nothing runs (exit 2) unless ``--skip-invalid``; exit 1 if a line failed."""
    from pathlib import Path

    from serving.http.batch.lines import parse_batch
    from serving.ray.batch.progress import ProgressBar, summary_text
    from serving.ray.batch.runner import BatchOptions, UnknownBatchTenant, resolve_tenant, run_batch

    path = Path(args.file)
    if not path.is_file():
        raise _CommandFailed(f"no file {path}")
    catalog = _load_catalog(settings)
    text = path.read_text(encoding="utf-8")
    lines, invalid = parse_batch(
        text, base_dir=path.parent.resolve(), catalog=catalog, settings=settings
    )
    for bad in invalid:
        print(f"kiln: {bad.message}", file=sys.stderr)
    if invalid and not args.skip_invalid:
        print(
            f"kiln: {len(invalid)} invalid line(s), nothing ran (--skip-invalid runs the rest)",
            file=sys.stderr,
        )
        return 2
    try:
        tenant_id = resolve_tenant(settings, args.tenant) if args.tenant else None
    except UnknownBatchTenant as exc:
        raise _CommandFailed(str(exc)) from None
    for built in _build_tiny(catalog):
        print(f"built tiny model {built}")
    options = BatchOptions(Path(args.out), tenant_id, args.address, args.workers)
    # Ray Data's per-dataset INFO lines would break the progress bar's line.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    bar = ProgressBar()
    try:
        with GracefulInterrupt() as interrupt:
            summary = run_batch(
                settings,
                catalog,
                lines,
                options,
                on_progress=bar.update,
                should_stop=interrupt.requested.is_set,
            )
    except KeyboardInterrupt:
        bar.close()
        print("kiln: aborted; finished lines are kept, a rerun resumes", file=sys.stderr)
        return 130
    except ConnectionError as exc:  # ray.init found no cluster at --address
        raise _CommandFailed(f"cannot reach the Ray cluster: {exc}") from None
    bar.close()
    print(summary_text(summary))
    if summary.stopped:
        print("kiln: stopped by Ctrl-C after the lines in flight; a rerun resumes", file=sys.stderr)
        return 130
    return 1 if summary.failed else 0


class GracefulInterrupt:
    """The first Ctrl-C asks a batch to stop after the lines in flight (they were charged:
    they are finished and recorded); a second one aborts at once (``KeyboardInterrupt``)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous: Any = None

    def __enter__(self) -> GracefulInterrupt:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt
        self.requested.set()
        print("\nkiln: stopping after the lines in flight (Ctrl-C again aborts)", file=sys.stderr)


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kiln``."""
    parser = argparse.ArgumentParser(prog="kiln", description="Kiln image-generation server")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the HTTP server (local Ray)")
    serve.add_argument("--host", help="listen address (default KILN_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default KILN_PORT or 8000)")
    serve.set_defaults(func=cmd_serve)

    models = commands.add_parser("models", help="the model catalog")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    models_commands.add_parser("list", help="list models, sizes, prices").set_defaults(
        func=cmd_models_list
    )

    weights = commands.add_parser("weights", help="model weights")
    weights_commands = weights.add_subparsers(dest="weights_command", required=True)
    weights_commands.add_parser("build-tiny", help="build the tiny models").set_defaults(
        func=cmd_build_tiny
    )

    tenants = commands.add_parser("tenants", help="tenants (on the database)")
    tenants_commands = tenants.add_subparsers(dest="tenants_command", required=True)
    create_tenant = tenants_commands.add_parser("create", help="create a tenant")
    create_tenant.add_argument("name")
    create_tenant.set_defaults(func=cmd_tenants_create)

    keys = commands.add_parser("keys", help="API keys (on the database)")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create_key = keys_commands.add_parser("create", help="create a key, printed once")
    create_key.add_argument("tenant_id")
    create_key.add_argument("--role", choices=("tenant", "admin"), default="tenant")
    create_key.set_defaults(func=cmd_keys_create)
    list_keys = keys_commands.add_parser("list", help="a tenant's keys, by prefix")
    list_keys.add_argument("tenant_id")
    list_keys.set_defaults(func=cmd_keys_list)
    revoke_key = keys_commands.add_parser("revoke", help="revoke a key")
    revoke_key.add_argument("key_id")
    revoke_key.set_defaults(func=cmd_keys_revoke)

    credits = commands.add_parser("credits", help="credits (on the database)")
    credits_commands = credits.add_subparsers(dest="credits_command", required=True)
    grant = credits_commands.add_parser("grant", help="grant credits to a tenant")
    grant.add_argument("tenant_id")
    grant.add_argument("amount", type=int)
    grant.set_defaults(func=cmd_credits_grant)

    assets = commands.add_parser("assets", help="stored images (on the database)")
    assets_commands = assets.add_subparsers(dest="assets_command", required=True)
    purge = assets_commands.add_parser(
        "purge", help="delete unlicensed assets older than N days (licensed ones stay)"
    )
    purge.add_argument("--days", type=int, help="default KILN_ASSET_RETENTION_DAYS")
    purge.set_defaults(func=cmd_assets_purge)

    styles = commands.add_parser("styles", help="LoRA styles (on the database)")
    styles_commands = styles.add_subparsers(dest="styles_command", required=True)
    import_style = styles_commands.add_parser(
        "import", help="import a LoRA .safetensors file as a style"
    )
    import_style.add_argument("file", help="the LoRA (.safetensors; kohya or diffusers layout)")
    import_style.add_argument("--name", required=True)
    import_style.add_argument("--model", required=True, help="the catalog model it is for")
    import_style.add_argument("--artist", action="store_true", help="visible to every tenant")
    import_style.add_argument("--tenant", help="the owner of a private style")
    import_style.add_argument(
        "--trigger", nargs="+", action="extend", default=[], metavar="WORD",
        help="trigger word(s) put in front of prompts",
    )  # fmt: skip
    import_style.add_argument(
        "--strength", type=float, default=1.0, help="default style strength (0-2, default 1)"
    )
    import_style.set_defaults(func=cmd_styles_import)
    list_styles = styles_commands.add_parser("list", help="list styles")
    list_styles.add_argument("--tenant", help="only those this tenant may use")
    list_styles.set_defaults(func=cmd_styles_list)
    train_style = styles_commands.add_parser(
        "train", help="train a private style from a folder of 5-50 images"
    )
    train_style.add_argument("dir", help="the images (captions in <image>.txt beside them)")
    train_style.add_argument("--name", required=True)
    train_style.add_argument("--model", required=True, help="the catalog model to train for")
    train_style.add_argument("--tenant", required=True, help="the tenant who owns the style")
    train_style.add_argument("--steps", type=int, help="training steps (KILN_TRAINING_STEPS)")
    train_style.add_argument("--trigger", help="trigger word put first in every caption")
    train_style.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    train_style.set_defaults(func=cmd_styles_train)

    batch = commands.add_parser(
        "batch", help="render a JSONL file of requests on Ray Data (resumable)"
    )
    batch.add_argument("file", help="one request a line, with kind: generation|edit|agentic")
    batch.add_argument("--out", required=True, help="folder for the images and manifest.jsonl")
    batch.add_argument("--address", help="Ray cluster: auto or HOST:PORT (default: local Ray)")
    batch.add_argument("--tenant", help="run as this tenant (id or name), charging its credits")
    batch.add_argument("--skip-invalid", action="store_true", help="run the valid lines anyway")
    batch.add_argument("--workers", type=int, help="actors per model (default: by cluster)")
    batch.set_defaults(func=cmd_batch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kiln`` console script."""
    args = make_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Before anything imports huggingface_hub: nothing is downloaded at run time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except SettingsError as exc:
        print(f"kiln: configuration error: {exc}", file=sys.stderr)
        return 2
    except _CommandFailed as exc:
        print(f"kiln: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
