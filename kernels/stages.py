"""The mesh stages with Triton kernels, for :class:`gplode.gpu_backend.GpuBackend`.

Same interface as :class:`gplode.mesh_backend.NumpyStages`. ``xp`` is ``cupy`` on a GPU
(FFTs by cuFFT); with ``TRITON_INTERPRET=1`` and ``xp = numpy`` the very same chain runs
on the CPU, which is how the test suite checks it without a GPU.
"""

from __future__ import annotations

from gplode import stages as host_stages
from gplode._dispatch import to_host

from . import interpolate as _interpolate
from . import spectra as _spectra
from . import spread as _spread


class TritonStages:
    """Stage provider running the kernels on arrays of module ``xp``."""

    def __init__(self, xp):
        self.xp = xp
        self._fft = xp.fft

    def stencil(self, fractional, shape, order):
        return host_stages.stencil(fractional, shape, order)  # array-module generic

    def spread(self, stencil, kind, n_species, shape):
        indices, weights = stencil
        return _spread.spread(indices, weights, kind, n_species, shape, self.xp)

    def prepare_interpolation(self, stencil, n_points):
        return stencil

    def rfftn(self, meshes):
        return self._fft.rfftn(meshes, axes=(1, 2, 3))

    def irfftn(self, spectra, shape):
        return self._fft.irfftn(spectra, s=shape, axes=(1, 2, 3))

    def channel_spectra_into(self, batch, selected, prefactor, radial, ylm, l):
        _spectra.channel_spectra_into(batch, selected, prefactor, radial, ylm, l, self.xp)

    def interpolate(self, fields, stencil):
        indices, weights = stencil
        return _interpolate.interpolate(fields, indices, weights, self.xp)

    to_host = staticmethod(to_host)
