"""The fast CPU backend (``backend="numpy"``): the mesh pipeline of :mod:`gplode.stages`.

Periodic systems cost O(M log M) per channel batch (M mesh points, chosen from
``accuracy``) plus O(N P³) per channel for the interpolation; small cells, where the
direct k-sum is cheaper, use it instead (with splined radial integrals). Structures
sharing a mesh go through the stages together. Free-space systems use the pair sum of
:mod:`gplode.free_space`.
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np
from scipy import fft

from . import direct_sum, stages
from ._dispatch import to_host
from .backend import Backend, format_bytes
from .bspline import bspline_fourier
from .corrections import species_index
from .mesh import MeshParameters, choose_mesh, fast_length, round_shape, selected_kpoints
from .spherical_harmonics import real_spherical_harmonics
from .splines import K_FLOOR, PotentialSpline, RadialIntegralSpline
from .systems import atom_owners

__all__ = ["NumpyBackend"]


class NumpyStages:
    """The mesh stages on the CPU: :mod:`gplode.stages` and ``scipy.fft`` (all cores)."""

    xp = np

    stencil = staticmethod(stages.stencil)

    @staticmethod
    def spread(stencil, kind, n_species, shape):
        return stages.spread(*stencil, kind, n_species, shape)

    @staticmethod
    def prepare_interpolation(stencil, n_points):
        return stages.interpolation_matrix(*stencil, n_points)

    @staticmethod
    def rfftn(meshes):
        return fft.rfftn(meshes, axes=(1, 2, 3), workers=-1)

    @staticmethod
    def irfftn(spectra, shape):
        return fft.irfftn(spectra, s=shape, axes=(1, 2, 3), workers=-1)

    @staticmethod
    def channel_spectra_into(batch, selected, prefactor, radial, ylm, l):
        batch[:, selected] = stages.channel_spectra(prefactor, radial, ylm, l)

    @staticmethod
    def interpolate(fields, interpolation):
        return stages.interpolate(fields, *interpolation)

    to_host = staticmethod(to_host)


class NumpyBackend(Backend):
    """Mesh backend on the CPU (NumPy + ``scipy.fft`` with all cores).

    Periodic structures that share a mesh (same shape and B-spline order) are computed
    together: one spreading pass, one batched FFT and, per channel, one spectra pass, one
    batched inverse FFT and one interpolation pass for all of them. Batches are cut to fit
    in :data:`MEMORY_FRACTION` of :meth:`available_memory`.

    :param hypers: :class:`gplode.hypers.LodeHypers`
    :param potential: :class:`gplode.potentials.SmearedPowerLaw`
    :param basis: :class:`gplode.radial.RadialBasis`
    """

    name = "numpy"
    stages = NumpyStages
    #: fraction of the available memory one batch of structures may use
    MEMORY_FRACTION = 0.5
    #: and at most this many bytes (None: no cap); on a CPU larger batches gain nothing
    #: and their work buffers stay allocated
    MAX_BATCH_BYTES = 2**29
    #: round mesh shapes up to a sparse ladder of sizes (:func:`gplode.mesh.round_shape`)
    #: so that similar cells share a mesh and are batched
    ROUND_SHAPES = False

    def __init__(self, hypers, potential, basis):
        super().__init__(hypers, potential, basis)
        self._local = threading.local()  # per-thread work buffers of the direct sum

    def mesh_parameters(self, cell: np.ndarray, n_atoms: int = 1) -> MeshParameters:
        """Mesh used for ``cell`` (from ``accuracy``, or the user's overrides)."""
        h = self.hypers
        params = choose_mesh(cell, h.smearing, h.accuracy, n_atoms, order=h.interpolation_order, k_cutoff=self.k_cutoff)
        if h.mesh_spacing is not None:
            lengths = np.linalg.norm(cell, axis=1)
            shape = tuple(fast_length(math.ceil(n / h.mesh_spacing)) for n in lengths)
            # every k-vector of the sphere needs |m_i| = |k·a_i|/2π < M_i/2
            if any(m <= params.k_cutoff * n / np.pi for m, n in zip(shape, lengths, strict=True)):
                raise ValueError(
                    f"mesh_spacing={h.mesh_spacing} Å is too coarse for accuracy={h.accuracy}: the k-sphere "
                    f"(k_c = {params.k_cutoff:.3g} Å⁻¹) needs a spacing below {np.pi / params.k_cutoff:.3g} Å"
                )
            params = MeshParameters(shape, params.order, params.k_cutoff)
        if self.ROUND_SHAPES:
            params = MeshParameters(round_shape(params.shape), params.order, params.k_cutoff)
        return params

    @functools.cached_property
    def radial_spline(self) -> RadialIntegralSpline:
        """Splined Ĩ_nl on [0, k_c], built once per calculator (on first use)."""
        return RadialIntegralSpline(self.basis, self.k_cutoff)

    @functools.cached_property
    def potential_spline(self) -> PotentialSpline:
        """Splined v̂_p on [:data:`gplode.splines.K_FLOOR`, k_c], built once per calculator.

        Its range does not depend on the structures computed, so neither do its values:
        a structure's features are the same whatever the calculator computed before.
        """
        return PotentialSpline(self.potential, min(K_FLOOR, 0.5 * self.k_cutoff), self.k_cutoff)

    def _memory_bytes(self, sizes, n_species: int, params: MeshParameters, mesh: bool = True) -> int:
        """Peak memory of a batch on the mesh route (or the direct sum, ``mesh=False``,
        whose batches are padded to their largest member).

        :param sizes: :meth:`_sizes` of the batch's systems
        """
        h = self.hypers
        itemsize = 4 if h.dtype == "float32" else 8
        n_lm, n_radial = (h.max_angular + 1) ** 2, self.basis.n_radial
        if mesh:
            return sum(params.memory_bytes(n, n_species, n_radial, n_lm, volume, itemsize) for n, volume, _ in sizes)
        n_atoms, volume, n_grid = (max(column) for column in zip(*sizes, strict=True))
        n_k = params.n_kpoints(volume)
        return len(sizes) * direct_sum.memory_bytes(n_atoms, n_species, n_lm * n_radial, n_k, n_grid, itemsize)

    @staticmethod
    def _sizes(system, params: MeshParameters) -> tuple[int, float, float]:
        """(atoms, volume, points of the direct sum's half-box grid) of ``system``."""
        return system.n_atoms, system.volume, math.prod(direct_sum.sphere_shape(system.cell, params.k_cutoff)) / 2

    def _batches(self, members: list[int], systems, n_species: int, params: MeshParameters, mesh: bool = True):
        """Split ``members`` (indices of systems sharing ``params`` and route) into batches that fit."""
        available = self.available_memory()
        budget = min(self.MEMORY_FRACTION * available, self.MAX_BATCH_BYTES or np.inf)
        if not mesh:  # similar sizes together: less padding
            members = sorted(members, key=lambda i: systems[i].n_atoms)
        batch, used, largest = [], 0, None
        for i in members:
            size = self._sizes(systems[i], params)
            needed = self._memory_bytes([size], n_species, params, mesh)
            if needed > available:
                system = systems[i]
                lengths = ", ".join(f"{n:.3g}" for n in np.linalg.norm(system.cell, axis=1))
                what = f"the mesh {params.shape} (order {params.order})" if mesh else "the direct k-sum"
                raise MemoryError(
                    f"{what} of a structure of {system.n_atoms} atoms (cell lengths {lengths} Å) needs about "
                    f"{format_bytes(needed)}, more than the {format_bytes(available)} available; raise `accuracy`"
                    + (" or `mesh_spacing`" if mesh else "")
                )
            # the batch with this system: a sum on the mesh, padded to the largest member directly
            grown = size if largest is None else tuple(map(max, largest, size))
            total = used + needed if mesh else (len(batch) + 1) * self._memory_bytes([grown], n_species, params, mesh)
            if batch and total > budget:
                yield batch
                batch, total, grown = [], needed, size
            batch.append(i)
            used, largest = total, grown
        if batch:
            yield batch

    def uses_mesh(self, system, n_species: int, params: MeshParameters) -> bool:
        """Whether ``system`` takes the mesh route: when the user set ``mesh_spacing`` or
        ``interpolation_order``, else when :meth:`_mesh_is_cheaper`."""
        if self.hypers.mesh_spacing is not None or self.hypers.interpolation_order is not None:
            return True
        return self._mesh_is_cheaper(system, n_species, params)

    def _mesh_is_cheaper(self, system, n_species: int, params: MeshParameters) -> bool:
        """Whether the mesh costs less than the direct k-sum on this machine.

        Measured on the 2-core machine: the direct sum costs ~0.5 ns per (atom, species,
        k-vector, channel) plus ~20 ns per (atom, k-vector) for the phases; the mesh ~12 ns
        per (channel, mesh point) plus ~1.1 ns per (channel, atom, stencil point). Small
        cells (≲ 40 atoms) are faster directly.
        """
        channels = (self.hypers.max_angular + 1) ** 2 * self.basis.n_radial
        direct = system.n_atoms * params.n_kpoints(system.volume) * (0.5 * n_species * channels + 20.0)
        mesh = n_species * channels * (12.0 * params.n_points + 1.1 * system.n_atoms * params.order**3)
        return mesh < direct

    def _kspace_part(self, systems, species):
        groups = {}  # (route, mesh) -> indices of the systems: similar cells, batched together
        for i, system in enumerate(systems):
            params = self.mesh_parameters(system.cell, system.n_atoms)
            groups.setdefault((self.uses_mesh(system, len(species), params), params), []).append(i)
        for (mesh, params), members in groups.items():
            for batch in self._batches(members, systems, len(species), params, mesh):
                route = self._mesh_route if mesh else self._direct_route
                yield batch, route([systems[i] for i in batch], species, params)

    def _direct_route(self, systems, species, params: MeshParameters) -> np.ndarray:
        """The k ≠ 0 coefficients of ``systems`` by the batched direct sum of
        :mod:`gplode.direct_sum`, on the stages' array module, with splined v̂_p and Ĩ_nl."""
        h, k_cutoff = self.hypers, params.k_cutoff

        real = np.float32 if h.dtype == "float32" else np.float64
        n_radial, xp = self.basis.n_radial, self.stages.xp
        if xp is np:  # host buffers are kept (fresh ones cost page faults); a GPU's pool reuses memory
            if getattr(self._local, "workspace", None) is None:
                self._local.workspace = direct_sum.Workspace(np)
            workspace = self._local.workspace
        else:  # not held between batches: the free GPU memory sets the next batch's size
            workspace = direct_sum.Workspace(xp)
        vhat, radial = self.potential_spline, self.radial_spline
        values = direct_sum.kspace_sum(
            systems, species, vhat, radial, k_cutoff, h.max_angular, n_radial, xp, real, workspace
        )
        return self.stages.to_host(values)

    def _mesh_route(self, systems, species, params: MeshParameters) -> np.ndarray:
        """The k ≠ 0 coefficients of systems sharing ``params``, through the stages of
        ``self.stages`` (see :mod:`gplode.stages`), all systems in each stage call.

        Structure b's density meshes and channel meshes are the b-th of a batch: its
        stencil indices are offset by b·M, its selected k-points by b·(half spectrum).
        Everything after the atom positions is computed where the stages run (on the GPU
        for :class:`gplode.gpu_backend.GpuBackend`); the host sends positions and cells
        and receives the coefficients.
        """
        ops, xp = self.stages, self.stages.xp
        L, n_radial, n_species, n_batch = self.hypers.max_angular, self.basis.n_radial, len(species), len(systems)
        # dtype="float32": the whole mesh chain in single precision (FFTs in complex64)
        real = np.float32 if self.hypers.dtype == "float32" else np.float64
        shape, n_points, n_half = params.shape, params.n_points, params.n_half
        cells = np.stack([system.cell for system in systems])
        owner, _ = atom_owners(systems)
        owner = xp.asarray(owner)
        positions = xp.asarray(np.concatenate([system.positions for system in systems]))
        fractional = xp.einsum("ni,nij->nj", positions, xp.asarray(np.linalg.inv(cells))[owner]) % 1.0
        indices, weights = ops.stencil(fractional.astype(real), shape, params.order)
        stencil = (indices + (owner * n_points)[:, None], weights)  # into the batch of meshes
        kind, present = species_index(np.concatenate([system.numbers for system in systems]), species)
        density = ops.spread(stencil, xp.asarray(np.where(present, kind, n_species)), n_species, (n_batch, *shape))
        interpolation = ops.prepare_interpolation(stencil, n_batch * n_points)
        # ≈ K̂ ρ_a(k)*, (n_species, n_batch · half spectrum)
        spectra = ops.rfftn(density.reshape(n_species * n_batch, *shape)).reshape(n_species, n_batch * n_half)

        kpoints = selected_kpoints(cells, shape, params.k_cutoff, xp)
        destination = kpoints.structure * n_half + kpoints.position
        knorm = xp.linalg.norm(kpoints.k, axis=1)
        khat = 1.0
        for d in range(3):
            khat = khat * bspline_fourier(kpoints.frequencies[:, d], params.order, shape[d])
        volumes = xp.asarray([system.volume for system in systems])
        out = xp.zeros((owner.size, n_species, (L + 1) ** 2, n_radial), dtype=real)
        if knorm.size:  # else: k_c below the smallest |k|, nothing to sum
            vhat = self.potential_spline(knorm)
            base = (n_points * 4.0 * np.pi / volumes[kpoints.structure] * vhat / khat**2).astype(real)
            prefactors = base[None, :] * spectra[:, destination]  # (n_species, n_k)
            ylm = real_spherical_harmonics(kpoints.k, L).astype(real)
            spline = self.radial_spline
            batch = xp.zeros((n_radial, n_batch * n_half), dtype=spectra.dtype)
            for l in range(L + 1):
                radial = spline(knorm, l).astype(real)
                for a in range(n_species):
                    for lm in range(l * l, (l + 1) ** 2):
                        ops.channel_spectra_into(batch, destination, prefactors[a], radial, ylm[:, lm], l)
                        fields = ops.irfftn(batch.reshape(n_radial * n_batch, *shape[:2], -1), shape)
                        out[:, a, lm, :] = ops.interpolate(fields.reshape(n_radial, -1), interpolation).T
        return ops.to_host(out)  # the systems' atoms one after the other
