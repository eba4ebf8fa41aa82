"""From validated systems to coefficients: the methods of this folder, on one device.

Periodic structures take the direct k-sum (:class:`gplode.methods.direct.DirectKSum`) or
the particle mesh (:class:`gplode.methods.mesh.MeshKSum`), per structure by ``route`` (by
default, whichever the device's cost model finds cheaper); structures of one route (and
mesh) are computed in batches cut to the device's memory, and the analytic k = 0 and
centre terms of :mod:`gplode.methods.corrections` are added in one place. Slabs and wires
take the direct k-sum of a box with the truncated kernel
(:class:`gplode.methods.truncated.TruncatedKSum`, box by its rule), batched the same way.
Free-space structures use the pair sum of :mod:`gplode.methods.pair_sum`, or, when cheaper by
the cost models (or with ``route="mesh"``), the mesh of :class:`gplode.methods.free_mesh.FreeSpaceMesh`.
"""

from __future__ import annotations

import dataclasses
import functools
import threading

import numpy as np

from ..lib.kvectors import default_k_cutoff, half_sphere_count, selected_kpoints, sphere_shape, sphere_shape_for_lengths
from ..lib.splines import (
    K_FLOOR,
    POTENTIAL_TOLERANCE,
    RADIAL_TOLERANCE,
    PotentialSpline,
    RadialIntegralSpline,
    spline_tolerance,
)
from ..systems import segment_slots
from ..truncated import smearing_margin
from .accuracy import (
    ALIASING_SHARE,
    MODEL_VECTORS,
    RADIUS_BOUND,
    SINGLE_PRECISION_ACCURACY,
    DensityAliasing,
    KSpaceWeight,
    modelled,
    sphere_radii,
)
from .corrections import center_corrections, periodic_corrections, species_index
from .direct import K_CHUNK, DirectKSum
from .free_mesh import FreeSpaceMesh, pair_sum_cost
from .jacobians import PositionRows, strain_from_pairs
from .mesh import MeshKSum, MeshParameters
from .pair_sum import (
    PairRadialFunctions,
    free_space_coefficients,
    free_space_jvp,
    free_space_vjp,
    pair_gradients,
)
from .truncated import MixedSystem, TruncatedKSum, basis_reach, mixed_system, periodic_projector, periodic_strain

__all__ = ["GRADIENTS", "VJP_MEMORY_FACTOR", "Pipeline", "format_bytes"]

#: the parameters dense gradients are available for
GRADIENTS = ("positions", "strain")
#: memory of a vector–Jacobian product relative to the values' (derivative stencils, spread
#: and transformed weights, adjoint spectra; measured peak ≈ 1.4× for NaCl 512 on the mesh)
VJP_MEMORY_FACTOR = 2.0
#: bytes of one block of dense pair derivatives (centres × atoms × k-chunk temporaries)
_PAIR_BLOCK_BYTES = 2**28


def format_bytes(n_bytes: float) -> str:
    """``n_bytes`` as GiB, or MiB below 1 GiB."""
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


