"""Moving an image's colours onto a grading's statistics, whatever the photograph.

Issue 17 measured why a linear Lab transfer alone fell short on photographs nobody tuned
on: a Gaussian map cannot give a skewed reference (a night sky), a masked one (a fundus
photograph's black surround) or a flat-coloured one (a two-colour poster) its shape, so
much of the image left the sRGB cube and clipping pulled the statistics back; and the
palette step, run after the grading, moved them again. The transfer is now three steps:

1. shape (``fit_shape``): sliced optimal transport, the iterative distribution transfer
   of Pitié et al. (2005) with fixed bases: along each direction of ``BASES`` the image's
   1-D distribution is mapped quantile for quantile onto the reference's, a few rounds,
   ending on the Lab axes. The reference's quantiles are part of the grading, so a saved
   recipe transfers without its images; a plateau in them (crushed blacks, blown
   whites) is given a least slope (``MIN_STEP``) so the image's own detail is never
   flattened there;
2. moments (``linear_map``): the Monge-Kantorovich map (or Reinhard's per-channel one)
   from the shaped image's Lab mean and covariance onto the goal's;
3. landing (``fit_landing``): after whatever comes between (the palette), the shape is
   carried again, this time in sRGB (``RGB_ROUNDS`` rounds, the RGB axes last) onto the
   reference's sRGB quantiles squeezed into the cube the roll-off aims at
   (``inner_quantiles``). The cube is sRGB's gamut, so matching the marginals along its
   axes puts every colour inside it: a reference whose colours all sit on the cube's
   surface (scikit-image's colorwheel) is reached without the roll-off pulling its
   saturation in (done in Lab, the transfer left colours outside and bringing them in
   lost about a tenth of a*/b*'s spread: 84% of the distance cut against 97% now). Then the
   moments are measured again, after the gamut roll-off (``agentic.gamut``), and
   corrected by further linear maps, each kept only if it brings the image closer
   (2-Wasserstein) to the goal.

At strength s the goal is the blend (1 - s) x the image's own statistics + s x the
grading's, and the shape step moves each colour s of the way: the result lands on the
blend, so strength is monotone (the sRGB shape aims at the blend of the image's own
quantile functions and the reference's, the 1-D Wasserstein barycentre). Everything is
fitted on a point sample (single pixels drawn at random: an area average would shrink the
spread being matched) and is a fixed colour -> colour map once fitted, so a ``.cube``
LUT holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentic.gamut import MARGIN, RollOff, lab_of_srgb, srgb_of_lab

# Levels of each direction's quantile function in a grading: dense in the tails, where a
# piecewise-linear quantile function otherwise misses most of a heavy tail's spread (a
# night sky's few bright stars: 17 even levels left its L* spread 25% short).
LEVELS = np.array(
    [0.0, 0.002, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975]
    + [0.99, 0.998, 1.0]
)
QUANTILES = len(LEVELS)
ROUNDS = 3  # passes over the rotated bases before the final pass on the Lab axes
RGB_ROUNDS = 1  # the same in sRGB, in the landing (3 measured within 0.1 point of 1)
MIN_STEP = 0.1  # least step of a reference's quantile function, in its mean steps
LANDING_STEPS = 8  # moment corrections tried at most after the roll-off
SAMPLE_SIDE = 128  # fits run on a point sample of at most this many pixels squared
SAMPLE_SEED = 17
# Regularises a near-singular covariance (a flat image) before square roots and inverses.
EPS = 1e-3


def _rotation(axis: int, degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    i, j = (k for k in range(3) if k != axis)
    rotation = np.eye(3)
    rotation[i, i] = rotation[j, j] = np.cos(t)
    rotation[i, j], rotation[j, i] = -np.sin(t), np.sin(t)
    return rotation


# Orthonormal bases whose columns are the directions: the Lab axes, then 45° turns about
# each axis and one about all three, so the sliced distributions pin down the joint one
# (a poster's two colours, not just each channel's spread).
BASES = (
    np.eye(3),
    _rotation(0, 45.0),
    _rotation(1, 45.0),
    _rotation(2, 45.0),
    _rotation(0, 45.0) @ _rotation(1, 35.26) @ _rotation(2, 45.0),
)


def point_sample(pixels: np.ndarray, side: int = SAMPLE_SIDE) -> np.ndarray:
    """At most ``side``² pixels of HxWx3 ``pixels`` as Nx3 (all of them when there are
    no more), drawn at random with a fixed seed: the same image gives the same sample.
    Not every k-th pixel: a decoder's 8-px pattern makes a regular grid a biased sample
    (a stride of 2 read a tiny-sd15 image's mean L* 1.7 units low). Nx3 passes through."""
    flat = pixels.reshape(-1, 3)
    if pixels.ndim == 2 or len(flat) <= side * side:
        return flat
    chosen = np.random.default_rng(SAMPLE_SEED).choice(len(flat), side * side, replace=False)
    return flat[np.sort(chosen)]


def quantile_functions(values: np.ndarray) -> np.ndarray:
    """The QUANTILES-point quantile function of each column of NxC ``values``: C x
    QUANTILES (numpy's linear method, by one sort: several times faster than
    ``np.quantile`` on these sizes)."""
    ordered = np.sort(np.asarray(values, np.float64).T, axis=1)
    position = LEVELS * (ordered.shape[1] - 1)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, ordered.shape[1] - 1)
    weight = position - below
    return ordered[:, below] * (1.0 - weight) + ordered[:, above] * weight


