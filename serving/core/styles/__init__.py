"""LoRA styles in serving: the registry in the database (``Styles``) and the HTTP routes
of ``/v1/styles`` (import, list, read, delete)."""

from serving.core.styles.quota import StyleQuota, StyleQuotaExceeded, StyleUsage
from serving.core.styles.service import StyleAdminOnly, StyleImport, Styles, UnknownStyle

__all__ = [
    "StyleAdminOnly",
    "StyleImport",
    "StyleQuota",
    "StyleQuotaExceeded",
    "StyleUsage",
    "Styles",
    "UnknownStyle",
]
