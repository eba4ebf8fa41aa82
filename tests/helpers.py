"""Structures shared by the tests: ionic crystals with known Madelung constants, a water
molecule in a box, a rattled triclinic cell; and an independent point-charge Ewald sum
that checks the tabulated Madelung constants (see ``test_periodic.py``).

Madelung convention: the electrostatic potential (bare 1/r, no prefactor) created at ion
i by all the other ions of the crystal (and their images) is φ_i = −M q_i / d_nn, with
q = ±1 and d_nn the nearest-neighbour (cation–anion) distance.
"""

from __future__ import annotations

import ase
import ase.build
import numpy as np
from scipy import special as sp

from gplode.lib.kvectors import SHELL_TOLERANCE

__all__ = [
    "CRYSTALS",
    "CATION",
    "ANION",
    "define_crystal",
    "MADELUNG",
    "ewald_site_potentials",
    "lattice_translations",
    "rattled_triclinic",
    "water",
    "water_box",
]

#: atomic numbers used for the +1 and −1 ions of the binary crystals
CATION, ANION = 11, 17

#: Madelung constants referred to the nearest-neighbour distance. NaCl, CsCl and
#: zincblende: the standard values (e.g. Glasser & Zucker, J. Phys. C 13 (1980); Sakamoto,
#: J. Chem. Phys. 28 (1958)); ideal wurtzite (c/a = √(8/3), u = 3/8): 1.64132162737 in the
#: literature, written here with the digits of :func:`ewald_site_potentials` (converged to
#: 1e-15: unchanged between truncations erfc(6) and erfc(8)). test_periodic checks all four
#: against that independent Ewald sum.
MADELUNG = {
    "NaCl": 1.74756459463318,
    "CsCl": 1.76267477307099,
    "zincblende": 1.63805505338879,
    "wurtzite": 1.64132162737195,
}
CRYSTALS = tuple(MADELUNG)


def define_crystal(name: str, nearest_neighbor: float = 2.5):
    """A binary AB crystal in a small (primitive) cell.

    :param name: ``"NaCl"`` (rocksalt, 2 atoms), ``"CsCl"`` (2 atoms), ``"zincblende"``
        (2 atoms) or ``"wurtzite"`` (ideal, 4 atoms)
    :param nearest_neighbor: cation–anion distance d_nn in Å
    :return: ``(atoms, charges, d_nn, madelung)``: a periodic ``ase.Atoms`` with cations
        ``CATION`` and anions ``ANION``, the charges (+1/−1) per atom, d_nn, and the
        Madelung constant M (φ_i = −M q_i / d_nn)
    """
    d = float(nearest_neighbor)
    if name == "NaCl":
        a = 2.0 * d
        cell = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
        positions = np.array([[0.0, 0.0, 0.0], [0.5 * a, 0.0, 0.0]])
        numbers = [CATION, ANION]
    elif name == "CsCl":
        a = 2.0 * d / np.sqrt(3.0)
        cell = a * np.eye(3)
        positions = np.array([[0.0, 0.0, 0.0], [0.5 * a, 0.5 * a, 0.5 * a]])
        numbers = [CATION, ANION]
    elif name == "zincblende":
        a = 4.0 * d / np.sqrt(3.0)
        cell = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
        positions = np.array([[0.0, 0.0, 0.0], [0.25 * a, 0.25 * a, 0.25 * a]])
        numbers = [CATION, ANION]
    elif name == "wurtzite":
        u = 3.0 / 8.0
        c = d / u
        a = c / np.sqrt(8.0 / 3.0)
        cell = np.array([[a, 0.0, 0.0], [-0.5 * a, 0.5 * np.sqrt(3.0) * a, 0.0], [0.0, 0.0, c]])
        scaled = np.array([[1 / 3, 2 / 3, 0.0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]])
        positions = scaled @ cell
        numbers = [CATION, CATION, ANION, ANION]
    else:
        raise ValueError(f"unknown crystal {name!r}; known: {CRYSTALS}")
    atoms = ase.Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True)
    charges = np.where(atoms.numbers == CATION, 1.0, -1.0)
    # sanity of the geometry: the shortest cation–anion distance is d_nn
    assert abs(_shortest_unlike_distance(atoms) - d) < 1e-12 * d
    return atoms, charges, d, MADELUNG[name]


def lattice_translations(cell: np.ndarray, radius: float) -> np.ndarray:
    """Lattice vectors n·cell (rows of ``cell`` in Å) covering the ball of ``radius`` plus a
    cell diameter, so that r_j + T − r_i spans the ball for any atoms i, j of the cell."""
    # |n_i| ≤ (radius + diameter) |b_i| / 2π, b_i the reciprocal vectors
    reach = radius + np.sum(np.linalg.norm(cell, axis=1))
    bounds = np.ceil(reach * np.linalg.norm(np.linalg.inv(cell).T, axis=1)).astype(int)
    axes = [np.arange(-b, b + 1) for b in bounds]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid @ cell


def _shortest_unlike_distance(atoms) -> float:
    cell, pos = atoms.cell[:], atoms.positions
    shifts = lattice_translations(cell, 0.0)
    best = np.inf
    for i in range(len(atoms)):
        for j in range(len(atoms)):
            if atoms.numbers[i] != atoms.numbers[j]:
                d = np.linalg.norm(pos[j] + shifts - pos[i], axis=1)
                best = min(best, d.min())
    return best


