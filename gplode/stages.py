r"""The mesh pipeline's stages, NumPy implementations (docs/conventions.md, periodic closed form).

Each stage is a plain function with a documented array contract; the GPU launchers in
``gplode.kernels`` have the same signatures. The chain, for one periodic system:

1. :func:`stencil` — B-spline mesh indices and weights of every atom (once per system);
2. :func:`spread` — per-species density meshes :math:`Q_a(g) = \sum_{j\in a}K_P(u_j - g)`;
3. ``rfftn`` — :math:`\hat Q_a(m) \approx \hat K_P(m)\,\rho_a(k_m)^*`;
4. :func:`channel_spectra` — for one (l, m) and species, the n_radial spectra
   :math:`G_{n}(k) = N_{\mathrm{mesh}}\frac{4\pi}{\Omega}\hat v_p(k)\tilde I_{nl}(k)Y_{lm}(\hat k)
   i^l \hat Q_a(k)/\hat K_P(k)^2` on the k-sphere;
5. ``irfftn`` then :func:`interpolate` (matrix from :func:`interpolation_matrix`) —
   :math:`c^{(i)}_{anlm} = \sum_g \mathrm{IFFT}[G_n](g)\,K_P(u_i - g)`, which equals the
   k-sum up to aliasing.

Arrays: mesh coordinates are fractional coordinates × mesh shape (dimensionless);
meshes are C-contiguous float64 ``(n, M1, M2, M3)``; half spectra complex128
``(n, M1, M2, M3//2 + 1)``.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import sparse

from .bspline import bspline_stencil

__all__ = ["channel_spectra", "interpolate", "interpolation_matrix", "spread", "stencil"]


def stencil(fractional: np.ndarray, shape: tuple[int, int, int], order: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat mesh indices and weights of the P³ points each atom touches.

    :param fractional: fractional coordinates in [0, 1), shape ``(n_atoms, 3)``
    :param shape: mesh shape (M1, M2, M3)
    :param order: B-spline order P
    :return: ``indices`` int64 and ``weights`` float64, both ``(n_atoms, P**3)``
    """
    (i1, w1), (i2, w2), (i3, w3) = (bspline_stencil(fractional[:, d] * shape[d], order, shape[d]) for d in range(3))
    indices = (i1[:, :, None, None] * shape[1] + i2[:, None, :, None]) * shape[2] + i3[:, None, None, :]
    weights = w1[:, :, None, None] * w2[:, None, :, None] * w3[:, None, None, :]
    n = fractional.shape[0]
    return indices.reshape(n, order**3), weights.reshape(n, order**3)  # same array module as ``fractional``


def spread(indices: np.ndarray, weights: np.ndarray, species_index: np.ndarray, n_species: int, shape) -> np.ndarray:
    """Per-species density meshes, shape ``(n_species, M1, M2, M3)``.

    :param indices: from :func:`stencil`, ``(n_atoms, P**3)``
    :param weights: from :func:`stencil`, ``(n_atoms, P**3)``
    :param species_index: position of each atom's type in the species list, ``(n_atoms,)``;
        atoms with index ``>= n_species`` are ignored
    """
    n_points = int(np.prod(shape))
    keep = species_index < n_species
    flat = (species_index[keep, None] * n_points + indices[keep]).ravel()
    mesh = np.bincount(flat, weights=weights[keep].ravel(), minlength=n_species * n_points)
    return mesh.reshape(n_species, *shape).astype(weights.dtype, copy=False)  # bincount sums in float64


def channel_spectra(prefactor: np.ndarray, radial: np.ndarray, ylm: np.ndarray, l: int) -> np.ndarray:
    r"""Spectra of one (a, l, m) channel for all n, on the selected k-points.

    :param prefactor: :math:`N_{\mathrm{mesh}}(4\pi/\Omega)\hat v_p(k)\hat Q_a(k)/\hat K_P(k)^2`,
        complex ``(n_k,)``
    :param radial: :math:`\tilde I_{nl}(k)`, ``(n_k, n_radial)``
    :param ylm: :math:`Y_{lm}(\hat k)`, ``(n_k,)``
    :return: :math:`G_n(k)`, complex ``(n_radial, n_k)``
    """
    phase = (1.0, 1j, -1.0, -1j)[l % 4]  # i^l
    return (phase * prefactor * ylm)[None, :] * radial.T


def interpolation_matrix(indices: np.ndarray, weights: np.ndarray, n_points: int):
    """Sparse (CSR) matrix of the interpolation, rows sorted by mesh position.

    Sorting the rows makes consecutive atoms read neighbouring mesh memory (measured 7x
    faster than an unsorted gather for 13,824 atoms on a 135³ mesh).

    :param indices: from :func:`stencil`, ``(n_atoms, P**3)``
    :param weights: from :func:`stencil`, ``(n_atoms, P**3)``
    :param n_points: number of mesh points
    :return: ``(matrix, order)``: row r of ``matrix`` ``(n_atoms, n_points)`` is atom ``order[r]``
    """
    order = np.argsort(indices[:, 0], kind="stable")
    n_atoms, width = indices.shape
    pointers = np.arange(0, n_atoms * width + 1, width)
    matrix = sparse.csr_matrix((weights[order].ravel(), indices[order].ravel(), pointers), shape=(n_atoms, n_points))
    return matrix, order


def interpolate(meshes: np.ndarray, matrix, order: np.ndarray) -> np.ndarray:
    """Values of real meshes at the atoms, ``(n_meshes, n_atoms)``.

    :param meshes: ``(n_meshes, M1, M2, M3)``
    :param matrix: from :func:`interpolation_matrix`
    :param order: from :func:`interpolation_matrix`
    """
    values = np.empty((meshes.shape[0], order.size))
    # one sparse mat-vec per mesh (no transposed copy); SciPy releases the GIL there, so
    # threads give ~1.8x on 2 cores (measured, 4,096 atoms, 90³ mesh, P = 10)
    products = _threads().map(lambda mesh: matrix @ mesh.ravel(), meshes)
    for i, product in enumerate(products):
        values[i, order] = product
    return values


@functools.lru_cache(maxsize=1)
def _threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="gplode-interpolate")
