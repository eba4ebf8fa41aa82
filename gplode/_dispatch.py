"""Everything that differs between NumPy and CuPy, and the lazy, cached GPU detection.

The library never imports CuPy or Triton at import time; they are imported here, on
first use, inside guards.
"""

from __future__ import annotations

import functools
import os

import numpy as np

__all__ = ["array_module", "gpu_available", "require_gpu", "to_host"]

#: set to "0" to never use a GPU (``backend="auto"`` then stays on the CPU)
GPU_ENV = "GPLODE_GPU"


def array_module(array):
    """``cupy`` for CuPy arrays, ``numpy`` otherwise."""
    if type(array).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def to_host(array) -> np.ndarray:
    """A NumPy array with the values of ``array`` (copied from the device for CuPy)."""
    return array.get() if hasattr(array, "get") else array


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
