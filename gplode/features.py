r"""The result of :meth:`gplode.LodeCalculator.compute`: coefficients and their labels
(layout: docs/conventions.md)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Features", "Gradient", "VectorJacobianProduct"]


class Gradient(NamedTuple):
    r"""Dense derivatives of the coefficients with respect to one parameter (featomic's layout).

    ``"positions"``: ``values`` ``(n_rows, 3, (L+1)**2, n_radial)`` holds
    :math:`\partial c^{(i)}_{anlm}/\partial r_{j\alpha}` (Å⁻¹ × the unit of c), one row per
    ``samples`` entry ``(sample, system, atom, neighbor_type)``: for every centre i (``sample``, a
    row of ``Features.values``) and neighbour species a (atomic number), the atoms j of
    species a and i itself, increasing. ``"strain"``: ``values``
    ``(n_atoms_total, n_neighbor_types, 3, 3, (L+1)**2, n_radial)`` holds
    :math:`\partial c^{(i)}_{anlm}/\partial\varepsilon_{xy}` for r → r(1+ε), H → H(1+ε)
    (components ``xyz_1`` = x, ``xyz_2`` = y; not symmetrised), ``samples`` ``(n_atoms_total, 1)``.
    """

    values: np.ndarray
    samples: np.ndarray
    #: names of the ``samples`` columns
    names: tuple


class VectorJacobianProduct(NamedTuple):
    r""":math:`\partial\mathcal L/\partial r` and :math:`\partial\mathcal L/\partial\varepsilon` of
    :math:`\mathcal L = \sum_{i,a,nlm}\lambda^{(i)}_{anlm}c^{(i)}_{anlm}`
    (:meth:`gplode.LodeCalculator.vjp`). For an energy E = L, the forces are ``-positions`` and
    the virial is ``strain`` (stress: its symmetric part over the cell volume)."""

    #: ``(n_atoms_total, 3)``, rows as ``Features.values`` (Å⁻¹ × the unit of L)
    positions: np.ndarray
    #: ``(n_structures, 3, 3)``, ∂L/∂ε_xy for r → r(1+ε), H → H(1+ε) (free space: positions only)
    strain: np.ndarray


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
    :param gradients: ``{"positions": Gradient, "strain": Gradient}``, those asked for
    """

    def __init__(self, values, neighbor_types, center_types, system, atom, hypers, backend, gradients=None):
        self.values = values
        self.neighbor_types = np.asarray(neighbor_types, dtype=np.int64)
        self.center_types = np.asarray(center_types, dtype=np.int64)
        self.system = np.asarray(system, dtype=np.int64)
        self.atom = np.asarray(atom, dtype=np.int64)
        self.hypers = hypers
        self.backend = backend
        #: dense derivatives asked for in :meth:`gplode.LodeCalculator.compute` (:class:`Gradient`)
        self.gradients = dict(gradients or {})

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
        ``o3_mu``; properties ``n``. Gradients, when computed, are the blocks' gradients:
        ``"positions"`` (samples ``sample, system, atom``, components ``xyz, o3_mu``) and
        ``"strain"`` (samples ``sample``, components ``xyz_1, xyz_2, o3_mu``). Requires
        ``metatensor-core`` and host values (not ``compute(..., on_device=True)``).
        """
        if type(self.values) is not np.ndarray:  # a CuPy (or device stand-in) array
            raise ValueError("to_tensormap() needs host values: compute with on_device=False")
        try:
            from metatensor import Labels, TensorBlock, TensorMap
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("to_tensormap() needs metatensor-core: pip install metatensor-core") from error

        def labels(names, values):
            return Labels(names, np.asarray(values, dtype=np.int32).reshape(len(values), len(names)))

        keys, blocks = [], []
        n_radial = self.values.shape[3]
        properties = labels(["n"], np.arange(n_radial))
        for l in range(self.max_angular + 1):
            lm = slice(l * l, (l + 1) ** 2)
            mu = labels(["o3_mu"], np.arange(-l, l + 1))
            for center in np.unique(self.center_types):
                rows = np.flatnonzero(self.center_types == center)
                block_row = np.full(self.values.shape[0], -1)
                block_row[rows] = np.arange(rows.size)
                samples = labels(["system", "atom"], np.stack([self.system[rows], self.atom[rows]], axis=1))
                for a, neighbor in enumerate(self.neighbor_types):
                    values = np.ascontiguousarray(self.values[rows, a, lm], dtype=np.float64)
                    block = TensorBlock(values, samples, [mu], properties)
                    self._add_gradients(block, TensorBlock, labels, rows, block_row, a, lm, [mu], properties)
                    blocks.append(block)
                    keys.append([l, 1, int(center), int(neighbor)])
        names = ["o3_lambda", "o3_sigma", "center_type", "neighbor_type"]
        return TensorMap(labels(names, keys), blocks)

    def _add_gradients(self, block, TensorBlock, labels, rows, block_row, a, lm, mu, properties):  # noqa: N803
        """Add the gradients of the block of centre rows ``rows`` and neighbour index ``a``."""
        positions, strain = self.gradients.get("positions"), self.gradients.get("strain")
        xyz = {name: [labels([name], np.arange(3))] for name in ("xyz", "xyz_1", "xyz_2")}
        if positions is not None:
            sample, rest = positions.samples[:, 0], positions.samples[:, 1:3]
            mine = np.flatnonzero((block_row[sample] >= 0) & (positions.samples[:, 3] == self.neighbor_types[a]))
            samples = labels(["sample", "system", "atom"], np.column_stack([block_row[sample[mine]], rest[mine]]))
            values = np.ascontiguousarray(positions.values[mine][:, :, lm], dtype=np.float64)
            block.add_gradient("positions", TensorBlock(values, samples, xyz["xyz"] + mu, properties))
        if strain is not None:
            values = np.ascontiguousarray(strain.values[rows, a][:, :, :, lm], dtype=np.float64)
            samples = labels(["sample"], np.arange(rows.size))
            block.add_gradient("strain", TensorBlock(values, samples, xyz["xyz_1"] + xyz["xyz_2"] + mu, properties))
