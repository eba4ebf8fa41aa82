r"""Generalised multipole asymptotics of the LODE coefficients (docs/conventions.md, "Multipole asymptotics").

For ``r < d``, Gegenbauer's expansion re-expanded in Legendre polynomials and the
addition theorem give

.. math::

    |\mathbf r - \mathbf d|^{-p} = 4\pi\sum_{lm} Y_{lm}(\hat r) Y_{lm}(\hat d)
    \sum_{k\ge0} A^{(p)}_{lk}\,\frac{r^{l+2k}}{d^{p+l+2k}},\qquad
    A^{(p)}_{lk} = \frac{(p/2)_{l+k}\,((p-1)/2)_k}{(3/2)_{l+k}\,k!}

so an atom at distance ``d`` well outside the basis contributes
:math:`c_{nlm} \approx 4\pi Y_{lm}(\hat d)\sum_k A_{lk} M_{nl,k} d^{-(p+l+2k)}`.
Channel l decays as :math:`d^{-(p+l)}`; for p = 1 only k = 0 survives.
"""

from __future__ import annotations

import numpy as np
from scipy import special as sp

from .lib.spherical_harmonics import real_spherical_harmonics

__all__ = ["asymptotic_coefficients", "asymptotic_radial", "multipole_coefficients", "series_radial"]


def multipole_coefficients(exponent: float, l: int, n_terms: int) -> np.ndarray:
    r""":math:`A^{(p)}_{lk}` for ``k = 0..n_terms-1``, shape ``(n_terms,)`` (dimensionless).

    By the ratio :math:`A_{l,k+1}/A_{lk} = (p/2+l+k)((p-1)/2+k)/((3/2+l+k)(k+1))` from
    :math:`A_{l0} = (p/2)_l/(3/2)_l`, finite for any number of terms (the Pochhammer
    symbols themselves overflow beyond k ≈ 150).
    """
    p = float(exponent)
    k = np.arange(n_terms - 1, dtype=float)
    ratios = (0.5 * p + l + k) * (0.5 * (p - 1.0) + k) / ((1.5 + l + k) * (k + 1.0))
    first = sp.poch(0.5 * p, l) / sp.poch(1.5, l)
    return first * np.concatenate([[1.0], np.cumprod(ratios)])


def series_radial(distances: np.ndarray, exponent: float, l: int, weights: np.ndarray, radius: float) -> np.ndarray:
    r""":math:`4\pi d^{-p}\sum_k w_{nk}\,(R/d)^{l+2k}`, the multipole series with
    :math:`w_{nk} = A_{lk}M_{nl,k}/R^{l+2k}` (moments in units of ``radius`` R, so that
    many terms neither overflow nor underflow).

    :param distances: d in Å, shape ``(n,)``, all > 0
    :param weights: shape ``(n_terms, n_radial)``
    :return: shape ``(n, n_radial)``
    """
    d = np.asarray(distances, dtype=float)
    powers = (radius / d)[:, None] ** (l + 2.0 * np.arange(weights.shape[0]))[None, :]
    return 4.0 * np.pi * d[:, None] ** -exponent * (powers @ weights)


def asymptotic_radial(distances: np.ndarray, exponent: float, basis, l: int, n_terms: int = 40) -> np.ndarray:
    r"""Far-field radial functions :math:`F_{nl}(d) \approx 4\pi\sum_k A_{lk}M_{nl,k}d^{-(p+l+2k)}`.

    Valid when the basis has no weight beyond ``d`` and the smearing is negligible at
    the distance (see :class:`gplode.methods.pair_sum.PairRadialFunctions`, which chooses the
    number of terms from an error bound). For ``p = 0`` the potential is a Gaussian, not a
    power law, and the far field is exactly 0.

    :param distances: d in Å, shape ``(n,)``, all > 0
    :param n_terms: number of k terms; the series' terms shrink by ~(r/d)² each
    :return: shape ``(n, n_radial)``, in Å^(3/2-p)
    """
    d = np.asarray(distances, dtype=float)
    if exponent == 0.0:
        return np.zeros((d.size, basis.n_radial))
    a = multipole_coefficients(exponent, l, n_terms)
    return series_radial(d, exponent, l, a[:, None] * basis.moments(l, n_terms).T, 1.0)


def asymptotic_coefficients(
    vectors: np.ndarray, exponent: float, basis, max_angular: int, n_terms: int = 40
) -> np.ndarray:
    r"""Multipole-series coefficients of single atoms at positions ``vectors`` (Å).

    .. math::

        c_{nlm}(\mathbf d) \approx 4\pi Y_{lm}(\hat d)\sum_{k<K} A^{(p)}_{lk}
        M_{nl,k}\, d^{-(p+l+2k)}

    :param vectors: neighbour positions relative to the centre, shape ``(n, 3)``
    :param basis: a :class:`gplode.basis.RadialBasis`
    :return: shape ``(n, (max_angular+1)**2, n_radial)``
    """
    vectors = np.asarray(vectors, dtype=float).reshape(-1, 3)
    d = np.linalg.norm(vectors, axis=1)
    if np.any(d == 0):
        raise ValueError("asymptotic_coefficients needs non-zero distances")
    ylm = real_spherical_harmonics(vectors, max_angular)
    out = np.empty((d.size, (max_angular + 1) ** 2, basis.n_radial))
    for l in range(max_angular + 1):
        radial = asymptotic_radial(d, exponent, basis, l, n_terms)
        out[:, l * l : (l + 1) ** 2, :] = ylm[:, l * l : (l + 1) ** 2, None] * radial[:, None, :]
    return out
