r"""The result of :meth:`gplode.LodeCalculator.compute`: coefficients and their labels
(layout: docs/conventions.md)."""

from __future__ import annotations

import numpy as np

__all__ = ["Features"]


class Features:
    r"""LODE coefficients :math:`c^{(i)}_{anlm}` of all atoms of all structures.

    :param values: shape ``(n_atoms_total, n_neighbor_types, (max_angular+1)**2, max_radial+1)``;
        the (l, m) axis is ordered (0,0), (1,-1), (1,0), (1,1), (2,-2), …
    :param neighbor_types: sorted atomic numbers labelling axis 1
    :param center_types: atomic number of each row, shape ``(n_atoms_total,)``
    :param system: index of each row's structure in the input
    :param atom: index of each row's atom within its structure
    :param hypers: the :class:`gplode.hypers.LodeHypers` used
    :param backend: name of the backend that computed the values
    """

    def __init__(self, values, neighbor_types, center_types, system, atom, hypers, backend):
        self.values = values
        self.neighbor_types = np.asarray(neighbor_types, dtype=np.int64)
        self.center_types = np.asarray(center_types, dtype=np.int64)
        self.system = np.asarray(system, dtype=np.int64)
        self.atom = np.asarray(atom, dtype=np.int64)
        self.hypers = hypers
        self.backend = backend

    @property
    def max_angular(self) -> int:
        """Largest l present."""
        return int(round(np.sqrt(self.values.shape[2]))) - 1

    def __repr__(self):
        return (
            f"Features(n_atoms={self.values.shape[0]}, neighbor_types={self.neighbor_types.tolist()}, "
            f"max_angular={self.max_angular}, n_radial={self.values.shape[3]}, backend={self.backend!r})"
        )

    def block(self, l: int) -> np.ndarray:
        """View of the l block, shape ``(n_atoms_total, n_neighbor_types, 2l+1, max_radial+1)``."""
        if not 0 <= l <= self.max_angular:
            raise ValueError(f"l must be in [0, {self.max_angular}], got {l!r}")
        return self.values[:, :, l * l : (l + 1) ** 2, :]

    def power_spectrum(self) -> np.ndarray:
        r"""Rotation invariants (docs/conventions.md).

        .. math::

            P^{(i)}_{an,a'n',l} = (2l+1)^{-1/2}\sum_m c^{(i)}_{anlm}c^{(i)}_{a'n'lm}

        :return: shape ``(n_atoms_total, n_neighbor_types, max_radial+1, n_neighbor_types,
            max_radial+1, max_angular+1)``; ``.reshape(n_atoms_total, -1)`` gives a feature matrix
        """
        blocks = []
        for l in range(self.max_angular + 1):
            c = self.block(l)
            blocks.append(np.einsum("iamn,ibmk->ianbk", c, c) / np.sqrt(2 * l + 1))
        return np.stack(blocks, axis=-1)

    def to_tensormap(self):
        """Convert to a metatensor ``TensorMap`` in featomic's ``LodeSphericalExpansion`` layout.

        Keys ``(o3_lambda, o3_sigma, center_type, neighbor_type)`` for every centre type
        present and every neighbour type; samples ``(system, atom)``; components
        ``o3_mu``; properties ``n``. Requires ``metatensor-core``.
        """
        try:
            from metatensor import Labels, TensorBlock, TensorMap
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("to_tensormap() needs metatensor-core: pip install metatensor-core") from error
        keys, blocks = [], []
        n_radial = self.values.shape[3]
        for l in range(self.max_angular + 1):
            for center in np.unique(self.center_types):
                rows = np.flatnonzero(self.center_types == center)
                samples = Labels(
                    ["system", "atom"], np.stack([self.system[rows], self.atom[rows]], axis=1).astype(np.int32)
                )
                components = [Labels(["o3_mu"], np.arange(-l, l + 1, dtype=np.int32).reshape(-1, 1))]
                properties = Labels(["n"], np.arange(n_radial, dtype=np.int32).reshape(-1, 1))
                for a, neighbor in enumerate(self.neighbor_types):
                    values = np.ascontiguousarray(self.block(l)[rows, a], dtype=np.float64)
                    blocks.append(TensorBlock(values, samples, components, properties))
                    keys.append([l, 1, int(center), int(neighbor)])
        names = ["o3_lambda", "o3_sigma", "center_type", "neighbor_type"]
        return TensorMap(Labels(names, np.array(keys, dtype=np.int32)), blocks)
