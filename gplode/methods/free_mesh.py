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

Accuracy (relative RMS error against the pair sum, ``accuracy``): the k-sphere, B-spline order and
mesh come from the periodic mesh's model (:func:`gplode.methods.mesh.choose_mesh`), for an
accuracy loosened by the ratio of the coefficients' scale to the mesh error's
(:meth:`FreeSpaceMesh.mesh_accuracy`: the far field of p ≤ 3 dwarfs the smeared cores; the
windowed kernel decays as :math:`e^{-\sigma^2k^2/2}` like :math:`\hat v_p`, because the
window's width w is chosen so that its edge's spectrum, damped as :math:`e^{-w^2k^2/2}`, is
:data:`WINDOW_DAMPING` below it at :math:`k_c`), the reach r_b from the basis' tail
(:meth:`~gplode.basis.RadialBasis.tail_mass`), ε and the splines far below ``accuracy``.
The kernel is cached by its (rounded-up) radius: structures of similar diameters share it.

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
from ..potentials import SmearedPowerLaw, WindowedPowerLaw
from ..systems import System
from .corrections import periodic_corrections
from .mesh import MeshKSum, MeshParameters

__all__ = [
    "MAX_MESH_ACCURACY",
    "MESH_COST_FACTOR",
    "PAIR_SUM_COST",
    "WINDOW_DAMPING",
    "FreeBox",
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
#: error of the v̂^W spline at its mid-points, relative to max|v̂^W| = v̂^W(0), relative to ``accuracy``
_SPLINE_TOLERANCE = 1e-4
#: kernels are shared by structures whose R rounds up to the same step of this ratio
_RADIUS_RATIO = 1.05
#: kernels kept per calculator
_KERNEL_CACHE = 16
#: loosest accuracy the mesh is chosen for (:meth:`FreeSpaceMesh.mesh_accuracy`)
MAX_MESH_ACCURACY = 1e-3
#: the ratio of :meth:`FreeSpaceMesh.mesh_accuracy` is divided by this: the periodic model is
#: less conservative on coarse meshes (measured: err/accuracy up to 1.6 without it, at a ratio of 56)
_RATIO_SAFETY = 10.0
#: centres sampled to estimate the scale of the coefficients
_SAMPLE = 256
#: seconds per (pair, channel) of the pair sum on the CPU (measured on the 2-core development
#: machine: free_space_coefficients, GTO, L = 4, n = 6, one species, 2,000 atoms: 12.7–16.3 s)
PAIR_SUM_COST = 2e-8
#: the mesh's cost model (:meth:`MeshKSum.cost`, calibrated on periodic cells) against the time
#: measured for free-space boxes (large meshes, 128³–240³, on the 2-core machine): 3.6–5.8×
MESH_COST_FACTOR = 5.0


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
    """The periodic box of one free-space structure.

    :param cell: the box, lattice vectors as rows (diagonal), Å
    :param shift: added to the positions to place them in the box, Å, ``(3,)``
    :param radius: R of the window (≥ D + r_b, rounded up to share kernels), Å
    :param width: w of the window, Å
    :param mesh: the mesh parameters of the box (its k-sphere k_c)
    :param accuracy: the accuracy the mesh was chosen for (:meth:`FreeSpaceMesh.mesh_accuracy`)
    """

    cell: np.ndarray
    shift: np.ndarray
    radius: float
    width: float
    mesh: MeshParameters
    accuracy: float

    @property
    def volume(self) -> float:
        """Ω of the box, Å³."""
        return float(np.prod(np.diag(self.cell)))


class _Kernel:
    """A windowed kernel and its splines on [0, k_c] (``(|k|, xp) -> values`` for :class:`MeshKSum`)."""

    def __init__(self, potential: WindowedPowerLaw, k_cutoff: float, tolerance: float):
        self.potential = potential
        step = 2 * np.pi / potential.extent / 8  # the edge's oscillation period in k, over 8
        self.spline = UniformQuinticSpline(potential.kspace, 0.0, k_cutoff, step, tolerance, scale="all")
        self.k_cutoff = k_cutoff
        self._tolerance = tolerance
        self._derivative = None

    def __call__(self, k, xp):
        return self.spline(k, xp=xp)

    def derivative(self, k, values, xp):
        """dv̂^W/dk at ``k`` (``values``, v̂^W there, unused: the signature of the mesh's ``dvhat``)."""
        if self._derivative is None:  # built when gradients are first asked for
            step = 2 * np.pi / self.potential.extent / 8
            self._derivative = UniformQuinticSpline(
                self.potential.kspace_derivative, 0.0, self.k_cutoff, step, self._tolerance, scale="all"
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
    """

    name = "free_mesh"

    def __init__(self, device, potential, basis, hypers, k_cutoff: float, radial, center_term, dradial=None):
        self.device, self.potential, self.basis, self.hypers = device, potential, basis, hypers
        self.k_cutoff, self.center_term = float(k_cutoff), np.asarray(center_term, dtype=float)
        self._radial, self._dradial = radial, dradial
        self.n_radial, self.n_lm = basis.n_radial, (hypers.max_angular + 1) ** 2
        accuracy = hypers.accuracy
        self.tolerance = _WINDOW_TOLERANCE * accuracy
        self.reach = self._reach(accuracy)
        self._kernels = functools.lru_cache(maxsize=_KERNEL_CACHE)(self._kernel)

    def width(self, k_cutoff: float) -> float:
        r"""w (Å) for the k-sphere ``k_cutoff``: :math:`e^{-(w^2-\sigma^2)k_c^2/2}` = :data:`WINDOW_DAMPING`."""
        return math.sqrt(self.potential.smearing**2 + 2.0 * math.log(1.0 / WINDOW_DAMPING) / k_cutoff**2)

    def mesh_accuracy(self, system) -> float:
        r"""The accuracy the mesh and k-sphere are chosen for: ``accuracy`` × the ratio of the
        coefficients' scale to that of the mesh's error, relative to p = 0 (where the periodic
        model is calibrated), on a ladder of ratio 10^{1/4}, between ``accuracy`` and
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
        in the sums, j = i included).
        """
        accuracy = self.hypers.accuracy
        positions = system.positions
        rng = np.random.default_rng(0)
        sample = positions if system.n_atoms <= _SAMPLE else positions[rng.choice(system.n_atoms, _SAMPLE, False)]
        d = cdist(sample, positions)
        gaussian = SmearedPowerLaw(0.0, self.potential.smearing)
        k = np.array([self.k_cutoff])
        scales = [
            np.sqrt(np.mean(potential.real_space(d).sum(axis=1) ** 2)) / potential.kspace(k)[0]
            for potential in (self.potential, gaussian)
        ]
        ratio = max(1.0, scales[0] / scales[1] / _RATIO_SAFETY)
        step = math.floor(4 * math.log10(min(accuracy * ratio, MAX_MESH_ACCURACY)) + 1e-9) / 4
        return max(accuracy, 10.0**step)

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

    def _kernel(self, radius: float, width: float) -> _Kernel:
        windowed = WindowedPowerLaw(self.potential, radius, width, self.tolerance)
        tolerance = max(_SPLINE_TOLERANCE * self.hypers.accuracy, 1e-13)
        return _Kernel(windowed, self.k_cutoff, tolerance)

    def kernel(self, box: FreeBox) -> _Kernel:
        """The (cached) windowed kernel of ``box`` (window radius and width)."""
        return self._kernels(float(box.radius), float(box.width))

    # ---- the box
    def box(self, system) -> FreeBox:
        """The box and mesh of a free-space ``system`` (a :class:`gplode.systems.System`)."""
        positions = system.positions
        lo, hi = positions.min(axis=0), positions.max(axis=0)
        radius = diameter(positions) + self.reach
        # rounded up on a ladder of ratio _RADIUS_RATIO (from 1 Å), so that kernels are shared
        radius = _RADIUS_RATIO ** math.ceil(math.log(max(radius, 1.0)) / math.log(_RADIUS_RATIO))
        accuracy = self.mesh_accuracy(system)
        k_cutoff = self.k_cutoff  # a user's k_cutoff is kept
        if self.hypers.k_cutoff is None:
            k_cutoff = min(k_cutoff, default_k_cutoff(self.potential.smearing, accuracy))
        width = self.width(k_cutoff)
        extent = WindowedPowerLaw(self.potential, radius, width, self.tolerance).extent
        cell = np.diag((hi - lo) + self.reach + extent)
        mesh = self._mesh_method(None, accuracy, k_cutoff).parameters(cell, system.n_atoms)
        return FreeBox(cell, -lo, radius, width, mesh, accuracy)

    def _box_system(self, system, box: FreeBox) -> System:
        return System(system.positions + box.shift, system.numbers, box.cell, True)

    def _mesh_method(self, kernel: _Kernel | None, accuracy: float, k_cutoff: float) -> MeshKSum:
        derivatives = None if kernel is None or self._dradial is None else (kernel.derivative, self._dradial)
        hypers = dataclasses.replace(self.hypers, accuracy=accuracy)
        return MeshKSum(self.device, kernel, self._radial, hypers, k_cutoff, self.n_radial, derivatives)

    def _method_of(self, box: FreeBox, kernel: _Kernel | None = None) -> MeshKSum:
        return self._mesh_method(kernel, box.accuracy, box.mesh.k_cutoff)

    # ---- models
    def cost(self, system, n_species: int, box: FreeBox | None = None) -> float:
        """Estimated seconds on the device: the mesh's model (:meth:`MeshKSum.cost`) of the box,
        × :data:`MESH_COST_FACTOR`; compare with :func:`pair_sum_cost`."""
        box = self.box(system) if box is None else box
        return MESH_COST_FACTOR * self._method_of(box).cost(system, n_species, box.mesh)

    def memory_bytes(self, system, n_species: int, box: FreeBox | None = None, factor: float = 1.0) -> int:
        """Peak memory (bytes) of :meth:`compute` (:meth:`MeshParameters.memory_bytes` of the box;
        ``factor``: e.g. :data:`gplode.methods.pipeline.VJP_MEMORY_FACTOR` for the gradients)."""
        box = self.box(system) if box is None else box
        itemsize = 4 if self.hypers.dtype == "float32" else 8
        mesh = box.mesh.memory_bytes(system.n_atoms, n_species, self.n_radial, self.n_lm, box.volume, itemsize)
        return int(factor * mesh)

    # ---- values and derivatives
    def compute(self, system, species, box: FreeBox | None = None) -> np.ndarray:
        """Free-space coefficients of ``system``, host ``(n_atoms, len(species), (L+1)**2, n_radial)``
        in ``hypers.dtype``, centre weighted by ``center_atom_weight``."""
        box = self.box(system) if box is None else box
        kernel, inside = self.kernel(box), self._box_system(system, box)
        values = self.device.to_host(self._method_of(box, kernel).compute([inside], species, box.mesh))
        corrections = periodic_corrections(
            [inside], species, kernel.potential, self.basis, self.center_term, self.hypers.center_atom_weight
        )
        out = values.astype(float)
        out[:, :, 0, :] += corrections
        return out.astype(self.hypers.dtype, copy=False)

    def vjp(self, system, species, weights, box: FreeBox | None = None) -> tuple[np.ndarray, np.ndarray]:
        r"""Gradients of :math:`\mathcal L = \sum` ``weights`` · :meth:`compute`: host
        ``(∂L/∂r (n_atoms, 3), ∂L/∂ε (3, 3))``, strain r → r(1+ε) (atoms only),
        :math:`\partial\mathcal L/\partial\varepsilon_{ab} = \sum_j (r_j - \bar r)_a\,
        \partial\mathcal L/\partial r_{jb}`. The k = 0 and centre terms do not depend on positions."""
        box = self.box(system) if box is None else box
        kernel, inside = self.kernel(box), self._box_system(system, box)
        forces, _ = self._method_of(box, kernel).vjp([inside], species, box.mesh, np.asarray(weights, dtype=float))
        forces = np.asarray(forces, dtype=float)  # MeshKSum.vjp returns host arrays
        relative = system.positions - system.positions.mean(axis=0)
        return forces, relative.T @ forces

    def jvp(self, system, species, positions, strain, box: FreeBox | None = None) -> np.ndarray:
        r"""Jacobian–vector product of :meth:`compute`: the change of the coefficients along the
        tangents ``positions`` :math:`\dot r` ``(n_atoms, 3)`` and ``strain`` :math:`\dot\varepsilon`
        ``(3, 3)`` (the atoms move by :math:`\dot r + (r - \bar r)\dot\varepsilon`; the adjoint of
        :meth:`vjp`), host ``(n_atoms, len(species), (L+1)**2, n_radial)``."""
        box = self.box(system) if box is None else box
        kernel, inside = self.kernel(box), self._box_system(system, box)
        relative = system.positions - system.positions.mean(axis=0)
        moved = np.asarray(positions, dtype=float) + relative @ np.asarray(strain, dtype=float)
        mesh = self._method_of(box, kernel)
        tangent = mesh.jvp([inside], species, box.mesh, moved, np.zeros((1, 3, 3)))
        return np.asarray(self.device.to_host(tangent), dtype=float).astype(self.hypers.dtype, copy=False)
