"""Composite Gauss–Legendre quadrature on panels (radial integrals, pair tables, tests)."""

from __future__ import annotations

import numpy as np

__all__ = ["gauss_legendre_panels"]


def gauss_legendre_panels(edges: np.ndarray, order: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss–Legendre rule on the panels ``[edges[i], edges[i+1]]``.

    :return: nodes and weights, each of shape ``(len(edges) - 1) * order``
    """
    x, w = np.polynomial.legendre.leggauss(order)
    a, b = np.asarray(edges[:-1], float), np.asarray(edges[1:], float)
    half = 0.5 * (b - a)
    nodes = (0.5 * (a + b))[:, None] + half[:, None] * x[None, :]
    weights = half[:, None] * w[None, :]
    return nodes.ravel(), weights.ravel()
