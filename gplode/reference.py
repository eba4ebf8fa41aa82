r"""The exact reference backend: reciprocal-space sum (periodic) and pair sum (free space).

Periodic systems (SPEC §3):

.. math::

    c^{(i)}_{anlm} = \frac{4\pi}{\Omega}\sum_{0<|k|<k_c}\hat v_p(k)\,\tilde I_{nl}(k)\,
    Y_{lm}(\hat k)\,\Re\Big[i^l e^{ik\cdot r_i}\sum_{j\in a}e^{-ik\cdot r_j}\Big]
    + \delta_{l0}\frac{4\pi}{\Omega}N_a\hat v_p(0)\frac{\tilde I_{n0}(0)}{\sqrt{4\pi}}
    - \delta_{l0}\delta_{a a_i}(1-w_c)c^{\mathrm{center}}_n

evaluated in float64 with per-species structure factors, in chunks of k-vectors, with
exact (unsplined) radial integrals. This is slow (O(N N_k)) and is the oracle the fast
backends are tested against.
"""

from __future__ import annotations

import numpy as np

from .backend import Backend
from .kvectors import default_k_cutoff, half_sphere_kvectors
from .spherical_harmonics import real_spherical_harmonics

__all__ = ["ReferenceBackend", "kspace_sum"]

#: k-vectors handled at once: bounds the (n_atoms, n_k) phase arrays
_K_CHUNK = 4096


class ReferenceBackend(Backend):
    """Exact sums in float64.

    :param hypers: :class:`gplode.hypers.LodeHypers`
    :param potential: :class:`gplode.potentials.SmearedPowerLaw`
    :param basis: :class:`gplode.radial.RadialBasis`
    """

    name = "reference"

    @property
    def k_cutoff(self) -> float:
        """Radius of the summed k-sphere in Å⁻¹ (explicit ``k_cutoff`` or from ``accuracy``)."""
        h = self.hypers
        return h.k_cutoff if h.k_cutoff is not None else default_k_cutoff(h.smearing, h.accuracy)

    def _kspace_part(self, systems, species):
        L, basis, k_cutoff = self.hypers.max_angular, self.basis, self.k_cutoff
        for i, system in enumerate(systems):
            yield [i], kspace_sum(system, species, self.potential, basis.kspace_integral, k_cutoff, L, basis.n_radial)


def kspace_sum(system, species, potential, radial_integral, k_cutoff, max_angular, n_radial) -> np.ndarray:
    r"""The k ≠ 0 part of the periodic coefficients by a direct sum over the half k-sphere.

    Cost O(N N_k) with per-species structure factors; memory bounded by chunks of k.

    :param radial_integral: callable ``(k, l) -> (n_k, n_radial)`` giving :math:`\tilde I_{nl}(k)`
        (exact for the reference backend, splined for the fast one)
    :return: ``(n_atoms, len(species), (max_angular+1)**2, n_radial)``
    """
    L = max_angular
    n_atoms, n_species = system.n_atoms, len(species)
    onehot = (system.numbers[None, :] == np.asarray(species)[:, None]).astype(float)  # (n_species, n_atoms)
    out = np.zeros((n_atoms * n_species, (L + 1) ** 2, n_radial))
    kvectors = half_sphere_kvectors(system.cell, k_cutoff)
    for start in range(0, kvectors.shape[0], _K_CHUNK):
        k = kvectors[start : start + _K_CHUNK]
        knorm = np.linalg.norm(k, axis=1)
        # factor 2: the half sphere stands for ±k, whose summands are equal
        weight = 2.0 * 4.0 * np.pi / system.volume * potential.kspace(knorm)
        ylm = real_spherical_harmonics(k, L)
        phase = np.exp(1j * (system.positions @ k.T))  # (n_atoms, n_k): e^{ik·r_i}
        structure = onehot @ phase  # (n_species, n_k): ρ_a(k) = Σ_{j∈a} e^{ik·r_j}
        s = (phase[:, None, :] * structure.conj()[None, :, :]).reshape(n_atoms * n_species, -1)
        parts = (s.real, s.imag)
        for l in range(L + 1):
            # Re[i^l s] = cos(lπ/2) Re s − sin(lπ/2) Im s
            sign = (1.0, -1.0, -1.0, 1.0)[l % 4]
            radial = radial_integral(knorm, l)  # (n_k, n_radial)
            kernel = (weight[:, None, None] * ylm[:, l * l : (l + 1) ** 2, None]) * radial[:, None, :]
            out[:, l * l : (l + 1) ** 2, :] += sign * (parts[l % 2] @ kernel.reshape(k.shape[0], -1)).reshape(
                n_atoms * n_species, 2 * l + 1, n_radial
            )
    return out.reshape(n_atoms, n_species, (L + 1) ** 2, n_radial)
