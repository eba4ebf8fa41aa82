r"""Mesh parameters of the fast backends, chosen from the requested accuracy.

The mesh pipeline evaluates the same truncated k-sum as the reference backend,
:math:`0 < |k| < k_c` with :math:`k_c` from :func:`gplode.kvectors.default_k_cutoff`, but
obtains the structure factors and the per-atom phase sums through a B-spline
assignment of order P on a mesh of ``shape`` points. Assignment and interpolation alias
every frequency m onto m + qM; after dividing by :math:`\hat K_P` the relative error of a
component at reduced frequency :math:`u = |m|/M` is about
:math:`2\,[u/(1-u)]^P` per axis, and the component itself is weighted by
:math:`e^{-\sigma^2k^2/2}`. With ``oversampling`` α the mesh is α times the Nyquist size of
the k-sphere, so :math:`u \le 1/(2α)` at :math:`k_c`. :func:`choose_mesh` takes the
cheapest (P, α) whose estimate is below the accuracy; the tests check the real error.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy import fft

from .bspline import ORDERS
from .kvectors import default_k_cutoff, reciprocal_cell

__all__ = ["MeshParameters", "choose_mesh", "kspace_grid"]

#: the error estimate is applied with this safety factor (calibrated in the tests)
_SAFETY = 2.0


@dataclasses.dataclass(frozen=True)
class MeshParameters:
    """Mesh of one periodic cell.

    :param shape: mesh points along the three lattice vectors
    :param order: B-spline order P
    :param k_cutoff: radius k_c of the summed k-sphere, Å⁻¹
    """

    shape: tuple[int, int, int]
    order: int
    k_cutoff: float

    @property
    def n_points(self) -> int:
        """Total number of mesh points."""
        return int(np.prod(self.shape))

    def memory_bytes(self, n_atoms: int, n_species: int, n_channels_batch: int, itemsize: int = 8) -> int:
        """Peak memory estimate of the mesh pipeline (bytes)."""
        n_half = self.shape[0] * self.shape[1] * (self.shape[2] // 2 + 1)
        meshes = n_species * n_half * 2 * itemsize  # structure-factor meshes (complex)
        channels = n_channels_batch * (self.n_points * itemsize + n_half * 2 * itemsize)
        stencils = n_atoms * self.order**3 * (itemsize + 8)
        return int(meshes + channels + stencils)


def _alias_estimate(order: int, oversampling: float, smearing: float, k_cutoff: float) -> float:
    """Largest relative aliasing error over 0 < k ≤ k_c (see module docstring)."""
    k = np.linspace(0.0, k_cutoff, 400)[1:]
    u = k / (2.0 * oversampling * k_cutoff)
    return float(np.max(np.exp(-0.5 * (smearing * k) ** 2) * 6.0 * (u / (1.0 - u)) ** order))


@functools.lru_cache(maxsize=64)
def _oversampling(order: int, smearing: float, accuracy: float) -> float:
    """Smallest α (steps of 5 %) whose aliasing estimate is below the accuracy.

    It does not depend on the cell, so it is computed once per (P, σ, accuracy) rather than
    for every structure of a dataset.
    """
    k_cutoff = default_k_cutoff(smearing, accuracy)
    alpha = 1.0
    while _alias_estimate(order, alpha, smearing, k_cutoff) > _SAFETY * accuracy and alpha < 8:
        alpha *= 1.05
    return alpha


def choose_mesh(
    cell: np.ndarray, smearing: float, accuracy: float, n_atoms: int = 1, order: int | None = None
) -> MeshParameters:
    """Cheapest mesh meeting ``accuracy`` for this cell.

    :param cell: lattice vectors as rows (Å)
    :param smearing: σ in Å
    :param accuracy: target relative RMS error
    :param n_atoms: number of atoms (interpolation cost grows as n_atoms P³)
    :param order: force the B-spline order (default: chosen here)
    """
    k_cutoff = default_k_cutoff(smearing, accuracy)
    lengths = np.linalg.norm(cell, axis=1)
    nyquist = k_cutoff * lengths / np.pi  # points per axis at α = 1
    best = None
    for p in ORDERS if order is None else (order,):
        alpha = _oversampling(p, smearing, accuracy)
        shape = tuple(int(fft.next_fast_len(int(np.ceil(alpha * n)) + 1, real=True)) for n in nyquist)
        # per channel, measured on the 2-core machine (4,096 atoms, 90³ mesh): an inverse
        # real FFT costs ~8 ns per mesh point, the sorted sparse interpolation ~1.1 ns per
        # atom and stencil point
        cost = 8.0 * np.prod(shape) + 1.1 * n_atoms * p**3
        if best is None or cost < best[0]:
            best = (cost, MeshParameters(shape, p, k_cutoff))
    return best[1]


def kspace_grid(cell: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Wave vectors of the half-spectrum (``rfftn``) mesh and the integer frequencies per axis.

    :return: ``k`` of shape ``(M1, M2, M3//2 + 1, 3)`` in Å⁻¹, and ``[m1, m2, m3]``
    """
    m = [
        fft.fftfreq(shape[0], 1.0 / shape[0]),
        fft.fftfreq(shape[1], 1.0 / shape[1]),
        fft.rfftfreq(shape[2], 1.0 / shape[2]),
    ]
    recip = reciprocal_cell(cell)
    k = (
        m[0][:, None, None, None] * recip[0]
        + m[1][None, :, None, None] * recip[1]
        + m[2][None, None, :, None] * recip[2]
    )
    return k, m
