r"""The two analytic terms every periodic backend adds to its k ≠ 0 sum (SPEC §3).

.. math::

    \delta_{l0}\,\frac{4\pi}{\Omega}N_a\hat v_p(0)\frac{\tilde I_{n0}(0)}{\sqrt{4\pi}}
    \;-\;\delta_{l0}\delta_{a a_i}(1-w_c)\,c^{\mathrm{center}}_n

The first is the k = 0 term (p > 3 or p = 0 only), the second removes a fraction of each
atom's own contribution (w_c = ``center_atom_weight``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["add_periodic_corrections", "species_index"]


def species_index(numbers: np.ndarray, species: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each atom's type in ``species`` and whether it is there at all."""
    species = np.asarray(species)
    index = np.searchsorted(species, numbers)
    present = index < species.size
    present[present] &= species[index[present]] == numbers[present]
    return index, present


def add_periodic_corrections(out, system, species, potential, basis, center_term, center_atom_weight) -> None:
    """Add the k = 0 and centre-atom terms in place to ``out`` ``(n_atoms, n_species, n_lm, n_radial)``."""
    index, present = species_index(system.numbers, species)
    if potential.has_k0_term:
        counts = np.bincount(index[present], minlength=len(species)).astype(float)  # N_a
        radial0 = basis.kspace_integral(np.zeros(1), 0)[0]  # Ĩ_n0(0)
        prefactor = 4.0 * np.pi / system.volume * potential.k0_value() / np.sqrt(4.0 * np.pi)
        out[:, :, 0, :] += prefactor * counts[None, :, None] * radial0[None, None, :]
    rows = np.flatnonzero(present)
    out[rows, index[rows], 0, :] -= (1.0 - center_atom_weight) * center_term
