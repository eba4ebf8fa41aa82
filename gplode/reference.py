r"""The exact reference backend: reciprocal-space sum (periodic) and pair sum (free space).

Periodic systems (docs/conventions.md):

.. math::

    c^{(i)}_{anlm} = \frac{4\pi}{\Omega}\sum_{0<|k|<k_c}\hat v_p(k)\,\tilde I_{nl}(k)\,
    Y_{lm}(\hat k)\,\Re\Big[i^l e^{ik\cdot r_i}\sum_{j\in a}e^{-ik\cdot r_j}\Big]
    + \delta_{l0}\frac{4\pi}{\Omega}N_a\hat v_p(0)\frac{\tilde I_{n0}(0)}{\sqrt{4\pi}}
    - \delta_{l0}\delta_{a a_i}(1-w_c)c^{\mathrm{center}}_n

evaluated by :func:`gplode.direct_sum.kspace_sum` in float64 with exact (unsplined)
v̂_p and radial integrals, one structure at a time. This is slow (O(N N_k)) and is the oracle the fast
backends are tested against.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import Backend, format_bytes
from .direct_sum import kspace_sum, memory_bytes, sphere_shape

__all__ = ["ReferenceBackend"]

#: time per (atom, k-vector, species, channel) term of the exact sum, measured on two cores
SECONDS_PER_TERM = 0.5e-9
#: largest amount of work accepted, in such terms: over an hour
MAX_WORK = 1e13


class ReferenceBackend(Backend):
    """Exact sums in float64.

    :param hypers: :class:`gplode.hypers.LodeHypers`
    :param potential: :class:`gplode.potentials.SmearedPowerLaw`
    :param basis: :class:`gplode.radial.RadialBasis`
    """

    name = "reference"

    def check_size(self, system, n_species: int) -> None:
        """Refuse, before anything is allocated, a structure whose k-sum needs more memory
        than available (``MemoryError``) or more than :data:`MAX_WORK` terms (``ValueError``)."""
        n_channels = (self.hypers.max_angular + 1) ** 2 * self.basis.n_radial
        n_k = self.k_cutoff**3 * system.volume / (12 * np.pi**2)  # half sphere
        n_grid = math.prod(sphere_shape(system.cell, self.k_cutoff)) / 2
        needed = memory_bytes(system.n_atoms, n_species, n_channels, n_k, n_grid)
        work = system.n_atoms * n_k * n_species * n_channels
        available = self.available_memory()
        what = (
            f"the exact k-sum of a structure of {system.n_atoms} atoms (volume {system.volume:.4g} Å³, "
            f"k_c = {self.k_cutoff:.3g} Å⁻¹, {n_k:.3g} k-vectors)"
        )
        if needed > available:
            raise MemoryError(
                f"{what} needs about {format_bytes(needed)}, more than the {format_bytes(available)} available; "
                "raise `accuracy` or `smearing`, or lower `k_cutoff`, or use backend='numpy'"
            )
        if work > MAX_WORK:
            raise ValueError(
                f"{what} has {work:.2g} terms (about {work * SECONDS_PER_TERM / 3600:.1f} h): more than the reference "
                f"backend's limit of {MAX_WORK:.0e}; use backend='numpy', or raise `accuracy` or `smearing`"
            )

    def _kspace_part(self, systems, species):
        L, basis, vhat = self.hypers.max_angular, self.basis, self.potential.kspace
        for system in systems:
            self.check_size(system, len(species))
        for i, system in enumerate(systems):
            yield [i], kspace_sum([system], species, vhat, basis.kspace_integral, self.k_cutoff, L, basis.n_radial)
