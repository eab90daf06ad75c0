"""C2PA manifests with c2pa-python, signed by a CA + leaf chain this test generates."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from pipelines.content_credentials import (
    AI_SOURCE_TYPE,
    GENERATION_ASSERTION,
    C2paSigner,
    embed_c2pa_manifest,
    read_c2pa_manifest,
)
from pipelines.provenance import encode_png, read_png_metadata


@pytest.fixture(scope="module")
def credentials(c2pa_credentials):
    """A test CA and a signing leaf it issued (tests/conftest.py)."""
    return c2pa_credentials


@pytest.fixture(scope="module")
def signer(credentials) -> C2paSigner:
    return C2paSigner(credentials.chain_pem, credentials.key_pem)


def _pixels() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)


METADATA = {"kiln:model": "tiny-sdxl", "kiln:seed": "42", "kiln:asset": "asset-0001"}


def test_manifest_is_embedded_signed_and_trusted_by_its_ca(credentials, signer):
    pixels = _pixels()
    png = encode_png(pixels, METADATA)
    signed = embed_c2pa_manifest(png, signer, title="asset-0001", metadata=METADATA)

    manifest = read_c2pa_manifest(signed, trust_anchors_pem=credentials.ca_pem)
    assert manifest is not None
    assert manifest.validation_state == "Trusted", manifest.validation_status
    assert manifest.title == "asset-0001"
    assert manifest.signer_common_name == "Kiln test signer"
    assert manifest.assertions[GENERATION_ASSERTION] == METADATA
    (action,) = manifest.assertions["c2pa.actions.v2"]["actions"]
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"] == AI_SOURCE_TYPE

    # Without trust anchors the signature still checks out, the signer is just unknown.
    untrusted = read_c2pa_manifest(signed)
    assert untrusted.validation_state == "Valid"
    assert [s["code"] for s in untrusted.validation_status] == ["signingCredential.untrusted"]

    # Pixels and the PNG text metadata are untouched by the manifest.
    with Image.open(io.BytesIO(signed)) as reopened:
        assert np.array_equal(np.asarray(reopened), pixels)
    assert read_png_metadata(signed) == METADATA


def test_the_manifest_carries_no_claim_thumbnail(signer):
    """c2pa-python would add a JPEG of the whole image (most of the signing's time, and
    ~8% of a 1024 px file); the manifest is in the image it describes, so it goes."""
    import c2pa

    rng = np.random.default_rng(3)
    png = encode_png(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), METADATA)
    signed = embed_c2pa_manifest(png, signer, title="asset-0003", metadata=METADATA)
    with c2pa.Reader("image/png", io.BytesIO(signed)) as reader:
        report = json.loads(reader.json())
    active = report["manifests"][report["active_manifest"]]
    assert "thumbnail" not in active
    assert not any("thumbnail" in label for label in report.get("resources", {}))
    assert len(signed) - len(png) < 16_000  # the manifest alone: a few KB


def test_tampered_pixels_invalidate_the_manifest(signer):
    signed = embed_c2pa_manifest(encode_png(_pixels(), {}), signer, title="asset-0002")
    # Swap the image data for other pixels, keeping every chunk (and the manifest) as is.
    with Image.open(io.BytesIO(signed)) as reopened:
        reopened.load()
        other = np.asarray(reopened).copy()
    other[0, 0] ^= 0xFF
    tampered = _replace_idat(signed, encode_png(other, {}))
    manifest = read_c2pa_manifest(tampered)
    assert manifest is not None
    assert manifest.validation_state == "Invalid"


def _replace_idat(signed: bytes, donor: bytes) -> bytes:
    """``signed`` with its IDAT chunks replaced by ``donor``'s (same size and format)."""

    def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
        out, pos = [], 8
        while pos < len(data):
            length = int.from_bytes(data[pos : pos + 4], "big")
            kind = data[pos + 4 : pos + 8]
            out.append((kind, data[pos : pos + 12 + length]))
            pos += 12 + length
        return out

    donor_idat = b"".join(raw for kind, raw in chunks(donor) if kind == b"IDAT")
    parts, placed = [], False
    for kind, raw in chunks(signed):
        if kind == b"IDAT":
            if not placed:
                parts.append(donor_idat)
                placed = True
            continue
        parts.append(raw)
    return signed[:8] + b"".join(parts)


def test_file_without_manifest_reads_none():
    assert read_c2pa_manifest(encode_png(_pixels(), {})) is None


def test_self_signed_leaf_and_bad_credentials_are_refused(credentials):
    with pytest.raises(ValueError, match="PEM chain"):
        C2paSigner(credentials.leaf_pem, credentials.key_pem)
    with pytest.raises(ValueError, match="PEM private key"):
        C2paSigner(credentials.chain_pem, b"not a key")
    with pytest.raises(ValueError, match="unknown signing algorithm"):
        C2paSigner(credentials.chain_pem, credentials.key_pem, alg="md5")


def test_signer_from_files(tmp_path, credentials):
    (tmp_path / "chain.pem").write_bytes(credentials.chain_pem)
    (tmp_path / "key.pem").write_bytes(credentials.key_pem)
    signer = C2paSigner.from_files(tmp_path / "chain.pem", tmp_path / "key.pem")
    assert signer == C2paSigner(credentials.chain_pem, credentials.key_pem)
    assert "BEGIN" not in repr(signer)  # the key never lands in a log line


def test_wrong_key_for_the_certificate_fails_cleanly(credentials):
    other_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = C2paSigner(credentials.chain_pem, other_key)
    with pytest.raises(ValueError, match="C2PA signing failed: Signature"):
        embed_c2pa_manifest(encode_png(_pixels(), {}), signer, title="mismatch")
