"""Turn user structures (``ase.Atoms``) into validated arrays, once, at the entry point.

Everything downstream assumes a :class:`System`: finite positions, non-singular periodic
lattice vectors, positions wrapped into the cell along the periodic directions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

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
        """Cell volume Ω in Å³ (of periodic cells and boxes): |a · (b × c)| (in Python floats, ~5× faster
        than a LAPACK determinant for one cell; systems are made and copied per structure)."""
        (a1, a2, a3), (b1, b2, b3), (c1, c2, c3) = self.cell.tolist()
        return abs(a1 * (b2 * c3 - b3 * c2) - a2 * (b1 * c3 - b3 * c1) + a3 * (b1 * c2 - b2 * c1))


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
    :param roundoff_gain: set with ``k_cutoff``: the model's growth of the k-sum's round-off in
        this structure against a featureless density (about 1 there, 10⁴ and more for a perfect
        crystal at large σ; ``None``: not modelled)
    """

    positions: np.ndarray
    numbers: np.ndarray
    cell: np.ndarray
    periodic: bool
    pbc: tuple[bool, bool, bool] | None = None
    k_cutoff: float | None = None
    roundoff_gain: float | None = None

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


def coincident_atoms(system: System) -> tuple[int, int] | None:
    """The first pair of atoms of a :class:`System` closer than
    :data:`COINCIDENT_DISTANCE` (modulo the periodic lattice, if any), or ``None``."""
    if system.n_atoms < 2:
        return None
    if system.n_atoms <= _ALL_PAIRS_ATOMS and system.periodic:  # every pair at once: faster than a tree
        fractional = system.positions @ np.linalg.inv(system.cell)
        return _first_coincident_pairs([fractional], system.cell[None])[0]
    if system.n_atoms <= _ALL_PAIRS_ATOMS:
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


def _first_coincident_pairs(fractional, cells) -> list:
    """:func:`coincident_atoms` of bulk cells of at most :data:`_ALL_PAIRS_ATOMS` atoms, all
    pairs of all cells at once (nearest images; ``fractional``: each cell's fractional
    coordinates, ``cells``: ``(n, 3, 3)``): for each cell its first pair, or ``None``."""
    found = [None] * len(fractional)
    counts = np.array([len(f) for f in fractional])
    bound = COINCIDENT_DISTANCE * np.sqrt((np.linalg.inv(cells) ** 2).sum(axis=1)).max(initial=0.0)
    pair_counts = counts * (counts - 1) // 2
    start = 0
    while start < len(fractional):  # cells with up to ~10⁶ pairs at a time
        stop = start + max(1, int(np.searchsorted(np.cumsum(pair_counts[start:]), 10**6, side="right")))
        offsets = np.concatenate([[0], np.cumsum(counts[start:stop])])
        both = [(_pairs(n), o) for n, o in zip(counts[start:stop], offsets[:-1], strict=True)]
        first = np.concatenate([pairs[0] + o for pairs, o in both])
        second = np.concatenate([pairs[1] + o for pairs, o in both])
        owner = np.repeat(np.arange(start, stop), pair_counts[start:stop])
        coordinates = np.concatenate(fractional[start:stop])
        delta = coordinates[second] - coordinates[first]
        delta -= np.round(delta)
        # candidates: a separation d has fractional components of at most d × |column of B⁻¹|
        close = np.flatnonzero((np.abs(delta) <= bound).all(axis=1))
        separation = _times(delta[close], cells[owner[close]])  # Cartesian, nearest image
        close = close[(separation * separation).sum(axis=1) <= COINCIDENT_DISTANCE**2]
        for i in np.unique(owner[close]):  # pairs (i < j) in order: the first is the smallest
            mine = close[owner[close] == i]
            order = np.lexsort((second[mine], first[mine]))[0]
            found[i] = int(first[mine][order] - offsets[i - start]), int(second[mine][order] - offsets[i - start])
        start = stop
    return found


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


class _Bulk(NamedTuple):
    """The arrays of a bulk frame, read and checked but for its cell (:func:`_bulk_systems`)."""

    positions: np.ndarray
    numbers: np.ndarray
    cell: np.ndarray


