r"""Mesh parameters of the fast backends, chosen from the requested accuracy.

The mesh pipeline evaluates the same truncated k-sum as the reference backend,
:math:`0 < |k| < k_c` with :math:`k_c` from :func:`gplode.lib.kvectors.default_k_cutoff`, but
obtains the structure factors and the per-atom phase sums through a B-spline
assignment of order P on a mesh of ``shape`` points. Assignment and interpolation alias
every frequency m onto m + qM; after dividing by :math:`\hat K_P` the relative error of a
component at reduced frequency :math:`u = |m|/M` is about
:math:`2\,[u/(1-u)]^P` per axis, and the component itself is weighted by
:math:`e^{-\sigma^2k^2/2}` (relative to the largest component the cell can have). With
``oversampling`` α the mesh is α times the Nyquist size of the k-sphere, so
:math:`u \le 1/(2α)` at :math:`k_c`. :func:`choose_mesh` takes the
cheapest (P, α) whose estimate is below the accuracy; the tests check the real error.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math

import numpy as np
from scipy import fft

from ..lib.bspline import ORDERS, bspline_fourier
from ..lib.kvectors import KPoints, default_k_cutoff, half_sphere_count, selected_kpoints
from ..lib.spherical_harmonics import real_spherical_harmonics, solid_harmonics_gradient
from ..systems import atom_owners
from .corrections import species_index
from .kspace_derivatives import contracted_strain_kernel, strain_rate_kernel

__all__ = [
    "MeshKSum",
    "MeshParameters",
    "choose_mesh",
    "fast_length",
    "round_shape",
]

#: the error estimate is applied with this safety factor (calibrated in the tests)
_SAFETY = 2.0
#: :meth:`MeshKSum.refinements` grows the mesh by this factor per axis and step
_REFINEMENT_STEP = 1.08


@dataclasses.dataclass(frozen=True)
class MeshParameters:
    """Mesh of one periodic cell.

    :param shape: mesh points along the three lattice vectors
    :param order: B-spline order P
    :param k_cutoff: radius k_c of the summed k-sphere, Å⁻¹ (of a batch sharing the mesh: the
        largest of its structures' spheres, for the memory model; each sums its own)
    """

    shape: tuple[int, int, int]
    order: int
    k_cutoff: float

    @property
    def n_points(self) -> int:
        """Total number of mesh points."""
        return int(np.prod(self.shape))

    @property
    def n_half(self) -> int:
        """Points of the half spectrum of a real FFT, M1·M2·(M3//2 + 1)."""
        return self.shape[0] * self.shape[1] * (self.shape[2] // 2 + 1)

    def n_kpoints(self, volume: float) -> float:
        """Expected number of half-sphere points in a cell of ``volume`` Å³."""
        return half_sphere_count(self.k_cutoff, volume)

    def memory_bytes(
        self,
        n_atoms: int,
        n_species: int,
        n_radial: int,
        n_lm: int,
        volume: float,
        itemsize: int = 8,
        n_structures: int = 1,
    ) -> int:
        """Peak memory (bytes) of ``n_structures`` structures sharing this mesh in the mesh
        pipeline, with ``n_atoms`` atoms and cell volumes ``volume`` (Å³) in all.

        Counts the density meshes and their spectra, one channel batch of ``n_radial``
        spectra and meshes (twice, for the FFT work space, plus the copy of its input the
        inverse real FFT makes), the stencils (twice: the
        interpolation keeps its own copy), the selected k-points' data (|k|² on the whole
        half mesh; k, Y_lm, one l of Ĩ_nl and its evaluation, the species prefactors) and
        the output (device and host).
        """
        real, complex_ = itemsize, 2 * itemsize
        meshes = n_structures * n_species * (self.n_points * real + self.n_half * complex_)
        channels = n_structures * n_radial * (2 * self.n_points * real + 3 * self.n_half * complex_)
        stencils = 2 * n_atoms * self.order**3 * (8 + real)
        n_k = 1.1 * self.n_kpoints(volume) + n_structures
        kdata = 9 * self.n_half * n_structures + n_k * (
            8 * (16 + 3 * n_radial) + real * (n_lm + n_radial) + complex_ * n_species
        )
        output = n_atoms * n_species * n_lm * n_radial * (real + 8)
        return int(meshes + channels + stencils + kdata + output)


def _alias_estimate(order: int, oversampling: float, smearing: float, k_cutoff: float, y_ref: float) -> float:
    r"""Largest relative aliasing error over 0 < k ≤ k_c (see module docstring).

    Components are weighted by :math:`e^{-\sigma^2k^2/2}` relative to the largest one a
    cell can have, :math:`e^{-y_{ref}}` (capped at 1).
    """
    k = np.linspace(0.0, k_cutoff, 400)[1:]
    u = k / (2.0 * oversampling * k_cutoff)
    weight = np.minimum(np.exp(y_ref - 0.5 * (smearing * k) ** 2), 1.0)
    return float(np.max(weight * 6.0 * (u / (1.0 - u)) ** order))


@functools.lru_cache(maxsize=256)
def _oversampling(order: int, smearing: float, accuracy: float, k_cutoff: float, y_ref: float = 0.0) -> float:
    """Smallest α (steps of 5 %, at most 16) whose aliasing estimate is below the accuracy.

    It depends on the cell only through ``y_ref`` (see :func:`choose_mesh`), so it is
    computed once per (P, σ, accuracy, k_c, y_ref) rather than for every structure of a dataset.
    """
    alpha = 1.0
    while _alias_estimate(order, alpha, smearing, k_cutoff, y_ref) > _SAFETY * accuracy and alpha < 16:
        alpha *= 1.05
    return alpha


def choose_mesh(
    cell: np.ndarray,
    smearing: float,
    accuracy: float,
    n_atoms: int = 1,
    order: int | None = None,
    k_cutoff: float | None = None,
    *,
    costs,
) -> MeshParameters:
    """Cheapest mesh meeting ``accuracy`` for this cell.

    :param cell: lattice vectors as rows (Å)
    :param smearing: σ in Å
    :param accuracy: target relative RMS error
    :param n_atoms: number of atoms (interpolation cost grows as n_atoms P³)
    :param order: force the B-spline order (default: chosen here)
    :param k_cutoff: radius of the k-sphere, Å⁻¹ (default: from ``accuracy``)
    :param costs: the device's :class:`gplode.devices.base.Costs` (the cost per channel is
        ``mesh_point`` × mesh points + ``mesh_stencil`` × atoms × P³)
    """
    if k_cutoff is None:
        k_cutoff = default_k_cutoff(smearing, accuracy)
    nyquist = (k_cutoff / np.pi * np.linalg.norm(cell, axis=1)).tolist()  # points per axis at α = 1
    # the shortest reciprocal basis vector bounds the cell's smallest |k| from above; when
    # σ is large against the cell, the sum is made of few, strongly damped components, and
    # the aliasing must be small against the largest of them, not against the k = 0 weight
    k_ref = 2 * np.pi * float(np.linalg.norm(np.linalg.inv(cell), axis=0).min())
    y_ref = 0.5 * (smearing * k_ref) ** 2
    y_ref = 0.0 if y_ref < 1.0 else math.ceil(4 * y_ref) / 4  # negligible, or rounded up (cache)
    best = None
    for p in ORDERS if order is None else (order,):
        alpha = _oversampling(p, smearing, accuracy, k_cutoff, y_ref)
        shape = tuple(fast_length(math.ceil(alpha * n) + 1) for n in nyquist)
        cost = costs.mesh_point * math.prod(shape) + costs.mesh_stencil * n_atoms * p**3  # per channel
        if best is None or cost < best[0]:
            best = (cost, shape, p)
    return MeshParameters(best[1], best[2], k_cutoff)


@functools.lru_cache(maxsize=4096)
def fast_length(n: int) -> int:
    """Smallest size ≥ n that real FFTs handle fast (5-smooth)."""
    return int(fft.next_fast_len(n, real=True))


@functools.cache
def _shape_ladder() -> list[int]:
    """Even 7-smooth FFT sizes, each at least 10 % above the previous one."""
    ladder = [4]
    for n in range(6, 8193, 2):
        m = n
        for prime in (2, 3, 5, 7):
            while m % prime == 0:
                m //= prime
        if m == 1 and n >= 1.1 * ladder[-1]:
            ladder.append(n)
    return ladder


def round_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Round every axis up to the next size of a sparse ladder (ratio ~1.1–1.2).

    Cells of similar size then share a mesh and can be batched, for ~15 % more mesh
    points on average (a finer mesh is only more accurate).
    """
    ladder = _shape_ladder()
    return tuple(ladder[bisect.bisect_left(ladder, n)] if n <= ladder[-1] else n for n in shape)


@dataclasses.dataclass
class _Batch:
    """The state :meth:`MeshKSum.compute` and :meth:`MeshKSum.vjp` share for one batch of
    structures (arrays of the device; see :meth:`MeshKSum._setup`)."""

    params: MeshParameters
    n_batch: int
    #: structure of every atom, and the inverse cells (host, ``(n_batch, 3, 3)``)
    owner: object
    inverse: np.ndarray
    #: stencils (indices into the batch of meshes), and their derivatives ``(3, n_atoms, P³)`` or None
    indices: object
    weights: object
    gradients: object
    #: species of every atom (``n_species``: not a neighbour species)
    kind: object
    #: density spectra ``(n_species, n_batch · half spectrum)``
    spectra: object
    kpoints: KPoints
    destination: object = None
    knorm: object = None
    #: per k-point: N (4π/Ω)/K̂², v̂, their product (``real``), the species prefactors, Y_lm and ∇𝒴_lm
    scale: object = None
    vhat: object = None
    base: object = None
    prefactors: object = None
    ylm: object = None
    ylm_gradient: object = None

    def jacobian(self, xp):
        """∂u_d/∂r_e of every atom's mesh coordinates u_d = M_d (r H⁻¹)_d, ``(n_atoms, e, d)``."""
        return xp.asarray(self.inverse * np.asarray(self.params.shape, dtype=float))[self.owner]


class MeshKSum:
    r"""The particle-mesh k-sum as a method, written once over devices (the stages of
    :class:`gplode.devices.base.Stages`): mesh choice, memory and cost models, batches.

    Structures sharing a mesh (shape and B-spline order) go through the stages together:
    structure b's density meshes and channel meshes are the b-th of a batch, its stencil
    indices offset by b·M, its selected k-points (of its own sphere) by b·(half spectrum). Everything after the
    atom positions is computed on the device; the host sends positions and cells and
    receives the coefficients (:meth:`compute`) or the gradients of a weighted sum of them
    with respect to positions and strain (:meth:`vjp`).

    :param device: :class:`gplode.devices.base.Device`
    :param vhat: splined v̂_p, ``(|k|, xp) -> values`` (:class:`gplode.lib.splines.PotentialSpline`)
    :param radial: splined Ĩ_nl, ``(|k|, l, xp) -> (n_k, n_radial)``
    :param hypers: :class:`gplode.hypers.LodeHypers` (smearing, accuracy, mesh overrides, L, dtype)
    :param k_cutoff: k_c, Å⁻¹
    :param n_radial: radial functions per l
    :param derivatives: ``(dvhat, dradial)`` for the gradients: ``(|k|, v̂ values, xp) -> dv̂/dk``
        and ``(|k|, l, xp) -> dĨ_nl/dk``
    """

    name = "mesh"

    def __init__(self, device, vhat, radial, hypers, k_cutoff: float, n_radial: int, derivatives=None):
        self.device, self.hypers, self.k_cutoff, self.n_radial = device, hypers, float(k_cutoff), n_radial
        self._vhat, self._radial, self._derivatives = vhat, radial, derivatives
        self.n_lm = (hypers.max_angular + 1) ** 2
        # dtype="float32": the whole chain in single precision (FFTs in complex64)
        self.real = np.float32 if hypers.dtype == "float32" else np.float64

    def parameters(self, cell: np.ndarray, n_atoms: int = 1, k_cutoff: float | None = None) -> MeshParameters:
        """Mesh of ``cell`` for the k-sphere of radius ``k_cutoff`` (Å⁻¹; default: this
        method's): from ``accuracy`` and the device's costs, or the user's overrides, rounded
        up to the shape ladder when the device rounds shapes (one mesh for similar cells,
        which are then batched)."""
        h = self.hypers
        k_cutoff = self.k_cutoff if k_cutoff is None else float(k_cutoff)
        params = choose_mesh(
            cell,
            h.smearing,
            h.accuracy,
            n_atoms,
            order=h.interpolation_order,
            k_cutoff=k_cutoff,
            costs=self.device.costs,
        )
        if h.mesh_spacing is not None:
            lengths = np.linalg.norm(cell, axis=1)
            shape = tuple(fast_length(math.ceil(n / h.mesh_spacing)) for n in lengths)
            # every k-vector of the sphere needs |m_i| = |k·a_i|/2π < M_i/2
            if any(m <= k_cutoff * n / np.pi for m, n in zip(shape, lengths, strict=True)):
                raise ValueError(
                    f"mesh_spacing={h.mesh_spacing} Å is too coarse for accuracy={h.accuracy}: the k-sphere "
                    f"(k_c = {k_cutoff:.3g} Å⁻¹) needs a spacing below {np.pi / k_cutoff:.3g} Å"
                )
            params = MeshParameters(shape, params.order, k_cutoff)
        if self.device.round_shapes:
            params = MeshParameters(round_shape(params.shape), params.order, k_cutoff)
        return params

    def refinements(self, system, n_species: int, params: MeshParameters):
        """Candidate meshes of ``params``'s k-sphere for ``system``, each more accurate than
        the ones that cost less: every B-spline order on the shape of ``params``, by increasing
        :meth:`cost`; then the highest order on shapes finer along each axis by steps of 8 % up
        to 2.5× (rounded as :meth:`parameters` rounds; each shape once). Steps of 25 %
        overshot: a 512-atom crystal at accuracy 1e-6 needed 45 → 48 points per axis, and
        took 60 (2.4× the points). The lower orders: :meth:`parameters`'s estimate assumes a
        featureless density spectrum, and a crystal's own allowed order 8 where it chose 10
        (4,096-atom NaCl, p = 6, 4e-5, 72³: 1.32 → 1.2 s)."""
        shape = params.shape
        yield from sorted(
            (MeshParameters(shape, order, params.k_cutoff) for order in ORDERS),
            key=lambda trial: self.cost(system, n_species, trial),
        )
        seen = {shape}
        for step in range(1, 13):
            finer = tuple(fast_length(math.ceil(n * _REFINEMENT_STEP**step)) for n in shape)
            if self.device.round_shapes:
                finer = round_shape(finer)
            if finer not in seen:
                seen.add(finer)
                yield MeshParameters(finer, max(ORDERS), params.k_cutoff)

    def grow(self, batch, system, params: MeshParameters):
        """The summary of a batch sharing ``params`` with ``system`` added (``batch`` None: a
        new batch): members, atoms and volume, for :meth:`batch_bytes`."""
        count, n_atoms, volume = (0, 0, 0.0) if batch is None else batch[1:]
        return params, count + 1, n_atoms + system.n_atoms, volume + system.volume

    def batch_bytes(self, batch, n_species: int) -> int:
        """Peak memory of a batch (bytes) from its :meth:`grow` summary
        (:meth:`MeshParameters.memory_bytes`)."""
        params, count, n_atoms, volume = batch
        itemsize = np.dtype(self.real).itemsize
        return params.memory_bytes(n_atoms, n_species, self.n_radial, self.n_lm, volume, itemsize, count)

    def cost(self, system, n_species: int, params: MeshParameters) -> float:
        """Estimated seconds on the device (:class:`gplode.devices.base.Costs`)."""
        return self._cost(system.n_atoms, n_species, params.n_points, params.order)

    def k_cutoff_of(self, system) -> float:
        """The radius of ``system``'s k-sphere (Å⁻¹): its own (chosen by the pipeline), else this method's."""
        return self.k_cutoff if system.k_cutoff is None else system.k_cutoff

    def cost_floor(self, system, n_species: int) -> float:
        """A lower bound of :meth:`cost` whatever mesh :meth:`parameters` chooses for ``system``
        (oversampling α ≥ 1, the lowest order): a cheap test before choosing one."""
        points = math.prod(math.ceil(self.k_cutoff_of(system) / np.pi * n) + 1 for n in system.lengths)
        return self._cost(system.n_atoms, n_species, points, min(ORDERS))

    def _cost(self, n_atoms: int, n_species: int, n_points: int, order: int) -> float:
        c = self.device.costs
        per_channel = c.mesh_point * n_points + c.mesh_stencil * n_atoms * order**3
        return n_species * self.n_lm * self.n_radial * per_channel

    def _setup(self, systems, species, params: MeshParameters, gradient: bool = False) -> _Batch:
        """What :meth:`compute` and :meth:`vjp` share: stencils, density spectra, selected
        k-points and the channel prefactors of a batch (``gradient``: with the derivative
        stencils and the gradients of the solid harmonics)."""
        device, xp, real = self.device, self.device.xp, self.real
        L, n_species, n_batch = self.hypers.max_angular, len(species), len(systems)
        shape, n_points, n_half = params.shape, params.n_points, params.n_half
        cells = np.stack([system.cell for system in systems])
        inverse = np.linalg.inv(cells)
        owner, _ = atom_owners(systems)
        owner = xp.asarray(owner)
        positions = xp.asarray(np.concatenate([system.positions for system in systems]))
        fractional = (xp.einsum("ni,nij->nj", positions, xp.asarray(inverse)[owner]) % 1.0).astype(real)
        if gradient:
            indices, weights, gradients = device.stencil_gradient(fractional, shape, params.order)
        else:
            (indices, weights), gradients = device.stencil(fractional, shape, params.order), None
        indices = indices + (owner * n_points)[:, None]  # into the batch of meshes
        kind, present = species_index(np.concatenate([system.numbers for system in systems]), species)
        kind = xp.asarray(np.where(present, kind, n_species))
        density = device.spread(indices, weights, kind, n_species, (n_batch, *shape))
        # ≈ K̂ ρ_a(k)*, (n_species, n_batch · half spectrum)
        spectra = device.rfftn(density.reshape(n_species * n_batch, *shape)).reshape(n_species, n_batch * n_half)

        kpoints = selected_kpoints(cells, shape, [self.k_cutoff_of(system) for system in systems], xp)
        destination = kpoints.structure * n_half + kpoints.position
        knorm = xp.linalg.norm(kpoints.k, axis=1)
        khat = 1.0
        for d in range(3):
            khat = khat * bspline_fourier(kpoints.frequencies[:, d], params.order, shape[d], xp)
        volumes = xp.asarray([system.volume for system in systems])
        batch = _Batch(params, n_batch, owner, inverse, indices, weights, gradients, kind, spectra, kpoints)
        batch.destination, batch.knorm = destination, knorm
        if knorm.size:  # else: k_c below the smallest |k|, nothing to sum
            # N_mesh (4π/Ω) / K̂², and with v̂ the prefactor of every channel
            scale = n_points * 4.0 * np.pi / volumes[kpoints.structure]
            batch.vhat = self._vhat(knorm, xp)
            batch.base = (scale * batch.vhat / khat**2).astype(real)
            batch.scale = scale / khat**2
            batch.prefactors = batch.base[None, :] * spectra[:, destination]  # (n_species, n_k)
            if gradient:
                ylm, batch.ylm_gradient = solid_harmonics_gradient(kpoints.k, L, xp)
            else:
                ylm = real_spherical_harmonics(kpoints.k, L, xp)
            batch.ylm = ylm.astype(real)
        return batch

    def _channels(self, batch: _Batch):
        """Per l (none without k-points): ``(l, Ĩ_nl at the k-points, fields)``, ``fields``
        iterating over the channels (a, lm) of this l as ``(a, lm, meshes)``, the
        ``n_radial`` channel fields ``IRFFT[G_n]`` ``(n_radial, n_batch · M)``."""
        if not batch.knorm.size:
            return
        device, xp, shape = self.device, self.device.xp, batch.params.shape
        work = device.channel_spectra(self.n_radial, batch.spectra.shape[1], batch.spectra.dtype)

        def fields(l, radial):
            for a in range(batch.spectra.shape[0]):
                for lm in range(l * l, (l + 1) ** 2):
                    device.channel_spectra_into(
                        work, batch.destination, batch.prefactors[a], radial, batch.ylm[:, lm], l
                    )
                    yield a, lm, device.channel_meshes(work, shape)

        for l in range(self.hypers.max_angular + 1):
            radial = self._radial(batch.knorm, l, xp).astype(self.real)
            yield l, radial, fields(l, radial)

    def compute(self, systems, species, params: MeshParameters) -> np.ndarray:
        """The k ≠ 0 coefficients of ``systems`` sharing ``params`` (device array, their atoms
        one after the other), every stage called once per batch (per channel)."""
        device, xp = self.device, self.device.xp
        batch = self._setup(systems, species, params)
        out = xp.zeros((batch.owner.size, len(species), self.n_lm, self.n_radial), dtype=self.real)
        plan = device.prepare_interpolation(batch.indices, batch.weights, len(systems) * params.n_points)
        for _, _, fields in self._channels(batch):
            for a, lm, meshes in fields:
                out[:, a, lm, :] = device.interpolate(meshes, plan).T
        return out

    def jvp(self, systems, species, params: MeshParameters, positions, strain) -> np.ndarray:
        r"""Jacobian–vector product of :meth:`compute` (same ``params``): the change of the
        coefficients along host tangents ``positions`` :math:`\dot r` ``(total atoms, 3)`` and
        ``strain`` :math:`\dot\varepsilon` ``(len(systems), 3, 3)``, without the volume term
        :math:`-\mathrm{tr}(\dot\varepsilon)c` (added by the caller); the exact derivative of the
        mesh approximation, O(N log N).

        Per channel, :math:`\dot c_{ic} = \sum_g\phi_c(g)\dot W_i(g) + \sum_g\dot\phi_c(g)W_i(g)`
        with :math:`\dot W_i = \sum_d\dot u_{id}\partial_dW` (derivative stencils, u the mesh
        coordinates), :math:`\dot\phi_c = \mathrm{IRFFT}[H_c\hat{\dot Q}_a + \dot H_c\hat Q_a]`,
        :math:`\dot Q_a` the spreading of :math:`\dot W` and :math:`\dot H_c = -N\frac{4\pi}{\Omega}i^l
        \sum_{ab}\dot\varepsilon_{ab}k_b\partial_{k_a}G_c/\hat K^2` (fractional coordinates, hence
        stencils and meshes, are invariant under strain): one more inverse FFT and interpolation
        per channel than :meth:`compute`.

        :return: device ``(total atoms, n_species, (L+1)**2, n_radial)``
        """
        device, xp, real = self.device, self.device.xp, self.real
        n_species, n_batch, n_radial = len(species), len(systems), self.n_radial
        shape, n_points = params.shape, params.n_points
        batch = self._setup(systems, species, params, gradient=True)
        n_atoms = batch.owner.size
        out = xp.zeros((n_atoms, n_species, self.n_lm, n_radial), dtype=real)
        if not batch.knorm.size:
            return out
        rate = xp.einsum("ne,ned->nd", xp.asarray(np.asarray(positions, dtype=float)), batch.jacobian(xp))  # u̇
        moving = sum(rate[:, d, None] * batch.gradients[d] for d in range(3)).astype(real)  # Ẇ
        plan = device.prepare_interpolation(batch.indices, batch.weights, n_batch * n_points)
        moving_plan = device.prepare_interpolation(batch.indices, moving, n_batch * n_points)
        density = device.spread(batch.indices, moving, batch.kind, n_species, (n_batch, *shape))  # Q̇_a
        spectra = device.rfftn(density.reshape(n_species * n_batch, *shape)).reshape(n_species, -1)
        spectra = spectra[:, batch.destination]
        strain_rate = xp.asarray(np.asarray(strain, dtype=float))[batch.kpoints.structure]  # ε̇ per k-point
        dv = self._derivatives[0](batch.knorm, batch.vhat, xp)
        work = device.channel_spectra(n_radial, batch.spectra.shape[1], batch.spectra.dtype)
        for l, radial, fields in self._channels(batch):
            # Σ_ab ε̇_ab k_b ∂_a G, (n_k, 2l+1, n_radial)
            strained = strain_rate_kernel(*self._derivative_parts(batch, l, radial, dv), strain_rate, xp)
            phase = 1j**l
            for a, lm, meshes in fields:
                out[:, a, lm, :] += device.interpolate(meshes, moving_plan).T
                work[:, batch.destination] = phase * (
                    (batch.base * batch.ylm[:, lm])[None, :] * radial.T * spectra[a][None, :]
                    - batch.scale[None, :] * strained[:, lm - l * l, :].T * batch.spectra[a, batch.destination][None, :]
                )
                out[:, a, lm, :] += device.interpolate(device.channel_meshes(work, shape), plan).T
        return out

    def vjp(self, systems, species, params: MeshParameters, weights) -> tuple[np.ndarray, np.ndarray]:
        r"""Gradients of :math:`\mathcal L = \sum` ``weights`` · :meth:`compute` (same
        ``params``): the exact derivatives of the mesh approximation, in O(N log N).

        With the channel fields :math:`\phi_c = \mathrm{IRFFT}[H_c\hat Q_a]` of :meth:`compute`
        and :math:`\Lambda_c` the spreading of :math:`\lambda_{\cdot c}` (the adjoint of
        interpolation), :math:`\mathcal L = \sum_c\langle\Lambda_c, \phi_c\rangle
        = \sum_a\langle\Psi_a, Q_a\rangle`, :math:`\hat\Psi_a = \sum_{c\in a}\overline{H_c}\,
        \hat\Lambda_c` on the selected k-points. An atom's gradient is the derivative
        stencil's interpolation of :math:`\sum_c\lambda_{ic}\phi_c` (as centre) plus of
        :math:`\Psi_{a_i}` (as neighbour). Under strain the stencils, Q and K̂ are fixed
        (fractional coordinates), Ω scales with det(1+ε) and k → k(1+ε)^{-T}, so
        :math:`\partial\mathcal L/\partial\varepsilon_{ab} = -\delta_{ab}\mathcal L -
        \sum_c\frac{1}{N}\sum_k w_k\,\mathrm{Re}[N\frac{4\pi}{\Omega}i^l\,k_b\partial_{k_a}G_c
        \,\hat Q_a\overline{\hat\Lambda_c}/\hat K^2]`
        (:func:`~gplode.methods.kspace_derivatives.strain_kernel`; w = 2 off the m3 = 0 plane
        of the half spectrum), a sum over the k-points with no further FFT.
        Per channel: the forward pass's inverse FFT, three derivative interpolations, the
        spreading and one FFT of ``n_radial`` meshes; then one inverse FFT per species.

        :param weights: :math:`\partial\mathcal L/\partial c`, host or device array of the shape
            of :meth:`compute`'s result
        :return: ``(positions, strain)`` host arrays: :math:`\partial\mathcal L/\partial r`
            ``(total atoms, 3)`` and :math:`\partial\mathcal L/\partial\varepsilon`
            ``(len(systems), 3, 3)`` for r → r(1+ε), H → H(1+ε) (rows), ``strain[b, a, c]``
            :math:`= \partial\mathcal L/\partial\varepsilon_{ac}`, not symmetrised
        """
        device, xp, real = self.device, self.device.xp, self.real
        n_radial, n_species, n_batch = self.n_radial, len(species), len(systems)
        shape, n_points = params.shape, params.n_points
        batch = self._setup(systems, species, params, gradient=True)
        n_atoms, n_k = batch.owner.size, batch.knorm.size
        expected = (n_atoms, n_species, self.n_lm, n_radial)
        if np.shape(weights) != expected:
            raise ValueError(f"weights must have the shape of the coefficients {expected}, got {np.shape(weights)}")
        mesh_gradient = xp.zeros((n_atoms, 3))  # ∂L/∂u, u the mesh coordinates
        energy, virial = xp.zeros(n_k), xp.zeros((n_k, 3, 3))  # per k-point: L and Σ k_b ∂_a terms
        if n_k:
            lam = xp.asarray(weights, dtype=real)
            plans = [device.prepare_interpolation(batch.indices, g, n_batch * n_points) for g in batch.gradients]
            dv = self._derivatives[0](batch.knorm, batch.vhat, xp)
            # w_k / N: the inverse real FFT counts a point off the m3 = 0 plane twice
            half = xp.where(batch.kpoints.frequencies[:, 2] > 0, 2.0, 1.0) / n_points
            scaled = batch.scale[None, :] * batch.spectra[:, batch.destination]  # N (4π/Ω) Q̂_a/K̂²
            adjoint = xp.zeros((n_species, n_k), dtype=batch.spectra.dtype)  # Ψ̂_a at the k-points
            plan = device.prepare_interpolation(batch.indices, batch.weights, n_batch * n_points)
            for l, radial, fields in self._channels(batch):
                phase = 1j**l
                overlaps = xp.zeros((n_k, 2 * l + 1, n_radial))
                for a, lm, meshes in fields:
                    values = lam[:, a, lm, :]  # (n_atoms, n_radial)
                    for d, gradient_plan in enumerate(plans):  # centre term
                        mesh_gradient[:, d] += (device.interpolate(meshes, gradient_plan) * values.T).sum(axis=0)
                    spread = device.spread_values(xp.ascontiguousarray(values.T), plan, n_batch * n_points)  # Λ_c
                    transform = device.rfftn(spread.reshape(n_radial * n_batch, *shape)).reshape(n_radial, -1)
                    transform = transform[:, batch.destination]  # Λ̂_c (n_radial, n_k)
                    kernel = phase * batch.base * batch.ylm[:, lm]  # H_c / Ĩ_n
                    adjoint[a] += xp.conj(kernel) * (radial.T * transform).sum(axis=0)
                    # (w/N) Re[N (4π/Ω) i^l Q̂_a conj(Λ̂_c) / K̂²], (n_radial, n_k)
                    overlap = half * xp.real(phase * scaled[a] * xp.conj(transform))
                    energy += batch.vhat * batch.ylm[:, lm] * (radial.T * overlap).sum(axis=0)
                    overlaps[:, lm - l * l, :] += overlap.T
                parts = self._derivative_parts(batch, l, radial, dv)
                virial += contracted_strain_kernel(*parts, overlaps, xp)
            # neighbour term: Ψ_a = IRFFT[Ψ̂_a], interpolated with the derivative stencils
            spectrum = xp.zeros_like(batch.spectra)
            spectrum[:, batch.destination] = adjoint
            psi = device.irfftn(spectrum.reshape(n_species * n_batch, *shape[:2], -1), shape).reshape(n_species, -1)
            rows = xp.arange(n_atoms)
            for d, gradient_plan in enumerate(plans):
                at = xp.concatenate([device.interpolate(psi, gradient_plan), xp.zeros((1, n_atoms), dtype=psi.dtype)])
                mesh_gradient[:, d] += at[batch.kind, rows]  # atoms of no neighbour species: 0
        # chain rule: u_d = M_d (r H^{-1})_d
        positions = xp.einsum("nd,ned->ne", mesh_gradient, batch.jacobian(xp))
        structure = batch.kpoints.structure
        totals = xp.stack(
            [
                xp.bincount(structure, weights=column, minlength=n_batch)
                for column in (energy, *virial.reshape(n_k, 9).T)
            ]
        )
        strain = -xp.eye(3)[None] * totals[0][:, None, None] - totals[1:].T.reshape(n_batch, 3, 3)
        return device.to_host(positions), device.to_host(strain)

    def _derivative_parts(self, batch: _Batch, l, radial, dv) -> tuple:
        """The arguments of the strain kernels (:mod:`gplode.methods.kspace_derivatives`) for one l."""
        xp = self.device.xp
        dg = dv[:, None] * radial + batch.vhat[:, None] * self._derivatives[1](batch.knorm, l, xp)
        g = batch.vhat[:, None] * radial
        ylm, gradient = batch.ylm[:, l * l : (l + 1) ** 2], batch.ylm_gradient[:, :, l * l : (l + 1) ** 2]
        return batch.kpoints.k, batch.knorm, g, dg, ylm, gradient, l
