"""Assets: how long they are kept and how their C2PA manifests are signed.

Each field declares one environment variable (``env_field``: name, parser, help);
``Settings`` (serving/core/settings.py) inherits them, and README.md's configuration
table is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.env_fields import env_field, path, positive_int


@dataclass(frozen=True)
class AssetVariables:
    """Assets: how long they are kept and how their C2PA manifests are signed."""

    # fmt: off
    asset_retention_days: int | None = env_field(
        "KILN_ASSET_RETENTION_DAYS", None, parse=positive_int,
        help="delete unlicensed assets older than this many days (default: keep them)",
    )
    c2pa_cert: Path | None = env_field(
        "KILN_C2PA_CERT", None, parse=path,
        help="PEM certificate chain (leaf first) to sign C2PA manifests with (default: none)",
    )
    c2pa_key: Path | None = env_field(
        "KILN_C2PA_KEY", None, parse=path,
        help="PEM private key of KILN_C2PA_CERT",
    )
    c2pa_alg: str = env_field(
        "KILN_C2PA_ALG", "es256", parse=str,
        help="C2PA signing algorithm (default es256)",
    )
    # fmt: on
