"""Finishing a generated image with a recipe's colour transfers: lighting, grading,
palette, at the strengths ("knobs") the agent chose.

All three work on unclipped float CIELAB and the result is rolled into the sRGB cube once,
at the end (``agentic.gamut``): a clip between steps flattens what the next one could
still use. The palette step moves the statistics the grading set (issue 17 measured up
to a third of the way back on photographs), so when grading is on, its landing runs last
and puts the Lab mean and covariance back on the grading's goal; the palette keeps which
colours go where.
"""

from __future__ import annotations

import numpy as np

from agentic.colour import to_uint8
from agentic.grading import fit_grading, land
from agentic.lighting import relight_lab
from agentic.palette import palette_lab
from agentic.recipe import Recipe

TRANSFERS = ("palette", "grading", "lighting")


def finish(raw: np.ndarray, recipe: Recipe, knobs: dict[str, float]) -> np.ndarray:
    """``raw`` (uint8 RGB) relit, graded and recoloured at ``knobs``' strengths, landed on
    the grading's statistics; uint8 RGB back (``raw`` itself when every strength is 0)."""
    if not any(knobs[name] > 0.0 for name in TRANSFERS):
        return raw
    targets = recipe.components
    lab = relight_lab(raw, targets["lighting"].target, knobs["lighting"])
    fit = None
    if knobs["grading"] > 0.0:
        fit = fit_grading(lab, targets["grading"].target, knobs["grading"])
        lab = fit.apply(lab)
    lab = palette_lab(lab, targets["palette"].target, knobs["palette"])
    return to_uint8(land(lab, fit).apply(lab))
