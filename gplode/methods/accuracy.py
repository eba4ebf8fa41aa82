r"""The radius of each periodic structure's k-sphere, from a model of the truncation error.

The coefficients are :math:`c^{(i)}_{anlm} = \sum_{k} g_{nlm}(k)\,\rho_a(k)\,e^{ik\cdot r_i}` (plus
the k = 0 and centre terms), :math:`g_{nlm}(k) = \frac{4\pi}{\Omega}\hat v_p(k)\tilde I_{nl}(k)
Y_{lm}(\hat k)i^l`, :math:`\rho_a(k) = \sum_{j\in a}e^{-ik\cdot r_j}`. Summed over the atoms, the
squared coefficients are, up to cross terms between different k that average out,

.. math::

    \|c\|^2 \approx N\sum_{k\ne0}W(k)\,S(k) + \|c_{k=0} + c_\mathrm{centre}\|^2,\qquad
    W(k) = \Big(\frac{4\pi}{\Omega}\Big)^2\sum_{l}\frac{2l+1}{4\pi}\hat v_p(k)^2\sum_n\tilde I_{nl}(k)^2,

with :math:`S(k) = \sum_a|\rho_a(k)|^2` over the neighbour species (:math:`\sum_m Y_{lm}^2 =
(2l+1)/4\pi`). The error of keeping :math:`|k| < k_c` is the same sum over the vectors left out,
so the relative RMS error of all coefficients is predicted as

.. math::

    \epsilon(k_c)^2 = \frac{N\sum_{|k|\ge k_c}W(k)S(k)}{\|c\|^2},

on the cell's own k-vectors (the shells are discrete: a small cell's error falls in steps).
:math:`S(k)` is computed exactly for the lowest vectors (the norm and, in small cells, the
tail: zero structure factors of crystals included) and taken as its average
:math:`\langle S\rangle = \sum_a N_a` beyond a budget of atom × vector products (3·10⁴). The model is
the integrand itself, for every p, basis and σ; the tests hold the measured error of the
chosen sphere to a band below the accuracy.
"""

from __future__ import annotations

import numpy as np

from ..lib.kvectors import half_sphere_count, selected_kpoints, sphere_shape
from .corrections import species_index

__all__ = ["MODEL_VECTORS", "RADIUS_BOUND", "TRUNCATION_SHARE", "KSpaceWeight", "modelled", "sphere_radius"]

#: the share of ``accuracy`` given to the truncation of the k-sum (the rest: splines, mesh)
TRUNCATION_SHARE = 0.3
#: the largest radius, relative to :func:`gplode.lib.kvectors.default_k_cutoff`, the model may
#: choose (σ comparable to a small cell needs up to ~1.5×; it bounds the splines' range)
RADIUS_BOUND = 2.0
#: cells whose first pass would enumerate more k-vectors than this keep the σ-only radius
#: (they are sized for the mesh, whose sphere is the σ-only one): the model stays cheap
MODEL_VECTORS = 200_000
#: radii are rounded up to ``bound`` × (1 + step)^-j, so that similar cells share a radius
_LADDER_STEP = 0.01
#: atom × k-vector products of the exact structure factors per structure (the lowest vectors)
_STRUCTURE_FACTOR_BUDGET = 30_000
#: the first pass enumerates the vectors up to this fraction of ``k_max``; its answer stands
#: when it lies below :data:`_FIRST_PASS_KEEP` of that radius (the vectors beyond it are
#: then negligible), else the pass is repeated up to ``k_max``
_FIRST_PASS, _FIRST_PASS_KEEP = 0.625, 0.8


class KSpaceWeight:
    r""":math:`W(k)` of the module docstring: :math:`(4\pi/\Omega)^2\hat v_p(k)^2\,g(k)` with
    :math:`g(k) = \sum_l\frac{2l+1}{4\pi}\sum_n\tilde I_{nl}(k)^2` tabulated once on ``points``
    uniform nodes of [0, ``k_max``] (linear interpolation: the model needs a few digits).

    :param vhat: ``k -> v̂_p(k)`` (host arrays)
    :param radial: ``(k, l) -> Ĩ_nl(k)``, ``(n_k, n_radial)``
    """

    def __init__(self, vhat, radial, max_angular: int, k_max: float, points: int = 4096):
        self.vhat = vhat
        self.grid = np.linspace(0.0, k_max, points)
        self.angular = sum(
            (2 * l + 1) / (4 * np.pi) * (radial(self.grid, l) ** 2).sum(axis=1) for l in range(max_angular + 1)
        )

    def __call__(self, k: np.ndarray, volume: float) -> np.ndarray:
        """W at the norms ``k`` (Å⁻¹, within the table) in a cell of ``volume`` Å³."""
        return (4 * np.pi / volume) ** 2 * self.vhat(k) ** 2 * np.interp(k, self.grid, self.angular)


