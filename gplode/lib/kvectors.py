"""The summed k-sphere: its radius from the accuracy, and its vectors on a mesh's half spectrum.

Every route sums the same vectors, :math:`0 < |k| < k_c`, taken from the ``rfftn`` half
spectrum of a mesh (the mesh method's, or the direct sum's smallest box holding the sphere).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "SHELL_TOLERANCE",
    "KPoints",
    "default_k_cutoff",
    "half_sphere_count",
    "selected_kpoints",
    "sphere_shape",
    "sphere_shape_for_lengths",
    "sphere_shapes",
]

#: relative tolerance on |k|² at the k-sphere: vectors with |k|² ≥ k_c²(1 − ε) are not summed
SHELL_TOLERANCE = 1e-10


def default_k_cutoff(smearing: float, accuracy: float) -> float:
    r"""Radius (Å⁻¹) of the k-sphere giving relative RMS error ≲ ``accuracy``.

    The summand decays like :math:`e^{-\sigma^2k^2/2}` (times at most a power of k from
    the basis integrals), and the truncated tail measured relative to the whole sum is a
    fraction 0.03–0.4 of :math:`e^{-\sigma^2k_c^2/2}` (featomic's 1.2π/σ, 1.6π/σ and 2π/σ
    give 3e-4, 1e-7 and 1e-10). We take :math:`\sigma^2k_c^2/2 = \ln(1/\mathrm{accuracy}) + 3`,
    i.e. a margin of e³ ≈ 20, checked in the tests against a converged sum.
    """
    return float(np.sqrt(2.0 * (np.log(1.0 / accuracy) + 3.0)) / smearing)


def sphere_shape(cells: np.ndarray, k_cutoff) -> tuple[int, int, int]:
    r"""Smallest grid whose half spectrum holds every :math:`|k| < k_c` of all ``cells``
    (the largest of their :func:`sphere_shapes`; ``k_cutoff``: one for all cells or one per cell)."""
    return tuple(int(m) for m in sphere_shapes(cells, k_cutoff).max(axis=0))


def sphere_shapes(cells: np.ndarray, k_cutoff) -> np.ndarray:
    r"""Each cell's own :func:`sphere_shape_for_lengths`, ``(n_cells, 3)`` integers (one array
    operation for many cells; ``k_cutoff``: one for all cells or one per cell)."""
    cells = np.asarray(cells).reshape(-1, 3, 3)
    reach = np.linalg.norm(cells, axis=2) * np.broadcast_to(np.asarray(k_cutoff, dtype=float), (len(cells),))[:, None]
    return np.array([sphere_shape_for_lengths(lengths, 1.0) for lengths in reach.tolist()], dtype=np.int64)


def sphere_shape_for_lengths(lengths, k_cutoff: float) -> tuple[int, int, int]:
    r"""Smallest grid holding the k-sphere of cells with lattice vectors no longer than
    ``lengths`` (Å): the integer coordinates satisfy
    :math:`|m_i| = |k\cdot a_i|/2\pi \le k_c|a_i|/2\pi`."""
    return tuple(2 * math.floor(k_cutoff * length / (2 * np.pi)) + 2 for length in lengths)


def half_sphere_count(k_cutoff: float, volume: float) -> float:
    r"""Expected number of k-vectors of a half sphere, :math:`k_c^3\Omega/12\pi^2`, in a cell
    of ``volume`` Å³."""
    return k_cutoff**3 * volume / (12 * np.pi**2)


class KPoints(NamedTuple):
    """The selected half-spectrum points of a batch of cells (arrays of one module)."""

    #: index of the cell each point belongs to, ``(n_k,)``
    structure: object
    #: flat position in that cell's half spectrum ``(M1, M2, M3//2 + 1)``, ``(n_k,)``
    position: object
    #: integer mesh frequencies (m1, m2, m3), ``(n_k, 3)``
    frequencies: object
    #: wave vectors in Å⁻¹, ``(n_k, 3)`` (``None`` where not asked for)
    k: object
    #: their squared norms |k|² in Å⁻², ``(n_k,)`` (through each cell's metric)
    norm2: object


def selected_kpoints(
    cells: np.ndarray, shape: tuple[int, int, int], k_cutoff: float, xp=np, vectors: bool = True
) -> KPoints:
    r"""The points :math:`0 < |k| < k_c` of the ``rfftn`` half spectra of cells sharing a mesh.

    A shell of vectors lying on the sphere (:math:`|k|^2 \ge k_c^2(1 - \epsilon)`,
    ε = :data:`SHELL_TOLERANCE`) is dropped as a whole, so that round-off in |k|² never
    keeps an arbitrary part of it (e.g. ``k_cutoff`` = 4π on a 1 Å cubic cell).

    :math:`k = m_1 b_1 + m_2 b_2 + m_3 b_3` with the FFT frequencies :math:`m_i` and
    reciprocal vectors :math:`b_i` of each cell; computed where ``xp`` computes (on the
    device for CuPy), |k|² through the metric :math:`G = B B^T` of each cell.

    :param cells: lattice vectors as rows, Å, ``(n_cells, 3, 3)``
    :param shape: the common mesh shape (M1, M2, M3)
    :param k_cutoff: k_c in Å⁻¹, one for all cells or one per cell ``(n_cells,)``
    :param xp: array module of the results
    :param vectors: also the wave vectors ``k`` (else ``None``: the norms and frequencies
        are enough for the truncation model, and k costs more than the rest on the CPU)
    """
    recip = 2.0 * np.pi * np.linalg.inv(cells).transpose(0, 2, 1)  # rows b_i
    limit = np.broadcast_to(np.asarray(k_cutoff, dtype=float) ** 2 * (1.0 - SHELL_TOLERANCE), (len(cells),))
    limit = xp.asarray(limit)[:, None, None, None]
    metric = xp.asarray(recip @ recip.transpose(0, 2, 1))[:, :, :, None, None, None]
    m = [
        xp.fft.fftfreq(shape[0], 1.0 / shape[0])[:, None, None],
        xp.fft.fftfreq(shape[1], 1.0 / shape[1])[None, :, None],
        xp.fft.rfftfreq(shape[2], 1.0 / shape[2])[None, None, :],
    ]
    norm2 = sum(metric[:, i, j] * m[i] * m[j] * (1 if i == j else 2) for i in range(3) for j in range(i, 3))
    inside = (norm2 > 0) & (norm2 < limit)
    # never the Nyquist planes |m_i| = M_i/2 (a too coarse user mesh): their inverse real
    # FFT is not defined by one half spectrum, and cuFFT and pocketfft treat them apart
    inside &= (2 * abs(m[0]) < shape[0]) & (2 * abs(m[1]) < shape[1]) & (2 * m[2] < shape[2])
    structure, position = xp.nonzero(inside.reshape(len(cells), -1))
    norm2 = norm2.reshape(len(cells), -1)[structure, position]
    del inside
    if structure.size == 0:
        return KPoints(structure, position, xp.zeros((0, 3)), xp.zeros((0, 3)) if vectors else None, norm2)
    i1, i2, i3 = xp.unravel_index(position, (shape[0], shape[1], shape[2] // 2 + 1))
    frequencies = xp.stack([m[0].ravel()[i1], m[1].ravel()[i2], m[2].ravel()[i3]], axis=1)
    k = xp.einsum("ki,kij->kj", frequencies, xp.asarray(recip)[structure]) if vectors else None
    return KPoints(structure, position, frequencies, k, norm2)
