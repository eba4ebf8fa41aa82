r"""The two analytic terms every periodic backend adds to its k ≠ 0 sum (docs/conventions.md).

.. math::

    \delta_{l0}\,\frac{4\pi}{\Omega}N_a\hat v_p(0)\frac{\tilde I_{n0}(0)}{\sqrt{4\pi}}
    \;-\;\delta_{l0}\delta_{a a_i}(1-w_c)\,c^{\mathrm{center}}_n

The first is the k = 0 term (p > 3 or p = 0 only), the second removes a fraction of each
atom's own contribution (w_c = ``center_atom_weight``).
"""

from __future__ import annotations

import numpy as np

from ..systems import atom_owners

__all__ = ["center_corrections", "periodic_corrections", "species_index", "species_slots"]


def species_index(numbers: np.ndarray, species: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each atom's type in ``species`` and whether it is there at all."""
    species = np.asarray(species)
    index = np.searchsorted(species, numbers)
    present = index < species.size
    present[present] &= species[index[present]] == numbers[present]
    return index, present


def species_slots(owner: np.ndarray, kind: np.ndarray, n_systems: int, n_species: int) -> tuple[np.ndarray, int]:
    """Each structure's neighbour species numbered from 0 in the order of ``species``: for atoms
    of systems ``owner`` with species indices ``kind`` (of ``n_species``), each atom's slot in
    its system and the number of slots (the most species of one system, at least 1)."""
    pairs, slot = np.unique(owner * max(n_species, 1) + kind, return_inverse=True)
    slot = slot - np.searchsorted(pairs // max(n_species, 1), np.arange(n_systems))[owner]
    return slot, max(1, int(slot.max(initial=-1)) + 1)


def periodic_corrections(systems, species, potential, basis, center_term, center_atom_weight) -> np.ndarray:
    """The l = 0 terms of every atom of the periodic ``systems``, all at once.

    :return: ``(total atoms, n_species, n_radial)``, rows in the order of the systems' atoms,
        to be added to the (l, m) = (0, 0) coefficients
    """
    owner, _ = atom_owners(systems)
    numbers = np.concatenate([system.numbers for system in systems])
    out = center_corrections(numbers, species, center_term, center_atom_weight)
    if potential.has_k0_term:
        index, present = species_index(numbers, species)
        n_species = len(species)
        # N_a of each system, (n_systems, n_species)
        n_a = np.bincount(owner[present] * n_species + index[present], minlength=len(systems) * n_species).reshape(
            len(systems), n_species
        )
        volumes = np.array([system.volume for system in systems])
        radial0 = basis.kspace_integral(np.zeros(1), 0)[0]  # Ĩ_n0(0)
        prefactor = 4.0 * np.pi / volumes * potential.k0_value() / np.sqrt(4.0 * np.pi)
        out += (prefactor[:, None] * n_a)[owner][:, :, None] * radial0
    return out


def center_corrections(numbers, species, center_term, center_atom_weight) -> np.ndarray:
    r"""The centre term :math:`-\delta_{aa_i}(1-w_c)c^{\mathrm{center}}_n` of atoms of types
    ``numbers``: ``(n_atoms, n_species, n_radial)``, to be added to the (l, m) = (0, 0) coefficients."""
    index, present = species_index(numbers, species)
    out = np.zeros((len(numbers), len(species), len(center_term)))
    rows = np.flatnonzero(present)
    out[rows, index[rows], :] = -(1.0 - center_atom_weight) * center_term
    return out
