"""The GPU backend (``backend="gpu"``): the mesh pipeline with Triton kernels and cuFFT.

It reuses :class:`gplode.mesh_backend.NumpyBackend`'s orchestration with the stage
provider :class:`gplode.kernels.stages.TritonStages` on CuPy arrays: B-spline stencils
(CuPy), spreading with atomics (Triton), batched real FFTs (cuFFT), per-channel spectra
(Triton) and interpolation (Triton). The selected k-points, v̂_p, Y_lm and Ĩ_nl are
evaluated on the device too (splines stored as per-cell polynomials, see
:mod:`gplode.splines`); the host sends positions and cells, and receives coefficients.
Structures sharing a mesh run as one batch (shapes rounded up to a sparse ladder of
sizes so that similar cells share one), cut to fit the free GPU memory. Free-space
systems use the CPU pair sum.

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

    def uses_mesh(self, system, n_species, params) -> bool:
        """Always the mesh on the GPU (FFTs are cheap there)."""
        return True
