"""A LoRA file as bytes: its size and format checked before anything parses it, and its
place under ``KILN_HOME/styles``.

    check_size(upload.size, max_bytes)                        # StyleFileTooLarge
    header = read_header(path, size)                          # StyleFileError
    stored = store_lora_file(path, styles_dir, sha256_of(path))   # atomic, by content

The cheap checks come first so that a bad file is refused before any parsing:

1. Size, from the file system, before a byte is read (``StyleFileTooLarge``).
2. Format: safetensors only. A zip (``torch.save``), a pickle (``.ckpt``/``.bin``/``.pt``)
   or random bytes are named as such; a header that promises more bytes than the file
   has is a truncated file. Pickles are never unpickled: loading one can run code.

Whether the layers fit a base model is ``styles.lora_fit`` (which runs these checks
first: ``inspect_lora``).

The file stored is the uploaded file, byte for byte, named by its SHA-256
(``styles.record.style_file_path``): importing the same bytes twice stores one file. It
is private to Kiln's user (folder 0700, file 0600: ``weights.home``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
from pathlib import Path
from typing import Any

from styles.record import style_file_path
from weights.home import open_private, private_dir

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
# safetensors refuses headers above 100 MB; a LoRA's header is a few hundred kB.
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


class StyleFileError(ValueError):
    """A LoRA file Kiln refuses; the message says why in words a user can act on."""

    param = "file"


class StyleFileTooLarge(StyleFileError):
    """A LoRA file over the size limit (checked before the file is read)."""


# 1-2: size and format


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_size(size: int, max_bytes: int) -> None:
    """Refuse a file of ``size`` bytes over ``max_bytes`` (``StyleFileTooLarge``)."""
    if size > max_bytes:
        raise StyleFileTooLarge(
            f"the LoRA file is {_mib(size)}, over the limit of {_mib(max_bytes)} "
            "(KILN_STYLE_MAX_BYTES)"
        )


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n} bytes"


def _not_safetensors(head: bytes) -> str:
    """Why bytes that do not open as safetensors are not, in the user's terms."""
    if head.startswith(b"PK\x03\x04"):
        return (
            "it is a zip archive, as PyTorch's torch.save writes (.pt/.ckpt/.bin): a pickle, "
            "refused because loading one can run code; convert it to .safetensors"
        )
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return (
            "it is a Python pickle (.ckpt/.bin/.pt), refused because loading one can run "
            "code; convert it to .safetensors"
        )
    return "it is not a safetensors file (only .safetensors LoRA files are accepted)"


def read_header(path: Path, size: int) -> dict[str, Any]:
    """The safetensors header of ``path`` (``size`` bytes long), checked against the file:
    every tensor's data must lie inside it (safetensors itself then checks the rest)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise StyleFileError(f"the file is {size} bytes long: {_not_safetensors(head)}")
        (header_len,) = struct.unpack("<Q", head)
        if not 2 <= header_len <= _MAX_HEADER_BYTES:
            raise StyleFileError(_not_safetensors(head + f.read(8)))
        raw = f.read(header_len)
    if len(raw) < header_len:
        if raw.startswith(b"{"):
            raise StyleFileError(
                f"the safetensors file is truncated: its header alone needs {header_len} "
                f"bytes, the file has {len(raw)} after the length"
            )
        raise StyleFileError(_not_safetensors(head + raw[:8]))
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StyleFileError(_not_safetensors(head + raw[:8])) from None
    if not isinstance(header, dict):
        raise StyleFileError(_not_safetensors(head + raw[:8]))
    header.pop("__metadata__", None)
    end = 0
    for name, entry in header.items():
        try:
            if not {"dtype", "shape", "data_offsets"} <= set(entry):
                raise KeyError(name)
            end = max(end, int(entry["data_offsets"][1]))
        except (TypeError, ValueError, KeyError, IndexError):
            raise StyleFileError(
                f"the safetensors header is malformed at tensor {name!r}"
            ) from None
    available = size - 8 - header_len
    if end > available:
        raise StyleFileError(
            f"the safetensors file is truncated: its tensors need {end} bytes of data, "
            f"the file holds {available}"
        )
    if not header:
        raise StyleFileError("the safetensors file holds no tensors")
    return header


def load_tensors(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    """The tensors of a checked file; LoRA weights are floating point and finite."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    odd = sorted(k for k, e in header.items() if e["dtype"] not in _FLOAT_DTYPES)
    if odd:
        raise StyleFileError(
            f"LoRA weights are floating point; {odd[0]!r} is {header[odd[0]]['dtype']}"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise StyleFileError(f"the safetensors file cannot be read: {exc}") from None
    for name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise StyleFileError(f"tensor {name!r} holds NaN or infinite values")
    return tensors


# Storage, by content


def stage_lora_file(path: Path, styles_dir: Path) -> Path:
    """A private copy of ``path`` (0600, flushed to disk) beside the content addresses in
    ``styles_dir``, so that ``store_lora_file`` puts it in place with one rename. The
    caller removes it if it is not used."""
    private_dir(styles_dir)
    staged = styles_dir / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
    try:
        with open(path, "rb") as src, open_private(staged) as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged


def store_lora_file(
    path: Path, styles_dir: Path, sha256: str, *, staged: Path | None = None
) -> tuple[Path, bool]:
    """Make sure the bytes of ``path`` are at their content address under ``styles_dir``;
    returns the address and whether this call put them there (False when the same bytes
    were stored before). ``staged`` (``stage_lora_file`` of ``path``) is renamed into
    place when given; otherwise ``path`` is copied through a staged file. Either way a
    reader never sees half a file."""
    target = style_file_path(styles_dir, sha256)
    if target.is_file():
        return target, False
    copy = staged if staged is not None else stage_lora_file(path, styles_dir)
    try:
        os.replace(copy, target)
    finally:
        copy.unlink(missing_ok=True)
    return target, True
