r"""Splines of the k-space functions the fast backends need at millions of points.

:math:`\tilde I_{nl}(k)` (:class:`RadialIntegralSpline`) and :math:`\hat v_p(k)`
(:class:`PotentialSpline`) are exact but costly (quadratures, incomplete gamma functions);
the mesh backends interpolate quintic splines of them. Each spline is built on a uniform
grid refined until its error at every mid-point between nodes (where the interpolation
error is largest) meets a tolerance, checked against the exact values. It is stored as one
Taylor polynomial per grid cell, so NumPy and CuPy arrays evaluate it alike (Horner's rule,
on the device where the array lives).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import make_interp_spline

__all__ = [
    "K_FLOOR",
    "POTENTIAL_TOLERANCE",
    "RADIAL_TOLERANCE",
    "PotentialSpline",
    "RadialIntegralSpline",
    "UniformQuinticSpline",
    "spline_tolerance",
]

#: lower end (Å⁻¹) of the fast backends' v̂_p spline, fixed so that the spline does not
#: depend on the structures computed: cells up to 2π/K_FLOOR = 10,000 Å long are on the
#: spline, longer ones get exact values at their few smaller |k|
K_FLOOR = 2 * np.pi / 1e4

_DEGREE = 5
_MAX_REFINEMENTS = 10
#: the splines' mid-point tolerance as a share of ``accuracy`` (:func:`spline_tolerance`), and its largest value
SPLINE_SHARE, SPLINE_CEILING = 1e-4, 1e-7
#: :class:`RadialIntegralSpline`'s tightest tolerance (Ĩ_nl of the GTO basis are exact to ~1e-12 relative),
#: and :class:`PotentialSpline`'s (v̂_p to ~1e-14)
RADIAL_TOLERANCE, POTENTIAL_TOLERANCE = 1e-11, 1e-13


class UniformQuinticSpline:
    r"""Quintic interpolating spline of ``function`` on a uniform grid over ``[lo, hi]``.

    The step starts at ``step`` and is halved until, at every mid-point,
    :math:`|s - f| \le` ``tolerance`` × scale, with scale :math:`\max|f|` over the grid of
    each output column (``scale="column"``), of all columns (``"all"``), or 1 (``None``).
    When halving the step no longer halves the error, ``function`` is at its round-off and
    a ``RuntimeError`` says so.

    :param function: ``x (n,) -> (n, *tail)`` NumPy array
    :param lo: left end of the interval
    :param hi: right end of the interval
    :param step: initial grid step
    :param tolerance: bound on the mid-point error
    :param scale: what the error is measured relative to (see above)
    """

    def __init__(self, function, lo: float, hi: float, step: float, tolerance: float, scale: str | None = "column"):
        n_cells = max(int(np.ceil((hi - lo) / step)), 2 * _DEGREE)
        grid = np.linspace(lo, hi, n_cells + 1)
        values = function(grid)
        previous = np.inf
        for _ in range(_MAX_REFINEMENTS):
            spline = make_interp_spline(grid, values, k=_DEGREE, axis=0)
            mid = 0.5 * (grid[1:] + grid[:-1])
            at_mid = function(mid)
            size = 1.0 if scale is None else np.abs(values).max(axis=0 if scale == "column" else None)
            worst = float((np.abs(spline(mid) - at_mid) / np.maximum(size, np.finfo(float).tiny)).max())
            if worst <= tolerance:
                break
            # a quintic gains ~64x per halving once resolved: stalling close to the tolerance
            # is round-off in `function`, which no finer grid removes
            if worst > 0.5 * previous and worst < 1e3 * tolerance:
                raise RuntimeError(f"spline cannot reach {tolerance:g}: the function is accurate only to ~{worst:.1g}")
            previous = worst
            # half the step: the mid-points, whose values are known, become nodes
            grid, values = _interleave(grid, mid), _interleave(values, at_mid)
            n_cells *= 2
        else:  # pragma: no cover - would need a pathological function
            raise RuntimeError(f"spline did not reach {tolerance:g} (got {worst:g})")
        self.lo, self.hi, self.step = float(lo), float(hi), (hi - lo) / n_cells
        self.grid = grid
        self.max_error = worst
        # the spline is one polynomial per cell (its knots are a subset of the grid):
        # Taylor coefficients about the cell's mid-point, shape (n_cells, 6, *tail)
        self.coefficients = np.stack([spline(mid, nu=j) / math.factorial(j) for j in range(_DEGREE + 1)], axis=1)
        self._on_device = {}

    def _coefficients_for(self, xp, column):
        """Contiguous coefficients of ``column`` (all when None) on ``xp``, built once."""
        key = (xp.__name__, column)
        if key not in self._on_device:
            coefficients = self.coefficients if column is None else self.coefficients[:, :, column]
            self._on_device[key] = xp.asarray(np.ascontiguousarray(coefficients))
        return self._on_device[key]

    def __call__(self, x, column=None, xp=np):
        """Spline values at ``x`` (1-D array of ``xp``, inside ``[lo, hi]``).

        :param column: index into the first tail axis (evaluates that column only)
        :param xp: array module of ``x`` and of the result (``numpy`` or ``cupy``)
        :return: shape ``x.shape + tail`` (without the first tail axis when ``column`` is given)
        """
        coefficients = self._coefficients_for(xp, column)
        cell = xp.clip(xp.floor((x - self.lo) / self.step).astype(xp.int64), 0, coefficients.shape[0] - 1)
        t = x - (self.lo + (cell + 0.5) * self.step)
        t = t.reshape(t.shape + (1,) * (coefficients.ndim - 2))
        local = xp.take(coefficients, cell, axis=0)  # (n, 6, ...): one gather per point
        values = local[:, _DEGREE].copy()
        for j in range(_DEGREE - 1, -1, -1):  # Horner's rule, in place
            values *= t
            values += local[:, j]
        return values


def _interleave(nodes: np.ndarray, mids: np.ndarray) -> np.ndarray:
    """``nodes[0], mids[0], nodes[1], …, mids[-1], nodes[-1]`` along the first axis."""
    out = np.empty((2 * len(nodes) - 1, *nodes.shape[1:]), dtype=np.result_type(nodes, mids))
    out[0::2], out[1::2] = nodes, mids
    return out


def spline_tolerance(accuracy: float, floor: float) -> float:
    r"""The mid-point tolerance of the fast backends' splines for ``accuracy`` (the relative RMS
    error asked of the coefficients): :data:`SPLINE_SHARE` × ``accuracy``, from ``floor`` (the
    splines' tightest) up to :data:`SPLINE_CEILING` — a ten-thousandth of the error asked for,
    where a fixed 1e-11 cost ~0.07 s of Ĩ_nl evaluations (GTO, max_radial 5, accuracy 1e-3) on
    a calculator's first call."""
    return float(min(max(SPLINE_SHARE * accuracy, floor), SPLINE_CEILING))


class RadialIntegralSpline:
    r"""Quintic splines of :math:`\tilde I_{nl}(k)` on :math:`[0, k_{max}]`, all l ≤ max_angular.

    :param basis: a :class:`gplode.basis.RadialBasis`
    :param k_max: largest wave number needed, Å⁻¹
    :param tolerance: bound on the error at the mid-points, relative to
        :math:`\max_{k,n,l} |\tilde I_{nl}(k)|`: ``accuracy`` is the relative RMS error of
        all coefficients, so channels whose integrals are far below the largest one (high n
        at small k) need not be resolved to their own scale
    :param derivative: spline :math:`d\tilde I_{nl}/dk` instead (exact values at the nodes,
        :meth:`gplode.basis.RadialBasis.kspace_integral_derivative`), for the derivatives
    """

    def __init__(self, basis, k_max: float, tolerance: float = RADIAL_TOLERANCE, derivative: bool = False):
        self.basis = basis
        self.k_max = float(k_max)
        exact = basis.kspace_integral_derivative if derivative else basis.kspace_integral

        def integrals(k):  # (n_k, L + 1, n_radial)
            return np.stack([exact(k, l) for l in range(basis.max_angular + 1)], axis=1)

        # Ĩ(k) oscillates with period ~2π / support_radius: 40 nodes per period give ~2e-11 (GTO);
        # a quintic's error goes as step⁶, so a looser tolerance starts coarser, by the sixth root
        # of its ratio to RADIAL_TOLERANCE over 1.5 (a margin of ~10 on the error)
        step = 2 * np.pi / basis.support_radius / 40 * max(1.0, (tolerance / RADIAL_TOLERANCE) ** (1 / 6) / 1.5)
        self._spline = UniformQuinticSpline(integrals, 0.0, self.k_max, step, tolerance, scale="all")
        self.grid = self._spline.grid
        self.max_error = self._spline.max_error

    def __call__(self, k, l: int, xp=np):
        r""":math:`\tilde I_{nl}(k)` for ``0 <= k <= k_max`` (array of ``xp``), shape ``(len(k), n_radial)``."""
        k = xp.asarray(k, dtype=float)
        if k.size and (float(k.min()) < 0 or float(k.max()) > self.k_max * (1 + 1e-12)):
            raise ValueError(f"k must lie in [0, {self.k_max}] Å⁻¹, got [{float(k.min())}, {float(k.max())}]")
        return self._spline(k, column=l, xp=xp)


class PotentialSpline:
    r"""Quintic spline of :math:`\ln\hat v_p` against :math:`\ln k` on :math:`[k_{min}, k_{max}]`.

    :math:`\hat v_p(k) > 0` for every p, and :math:`\ln\hat v_p` is smooth in
    :math:`\ln k` (the power law :math:`k^{p-3}` of small k becomes a straight line), so
    a few hundred nodes give relative errors of :math:`10^{-13}` for any exponent.

    :param potential: a :class:`gplode.potentials.SmearedPowerLaw`
    :param k_min: smallest wave number needed (> 0), Å⁻¹
    :param k_max: largest wave number needed, Å⁻¹
    :param tolerance: bound on the relative error of :math:`\hat v_p` at the mid-points
    """

    def __init__(self, potential, k_min: float, k_max: float, tolerance: float = POTENTIAL_TOLERANCE):
        if not 0 < k_min < k_max:
            raise ValueError(f"need 0 < k_min < k_max, got {k_min}, {k_max}")
        self.k_min, self.k_max = float(k_min), float(k_max)
        self.potential = potential
        self._spline = UniformQuinticSpline(
            lambda t: np.log(potential.kspace(np.exp(t))),
            np.log(k_min),
            np.log(k_max),
            0.05,
            tolerance,
            scale=None,
        )
        self.max_error = self._spline.max_error

    def __call__(self, k, xp=np, to_host=np.asarray):
        r""":math:`\hat v_p(k)` for ``0 < k <= k_max`` (array of ``xp``), Å^(3-p).

        Below ``k_min`` (cells longer than 2π/k_min) the exact function is evaluated on the
        host (``to_host``: the device's copy to NumPy).
        """
        values = xp.exp(self._spline(xp.log(xp.maximum(k, self.k_min)), xp=xp))
        below = k < self.k_min
        if bool(below.any()):
            values[below] = xp.asarray(self.potential.kspace(to_host(k[below])))
        return values
