"""Devices: everything that differs between the CPU and an NVIDIA GPU (see :mod:`.base`)."""

from .base import Costs, Device, Stages
from .cpu import CpuDevice
from .cuda import CudaDevice, gpu_available, require_gpu

__all__ = ["Costs", "CpuDevice", "CudaDevice", "Device", "Stages", "gpu_available", "require_gpu"]
