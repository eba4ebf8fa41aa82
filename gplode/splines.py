r"""Splines of the radial k-space integrals :math:`\tilde I_{nl}(k)` for the fast backends.

The reference backend evaluates :math:`\tilde I_{nl}(k)` exactly at every k-vector; mesh
backends need it at millions of points, so they interpolate a quintic spline built here.
The grid is refined until the spline meets its tolerance at every mid-point between
nodes (where the interpolation error is largest), checked against the exact values.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import make_interp_spline

__all__ = ["RadialIntegralSpline"]


class RadialIntegralSpline:
    r"""Quintic splines of :math:`\tilde I_{nl}(k)` on :math:`[0, k_{max}]`, all l ≤ max_angular.

    :param basis: a :class:`gplode.radial.RadialBasis`
    :param k_max: largest wave number needed, Å⁻¹
    :param tolerance: bound on the error at the mid-points, relative to
        :math:`\max_k |\tilde I_{nl}(k)|` of each (n, l)
    """

    def __init__(self, basis, k_max: float, tolerance: float = 1e-11):
        self.basis = basis
        self.k_max = float(k_max)
        # Ĩ(k) oscillates with period ~2π / support_radius: start at 40 nodes per period
        step = 2 * np.pi / basis.support_radius / 40
        for _ in range(8):
            n_nodes = int(np.ceil(self.k_max / step)) + 1
            grid = np.linspace(0.0, self.k_max, max(n_nodes, 8))
            mid = 0.5 * (grid[1:] + grid[:-1])
            splines, worst = [], 0.0
            for l in range(basis.max_angular + 1):
                values = basis.kspace_integral(grid, l)
                spline = make_interp_spline(grid, values, k=5, axis=0)
                exact = basis.kspace_integral(mid, l)
                scale = np.maximum(np.abs(values).max(axis=0), np.finfo(float).tiny)
                worst = max(worst, float((np.abs(spline(mid) - exact) / scale).max()))
                splines.append(spline)
            if worst <= tolerance:
                break
            step /= 2
        else:  # pragma: no cover - would need a pathological basis
            raise RuntimeError(f"radial integral spline did not reach {tolerance:g} (got {worst:g})")
        self.grid = grid
        self.max_error = worst
        self._splines = splines

    def __call__(self, k: np.ndarray, l: int) -> np.ndarray:
        r""":math:`\tilde I_{nl}(k)` for ``0 <= k <= k_max``, shape ``(len(k), n_radial)``."""
        k = np.asarray(k, dtype=float)
        if k.size and (k.min() < 0 or k.max() > self.k_max * (1 + 1e-12)):
            raise ValueError(f"k must lie in [0, {self.k_max}] Å⁻¹, got [{k.min()}, {k.max()}]")
        return self._splines[l](k)
