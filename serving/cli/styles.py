"""``kiln styles import|list|train``: LoRA styles on the database, with the checks and
prices of ``POST /v1/styles`` and ``POST /v1/styles/train``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serving.cli.base import Command, CommandFailed, Group, build_tiny_model, load_catalog
from serving.cli.progress import TrainingBar
from serving.core.settings import Settings

# The formats every image input accepts (serving.core.image_inputs): PNG, JPEG, WebP.
TRAINING_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def cmd_styles_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import a LoRA file as an artist style (``--artist``) or a tenant's private style
    (``--tenant``), with the same checks as ``POST /v1/styles``."""
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
        raise CommandFailed(f"no file {path}")
    catalog = load_catalog(settings)
    if args.model in catalog:
        build_tiny_model(catalog.get(args.model))  # the model's config is read for the check
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
        raise CommandFailed(str(exc)) from None
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
        styles = Styles.from_settings(ledger.engine, load_catalog(settings), settings)
        records = styles.list(args.tenant) if args.tenant else styles.all()
    finally:
        ledger.close()
    for record in records:
        owner = record.owner or "everyone"
        print(
            f"{record.id}  {record.kind}  owner={owner}  model={record.base_model}  {record.name}"
        )
    return 0


def cmd_styles_train(args: argparse.Namespace, settings: Settings) -> int:
    """Train a private style for ``--tenant`` from the images in DIR (captions from
    ``<image>.txt`` beside them), here and now, with the price and checks of
    ``POST /v1/styles/train``; Ctrl-C cancels and keeps nothing."""
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
        raise CommandFailed(f"no folder {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in TRAINING_IMAGE_SUFFIXES)
    captions = [p.with_suffix(".txt") for p in files]
    texts = [c.read_text().strip() if c.is_file() else "" for c in captions]
    catalog = load_catalog(settings)
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
        build_tiny_model(catalog.get(args.model))
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
        bar = TrainingBar(request.steps or 0)
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
        raise CommandFailed(f"{getattr(exc, 'param', None) or 'error'}: {exc}") from None
    except InsufficientCredits as exc:
        message = f"not enough credits: {exc.needed} needed, {exc.available} available"
        raise CommandFailed(message) from None
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


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the LoRA (.safetensors; kohya or diffusers layout)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--model", required=True, help="the catalog model it is for")
    parser.add_argument("--artist", action="store_true", help="visible to every tenant")
    parser.add_argument("--tenant", help="the owner of a private style")
    parser.add_argument(
        "--trigger", nargs="+", action="extend", default=[], metavar="WORD",
        help="trigger word(s) put in front of prompts",
    )  # fmt: skip
    parser.add_argument(
        "--strength", type=float, default=1.0, help="default style strength (0-2, default 1)"
    )


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", help="only those this tenant may use")


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="the images (captions in <image>.txt beside them)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--model", required=True, help="the catalog model to train for")
    parser.add_argument("--tenant", required=True, help="the tenant who owns the style")
    parser.add_argument("--steps", type=int, help="training steps (KILN_TRAINING_STEPS)")
    parser.add_argument("--trigger", help="trigger word put first in every caption")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")


STYLES = Group(
    "styles",
    "LoRA styles (on the database)",
    (
        Command(
            "import",
            "import a LoRA .safetensors file as a style",
            cmd_styles_import,
            _import_arguments,
        ),
        Command("list", "list styles", cmd_styles_list, _list_arguments),
        Command(
            "train",
            "train a private style from a folder of 5-50 images",
            cmd_styles_train,
            _train_arguments,
        ),
    ),
)
