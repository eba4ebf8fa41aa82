"""Turn user structures (``ase.Atoms``) into validated arrays, once, at the entry point.

Everything downstream assumes a :class:`System`: finite positions, non-singular periodic
lattice vectors, positions wrapped into the cell along the periodic directions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy.linalg import null_space
from scipy.spatial import cKDTree

__all__ = ["COINCIDENT_DISTANCE", "CellGeometry", "System", "as_systems", "atom_owners", "coincident_atoms"]

#: two atoms closer than this (Å, periodic images included) are coincident: an invalid structure
COINCIDENT_DISTANCE = 1e-6
#: up to this many atoms, :func:`coincident_atoms` looks at every pair (else through a k-d tree)
_ALL_PAIRS_ATOMS = 128

#: a cell whose volume is below this fraction of the product of its edge lengths is
#: treated as singular (nearly coplanar lattice vectors)
_SINGULAR_CELL_RATIO = 1e-8


class CellGeometry:
    """The lengths and volume of a structure's ``cell`` (computed once per object)."""

    cell: np.ndarray

    @functools.cached_property
    def lengths(self) -> tuple[float, float, float]:
        """Lengths of the three rows of ``cell`` in Å."""
        return tuple(math.sqrt(sum(x * x for x in row)) for row in self.cell.tolist())

    @functools.cached_property
    def volume(self) -> float:
        """Cell volume Ω in Å³ (of periodic cells and boxes)."""
        return float(abs(np.linalg.det(self.cell)))


@dataclasses.dataclass(frozen=True)
class System(CellGeometry):
    """One structure as plain arrays.

    :param positions: Cartesian positions in Å, shape ``(n_atoms, 3)``; wrapped into the
        cell along the periodic directions
    :param numbers: atomic numbers, shape ``(n_atoms,)``
    :param cell: lattice vectors as rows in Å, shape ``(3, 3)`` (zeros in free space; for
        slabs and wires the non-periodic rows as given, possibly zero)
    :param periodic: ``True`` for pbc on all three axes, else ``False``
    :param pbc: slabs (two ``True``) and wires (one ``True``): which rows of ``cell`` are
        periodic; ``None`` for bulk and free-space structures
    :param k_cutoff: radius of the structure's k-sphere in Å⁻¹, set by the pipeline from
        the truncation-error model (:mod:`gplode.methods.accuracy`); ``None``: the method's own
    """

    positions: np.ndarray
    numbers: np.ndarray
    cell: np.ndarray
    periodic: bool
    pbc: tuple[bool, bool, bool] | None = None
    k_cutoff: float | None = None

    @property
    def mixed(self) -> bool:
        """A slab or a wire (pbc on two or one axes)."""
        return self.pbc is not None

    @property
    def free(self) -> bool:
        """A free-space structure (no pbc)."""
        return not self.periodic and self.pbc is None

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return self.numbers.shape[0]


def _convert(frame) -> System:
    """One validated :class:`System`; errors say what is wrong, not which structure."""
    system = _arrays(frame)
    pair = coincident_atoms(system)
    if pair is not None:
        raise ValueError(
            f"atoms {pair[0]} and {pair[1]} are at the same position "
            f"(closer than {COINCIDENT_DISTANCE:g} Å{', periodic images included' if not system.free else ''})"
        )
    return system


def coincident_atoms(system: System) -> tuple[int, int] | None:
    """The first pair of atoms of a :class:`System` closer than
    :data:`COINCIDENT_DISTANCE` (modulo the periodic lattice, if any), or ``None``."""
    if system.n_atoms < 2:
        return None
    if system.n_atoms <= _ALL_PAIRS_ATOMS:  # every pair at once: faster than a tree for small cells
        first, second = _pairs(system.n_atoms)
        if system.free:
            delta = system.positions[second] - system.positions[first]
        else:  # the nearest image (a distance this small is within a fraction of the cell)
            cell = _torus_cell(system)
            fractional = system.positions @ np.linalg.inv(cell)
            delta = fractional[second] - fractional[first]
            delta = (delta - np.round(delta)) @ cell
        close = np.flatnonzero(np.einsum("ij,ij->i", delta, delta) <= COINCIDENT_DISTANCE**2)
        pairs = np.stack([first[close], second[close]], axis=1)
    elif not system.free:
        # candidates from fractional coordinates on the unit torus; a Cartesian distance d
        # has a fractional one of at most d / (smallest singular value of the cell)
        cell = _torus_cell(system)
        inverse = np.linalg.inv(cell)
        fractional = system.positions @ inverse
        fractional -= np.floor(fractional)
        fractional[fractional >= 1.0] = 0.0
        radius = COINCIDENT_DISTANCE * np.linalg.norm(inverse, 2)
        pairs = cKDTree(fractional, boxsize=1.0).query_pairs(radius, output_type="ndarray")
        if pairs.size:
            delta = fractional[pairs[:, 1]] - fractional[pairs[:, 0]]
            distance = np.linalg.norm((delta - np.round(delta)) @ cell, axis=1)
            pairs = pairs[distance <= COINCIDENT_DISTANCE]
    else:
        pairs = cKDTree(system.positions).query_pairs(COINCIDENT_DISTANCE, output_type="ndarray")
    if not pairs.size:
        return None
    first = np.lexsort((pairs.max(axis=1), pairs.min(axis=1)))[0]
    return int(pairs[first].min()), int(pairs[first].max())


