r"""The direct k-space sum of periodic systems, batched over structures (docs/conventions.md).

.. math::

    c^{(i)}_{anlm} = \frac{4\pi}{\Omega}\sum_{0<|k|<k_c}\hat v_p(k)\,\tilde I_{nl}(k)\,
    Y_{lm}(\hat k)\,\Re\Big[i^l e^{ik\cdot r_i}\rho_a(k)^*\Big],\qquad
    \rho_a(k) = \sum_{j\in a}e^{ik\cdot r_j}

(the k ≠ 0 part; :mod:`gplode.methods.corrections` adds the rest). The k-vectors are the points
of a ``rfftn`` half spectrum (:func:`gplode.lib.kvectors.selected_kpoints`) on a grid just large
enough for the sphere: the m₃ > 0 points stand for ±k (weight 2), the m₃ = 0 plane holds
both. Structures of a batch are padded to a common number of atoms and k-points, so that
every step is one batched array operation (phases, structure factors, and per l one
batched matrix product of :math:`\Re` or :math:`\Im[e^{ik\cdot r_i}\rho_a(k)^*]` with the
radial-angular kernel); k is processed in chunks to bound memory. Cost O(N N_k) per
structure, as dense matrix products: fast on a GPU, and on CPUs for small cells.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ..lib.kvectors import half_sphere_count, selected_kpoints, sphere_shape, sphere_shape_for_lengths
from ..lib.spherical_harmonics import real_spherical_harmonics
from ..systems import atom_owners
from .corrections import species_index

__all__ = ["DirectKSum", "Workspace", "kspace_sum", "memory_bytes"]

#: k-points per structure handled at once: bounds the (atoms, species, k) arrays
K_CHUNK = 2048
#: largest amount of work accepted, in (atom, k-vector, species, channel) terms (over an
#: hour on two cores): beyond it the direct sum is refused rather than run for hours
MAX_WORK = 1e13


def memory_bytes(
    n_atoms: int, n_species: int, n_channels: int, n_kpoints: float, n_grid: float, itemsize: int = 8
) -> int:
    """Peak memory of one structure in :func:`kspace_sum` (bytes); in a batch every member
    counts with the largest member's ``n_atoms``, ``n_kpoints`` and ``n_grid`` (padding).

    Counts, per k chunk, the phases, the structure-factor products, one l's kernel; the
    k-point data; the |k|² grid of :func:`gplode.lib.kvectors.selected_kpoints` (``n_grid`` points,
    with its temporaries); and the output.
    """
    width = min(K_CHUNK, n_kpoints)
    chunk = n_atoms * width * 32 + n_atoms * n_species * width * 16 + width * n_channels * itemsize
    kdata = 1.1 * n_kpoints * (8 * 16 + 8 * n_channels)
    return int(chunk + kdata + 32 * n_grid + 2 * n_atoms * n_species * n_channels * itemsize)


def kspace_sum(
    systems,
    species,
    vhat,
    radial,
    k_cutoff: float,
    max_angular: int,
    n_radial: int,
    device,
    real=np.float64,
    workspace: Workspace | None = None,
):
    r"""The k ≠ 0 coefficients of the periodic ``systems``, computed together.

    :param vhat: callable ``|k| -> v̂_p(|k|)`` on arrays of ``xp`` (exact or splined)
    :param radial: callable ``(|k|, l) -> Ĩ_nl(|k|)``, shape ``(n_k, n_radial)``
    :param k_cutoff: k_c in Å⁻¹
    :param device: the :class:`gplode.devices.base.Device` to compute on
    :param real: floating type of the matrix products (phases are formed in float64)
    :param workspace: buffers to reuse (a fresh :class:`Workspace` by default)
    :return: ``(total atoms, len(species), (max_angular+1)**2, n_radial)`` on the device,
        the systems' atoms one after the other
    """
    xp = device.xp
    L, n_species, n_batch = max_angular, len(species), len(systems)
    complex_ = np.complex64 if real == np.float32 else np.complex128
    owner, slot = atom_owners(systems)  # each atom's system and index in it
    n_max = int(slot.max()) + 1
    positions = np.zeros((n_batch, n_max, 3))
    positions[owner, slot] = np.concatenate([system.positions for system in systems])
    kind, present = species_index(np.concatenate([system.numbers for system in systems]), species)
    onehot = np.zeros((n_batch, n_species, n_max))  # padding atoms and other species: 0
    onehot[owner[present], kind[present], slot[present]] = 1.0
    positions, onehot = xp.asarray(positions), xp.asarray(onehot, dtype=complex_)

    cells = np.stack([system.cell for system in systems])
    points = selected_kpoints(cells, sphere_shape(cells, k_cutoff), k_cutoff, xp)
    n_k = np.bincount(device.to_host(points.structure), minlength=n_batch)
    rank = xp.arange(points.structure.size) - xp.asarray(np.cumsum(n_k) - n_k)[points.structure]
    knorm = xp.linalg.norm(points.k, axis=1)
    volumes = xp.asarray([system.volume for system in systems])
    weight = xp.where(points.frequencies[:, 2] > 0, 2.0, 1.0) * 4.0 * np.pi / volumes[points.structure]
    if knorm.size:
        weight = weight * vhat(knorm)
    ylm = real_spherical_harmonics(points.k, L, xp)

    out = xp.zeros((n_batch, n_max * n_species, (L + 1) ** 2 * n_radial), dtype=real)
    workspace = Workspace(xp) if workspace is None else workspace
    for start in range(0, int(n_k.max(initial=0)), K_CHUNK):
        take = xp.nonzero((rank >= start) & (rank < start + K_CHUNK))[0]
        width = min(K_CHUNK, int(n_k.max()) - start)
        slot_k = points.structure[take] * width + rank[take] - start  # (structure, k) slot, padded
        k = xp.zeros((n_batch * width, 3))
        k[slot_k] = points.k[take]
        k = k.reshape(n_batch, width, 3)
        theta = workspace.view("theta", (n_batch, n_max, width), np.float64)
        xp.matmul(positions, k.transpose(0, 2, 1), out=theta)  # k·r_i
        phase = workspace.view("phase", (n_batch, n_max, width), complex_)  # e^{ik·r_i}
        xp.cos(theta, out=phase.real)
        xp.sin(theta, out=phase.imag)
        rho = onehot @ phase  # (batch, species, k)
        s = workspace.view("s", (n_batch, n_max, n_species, width), complex_)
        xp.multiply(phase[:, :, None, :], rho.conj()[:, None, :, :], out=s)
        s = s.reshape(n_batch, n_max * n_species, width)
        parts = (s.real, s.imag)
        for l in range(L + 1):
            # Re[i^l s] = cos(lπ/2) Re s − sin(lπ/2) Im s
            sign = (1.0, -1.0, -1.0, 1.0)[l % 4]
            kernel = workspace.view("kernel", (n_batch * width, 2 * l + 1, n_radial), real)
            kernel.fill(0.0)  # padding slots stay 0
            angular = (sign * weight[take])[:, None] * ylm[take, l * l : (l + 1) ** 2]
            kernel[slot_k] = angular[:, :, None] * radial(knorm[take], l)[:, None, :]
            out[:, :, l * l * n_radial : (l + 1) ** 2 * n_radial] += parts[l % 2] @ kernel.reshape(n_batch, width, -1)
    out = out.reshape(n_batch, n_max, n_species, (L + 1) ** 2, n_radial)
    return out[xp.asarray(owner), xp.asarray(slot)]


class Workspace:
    """Flat work buffers reused from call to call (on a CPU, fresh large temporaries cost
    page faults on first touch: measured ~1.6x slower for a dataset of small cells).

    :param xp: array module of the buffers
    """

    def __init__(self, xp=np):
        self.xp = xp
        self._buffers = {}

    def view(self, name: str, shape, dtype):
        """A C-contiguous array of ``shape`` on buffer ``name`` (contents undefined)."""
        size, dtype = math.prod(shape), np.dtype(dtype)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = self._buffers[name] = self.xp.empty(size, dtype=dtype)
        return buffer[:size].reshape(shape)


class DirectKSum:
    r"""The direct k-sum as a method: memory and cost models, batches, work buffers.

    :param device: :class:`gplode.devices.base.Device` to compute on
    :param vhat: ``(|k|, xp) -> v̂_p(|k|)`` (exact, or a spline)
    :param radial: ``(|k|, l, xp) -> Ĩ_nl(|k|)``, ``(n_k, n_radial)``
    :param k_cutoff: k_c, Å⁻¹
    :param max_angular: L
    :param n_radial: radial functions per l
    :param dtype: ``"float64"`` or ``"float32"`` of the matrix products
    :param derivatives: ``(dvhat, dradial)`` for the gradients: ``(|k|, v̂ values, xp) -> dv̂/dk``
        and ``(|k|, l, xp) -> dĨ_nl/dk``
    """

    name = "direct"

    def __init__(
        self, device, vhat, radial, k_cutoff: float, max_angular: int, n_radial: int, dtype="float64", derivatives=None
    ):
        self.device, self.k_cutoff = device, float(k_cutoff)
        self._vhat, self._radial, self._derivatives = vhat, radial, derivatives
        self.max_angular, self.n_radial = max_angular, n_radial
        self.real = np.float32 if dtype == "float32" else np.float64
        self.n_channels = (max_angular + 1) ** 2 * n_radial
        self._local = threading.local()  # per-thread work buffers (CPU)

    def sizes(self, system) -> tuple[float, ...]:
        """(atoms, expected k-vectors, the three lattice-vector lengths) of ``system``."""
        return (system.n_atoms, half_sphere_count(self.k_cutoff, system.volume), *np.linalg.norm(system.cell, axis=1))

    def grow(self, batch, system, params=None):
        """The summary of a batch with ``system`` added (``batch`` None: a new batch):
        members, and the largest atoms, k-vectors and lattice vector along each axis (all
        members are padded to them, and the k-point grid of :func:`kspace_sum` is the one
        of the longest vectors along each axis)."""
        sizes = self.sizes(system)
        return (1, sizes) if batch is None else (batch[0] + 1, tuple(map(max, batch[1], sizes)))

    def batch_bytes(self, batch, n_species: int) -> int:
        """Peak memory of a batch (bytes) from its :meth:`grow` summary (:func:`memory_bytes`)."""
        count, (n_atoms, n_k, *lengths) = batch
        n_grid = math.prod(sphere_shape_for_lengths(lengths, self.k_cutoff)) / 2  # per member
        itemsize = np.dtype(self.real).itemsize
        return count * memory_bytes(n_atoms, n_species, self.n_channels, n_k, n_grid, itemsize)

    def work(self, system, n_species: int) -> float:
        """Terms of the sum: (atoms) × (k-vectors) × (species) × (channels)."""
        return system.n_atoms * half_sphere_count(self.k_cutoff, system.volume) * n_species * self.n_channels

    def cost(self, system, n_species: int, params=None) -> float:
        """Estimated seconds on the device (:class:`gplode.devices.base.Costs`)."""
        c = self.device.costs
        per_atom_k = c.direct_term * n_species * self.n_channels + c.direct_phase + c.direct_species * n_species
        return system.n_atoms * half_sphere_count(self.k_cutoff, system.volume) * per_atom_k

    def check(self, system, n_species: int, advice: str) -> None:
        """Refuse a structure beyond :data:`MAX_WORK` terms (``ValueError``; ``advice``: what to change)."""
        work = self.work(system, n_species)
        if work > MAX_WORK:
            raise ValueError(
                f"the direct k-sum of a structure of {system.n_atoms} atoms (volume {system.volume:.4g} Å³, "
                f"k_c = {self.k_cutoff:.3g} Å⁻¹) has {work:.2g} terms (about "
                f"{work * self.device.costs.direct_term / 3600:.1f} h): more than the limit of {MAX_WORK:.0e}; "
                + advice
            )

    def compute(self, systems, species, params=None) -> np.ndarray:
        """The k ≠ 0 coefficients of ``systems`` (host array, their atoms one after the other)."""
        device, xp = self.device, self.device.xp
        if device.keep_workspace:  # per thread: threads sharing a calculator get their own
            if getattr(self._local, "workspace", None) is None:
                self._local.workspace = Workspace(xp)
            workspace = self._local.workspace
        else:
            workspace = Workspace(xp)

        def vhat(k):
            return self._vhat(k, xp)

        def radial(k, l):
            return self._radial(k, l, xp)

        values = kspace_sum(
            systems, species, vhat, radial, self.k_cutoff, self.max_angular, self.n_radial, device, self.real, workspace
        )
        return device.to_host(values)
