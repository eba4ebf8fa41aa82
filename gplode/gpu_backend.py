"""The GPU backend (``backend="gpu"``): the mesh pipeline with Triton kernels and cuFFT.

It reuses :class:`gplode.mesh_backend.NumpyBackend`'s orchestration with the stage
provider :class:`gplode.kernels.stages.TritonStages` on CuPy arrays: B-spline stencils
(CuPy), spreading with atomics (Triton), batched real FFTs (cuFFT), per-channel spectra
(Triton) and interpolation (Triton). The selected k-points, v̂_p, Y_lm and Ĩ_nl are
evaluated on the device too (splines stored as per-cell polynomials, see
:mod:`gplode.splines`); the host sends positions and cells, and receives coefficients.
Structures sharing a mesh run as one batch (shapes rounded up to a sparse ladder of
sizes so that similar cells share one), cut to fit the free GPU memory. Small cells take
the batched direct k-sum of :mod:`gplode.direct_sum` instead (dense matrix products;
route by :meth:`GpuBackend.uses_mesh`). Free-space systems use the CPU pair sum.

Asking for it without a usable GPU raises ``RuntimeError`` (no silent fallback);
``backend="auto"`` uses it only when :func:`gplode._dispatch.gpu_available` is true.
"""

from __future__ import annotations

from ._dispatch import require_gpu
from .mesh_backend import NumpyBackend

__all__ = ["GpuBackend"]


class GpuBackend(NumpyBackend):
    """Mesh backend on an NVIDIA GPU (CuPy arrays, Triton kernels, cuFFT)."""

    name = "gpu"
    #: kernel launches and FFT plans cost more than ~15 % extra mesh points on a GPU
    ROUND_SHAPES = True
    #: batches as large as the free GPU memory allows
    MAX_BATCH_BYTES = None

    def __init__(self, hypers, potential, basis):
        require_gpu()
        import cupy

        from .kernels.stages import TritonStages

        super().__init__(hypers, potential, basis)
        self.stages = TritonStages(cupy)

    @staticmethod
    def available_memory() -> int:
        """Free memory of the current GPU, in bytes (including CuPy's pool of freed blocks)."""
        import cupy

        return int(cupy.cuda.Device().mem_info[0]) + int(cupy.get_default_memory_pool().free_bytes())

    def _mesh_is_cheaper(self, system, n_species, params) -> bool:
        """Mesh or direct k-sum, by estimated GPU time.

        Not yet calibrated on a device (no GPU has been available): the direct sum is dense
        matrix products, ~2·N·S·N_k·C flops (C = (L+1)²·n_radial channels) at ~20 TFLOP/s
        plus ~48 bytes per (atom, species, k) of element-wise work; the mesh moves, per
        channel and radial mesh, ~36 bytes per mesh point (inverse FFT) and ~20 per (atom,
        stencil point) (interpolation), at ~1.5 TB/s. By these estimates a 140-atom cell
        takes the direct sum (~20 µs against ~0.5 ms) and NaCl with 4,096 atoms the mesh.
        """
        h = self.hypers
        n_lm, n_radial, n_atoms = (h.max_angular + 1) ** 2, self.basis.n_radial, system.n_atoms
        n_k = params.n_kpoints(system.volume)
        direct = 2 * n_atoms * n_species * n_k * n_lm * n_radial / 2e13 + 48 * n_atoms * n_species * n_k / 1.5e12
        mesh = n_species * n_lm * n_radial * (36 * params.n_points + 20 * n_atoms * params.order**3) / 1.5e12
        return mesh < direct
