"""C2PA manifests ("Content Credentials"): a signed record, embedded in the image file, that
Kiln's model made the image, with what model and seed.

    signer = C2paSigner.from_files(cert_chain_path, key_path)     # configured by serving/
    signed = embed_c2pa_manifest(png_bytes, signer, title=asset_id, metadata={...})
    read_c2pa_manifest(signed, trust_anchors_pem=ca_pem).validation_state  # "Trusted"

Only where a signing certificate is configured: without one, no manifest. C2PA wants a
certificate chain (leaf, then intermediates, up to but not including a root that readers
trust), not a self-signed leaf; the leaf needs the digitalSignature key usage and an
extended key usage C2PA accepts (emailProtection, documentSigning, ...).

Pixels are untouched; the file bytes differ on every signing (the manifest carries a
fresh identifier and the signing time), so content addressing uses the pixels or the
unsigned bytes, not the signed file.

No claim thumbnail (c2pa-python makes one by default): the manifest is embedded in the
image it describes, so a reader shows the image itself, and the thumbnail (a JPEG of the
whole image, decoded and re-encoded) was most of the signing's cost. A 1024 px PNG: 65 ms
and 160 KB added with it, 5 ms and 3 KB without (benchmarks/delivery_cost.py).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Algorithms c2pa-python signs with (its C2paSigningAlg names).
SIGNING_ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
# IPTC's term for "made by a trained model", which C2PA readers show as AI-generated.
AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
# Label of Kiln's own assertion (generation metadata: model, seed, asset id, ...).
GENERATION_ASSERTION = "org.kiln.generation"
_MIME_TYPES = ("image/png", "image/jpeg", "image/webp")
# c2pa's settings for signing: no claim thumbnail (see the module's docstring).
_SIGNING_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}


@dataclass(frozen=True)
class C2paSigner:
    """Signing credentials: a PEM chain (leaf first) and the leaf's PEM private key."""

    cert_chain_pem: bytes = field(repr=False)
    private_key_pem: bytes = field(repr=False)
    alg: str = "es256"
    # A RFC 3161 timestamp authority; None signs without a trusted timestamp (offline).
    tsa_url: str | None = None

    def __post_init__(self) -> None:
        if self.alg not in SIGNING_ALGORITHMS:
            raise ValueError(
                f"unknown signing algorithm {self.alg!r}; known: {', '.join(SIGNING_ALGORITHMS)}"
            )
        if self.cert_chain_pem.count(b"-----BEGIN CERTIFICATE-----") < 2:
            raise ValueError(
                "the C2PA signing certificate must be a PEM chain (leaf, then its issuer); "
                "a single, self-signed certificate is refused by C2PA"
            )
        if b"PRIVATE KEY-----" not in self.private_key_pem:
            raise ValueError("the C2PA signing key must be a PEM private key")

    @classmethod
    def from_files(
        cls, cert_chain: Path, private_key: Path, alg: str = "es256", tsa_url: str | None = None
    ) -> C2paSigner:
        """Credentials read from a PEM chain file and a PEM key file."""
        return cls(Path(cert_chain).read_bytes(), Path(private_key).read_bytes(), alg, tsa_url)


@dataclass(frozen=True)
class C2paManifest:
    """The active manifest of a file, as read back."""

    title: str | None
    # "Invalid", "Valid" (signature and hashes check out) or "Trusted" (and the chain ends
    # in one of the trust anchors given).
    validation_state: str | None
    # Problems C2PA reports (code, explanation); empty when it has none.
    validation_status: tuple[dict[str, Any], ...]
    # Assertion label -> data, e.g. "c2pa.actions.v2", GENERATION_ASSERTION.
    assertions: dict[str, Any]
    signer_common_name: str | None


def embed_c2pa_manifest(
    data: bytes,
    signer: C2paSigner,
    title: str,
    metadata: Mapping[str, str] | None = None,
    mime_type: str = "image/png",
    generator_version: str = "0.1.0",
) -> bytes:
    """``data`` (an encoded image) with a signed C2PA manifest: a ``c2pa.created`` action
    by a trained model, and ``metadata`` as Kiln's generation assertion."""
    import c2pa

    if mime_type not in _MIME_TYPES:
        raise ValueError(f"unsupported mime type {mime_type!r}; known: {', '.join(_MIME_TYPES)}")
    assertions: list[dict[str, Any]] = [
        {
            "label": "c2pa.actions",
            "data": {
                "actions": [
                    {
                        "action": "c2pa.created",
                        "digitalSourceType": AI_SOURCE_TYPE,
                        "softwareAgent": {"name": "Kiln", "version": generator_version},
                    }
                ]
            },
        }
    ]
    if metadata:
        assertions.append({"label": GENERATION_ASSERTION, "data": dict(metadata)})
    manifest = {
        "claim_generator_info": [{"name": "Kiln", "version": generator_version}],
        "title": title,
        "format": mime_type,
        "assertions": assertions,
    }
    info = c2pa.C2paSignerInfo(
        alg=signer.alg.encode(),
        sign_cert=signer.cert_chain_pem,
        private_key=signer.private_key_pem,
        ta_url=signer.tsa_url.encode() if signer.tsa_url else None,
    )
    out = io.BytesIO()
    try:
        # A context of its own per signing: c2pa's settings are per context, none shared
        # between the delivery pool's threads (0.3 ms to make).
        context = c2pa.Context.from_dict(_SIGNING_SETTINGS)
        with (
            c2pa.Signer.from_info(info) as c2pa_signer,
            c2pa.Builder(manifest, context=context) as builder,
        ):
            builder.sign(c2pa_signer, mime_type, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise ValueError(f"C2PA signing failed: {exc}") from exc
    return out.getvalue()


def read_c2pa_manifest(
    data: bytes, mime_type: str = "image/png", trust_anchors_pem: bytes | None = None
) -> C2paManifest | None:
    """The active C2PA manifest of ``data``, validated (against ``trust_anchors_pem`` when
    given); None when the file carries none."""
    import c2pa

    if mime_type not in _MIME_TYPES:
        raise ValueError(f"unsupported mime type {mime_type!r}; known: {', '.join(_MIME_TYPES)}")
    # Trust is always checked: without anchors a good signature reads "Valid" with a
    # signingCredential.untrusted status, with the signer's CA among them "Trusted".
    settings: dict[str, Any] = {"verify": {"verify_trust": True}}
    if trust_anchors_pem is not None:
        settings["trust"] = {"trust_anchors": trust_anchors_pem.decode("ascii")}
    try:
        with (
            c2pa.Context.from_dict(settings) as context,
            c2pa.Reader(mime_type, io.BytesIO(data), context=context) as reader,
        ):
            report = json.loads(reader.json())
            state = reader.get_validation_state()
    except c2pa.C2paError.ManifestNotFound:
        return None
    except c2pa.C2paError as exc:
        raise ValueError(f"unreadable C2PA manifest: {exc}") from exc
    active = report["manifests"][report["active_manifest"]]
    return C2paManifest(
        title=active.get("title"),
        validation_state=state,
        validation_status=tuple(report.get("validation_status") or ()),
        assertions={a["label"]: a.get("data") for a in active.get("assertions", [])},
        signer_common_name=(active.get("signature_info") or {}).get("common_name"),
    )
