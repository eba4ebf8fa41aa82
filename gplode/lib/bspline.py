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

__all__ = ["ORDERS", "bspline_fourier", "bspline_stencil", "bspline_stencil_gradient", "stencil", "stencil_gradient"]

#: supported (even) orders: the centred kernel is then symmetric and K̂ has no zeros
ORDERS = (4, 6, 8, 10)


def _bspline_values(u, order: int, xp, derivative: bool):
    r"""Fractional parts, :math:`M_P(w + j)` and, with ``derivative``, :math:`M_P'(w + j)`,
    ``j = 0..P-1`` (see :func:`bspline_stencil`)."""
    floor = xp.floor(u)
    w = u - floor
    j = xp.arange(order, dtype=u.dtype)
    x = w[:, None] + j[None, :]  # arguments w + j, j = 0..P-1
    values = xp.zeros_like(x)
    values[:, 0] = 1.0  # M_1(w + j) = 1 for j = 0 only
    slope = None
    for n in range(2, order + 1):
        shifted = xp.concatenate([xp.zeros_like(x[:, :1]), values[:, :-1]], axis=1)  # M_{n-1}(w + j - 1)
        if derivative and n == order:
            slope = values - shifted  # M_P'(x) = M_{P-1}(x) - M_{P-1}(x - 1)
        values = (x * values + (n - x) * shifted) / (n - 1)
    return floor, values, slope


def _indices(floor, order: int, size: int, xp):
    start = floor.astype(xp.int64) - order // 2 + 1
    return xp.mod(start[:, None] + xp.arange(order)[None, :], size)


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
    floor, values, _ = _bspline_values(u, order, xp, derivative=False)
    # weight of stencil point t is M_P(w + P - 1 - t): reverse the j axis
    return _indices(floor, order, size, xp), xp.ascontiguousarray(values[:, ::-1])


def bspline_stencil_gradient(u: np.ndarray, order: int, size: int, xp=np):
    r""":func:`bspline_stencil` and the derivatives of the weights with respect to ``u``,
    :math:`\partial_u K_P(u - g) = M_P'(w + P - 1 - t)` with
    :math:`M_P'(x) = M_{P-1}(x) - M_{P-1}(x - 1)` (they sum to 0 for every point).

    :return: ``indices``, ``weights`` and ``derivatives``, all ``(n, order)``
    """
    floor, values, slope = _bspline_values(u, order, xp, derivative=True)
    weights, derivatives = (xp.ascontiguousarray(a[:, ::-1]) for a in (values, slope))
    return _indices(floor, order, size, xp), weights, derivatives


def bspline_fourier(frequencies: np.ndarray, order: int, size: int, xp=np) -> np.ndarray:
    r""":math:`\hat K_P(2\pi m / M)` for integer mesh frequencies ``m`` on an axis of ``size`` M points.

    :param frequencies: array of ``xp``
    """
    return xp.sinc(xp.asarray(frequencies, dtype=float) / size) ** order


def _outer(w1, w2, w3):
    """Products of the per-axis factors of the P³ stencil points, ``(n, P, P, P)``."""
    return w1[:, :, None, None] * w2[:, None, :, None] * w3[:, None, None, :]


def _flat_stencil(axes, shape, order: int):
    """Flat indices ``(n, P**3)`` and weights ``(n, P**3)`` from the per-axis ``(indices, weights, ...)``."""
    (i1, w1), (i2, w2), (i3, w3) = (axis[:2] for axis in axes)
    n = i1.shape[0]
    indices = (i1[:, :, None, None] * shape[1] + i2[:, None, :, None]) * shape[2] + i3[:, None, None, :]
    return indices.reshape(n, order**3), _outer(w1, w2, w3).reshape(n, order**3)


def stencil(fractional, shape: tuple[int, int, int], order: int, xp=np):
    """Flat mesh indices and weights of the P³ points each atom touches (the first stage
    of :class:`gplode.devices.base.Stages`, the same on every device).

    :param fractional: fractional coordinates in [0, 1), ``(n_atoms, 3)``, array of ``xp``
    :param shape: mesh shape (M1, M2, M3)
    :param order: B-spline order P
    :return: ``indices`` int64 and ``weights`` (dtype of ``fractional``), both ``(n_atoms, P**3)``
    """
    axes = [bspline_stencil(fractional[:, d] * shape[d], order, shape[d], xp) for d in range(3)]
    return _flat_stencil(axes, shape, order)


def stencil_gradient(fractional, shape: tuple[int, int, int], order: int, xp=np):
    r""":func:`stencil` and the derivatives of the weights with respect to the three mesh
    coordinates :math:`u_d` = fractional coordinate d × ``shape[d]`` (the caller chains
    them to Cartesian coordinates: :math:`\partial u_d/\partial r_e = M_d\,(H^{-1})_{ed}`).

    :return: ``indices`` int64 and ``weights``, both ``(n_atoms, P**3)``, and ``gradients``
        ``(3, n_atoms, P**3)`` (dtype of ``fractional``; ``gradients[d]`` is contiguous, a
        stencil's weights for :meth:`gplode.devices.base.Stages.prepare_interpolation`)
    """
    axes = [bspline_stencil_gradient(fractional[:, d] * shape[d], order, shape[d], xp) for d in range(3)]
    indices, weights = _flat_stencil(axes, shape, order)
    (_, w1, d1), (_, w2, d2), (_, w3, d3) = axes
    gradients = xp.stack([_outer(d1, w2, w3), _outer(w1, d2, w3), _outer(w1, w2, d3)])
    return indices, weights, gradients.reshape(3, indices.shape[0], order**3)
