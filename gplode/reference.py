r"""The exact reference backend: reciprocal-space sum (periodic) and pair sum (free space).

Periodic systems (SPEC §3):

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

from .backend import Backend
from .direct_sum import kspace_sum
from .kvectors import default_k_cutoff

__all__ = ["ReferenceBackend"]


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
        L, basis, vhat = self.hypers.max_angular, self.basis, self.potential.kspace
        for i, system in enumerate(systems):
            yield [i], kspace_sum([system], species, vhat, basis.kspace_integral, self.k_cutoff, L, basis.n_radial)