class Pipeline:
    """Every method a calculator needs, on one device.

    :param hypers: :class:`gplode.hypers.LodeHypers`
    :param potential: :class:`gplode.potentials.SmearedPowerLaw`
    :param basis: :class:`gplode.basis.RadialBasis`
    :param device: :class:`gplode.devices.base.Device`
    :param exact: the reference: the direct k-sum only, with the exact v̂_p and Ĩ_nl (no
        splines), computed in float64 (returned in ``hypers.dtype``), one structure at a time
    """

    def __init__(self, hypers, potential, basis, device, exact: bool = False):
        self.hypers, self.potential, self.basis, self.device, self.exact = hypers, potential, basis, device, exact
        self.center_term = potential.center_term(basis)
        #: radius of the summed k-sphere in Å⁻¹ (explicit ``k_cutoff``, or from ``accuracy`` by
        #: the σ-only formula): bulk structures take their own from the truncation-error model
        #: (:meth:`with_spheres`), slabs, wires and free-space meshes this one
        self.k_cutoff = (
            hypers.k_cutoff if hypers.k_cutoff is not None else default_k_cutoff(hypers.smearing, hypers.accuracy)
        )
        #: the largest radius any structure takes, Å⁻¹ (the splines' range)
        self.k_bound = self.k_cutoff if hypers.k_cutoff is not None else RADIUS_BOUND * self.k_cutoff
        L, n_radial = hypers.max_angular, basis.n_radial
        dvhat = potential.kspace_derivative  # (k, v̂ values, xp): exact from the values given
        if exact:
            radial = lambda k, l, xp: basis.kspace_integral(k, l)  # noqa: E731
            self.direct = DirectKSum(
                device,
                lambda k, xp: potential.kspace(k),
                radial,
                self.k_cutoff,
                L,
                n_radial,
                derivatives=(dvhat, lambda k, l, xp: basis.kspace_integral_derivative(k, l)),
            )
            self.truncated = TruncatedKSum(
                device,
                potential,
                radial,
                self.k_cutoff,
                L,
                n_radial,
                dradial=lambda k, l, xp: basis.kspace_integral_derivative(k, l),
            )
            self.mesh = self.free_mesh = None
        else:
            derivatives = (dvhat, self._dradial)
            # the values in float32 from SINGLE_PRECISION_ACCURACY up (their round-off: 0.03–0.1 × it)
            single = hypers.dtype == "float32" or hypers.accuracy >= SINGLE_PRECISION_ACCURACY
            self.direct = DirectKSum(
                device,
                self._vhat,
                self._radial,
                self.k_cutoff,
                L,
                n_radial,
                hypers.dtype,
                derivatives,
                values_dtype="float32" if single else None,
                single_roundoff=0.5 * hypers.accuracy,
            )
            self.truncated = TruncatedKSum(
                device, potential, self._radial, self.k_cutoff, L, n_radial, hypers.dtype, self._dradial
            )
            self.mesh = MeshKSum(device, self._vhat, self._radial, hypers, self.k_cutoff, n_radial, derivatives)
            self.free_mesh = FreeSpaceMesh(
                device, potential, basis, hypers, self.k_cutoff, self._radial, self.center_term, dradial=self._dradial
            )
        #: the box rule of slabs and wires: radial basis reach r_b and smearing margin δ, Å
        self.reach = basis_reach(basis, hypers.accuracy)
        self.margin = smearing_margin(hypers.smearing, hypers.accuracy)
        self._lock = threading.Lock()
        self._pair_table = None

    # ---- the splines of the fast methods: built once, on first use, over a fixed range
    @functools.cached_property
    def radial_spline(self) -> RadialIntegralSpline:
        """Splined Ĩ_nl on [0, :attr:`k_bound`]."""
        return RadialIntegralSpline(self.basis, self.k_bound, self._tolerance(RADIAL_TOLERANCE))

    @functools.cached_property
    def radial_derivative_spline(self) -> RadialIntegralSpline:
        """Splined dĨ_nl/dk on [0, :attr:`k_bound`] (built when derivatives are first asked for)."""
        return RadialIntegralSpline(self.basis, self.k_bound, self._tolerance(RADIAL_TOLERANCE), derivative=True)

    @functools.cached_property
    def potential_spline(self) -> PotentialSpline:
        """Splined v̂_p on [:data:`gplode.lib.splines.K_FLOOR`, k_c]. Its range does not depend on
        the structures computed, so neither do its values: a structure's features are the
        same whatever the calculator computed before."""
        return PotentialSpline(
            self.potential, min(K_FLOOR, 0.5 * self.k_cutoff), self.k_bound, self._tolerance(POTENTIAL_TOLERANCE)
        )

    def _tolerance(self, floor: float) -> float:
        """The splines' mid-point tolerance (:func:`gplode.lib.splines.spline_tolerance` of ``accuracy``)."""
        return spline_tolerance(self.hypers.accuracy, floor)

    @functools.cached_property
    def kspace_weight(self) -> KSpaceWeight:
        """W(k) of the truncation-error model on [0, :attr:`k_bound`] (exact v̂_p and Ĩ_nl on the
        reference backend, the splines otherwise)."""
        h = self.hypers
        if self.exact:
            return KSpaceWeight(self.potential.kspace, self.basis.kspace_integral, h.max_angular, self.k_bound)
        return KSpaceWeight(self.potential_spline, self.radial_spline, h.max_angular, self.k_bound)

    def pair_table(self, progress=None) -> PairRadialFunctions:
        """The free-space pair functions F_nl(d), tabulated once per calculator, on first use
        (about a second for the GTO basis; ``progress(done, total)`` is told how it goes)."""
        with self._lock:
            if self._pair_table is None:
                self._pair_table = PairRadialFunctions(self.potential, self.basis, progress)
        return self._pair_table

    def _vhat(self, k, xp):
        return self.potential_spline(k, xp, self.device.to_host)

    def _radial(self, k, l, xp):
        return self.radial_spline(k, l, xp)

    def _dradial(self, k, l, xp):
        return self.radial_derivative_spline(k, l, xp)

    # ---- routes and batches
    def box(self, system) -> MixedSystem:
        """The box of a slab or a wire (:func:`gplode.methods.truncated.mixed_system`, ``"auto"``:
        height or transverse size 2(thickness or diameter + :attr:`reach` + :attr:`margin`))."""
        return mixed_system(system, self.reach, self.margin, "auto")

    @staticmethod
    def check_gradients(systems, strain):
        """The strain tangents ``strain`` ``(n_systems, 3, 3)`` (a copy), those of slabs and wires
        projected onto their periodic directions; ``ValueError`` for one with other components
        (:func:`gplode.methods.truncated.periodic_strain`: in-plane strain of slabs, axial of wires)."""
        strain = np.array(strain, dtype=float)
        for i, system in enumerate(systems):
            if system.mixed:
                strain[i] = periodic_strain(system.cell, system.pbc, strain[i], f"frame {i}: ")
        return strain

    def _free_method(self, system, n_species: int, factor: float = 1.0):
        """The box (:class:`gplode.methods.free_mesh.FreeBox`) of a free-space ``system`` that
        takes the mesh, else ``None`` (the pair sum): by ``route`` (``"mesh"``: the mesh,
        ``"direct"``: the pair sum), else the mesh when its cost model is below the pair sum's
        (:func:`gplode.methods.free_mesh.pair_sum_cost`) and it fits in the available memory
        (its memory model scaled by ``factor``)."""
        if self.free_mesh is None or self.hypers.route == "direct":
            return None
        box = self.free_mesh.box(system)
        if self.hypers.route == "mesh":
            return box
        channels = n_species * (self.hypers.max_angular + 1) ** 2 * self.basis.n_radial
        cheaper = self.free_mesh.cost(system, n_species, box) < pair_sum_cost(system.n_atoms, channels)
        if cheaper and self.free_mesh.memory_bytes(system, n_species, box, factor) <= self.device.available_memory():
            return box
        return None

    def method_for(self, system, species, available: int | None = None):
        """``(method, mesh parameters or None)`` of a periodic ``system`` with neighbour
        ``species``: the truncated direct sum for a slab or a wire in its box
        (:class:`MixedSystem`); else by ``route``, else the cheaper by the device's cost model
        (the mesh when the direct sum would not fit in ``available`` bytes; default: the
        device's available memory, queried). The mesh is :meth:`mesh_for`'s."""
        h, n_species = self.hypers, len(species)
        if isinstance(system, MixedSystem):
            return self.truncated, None
        if self.mesh is None:
            return self.direct, None
        if h.route == "direct":
            return self.direct, None
        if h.route == "mesh" or h.mesh_spacing is not None or h.interpolation_order is not None:
            return self.mesh, self.mesh_for(system, species)
        # the direct sum runs over the structure's own neighbour species (its batch's slots),
        # the mesh over all of them
        present = len(set(system.numbers.tolist()).intersection(np.asarray(species).tolist()))
        direct = self.direct.cost(system, max(present, 1))
        # the mesh's own first (a cheap test; the one for the structure's density may cost a
        # little less, at a lower order on the same shape, or more)
        if direct >= self.mesh.cost_floor(system, n_species):  # else no mesh is cheaper: none chosen
            own = self.mesh.parameters(system.cell, system.n_atoms, system.k_cutoff)
            if self.mesh.cost(system, n_species, own) < direct:
                params = self.mesh_for(system, species, own)
                if self.mesh.cost(system, n_species, params) < direct:
                    return self.mesh, params
        available = self.device.available_memory() if available is None else available
        if self.direct.batch_bytes(self.direct.grow(None, system), n_species) <= available:
            return self.direct, None
        return self.mesh, self.mesh_for(system, species)

    def mesh_for(self, system, species, own: MeshParameters | None = None) -> MeshParameters:
        """The particle mesh of a bulk ``system``: the first of the cell's own
        (:meth:`MeshKSum.parameters`: its aliasing estimate assumes a featureless density
        spectrum) and its refinements (:meth:`MeshKSum.refinements`: the other B-spline orders
        on its shape, the cheaper first, then 8 % steps of finer meshes) whose aliasing on the
        structure's own density (:class:`gplode.methods.accuracy.DensityAliasing`: e.g. a
        crystal's Bragg peaks) is predicted below :data:`ALIASING_SHARE` × ``accuracy``; the
        own as it is for a sphere of more than :data:`MODEL_VECTORS` vectors (σ small against
        the cell: the components inside it are not weak). A user's ``mesh_spacing`` or
        ``interpolation_order`` is taken as it is. ``own``: the cell's own mesh, when the
        caller has it already."""
        h = self.hypers
        params = self.mesh.parameters(system.cell, system.n_atoms, system.k_cutoff) if own is None else own
        if h.mesh_spacing is not None or h.interpolation_order is not None:
            return params
        if half_sphere_count(params.k_cutoff, system.volume) > MODEL_VECTORS:  # a large sphere (small σ
            return params  # against the cell): the prediction would cost too much, and is not needed there
        constant = periodic_corrections(
            [system], species, self.potential, self.basis, self.center_term, h.center_atom_weight
        )
        target = ALIASING_SHARE * h.accuracy
        aliasing = DensityAliasing(system, species, self.kspace_weight, float((constant**2).sum()), params.k_cutoff)
        for candidate in self.mesh.refinements(system, len(species), params):
            if aliasing(candidate.shape, candidate.order) <= target:
                return candidate
        return candidate  # none met the target: the finest of them

    def _advice(self, params) -> str:
        """What to change when a structure is too large for its method (``params``: the mesh's)."""
        h = self.hypers
        advice = "lower `k_cutoff`" if h.k_cutoff is not None else "raise `accuracy` or `smearing`"
        if params is not None:
            return advice + ", or raise `mesh_spacing`"
        if self.exact:
            return advice + ", or use a mesh backend ('numpy', 'gpu')"
        return advice + ", or use route='auto' or 'mesh'" if h.route == "direct" else advice

    def batches(
        self,
        members: list[int],
        systems,
        n_species: int,
        method,
        params,
        available: int | None = None,
        factor=1.0,
        shared: bool = False,
    ):
        """Split ``members`` (indices of systems sharing ``method`` and ``params``) into
        batches within the device's budget (a list); refuse a structure that alone exceeds
        the device's memory (``available`` bytes; default: queried) or the direct sum's work
        limit. ``factor`` scales the methods' memory models (:data:`VJP_MEMORY_FACTOR` for the
        derivatives); with ``shared``, the bulk direct sum's batches are sized to run
        :attr:`~gplode.devices.base.Device.concurrent_batches` at a time."""
        available = self.device.available_memory() if available is None else available
        budget = self.device.batch_budget(available, shared=shared and method is self.direct)
        direct = isinstance(method, DirectKSum)  # the direct sum or the truncated one
        if direct:  # similar sizes together: less padding
            members = sorted(members, key=lambda i: systems[i].n_atoms)
        batches, batch, summary = [], [], None
        for i in members:
            system = systems[i]
            if direct:
                method.check(system, n_species, self._advice(params))
            alone = method.grow(None, system, params)
            needed = factor * method.batch_bytes(alone, n_species)
            if needed > available:
                lengths = ", ".join(f"{n:.3g}" for n in system.lengths)
                what = f"the mesh {params.shape} (order {params.order})" if params else "the direct k-sum"
                raise MemoryError(
                    f"{what} of a structure of {system.n_atoms} atoms (cell lengths {lengths} Å) needs about "
                    f"{format_bytes(needed)}, more than the {format_bytes(available)} available; "
                    + self._advice(params)
                )
            grown = method.grow(summary, system, params)
            if batch and (self.exact or factor * method.batch_bytes(grown, n_species) > budget):
                batches.append(batch)
                batch, grown = [], alone
            batch.append(i)
            summary = grown
        return batches + [batch] if batch else batches

    def plan(self, systems, species, factor: float = 1.0, shared: bool = False) -> list:
        """``(members, method, mesh parameters)`` of every batch of the periodic ``systems``
        (slabs and wires in their boxes, :meth:`box`): routes chosen, similar cells grouped,
        batches cut to the memory budget, and every structure checked against the memory and
        work limits, without computing anything (memory models scaled by ``factor``, and
        ``shared``, see :meth:`batches`)."""
        n_species, available = len(species), self.device.available_memory()  # queried once per call
        groups = {}  # similar cells, batched together: (mesh shape and order) or (direct sum, its k-point grid)
        for i, system in enumerate(systems):
            method, params = self.method_for(system, species, available)
            if method is self.mesh:  # each structure sums its own sphere on the shared mesh
                key = (method.name, params.shape, params.order)
            else:  # direct sums: cells with one k-point grid (similar cells, little padding in k), one precision
                key = (method.name, sphere_shape_for_lengths(system.lengths, method.k_cutoff_of(system)))
                key += (method.values_real(system),) if method is self.direct else ()
            _, shared_params, members = groups.setdefault(key, (method, params, []))
            if params is not None and params.k_cutoff > shared_params.k_cutoff:  # the largest sphere's memory
                groups[key] = (method, params, members)
            members.append(i)
        return [
            (batch, method, params)
            for method, params, members in groups.values()
            for batch in self.batches(members, systems, n_species, method, params, available, factor, shared)
        ]

    def with_spheres(self, systems, species) -> list:
        """``systems`` with the radius of each bulk structure's k-sphere (``System.k_cutoff``):
        the smallest whose predicted truncation error is a share of ``accuracy``
        (:data:`~gplode.methods.accuracy.TRUNCATION_SHARE`, or for small cells, whose error is
        computed exactly, what :data:`~gplode.methods.accuracy.COHERENT_ERROR_SHARE` leaves to the truncation;
        :func:`gplode.methods.accuracy.sphere_radii`; cells sized for the mesh keep the
        σ-only one), or the explicit ``k_cutoff``, refused (``ValueError``) when it holds no
        k-vector of a structure: never a silently empty sum."""
        bulk = [i for i, system in enumerate(systems) if system.periodic and system.k_cutoff is None]
        if self.hypers.k_cutoff is not None:
            for i in bulk:
                self._check_explicit_sphere(systems[i])
            return systems
        bulk = [i for i in bulk if modelled(systems[i], self.k_bound)]  # the others: sized for the mesh
        if not bulk:
            return systems
        h, modelled_systems = self.hypers, [systems[i] for i in bulk]
        constant = periodic_corrections(
            modelled_systems, species, self.potential, self.basis, self.center_term, h.center_atom_weight
        )
        radii, gains = sphere_radii(
            modelled_systems,
            species,
            self.kspace_weight,
            constant,
            h.accuracy,
            self.k_bound,
            self.device.map_batches,
            self.direct.roundoff,
        )
        out = list(systems)
        for i, radius, gain in zip(bulk, radii, gains, strict=True):
            if radius is not None:
                out[i] = dataclasses.replace(systems[i], k_cutoff=radius, roundoff_gain=gain)
        return out

    def _check_explicit_sphere(self, system) -> None:
        """Refuse (``ValueError``) an explicit ``k_cutoff`` that holds no k-vector of ``system``."""
        k_cutoff = self.hypers.k_cutoff
        shortest = 2 * np.pi * np.linalg.norm(np.linalg.inv(system.cell), axis=0).min()  # of the b_i
        cell = system.cell[None]  # else the sphere is within the shortest b_i: few points to look at
        if shortest >= k_cutoff and not selected_kpoints(cell, sphere_shape(cell, k_cutoff), k_cutoff).k.size:
            lengths = ", ".join(f"{n:.3g}" for n in system.lengths)
            raise ValueError(
                f"k_cutoff={k_cutoff:g} Å⁻¹ holds no k-vector of a structure of {system.n_atoms} atoms "
                f"(cell lengths {lengths} Å): its k ≠ 0 part would be zero; raise k_cutoff, or leave it "
                "to `accuracy`"
            )

    def check(self, systems, species) -> None:
        """Raise what :meth:`compute` would raise for ``systems`` before computing (sizes,
        work limits, the free-space table's bounds), without computing the features."""
        systems = self.with_spheres(systems, species)
        self.plan(self._ksum_systems(systems)[1], species)
        if any(system.free and self._free_method(system, len(species)) is None for system in systems):
            self.pair_table()

    def _ksum_systems(self, systems) -> tuple[list[int], list]:
        """Indices of the structures of ``systems`` computed by a k-sum (bulk, slabs and wires),
        and those structures, slabs and wires in their boxes (:meth:`box`)."""
        members = [i for i, system in enumerate(systems) if not system.free]
        return members, [self.box(systems[i]) if systems[i].mixed else systems[i] for i in members]

    def _kspace_part(self, systems, species):
        """Yield ``(members, block)``: indices into the periodic ``systems`` and the k ≠ 0
        coefficients of their atoms, one system after the other; every system appears once."""
        plans = self.plan(systems, species, shared=True)  # all checked before computing
        budget = self.device.batch_budget(shared=True)

        def shared(plan) -> bool:  # may run beside others: a bulk direct-sum batch within its share
            members, method, _ = plan
            if method is not self.direct:
                return False
            summary = None
            for i in members:
                summary = method.grow(summary, systems[i])
            return method.batch_bytes(summary, len(species)) <= budget

        def compute(plan):
            members, method, params = plan
            return members, method.compute([systems[i] for i in members], species, params)

        def cost(plan) -> float:  # of a shared batch, by the direct sum's cost model
            members, method, _ = plan
            return sum(method.cost(systems[i], len(species)) for i in members)

        together, alone = [], []
        for plan in plans:
            (together if shared(plan) else alone).append(plan)
        # the costliest first: the batches running last, each beside another, are the shortest
        yield from self.device.map_batches(compute, sorted(together, key=cost, reverse=True))
        yield from map(compute, alone)

    def _rows(self, systems):
        """Row offsets of each system's atoms in the outputs, ``(n_systems + 1,)``."""
        return np.concatenate([[0], np.cumsum([system.n_atoms for system in systems])]).astype(np.int64)

    def _k0_terms(self, systems, species) -> np.ndarray:
        """The k = 0 terms (l = 0) of the atoms of periodic ``systems``, ``(n_atoms, n_species, n_radial)``
        (the corrections without the strain-independent centre term)."""
        return periodic_corrections(systems, species, self.potential, self.basis, self.center_term, 1.0)

    def compute(self, systems, species: np.ndarray, on_device: bool = False):
        """Coefficients of all atoms of ``systems``, system after system.

        :param on_device: return the device's array (CuPy on the GPU) instead of a host copy;
            the k-sums stay on the device, the corrections and free-space pair sums are
            moved there
        :return: ``(total atoms, len(species), (L+1)**2, n_radial)`` in ``hypers.dtype``
        """
        systems = self.with_spheres(systems, species)
        h = self.hypers
        xp = self.device.xp if on_device else np
        offsets = self._rows(systems)
        out = xp.empty((offsets[-1], len(species), (h.max_angular + 1) ** 2, self.basis.n_radial), dtype=h.dtype)
        ksum, ksum_systems = self._ksum_systems(systems)
        for members, block in self._kspace_part(ksum_systems, species):
            out[self._index(xp, self._atoms_of([ksum[j] for j in members], offsets))] = self._on(xp, block)
        periodic = [i for i in ksum if systems[i].periodic]
        if periodic:
            bulk = [systems[i] for i in periodic]
            corrections = periodic_corrections(
                bulk, species, self.potential, self.basis, self.center_term, h.center_atom_weight
            ).astype(h.dtype, copy=False)
            out[self._index(xp, self._atoms_of(periodic, offsets)), :, 0, :] += self._on(xp, corrections)
        mixed = [i for i in ksum if systems[i].mixed]
        if mixed:  # the k-sum has the G = 0 term: only the centre term is left
            numbers = np.concatenate([systems[i].numbers for i in mixed])
            corrections = center_corrections(numbers, species, self.center_term, h.center_atom_weight)
            out[self._index(xp, self._atoms_of(mixed, offsets)), :, 0, :] += self._on(xp, corrections.astype(h.dtype))
        for i, system in enumerate(systems):
            if system.free:
                box = self._free_method(system, len(species))
                if box is None:
                    values = free_space_coefficients(
                        system, species, self.pair_table(), self.center_term, h.center_atom_weight, h.max_angular
                    )
                else:
                    values = self.free_mesh.compute(system, species, box)
                out[offsets[i] : offsets[i + 1]] = self._on(xp, values)
        return out

    def _host(self, array) -> np.ndarray:
        """``array`` (host or device) on the host."""
        return array if type(array) is np.ndarray else self.device.to_host(array)

    def _on(self, xp, array):
        """``array`` (host or device) as an array of ``xp`` (NumPy or the device's module)."""
        return self._host(array) if xp is np else self.device.xp.asarray(array)

    def _index(self, xp, rows: np.ndarray):
        """Host row indices as an index into arrays of ``xp``."""
        return rows if xp is np else self.device.xp.asarray(rows)

    def _take(self, array, rows: np.ndarray):
        """``array[rows]`` for a host or device ``array`` and host ``rows``."""
        return array[rows if type(array) is np.ndarray else self.device.xp.asarray(rows)]

    @staticmethod
    def _atoms_of(members, offsets) -> np.ndarray:
        """Rows of the atoms of the systems ``members``."""
        members = np.asarray(members, dtype=np.int64)
        owner, slot = segment_slots(offsets[members + 1] - offsets[members])
        return offsets[members][owner] + slot

    def vjp(self, systems, species, weights):
        r"""Vector–Jacobian product of all coefficients: for
        :math:`\mathcal L = \sum \lambda\cdot c` with ``weights`` λ (the shape of :meth:`compute`'s
        output, host or device), ``(∂L/∂r (n_atoms, 3), ∂L/∂ε (n_systems, 3, 3))`` host arrays in
        ``hypers.dtype``: direct sum O(N N_k), mesh O(N log N), free space the pair loop O(N²) or
        the free-space mesh (the route of :meth:`compute`), no N² object; device weights of
        periodic structures stay on the device. Slabs and wires: the truncated sum's, their
        strain on the periodic directions only, P(∂L/∂ε)P, zero outside
        (:class:`gplode.methods.truncated.TruncatedKSum`).
        """
        systems = self.with_spheres(systems, species)
        h = self.hypers
        offsets = self._rows(systems)
        positions = np.zeros((offsets[-1], 3))
        strain = np.zeros((len(systems), 3, 3))
        periodic = [i for i, system in enumerate(systems) if system.periodic]
        periodic_systems = [systems[i] for i in periodic]
        ksum, ksum_systems = self._ksum_systems(systems)  # bulk, slabs and wires in their boxes
        for batch, method, params in self.plan(ksum_systems, species, VJP_MEMORY_FACTOR):
            members = [ksum[j] for j in batch]
            rows = self._atoms_of(members, offsets)
            forces, virial = method.vjp([ksum_systems[j] for j in batch], species, params, self._take(weights, rows))
            positions[rows] += forces
            strain[members] += virial
        if periodic and self.potential.has_k0_term:  # ∝ 1/Ω: -δ_xy λ·c_{k=0}
            rows = self._atoms_of(periodic, offsets)
            k0_weights = self._host(self._take(weights, rows)[:, :, 0, :])
            per_atom = np.einsum("ian,ian->i", k0_weights, self._k0_terms(periodic_systems, species))
            owner = np.repeat(np.arange(len(periodic)), [systems[i].n_atoms for i in periodic])
            strain[periodic, [[0], [1], [2]], [[0], [1], [2]]] -= np.bincount(owner, per_atom, len(periodic))
        for i, system in enumerate(systems):
            if system.free:
                rows = slice(offsets[i], offsets[i + 1])
                box = self._free_method(system, len(species), VJP_MEMORY_FACTOR)
                if box is None:
                    positions[rows], strain[i] = free_space_vjp(
                        system, species, self.pair_table(), self._host(weights[rows]), h.max_angular
                    )
                else:
                    positions[rows], strain[i] = self.free_mesh.vjp(system, species, self._host(weights[rows]), box)
        return positions.astype(h.dtype, copy=False), strain.astype(h.dtype, copy=False)

    def jvp(self, systems, species, values, positions, strain, on_device: bool = False):
        r"""Jacobian–vector product: the change of the coefficients ``values`` (:meth:`compute`'s
        output, host or device) along the host tangents ``positions`` :math:`\dot r`
        ``(n_atoms, 3)`` and ``strain`` :math:`\dot\varepsilon` ``(n_systems, 3, 3)``, in
        ``hypers.dtype``, on the device with ``on_device``; the same cost as :meth:`vjp`, no N²
        object. Periodic structures, slabs and wires add the volume term
        :math:`-\mathrm{tr}(\dot\varepsilon)(c - c_\mathrm{const})` to their route's k-sum part;
        strain tangents of slabs and wires must lie in their periodic directions
        (:meth:`check_gradients`).
        """
        systems = self.with_spheres(systems, species)
        strain = self.check_gradients(systems, strain)
        h = self.hypers
        xp = self.device.xp if on_device else np
        offsets = self._rows(systems)
        out = xp.zeros(values.shape)
        ksum, ksum_systems = self._ksum_systems(systems)  # bulk, slabs and wires in their boxes
        for batch, method, params in self.plan(ksum_systems, species, VJP_MEMORY_FACTOR):
            members = [ksum[j] for j in batch]
            rows = self._atoms_of(members, offsets)
            tangent = method.jvp([ksum_systems[j] for j in batch], species, params, positions[rows], strain[members])
            out[self._index(xp, rows)] = self._on(xp, tangent)
        if ksum:
            rows = self._atoms_of(ksum, offsets)
            trace = np.repeat(np.trace(strain[ksum], axis1=1, axis2=2), [systems[i].n_atoms for i in ksum])
            volume_part = self._volume_part(ksum_systems, species, self._on(xp, self._take(values, rows)))
            out[self._index(xp, rows)] -= self._on(xp, trace)[:, None, None, None] * volume_part
        for i, system in enumerate(systems):
            if system.free:
                rows = slice(offsets[i], offsets[i + 1])
                box = self._free_method(system, len(species), VJP_MEMORY_FACTOR)
                if box is None:
                    tangent = free_space_jvp(
                        system, species, self.pair_table(), positions[rows], strain[i], h.max_angular
                    )
                else:
                    tangent = self.free_mesh.jvp(system, species, positions[rows], strain[i], box)
                out[rows] = self._on(xp, tangent)
        return out.astype(h.dtype, copy=False)

    def _volume_part(self, systems, species, values):
        """The part of periodic ``values`` (host or device) that scales as 1/Ω under strain: c
        without its strain-independent centre term -(1 - w_c) c^center."""
        kind, present = species_index(np.concatenate([system.numbers for system in systems]), species)
        centre = np.zeros((values.shape[0], values.shape[1], values.shape[3]))
        centre[present, kind[present], :] = (1.0 - self.hypers.center_atom_weight) * self.center_term
        volume_part = values.astype(float)
        volume_part[:, :, 0, :] += centre if type(values) is np.ndarray else self.device.xp.asarray(centre)
        return volume_part

    def gradients(self, systems, species, values, which) -> dict:
        """Dense gradients of the coefficients ``values`` (:meth:`compute`'s output) of ``systems``
        with respect to the parameters ``which`` (of :data:`GRADIENTS`):

        * ``"positions"``: ``(PositionRows, (n_rows, 3, (L+1)**2, n_radial))``, featomic's rows
          (:mod:`gplode.methods.jacobians`), O(N²) memory, refused beyond the available memory;
        * ``"strain"``: ``(n_atoms, n_species, 3, 3, (L+1)**2, n_radial)``, ∂c/∂ε_xy (r → r(1+ε)).

        Periodic structures take the direct k-sum's derivatives whatever their route,
        free-space ones the pair sum's, slabs and wires the truncated sum's (their strain on the
        periodic directions only, P(∂c/∂ε)P, zero outside:
        :class:`gplode.methods.truncated.TruncatedKSum`).
        """
        systems = self.with_spheres(systems, species)
        h, out = self.hypers, {}
        positions = strain = None
        n_radial, n_lm = self.basis.n_radial, (h.max_angular + 1) ** 2
        offsets = self._rows(systems)
        itemsize = np.dtype(h.dtype).itemsize
        if "positions" in which:
            position_rows = PositionRows(systems, species)
            # the rows, a block of pair derivatives, and a periodic system's phases and kernels (all k)
            kdata = max(
                (
                    half_sphere_count(self.direct.k_cutoff_of(s), s.volume)
                    * (16 * s.n_atoms + 24 * self.direct.n_channels)
                    for s in self._ksum_systems(systems)[1]
                ),
                default=0,
            )
            needed = position_rows.n_rows * 3 * n_lm * n_radial * itemsize + _PAIR_BLOCK_BYTES + kdata
            available = self.device.available_memory()
            if needed > available:
                raise MemoryError(
                    f"dense position gradients of {offsets[-1]} atoms ({position_rows.n_rows} gradient rows) need "
                    f"about {format_bytes(needed)}, more than the {format_bytes(available)} available; use "
                    "LodeCalculator.vjp(frames, weights) for forces and stress without the dense Jacobian"
                )
            positions = np.zeros((position_rows.n_rows, 3, n_lm, n_radial), dtype=h.dtype)
            out["positions"] = (position_rows, positions)
        if "strain" in which:
            strain = np.zeros((offsets[-1], len(species), 3, 3, n_lm, n_radial), dtype=h.dtype)
            periodic = [i for i, system in enumerate(systems) if system.periodic]
            if periodic:
                rows = self._atoms_of(periodic, offsets)
                volume_part = self._volume_part([systems[i] for i in periodic], species, values[rows])
                diagonal = np.eye(3)[None, None, :, :, None, None] * volume_part[:, :, None, None]
                strain[rows] = -diagonal
                for i in periodic:
                    self.direct.check(systems[i], len(species), self._advice(None))
                    strain[offsets[i] : offsets[i + 1]] += self.direct.strain_rows([systems[i]], species)
            for i in (i for i, system in enumerate(systems) if system.mixed):  # −P (c − c_const) + P(k-sum)P
                box, rows = self.box(systems[i]), slice(offsets[i], offsets[i + 1])
                volume_part = self._volume_part([box], species, values[rows])
                projector = periodic_projector(box.cell, box.pbc)[None, None, :, :, None, None]
                self.truncated.check(box, len(species), self._advice(None))
                strain[rows] = self.truncated.strain_rows([box], species) - projector * volume_part[:, :, None, None]
            out["strain"] = strain
        # the pair derivatives, formed once per system: the dense positions' rows and the
        # free-space strain
        for index, system in enumerate(systems):
            if positions is None and not system.free:
                continue
            for centres, pairs in self._pairs(system):
                if positions is not None:
                    position_rows.fill(positions, index, system, pairs, centres)
                if strain is not None and system.free:
                    strain[offsets[index] + centres] = strain_from_pairs(system, species, pairs, centres)
        return out

    def _centre_blocks(self, system):
        """Blocks of centres whose pair derivatives fit in about :data:`_PAIR_BLOCK_BYTES`."""
        per_centre = system.n_atoms * (48 * K_CHUNK + 24 * self.direct.n_channels)
        size = max(1, int(_PAIR_BLOCK_BYTES // per_centre))
        return [np.arange(start, min(start + size, system.n_atoms)) for start in range(0, system.n_atoms, size)]

    def _pairs(self, system):
        """Yield ``(centres, D_ij)`` over blocks of centres (:mod:`gplode.methods.jacobians`)."""
        blocks = self._centre_blocks(system)
        if system.mixed:
            yield from self.truncated.pair_gradients(self.box(system), blocks)
        elif system.periodic:
            yield from self.direct.pair_gradients(system, blocks)
        else:
            for centres in blocks:
                yield centres, pair_gradients(system, self.pair_table(), self.hypers.max_angular, centres)
