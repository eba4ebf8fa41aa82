r"""Slabs (two periodic directions) and wires (one): the direct k-sum of a box with the
kernel truncated in the non-periodic directions (:mod:`gplode.truncated`, DESIGN.md §4).

.. math::

    c^{(i)}_{anlm} = \frac{4\pi}{\Omega}\sum_{0<|k|<k_c}\hat v^D_p(k_\parallel, k_\perp)\,
    \tilde I_{nl}(k)\,Y_{lm}(\hat k)\,\Re\Big[i^l e^{ik\cdot r_i}\rho_a(k)^*\Big]
    + \delta_{l0}\frac{4\pi}{\Omega}N_a\hat v^D(0)\frac{\tilde I_{n0}(0)}{\sqrt{4\pi}}
    - \delta_{l0}\delta_{aa_i}(1-w_c)c^{\mathrm{center}}_n

with Ω the box volume. The k-vectors are those of the box (its two or one periodic lattice
vectors and a box vector or two across the vacuum, any triclinic shape); the sum is the one
of :func:`gplode.methods.direct.kspace_sum`, whose kernel (a function of |k| there) is replaced
by :math:`\hat v^D` of the k-vectors. The features do not depend on the box as long as it obeys
the box rule (:func:`required_radius`): the slab's height is at least 2(t + r_b + δ), t the
thickness (spread of the atoms along the normal), r_b the reach of the radial basis
(:func:`basis_reach`) and δ the smearing margin (:func:`gplode.truncated.smearing_margin`); a
wire's shortest transverse box vector at least 2(D + r_b + δ), D the largest distance between
atoms across the axis.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from ..lib.kvectors import default_k_cutoff
from ..systems import CellGeometry
from ..truncated import TruncatedPowerLaw, smearing_margin
from .corrections import center_corrections, species_index
from .direct import DirectKSum, _PaddedBatch, kspace_sum, pair_gradients

__all__ = [
    "STRAIN_LEAK",
    "MixedSystem",
    "TruncatedKSum",
    "basis_reach",
    "mixed_system",
    "periodic_projector",
    "periodic_strain",
    "required_radius",
    "truncated_coefficients",
]


@dataclasses.dataclass(frozen=True)
class MixedSystem(CellGeometry):
    """A slab or a wire in its box, as plain arrays (the interface of
    :class:`gplode.systems.System` the direct sum reads: positions, numbers, cell, volume).

    :param positions: Cartesian positions, Å, ``(n_atoms, 3)`` (not wrapped: only differences matter)
    :param numbers: atomic numbers ``(n_atoms,)``
    :param cell: the box, lattice vectors as rows (Å): the periodic ones as given, the others
        across the vacuum
    :param pbc: which rows of ``cell`` are periodic (two: slab, one: wire)
    :param radius: R, Å: the cut of the kernel (half the box height or half the shortest
        transverse box vector)
    :param direction: unit normal of the slab or unit axis of the wire
    """

    positions: np.ndarray
    numbers: np.ndarray
    cell: np.ndarray
    pbc: tuple
    radius: float
    direction: np.ndarray
    periodic = True  # computed by a k-sum (for code that asks System.periodic)
    k_cutoff = None  # the method's k-sphere (no per-structure radius yet)

    @property
    def geometry(self) -> str:
        """``"slab"`` or ``"wire"``."""
        return "slab" if sum(self.pbc) == 2 else "wire"

    @property
    def n_atoms(self) -> int:
        return self.numbers.shape[0]


def basis_reach(basis, accuracy: float) -> float:
    r"""Radius r_b (Å) beyond which the radial basis carries less than ``accuracy`` of its
    weight: r₀ for the monomial basis, else the smallest r with
    :math:`\mathrm{tail\_mass}(r) \le \mathrm{accuracy}\cdot\mathrm{tail\_mass}(0)` (bisection)."""
    if basis.tail_mass(basis.support_radius) == 0.0:
        return float(basis.support_radius)
    total = basis.tail_mass(0.0)
    lo, hi = 0.0, float(basis.support_radius)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if basis.tail_mass(mid) > accuracy * total else (lo, mid)
    return hi


def required_radius(positions, pbc, cell, reach: float, margin: float) -> tuple[float, np.ndarray]:
    """The smallest kernel cut R (Å) of a slab or wire, and its normal or axis: thickness
    (slab) or transverse diameter (wire) plus ``reach`` plus ``margin``."""
    periodic = [i for i in range(3) if pbc[i]]
    if len(periodic) == 2:
        normal = np.cross(cell[periodic[0]], cell[periodic[1]])
        normal /= np.linalg.norm(normal)
        heights = positions @ normal
        return float(np.ptp(heights) + reach + margin), normal
    axis = cell[periodic[0]] / np.linalg.norm(cell[periodic[0]])
    across = positions - np.outer(positions @ axis, axis)
    diameter = 0.0
    for start in range(0, len(across), 1024):  # largest pair distance, O(N²) in blocks
        block = across[start : start + 1024]
        diameter = max(diameter, float(np.sqrt(((block[:, None, :] - across[None, :, :]) ** 2).sum(-1).max())))
    return diameter + reach + margin, axis


def _shortest_vector(u: np.ndarray, v: np.ndarray) -> float:
    """Length of the shortest non-zero vector of the 2D lattice spanned by ``u, v`` (Lagrange–Gauss)."""
    if u @ u > v @ v:
        u, v = v, u
    while True:
        mu = np.round((u @ v) / (u @ u))
        v = v - mu * u
        if v @ v >= u @ u:
            return float(np.sqrt(u @ u))
        u, v = v, u


def mixed_system(system, reach: float, margin: float, box: str = "auto") -> MixedSystem:
    """The :class:`MixedSystem` of a slab or a wire (:class:`gplode.systems.System` with pbc two
    or one True, validated: non-singular periodic vectors, no coincident atoms).

    :param reach: radial basis reach r_b, Å (:func:`basis_reach`)
    :param margin: smearing margin δ, Å (:func:`gplode.truncated.smearing_margin`)
    :param box: ``"auto"``: the smallest box obeying the rule, orthogonal to the periodic
        vectors (the non-periodic cell vectors are ignored: they may be zero); ``"cell"``: the
        structure's own cell (any triclinic shape), checked against the rule
    :raises ValueError: not a slab or a wire, a ``"cell"`` box below the rule
    """
    if not system.mixed:
        raise ValueError("slabs and wires need one or two periodic directions")
    positions, numbers, cell, pbc = system.positions, system.numbers, system.cell, system.pbc
    periodic = [i for i in range(3) if pbc[i]]
    free = [i for i in range(3) if not pbc[i]]
    radius, direction = required_radius(positions, pbc, cell, reach, margin)
    if box == "auto":
        box_cell = cell.copy()
        if len(periodic) == 2:
            box_cell[free[0]] = 2.0 * radius * direction
        else:
            first = np.cross(direction, [1.0, 0.0, 0.0] if abs(direction[0]) < 0.9 else [0.0, 1.0, 0.0])
            first /= np.linalg.norm(first)
            box_cell[free[0]] = 2.0 * radius * first
            box_cell[free[1]] = 2.0 * radius * np.cross(direction, first)
        if np.linalg.det(box_cell) < 0:  # keep a right-handed box (the sum does not care)
            box_cell[free[0]] *= -1.0
        return MixedSystem(positions, numbers, box_cell, pbc, radius, direction)
    if box != "cell":
        raise ValueError(f"box must be 'auto' or 'cell', got {box!r}")
    if len(periodic) == 2:
        available = 0.5 * abs(cell[free[0]] @ direction)
    else:
        across = cell[free] - np.outer(cell[free] @ direction, direction)
        available = 0.5 * _shortest_vector(across[0], across[1])
    if not available >= radius:
        what = "height" if len(periodic) == 2 else "shortest transverse vector"
        raise ValueError(
            f"the box's {what} {2 * available:.4g} Å is below the {2 * radius:.4g} Å the kernel truncation needs "
            "(2 × (thickness or diameter + basis reach + smearing margin)); add vacuum or use box='auto'"
        )
    return MixedSystem(positions, numbers, cell, pbc, available, direction)


class _TruncatedBatch(_PaddedBatch):
    r"""A :class:`gplode.methods.direct._PaddedBatch` whose kernel is :math:`\hat v^D` of the
    k-vectors (not of |k|): built with a placeholder kernel, then replaced per structure.

    With ``gradients``, also :math:`\partial_\parallel\hat v^D`
    (:meth:`gplode.truncated.TruncatedPowerLaw.kspace_with_par_derivative`) and the unit vector
    :math:`\hat e_\parallel = Pk/|Pk|` of each k-vector's periodic part (P:
    :func:`periodic_projector`; 0 on the G_∥ = 0 or q = 0 rows), and the strain kernels
    :math:`k_b\partial_{k_a}G` with the anisotropic kernel's gradient: the parent's
    :math:`\hat v^D\,k_b\partial_{k_a}(\tilde I_{nl}Y_{lm})` (its ``dvhat`` set to 0) plus
    :math:`\partial_\parallel\hat v^D\,(\hat e_\parallel)_a k_b\,\tilde I_{nl}Y_{lm}`. The
    :math:`\partial_\perp\hat v^D\,\hat e_\perp` part is left out: it is orthogonal to the
    periodic directions, and only the projection :math:`P(\cdot)P` of these kernels is used
    (:class:`TruncatedKSum`).
    """

    def __init__(self, systems, species, kernels, k_cutoff, max_angular, device, complex_, gradients=False):
        isotropic = (lambda k, values, xp: 0.0 * k) if gradients else None  # v̂^D is not a function of |k|
        super().__init__(systems, species, lambda k: 0.0 * k, k_cutoff, max_angular, device, complex_, isotropic)
        xp, host = self.xp, device.to_host
        structure, k = host(self.points.structure), host(self.points.k)
        frequencies = host(self.points.frequencies)
        vhat = np.zeros(structure.size)
        dpar, direction = np.zeros(structure.size), np.zeros((structure.size, 3))
        for s, system in enumerate(systems):
            sel = structure == s
            if not sel.any():
                continue
            kk, periodic = k[sel], [i for i in range(3) if system.pbc[i]]
            along = kk @ system.direction
            across = kk - np.outer(along, system.direction)
            rest = np.linalg.norm(across, axis=1)
            row = np.all(frequencies[sel][:, periodic] == 0, axis=1)  # G_∥ = 0 (slab), q = 0 (wire)
            if system.geometry == "slab":
                par, perp = np.where(row, 0.0, rest), along
            else:
                par, perp = np.where(row, 0.0, np.abs(along)), rest
            if not gradients:
                vhat[sel] = kernels(system).kspace(par, perp)
                continue
            vhat[sel], dpar[sel] = kernels(system).kspace_with_par_derivative(par, perp)
            if system.geometry == "slab":
                unit = across / np.where(row, 1.0, rest)[:, None]
            else:
                unit = np.sign(along)[:, None] * system.direction[None, :]
            direction[sel] = np.where(row[:, None], 0.0, unit)
        self.vhat = xp.asarray(vhat)
        if gradients:
            self.dpar, self.par_direction = xp.asarray(dpar), xp.asarray(direction)

    def _anisotropic_parts(self, take, radial, l: int, ilm):
        r""":math:`w\,\partial_\parallel\hat v^D\tilde I_{nl}` ``(n_take, n_radial)``, :math:`\hat e_\parallel`,
        k and :math:`Y_{lm}` of the k-points ``take``."""
        lm = slice(l * l, (l + 1) ** 2)
        factor = (self.weight[take] * self.dpar[take])[:, None] * ilm
        return factor, self.par_direction[take], self.points.k[take], self.ylm[take, lm]

    def strain_kernel(self, take, radial, dradial, l: int, ilm=None):
        ilm = self.radial_of(take, radial, l) if ilm is None else ilm
        out = super().strain_kernel(take, radial, dradial, l, ilm)
        factor, unit, k, ylm = self._anisotropic_parts(take, radial, l, ilm)
        pair = unit[:, :, None] * k[:, None, :]  # (n_take, a, b)
        return out + pair[:, :, :, None, None] * ylm[:, None, None, :, None] * factor[:, None, None, None, :]

    def contracted_strain_kernel(self, take, radial, dradial, l: int, weights, ilm=None):
        ilm = self.radial_of(take, radial, l) if ilm is None else ilm
        out = super().contracted_strain_kernel(take, radial, dradial, l, weights, ilm)
        factor, unit, k, ylm = self._anisotropic_parts(take, radial, l, ilm)
        contracted = self.xp.einsum("km,kmn,kn->k", ylm, weights, factor)
        return out + contracted[:, None, None] * unit[:, :, None] * k[:, None, :]

    def strain_rate_kernel(self, take, radial, dradial, l: int, rate, ilm=None):
        ilm = self.radial_of(take, radial, l) if ilm is None else ilm
        out = super().strain_rate_kernel(take, radial, dradial, l, rate, ilm)
        factor, unit, k, ylm = self._anisotropic_parts(take, radial, l, ilm)
        along = self.xp.einsum("ka,kab,kb->k", unit, rate, k)
        return out + along[:, None, None] * ylm[:, :, None] * factor[:, None, :]


#: a strain tangent of a slab or a wire may have this much of its norm outside the periodic
#: directions (the round-off of a plane or an axis given in rotated coordinates)
STRAIN_LEAK = 1e-10


def periodic_projector(cell, pbc) -> np.ndarray:
    r"""The projector P onto the periodic directions of a slab, :math:`1 - \hat n\hat n^T`
    (n̂ the unit normal of its two periodic lattice vectors), or of a wire,
    :math:`\hat a\hat a^T` (â its unit axis), ``(3, 3)``.

    :param cell: lattice vectors as rows, Å (only the periodic ones are read)
    :param pbc: which rows are periodic (two or one True)
    """
    periodic = np.asarray(cell, dtype=float)[[i for i in range(3) if pbc[i]]]
    if len(periodic) == 2:
        normal = np.cross(periodic[0], periodic[1])
        normal /= np.linalg.norm(normal)
        return np.eye(3) - np.outer(normal, normal)
    axis = periodic[0] / np.linalg.norm(periodic[0])
    return np.outer(axis, axis)


def periodic_strain(cell, pbc, strain, prefix: str = "") -> np.ndarray:
    r"""A strain tangent ``strain`` ``(3, 3)`` of a slab or a wire, projected onto its periodic
    directions, :math:`P\dot\varepsilon P` (:func:`periodic_projector`); ``ValueError`` (message
    starting with ``prefix``) if more than :data:`STRAIN_LEAK` of its norm lies outside them.

    Supported: for a slab the in-plane strains, :math:`\dot\varepsilon = P\dot\varepsilon P` with
    :math:`P = 1 - \hat n\hat n^T` (four components, xx, xy, yx, yy for a slab in the xy
    plane; the antisymmetric one is the in-plane rotation); for a wire the axial strain
    :math:`\dot\varepsilon = e\,\hat a\hat a^T` (one component, zz for a wire along z).
    """
    projector = periodic_projector(cell, pbc)
    strain = np.asarray(strain, dtype=float)
    projected = projector @ strain @ projector
    norm, leak = np.linalg.norm(strain), np.linalg.norm(strain - projected)
    if leak > STRAIN_LEAK * norm:
        if sum(bool(x) for x in pbc) == 2:
            what = "a slab", "in-plane strain PεP, P = 1 − n̂n̂ᵀ (n̂ the normal of its periodic vectors)"
        else:
            what = "a wire", "axial strain ε = e âᵀâ (â its periodic axis)"
        raise ValueError(
            f"{prefix}the strain tangent of {what[0]} has {leak / norm:.2g} of its norm outside the periodic "
            f"directions: only {what[1]} is supported"
        )
    return projected


class TruncatedKSum(DirectKSum):
    r"""The direct k-sum of slabs and wires (:class:`MixedSystem`), with the truncated kernel
    and its G = 0 term; memory, cost and batching models of :class:`DirectKSum` (in the box).

    **Derivatives.** Positions: the features are those of the box sum with the box and the cut
    R held fixed (they do not depend on either, within the box rule), so the position
    derivatives are the direct sum's (DESIGN.md §1) with :math:`\hat v^D` for :math:`\hat v_p`;
    the kernel is not differentiated. Strain, r → r(1+ε), H → H(1+ε), for the strains of the
    periodic directions only (:func:`periodic_strain`): for these the normal n̂ (axis â), the
    height (transverse box) and R are unchanged, k·r is invariant,
    :math:`k\to k(1+\varepsilon)^{-T}` moves only :math:`k_\parallel` and Ω scales by
    :math:`\det(1+\varepsilon)`, so

    .. math::

        \frac{\partial c}{\partial\varepsilon_{ab}} = P_{aa'}\Big[-\delta_{a'b'}(c - c_\mathrm{const})
        - \frac{4\pi}{\Omega}\sum_{k\neq0}k_{b'}\partial_{k_{a'}}G_{nlm}(k)
        \,\Re\big[i^l e^{ik\cdot r_i}\rho_a(k)^*\big]\Big]P_{b'b},\qquad
        \partial_{k_a}G = \partial_{k_a}(\tilde I_{nl}Y_{lm})\,\hat v^D
        + \tilde I_{nl}Y_{lm}\,\partial_\parallel\hat v^D\,(\hat e_\parallel)_a

    (:class:`_TruncatedBatch`; the G = 0 term, :math:`\propto 1/\Omega` at fixed R, is part of c).
    Outside the periodic directions the box sum's strain derivative is not the features' (the
    cut would have to follow a tilted plane or a stretched thickness), so these methods return
    the projection :math:`P(\partial/\partial\varepsilon)P`, zero outside: not a derivative
    there. The other components are not ill-defined (a homogeneous deformation of all space
    maps a slab onto a slab): those along the normal (axis-transverse) rows are
    :math:`\sum_j r_{ja}\,\partial c/\partial r_{jb}` (no lattice vector has such a
    component), the rest follow from rotation covariance; they are not provided here.

    :param device: :class:`gplode.devices.base.Device`
    :param potential: :class:`gplode.potentials.SmearedPowerLaw`
    :param radial: ``(|k|, l, xp) -> Ĩ_nl(|k|)``, ``(n_k, n_radial)``
    :param k_cutoff: k_c, Å⁻¹
    :param dradial: ``(|k|, l, xp) -> dĨ_nl/dk`` for the strain derivatives (None: values and
        position derivatives only)
    """

    name = "truncated"

    def __init__(
        self, device, potential, radial, k_cutoff: float, max_angular: int, n_radial: int, dtype="float64", dradial=None
    ):
        super().__init__(device, None, radial, k_cutoff, max_angular, n_radial, dtype, (None, dradial))
        self.potential = potential

    def values_real(self, system):
        """The floating type of the values: ``dtype`` (slabs and wires have no float32 pass)."""
        return self.real

    @functools.lru_cache(maxsize=64)  # noqa: B019 (one method object per calculator)
    def _kernel(self, geometry: str, radius: float) -> TruncatedPowerLaw:
        return TruncatedPowerLaw(self.potential, geometry, radius)

    def kernel(self, system) -> TruncatedPowerLaw:
        """The truncated kernel of ``system`` (cached by geometry and cut radius)."""
        return self._kernel(system.geometry, system.radius)

    def _batch(self, systems, species, gradients: bool = False):
        if gradients and self._derivatives[1] is None:
            raise ValueError("this TruncatedKSum was built without dradial: no strain derivatives")
        complex_ = np.complex64 if self.real == np.float32 else np.complex128
        return _TruncatedBatch(
            systems, species, self.kernel, self.k_cutoff, self.max_angular, self.device, complex_, gradients
        )

    def zero_terms(self, systems, species) -> np.ndarray:
        r"""The G = 0 terms :math:`\frac{4\pi}{\Omega}N_a\hat v^D(0)\tilde I_{n0}(0)/\sqrt{4\pi}` of
        the l = 0 coefficients of ``systems``' atoms, host ``(n_atoms, n_species, n_radial)``."""
        _, radial, _ = self._callables()
        radial0 = np.asarray(self.device.to_host(radial(self.device.xp.zeros(1), 0)))[0]  # Ĩ_n0(0)
        out = np.zeros((sum(system.n_atoms for system in systems), len(species), radial0.size))
        offset = 0
        for system in systems:
            kind, present = species_index(system.numbers, species)
            counts = np.bincount(kind[present], minlength=len(species)).astype(float)
            term = 4.0 * np.pi / system.volume * self.kernel(system).zero_term() / np.sqrt(4.0 * np.pi)
            out[offset : offset + system.n_atoms] = (term * counts)[None, :, None] * radial0[None, None, :]
            offset += system.n_atoms
        return out

    def compute(self, systems, species, params=None) -> np.ndarray:
        """Coefficients of ``systems`` without the centre term (host, their atoms one after the
        other): the k ≠ 0 sum and the G = 0 term."""
        batch = self._batch(systems, species)
        _, radial, _ = self._callables()
        values = self.device.to_host(
            batch.species_rows(kspace_sum(batch, radial, self.max_angular, self.n_radial, self.real, self._workspace()))
        )
        values[:, :, 0, :] += self.zero_terms(systems, species)
        return values

    @staticmethod
    def _projectors(systems) -> np.ndarray:
        """:func:`periodic_projector` of each system, ``(n_systems, 3, 3)``."""
        return np.stack([periodic_projector(system.cell, system.pbc) for system in systems])

    def vjp(self, systems, species, params, weights):
        r"""Vector–Jacobian product (:func:`gplode.methods.direct.kspace_vjp` with the truncated
        kernel, plus the G = 0 term's :math:`-\delta_{ab}\lambda\cdot c_{G=0}`): host
        ``(positions (n_atoms, 3), strain (n_systems, 3, 3))``, the strain projected on the
        periodic directions, :math:`P(\partial\mathcal L/\partial\varepsilon)P` (class docstring)."""
        forces, strain = super().vjp(systems, species, params, weights)
        lam0 = weights[:, :, 0, :]
        lam0 = lam0 if type(lam0) is np.ndarray else self.device.to_host(lam0)
        per_atom = np.einsum("ian,ian->i", lam0, self.zero_terms(systems, species))
        owner = np.repeat(np.arange(len(systems)), [system.n_atoms for system in systems])
        strain[:, [0, 1, 2], [0, 1, 2]] -= np.bincount(owner, per_atom, len(systems))[:, None]
        projectors = self._projectors(systems)
        return forces, projectors @ strain @ projectors

    def jvp(self, systems, species, params, positions, strain):
        r"""Jacobian–vector product (:meth:`DirectKSum.jvp` with the truncated kernel) along
        the strain tangents projected on the periodic directions, :math:`P\dot\varepsilon P`
        (validate them first: :func:`periodic_strain`); the volume term
        :math:`-\mathrm{tr}(\dot\varepsilon)\,c` is the caller's."""
        projectors = self._projectors(systems)
        strain = projectors @ np.asarray(strain, dtype=float) @ projectors
        return super().jvp(systems, species, params, positions, strain)

    def strain_rows(self, systems, species) -> np.ndarray:
        r"""The k-sum part of :math:`\partial c^{(i)}_{anlm}/\partial\varepsilon_{xy}` (without
        the volume term), projected on the periodic directions (class docstring), host
        ``(n_atoms, n_species, 3, 3, (L+1)**2, n_radial)``."""
        rows = super().strain_rows(systems, species)
        owner = np.repeat(np.arange(len(systems)), [system.n_atoms for system in systems])
        projectors = self._projectors(systems)[owner]
        return np.einsum("ixa,isab...,iby->isxy...", projectors, rows, projectors)

    def pair_gradients(self, system, blocks):
        """:func:`gplode.methods.direct.pair_gradients` of a slab or wire ``system`` with the
        truncated kernel (the G = 0 term does not depend on the positions)."""
        batch = self._batch([system], np.zeros(0, dtype=np.int64))
        _, radial, _ = self._callables()
        L, n_radial = self.max_angular, self.n_radial
        return pair_gradients(system, None, radial, self.k_cutoff, L, n_radial, blocks, self.device, batch=batch)


def truncated_coefficients(
    frames,
    potential,
    basis,
    accuracy: float = 1e-8,
    k_cutoff: float | None = None,
    center_atom_weight: float = 1.0,
    species=None,
    box: str = "auto",
    device=None,
) -> np.ndarray:
    """Features of slabs and wires (``ase.Atoms`` with pbc two or one True), exact radial
    integrals, float64: the reference path, for tests (the calculator's is
    :class:`gplode.methods.pipeline.Pipeline`).

    :param accuracy: sets k_c (:func:`gplode.lib.kvectors.default_k_cutoff`), the smearing
        margin and the GTO basis reach of the box rule
    :param species: neighbour atomic numbers (default: all present, sorted)
    :param box: ``"auto"`` or ``"cell"`` (:func:`mixed_system`)
    :return: ``(n_atoms_total, n_species, (L+1)**2, n_radial)``
    """
    from ..devices import CpuDevice
    from ..systems import as_systems

    reach, margin = basis_reach(basis, accuracy), smearing_margin(potential.smearing, accuracy)
    systems = [mixed_system(system, reach, margin, box) for system in as_systems(frames)]
    if species is None:
        species = np.unique(np.concatenate([s.numbers for s in systems]))
    species = np.asarray(species, dtype=np.int64)
    k_c = default_k_cutoff(potential.smearing, accuracy) if k_cutoff is None else float(k_cutoff)
    method = TruncatedKSum(
        device or CpuDevice(),
        potential,
        lambda k, l, xp: basis.kspace_integral(k, l),
        k_c,
        basis.max_angular,
        basis.n_radial,
    )
    values = np.concatenate([method.compute([system], species) for system in systems])
    numbers = np.concatenate([s.numbers for s in systems])
    values[:, :, 0, :] += center_corrections(numbers, species, potential.center_term(basis), center_atom_weight)
    return values
