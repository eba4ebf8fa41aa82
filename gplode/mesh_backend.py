"""The fast CPU backend (``backend="numpy"``): the mesh pipeline of :mod:`gplode.stages`.

Periodic systems cost O(M log M) per channel batch (M mesh points, chosen from
``accuracy``) plus O(N P³) per channel for the interpolation; small cells, where the
direct k-sum is cheaper, use it instead (with splined radial integrals). Free-space
systems use the pair sum of :mod:`gplode.free_space`.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import fft

from . import stages
from .backend import Backend
from .bspline import bspline_fourier
from .corrections import add_periodic_corrections, species_index
from .mesh import MeshParameters, choose_mesh, kspace_grid
from .reference import kspace_sum
from .spherical_harmonics import real_spherical_harmonics
from .splines import RadialIntegralSpline

__all__ = ["NumpyBackend", "available_memory"]


def available_memory() -> int:
    """Bytes of memory available to this process (``MemAvailable``, else physical memory)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


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

    @staticmethod
    def to_host(array):
        return array


class NumpyBackend(Backend):
    """Mesh backend on the CPU (NumPy + ``scipy.fft`` with all cores).

    :param hypers: :class:`gplode.hypers.LodeHypers`
    :param potential: :class:`gplode.potentials.SmearedPowerLaw`
    :param basis: :class:`gplode.radial.RadialBasis`
    """

    name = "numpy"
    stages = NumpyStages

    def __init__(self, hypers, potential, basis):
        super().__init__(hypers, potential, basis)
        self._splines = {}

    @staticmethod
    def available_memory() -> int:
        """Bytes the mesh arrays may use (host memory here)."""
        return available_memory()

    def mesh_parameters(self, cell: np.ndarray, n_atoms: int = 1) -> MeshParameters:
        """Mesh used for ``cell`` (from ``accuracy``, or the user's overrides)."""
        h = self.hypers
        params = choose_mesh(cell, h.smearing, h.accuracy, n_atoms, order=h.interpolation_order)
        if h.mesh_spacing is not None:
            shape = tuple(
                int(fft.next_fast_len(int(np.ceil(n / h.mesh_spacing)), real=True))
                for n in np.linalg.norm(cell, axis=1)
            )
            params = MeshParameters(shape, params.order, params.k_cutoff)
        return params

    def _radial_spline(self, k_max: float) -> RadialIntegralSpline:
        key = round(k_max, 6)
        if key not in self._splines:
            self._splines = {key: RadialIntegralSpline(self.basis, k_max)}
        return self._splines[key]

    def _mesh_route(self, system, species, params: MeshParameters) -> np.ndarray:
        """The k ≠ 0 coefficients through the stage chain of ``self.stages`` (see :mod:`gplode.stages`).

        Everything that depends only on the cell (k-grid, B-spline transforms, v̂, Y_lm,
        splined Ĩ) is built on the host in NumPy; the stages run where ``self.stages``
        runs them (NumPy here, Triton + CuPy for the GPU backend).
        """
        ops, xp = self.stages, self.stages.xp
        L, n_radial, n_species = self.hypers.max_angular, self.basis.n_radial, len(species)
        # dtype="float32": the whole mesh chain in single precision (FFTs in complex64)
        real = np.float32 if self.hypers.dtype == "float32" else np.float64
        shape = params.shape
        fractional = np.linalg.solve(system.cell.T, system.positions.T).T % 1.0
        stencil = ops.stencil(xp.asarray(fractional, dtype=real), shape, params.order)
        kind, _ = species_index(system.numbers, species)
        density = ops.spread(stencil, xp.asarray(kind), n_species, shape)
        interpolation = ops.prepare_interpolation(stencil, params.n_points)
        spectra = ops.rfftn(density)  # ≈ K̂ ρ_a(k)*, (n_species, M1, M2, M3//2+1)

        k, m = kspace_grid(system.cell, shape)
        knorm = np.linalg.norm(k, axis=-1)
        selected = np.flatnonzero(((knorm > 0) & (knorm < params.k_cutoff)).ravel())
        kernel_ft = (
            bspline_fourier(m[0], params.order, shape[0])[:, None, None]
            * bspline_fourier(m[1], params.order, shape[1])[None, :, None]
            * bspline_fourier(m[2], params.order, shape[2])[None, None, :]
        ).ravel()[selected]
        k_sel, knorm_sel = k.reshape(-1, 3)[selected], knorm.ravel()[selected]
        base = params.n_points * 4.0 * np.pi / system.volume * self.potential.kspace(knorm_sel) / kernel_ft**2
        selected_xp = xp.asarray(selected)
        prefactors = xp.asarray(base, dtype=real)[None, :] * spectra.reshape(n_species, -1)[:, selected_xp]
        ylm = xp.asarray(real_spherical_harmonics(k_sel, L), dtype=real)
        spline = self._radial_spline(params.k_cutoff)

        out = np.empty((system.n_atoms, n_species, (L + 1) ** 2, n_radial))
        half_shape = spectra.shape[1:]
        batch = xp.zeros((n_radial, int(np.prod(half_shape))), dtype=spectra.dtype)
        for l in range(L + 1):
            radial = xp.asarray(spline(knorm_sel, l), dtype=real)
            for a in range(n_species):
                for lm in range(l * l, (l + 1) ** 2):
                    ops.channel_spectra_into(batch, selected_xp, prefactors[a], radial, ylm[:, lm], l)
                    fields = ops.irfftn(batch.reshape(n_radial, *half_shape), shape)
                    out[:, a, lm, :] = ops.to_host(ops.interpolate(fields, interpolation)).T
        return out

    def uses_mesh(self, system, n_species: int, params: MeshParameters) -> bool:
        """Whether the mesh route is cheaper than the direct k-sum for this system.

        Measured on the 2-core machine: the direct sum costs ~0.5 ns per (atom, species,
        k-vector, channel) plus ~20 ns per (atom, k-vector) for the phases; the mesh ~12 ns
        per (channel, mesh point) plus ~1.1 ns per (channel, atom, stencil point). Small
        cells (≲ 40 atoms) are faster directly.
        """
        if self.hypers.mesh_spacing is not None or self.hypers.interpolation_order is not None:
            return True  # the user asked for a mesh
        channels = (self.hypers.max_angular + 1) ** 2 * self.basis.n_radial
        n_k = params.k_cutoff**3 * system.volume / (12 * np.pi**2)  # half k-sphere
        direct = system.n_atoms * n_k * (0.5 * n_species * channels + 20.0)
        mesh = n_species * channels * (12.0 * params.n_points + 1.1 * system.n_atoms * params.order**3)
        return mesh < direct

    def _periodic(self, system, species):
        h, basis, pot = self.hypers, self.basis, self.potential
        L, n_radial, n_species, n_atoms = h.max_angular, basis.n_radial, len(species), system.n_atoms
        params = self.mesh_parameters(system.cell, n_atoms)
        if self.uses_mesh(system, n_species, params):
            needed = params.memory_bytes(n_atoms, n_species, n_radial)
            available = self.available_memory()
            if needed > available:
                raise MemoryError(
                    f"the mesh {params.shape} (order {params.order}) needs about {needed / 2**30:.1f} GiB, "
                    f"more than the {available / 2**30:.1f} GiB available; raise `accuracy` or `mesh_spacing`"
                )
            out = self._mesh_route(system, species, params)
        else:
            out = kspace_sum(system, species, pot, self._radial_spline(params.k_cutoff), params.k_cutoff, L, n_radial)
        add_periodic_corrections(out, system, species, pot, basis, self.center_term, h.center_atom_weight)
        return out
