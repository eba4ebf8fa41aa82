"""The CUDA device: CuPy arrays, cuFFT, and the Triton kernels of ``gplode.kernels``.

Nothing here imports CuPy or Triton at import time: the GPU probe is lazy and cached, and
``GPLODE_GPU=0`` keeps ``backend="auto"`` on the CPU.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from .base import Costs, Device
from .cpu import host_memory

__all__ = ["CudaDevice", "gpu_available", "require_gpu"]

#: set to "0" to never use a GPU (``backend="auto"`` then stays on the CPU)
GPU_ENV = "GPLODE_GPU"


@functools.lru_cache(maxsize=1)
def _probe() -> str | None:
    """None when a GPU is usable, else the reason it is not (never raises)."""
    if os.environ.get(GPU_ENV, "") == "0":
        return f"disabled by {GPU_ENV}=0"
    try:
        import cupy
    except Exception as error:  # ImportError, or a broken CUDA installation
        return f"CuPy cannot be imported ({error})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
        # a tiny computation: catches driver/runtime mismatches that import hides
        if float(cupy.arange(4.0).sum()) != 6.0:
            return "CuPy smoke test gave a wrong result"
    except Exception as error:  # CUDARuntimeError and friends
        return f"CUDA is not usable ({error})"
    try:
        import triton
    except Exception as error:
        return f"Triton cannot be imported ({error})"
    try:  # Triton <= 3.6 launches CUDA kernels through PyTorch: without it, no active driver
        triton.runtime.driver.active.get_current_target()
    except Exception as error:
        return f"Triton has no usable GPU driver ({error}; Triton 3.6 needs PyTorch installed to launch kernels)"
    return None


def gpu_available() -> bool:
    """Whether ``backend="gpu"`` can run here (cached; override with ``GPLODE_GPU=0``)."""
    return _probe() is None


def require_gpu() -> None:
    """Raise a clear ``RuntimeError`` when no GPU can be used."""
    reason = _probe()
    if reason is not None:
        raise RuntimeError(
            f'backend="gpu" needs an NVIDIA GPU with CuPy and Triton (pip install "gplode[gpu]"): {reason}'
        )


class CudaDevice(Device):
    """CuPy + cuFFT + Triton kernels; see :class:`gplode.devices.base.Device` for the other
    parameters.

    :param xp: the array module; default ``cupy`` (after checking that a GPU is usable).
        The test suite passes ``numpy`` (kernels in Triton's CPU interpreter) or a stand-in
        as strict as CuPy about host/device mixing.
    """

    name = "gpu"
    #: estimates until measured on a device: the direct sum is dense matrix products,
    #: ~2 flops per (atom, species, k-vector, channel) at ~20 TFLOP/s plus ~48 bytes per
    #: (atom, species, k-vector) of element-wise work at ~1.5 TB/s; the mesh moves ~36 bytes
    #: per channel and mesh point (spectra, inverse FFT) and ~20 per (channel, atom, stencil
    #: point) (interpolation). By these a 140-atom cell takes the direct sum, NaCl with
    #: 4,096 atoms the mesh.
    costs = Costs(
        direct_term=1e-13,
        direct_phase=0.0,
        direct_species=3.2e-11,
        mesh_point=2.4e-11,
        mesh_stencil=1.3e-11,
        direct_phase_double=0.0,
    )
    #: kernel launches and FFT plans cost more than ~15 % extra mesh points
    default_round_shapes = True

    def __init__(self, xp=None, **kwargs):
        if xp is None:
            require_gpu()
            import cupy as xp
        super().__init__(**kwargs)
        self.xp = xp
        from ..kernels import interpolate, spectra, spread  # imports Triton

        self._kernels = spread, spectra, interpolate

    def free_memory(self) -> int:
        """Free memory of the current GPU (including CuPy's pool of freed blocks); the host's
        for a NumPy ``xp``."""
        xp = self.xp
        if xp is np:
            return host_memory()
        return int(xp.cuda.Device().mem_info[0]) + int(xp.get_default_memory_pool().free_bytes())

    def to_host(self, array) -> np.ndarray:
        return array if self.xp is np else array.get()

    def spread(self, indices, weights, species_index, n_species, shape):
        return self._kernels[0].spread(indices, weights, species_index, n_species, shape, self.xp)

    def prepare_interpolation(self, indices, weights, n_points):
        return indices, weights

    def rfftn(self, meshes):
        return self.xp.fft.rfftn(meshes, axes=(1, 2, 3))

    def irfftn(self, spectra, shape):
        return self.xp.fft.irfftn(spectra, s=shape, axes=(1, 2, 3))

    def channel_spectra_into(self, batch, selected, prefactor, radial, ylm, l):
        self._kernels[1].channel_spectra_into(batch, selected, prefactor, radial, ylm, l, self.xp)

    def interpolate(self, meshes, plan):
        return self._kernels[2].interpolate(meshes, plan, self.xp)

    def spread_values(self, values, plan, n_points):
        """One launch of the spreading kernel over ``n_values`` copies of the atoms, copy n
        weighted by ``values[n]`` and spread onto mesh n."""
        xp, (indices, weights) = self.xp, plan
        n_values, n_atoms = values.shape
        tiled = xp.broadcast_to(indices[None], (n_values, *indices.shape)).reshape(n_values * n_atoms, -1)
        scaled = (weights[None] * values[:, :, None]).reshape(n_values * n_atoms, -1)
        kind = xp.repeat(xp.arange(n_values, dtype=xp.int64), n_atoms)
        return self.spread(tiled, scaled.astype(weights.dtype, copy=False), kind, n_values, (n_points,))
