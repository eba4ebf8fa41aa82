r"""What a device is: the array module, FFTs, the mesh stages, memory and cost constants.

The periodic methods (:mod:`gplode.methods`) are written once against :class:`Device`; the
CPU (:class:`gplode.devices.CpuDevice`: NumPy + ``scipy.fft``) and the CUDA device
(:class:`gplode.devices.CudaDevice`: CuPy + cuFFT + the Triton kernels of
``gplode.kernels``) differ only in what they implement here.

The stage contract (:class:`Stages`), in the order the mesh method calls the stages:

1. :meth:`~Stages.stencil` — B-spline mesh indices and weights of every atom;
2. :meth:`~Stages.spread` — per-species density meshes :math:`Q_a(g) = \sum_{j\in a}K_P(u_j - g)`;
3. :meth:`~Stages.rfftn` — :math:`\hat Q_a(m) \approx \hat K_P(m)\,\rho_a(k_m)^*`;
4. :meth:`~Stages.channel_spectra_into` — for one (species, l, m) channel, into the work
   array of :meth:`~Stages.channel_spectra`, the ``n_radial``
   spectra :math:`G_n(k) = N_{\mathrm{mesh}}\frac{4\pi}{\Omega}\hat v_p(k)\tilde I_{nl}(k)
   Y_{lm}(\hat k) i^l \hat Q_a(k)/\hat K_P(k)^2` on the selected k-points;
5. :meth:`~Stages.channel_meshes` (their inverse FFTs), then :meth:`~Stages.interpolate` with the plan of
   :meth:`~Stages.prepare_interpolation` — :math:`c^{(i)}_{anlm} = \sum_g
   \mathrm{IFFT}[G_n](g)\,K_P(u_i - g)`, the k-sum up to aliasing.

Arrays live on the device (``xp``); meshes are C-contiguous real ``(n, M1, M2, M3)``, half
spectra complex ``(n, M1, M2, M3//2 + 1)``, in the dtype of the weights (float64 or
float32), except the channels' spectra and meshes (stages 4 and 5), ``(n_channels, points)``
in the layout the device chooses (the CPU keeps each point's channels side by side).
Mesh coordinates are fractional coordinates × mesh shape (dimensionless).

The derivatives (:meth:`gplode.methods.mesh.MeshKSum.vjp` and ``jvp``) add
:meth:`~Stages.stencil_gradient` (the weights' derivatives in the mesh coordinates,
interpolated with the same :meth:`~Stages.interpolate` and spread with :meth:`~Stages.spread`)
and :meth:`~Stages.spread_values`, the adjoint of interpolation (per-atom values onto meshes:
a transposed sparse product on the CPU, one launch of the spreading kernel on the GPU).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Protocol

import numpy as np

from ..lib.bspline import stencil, stencil_gradient

__all__ = ["Costs", "Device", "Stages"]


class Stages(Protocol):
    """The mesh stages, one signature at every hop (see the module docstring)."""

    def stencil(self, fractional, shape: tuple[int, int, int], order: int):
        """Flat mesh indices (int64) and weights of the P³ points each atom touches.

        :param fractional: fractional coordinates in [0, 1), ``(n_atoms, 3)``
        :return: ``(indices, weights)``, both ``(n_atoms, P**3)``
        """

    def stencil_gradient(self, fractional, shape: tuple[int, int, int], order: int):
        """:meth:`stencil` and the derivatives of the weights in the three mesh coordinates.

        :return: ``(indices, weights, gradients)``, ``gradients`` ``(3, n_atoms, P**3)``: ∂ weights / ∂u_d
        """

    def spread(self, indices, weights, species_index, n_species: int, shape):
        """Density meshes ``(n_species, *shape)``; atoms with ``species_index >= n_species``
        are left out. ``shape`` may have a leading batch axis (then ``indices`` are into
        the batch of meshes)."""

    def prepare_interpolation(self, indices, weights, n_points: int):
        """An opaque plan for :meth:`interpolate` over meshes of ``n_points`` points."""

    def rfftn(self, meshes):
        """Real FFT over the last three axes of ``(n, M1, M2, M3)``."""

    def irfftn(self, spectra, shape: tuple[int, int, int]):
        """Inverse of :meth:`rfftn` (last three axes), real ``(n, *shape)``."""

    def channel_spectra(self, n_channels: int, n_half: int, dtype):
        """Zeroed complex spectra of ``n_channels`` channels, ``(n_channels, n_half)`` (a batch's
        half spectra one after the other), for :meth:`channel_spectra_into` and :meth:`channel_meshes`."""

    def channel_meshes(self, spectra, shape: tuple[int, int, int]):
        """The inverse real FFT of every channel's half spectra (from :meth:`channel_spectra`):
        real ``(n_channels, n_batch · M1·M2·M3)``, for :meth:`interpolate`."""

    def channel_spectra_into(self, batch, selected, prefactor, radial, ylm, l: int) -> None:
        r"""Write :math:`G_n(k)` into ``batch[:, selected]`` (complex ``(n_radial, n_half)``,
        from :meth:`channel_spectra`).

        :param selected: flat half-spectrum positions of the k-points, int ``(n_k,)``
        :param prefactor: :math:`N_{\mathrm{mesh}}(4\pi/\Omega)\hat v_p\hat Q_a/\hat K_P^2`, complex ``(n_k,)``
        :param radial: :math:`\tilde I_{nl}(k)`, ``(n_k, n_radial)``
        :param ylm: :math:`Y_{lm}(\hat k)`, ``(n_k,)``
        """

    def interpolate(self, meshes, plan):
        """Values of real ``meshes`` ``(n_meshes, ...)`` (any layout) at the atoms, ``(n_meshes, n_atoms)``."""

    def spread_values(self, values, plan, n_points: int):
        r"""The adjoint of :meth:`interpolate`: meshes :math:`\sum_i v_{ni}\,W_i(g)`,
        ``(n_values, n_points)``, of per-atom ``values`` ``(n_values, n_atoms)`` with the
        plan's stencil weights (the gradients' spreading of ∂L/∂c)."""


@dataclasses.dataclass(frozen=True)
class Costs:
    """Time constants (seconds) of the periodic methods on a device; the cost models that
    use them are :meth:`gplode.methods.direct.DirectKSum.cost` and
    :meth:`gplode.methods.mesh.MeshKSum.cost`."""

    #: direct k-sum, per (atom, k-vector, species, channel): the matrix products
    direct_term: float
    #: direct k-sum, per (atom, k-vector): the phases and element-wise products, values in float32
    #: (the float64 phases of the tables, rounded; structure-factor products in float32)
    direct_phase: float
    #: direct k-sum, per (atom, k-vector, species): the structure-factor products
    direct_species: float
    #: mesh, per (channel, mesh point): spectra, inverse FFT
    mesh_point: float
    #: mesh, per (channel, atom, stencil point): interpolation
    mesh_stencil: float
    #: :attr:`direct_phase` for values in float64 (the products in double precision)
    direct_phase_double: float


class Device:
    """Base class of the devices: array module, stages (:class:`Stages`), memory, policies.

    :param memory: bytes this device may use; ``None`` asks the device (free memory)
    :param round_shapes: round mesh shapes up to a sparse ladder of FFT sizes so that
        similar cells share a mesh and are batched (:func:`gplode.methods.mesh.round_shape`);
        ``None`` takes the device's default
    :param max_batch_bytes: largest batch of structures, bytes (``None``: no cap beyond
        :attr:`memory_fraction` of the memory); ``"default"`` takes the device's
    """

    #: name of the ``backend`` option that selects this device
    name = ""
    #: the array module
    xp = np
    #: cost constants (:class:`Costs`)
    costs: Costs
    #: fraction of the free memory one batch may use
    memory_fraction = 0.5
    #: defaults of the constructor's policies
    default_round_shapes = False
    default_max_batch_bytes: float | None = None
    #: keep the direct k-sum's work buffers between batches (fresh host buffers cost page
    #: faults; a GPU memory pool reuses freed memory, and free memory sizes the next batch)
    keep_workspace = False
    #: (padded atom, k-point) pairs of one k chunk of the direct sum, at most (``None``: chunks of
    #: :data:`gplode.methods.direct.K_CHUNK` k-points; :func:`gplode.methods.direct.chunk_width`)
    chunk_points: int | None = None
    #: bulk direct-sum batches computed at once (:meth:`map_batches`); each gets this share of
    #: the batch budget (:meth:`batch_budget`), so that together they use what one batch would
    concurrent_batches = 1

    def __init__(self, memory: int | None = None, round_shapes: bool | None = None, max_batch_bytes="default"):
        for name, value in (("memory", memory), ("max_batch_bytes", max_batch_bytes)):
            if value not in (None, "default") and (
                isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0
            ):
                raise ValueError(f"{name} must be a positive number of bytes or None, got {value!r}")
        self.memory = memory
        self.round_shapes = self.default_round_shapes if round_shapes is None else bool(round_shapes)
        self.max_batch_bytes = self.default_max_batch_bytes if max_batch_bytes == "default" else max_batch_bytes

    def __repr__(self):
        return f"{type(self).__name__}(memory={self.memory}, round_shapes={self.round_shapes})"

    def free_memory(self) -> int:
        """Bytes free on the device right now."""
        raise NotImplementedError

    def available_memory(self) -> int:
        """Bytes the arrays of one structure may use: ``memory``, else the free memory."""
        return self.free_memory() if self.memory is None else int(self.memory)

    def batch_budget(self, available: int | None = None, shared: bool = False) -> float:
        """Bytes one batch of structures may use, of ``available`` (default: :meth:`available_memory`):
        :attr:`memory_fraction` of it, at most ``max_batch_bytes``; with ``shared``, that
        divided among :attr:`concurrent_batches` (:meth:`map_batches`)."""
        budget = self.memory_fraction * (self.available_memory() if available is None else available)
        budget = budget if self.max_batch_bytes is None else min(budget, self.max_batch_bytes)
        return budget / self.concurrent_batches if shared else budget

    def map_batches(self, function, batches):
        """``function(batch)`` of each batch, in order (an iterator), :attr:`concurrent_batches`
        at a time (here one after the other)."""
        return map(function, batches)

    def to_host(self, array) -> np.ndarray:
        """A NumPy array with the values of a device array."""
        return np.asarray(array)

    def matmul(self, a, b, out=None):
        """The stacked matrix products ``a[i] @ b[i]`` of the direct k-sum, ``(n, p, q) @ (n, q, r)``
        (operands may be strided views), into ``out`` if given."""
        return self.xp.matmul(a, b, out=out)

    def take_columns(self, tables, columns, out):
        """``out[b, i, w] = tables[b, i, columns[b, w]]``: each structure's columns of its atoms'
        tables, ``tables`` ``(n, p, q)``, ``columns`` int ``(n, r)``, ``out`` ``(n, p, r)``
        (the direct sum's phase tables; here one broadcast gather)."""
        xp = self.xp
        n, p = tables.shape[:2]
        out[...] = tables[xp.arange(n)[:, None, None], xp.arange(p)[None, :, None], columns[:, None, :]]
        return out

    def channel_spectra(self, n_channels, n_half, dtype):
        """Channel-first spectra (:meth:`Stages.channel_spectra`)."""
        return self.xp.zeros((n_channels, n_half), dtype=dtype)

    def channel_meshes(self, spectra, shape):
        """One batched :meth:`Stages.irfftn` of the channel-first spectra (:meth:`Stages.channel_meshes`)."""
        n_channels = spectra.shape[0]
        half = spectra.reshape(-1, shape[0], shape[1], shape[2] // 2 + 1)
        return self.irfftn(half, shape).reshape(n_channels, -1)

    def stencil(self, fractional, shape, order):
        """The first stage (:meth:`Stages.stencil`), the same array code on every device."""
        return stencil(fractional, shape, order, self.xp)

    def stencil_gradient(self, fractional, shape, order):
        """The derivative stencils (:meth:`Stages.stencil_gradient`), the same array code on every device."""
        return stencil_gradient(fractional, shape, order, self.xp)
