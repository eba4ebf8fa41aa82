"""The radius of the summed k-sphere (the k-vectors themselves: :func:`gplode.mesh.selected_kpoints`)."""

from __future__ import annotations

import numpy as np

__all__ = ["default_k_cutoff"]


def default_k_cutoff(smearing: float, accuracy: float) -> float:
    r"""Radius (Å⁻¹) of the k-sphere giving relative RMS error ≲ ``accuracy``.

    The summand decays like :math:`e^{-\sigma^2k^2/2}` (times at most a power of k from
    the basis integrals), and the truncated tail measured relative to the whole sum is a
    fraction 0.03–0.4 of :math:`e^{-\sigma^2k_c^2/2}` (featomic's 1.2π/σ, 1.6π/σ and 2π/σ
    give 3e-4, 1e-7 and 1e-10). We take :math:`\sigma^2k_c^2/2 = \ln(1/\mathrm{accuracy}) + 3`,
    i.e. a margin of e³ ≈ 20, checked in the tests against a converged sum.
    """
    return float(np.sqrt(2.0 * (np.log(1.0 / accuracy) + 3.0)) / smearing)
