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
from typing import NamedTuple

import numpy as np

from ..lib.kvectors import half_sphere_count, selected_kpoints, sphere_shape, sphere_shape_for_lengths
from ..lib.spherical_harmonics import real_spherical_harmonics, solid_harmonics_gradient
from ..systems import atom_owners
from .accuracy import single_precision_roundoff, single_precision_roundoff_of
from .corrections import species_index, species_slots
from .kspace_derivatives import contracted_strain_kernel, strain_kernel, strain_rate_kernel

__all__ = [
    "DirectKSum",
    "Workspace",
    "chunk_width",
    "kspace_jvp",
    "kspace_sum",
    "kspace_vjp",
    "memory_bytes",
    "pair_gradients",
]

#: k-points per structure handled at once: bounds the (atoms, species, k) arrays
K_CHUNK = 2048
#: the fewest k-points a chunk takes where the device caps its size (:func:`chunk_width`)
K_CHUNK_MIN = 512
#: largest amount of work accepted, in (atom, k-vector, species, channel) terms (over an
#: hour on two cores): beyond it the direct sum is refused rather than run for hours
MAX_WORK = 1e13


def chunk_width(padded_atoms: int, n_kpoints: float, chunk_points: int | None = None) -> int:
    """k-points per structure in one chunk of :func:`kspace_sum` for a batch of ``padded_atoms``
    atoms (members × the largest member's atoms) and at most ``n_kpoints`` per member:
    :data:`K_CHUNK`, fewer where a chunk would hold more than ``chunk_points`` (atom, k-point)
    pairs (the device's :attr:`~gplode.devices.base.Device.chunk_points`; ``None``: no cap),
    not below :data:`K_CHUNK_MIN`."""
    width = K_CHUNK
    if chunk_points is not None:
        width = min(K_CHUNK, max(K_CHUNK_MIN, int(chunk_points) // max(int(padded_atoms), 1)))
    return int(max(min(width, n_kpoints), 1))


def memory_bytes(
    n_atoms: int,
    n_species: int,
    n_channels: int,
    n_kpoints: float,
    n_grid: float,
    n_table: float,
    itemsize: int = 8,
    values_itemsize: int = 8,
    batch_atoms: int | None = None,
    chunk_points: int | None = None,
) -> int:
    """Peak memory of one structure in :func:`kspace_sum` (bytes); in a batch every member
    counts with the largest member's ``n_atoms``, ``n_kpoints`` and ``n_grid`` (padding).

    Counts, per k chunk, the phases (complex128 from the phase tables of ``n_table`` entries per
    atom, their two gathers and the frequencies; a complex64 copy for float32 values), the
    structure-factor products (complex in the values' precision, ``values_itemsize`` bytes per
    real, and their real and imaginary parts), one l's kernel (``itemsize``); the k-point data;
    the |k|² grid of :func:`gplode.lib.kvectors.selected_kpoints` (``n_grid`` points, with its
    temporaries); and the output. A chunk's width is :func:`chunk_width`'s for ``batch_atoms``
    padded atoms in the batch (default: ``n_atoms``, a batch of one) and the device's
    ``chunk_points``.
    """
    width = chunk_width(n_atoms if batch_atoms is None else batch_atoms, n_kpoints, chunk_points)
    phases = 80 + 16 * n_table / max(width, 1) + (8 if values_itemsize == 4 else 0)  # per atom and k
    products = 4 * values_itemsize  # s and its two parts, per atom, species and k
    chunk = n_atoms * width * (phases + n_species * products) + width * n_channels * itemsize
    kdata = 1.1 * n_kpoints * (8 * 16 + 8 * n_channels)
    return int(chunk + kdata + 32 * n_grid + 2 * n_atoms * n_species * n_channels * itemsize)


def _re_i_power(n: int, parts):
    r""":math:`\Re[i^n s]` from ``parts = (Re s, Im s)``: ``(sign, part)`` with Re[i^n s] = sign · part."""
    return (1.0, -1.0, -1.0, 1.0)[n % 4], parts[n % 2]


class _PaddedBatch:
    r"""Periodic systems padded to common atoms and k-points, for every pass of the direct sum
    (values, strain rows, vector–Jacobian products): padded positions, each structure's
    neighbour species in slots of its own (``n_species`` slots, ``kinds``: their species;
    :meth:`species_rows` and :meth:`slot_rows` map to and from the calculator's order), their one-hot,
    the k-points (:func:`gplode.lib.kvectors.selected_kpoints`), their weights
    :math:`w = (1\text{ or }2)\,4\pi/\Omega`, :math:`\hat v_p(k)`, :math:`Y_{lm}(\hat k)`, and the
    k chunks.

    :param vhat: callable ``|k| -> v̂_p(|k|)``
    :param k_cutoff: k_c in Å⁻¹, one for all systems or one per system
    :param dvhat: ``(|k|, v̂ values, xp) -> dv̂/dk``: also :math:`d\hat v_p/dk` and
        :math:`\nabla\mathcal Y_{lm}(\hat k)`, for the derivatives
    """

    def __init__(self, systems, species, vhat, k_cutoff, max_angular, device, complex_, dvhat=None):
        xp = self.xp = device.xp
        self.device = device
        self.n_batch, self.n_global, self.complex = len(systems), len(species), complex_
        self.owner, self.slot = atom_owners(systems)  # each atom's system and index in it
        self.n_max = n_max = int(self.slot.max()) + 1
        positions = np.zeros((self.n_batch, n_max, 3))
        positions[self.owner, self.slot] = np.concatenate([system.positions for system in systems])
        kind, present = species_index(np.concatenate([system.numbers for system in systems]), species)
        # each structure's neighbour species in slots of its own (in the calculator's order): a
        # batch of NaCl and KCl cells sums over two slots, not over Na, K and Cl (one always 0)
        owner = self.owner[present]
        local, self.n_species = species_slots(owner, kind[present], self.n_batch, self.n_global)  # slots
        self.kinds = np.full((self.n_batch, self.n_species), self.n_global)  # each slot's species (n_global: none)
        self.kinds[owner, local] = kind[present]
        onehot = np.zeros((self.n_batch, self.n_species, n_max))  # padding atoms and other species: 0
        onehot[owner, local, self.slot[present]] = 1.0
        self.positions, self.onehot = xp.asarray(positions), xp.asarray(onehot, dtype=complex_)
        self.onehot_real = xp.asarray(onehot)

        cells = np.stack([system.cell for system in systems])
        self.inverse = np.linalg.inv(cells)
        self._tables = None  # the phase tables of the float64 passes (_phase_tables)
        points = self.points = selected_kpoints(cells, sphere_shape(cells, k_cutoff), k_cutoff, xp)
        self.n_k = np.bincount(device.to_host(points.structure), minlength=self.n_batch)
        self.rank = xp.arange(points.structure.size) - xp.asarray(np.cumsum(self.n_k) - self.n_k)[points.structure]
        self.knorm = xp.linalg.norm(points.k, axis=1)
        # the distinct norms: a cell's shells hold many vectors (up to 48 in a cubic cell), and
        # Ĩ_nl(|k|) and v̂_p(|k|) are evaluated once per norm
        self.norms, self.shell = xp.unique(self.knorm, return_inverse=True)
        volumes = xp.asarray([system.volume for system in systems])
        self.weight = xp.where(points.frequencies[:, 2] > 0, 2.0, 1.0) * 4.0 * np.pi / volumes[points.structure]
        self.vhat = vhat(self.norms)[self.shell] if self.knorm.size else self.knorm
        self._radial_tables = {}  # radial(|k|, l) at the norms, per (radial, l)
        self.dvhat = None
        if dvhat is not None:
            self.ylm, self.solid_gradient = solid_harmonics_gradient(points.k, max_angular, xp)
            self.dvhat = dvhat(self.knorm, self.vhat, xp) if self.knorm.size else self.knorm
        else:
            self.ylm = real_spherical_harmonics(points.k, max_angular, xp)

    def rows(self, padded):
        """The atoms' rows of an array ``(n_batch, n_max, ...)``, the systems' atoms in order."""
        xp = self.xp
        return padded[xp.asarray(self.owner), xp.asarray(self.slot)]

    def species_rows(self, padded):
        """:meth:`rows` of an array ``(n_batch, n_max, n_slots, ...)`` with the species in the
        calculator's order, ``(n_atoms, n_global, ...)`` (species a structure lacks: 0)."""
        xp = self.xp
        local = self.rows(padded)
        out = xp.zeros((local.shape[0], self.n_global, *local.shape[2:]), dtype=local.dtype)
        kinds = self.kinds[self.owner]  # (n_atoms, n_slots)
        atom, slot = np.nonzero(kinds < self.n_global)
        out[xp.asarray(atom), xp.asarray(kinds[atom, slot])] = local[xp.asarray(atom), xp.asarray(slot)]
        return out

    def slot_rows(self, rows):
        """Inverse of :meth:`species_rows`: ``(n_atoms, n_global, ...)`` → ``(n_atoms, n_slots, ...)``."""
        xp = self.xp
        rows = xp.asarray(rows)
        padded = xp.concatenate([rows, xp.zeros_like(rows[:, :1])], axis=1)  # the empty slots' zeros
        return padded[xp.arange(rows.shape[0])[:, None], xp.asarray(self.kinds[self.owner])]

    def padded_atoms(self, rows):
        """Inverse of :meth:`rows`: ``(n_atoms, ...)`` → ``(n_batch, n_max, ...)`` (padding 0)."""
        xp = self.xp
        out = xp.zeros((self.n_batch, self.n_max, *rows.shape[1:]), dtype=rows.dtype)
        out[xp.asarray(self.owner), xp.asarray(self.slot)] = xp.asarray(rows)
        return out

    def chunks(self, workspace, phases: bool = False):
        r"""Yield the k chunks: :class:`_Chunk` with the structure factors :math:`\rho_a(k)`, the
        real and imaginary parts of :math:`s_{ia} = e^{ik\cdot r_i}\rho_a(k)^*` (contiguous, for
        the matrix products) and, with ``phases``, the phases :math:`e^{ik\cdot r_i}`."""
        xp, n_batch, n_max, n_species = self.xp, self.n_batch, self.n_max, self.n_species
        real = np.finfo(self.complex).dtype  # of s: float32 with complex64
        most = int(self.n_k.max(initial=0))  # k-points of the batch's largest sphere
        step = chunk_width(n_batch * n_max, most, self.device.chunk_points)
        for start in range(0, most, step):
            take = xp.nonzero((self.rank >= start) & (self.rank < start + step))[0]
            width = min(step, most - start)
            slot_k = self.points.structure[take] * width + self.rank[take] - start  # (structure, k) slot, padded
            free = xp.ones(n_batch * width, dtype=bool)
            free[slot_k] = False
            k = None
            if phases:  # the derivatives' k·ṙ
                k = xp.zeros((n_batch * width, 3))
                k[slot_k] = self.points.k[take]
                k = k.reshape(n_batch, width, 3)
            # the phases in float64 from the tables, ρ summed from them in float64 (a crystal's
            # ρ_a(k) off its Bragg peaks is a near-cancelling sum, whose float32 accumulation
            # doubled the round-off of the coefficients), s in the values' precision
            phase = wide = self._phases(take, slot_k, width, workspace)
            if real == np.float32:
                phase = workspace.view("phase", wide.shape, np.complex64)
                phase[...] = wide
            # ρ_a = Σ_j onehot_aj e^{ik·r_j}: one real product over the (Re, Im) pairs
            rho = self.device.matmul(self.onehot_real, wide.view(np.float64)).view(np.complex128)
            rho = rho.astype(self.complex, copy=False)
            # s = e^{ik·r_i} ρ_a(k)^*: one complex product, then its parts contiguous for the products
            # (8 cells × 54 atoms × 2 species × 1,007 k in float64: 6.2 ms against 11.3 ms for
            # Re s = cos Re ρ + sin Im ρ and Im s = sin Re ρ − cos Im ρ species by species)
            s = workspace.view("s", (n_batch, n_max, n_species, width), self.complex)
            xp.multiply(phase[:, :, None, :], xp.conj(rho)[:, None, :, :], out=s)
            s_re = workspace.view("s_re", s.shape, real)
            s_im = workspace.view("s_im", s.shape, real)
            s_re[...], s_im[...] = s.real, s.imag
            parts = (s_re.reshape(n_batch, n_max * n_species, width), s_im.reshape(n_batch, n_max * n_species, width))
            yield _Chunk(take, slot_k, xp.nonzero(free)[0], width, k, phase if phases else None, rho, parts)

    def _phases(self, take, slot_k, width: int, workspace):
        r""":math:`e^{ik\cdot r_i}` in complex128 for the k-points ``take`` at their padded slots
        ``slot_k`` (padding slots and atoms: k·r = 0), ``(n_batch, n_max, width)``:
        :math:`e^{ik\cdot r} = e^{2\pi i(m_1f_1 + m_2f_2)}\,e^{2\pi i m_3f_3}` (fractional coordinates
        f, integer frequencies m), one product of two entries of :meth:`_phase_tables`
        (:meth:`~gplode.devices.base.Device.take_columns`), accurate to a few ulp, for both
        precisions of the values (on the 2-core machine float64 cos and sin of every k·r cost
        ~4× more; float32 ones, from k·r reduced in float64 and corrected to first order,
        made 400 small cells at accuracy 1e-4 ~1.25× slower)."""
        xp, n_batch, n_max = self.xp, self.n_batch, self.n_max
        (plane, line), reach = self._phase_tables()
        m = xp.zeros((n_batch * width, 3), dtype=np.int64)
        m[slot_k] = xp.rint(self.points.frequencies[take]).astype(np.int64)
        m = m.reshape(n_batch, width, 3)
        in_plane = (m[:, :, 0] + reach[0]) * (2 * reach[1] + 1) + m[:, :, 1] + reach[1]  # (n_batch, width)
        shape = (n_batch, n_max, width)
        phase = self.device.take_columns(
            plane.reshape(n_batch, n_max, -1), in_plane, workspace.view("phase", shape, np.complex128)
        )
        line_part = workspace.view("phase_line", shape, np.complex128)
        phase *= self.device.take_columns(line.reshape(n_batch, n_max, -1), m[:, :, 2], line_part)
        return phase

    def _phase_tables(self):
        r""":math:`e^{2\pi i(m_1f_1 + m_2f_2)}` over the batch's (m₁, m₂) plane, ``(n_batch · n_max,
        (2r₁+1)(2r₂+1))``, and :math:`e^{2\pi i m_3f_3}` over its m₃ ≥ 0 line (the half spectrum),
        ``(n_batch · n_max, r₃+1)``, of every padded atom (r: the largest |m_d| of the batch), and r;
        built on first use, each entry from its own reduced angle."""
        if self._tables is None:
            xp = self.xp
            fractional = xp.matmul(self.positions, xp.asarray(self.inverse)).reshape(-1, 3)
            reach = [int(r) for r in self.device.to_host(xp.abs(xp.rint(self.points.frequencies)).max(axis=0))]

            def table(d, low):
                turns = fractional[:, d, None] * xp.arange(low, reach[d] + 1)[None, :]
                return xp.exp((2j * np.pi) * (turns - xp.rint(turns)))

            plane = (table(0, -reach[0])[:, :, None] * table(1, -reach[1])[:, None, :]).reshape(fractional.shape[0], -1)
            self._tables = (plane, table(2, 0)), reach
        return self._tables

    def padded_k(self, workspace, name, values, chunk, dtype):
        """``values`` of the chunk's k-points ``(n_take, ...)`` in the padded layout
        ``(n_batch, width, prod(...))`` (padding slots 0)."""
        columns = math.prod(values.shape[1:])
        out = workspace.view(name, (self.n_batch * chunk.width, columns), dtype)
        out[chunk.padding] = 0.0
        out[chunk.slot_k] = values.reshape(values.shape[0], columns)
        return out.reshape(self.n_batch, chunk.width, columns)

    def radial_of(self, take, radial, l: int):
        """``radial(|k|, l)`` (e.g. :math:`\tilde I_{nl}`) of the k-points ``take``, ``(n_take, n_radial)``:
        evaluated once per distinct norm of the batch (on first use for ``radial`` and ``l``)."""
        return self._radial_table(radial, l)[self.shell[take]]

    def _radial_table(self, radial, l: int):
        """``radial(|k|, l)`` at the batch's distinct norms, ``(n_norms, n_radial)`` (computed once)."""
        table = self._radial_tables.get((radial, l))
        if table is None:
            table = self._radial_tables[(radial, l)] = radial(self.norms, l)
        return table

    def angular_factors(self, chunk, dtype):
        r"""For :meth:`write_kernel`: :math:`w(k)\hat v_p Y_{lm}(\hat k)` of every slot of the chunk,
        ``((L+1)², n_batch · width)`` in ``dtype`` (padding slots 0), and each slot's shell (the
        padding: one past the last)."""
        xp, slots = self.xp, self.n_batch * chunk.width
        factors = xp.zeros((self.ylm.shape[1], slots), dtype=dtype)
        if chunk.take.size == self.knorm.size:  # one chunk: all the k-points, in order (no gathers)
            factors[:, chunk.slot_k] = self.ylm.T * (self.weight * self.vhat)
        else:
            factors[:, chunk.slot_k] = self.ylm[chunk.take].T * (self.weight * self.vhat)[chunk.take]
        shell = xp.full(slots, self.norms.size)
        shell[chunk.slot_k] = self.shell[chunk.take]
        return factors, shell

    def write_kernel(self, out, factors, radial, l: int, scale: float = 1.0):
        r"""``scale`` × :math:`w(k)\hat v_p\tilde I_{nl}Y_{lm}` of a chunk's slots into ``out``, a
        ``(n_batch, 2l+1, n_radial, width)`` view (padding slots 0; ``factors``:
        :meth:`angular_factors`): k is the contiguous axis, so that the product is one pass over
        long rows (the matrix products take the transposed operand as it is)."""
        angular, shell = factors
        n_batch, width = out.shape[0], out.shape[3]
        table = self._radial_tables.get((radial, l, "padded"))
        if table is None:  # Ĩ_nl at the norms and a zero row, (n_radial, n_norms + 1)
            table = self.xp.zeros((out.shape[2], self.norms.size + 1), dtype=out.dtype)
            table[:, :-1] = self._radial_table(radial, l).T
            self._radial_tables[(radial, l, "padded")] = table
        radial_part = table[:, shell]  # (n_radial, slots)
        if scale != 1.0:
            radial_part *= scale
        self.xp.multiply(
            angular[l * l : (l + 1) ** 2].reshape(2 * l + 1, n_batch, 1, width).transpose(1, 0, 2, 3),
            radial_part.reshape(1, -1, n_batch, width).transpose(2, 0, 1, 3),
            out=out,
        )

    def kernel(self, take, radial, l: int, ilm=None, scale: float = 1.0):
        r"""``scale`` × :math:`w(k)\hat v_p\tilde I_{nl}Y_{lm}` of the k-points ``take``, ``(n_take, 2l+1, n_radial)``
        (``ilm``: :math:`\tilde I_{nl}` there, if already evaluated)."""
        angular = (scale * self.weight[take] * self.vhat[take])[:, None] * self.ylm[take, l * l : (l + 1) ** 2]
        return angular[:, :, None] * (self.radial_of(take, radial, l) if ilm is None else ilm)[:, None, :]

    def _derivative_parts(self, take, radial, dradial, l: int, ilm=None):
        """Arguments of the strain kernels for the k-points ``take`` and one l."""
        knorm = self.knorm[take]
        ilm = self.radial_of(take, radial, l) if ilm is None else ilm
        g = self.vhat[take][:, None] * ilm
        dg = self.dvhat[take][:, None] * ilm + self.vhat[take][:, None] * self.radial_of(take, dradial, l)
        lm = slice(l * l, (l + 1) ** 2)
        return self.points.k[take], knorm, g, dg, self.ylm[take, lm], self.solid_gradient[take, :, lm], l

    def contracted_strain_kernel(self, take, radial, dradial, l: int, weights, ilm=None):
        r""":math:`w(k)\sum_{mn}` ``weights`` :math:`k_b\partial_{k_a}G_{nlm}` of the k-points ``take``,
        ``(n_take, 3, 3)``."""
        parts = self._derivative_parts(take, radial, dradial, l, ilm)
        return self.weight[take][:, None, None] * contracted_strain_kernel(*parts, weights, self.xp)

    def strain_rate_kernel(self, take, radial, dradial, l: int, rate, ilm=None):
        r""":math:`w(k)\sum_{ab}\dot\varepsilon_{ab}k_b\partial_{k_a}G_{nlm}` of the k-points ``take``
        (``rate``: their structures' :math:`\dot\varepsilon`), ``(n_take, 2l+1, n_radial)``."""
        parts = self._derivative_parts(take, radial, dradial, l, ilm)
        return self.weight[take][:, None, None] * strain_rate_kernel(*parts, rate, self.xp)

    def strain_kernel(self, take, radial, dradial, l: int, ilm=None):
        r""":math:`w(k)\,k_b\partial_{k_a}G_{nlm}` of the k-points ``take``, ``(n_take, 3, 3, 2l+1, n_radial)``."""
        kernel = strain_kernel(*self._derivative_parts(take, radial, dradial, l, ilm), self.xp)
        return self.weight[take][:, None, None, None, None] * kernel


class _Chunk(NamedTuple):
    take: object  # indices of the chunk's k-points in the batch's k-point arrays
    slot_k: object  # their (structure, k) slots in the padded layout
    padding: object  # the other slots
    width: int
    k: object  # (n_batch, width, 3), padding 0 (with the phases only, else None)
    phase: object  # (n_batch, n_max, width), or None; a work buffer, as parts: valid until the next chunk
    rho: object  # (n_batch, n_species, width)
    parts: tuple  # (Re s, Im s), contiguous (n_batch, n_max * n_species, width)


def kspace_sum(batch: _PaddedBatch, radial, max_angular: int, n_radial: int, real, workspace, strain_dradial=None):
    r"""The k ≠ 0 coefficients of a padded batch, or (``strain_dradial`` given) the k-sum part
    of their strain derivatives :math:`-\sum_k w\,\Re[i^l k_b\partial_{k_a}G\,s_{ia}(k)]`.

    :param radial: callable ``(|k|, l) -> Ĩ_nl(|k|)``, shape ``(n_k, n_radial)``
    :param real: floating type of the matrix products (phases are formed in float64)
    :param strain_dradial: ``(|k|, l) -> dĨ_nl/dk``: compute the strain rows instead
    :return: ``(n_batch, n_max, n_species, [3, 3,] (L+1)**2, n_radial)`` on the device (the
        batch's species slots)
    """
    xp, L, matmul = batch.xp, max_angular, batch.device.matmul
    extra = 1 if strain_dradial is None else 9
    out = xp.zeros((batch.n_batch, batch.n_max * batch.n_species, extra, (L + 1) ** 2 * n_radial), dtype=real)
    for chunk in batch.chunks(workspace):
        factors = batch.angular_factors(chunk, real) if strain_dradial is None else None
        for parity in (0, 1):  # Re[i^l s] is ±Re s for even l, ±Im s for odd l: one product each
            degrees = range(parity, L + 1, 2)
            if not degrees:
                continue
            columns = sum(extra * (2 * l + 1) * n_radial for l in degrees)
            start = 0
            if strain_dradial is None:  # (batch, channels, k): see write_kernel
                kernel = workspace.view("kernel", (batch.n_batch, columns, chunk.width), real)
                for l in degrees:
                    block = kernel[:, start : start + (2 * l + 1) * n_radial]
                    block = block.reshape(batch.n_batch, 2 * l + 1, n_radial, chunk.width)
                    batch.write_kernel(block, factors, radial, l, scale=_re_i_power(l, chunk.parts)[0])
                    start += (2 * l + 1) * n_radial
                kernel = kernel.transpose(0, 2, 1)
            else:  # (batch, k, channels), each l's kernel written in place
                kernel = workspace.view("kernel", (batch.n_batch * chunk.width, columns), real)
                kernel[chunk.padding] = 0.0
                for l in degrees:
                    width = 9 * (2 * l + 1) * n_radial
                    sign = _re_i_power(l, chunk.parts)[0]
                    values = -sign * batch.strain_kernel(chunk.take, radial, strain_dradial, l)
                    kernel[chunk.slot_k, start : start + width] = values.reshape(values.shape[0], width)
                    start += width
                kernel = kernel.reshape(batch.n_batch, chunk.width, columns)
            product = matmul(chunk.parts[parity], kernel)
            start = 0
            for l in degrees:
                width = (2 * l + 1) * n_radial
                block = product[:, :, start : start + extra * width].reshape(batch.n_batch, -1, extra, width)
                out[:, :, :, l * l * n_radial : l * l * n_radial + width] += block
                start += extra * width
    shape = (batch.n_batch, batch.n_max, batch.n_species) + (() if extra == 1 else (3, 3)) + ((L + 1) ** 2, n_radial)
    return out.reshape(shape)


def kspace_jvp(
    batch: _PaddedBatch, positions, strain, radial, dradial, max_angular: int, n_radial: int, real, workspace
):
    r"""Jacobian–vector product of the k ≠ 0 coefficients of a padded batch: their change
    :math:`\dot c = \sum_j \partial c/\partial r_j\cdot\dot r_j
    + \sum_{ab}\partial c/\partial\varepsilon_{ab}\dot\varepsilon_{ab}`, without the volume term
    :math:`-\mathrm{tr}(\dot\varepsilon)\,c` (added by the caller):

    .. math::

        \dot c^{(i)}_{anlm} = \sum_k w G\,\Re\big[i^{l+1}e^{ik\cdot r_i}\big((k\cdot\dot r_i)\rho_a^*
        - \dot\rho_a^*\big)\big] - \sum_k w\,\Re\big[i^l s_{ia}\big]\sum_{ab}\dot\varepsilon_{ab}k_b\partial_{k_a}G,
        \qquad \dot\rho_a = \sum_{j\in a}(k\cdot\dot r_j)e^{ik\cdot r_j}

    O(N N_k), as the values.

    :param positions: :math:`\dot r` on the device, ``(n_batch, n_max, 3)``
    :param strain: :math:`\dot\varepsilon` on the device, ``(n_batch, 3, 3)``
    :return: ``(n_batch, n_max, n_species, (L+1)**2, n_radial)`` on the device
    """
    xp, L, matmul = batch.xp, max_angular, batch.device.matmul
    n_batch, n_max, n_species = batch.n_batch, batch.n_max, batch.n_species
    out = xp.zeros((n_batch, n_max * n_species, (L + 1) ** 2 * n_radial), dtype=real)
    for chunk in batch.chunks(workspace, phases=True):
        along = positions @ chunk.k.transpose(0, 2, 1)  # k·ṙ_i, (batch, atoms, k)
        rho_dot = batch.onehot @ (along * chunk.phase)  # (batch, species, k)
        s_dot = chunk.phase[:, :, None, :] * (
            along[:, :, None, :] * chunk.rho.conj()[:, None, :, :] - rho_dot.conj()[:, None, :, :]
        )
        s_dot = s_dot.reshape(n_batch, n_max * n_species, chunk.width)
        parts = chunk.parts
        parts_dot = (xp.ascontiguousarray(s_dot.real), xp.ascontiguousarray(s_dot.imag))
        rate = strain[batch.points.structure[chunk.take]]  # ε̇ of each k-point's structure
        for l in range(L + 1):
            columns = slice(l * l * n_radial, (l + 1) ** 2 * n_radial)
            ilm = batch.radial_of(chunk.take, radial, l)
            sign, part = _re_i_power(l + 1, parts_dot)
            kernel = batch.padded_k(workspace, "kernel", sign * batch.kernel(chunk.take, radial, l, ilm), chunk, real)
            out[:, :, columns] += matmul(part, kernel)
            sign, part = _re_i_power(l, parts)
            strained = batch.strain_rate_kernel(chunk.take, radial, dradial, l, rate, ilm)
            out[:, :, columns] -= matmul(part, batch.padded_k(workspace, "kernel", sign * strained, chunk, real))
    return out.reshape(n_batch, n_max, n_species, (L + 1) ** 2, n_radial)


def kspace_vjp(batch: _PaddedBatch, weights, radial, dradial, max_angular: int, n_radial: int, real, workspace):
    r"""Vector–Jacobian product of the k ≠ 0 coefficients of a padded batch (DESIGN.md §1–2).

    For :math:`\mathcal L = \sum_{i,a,nlm}\lambda^{(i)}_{anlm}c^{(i)}_{anlm}`, with
    :math:`T_{ia}(k) = \sum_{nlm}\lambda^{(i)}_{anlm}\,i^l w G_{nlm}(k)` and the adjoint
    structure factor :math:`P_a(k) = \sum_i T_{ia}(k)e^{ik\cdot r_i}`:

    .. math::

        \frac{\partial\mathcal L}{\partial r_j} = \sum_k k\,\Big(
        \Re\big[i\,e^{ik\cdot r_j}\textstyle\sum_a T_{ja}\rho_a^*\big]
        - \Re\big[i\,e^{-ik\cdot r_j}P_{a_j}(k)\big]\Big),\qquad
        \frac{\partial\mathcal L}{\partial\varepsilon_{ab}} = -\delta_{ab}\,\lambda\cdot c
        - \sum_k\sum_{nlm} Z_{nlm}(k)\,w\,k_b\partial_{k_a}G_{nlm}

    with :math:`Z_{nlm}(k) = \sum_{ia}\lambda^{(i)}_{anlm}\Re[i^l s_{ia}(k)]`. O(N N_k) work, O(N) memory.

    :param weights: λ on the device, ``(n_batch, n_max, n_species, (L+1)**2, n_radial)``
    :return: ``(positions (n_batch, n_max, 3), strain (n_batch, 3, 3))`` on the device
    """
    xp, L, matmul = batch.xp, max_angular, batch.device.matmul
    n_batch, n_max, n_species = batch.n_batch, batch.n_max, batch.n_species
    lam = weights.reshape(n_batch, n_max * n_species, (L + 1) ** 2 * n_radial).astype(real, copy=False)
    forces = xp.zeros((n_batch, n_max, 3))
    strain = xp.zeros((n_batch, 3, 3))
    lam_dot_c = xp.zeros(n_batch)
    virial = xp.zeros((batch.knorm.size, 9))  # per k-point, summed per structure at the end
    for chunk in batch.chunks(workspace, phases=True):
        parts = chunk.parts
        t = xp.zeros((n_batch, n_max * n_species, chunk.width), dtype=batch.complex)
        for l in range(L + 1):
            columns = slice(l * l * n_radial, (l + 1) ** 2 * n_radial)
            lam_l = lam[:, :, columns]
            ilm = batch.radial_of(chunk.take, radial, l)
            kernel = batch.padded_k(workspace, "kernel", batch.kernel(chunk.take, radial, l, ilm), chunk, real)
            product = matmul(lam_l, kernel.transpose(0, 2, 1))  # Σ_c λ_c w G_c, (batch, atoms·species, k)
            if l % 2 == 0:
                t.real += (1.0, -1.0)[(l // 2) % 2] * product
            else:
                t.imag += (1.0, -1.0)[(l // 2) % 2] * product
            sign, part = _re_i_power(l, parts)
            z = sign * matmul(part.transpose(0, 2, 1), lam_l)  # (batch, k, channels)
            lam_dot_c += xp.einsum("bkc,bkc->b", z, kernel)
            z_take = z.reshape(n_batch * chunk.width, 2 * l + 1, n_radial)[chunk.slot_k]  # the chunk's k-points
            virial[chunk.take] += batch.contracted_strain_kernel(chunk.take, radial, dradial, l, z_take, ilm).reshape(
                -1, 9
            )
        t = t.reshape(n_batch, n_max, n_species, chunk.width)
        centre = chunk.phase * xp.einsum("bjak,bak->bjk", t, chunk.rho.conj())  # e^{ik·r_j} Σ_a T_ja ρ_a*
        adjoint = xp.einsum("bjak,bjk->bak", t, chunk.phase)  # P_a(k)
        neighbour = chunk.phase.conj() * (batch.onehot.transpose(0, 2, 1) @ adjoint)  # e^{-ik·r_j} P_{a_j}
        forces += (neighbour.imag - centre.imag) @ chunk.k
    for x in range(9):
        strain.reshape(n_batch, 9)[:, x] -= xp.bincount(batch.points.structure, weights=virial[:, x], minlength=n_batch)
    strain[:, [0, 1, 2], [0, 1, 2]] -= lam_dot_c[:, None]
    return forces, strain


def pair_gradients(system, vhat, radial, k_cutoff: float, max_angular: int, n_radial: int, blocks, device, batch=None):
    r"""Yield ``(centres, D)`` for each block of ``centres``: :math:`D_{ij} = \partial
    c^{(i)}_{a\,nlm}/\partial r_j` for j ∈ a, j ≠ i, of one periodic system (the same for every
    species a; the centre row is :math:`-\sum_{j\in a, j\ne i}D_{ij}`):

    .. math::

        D_{ij} = -\sum_{0<|k|<k_c} w(k)\,G_{nlm}(k)\,\Re\big[i^{l+1}e^{ik\cdot(r_i-r_j)}\big]\,k

    The k-points, phases and kernels :math:`k\,w\,G` are formed once for all blocks.

    :param blocks: arrays of centre indices
    :param batch: the :class:`_PaddedBatch` of ``[system]`` to use (``vhat`` and ``k_cutoff`` then
        unused), e.g. one with another kernel (:class:`gplode.methods.truncated.TruncatedKSum`)
    :return: ``D`` as host arrays ``(len(centres), n_atoms, 3, (L+1)**2, n_radial)`` (i = j entries 0)
    """
    xp, L = device.xp, max_angular
    if batch is None:
        batch = _PaddedBatch([system], np.zeros(0, dtype=np.int64), vhat, k_cutoff, L, device, np.complex128)
    n, n_k = system.n_atoms, int(batch.n_k[0])
    phase = xp.exp(1j * (batch.positions[0] @ batch.points.k.T))  # (n, k)
    # k_α w G_c with the sign of Re[i^{l+1} ·], grouped by the part (Re or Im) each l takes:
    # two matrix products per k chunk and block, (k, 3, channels of the group)
    groups = [[l for l in range(L + 1) if (l + 1) % 2 == part] for part in (0, 1)]
    kernels = [
        xp.concatenate(
            [
                _re_i_power(l + 1, (1, 1))[0] * batch.kernel(xp.arange(n_k), radial, l).reshape(n_k, 1, -1)
                for l in group
            ],
            axis=2,
        )
        * batch.points.k[:, :, None]
        if group
        else None
        for group in groups
    ]
    for centres in blocks:
        c = len(centres)
        out = xp.zeros((c * n, 3, (L + 1) ** 2 * n_radial))
        for start in range(0, n_k, K_CHUNK):
            k = slice(start, min(start + K_CHUNK, n_k))
            pair = (phase[xp.asarray(centres), None, k] * phase[None, :, k].conj()).reshape(c * n, -1)
            for part, group in enumerate(groups):
                if not group:
                    continue
                values = xp.ascontiguousarray(pair.imag if part else pair.real)  # BLAS-ready
                product = (values @ kernels[part][k].reshape(k.stop - k.start, -1)).reshape(c * n, 3, -1)
                offset = 0
                for l in group:
                    width = (2 * l + 1) * n_radial
                    out[:, :, l * l * n_radial : (l + 1) ** 2 * n_radial] -= product[:, :, offset : offset + width]
                    offset += width
        out = device.to_host(out).reshape(c, n, 3, (L + 1) ** 2, n_radial)
        out[np.arange(c), np.asarray(centres)] = 0.0
        yield centres, out


class Workspace:
    """Flat work buffers reused from call to call (on a CPU, fresh large temporaries cost
    page faults on first touch: measured ~1.6x slower for a dataset of small cells).

    :param xp: array module of the buffers
    """

    def __init__(self, xp=np):
        self.xp = xp
        self._buffers = {}

    def view(self, name: str, shape, dtype):
        """A C-contiguous array of ``shape`` on buffer ``name`` of ``dtype`` (contents undefined;
        a buffer per name and type: batches of both precisions alternate in a dataset)."""
        size, dtype = math.prod(shape), np.dtype(dtype)
        buffer = self._buffers.get((name, dtype))
        if buffer is None or buffer.size < size:
            buffer = self._buffers[(name, dtype)] = self.xp.empty(size, dtype=dtype)
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
    :param values_dtype: that of the values' pass (:meth:`compute`), if not ``dtype``: float32
        products cost ~0.6× (the phases' and element-wise work per atom and k-vector 11 against
        19 ns on the 2-core machine; measured round-off 3–6e-7 of the coefficients' RMS)
    :param single_roundoff: with ``values_dtype``, the largest predicted round-off of a structure
        (:func:`gplode.methods.accuracy.single_precision_roundoff`) whose values run in it;
        the others' run in ``dtype``
    """

    name = "direct"

    def __init__(
        self,
        device,
        vhat,
        radial,
        k_cutoff: float,
        max_angular: int,
        n_radial: int,
        dtype="float64",
        derivatives=None,
        values_dtype=None,
        single_roundoff: float = np.inf,
    ):
        self.device, self.k_cutoff = device, float(k_cutoff)
        self._vhat, self._radial, self._derivatives = vhat, radial, derivatives
        self.max_angular, self.n_radial = max_angular, n_radial
        self.real = np.float32 if dtype == "float32" else np.float64
        self._values_real = self.real if values_dtype is None else np.dtype(values_dtype).type
        self.single_roundoff = float(single_roundoff)
        self.n_channels = (max_angular + 1) ** 2 * n_radial
        self._local = threading.local()  # per-thread work buffers (CPU)

    def sizes(self, system) -> tuple[float, ...]:
        """(atoms, expected k-vectors, k_c × the three lattice-vector lengths, bytes of a float of
        its values) of ``system``."""
        k_cutoff = self.k_cutoff_of(system)
        lengths = (k_cutoff * n for n in system.lengths)
        itemsize = np.dtype(self.values_real(system)).itemsize
        return (system.n_atoms, half_sphere_count(k_cutoff, system.volume), *lengths, itemsize)

    def k_cutoff_of(self, system) -> float:
        """The radius of ``system``'s k-sphere (Å⁻¹): its own (chosen by the pipeline), else this sum's."""
        return self.k_cutoff if system.k_cutoff is None else system.k_cutoff

    def values_real(self, system):
        """The floating type of ``system``'s values: ``values_dtype``, unless its predicted
        round-off there exceeds ``single_roundoff`` (then ``dtype``; batches are grouped by it)."""
        return self._values_real if self._single(single_precision_roundoff(system)) else self.real

    def roundoff(self, n_atoms: int, gain: float | None) -> float:
        """The predicted relative RMS round-off of the values of a structure of ``n_atoms`` atoms
        and round-off gain ``gain``: where they run in float32 (:meth:`values_real`),
        :func:`~gplode.methods.accuracy.single_precision_roundoff_of`, else 0 (float64)."""
        predicted = single_precision_roundoff_of(n_atoms, gain)
        return predicted if np.dtype(self._values_real).itemsize == 4 and self._single(predicted) else 0.0

    def _single(self, roundoff: float) -> bool:
        """Whether values of this predicted float32 round-off run in ``values_dtype``."""
        return self._values_real == self.real or roundoff <= self.single_roundoff

    def grow(self, batch, system, params=None):
        """The summary of a batch with ``system`` added (``batch`` None: a new batch):
        members, and the largest atoms, k-vectors and lattice vector along each axis (all
        members are padded to them, and the k-point grid of :func:`kspace_sum` is the one
        of the largest k_c × length along each axis)."""
        sizes = self.sizes(system)
        return (1, sizes) if batch is None else (batch[0] + 1, tuple(map(max, batch[1], sizes)))

    def batch_bytes(self, batch, n_species: int) -> int:
        """Peak memory of a batch (bytes) from its :meth:`grow` summary (:func:`memory_bytes`)."""
        count, (n_atoms, n_k, *reach, values_itemsize) = batch
        grid = sphere_shape_for_lengths(reach, 1.0)
        n_grid = math.prod(grid) / 2  # per member
        itemsize = np.dtype(self.real).itemsize
        n_table = (grid[0] + 1) * (grid[1] + 1) + grid[2] // 2 + 1  # the phase tables' plane and line
        return count * memory_bytes(
            n_atoms,
            n_species,
            self.n_channels,
            n_k,
            n_grid,
            n_table,
            itemsize,
            values_itemsize,
            count * n_atoms,
            self.device.chunk_points,
        )

    def work(self, system, n_species: int) -> float:
        """Terms of the sum: (atoms) × (k-vectors) × (species) × (channels)."""
        return system.n_atoms * half_sphere_count(self.k_cutoff_of(system), system.volume) * n_species * self.n_channels

    def cost(self, system, n_species: int, params=None) -> float:
        """Estimated seconds on the device (:class:`gplode.devices.base.Costs`; the phases' cost
        by the precision of the structure's values, :meth:`values_real`)."""
        c = self.device.costs
        phase = c.direct_phase if self.values_real(system) == np.float32 else c.direct_phase_double
        per_atom_k = c.direct_term * n_species * self.n_channels + phase + c.direct_species * n_species
        return system.n_atoms * half_sphere_count(self.k_cutoff_of(system), system.volume) * per_atom_k

    def check(self, system, n_species: int, advice: str) -> None:
        """Refuse a structure beyond :data:`MAX_WORK` terms (``ValueError``; ``advice``: what to change)."""
        work = self.work(system, n_species)
        if work > MAX_WORK:
            raise ValueError(
                f"the direct k-sum of a structure of {system.n_atoms} atoms (volume {system.volume:.4g} Å³, "
                f"k_c = {self.k_cutoff_of(system):.3g} Å⁻¹) has {work:.2g} terms (about "
                f"{work * self.device.costs.direct_term / 3600:.1f} h): more than the limit of {MAX_WORK:.0e}; "
                + advice
            )

    def _workspace(self) -> Workspace:
        """The work buffers of this thread (kept between calls on devices that want it)."""
        if not self.device.keep_workspace:
            return Workspace(self.device.xp)
        if getattr(self._local, "workspace", None) is None:  # per thread: threads sharing a calculator
            self._local.workspace = Workspace(self.device.xp)
        return self._local.workspace

    def _callables(self):
        xp = self.device.xp
        return (
            lambda k: self._vhat(k, xp),
            lambda k, l: self._radial(k, l, xp),
            lambda k, l: self._derivatives[1](k, l, xp),
        )

    def _batch(self, systems, species, gradients: bool = False, real=None) -> _PaddedBatch:
        complex_ = np.complex64 if (real or self.real) == np.float32 else np.complex128
        dvhat = self._derivatives[0] if gradients else None
        vhat = self._callables()[0]
        k_cutoffs = np.array([self.k_cutoff_of(system) for system in systems])
        return _PaddedBatch(systems, species, vhat, k_cutoffs, self.max_angular, self.device, complex_, dvhat)

    def compute(self, systems, species, params=None) -> np.ndarray:
        """The k ≠ 0 coefficients of ``systems`` (device array, their atoms one after the other)."""
        real = max((self.values_real(system) for system in systems), key=lambda t: np.dtype(t).itemsize)
        batch = self._batch(systems, species, real=real)
        _, radial, _ = self._callables()
        values = kspace_sum(batch, radial, self.max_angular, self.n_radial, real, self._workspace())
        return batch.species_rows(values)

    def strain_rows(self, systems, species) -> np.ndarray:
        r"""The k-sum part of :math:`\partial c^{(i)}_{anlm}/\partial\varepsilon_{xy}` (without
        :math:`-\delta_{xy}c`), host ``(n_atoms, n_species, 3, 3, (L+1)**2, n_radial)``."""
        batch = self._batch(systems, species, gradients=True)
        _, radial, dradial = self._callables()
        rows = kspace_sum(batch, radial, self.max_angular, self.n_radial, self.real, self._workspace(), dradial)
        return self.device.to_host(batch.species_rows(rows))

    def vjp(self, systems, species, params, weights):
        """:func:`kspace_vjp` of ``systems`` with weights ``(n_atoms, n_species, (L+1)**2, n_radial)``
        (host or device): host ``(positions (n_atoms, 3), strain (n_systems, 3, 3))``."""
        batch = self._batch(systems, species, gradients=True)
        _, radial, dradial = self._callables()
        lam = batch.padded_atoms(batch.slot_rows(weights))
        forces, strain = kspace_vjp(
            batch, lam, radial, dradial, self.max_angular, self.n_radial, self.real, self._workspace()
        )
        return self.device.to_host(batch.rows(forces)), self.device.to_host(strain)

    def jvp(self, systems, species, params, positions, strain) -> np.ndarray:
        """:func:`kspace_jvp` of ``systems`` with host tangents ``positions`` ``(n_atoms, 3)`` and
        ``strain`` ``(n_systems, 3, 3)``: device ``(n_atoms, n_species, (L+1)**2, n_radial)``."""
        batch = self._batch(systems, species, gradients=True)
        _, radial, dradial = self._callables()
        xp = self.device.xp
        tangent = kspace_jvp(
            batch,
            batch.padded_atoms(np.asarray(positions, dtype=float)),
            xp.asarray(np.asarray(strain, dtype=float)),
            radial,
            dradial,
            self.max_angular,
            self.n_radial,
            self.real,
            self._workspace(),
        )
        return batch.species_rows(tangent)

    def pair_gradients(self, system, blocks):
        """:func:`pair_gradients` of ``system`` for the blocks of centres ``blocks``."""
        vhat, radial, _ = self._callables()
        k_cutoff = self.k_cutoff_of(system)
        return pair_gradients(system, vhat, radial, k_cutoff, self.max_angular, self.n_radial, blocks, self.device)