def ewald_site_potentials(atoms, charges, tolerance_exponent: float = 7.0) -> np.ndarray:
    r"""Electrostatic potential (bare 1/r) at each ion due to all others, by a plain Ewald sum.

    .. math::

        \phi_i = \sum_{j,T}{}' q_j \frac{\operatorname{erfc}(\alpha r)}{r}
        + \frac{4\pi}{\Omega}\sum_{k\ne0}\frac{e^{-k^2/4\alpha^2}}{k^2}
          \sum_j q_j\cos\big(k\cdot(r_i-r_j)\big) - \frac{2\alpha}{\sqrt\pi}q_i
          - \frac{\pi Q}{\Omega\alpha^2}

    A charged cell (Q = Σ q_j ≠ 0) comes with a uniform neutralising background, and the
    potential is the one whose cell average vanishes (the last term). Independent of gplode
    (point charges, its own lattice sums); both truncations are at ``erfc(x)``/``e^{-x²}``
    with x = ``tolerance_exponent``.
    """
    charges = np.asarray(charges, dtype=float)
    cell = np.array(atoms.cell[:], dtype=float)
    pos = atoms.positions
    volume = abs(np.linalg.det(cell))
    alpha = np.sqrt(np.pi) / volume ** (1.0 / 3.0)
    x = tolerance_exponent
    r_cut, k_cut = x / alpha, 2.0 * x * alpha
    shifts = lattice_translations(cell, r_cut)
    recip = 2.0 * np.pi * np.linalg.inv(cell).T
    kvec = lattice_translations(recip, k_cut)
    k2 = np.einsum("ij,ij->i", kvec, kvec)
    kvec, k2 = kvec[(k2 > 0) & (k2 < k_cut**2)], k2[(k2 > 0) & (k2 < k_cut**2)]
    phi = np.zeros(len(atoms))
    for i in range(len(atoms)):
        for j in range(len(atoms)):
            d = np.linalg.norm(pos[j] + shifts - pos[i], axis=1)
            d = d[(d > 1e-12) & (d < r_cut)]
            phi[i] += charges[j] * np.sum(sp.erfc(alpha * d) / d)
        phase = np.cos((pos[i] - pos) @ kvec.T)  # (n_atoms, n_k)
        phi[i] += 4.0 * np.pi / volume * np.sum(np.exp(-k2 / (4 * alpha**2)) / k2 * (charges @ phase))
        phi[i] -= 2.0 * alpha / np.sqrt(np.pi) * charges[i]
    return phi - np.pi * charges.sum() / (volume * alpha**2)


def water(center=(0.0, 0.0, 0.0)):
    """A free-space water molecule (ase's geometry: O–H 0.97 Å) centred near ``center``."""
    mol = ase.build.molecule("H2O")
    mol.positions += np.asarray(center, dtype=float) - mol.get_center_of_mass()
    mol.pbc = False
    return mol


def water_box(edge: float):
    """The water molecule of :func:`water` in a periodic cubic box of edge ``edge`` (Å).

    The molecule keeps its free-space coordinates (centred at the box centre), so the
    per-atom features of :func:`water` and of this box are directly comparable.
    """
    mol = water(center=(0.5 * edge,) * 3)
    box = ase.Atoms(numbers=mol.numbers, positions=mol.positions, cell=edge * np.eye(3), pbc=True)
    return box, mol


def rattled_triclinic(seed: int = 7, n_atoms: int = 5):
    """A small triclinic cell with three species (Z = 1, 8, 11) at random positions.

    Atoms are kept at least 1.1 Å apart (with images) so the structure is not degenerate.
    """
    rng = np.random.default_rng(seed)
    cell = np.array([[4.6, 0.3, -0.2], [0.9, 4.3, 0.4], [-0.5, 0.7, 5.0]])
    numbers = ([1, 8, 11] * n_atoms)[:n_atoms]
    shifts = lattice_translations(cell, 0.0)
    positions = []
    while len(positions) < n_atoms:
        trial = rng.uniform(size=3) @ cell
        if all(np.min(np.linalg.norm(p + shifts - trial, axis=1)) > 1.1 for p in positions):
            positions.append(trial)
    return ase.Atoms(numbers=numbers, positions=np.array(positions), cell=cell, pbc=True)


def half_sphere_kvectors(cell: np.ndarray, k_cutoff: float) -> np.ndarray:
    """All reciprocal-lattice vectors with ``0 < |k| < k_cutoff``, one of each ±k pair
    (first non-zero integer coordinate positive), enumerated independently of gplode."""
    recip = 2.0 * np.pi * np.linalg.inv(cell).T
    bounds = np.floor(k_cutoff * np.linalg.norm(cell, axis=1) / (2 * np.pi)).astype(int)
    axes = [np.arange(0, bounds[0] + 1), np.arange(-bounds[1], bounds[1] + 1), np.arange(-bounds[2], bounds[2] + 1)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    first = np.where(grid[:, 0] != 0, grid[:, 0], np.where(grid[:, 1] != 0, grid[:, 1], grid[:, 2]))
    k = grid[first > 0] @ recip
    return k[np.einsum("ij,ij->i", k, k) < k_cutoff**2 * (1 - SHELL_TOLERANCE)]  # shells on the sphere: dropped
