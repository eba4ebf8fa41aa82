r"""Free-space structures (molecules, clusters) in O(N log N): the particle mesh of a windowed
kernel in a zero-padded periodic box (DESIGN.md §3).

The pair sum of :mod:`gplode.methods.pair_sum` needs the potential of each atom only out to
:math:`R = D + r_b` (D: the structure's diameter, the largest interatomic distance; r_b: the
reach of the radial basis). With the windowed kernel :math:`v^W_p = v_p W`
(:class:`gplode.potentials.WindowedPowerLaw`: W = 1 on [0, R] and 0 beyond :math:`R_W`, both
to within ε) and an orthorhombic box of edges :math:`L_d \ge E_d + r_b + R_W` (:math:`E_d` the
structure's extent along axis d), no atom's basis sees another atom's image, and the periodic
sum of :math:`v^W_p` equals the free-space sum, for every p:

.. math::

    c^{(i)}_{anlm} = \frac{4\pi}{\Omega}\sum_{0<|k|<k_c}\hat v^W_p(k)\tilde I_{nl}(k)Y_{lm}(\hat k)
    \Re\big[i^l e^{ik\cdot r_i}\rho_a(k)^*\big] + \delta_{l0}\frac{4\pi}{\Omega}N_a\hat v^W_p(0)
    \frac{\tilde I_{n0}(0)}{\sqrt{4\pi}} - \delta_{l0}\delta_{a a_i}(1 - w_c)\,c^{\mathrm{center}}_n

(:math:`\hat v^W_p(0)` is finite: the k = 0 term is always kept). The j = i term of the sum is
the centre's own contribution :math:`c^{\mathrm{center}}_n` (W = 1 over the basis), so with the
last term the centre is weighted by :math:`w_c` exactly as in
:func:`~gplode.methods.pair_sum.free_space_coefficients`. The k ≠ 0 part is
:class:`gplode.methods.mesh.MeshKSum` with :math:`\hat v_p` replaced by a spline of
:math:`\hat v^W_p`; the last two terms are :func:`gplode.methods.corrections.periodic_corrections`
with the windowed kernel.

Range split (the default for large structures, chosen per structure by the cost model):
:math:`v^\sigma_p = u_p + v^{\sigma'}_p` with the short-range
:math:`u_p = v^\sigma_p - v^{\sigma'}_p` (:class:`gplode.potentials.ShortRangePowerLaw`,
σ' = ``split`` × σ, :data:`SPLITS`), which falls off as a Gaussian of width σ' and needs no
window, in a box of edges :math:`E_d + r_b + R_u` only (:math:`R_u` its reach: the weight
beyond it is :data:`_SHORT_TOLERANCE` × the level's accuracy of the whole), at the k-sphere of
σ; and the long-range :math:`v^{\sigma'}_p`, windowed as above in the box of edges
:math:`E_d + r_b + R_W`, at the k-sphere of σ' (σ/σ' times smaller: a mesh σ'/σ times coarser
per axis). Each level is a :class:`MeshKSum` with its own mesh and k = 0 term; the two sums add
up to the one-level sum. For p = 0 (a Gaussian: no far field) the short-range level with
:math:`v_0` itself is the whole. :meth:`FreeSpaceMesh.box` takes the cheapest of one level and
the splits by :meth:`FreeSpaceMesh.cost`. Measured on a 20,001-atom water droplet (p = 1,
accuracy 1e-5, 2 shared cores, one after the other): one level (270³, float64) 178 s, 5.8 GiB,
error 0.003 of the accuracy; split σ' = 4σ (levels 135×128² and 90³, float32) 18.7 s,
0.7 GiB, error 0.069 of the accuracy (``benchmarks/bench_geometries.py``).

Accuracy (relative RMS error against the pair sum, ``accuracy``): the k-sphere, B-spline order and
mesh of each level come from the periodic mesh's model (:func:`gplode.methods.mesh.choose_mesh`,
with the level's σ), for an accuracy loosened by the ratio of the coefficients' scale to the
mesh error's (:meth:`FreeSpaceMesh.mesh_accuracy`: the far field of p ≤ 3 dwarfs the smeared
cores; the windowed kernel decays as :math:`e^{-\sigma^2k^2/2}` like :math:`\hat v_p`, because the
window's width w is chosen so that its edge's spectrum, damped as :math:`e^{-w^2k^2/2}`, is
:data:`WINDOW_DAMPING` below it at :math:`k_c`), the reach r_b from the basis' tail
(:meth:`~gplode.basis.RadialBasis.tail_mass`), ε and the splines far below ``accuracy``.
From ``accuracy`` = :data:`SINGLE_PRECISION_ACCURACY` up the meshes run in float32 (FFTs in
complex64, about twice as fast; measured round-off 3–7e-7 of the coefficients' RMS).
Kernels are cached by their (rounded-up) radius: structures of similar diameters share them.

Gradients (:meth:`FreeSpaceMesh.vjp`, :meth:`FreeSpaceMesh.jvp`): the mesh's exact derivatives
in the atom positions (:meth:`MeshKSum.vjp`); the free-space strain r → r(1+ε) moves the atoms
only, :math:`\partial\mathcal L/\partial\varepsilon = \sum_j(r_j - \bar r)\otimes\partial\mathcal
L/\partial r_j` (:math:`\bar r` the centroid: origin-independent, and equal to
:func:`~gplode.methods.pair_sum.free_space_vjp`'s, whose gradients sum to zero exactly).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from scipy.spatial.distance import cdist

from ..lib.kvectors import default_k_cutoff
from ..lib.splines import UniformQuinticSpline
from ..potentials import ShortRangePowerLaw, SmearedPowerLaw, WindowedPowerLaw, kernel_reach
from ..systems import System
from .accuracy import SINGLE_PRECISION_ACCURACY
from .corrections import center_corrections, periodic_corrections
from .mesh import MeshKSum, MeshParameters

__all__ = [
    "MAX_MESH_ACCURACY",
    "MESH_COST_FACTOR",
    "SINGLE_PRECISION_COST",
    "PAIR_SUM_COST",
    "WINDOW_DAMPING",
    "SPLITS",
    "FreeBox",
    "FreeLevels",
    "FreeSpaceMesh",
    "diameter",
    "pair_sum_cost",
]

#: at k_c, the spectrum of the window's edge is damped by e^{-(w² − σ²)k_c²/2} = this relative
#: to the smeared core's e^{-σ²k_c²/2} (the edge's amplitude, ∝ R² v_p(R), can exceed the core's)
WINDOW_DAMPING = 1e-4
#: ε of the window (1 − W on [0, R], W beyond R_W) and the tail of the basis beyond r_b,
#: relative to ``accuracy``
_WINDOW_TOLERANCE = 1e-3
_REACH_TOLERANCE = 1e-3
#: the short-range kernel's weight beyond its reach, relative to the level's accuracy: its
#: images add at most ~ρ ε û(0) to a potential of the far field's scale (p > 0) or of ρ û(0)
_SHORT_TOLERANCE = 1e-2
#: error of the v̂^W spline at its mid-points, relative to max|v̂^W| = v̂^W(0), relative to ``accuracy``
_SPLINE_TOLERANCE = 1e-4
#: kernels are shared by structures whose R rounds up to the same step of this ratio
_RADIUS_RATIO = 1.05
#: kernels kept per calculator
_KERNEL_CACHE = 16
#: loosest accuracy the mesh is chosen for (:meth:`FreeSpaceMesh.mesh_accuracy`); it binds for
#: large clusters (a 20,000-atom water droplet at p = 1 has accuracy × ratio ≈ 1e-2): measured
#: there, the error against the pair sum rose from 0.033 to 0.069 of the accuracy (1e-5) from a
#: bound of 1e-3 to this one, for a short-range mesh 135×128² instead of 150³
MAX_MESH_ACCURACY = 1e-2
#: the ratio of :meth:`FreeSpaceMesh.mesh_accuracy` is divided by this: the periodic model is
#: less conservative on coarse meshes (measured: err/accuracy up to 1.6 without it, at a ratio of 56)
_RATIO_SAFETY = 10.0
#: centres sampled to estimate the scale of the coefficients
_SAMPLE = 256
#: seconds per (pair, channel) of the pair sum on the CPU (measured on the 2-core development
#: machine: free_space_coefficients, GTO, L = 4, n = 6, one species, 2,000 atoms: 12.7–16.3 s;
#: water droplets, two species, 300–2,000 atoms: 0.91–1.04 × this)
PAIR_SUM_COST = 2e-8
#: the mesh's cost model (:meth:`MeshKSum.cost`, calibrated on periodic cells) against the time
#: measured for free-space levels on the 2-core machine (water droplets of 300–20,000 atoms, two
#: levels of 60³–135³, a loaded machine): float64 meshes 1.8–3.1×, float32 1.0–2.2×
MESH_COST_FACTOR = 2.5
#: × this for float32 meshes (:data:`SINGLE_PRECISION_ACCURACY`)
SINGLE_PRECISION_COST = 0.6
#: the σ'/σ a range split may take (:meth:`FreeSpaceMesh.box` takes the cheapest, or none)
SPLITS = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0)


def pair_sum_cost(n_atoms: int, n_channels: int) -> float:
    """Estimated seconds of :func:`~gplode.methods.pair_sum.free_space_coefficients` of
    ``n_atoms`` atoms with ``n_channels`` = n_species × (L+1)² × n_radial channels (CPU)."""
    return PAIR_SUM_COST * n_atoms**2 * n_channels


def diameter(positions: np.ndarray) -> float:
    """D: the largest distance (Å) between two of ``positions`` ``(n, 3)`` (0 for one atom).

    Attained between vertices of the convex hull (Qhull); all pairs when there are few
    points or the hull is degenerate (planar, linear).
    """
    positions = np.asarray(positions, dtype=float)
    points = positions
    if positions.shape[0] > 64:
        from scipy.spatial import ConvexHull, QhullError

        try:
            points = positions[ConvexHull(positions).vertices]
        except (QhullError, ValueError):  # flat or collinear: take the bounding box diagonal's bound
            span = positions.max(axis=0) - positions.min(axis=0)
            if positions.shape[0] > 4096:
                return float(np.linalg.norm(span))
    best = 0.0
    for start in range(0, points.shape[0], 1024):
        block = points[start : start + 1024]
        d2 = ((block[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)
        best = max(best, float(d2.max(initial=0.0)))
    return math.sqrt(best)


@dataclasses.dataclass(frozen=True)
class FreeBox:
    """The periodic box of one level of a free-space structure's mesh (:class:`FreeLevels`).

    :param cell: the box, lattice vectors as rows (diagonal), Å
    :param shift: added to the positions to place them in the box, Å, ``(3,)``
    :param radius: the reach of the level's kernel, Å: R of the window (≥ D + r_b, rounded up to
        share kernels) for the long-range level, the reach of the short-range kernel otherwise
    :param width: w of the window, Å (0 for the short-range level: no window)
    :param mesh: the mesh parameters of the box (its k-sphere k_c)
    :param accuracy: the accuracy the mesh was chosen for (:meth:`FreeSpaceMesh.mesh_accuracy`)
    :param smearing: σ of the level's kernel, Å: the long-range level's (σ' of a split, else σ);
        for the short-range level the σ' of its long-range partner (σ for p = 0: v_0 itself)
    :param short: whether this is the short-range level
    """

    cell: np.ndarray
    shift: np.ndarray
    radius: float
    width: float
    mesh: MeshParameters
    accuracy: float
    smearing: float = 0.0
    short: bool = False

    @property
    def volume(self) -> float:
        """Ω of the box, Å³."""
        return float(np.prod(np.diag(self.cell)))


@dataclasses.dataclass(frozen=True)
class FreeLevels:
    """The levels of a free-space structure's mesh (module docstring), computed one after the
    other and summed.

    :param levels: the :class:`FreeBox` of each level: one long-range level (no split), a
        short-range and a long-range level (range split at ``split``), or one short-range
        level (p = 0)
    :param split: σ'/σ of the range split, or None
    """

    levels: tuple[FreeBox, ...]
    split: float | None = None


class _Kernel:
    """A kernel's transform and its splines on [0, k_c] (``(|k|, xp) -> values`` for :class:`MeshKSum`)."""

    def __init__(self, potential, k_cutoff: float, tolerance: float, step: float):
        self.potential = potential
        self._step = step
        self.spline = UniformQuinticSpline(potential.kspace, 0.0, k_cutoff, step, tolerance, scale="all")
        self.k_cutoff = k_cutoff
        self._tolerance = tolerance
        self._derivative = None

    def __call__(self, k, xp):
        return self.spline(k, xp=xp)

    def derivative(self, k, values, xp):
        """dv̂/dk at ``k`` (``values``, v̂ there, unused: the signature of the mesh's ``dvhat``)."""
        if self._derivative is None:  # built when gradients are first asked for
            self._derivative = UniformQuinticSpline(
                self.potential.kspace_derivative, 0.0, self.k_cutoff, self._step, self._tolerance, scale="all"
            )
        return self._derivative(k, xp=xp)


class FreeSpaceMesh:
    r"""Free-space coefficients on the particle mesh of a windowed kernel (module docstring).

    :param device: :class:`gplode.devices.base.Device`
    :param potential: :class:`gplode.potentials.SmearedPowerLaw`
    :param basis: :class:`gplode.basis.RadialBasis`
    :param hypers: :class:`gplode.hypers.LodeHypers` (smearing, accuracy, L, dtype, w_c, mesh overrides)
    :param k_cutoff: k_c of the k-sphere, Å⁻¹ (the radial splines must cover [0, k_c])
    :param radial: splined Ĩ_nl, ``(|k|, l, xp) -> (n_k, n_radial)``
    :param center_term: c^center_n, ``(n_radial,)``
    :param dradial: ``(|k|, l, xp) -> dĨ_nl/dk`` for the gradients
    :param splits: the σ'/σ the range split may take (the cheapest by :meth:`cost`, or no split,
        is taken per structure); empty: never split
    """

    name = "free_mesh"

    def __init__(
        self, device, potential, basis, hypers, k_cutoff: float, radial, center_term, dradial=None, splits=SPLITS
    ):
        self.device, self.potential, self.basis, self.hypers = device, potential, basis, hypers
        self.k_cutoff, self.center_term = float(k_cutoff), np.asarray(center_term, dtype=float)
        self._radial, self._dradial = radial, dradial
        self.n_radial, self.n_lm = basis.n_radial, (hypers.max_angular + 1) ** 2
        accuracy = hypers.accuracy
        self.tolerance = _WINDOW_TOLERANCE * accuracy
        self.reach = self._reach(accuracy)
        # a user's k-sphere or mesh is kept as it is: no split then (p = 0 has no long range)
        overrides = (hypers.k_cutoff, hypers.mesh_spacing, hypers.interpolation_order)
        self.splits = () if any(x is not None for x in overrides) else tuple(float(s) for s in splits)
        #: the levels' meshes in float32 (FFTs in complex64): for ``accuracy`` ≥
        #: :data:`SINGLE_PRECISION_ACCURACY`, or ``dtype="float32"``
        self.single_precision = hypers.dtype == "float32" or accuracy >= SINGLE_PRECISION_ACCURACY
        self._kernels = functools.lru_cache(maxsize=_KERNEL_CACHE)(self._kernel)
        self._short_reach = functools.lru_cache(maxsize=_KERNEL_CACHE)(self._short_reach_of)

    def width(self, k_cutoff: float, smearing: float | None = None) -> float:
        r"""w (Å) for the k-sphere ``k_cutoff`` of a kernel of ``smearing`` (default σ):
        :math:`e^{-(w^2-\sigma^2)k_c^2/2}` = :data:`WINDOW_DAMPING`."""
        smearing = self.potential.smearing if smearing is None else smearing
        return math.sqrt(smearing**2 + 2.0 * math.log(1.0 / WINDOW_DAMPING) / k_cutoff**2)

    def _scales(self, system) -> tuple[float, float]:
        """rms_i S^(p)_i and rms_i S^(0)_i / v̂_0(k_c) over up to :data:`_SAMPLE` centres
        (:meth:`mesh_accuracy`)."""
        positions = system.positions
        rng = np.random.default_rng(0)
        sample = positions if system.n_atoms <= _SAMPLE else positions[rng.choice(system.n_atoms, _SAMPLE, False)]
        d = cdist(sample, positions)
        gaussian = SmearedPowerLaw(0.0, self.potential.smearing)
        scale = float(np.sqrt(np.mean(self.potential.real_space(d).sum(axis=1) ** 2)))
        reference = float(np.sqrt(np.mean(gaussian.real_space(d).sum(axis=1) ** 2)))
        return scale, reference / float(gaussian.kspace(np.array([self.k_cutoff]))[0])

    def _level_accuracy(self, scales: tuple[float, float], error_scale: float) -> float:
        """The accuracy of a level whose mesh error scales as ``error_scale`` (its kernel's
        transform at its k-sphere), on the ladder of :meth:`mesh_accuracy`."""
        accuracy = self.hypers.accuracy
        ratio = max(1.0, scales[0] / error_scale / scales[1] / _RATIO_SAFETY)
        step = math.floor(4 * math.log10(min(accuracy * ratio, MAX_MESH_ACCURACY)) + 1e-9) / 4
        return max(accuracy, 10.0**step)

    def mesh_accuracy(self, system) -> float:
        r"""The accuracy the mesh and k-sphere of the unsplit kernel are chosen for: ``accuracy`` ×
        the ratio of the coefficients' scale to that of the mesh's error, relative to p = 0 (where
        the periodic model is calibrated), on a ladder of ratio 10^{1/4}, between ``accuracy`` and
        :data:`MAX_MESH_ACCURACY`.

        Aliasing and truncation errors come from the components near k_c, i.e. from the
        smeared cores: in absolute terms they scale as :math:`\hat v_p(k_c)` (for every p,
        :math:`\hat v_p(k) \propto e^{-\sigma^2k^2/2}/k^2` there, p = 0 aside), while the
        coefficients scale as the potential at the atoms, :math:`S^{(p)}_i = \sum_j v_p(d_{ij})`
        (the far field, for p ≤ 3, makes it much larger than the local part):

        .. math::

            \text{ratio} = \frac{\mathrm{rms}_i S^{(p)}_i / \hat v_p(k_c)}{\mathrm{rms}_i S^{(0)}_i / \hat v_0(k_c)}
            \Big/ 10

        (10: :data:`_RATIO_SAFETY`) with the rms over up to :data:`_SAMPLE` centres (every atom j
        in the sums, j = i included). Each level of a range split takes the same ratio with its
        own kernel's transform at its own k-sphere in place of :math:`\hat v_p(k_c)`.
        """
        return self._level_accuracy(self._scales(system), float(self.potential.kspace(np.array([self.k_cutoff]))[0]))

    def _reach(self, accuracy: float) -> float:
        """r_b (Å): the basis' support, or for the GTO the radius beyond which its weight
        (:meth:`~gplode.basis.RadialBasis.tail_mass`) is below ``_REACH_TOLERANCE × accuracy``
        of its largest monopole moment."""
        basis = self.basis
        if basis.tail_mass(basis.support_radius) == 0.0:
            return basis.support_radius
        scale = float(np.abs(basis.moments(0, 1)[:, 0]).max())
        radius, step = basis.cutoff, 0.25 * basis.length_scale
        while radius < basis.support_radius and basis.tail_mass(radius) > _REACH_TOLERANCE * accuracy * scale:
            radius += step
        return min(radius, basis.support_radius)

    def _short_potential(self, smearing: float):
        """The short-range kernel whose long-range partner has smearing σ' = ``smearing``
        (:class:`~gplode.potentials.ShortRangePowerLaw`), or v_0 itself for p = 0."""
        if self.potential.exponent == 0.0:
            return self.potential
        return ShortRangePowerLaw(self.potential, smearing)

    def _short_reach_of(self, smearing: float, accuracy: float) -> float:
        """The reach (Å) of the short-range kernel: its weight beyond it is ε = :data:`_SHORT_TOLERANCE` × ``accuracy``
        of the whole (:func:`~gplode.potentials.kernel_reach`)."""
        potential = self._short_potential(smearing)
        length = self.potential.smearing if self.potential.exponent == 0.0 else smearing
        total = potential.k0_value()
        return kernel_reach(
            potential.real_space,
            total,
            self.potential.smearing,
            length,
            self.potential.exponent,
            _SHORT_TOLERANCE * accuracy,
        )

    def _kernel(self, short: bool, smearing: float, radius: float, width: float, k_cutoff: float) -> _Kernel:
        tolerance = max(_SPLINE_TOLERANCE * self.hypers.accuracy, 1e-13)
        if short:
            potential = self._short_potential(smearing)
            return _Kernel(potential, k_cutoff, tolerance, 0.25 / smearing)
        base = (
            self.potential
            if smearing == self.potential.smearing
            else SmearedPowerLaw(self.potential.exponent, smearing)
        )
        windowed = WindowedPowerLaw(base, radius, width, self.tolerance)
        return _Kernel(windowed, k_cutoff, tolerance, 2 * np.pi / windowed.extent / 8)  # the edge's period / 8

    def kernel(self, box: FreeBox) -> _Kernel:
        """The (cached) kernel of the level ``box``: windowed (radius and width) or short-range."""
        return self._kernels(
            bool(box.short), float(box.smearing), float(box.radius), float(box.width), float(box.mesh.k_cutoff)
        )

    # ---- the boxes
    def _long_level(self, system, span, diameter_, scales, smearing: float) -> FreeBox:
        """The windowed kernel of smearing ``smearing`` (σ, or σ' of a split) in its box."""
        sigma = self.potential.smearing
        radius = diameter_ + self.reach
        # rounded up on a ladder of ratio _RADIUS_RATIO (from 1 Å), so that kernels are shared
        radius = _RADIUS_RATIO ** math.ceil(math.log(max(radius, 1.0)) / math.log(_RADIUS_RATIO))
        k_level = self.k_cutoff * sigma / smearing  # the same e^{-σ²k²/2} at the k-sphere
        base = SmearedPowerLaw(self.potential.exponent, smearing)
        accuracy = self._level_accuracy(scales, float(base.kspace(np.array([k_level]))[0]))
        k_cutoff = self.k_cutoff * sigma / smearing  # a user's k_cutoff is kept (there is no split then)
        if self.hypers.k_cutoff is None:
            k_cutoff = min(k_cutoff, default_k_cutoff(smearing, accuracy))
        width = self.width(k_cutoff, smearing)
        extent = WindowedPowerLaw(base, radius, width, self.tolerance).extent
        cell = np.diag(span + self.reach + extent)
        mesh = self._mesh_method(None, accuracy, k_cutoff, smearing).parameters(cell, system.n_atoms)
        return FreeBox(cell, -system.positions.min(axis=0), radius, width, mesh, accuracy, smearing, False)

    def _short_level(self, system, span, scales, smearing: float) -> FreeBox:
        """The short-range kernel (partner σ' = ``smearing``; v_0 for p = 0) in its box."""
        potential = self._short_potential(smearing)
        accuracy = self._level_accuracy(scales, float(potential.kspace(np.array([self.k_cutoff]))[0]))
        k_cutoff = self.k_cutoff
        if self.hypers.k_cutoff is None:
            k_cutoff = min(k_cutoff, default_k_cutoff(self.potential.smearing, accuracy))
        radius = self._short_reach(smearing, accuracy)
        cell = np.diag(span + self.reach + radius)
        mesh = self._mesh_method(None, accuracy, k_cutoff).parameters(cell, system.n_atoms)
        return FreeBox(cell, -system.positions.min(axis=0), radius, 0.0, mesh, accuracy, smearing, True)

    def box(self, system) -> FreeLevels:
        """The levels and boxes of a free-space ``system`` (a :class:`gplode.systems.System`):
        for p = 0 the Gaussian itself in a box a few σ wider than the structure; otherwise the
        cheapest by :meth:`cost` of the unsplit windowed kernel and the range splits
        σ' = ``splits`` × σ."""
        positions, sigma = system.positions, self.potential.smearing
        span = positions.max(axis=0) - positions.min(axis=0)
        scales = self._scales(system)
        if self.potential.exponent == 0.0:
            return FreeLevels((self._short_level(system, span, scales, sigma),), None)
        diameter_ = diameter(positions)
        n_species = 1  # the costs compare per species
        best = FreeLevels((self._long_level(system, span, diameter_, scales, sigma),), None)
        cost = self.cost(system, n_species, best)
        for split in self.splits:
            levels = (
                self._short_level(system, span, scales, split * sigma),
                self._long_level(system, span, diameter_, scales, split * sigma),
            )
            candidate = FreeLevels(levels, split)
            candidate_cost = self.cost(system, n_species, candidate)
            if candidate_cost < cost:
                best, cost = candidate, candidate_cost
        return best

    def _box_system(self, system, box: FreeBox) -> System:
        return System(system.positions + box.shift, system.numbers, box.cell, True)

    def _mesh_method(
        self, kernel: _Kernel | None, accuracy: float, k_cutoff: float, smearing: float | None = None
    ) -> MeshKSum:
        derivatives = None if kernel is None or self._dradial is None else (kernel.derivative, self._dradial)
        changes = {"accuracy": accuracy}
        if self.single_precision:
            changes["dtype"] = "float32"
        if smearing is not None and smearing != self.hypers.smearing:
            changes["smearing"] = smearing  # the mesh of the long-range level: its own e^{-σ'²k²/2}
        hypers = dataclasses.replace(self.hypers, **changes)
        return MeshKSum(self.device, kernel, self._radial, hypers, k_cutoff, self.n_radial, derivatives)

    def _method_of(self, box: FreeBox, kernel: _Kernel | None = None) -> MeshKSum:
        return self._mesh_method(kernel, box.accuracy, box.mesh.k_cutoff, None if box.short else box.smearing)

    # ---- models
    def cost(self, system, n_species: int, box: FreeLevels | None = None) -> float:
        """Estimated seconds on the device: the mesh's model (:meth:`MeshKSum.cost`) of each
        level's box, × :data:`MESH_COST_FACTOR` (and :data:`SINGLE_PRECISION_COST` for float32
        meshes); compare with :func:`pair_sum_cost`."""
        box = self.box(system) if box is None else box
        factor = MESH_COST_FACTOR * (SINGLE_PRECISION_COST if self.single_precision else 1.0)
        return factor * sum(self._method_of(level).cost(system, n_species, level.mesh) for level in box.levels)

    def memory_bytes(self, system, n_species: int, box: FreeLevels | None = None, factor: float = 1.0) -> int:
        """Peak memory (bytes) of :meth:`compute`: the largest level's
        (:meth:`MeshParameters.memory_bytes` of its box) and the sum of the levels' coefficients
        (``factor``: e.g. :data:`gplode.methods.pipeline.VJP_MEMORY_FACTOR` for the gradients)."""
        box = self.box(system) if box is None else box
        itemsize = 4 if self.single_precision else 8
        n = system.n_atoms
        mesh = max(
            level.mesh.memory_bytes(n, n_species, self.n_radial, self.n_lm, level.volume, itemsize)
            for level in box.levels
        )
        return int(factor * mesh + 8 * n * n_species * self.n_lm * self.n_radial)

    # ---- values and derivatives
    def _k0_terms(self, inside, species, kernel: _Kernel) -> np.ndarray:
        """The level's k = 0 term (l = 0), ``(n_atoms, n_species, n_radial)``."""
        return periodic_corrections([inside], species, kernel.potential, self.basis, self.center_term, 1.0)

    def compute(self, system, species, box: FreeLevels | None = None) -> np.ndarray:
        """Free-space coefficients of ``system``, host ``(n_atoms, len(species), (L+1)**2, n_radial)``
        in ``hypers.dtype``, centre weighted by ``center_atom_weight``: the levels' k-sums and
        k = 0 terms, summed."""
        box = self.box(system) if box is None else box
        out = None
        for level in box.levels:
            kernel, inside = self.kernel(level), self._box_system(system, level)
            values = self.device.to_host(self._method_of(level, kernel).compute([inside], species, level.mesh))
            values = values.astype(float)
            values[:, :, 0, :] += self._k0_terms(inside, species, kernel)
            if out is None:
                out = values
            else:
                out += values
        out[:, :, 0, :] += center_corrections(system.numbers, species, self.center_term, self.hypers.center_atom_weight)
        return out.astype(self.hypers.dtype, copy=False)

    def vjp(self, system, species, weights, box: FreeLevels | None = None) -> tuple[np.ndarray, np.ndarray]:
        r"""Gradients of :math:`\mathcal L = \sum` ``weights`` · :meth:`compute`: host
        ``(∂L/∂r (n_atoms, 3), ∂L/∂ε (3, 3))``, strain r → r(1+ε) (atoms only),
        :math:`\partial\mathcal L/\partial\varepsilon_{ab} = \sum_j (r_j - \bar r)_a\,
        \partial\mathcal L/\partial r_{jb}`, summed over the levels. The k = 0 and centre terms
        do not depend on positions."""
        box = self.box(system) if box is None else box
        weights = np.asarray(weights, dtype=float)
        forces = np.zeros((system.n_atoms, 3))
        for level in box.levels:
            kernel, inside = self.kernel(level), self._box_system(system, level)
            part, _ = self._method_of(level, kernel).vjp([inside], species, level.mesh, weights)
            forces += np.asarray(part, dtype=float)  # MeshKSum.vjp returns host arrays
        relative = system.positions - system.positions.mean(axis=0)
        return forces, relative.T @ forces

    def jvp(self, system, species, positions, strain, box: FreeLevels | None = None) -> np.ndarray:
        r"""Jacobian–vector product of :meth:`compute`: the change of the coefficients along the
        tangents ``positions`` :math:`\dot r` ``(n_atoms, 3)`` and ``strain`` :math:`\dot\varepsilon`
        ``(3, 3)`` (the atoms move by :math:`\dot r + (r - \bar r)\dot\varepsilon`; the adjoint of
        :meth:`vjp`), host ``(n_atoms, len(species), (L+1)**2, n_radial)``."""
        box = self.box(system) if box is None else box
        relative = system.positions - system.positions.mean(axis=0)
        moved = np.asarray(positions, dtype=float) + relative @ np.asarray(strain, dtype=float)
        out = None
        for level in box.levels:
            kernel, inside = self.kernel(level), self._box_system(system, level)
            mesh = self._method_of(level, kernel)
            tangent = mesh.jvp([inside], species, level.mesh, moved, np.zeros((1, 3, 3)))
            tangent = np.asarray(self.device.to_host(tangent), dtype=float)
            out = tangent if out is None else out + tangent
        return out.astype(self.hypers.dtype, copy=False)