def _arrays(frame) -> System | _Bulk:
    """The arrays of ``frame``, checked (everything but coincident atoms) and wrapped; bulk
    frames are left to :func:`_bulk_systems`."""
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
        return _Bulk(positions, numbers, cell)
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
        message starts with ``frame i:`` (0-based) of the first invalid frame
    """
    if isinstance(frames, System):  # validated already
        return [frames]
    single = hasattr(frames, "get_positions")  # one structure: its errors need no index
    if not single and not isinstance(frames, Sequence) and not hasattr(frames, "__iter__"):
        raise TypeError(f"frames must be an ase.Atoms or a sequence of them, got {type(frames).__name__}")
    items, converted, failure = [], [], None  # converted: the non-bulk frames read here
    for i, frame in enumerate([frames] if single else frames):
        try:
            items.append(frame if isinstance(frame, System) else _arrays(frame))
        except (TypeError, ValueError) as error:
            failure = (i, error)  # the frames before it may hold an earlier error
            break
        if not isinstance(frame, System) and isinstance(items[-1], System):
            converted.append(i)
    if not items and failure is None:
        raise ValueError("frames is empty: give at least one structure")
    systems, invalid = _bulk_systems(items)
    for i in converted:  # slabs, wires and free space: coincident atoms one structure at a time
        if invalid is not None and i >= invalid[0]:
            break
        pair = coincident_atoms(systems[i])
        if pair is not None:
            invalid = (i, _coincident_error(systems[i], pair))
    failure = min([f for f in (failure, invalid) if f is not None], key=lambda f: f[0], default=None)
    if failure is not None:
        i, error = failure
        raise type(error)(str(error) if single else f"frame {i}: {error}") from None
    return systems


def _bulk_systems(items) -> tuple[list, tuple | None]:
    """The :class:`System` of each item (bulk frames' :class:`_Bulk`: cells checked, positions
    wrapped, coincident atoms looked for, all frames at once), and the first invalid bulk
    frame, ``(index, error)``, or ``None`` (the items from it on are left as they are)."""
    systems, invalid = list(items), None
    bulk = [i for i, item in enumerate(items) if isinstance(item, _Bulk)]
    if not bulk:
        return systems, None
    cells = np.stack([items[i].cell for i in bulk])
    lengths = np.sqrt((cells * cells).sum(axis=2))
    volumes = np.abs(np.linalg.det(cells))
    singular = np.flatnonzero((lengths.min(axis=1) == 0) | (volumes <= _SINGULAR_CELL_RATIO * lengths.prod(axis=1)))
    if singular.size:
        j = int(singular[0])
        invalid = (
            bulk[j],
            ValueError(
                f"periodic structure needs a non-singular cell, got lattice vectors "
                f"{cells[j].tolist()} (volume {volumes[j]:.3g} Å³)"
            ),
        )
        bulk, cells = bulk[:j], cells[:j]
    if not bulk:
        return systems, invalid
    inverses = np.linalg.inv(cells)
    counts = np.array([items[i].numbers.size for i in bulk])
    owner = np.repeat(np.arange(len(bulk)), counts)
    positions = np.concatenate([items[i].positions for i in bulk])
    # term by term (the same numbers whatever else is converted with a frame)
    fractional = _times(positions, inverses[owner])
    fractional -= np.floor(fractional)
    wrapped = np.split(_times(fractional, cells[owner]), np.cumsum(counts)[:-1])
    for j, i in enumerate(bulk):
        systems[i] = System(wrapped[j], items[i].numbers, items[i].cell, True)
    small = [j for j in range(len(bulk)) if counts[j] <= _ALL_PAIRS_ATOMS]
    parts = np.split(fractional, np.cumsum(counts)[:-1])
    pairs = dict(zip(small, _first_coincident_pairs([parts[j] for j in small], cells[small]), strict=True))
    for j, i in enumerate(bulk):
        pair = pairs[j] if j in pairs else coincident_atoms(systems[i])
        if pair is not None:
            return systems, (i, _coincident_error(systems[i], pair))
    return systems, invalid


def _times(rows: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """``rows[n] @ matrices[n]`` of ``(n, 3)`` rows and ``(n, 3, 3)`` matrices, term by term."""
    return rows[:, 0, None] * matrices[:, 0] + rows[:, 1, None] * matrices[:, 1] + rows[:, 2, None] * matrices[:, 2]


def _coincident_error(system: System, pair) -> ValueError:
    return ValueError(
        f"atoms {pair[0]} and {pair[1]} are at the same position "
        f"(closer than {COINCIDENT_DISTANCE:g} Å{', periodic images included' if not system.free else ''})"
    )


def atom_owners(systems) -> tuple[np.ndarray, np.ndarray]:
    """For the atoms of ``systems`` taken one system after the other: the index of each
    atom's system and its index within that system."""
    return segment_slots(np.array([system.n_atoms for system in systems], dtype=np.int64))


def segment_slots(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For consecutive segments of ``counts`` items each: the segment of every item and its
    index within that segment (both ``(counts.sum(),)``)."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.arange(owner.size) - (np.cumsum(counts) - counts)[owner]