@functools.lru_cache(maxsize=_ALL_PAIRS_ATOMS)
def _pairs(n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs i < j of ``n_atoms`` atoms (read-only index arrays, kept: datasets repeat sizes)."""
    first, second = np.triu_indices(n_atoms, 1)
    first.flags.writeable = second.flags.writeable = False
    return first, second


def _torus_cell(system: System) -> np.ndarray:
    """The cell coincident atoms are found modulo: a bulk structure's own; for slabs and wires
    the periodic vectors completed by orthogonal ones 1 Å longer than the atoms' extent along
    them (so that no image across the vacuum comes near)."""
    if system.periodic:
        return system.cell
    periodic = system.cell[list(system.pbc)]
    across = null_space(periodic).T  # orthonormal rows orthogonal to the periodic vectors
    extent = np.ptp(system.positions @ across.T, axis=0) + 1.0
    return np.concatenate([periodic, extent[:, None] * across])


def _arrays(frame) -> System:
    """The arrays of ``frame``, checked (everything but coincident atoms) and wrapped."""
    for attribute in ("get_positions", "get_atomic_numbers", "get_pbc", "get_cell"):
        if not hasattr(frame, attribute):
            raise TypeError(f"expected an ase.Atoms, got {type(frame).__name__}")
    positions = np.array(frame.get_positions(), dtype=float)
    numbers = np.array(frame.get_atomic_numbers(), dtype=np.int64)
    if numbers.size == 0:
        raise ValueError("structure has no atoms")
    if not np.isfinite(positions).all():
        bad = int(np.flatnonzero(~np.all(np.isfinite(positions), axis=1))[0])
        raise ValueError(f"position of atom {bad} is not finite ({positions[bad].tolist()})")
    if numbers.min() < 1 or numbers.max() > 118:
        raise ValueError(f"atomic numbers must be in 1..118, got {sorted(set(numbers.tolist()))}")
    pbc = np.asarray(frame.get_pbc(), dtype=bool)
    if pbc.all():
        cell = np.array(frame.get_cell()[:], dtype=float)
        if not np.isfinite(cell).all():
            raise ValueError("cell is not finite")
        lengths = np.sqrt((cell * cell).sum(axis=1))
        volume = abs(float(np.linalg.det(cell)))
        if lengths.min() == 0 or volume <= _SINGULAR_CELL_RATIO * lengths.prod():
            raise ValueError(
                f"periodic structure needs a non-singular cell, got lattice vectors "
                f"{cell.tolist()} (volume {volume:.3g} Å³)"
            )
        fractional = positions @ np.linalg.inv(cell)
        positions = (fractional - np.floor(fractional)) @ cell
        return System(positions, numbers, cell, True)
    if not pbc.any():
        return System(positions, numbers, np.zeros((3, 3)), False)
    cell = np.array(frame.get_cell()[:], dtype=float)
    periodic = cell[pbc]
    what = "slab" if pbc.sum() == 2 else "wire"
    if not np.isfinite(periodic).all():
        raise ValueError(f"the periodic lattice vectors of the {what} (pbc={pbc.tolist()}) are not finite")
    lengths = np.sqrt((periodic * periodic).sum(axis=1))
    measure = np.linalg.norm(np.cross(*periodic)) if pbc.sum() == 2 else lengths[0]
    if lengths.min() == 0 or measure <= _SINGULAR_CELL_RATIO * lengths.prod():
        raise ValueError(
            f"{what} (pbc={pbc.tolist()}) needs non-singular periodic lattice vectors, got {periodic.tolist()}"
        )
    fractional = positions @ np.linalg.pinv(periodic)  # along the periodic vectors only
    positions = positions - np.floor(fractional) @ periodic
    return System(positions, numbers, cell, False, tuple(pbc.tolist()))


def as_systems(frames) -> list[System]:
    """Validate and convert one ``ase.Atoms`` or a sequence of them (:class:`System`
    objects, validated already, pass through unchanged: callers that validate structures
    one by one convert each only once).

    :raises TypeError: for objects that are not ``ase.Atoms``
    :raises ValueError: for an empty list, empty structures, non-finite positions,
        singular cells (the periodic lattice vectors of slabs and wires), or coincident atoms
        (closer than :data:`COINCIDENT_DISTANCE`, periodic images included); for a sequence the
        message starts with ``frame i:`` (0-based)
    """
    if isinstance(frames, System):  # validated already
        return [frames]
    if hasattr(frames, "get_positions"):  # one structure: its errors need no index
        return [_convert(frames)]
    if not isinstance(frames, Sequence) and not hasattr(frames, "__iter__"):
        raise TypeError(f"frames must be an ase.Atoms or a sequence of them, got {type(frames).__name__}")
    systems = []
    for i, frame in enumerate(frames):
        try:
            systems.append(frame if isinstance(frame, System) else _convert(frame))
        except (TypeError, ValueError) as error:  # which structure of the sequence
            raise type(error)(f"frame {i}: {error}") from None
    if not systems:
        raise ValueError("frames is empty: give at least one structure")
    return systems


def atom_owners(systems) -> tuple[np.ndarray, np.ndarray]:
    """For the atoms of ``systems`` taken one system after the other: the index of each
    atom's system and its index within that system."""
    counts = np.array([system.n_atoms for system in systems])
    owner = np.repeat(np.arange(len(systems)), counts)
    return owner, np.arange(owner.size) - (np.cumsum(counts) - counts)[owner]
