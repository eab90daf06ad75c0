"""The server process: where it keeps its state, where it listens, its keys.

Each field declares one environment variable (``env_field``: name, parser, help);
``Settings`` (serving/core/settings.py) inherits them, and README.md's configuration
table is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.env_fields import env_field, flag, path, positive_int

DEVICES = ("auto", "cpu", "cuda")
# Who answers HTTP under `kiln serve` (serving/ray/http_front.py).
HTTP_SERVERS = ("kiln", "serve")


def _device(text: str) -> str:
    if text not in DEVICES and not text.startswith("cuda:"):
        raise ValueError(f"must be one of {', '.join(DEVICES)} (or cuda:N), got {text!r}")
    return text


def _http_server(text: str) -> str:
    if text not in HTTP_SERVERS:
        raise ValueError(f"must be one of {', '.join(HTTP_SERVERS)}, got {text!r}")
    return text


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a TCP port (0-65535), got {value}")
    return value


@dataclass(frozen=True)
class ServerVariables:
    """The server process: where it keeps its state, where it listens, its keys."""

    # fmt: off
    home: Path = env_field(
        "KILN_HOME", default_factory=lambda: Path("~/.kiln").expanduser(), parse=path,
        help="models, files, secret key (default ~/.kiln)",
    )
    host: str = env_field(
        "KILN_HOST", "127.0.0.1", parse=str,
        help="address to listen on (default 127.0.0.1)",
    )
    port: int = env_field("KILN_PORT", 8000, parse=_port, help="HTTP port (default 8000)")
    http_server: str = env_field(
        "KILN_HTTP_SERVER", "kiln", parse=_http_server,
        help="who answers HTTP under `kiln serve`: `kiln` (the `kiln serve` process itself, "
        "under uvicorn, one Ray hop to the models) or `serve` (Ray Serve's HTTP proxy and "
        "`KilnIngress` replicas, as `serve deploy` runs it; default kiln)",
    )
    catalog_file: Path | None = env_field(
        "KILN_CATALOG", None, parse=path,
        help="extra models.toml (default KILN_HOME/…)",
    )
    device: str = env_field(
        "KILN_DEVICE", "auto", parse=_device,
        help="auto / cpu / cuda / cuda:N (default auto)",
    )
    # repr=False: a PostgreSQL URL may carry a password.
    database: str | None = env_field(
        "KILN_DATABASE_URL", None, repr=False, parse=str,
        help="ledger DB URL (default KILN_HOME/kiln.db)",
    )
    # repr=False: settings get logged; the keys must not be.
    secret: str | None = env_field(
        "KILN_SECRET", None, repr=False, parse=str,
        help="HMAC key for file URLs, at least 32 characters (unset or empty: generated once "
        "into KILN_HOME/secret.key)",
    )
    admin_key: str | None = env_field(
        "KILN_ADMIN_KEY", None, repr=False, parse=str,
        help="the admin API key, at least 32 characters (unset or empty: generated once)",
    )
    public_url: str | None = env_field(
        "KILN_PUBLIC_URL", None, parse=str,
        help="base URL for signed links",
    )
    url_ttl_s: int = env_field(
        "KILN_URL_TTL_S", 3600, parse=positive_int,
        help="lifetime of signed file URLs, in seconds (default 3600)",
    )
    bench: bool = env_field(
        "KILN_BENCH", False, parse=flag,
        help="mount `POST /v1/bench/noop`, the serving path's structural floor for "
        "`benchmarks/serving_overhead.py` (default off; never in the OpenAPI document)",
    )
    # fmt: on