def sphere_radius(system, species, weight: KSpaceWeight, constant_norm2: float, target: float, k_max: float):
    r"""The smallest k-sphere radius of ``system`` (Å⁻¹) whose predicted relative RMS error
    (module docstring) is at most ``target``: midway between the last shell kept and the
    first left out, rounded up to a ladder of 1 % steps below ``k_max`` (so that similar
    cells share a radius and a mesh), never beyond ``k_max`` (the calculator's bound, which
    also bounds the splines). Every structure keeps at least its first shell: the k ≠ 0 part
    is never silently empty. ``None`` for a cell beyond :data:`MODEL_VECTORS`.

    :param species: atomic numbers of the neighbour species
    :param weight: :math:`W(k)` (:class:`KSpaceWeight`, tabulated to at least ``k_max``)
    :param constant_norm2: :math:`\|c_{k=0} + c_\mathrm{centre}\|^2` of the structure's atoms
    """
    if not modelled(system, k_max):
        return None
    first = _FIRST_PASS * k_max
    radius = _radius(system, species, weight, constant_norm2, target, first, k_max)
    if radius is not None and radius <= _FIRST_PASS_KEEP * first:
        return _ladder(radius, k_max)
    return _ladder(_radius(system, species, weight, constant_norm2, target, k_max), k_max)


def modelled(system, k_max: float) -> bool:
    """Whether :func:`sphere_radius` models ``system`` (its first pass holds at most
    :data:`MODEL_VECTORS` vectors): a cheap test, to make before building a :class:`KSpaceWeight`."""
    return half_sphere_count(_FIRST_PASS * k_max, system.volume) <= MODEL_VECTORS


def _radius(system, species, weight, constant_norm2, target, k_max, beyond=None) -> float | None:
    r""":func:`sphere_radius` on the vectors below ``k_max`` (``k_max`` when none suffices), not
    rounded; ``None`` when the vectors between ``k_max`` and ``beyond`` could matter: their sum
    is bounded by N W(k_max) Σ_a N_a² times their number, since W decreases and
    :math:`|\rho_a|^2 \le N_a^2` (e.g. a crystal whose first shells have zero structure factors)."""
    cell = system.cell[None]
    points = selected_kpoints(cell, sphere_shape(cell, k_max), k_max)
    norms = np.linalg.norm(points.k, axis=1)
    if norms.size == 0:
        return k_max
    order = np.argsort(norms, kind="stable")
    norms, k = norms[order], points.k[order]
    half = np.where(points.frequencies[order, 2] > 0, 2.0, 1.0)  # ±k of the half spectrum
    weights = half * weight(norms, system.volume)
    kind, present = species_index(system.numbers, species)
    spectrum = np.full(norms.shape, float(np.count_nonzero(present)))  # ⟨S⟩ = Σ_a N_a
    exact = min(norms.size, _STRUCTURE_FACTOR_BUDGET // max(system.n_atoms, 1))
    if exact:
        angles = k[:exact] @ system.positions[present].T  # (n_k, atoms of neighbour species)
        onehot = np.zeros((angles.shape[1], len(species)))
        onehot[np.arange(angles.shape[1]), kind[present]] = 1.0
        spectrum[:exact] = ((np.cos(angles) @ onehot) ** 2 + (np.sin(angles) @ onehot) ** 2).sum(axis=1)  # Σ_a |ρ_a|²
    terms = system.n_atoms * weights * spectrum
    tail = np.cumsum(terms[::-1])[::-1]  # tail[j]: Σ over the vectors from j on
    norm2 = tail[0] + constant_norm2
    # shell boundaries: the first vector of each shell (vectors of equal |k| to round-off)
    starts = np.flatnonzero(np.concatenate([[True], np.diff(norms) > 1e-9 * norms[1:]]))
    allowed = (target**2) * norm2 if norm2 > 0.0 else np.inf  # all zero: the first shell only
    if beyond is not None:
        counts = np.bincount(kind[present], minlength=len(species)).astype(float)
        count = 2 * half_sphere_count(beyond, system.volume)  # vectors up to `beyond`, ±k
        unseen = system.n_atoms * weight(np.array([k_max]), system.volume)[0] * (counts**2).sum() * count
        if not unseen <= 0.1 * allowed:  # also when nothing was seen (allowed infinite, unseen > 0)
            return None
    enough = np.flatnonzero(tail[starts[1:]] <= allowed)  # shells from the second on
    if enough.size == 0:
        return k_max
    start = starts[1 + enough[0]]
    return float(0.5 * (norms[start - 1] + norms[start]))


def _ladder(radius: float, bound: float) -> float:
    """The smallest ``bound`` × (1 + step)^-j (j ≥ 0) not below ``radius``."""
    steps = np.floor(np.log(bound / radius) / np.log1p(_LADDER_STEP))
    return float(min(bound, bound * (1.0 + _LADDER_STEP) ** -max(steps, 0.0)))