def direction_quantiles(flat: np.ndarray) -> np.ndarray:
    """Quantile functions of Nx3 Lab colours along every direction of ``BASES``:
    (len(BASES), 3, QUANTILES)."""
    flat = np.asarray(flat, np.float64)
    return np.stack([quantile_functions(flat @ basis) for basis in BASES])


def moments(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of Nx3 colours (one colour has no spread: zero covariance,
    where ``np.cov`` would divide by N - 1 = 0 and answer NaN)."""
    flat = np.asarray(flat, np.float64).reshape(-1, 3)
    spread = np.cov(flat, rowvar=False) if len(flat) > 1 else np.zeros((3, 3))
    return flat.mean(axis=0), spread


def _sqrtm(matrix: np.ndarray, floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Square root and inverse square root of a symmetric matrix (eigenvalues >= floor)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    roots = np.sqrt(np.clip(values, floor, None))
    inverse = np.where(roots > 0.0, 1.0 / np.maximum(roots, 1e-12), 0.0)
    return (vectors * roots) @ vectors.T, (vectors * inverse) @ vectors.T


def mk_matrix(source_cov: np.ndarray, target_cov: np.ndarray) -> np.ndarray:
    """The Monge–Kantorovich linear map between two covariances:
    T = Σs^-½ (Σs^½ Σt Σs^½)^½ Σs^-½, the unique symmetric positive map with T Σs T = Σt."""
    eye = np.eye(3) * EPS
    root, inv_root = _sqrtm(source_cov + eye, EPS)
    return inv_root @ _sqrtm(root @ (target_cov + eye) @ root)[0] @ inv_root


@dataclass(frozen=True)
class Affine:
    """x -> x A^T + b on Lab colours."""

    matrix: np.ndarray
    offset: np.ndarray

    def apply(self, lab: np.ndarray) -> np.ndarray:
        flat = np.asarray(lab, np.float64).reshape(-1, 3) @ self.matrix.T + self.offset
        return flat.reshape(np.shape(lab))

    def then(self, other: Affine) -> Affine:
        """This map followed by ``other``, as one."""
        return Affine(other.matrix @ self.matrix, self.offset @ other.matrix.T + other.offset)


IDENTITY = Affine(np.eye(3), np.zeros(3))


def linear_map(
    source: tuple[np.ndarray, np.ndarray], goal: tuple[np.ndarray, np.ndarray], method: str
) -> Affine:
    """The affine Lab map taking ``source``'s mean and covariance onto ``goal``'s: the
    MK map (``mk``), or each channel's mean and standard deviation (``reinhard``)."""
    (source_mean, source_cov), (goal_mean, goal_cov) = source, goal
    if method == "mk":
        matrix = mk_matrix(source_cov, goal_cov)
    else:
        spread = np.sqrt(np.clip(np.diag(source_cov), EPS, None))
        matrix = np.diag(np.sqrt(np.clip(np.diag(goal_cov), 0.0, None)) / spread)
    return Affine(matrix, goal_mean - matrix @ source_mean)


@dataclass(frozen=True)
class Shape:
    """Fitted 1-D quantile maps: per step a basis, the image's quantiles along its three
    directions and the reference's (3 x QUANTILES each); colours move ``strength`` of
    the way to where the maps send them."""

    steps: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    strength: float

    def apply(self, lab: np.ndarray) -> np.ndarray:
        start = np.asarray(lab, np.float64).reshape(-1, 3)
        flat = start
        for basis, own, target in self.steps:
            flat = _step(flat, basis, own, target)
        moved = start + self.strength * (flat - start)
        return moved.reshape(np.shape(lab))


def _step(flat: np.ndarray, basis: np.ndarray, own: np.ndarray, target: np.ndarray) -> np.ndarray:
    projected = flat @ basis
    for k in range(3):
        # Rank (own quantiles -> levels) then value (levels -> target quantiles): both
        # piecewise linear on the same levels, so one interpolation is both.
        projected[:, k] = np.interp(projected[:, k], own[k], target[k])
    return projected @ basis.T  # the basis is orthonormal: back to Lab


def _unflattened(quantiles: np.ndarray) -> np.ndarray:
    """``quantiles`` (..., QUANTILES) with every step at least ``MIN_STEP`` of an even
    spread's step over the same levels, rescaled back onto their ends: a plateau (a
    reference's crushed blacks or blown whites) becomes a steep ramp, so no stretch of
    the image maps onto one value; quantile functions without plateaus barely move."""
    first, last = quantiles[..., :1], quantiles[..., -1:]
    floor = MIN_STEP * (last - first) * np.diff(LEVELS)
    steps = np.maximum(np.diff(quantiles, axis=-1), floor)
    raised = np.concatenate([np.zeros_like(first), np.cumsum(steps, axis=-1)], axis=-1)
    scale = (last - first) / np.maximum(raised[..., -1:], 1e-12)
    return first + raised * scale


def _own_quantiles(projected: np.ndarray) -> np.ndarray:
    own = quantile_functions(projected)
    # Strictly increasing, so interpolating ranks is defined on ties (flat areas).
    return np.maximum.accumulate(own + np.arange(QUANTILES) * 1e-9, axis=1)


def fit_shape(
    sample: np.ndarray, quantiles: np.ndarray, strength: float, rounds: int = ROUNDS
) -> tuple[Shape, np.ndarray]:
    """The sliced transfer of Nx3 ``sample`` onto ``quantiles`` along ``BASES`` (in the
    same space: Lab, or sRGB for the landing), and ``sample`` moved by it."""
    start = np.asarray(sample, np.float64)
    flat = start
    order = [*range(1, len(BASES))] * rounds + [0]  # the axes last: their marginals hold
    steps = []
    for index in order:
        basis = BASES[index]
        own = _own_quantiles(flat @ basis)
        target = _unflattened(np.asarray(quantiles[index], np.float64))
        steps.append((basis, own, target))
        flat = _step(flat, basis, own, target)
    return Shape(tuple(steps), strength), start + strength * (flat - start)


def inner_quantiles(quantiles: np.ndarray) -> np.ndarray:
    """sRGB quantile functions along ``BASES`` of colours squeezed into the cube the
    roll-off aims at (``MARGIN`` inside 0 and 1): a reference's pure black or white lands
    a code and a half inside, not on 0 or 255, where it would count as clipped."""
    # x -> MARGIN + (1 - 2 MARGIN) x, seen along each direction d: d.(MARGIN 1) + ... d.x
    offsets = MARGIN * np.stack([basis.sum(axis=0) for basis in BASES])[..., None]
    return offsets + (1.0 - 2.0 * MARGIN) * np.asarray(quantiles, np.float64)


def goal_of(
    start: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray], strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """The statistics a transfer at ``strength`` lands on: the blend of the image's own
    (``start``) and the grading's (``target``)."""
    return (
        (1.0 - strength) * start[0] + strength * target[0],
        (1.0 - strength) * start[1] + strength * target[1],
    )


def w2(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """2-Wasserstein distance between the Gaussians of two (mean, covariance) pairs."""
    root_a = _sqrtm(a[1])[0]
    cross = _sqrtm(root_a @ b[1] @ root_a)[0]
    trace = np.trace(a[1]) + np.trace(b[1]) - 2.0 * np.trace(cross)
    return float(np.sqrt(max(float(np.sum((a[0] - b[0]) ** 2)) + max(trace, 0.0), 0.0)))


@dataclass(frozen=True)
class Landing:
    """The sRGB shape (None without one), the last correction and the gamut roll-off
    fitted after them."""

    shape: Shape | None
    correction: Affine
    roll_off: RollOff

    def apply(self, lab: np.ndarray) -> np.ndarray:
        """Lab (..., 3) -> sRGB in [0, 1] (float32)."""
        if self.shape is not None:
            lab = lab_of_srgb(self.shape.apply(srgb_of_lab(lab)))
        return self.roll_off.apply(self.correction.apply(lab))


def fit_landing(
    sample: np.ndarray,
    goal: tuple[np.ndarray, np.ndarray],
    method: str = "mk",
    rgb_target: np.ndarray | None = None,
) -> Landing:
    """The landing of Nx3 Lab ``sample``: carried onto ``rgb_target`` (sRGB quantiles
    along ``BASES``) when given, then corrected so that, rolled into the sRGB cube, its
    statistics land on ``goal``: each step measures what the roll-off left and maps it
    onto the goal (halving the step when a full one overshoots), kept only when it
    brings the image closer."""
    from agentic.colour import rgb_to_lab

    sample = np.asarray(sample, np.float64)
    shape = None
    if rgb_target is not None:
        shape, moved = fit_shape(srgb_of_lab(sample), rgb_target, 1.0, RGB_ROUNDS)
        sample = lab_of_srgb(moved)

    def landed(correction: Affine) -> tuple[float, tuple, Landing]:
        moved = correction.apply(sample)
        landing = Landing(shape, correction, RollOff.fit(moved))
        stats = moments(rgb_to_lab(landing.roll_off.apply(moved)[None])[0])
        return w2(stats, goal), stats, landing

    distance, stats, best = landed(IDENTITY)
    for _ in range(LANDING_STEPS):
        full = linear_map(stats, goal, method)
        for step in (1.0, 0.5, 0.25):
            partial = Affine((1.0 - step) * np.eye(3) + step * full.matrix, step * full.offset)
            candidate = landed(best.correction.then(partial))
            if candidate[0] < distance - 1e-3:
                distance, stats, best = candidate
                break
        else:
            break  # no step brings it closer: as near as the cube allows
    return best
