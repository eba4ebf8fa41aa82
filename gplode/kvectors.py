"""Reciprocal-lattice vectors of a periodic cell."""

from __future__ import annotations

import numpy as np

__all__ = ["default_k_cutoff", "half_sphere_kvectors", "reciprocal_cell"]


def reciprocal_cell(cell: np.ndarray) -> np.ndarray:
    """Reciprocal lattice vectors as rows, ``b_i · a_j = 2π δ_ij``, in Å⁻¹, shape ``(3, 3)``."""
    return 2.0 * np.pi * np.linalg.inv(cell).T


def half_sphere_kvectors(cell: np.ndarray, k_cutoff: float) -> np.ndarray:
    """All reciprocal-lattice vectors with ``0 < |k| < k_cutoff``, one of each ±k pair.

    A vector n₁b₁ + n₂b₂ + n₃b₃ is kept when its first non-zero integer coordinate is
    positive, so every summand even in k is counted twice by doubling.

    :param cell: lattice vectors as rows (Å), shape ``(3, 3)``
    :param k_cutoff: radius of the sphere in Å⁻¹
    :return: shape ``(n_k, 3)``, in Å⁻¹
    """
    recip = reciprocal_cell(cell)
    # |n_i| = |k · a_i| / 2π ≤ k_cutoff |a_i| / 2π
    bounds = np.floor(k_cutoff * np.linalg.norm(cell, axis=1) / (2 * np.pi)).astype(int)
    n1 = np.arange(0, bounds[0] + 1)
    n2 = np.arange(-bounds[1], bounds[1] + 1)
    n3 = np.arange(-bounds[2], bounds[2] + 1)
    grid = np.stack(np.meshgrid(n1, n2, n3, indexing="ij"), axis=-1).reshape(-1, 3)
    first = np.where(grid[:, 0] != 0, grid[:, 0], np.where(grid[:, 1] != 0, grid[:, 1], grid[:, 2]))
    grid = grid[first > 0]
    k = grid @ recip
    return k[np.einsum("ij,ij->i", k, k) < k_cutoff**2]


def default_k_cutoff(smearing: float, accuracy: float) -> float:
    r"""Radius (Å⁻¹) of the k-sphere giving relative RMS error ≲ ``accuracy``.

    The summand decays like :math:`e^{-\sigma^2k^2/2}` (times at most a power of k from
    the basis integrals), and the truncated tail measured relative to the whole sum is a
    fraction 0.03–0.4 of :math:`e^{-\sigma^2k_c^2/2}` (featomic's 1.2π/σ, 1.6π/σ and 2π/σ
    give 3e-4, 1e-7 and 1e-10). We take :math:`\sigma^2k_c^2/2 = \ln(1/\mathrm{accuracy}) + 3`,
    i.e. a margin of e³ ≈ 20, checked in the tests against a converged sum.
    """
    return float(np.sqrt(2.0 * (np.log(1.0 / accuracy) + 3.0)) / smearing)
