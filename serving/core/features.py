"""A feature requested on a model that does not have it: a 400 naming the field and the
models that have it (``Catalog.features_of`` says what each model has; an SD-only feature
on FLUX, an IP-Adapter reference, is the common case: edits, styles, pins and agentic run
on FLUX since issue 21)."""

from __future__ import annotations

from pipelines.params import ParamError
from weights.catalog import Catalog, ModelSpec


def require_feature(catalog: Catalog, spec: ModelSpec, feature: str, param: str) -> None:
    """Refuse ``feature`` on ``spec`` unless its family has it, or the model has it by its
    kind (an instruct checkpoint's ``instruct``), (``ParamError`` naming ``param``, listing
    the models that have it). Installed components (an IP-Adapter for pins) are checked
    where they are used, with their own message, as before."""
    if spec.family.has_feature(feature) or feature in catalog.features_of(spec):
        return
    having = ", ".join(catalog.models_with(feature)) or "none installed"
    raise ParamError(param, f"model {spec.id!r} has no {feature}; models that have it: {having}")
