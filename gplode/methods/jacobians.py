r"""Dense Jacobians in featomic's gradient layout, from pair derivatives (DESIGN.md §1).

Every route gives, per structure, the pair derivatives
:math:`D_{ij} = \partial c^{(i)}_{a\,nlm}/\partial r_j` for :math:`j \in a,\ j \ne i` (the same for
every species a). The rows of the position gradient are, for each centre i and each
neighbour species a, the atoms :math:`\{j \in a\} \cup \{i\}` in increasing order, the centre's
own row being :math:`-\sum_{j\in a, j\ne i} D_{ij}` (the features are invariant under a common
translation). This is featomic's ``(sample, system, atom)`` gradient layout of each
``(center_type, neighbor_type)`` block, all blocks stacked.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PositionRows", "strain_from_pairs"]


class PositionRows:
    """The rows of the dense position gradient of a list of systems.

    :param systems: :class:`gplode.systems.System` list
    :param species: sorted neighbour atomic numbers
    """

    def __init__(self, systems, species):
        self.species = np.asarray(species)
        samples, starts, first = [], [], 0  # first: feature row of the system's first atom
        for index, system in enumerate(systems):
            members = [np.flatnonzero(system.numbers == z) for z in self.species]
            counts = np.array([sum(np.union1d(atoms, [i]).size for atoms in members) for i in range(system.n_atoms)])
            starts.append(sum(map(len, samples)) + np.concatenate([[0], np.cumsum(counts)]))
            rows = [
                np.stack([np.full(atoms.size, first + i), np.full(atoms.size, index), atoms, np.full(atoms.size, z)], 1)
                for i in range(system.n_atoms)
                for z, atoms in zip(self.species, (np.union1d(m, [i]) for m in members), strict=True)
            ]
            samples.append(np.concatenate(rows) if rows else np.zeros((0, 4), dtype=np.int64))
            first += system.n_atoms
        #: ``(n_rows, 4)``: feature row (sample), system, atom, neighbour atomic number
        self.samples = np.concatenate(samples).astype(np.int64) if samples else np.zeros((0, 4), dtype=np.int64)
        self._starts = starts  # per system: first row of each centre, and the end

    @property
    def n_rows(self) -> int:
        """Number of gradient rows."""
        return len(self.samples)

    def fill(self, out, system_index: int, system, pairs, centres) -> None:
        """Write the rows of ``centres`` of one system into ``out`` ``(n_rows, 3, (L+1)**2, n_radial)``.

        :param pairs: :math:`D_{ij}` of the centres, ``(len(centres), n_atoms, 3, (L+1)**2, n_radial)``
        """
        starts = self._starts[system_index]
        for local, i in enumerate(centres):
            row = starts[i]
            for z in self.species:
                atoms = np.union1d(np.flatnonzero(system.numbers == z), [i])
                block = pairs[local, atoms]
                block[atoms == i] = -pairs[local, atoms[atoms != i]].sum(axis=0)
                out[row : row + atoms.size] = block
                row += atoms.size


def strain_from_pairs(system, species, pairs, centres) -> np.ndarray:
    r""":math:`\partial c^{(i)}_{anlm}/\partial\varepsilon_{xy} = \sum_{j\in a} (r_j - r_i)_x D_{ij,y}`
    of a free-space system (r → r(1+ε) strains every pair vector), ``(len(centres), n_species, 3, 3, ...)``."""
    d = system.positions[None, :, :] - system.positions[np.asarray(centres), None, :]  # (c, n, 3)
    onehot = (system.numbers[:, None] == np.asarray(species)[None, :]).astype(float)  # (n, species)
    return np.einsum("cjx,ja,cjy...->caxy...", d, onehot, pairs)
