r"""Centred cardinal B-splines: the assignment kernel of the mesh backends.

:math:`K_P(x) = M_P(x + P/2)` with :math:`M_P` the cardinal B-spline of order P (degree
P − 1, support [0, P]). A point at mesh coordinate u (mesh spacing 1) touches the P mesh
points :math:`g = \lfloor u\rfloor - P/2 + 1 + t`, ``t = 0..P-1``, with weights
:math:`K_P(u - g)`. Its Fourier transform is
:math:`\hat K_P(\omega) = [\sin(\omega/2)/(\omega/2)]^P`, the factor the mesh pipeline
divides out (once for spreading, once for interpolation).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ORDERS", "bspline_fourier", "bspline_stencil", "stencil"]

#: supported (even) orders: the centred kernel is then symmetric and K̂ has no zeros
ORDERS = (4, 6, 8, 10)


def bspline_stencil(u: np.ndarray, order: int, size: int, xp=np) -> tuple[np.ndarray, np.ndarray]:
    r"""Mesh indices and weights of the points at mesh coordinates ``u`` on a periodic axis.

    Uses the stable recursion
    :math:`M_n(x) = [x M_{n-1}(x) + (n - x) M_{n-1}(x - 1)] / (n - 1)` at the P arguments
    ``w + j`` (``w`` the fractional part of ``u``), so no cancellation for any order.

    :param u: mesh coordinates (fractional coordinate × ``size``), float array ``(n,)`` of ``xp``
    :param order: P, one of :data:`ORDERS`
    :param size: number of mesh points along the axis
    :param xp: array module of ``u`` and of the results (``numpy`` or ``cupy``)
    :return: ``indices`` (int64, wrapped into [0, size)) and ``weights``, both ``(n, order)``;
        weights sum to 1 for every point
    """
    floor = xp.floor(u)
    w = u - floor
    j = xp.arange(order, dtype=u.dtype)
    x = w[:, None] + j[None, :]  # arguments w + j, j = 0..P-1
    values = xp.zeros_like(x)
    values[:, 0] = 1.0  # M_1(w + j) = 1 for j = 0 only
    for n in range(2, order + 1):
        shifted = xp.concatenate([xp.zeros_like(x[:, :1]), values[:, :-1]], axis=1)  # M_{n-1}(w + j - 1)
        values = (x * values + (n - x) * shifted) / (n - 1)
    # weight of stencil point t is M_P(w + P - 1 - t): reverse the j axis
    weights = xp.ascontiguousarray(values[:, ::-1])
    start = floor.astype(xp.int64) - order // 2 + 1
    indices = xp.mod(start[:, None] + xp.arange(order)[None, :], size)
    return indices, weights


def bspline_fourier(frequencies: np.ndarray, order: int, size: int, xp=np) -> np.ndarray:
    r""":math:`\hat K_P(2\pi m / M)` for integer mesh frequencies ``m`` on an axis of ``size`` M points.

    :param frequencies: array of ``xp``
    """
    return xp.sinc(xp.asarray(frequencies, dtype=float) / size) ** order


def stencil(fractional, shape: tuple[int, int, int], order: int, xp=np):
    """Flat mesh indices and weights of the P³ points each atom touches (the first stage
    of :class:`gplode.devices.base.Stages`, the same on every device).

    :param fractional: fractional coordinates in [0, 1), ``(n_atoms, 3)``, array of ``xp``
    :param shape: mesh shape (M1, M2, M3)
    :param order: B-spline order P
    :return: ``indices`` int64 and ``weights`` (dtype of ``fractional``), both ``(n_atoms, P**3)``
    """
    (i1, w1), (i2, w2), (i3, w3) = (bspline_stencil(fractional[:, d] * shape[d], order, shape[d], xp) for d in range(3))
    indices = (i1[:, :, None, None] * shape[1] + i2[:, None, :, None]) * shape[2] + i3[:, None, None, :]
    weights = w1[:, :, None, None] * w2[:, None, :, None] * w3[:, None, None, :]
    n = fractional.shape[0]
    return indices.reshape(n, order**3), weights.reshape(n, order**3)
