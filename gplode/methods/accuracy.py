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
:math:`S(k)` is computed for every vector (:func:`_structure_factors`: from the atoms' phases,
or for large cells from an FFT of their density; zero structure factors of crystals
included). The model is
the integrand itself, for every p, basis and σ; the tests hold the measured error of the
chosen sphere to a band below the accuracy.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft, sparse

from ..lib.bspline import bspline_fourier, stencil
from ..lib.kvectors import half_sphere_count, selected_kpoints, sphere_shape, sphere_shapes
from ..lib.spherical_harmonics import real_spherical_harmonics
from ..systems import atom_owners
from .corrections import species_index, species_slots
from .mesh import fast_length

__all__ = [
    "ALIASING_SHARE",
    "COHERENT_ERROR_SHARE",
    "MODEL_VECTORS",
    "RADIUS_BOUND",
    "SINGLE_PRECISION_ACCURACY",
    "SINGLE_PRECISION_ROUNDOFF",
    "TRUNCATION_SHARE",
    "KSpaceWeight",
    "DensityAliasing",
    "modelled",
    "single_precision_roundoff",
    "single_precision_roundoff_of",
    "sphere_radii",
]

#: the share of ``accuracy`` given to the truncation of the k-sum (the rest: splines, mesh)
TRUNCATION_SHARE = 0.3
#: where the model computes the truncation error exactly (:func:`_coherent_tails`), the share of
#: ``accuracy`` that truncation, the values' round-off and the mesh's aliasing take together (in
#: quadrature): the truncation gets :math:`\sqrt{0.9^2 - a^2 - \rho^2}` of it, with a =
#: :data:`ALIASING_SHARE` and ρ the structure's predicted float32 round-off over ``accuracy``
#: (0 in float64), at least :data:`TRUNCATION_SHARE` (a fixed 0.6 left e.g. a skewed 4-atom cell at
#: σ = 3 Å at 0.012 × the accuracy, where the sphere one shell smaller measured 0.69 ×)
COHERENT_ERROR_SHARE = 0.9
#: structures whose exact tail (:func:`_coherent_tails`) is predicted to cost at most this many
#: seconds by Gram matrices (:func:`_coherent_cost`; ~2·10⁶ operations) get it: cells at σ
#: comparable to them, few vectors; the others the model of cross terms neglected (with twice
#: that, the 8-atom cells of the dataset benchmark would take it, ~0.8 ms each, about what
#: their features cost)
_COHERENT_BUDGET = 3e-4
#: supercells of perfect crystals (at least this fraction of their vectors with vanishing
#: structure factors, below 10⁻⁶ ⟨S⟩) get the exact tail within this many seconds, the cheaper
#: of its two ways: the incoherent model overestimates their tails up to ~10× (their l ≠ 0
#: components cancel over a shell) and their shells hold many vectors (the 8-atom NaCl cell:
#: ~0.3 ms by shells up to accuracy 1e-8, where its Gram matrices took ~5 ms)
_CRYSTAL_BUDGET, _CRYSTAL_VANISHING = 1e-3, 0.1
#: from this ``accuracy`` up the direct sum's values and the free-space meshes run in float32
#: (measured round-off 3–7e-7 of the coefficients' RMS)
SINGLE_PRECISION_ACCURACY = 1e-5
#: float32 values' relative RMS round-off, ``floor + slope × (N/24)^¼ × gain`` (N atoms, the gain of the
#: structure's round-off, :func:`_radii`), at most 0.5 × accuracy (:func:`single_precision_roundoff`).
#: Measured slopes: at most 5e-8 on rattled 24-atom dataset cells (σ = 1–3 Å), 9e-8 on a rattled
#: 1,728-atom NaCl supercell, 1.6e-7 on a perfect 4,096-atom one at σ = 2 Å (3 × accuracy 1e-3 in
#: float32); perfect supercells up to 1,728 atoms stay below 3e-6 whatever their gain (10⁸)
SINGLE_PRECISION_ROUNDOFF = (6e-7, 6e-8)
#: the share of ``accuracy`` the particle mesh's aliasing may take (:class:`DensityAliasing`: its
#: prediction is 0.6–1.1× the measured aliasing error of perfect and rattled NaCl supercells, σ = 1–3 Å,
#: accuracy 1e-3 to 1e-6; with the lowest vectors' images only it was 1–4× below on rattled crystals, and
#: far below on perfect ones, at 0.1). At 0.3 (0.2 before) the measured aliasing is at most 0.5 × the
#: accuracy, the total with the largest truncation share (:data:`COHERENT_ERROR_SHARE`) within it; the
#: 4,096-atom NaCl supercell at p = 1 and 2.9e-4 takes order 8 on 64³ (order 10 before), 1.2 → 1.06 s,
#: measured error 2.2e-5 → 1.0e-4
ALIASING_SHARE = 0.3
#: the largest radius, relative to :func:`gplode.lib.kvectors.default_k_cutoff`, the model may
#: choose (σ comparable to a small cell needs up to ~1.5×; it bounds the splines' range)
RADIUS_BOUND = 2.0
#: cells whose first pass would enumerate more k-vectors than this keep the σ-only radius
#: (σ small against the cell, on the mesh): the model stays cheap. Perfect NaCl supercells
#: (σ = 1 Å, GTO 6 × 25 channels; 2·10⁵ before): 4,096 atoms at p = 6 and 4e-5 modelled in
#: 0.08 s, 2.45 → 1.97 s, measured error 1.1e-6 → 2.2e-6; 13,824 atoms at p = 1 and 3e-4
#: (0.5 million vectors, a 1.1 s model) 7.9 → 7.1–8.3 s, error 1.7e-4 → 4.8e-5, at p = 6 and
#: 1e-6 15.7 → 12.3–13.6 s, error 1.8e-8 (0.02 × the accuracy) → 1.8e-7
MODEL_VECTORS = 1_000_000
#: radii are rounded up to ``bound`` × (1 + step)^-j, so that similar cells share a radius
_LADDER_STEP = 0.01
#: atom × k-vector products per structure up to which the structure factors come from the
#: atoms' phases (:func:`_spectra`); beyond, from an FFT of the density
#: (:func:`_mesh_spectra`). A budget with the average ⟨S⟩ = Σ_a N_a beyond it missed the Bragg
#: peaks of perfect crystals: 50 × the accuracy on 512 atoms at σ = 2 Å with 10⁵ products, and
#: on 4,096 atoms with 3·10⁶ (accuracy 1e-3, the direct sum)
_STRUCTURE_FACTOR_BUDGET = 3_000_000
#: :class:`_DensityMesh`: B-spline order, and atoms whose stencils are formed at once (~60 MB)
_MESH_SPECTRA_ORDER, _MESH_SPECTRA_CHUNK = 6, 1 << 15
#: padded atom × k-vector products of :func:`_spectra` at once (~10 MB of work arrays; two groups
#: of cells may be modelled at once): 400 cells of 8–64 atoms, one core, 0.075 → 0.055 s against
#: 2·10⁶ (the work arrays stay in the allocator's heap and the caches)
_SPECTRA_CHUNK = 500_000
#: the first pass enumerates the vectors up to this fraction of ``k_max`` (the σ-only radius;
#: chosen radii are 0.66–0.92 × it on the benchmark datasets, p = 1 and 6, accuracy 1e-2 to
#: 1e-8); its answer stands when it lies below :data:`_FIRST_PASS_KEEP` of that radius and the
#: vectors beyond cannot matter (the bound of :func:`_radii`), else the pass is repeated: 2 %
#: beyond the radius that bound needs (at least 1.05 × the last; 1.25 × before, 4,096 rattled
#: NaCl atoms at 1e-3: 0.164 → 0.134 s), a quarter further for an answer near the edge, or
#: ``k_max`` where the answer had all the pass's vectors
_FIRST_PASS, _FIRST_PASS_KEEP = 0.5, 0.9
#: :func:`modelled` counts the vectors up to this fraction of ``k_max``
_MODEL_PASS = 0.625


class KSpaceWeight:
    r""":math:`W(k)` of the module docstring: :math:`(4\pi/\Omega)^2\hat v_p(k)^2\,g(k)` with
    :math:`g(k) = \sum_l\frac{2l+1}{4\pi}\sum_n\tilde I_{nl}(k)^2` tabulated once on ``points``
    uniform nodes of [0, ``k_max``] (linear interpolation: the model needs a few digits).

    :param vhat: ``k -> v̂_p(k)`` (host arrays)
    :param radial: ``(k, l) -> Ĩ_nl(k)``, ``(n_k, n_radial)``
    """

    def __init__(self, vhat, radial, max_angular: int, k_max: float, points: int = 4096):
        self.vhat, self.radial, self.max_angular = vhat, radial, max_angular
        self.grid = np.linspace(0.0, k_max, points)
        self.angular = sum(
            (2 * l + 1) / (4 * np.pi) * (radial(self.grid, l) ** 2).sum(axis=1) for l in range(max_angular + 1)
        )

        # ∫_k^{k_max} 4πq² v̂_p(q)² g(q) dq from each node (trapezoids), for :meth:`shell_sum`
        # (from the first node on: v̂_p(0) is infinite for p < 3; the sums are used far from 0)
        density = 4 * np.pi * self.grid[1:] ** 2 * self.vhat(self.grid[1:]) ** 2 * self.angular[1:]
        steps = 0.5 * (density[1:] + density[:-1]) * np.diff(self.grid[1:])
        self._beyond = np.concatenate([[np.inf], np.cumsum(steps[::-1])[::-1], [0.0]])

    def __call__(self, k: np.ndarray, volume) -> np.ndarray:
        """W at the norms ``k`` (Å⁻¹, within the table) in cells of ``volume`` Å³ (one, or one per norm)."""
        return (4 * np.pi / volume) ** 2 * self.vhat(k) ** 2 * np.interp(k, self.grid, self.angular)

    def shell_radius(self, total, outer: float, volume) -> np.ndarray:
        """The smallest inner radius (Å⁻¹) of the shells up to ``outer`` whose :meth:`shell_sum` is
        at most ``total``, in cells of ``volume`` Å³ (one, or one per total)."""
        limit = np.interp(outer, self.grid, self._beyond) + np.asarray(total, dtype=float) / _per_volume(volume)
        # _beyond decreases along the grid: interpolate the grid against it reversed
        return np.interp(limit, self._beyond[::-1], self.grid[::-1])

    def shell_sum(self, inner: float, outer: float, volume) -> np.ndarray:
        r""":math:`\sum W(k)` over the vectors (±k both) of the shell ``inner`` ≤ |k| < ``outer``
        (within the table) of cells of ``volume`` Å³, as the integral
        :math:`\frac{\Omega}{(2\pi)^3}\int 4\pi k^2 W(k)\,dk` (the vectors' mean density)."""
        integral = np.interp(inner, self.grid, self._beyond) - np.interp(outer, self.grid, self._beyond)
        return _per_volume(volume) * integral


def _per_volume(volume) -> np.ndarray:
    r""":math:`(4\pi/\Omega)^2\,\Omega/(2\pi)^3`: W's volume factor times the density of k-vectors."""
    return (4 * np.pi) ** 2 / (np.asarray(volume, dtype=float) * (2 * np.pi) ** 3)


def sphere_radii(
    systems, species, weight: KSpaceWeight, constant, accuracy: float, k_max: float, map_groups=map, roundoff=None
):
    r"""For each of ``systems``, the smallest k-sphere radius (Å⁻¹) whose predicted relative RMS
    error (module docstring) is at most :data:`TRUNCATION_SHARE` × ``accuracy``
    (where it is computed exactly, :func:`_coherent_tails`, what :data:`COHERENT_ERROR_SHARE`
    leaves of the accuracy to the truncation):
    midway between the last shell kept and the
    first left out, rounded up to a ladder of 1 % steps below ``k_max`` (so that similar
    cells share a radius and a mesh), never beyond ``k_max`` (the calculator's bound, which
    also bounds the splines). Every structure keeps at least its first shell: the k ≠ 0 part
    is never silently empty. ``None`` for a cell beyond :data:`MODEL_VECTORS`. Also each
    structure's round-off gain (:func:`_radii`; ``None`` with the radius). Cells whose
    first-pass spheres share a k-point grid are modelled together, in one set of array
    operations; each cell's radius depends on that cell alone.

    :param species: atomic numbers of the neighbour species
    :param weight: :math:`W(k)` (:class:`KSpaceWeight`, tabulated to at least ``k_max``)
    :param constant: :math:`c_{k=0} + c_\mathrm{centre}` of the structures' atoms, one
        structure after the other, ``(total atoms, n_species, n_radial)`` (the l = 0 terms)
    :param map_groups: ``map`` or one like it that runs the groups of cells concurrently
        (:meth:`gplode.devices.base.Device.map_batches`)
    :param roundoff: ``(n_atoms, gain) -> ρ``, the predicted relative RMS round-off of the values
        of a structure of that round-off gain (:meth:`gplode.methods.direct.DirectKSum.roundoff`;
        None: 0)
    """
    radii = [None] * len(systems)
    groups = {}
    members = [i for i, system in enumerate(systems) if modelled(system, k_max)]
    if members:  # by each cell's own first-pass grid
        shapes = sphere_shapes(np.stack([systems[i].cell for i in members]), _FIRST_PASS * k_max)
        for i, shape in zip(members, shapes.tolist(), strict=True):
            groups.setdefault(tuple(shape), []).append(i)
    offsets = np.concatenate([[0], np.cumsum([system.n_atoms for system in systems])])
    constants = [constant[offsets[i] : offsets[i + 1]] for i in range(len(systems))]

    def group_radii(members) -> list:
        out, passes = [], np.full(len(members), _FIRST_PASS * k_max)
        while members:
            group = [systems[i] for i in members]
            found, needed, gain, left_out = _radii(
                group, species, weight, [constants[i] for i in members], accuracy, passes, k_max, roundoff
            )
            done = (found <= _FIRST_PASS_KEEP * passes) | (passes >= k_max)
            out += [
                (i, _ladder(radius, k_max, below), g)
                for i, radius, g, below in zip(
                    np.asarray(members)[done], found[done], gain[done], left_out[done], strict=True
                )
            ]
            # again: 2 % beyond where the vectors beyond could matter (NaN; at least 5 % further), an answer near
            # the edge a quarter further (its pass within the exact tails' budget, where the cell's was),
            # none at all to k_max
            grown = np.where(np.isnan(found), np.maximum(1.02 * needed, 1.05 * passes), 1.25 * passes)
            passes = np.minimum(k_max, np.where(np.isnan(found) | (found < passes), grown, k_max))[~done]
            members = [i for i, finished in zip(members, done, strict=True) if not finished]
        return out

    def work(members) -> float:  # the first pass's atom × vector products
        return sum(systems[i].n_atoms * half_sphere_count(_FIRST_PASS * k_max, systems[i].volume) for i in members)

    gains = [None] * len(systems)
    # the costliest groups first: those running last, each beside another, are the shortest
    for found in map_groups(group_radii, sorted(groups.values(), key=work, reverse=True)):
        for i, radius, gain in found:
            radii[i], gains[i] = radius, gain
    return radii, gains


def single_precision_roundoff(system) -> float:
    """The predicted relative RMS round-off of ``system``'s values in float32
    (:data:`SINGLE_PRECISION_ROUNDOFF`; a structure without a round-off gain: the floor)."""
    return single_precision_roundoff_of(system.n_atoms, system.roundoff_gain)


def single_precision_roundoff_of(n_atoms: int, gain: float | None) -> float:
    """:func:`single_precision_roundoff` of a structure of ``n_atoms`` atoms and round-off gain ``gain``."""
    floor, slope = SINGLE_PRECISION_ROUNDOFF
    return floor if gain is None else floor + slope * (n_atoms / 24) ** 0.25 * gain


def _species_counts(systems, species):
    """Atoms of each system, and of each neighbour species in each system ``(n_systems, n_species)``."""
    owner, _ = atom_owners(systems)
    kind, present = species_index(np.concatenate([system.numbers for system in systems]), species)
    n_a = np.bincount(owner[present] * len(species) + kind[present], minlength=len(systems) * len(species))
    return np.array([system.n_atoms for system in systems]), n_a.reshape(len(systems), len(species)).astype(float)


def modelled(system, k_max: float) -> bool:
    """Whether :func:`sphere_radii` models ``system`` (its sphere of :data:`_MODEL_PASS` × ``k_max``
    holds at most :data:`MODEL_VECTORS` vectors): a cheap test, to make before building a :class:`KSpaceWeight`."""
    return half_sphere_count(_MODEL_PASS * k_max, system.volume) <= MODEL_VECTORS


def _radii(systems, species, weight, constants, accuracy, k_max, beyond: float, roundoff=None):
    r""":func:`sphere_radii` of ``systems`` on their vectors below ``k_max`` (one per system;
    ``k_max`` when none suffices; ``constants``: each one's l = 0 terms), not rounded, the
    radius up to which a next pass must look, and the gain of the structure's round-off:
    :math:`\sqrt{(N\sum_k W\langle S\rangle +
    \|c_{k=0} + c_\mathrm{centre}\|^2)/\|c\|^2}` with :math:`\langle S\rangle = \sum_a N_a`, the
    growth of the k-sum's error from rounding its structure factors, relative to a featureless
    density: large where the density lives on weakly weighted Bragg peaks and vanishes where
    W(k) is large (a perfect 4,096-atom NaCl supercell at σ = 2 Å); and the norm of the first
    shell left out (inf where none is).

    The radius is NaN where the vectors between ``k_max`` and ``beyond`` could matter: their sum
    is bounded by :math:`N\sum_a N_a^2\sum W` over them (:math:`|\rho_a|^2 \le N_a^2`, e.g. a
    crystal whose first shells have zero structure factors; Σ W as twice its mean-density
    integral, :meth:`KSpaceWeight.shell_sum`), and must stay below a tenth of the allowed
    error. The next pass's radius is the smallest for which that bound holds with the norm seen
    here. The cells' vectors lie one cell after the other, sorted by norm within each. Cells
    within :data:`_COHERENT_BUDGET` take their tails and norm from :func:`_coherent_tails`.
    """
    n = len(systems)
    cells = np.stack([system.cell for system in systems])
    points = selected_kpoints(cells, sphere_shape(cells, k_max), k_max, vectors=False)
    norms = np.sqrt(points.norm2)
    # by cell (the points come cell after cell), then by norm: one sort of cell + |k|/(2 max |k|)
    # (~5x faster than a lexsort; ties it may swap lie within 1e-13 of each other: one shell)
    order = np.argsort(points.structure + norms / (2.0 * norms.max(initial=1.0)))
    cell, norms, frequencies = points.structure[order], norms[order], points.frequencies[order]
    counts = np.bincount(cell, minlength=n)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    rank = np.arange(norms.size) - offsets[cell]  # position of each vector within its cell
    volumes = np.array([system.volume for system in systems])
    n_atoms = np.array([system.n_atoms for system in systems])
    k_max = np.broadcast_to(np.asarray(k_max, dtype=float), (n,))
    pairs = np.where(frequencies[:, 2] > 0, 2.0, 1.0)  # ±k: both halves of the spectrum
    # the first vector of each shell (equal |k| to round-off): W(|k|) once per shell
    shell = np.diff(norms, prepend=-1.0) > 1e-9 * norms
    shell[1:] |= np.diff(cell) != 0
    first = np.flatnonzero(shell)
    weights = pairs * np.repeat(weight(norms[first], volumes[cell[first]]), np.diff(np.append(first, norms.size)))
    _, n_a = _species_counts(systems, species)
    spectrum = _structure_factors(systems, species, cell, frequencies)
    terms = np.zeros((n, int(counts.max(initial=0)) + 1))  # a row per cell, so that each sum is its own
    terms[cell, rank] = n_atoms[cell] * weights * spectrum
    tails = np.cumsum(terms[:, ::-1], axis=1)[:, ::-1]  # from the cell's smallest terms on: no cancellation
    constant_norm2 = np.array([float((c**2).sum()) for c in constants])
    norm2 = tails[:, 0] + constant_norm2
    share = np.full(n, TRUNCATION_SHARE)
    n_lm = (weight.max_angular + 1) ** 2
    channels = weight.radial(np.zeros(1), 0).shape[1] * n_lm
    n_shells = np.bincount(cell[first], minlength=n)
    gram, by_shells = _coherent_cost(counts, n_shells, n_atoms * (n_a > 0).sum(axis=1), n_lm, channels)
    # a perfect crystal's supercell: structure factors that vanish (a rattled cell has none)
    vanishing = np.bincount(cell, weights=spectrum <= 1e-6 * n_a.sum(axis=1)[cell], minlength=n)
    crystal = vanishing >= _CRYSTAL_VANISHING * counts
    coherent = (gram <= _COHERENT_BUDGET) | (crystal & (np.minimum(gram, by_shells) <= _CRYSTAL_BUDGET))
    coherent = np.flatnonzero((counts > 0) & coherent)
    for i in coherent:
        rows = slice(offsets[i], offsets[i + 1])
        starts = np.flatnonzero(shell[rows])
        vectors = frequencies[rows] @ (2.0 * np.pi * np.linalg.inv(cells[i]).T)  # k = Σ m_d b_d
        vectors_of = (vectors, norms[rows], starts, pairs[rows])
        exact, norm2[i] = _coherent_tails(
            systems[i], species, weight, *vectors_of, constants[i], by_shells=bool(by_shells[i] <= gram[i])
        )
        tails[i, : counts[i]] = exact
    # round-off of ρ_a(k) is that of a featureless density, |δρ|² ~ ε² Σ_a N_a at every k
    featureless = np.bincount(cell, weights=n_atoms[cell] * weights * n_a.sum(axis=1)[cell], minlength=n)
    gain = np.sqrt(np.divide(featureless + constant_norm2, norm2, out=np.ones(n), where=norm2 > 0))
    for i in coherent:  # what round-off and aliasing leave
        rho = 0.0 if roundoff is None else roundoff(int(n_atoms[i]), float(gain[i])) / accuracy
        share[i] = np.sqrt(max(COHERENT_ERROR_SHARE**2 - ALIASING_SHARE**2 - rho**2, TRUNCATION_SHARE**2))
    tail = tails[cell, rank]  # Σ over the cell's vectors from this one on
    allowed = np.where(norm2 > 0.0, (share * accuracy) ** 2 * norm2, np.inf)  # all zero: the first shell only
    # the first vector of each shell but the first, whose tail is allowed
    enough = np.flatnonzero(shell & (rank > 0) & (tail <= allowed[cell]))
    radii, left_out = k_max.copy(), np.full(n, np.inf)
    owners, first = np.unique(cell[enough], return_index=True)
    radii[owners] = 0.5 * (norms[enough[first] - 1] + norms[enough[first]])
    left_out[owners] = norms[enough[first]]
    # Σ W over the unseen shell (twice its mean-density integral) × the largest S
    worst = n_atoms * 2.0 * (n_a**2).sum(axis=1)
    unseen = worst * weight.shell_sum(k_max, beyond, volumes)
    # also when nothing was seen (allowed infinite, unseen > 0); never for a cell without vectors
    radii[(counts > 0) & ~(unseen <= 0.1 * allowed)] = np.nan
    safe = np.divide(0.1 * allowed, worst, out=np.full(n, np.inf), where=worst > 0)
    return radii, weight.shell_radius(np.minimum(safe, 1e300), beyond, volumes), gain, left_out


def _coherent_cost(n_k, n_shells, n_rows, n_lm: int, channels: int):
    """Estimated seconds of :func:`_coherent_tails` for ``n_k`` vectors in ``n_shells`` shells,
    ``n_rows`` = N n_a atom × species-present rows, (L+1)² = ``n_lm`` and C = ``channels``: by
    Gram matrices of the vectors, and by shells (both array-like; measured on the development
    machine, :data:`_COHERENT_BUDGET`)."""
    n_k, n_shells, n_rows = (np.asarray(x, dtype=float) for x in (n_k, n_shells, n_rows))
    gram = 1.2e-10 * n_k**2 * (2 * n_rows + channels) + 6e-9 * n_k**2
    shells = 2e-9 * n_rows * n_k * n_lm + 1.2e-10 * n_shells**2 * (n_rows * n_lm + channels)
    return gram, shells


def _coherent_tails(system, species, weight, k, norms, starts, w, constant, by_shells: bool = True):
    r"""The squared error of the direct sum truncated before each of ``system``'s vectors ``k``
    (``(n_k, 3)`` of the half sphere, sorted by their ``norms``, shells beginning at the indices
    ``starts``, weights ``w`` 1 or 2) and the squared norm
    of all coefficients, without neglecting cross terms: with
    :math:`g_{nlm}(k) = \frac{4\pi}{\Omega}\hat v_p\tilde I_{nl}Y_{lm}(\hat k) = f_{nl}(|k|)Y_{lm}(\hat k)`
    and :math:`s_{ia}(k) = w\,e^{ik\cdot r_i}\rho_a(k)^*`, the tail
    :math:`T_{ianlm}(r) = \sum_{k\ge r}g_{nlm}(k)\,\Re[i^l s_{ia}(k)]` and the error
    :math:`\|T(r)\|^2`, the norm :math:`\|T(0) + c_{k=0} + c_\mathrm{centre}\|^2` (``constant``,
    the l = 0 terms ``(N, n_species, n_radial)``). The incoherent sum of the module docstring
    overestimates a perfect crystal's tail (its l ≠ 0 components cancel over a shell, by the
    sites' symmetry) and a large smearing's few tail vectors by up to ~10×: these are exact.

    :math:`\Re[i^l s]` is ±Re s for even l and ±Im s for odd l (a sign per l, which the squares
    do not see). Two ways to the same numbers (:func:`_coherent_cost` says which is cheaper):

    - ``by_shells``: summed over a shell j, :math:`T_{ianlm}` takes
      :math:`f_{nl}(j)\,V_{ialm}(j)`, :math:`V_{ialm}(j) = \sum_{k\in j}\Re[i^l s_{ia}(k)]Y_{lm}(\hat k)`,
      so that the shells' Gram matrices :math:`\sum_l (V_l V_l^T)\circ(f_l f_l^T)` replace the
      vectors': O(N n_a n_k (L+1)² + n_shells² (N n_a (L+1)² + C)) for C channels (cheap for
      crystals, whose shells hold many vectors);
    - else as Gram matrices: :math:`\|T(r)\|^2 = \sum_{k,k'\ge r}(A_e\circ B_e + A_o\circ B_o)_{kk'}` with
      :math:`A_e = \Re s\,\Re s^T`, :math:`A_o = \Im s\,\Im s^T` (over atoms and species) and
      :math:`B_{e,o} = \sum_{nlm}g_{nlm}(k)g_{nlm}(k')` over the even or odd l: O(n_k² (N n_a + C))
      in matrix products, summed by shells (cheap for few vectors of many shells)."""
    kind, present = species_index(system.numbers, species)
    kinds = np.unique(kind[present])
    if not kinds.size:  # no neighbour species: no k-sum
        return np.zeros(len(k)), float((constant**2).sum())
    phase = np.exp(1j * (system.positions @ k.T))  # (N, n_k)
    rho = np.stack([phase[present & (kind == a)].sum(axis=0) for a in kinds])  # (n_a, n_k)
    s = (phase.T[:, :, None] * (w[:, None] * rho.T.conj())[:, None, :]).reshape(len(k), -1)  # (n_k, N n_a)
    L, sizes = weight.max_angular, np.diff(np.append(starts, len(k)))
    ylm = real_spherical_harmonics(k, L)  # (n_k, (L+1)²)
    base = (4 * np.pi / system.volume) * weight.vhat(norms[starts])  # per shell
    radial = [base[:, None] * weight.radial(norms[starts], l) for l in range(L + 1)]  # f_nl per shell
    parts = [s.imag if l % 2 else s.real for l in range(L + 1)]
    if by_shells:  # V(j) and the shells' Gram matrices
        v = np.empty((len(k), ylm.shape[1], s.shape[1]))  # Re[i^l s] Y_lm up to a sign, (n_k, (L+1)², N n_a)
        for l in range(L + 1):
            np.multiply(ylm[:, l * l : (l + 1) ** 2, None], parts[l][:, None, :], out=v[:, l * l : (l + 1) ** 2])
        v = np.add.reduceat(v, starts, axis=0)  # (n_shells, (L+1)², N n_a)
        shells = np.zeros((len(starts), len(starts)))
        for l in range(L + 1):
            vl = v[:, l * l : (l + 1) ** 2].reshape(len(starts), -1)
            shells += (vl @ vl.T) * (radial[l] @ radial[l].T)
        whole = v[:, 0].T @ radial[0]  # T(0), l = 0: (N n_a, n_radial)
    else:  # the vectors' Gram matrices, summed by shells
        shell = np.repeat(np.arange(len(starts)), sizes)  # each vector's shell
        factors = [
            (ylm[:, l * l : (l + 1) ** 2, None] * radial[l][shell, None, :]).reshape(len(k), -1) for l in range(L + 1)
        ]
        pairs = np.zeros((len(k), len(k)))
        for parity in (0, 1):
            g = np.concatenate(factors[parity::2], axis=1) if factors[parity::2] else np.zeros((len(k), 0))
            part = (s.real, s.imag)[parity]
            pairs += (part @ part.T) * (g @ g.T)
        shells = np.add.reduceat(np.add.reduceat(pairs, starts, axis=0), starts, axis=1)
        whole = s.real.T @ factors[0]
    error2 = np.diagonal(shells[::-1, ::-1].cumsum(axis=0).cumsum(axis=1)[::-1, ::-1])  # Σ over shells ≥ both
    whole = whole.reshape(constant.shape[0], len(kinds), -1)
    norm2 = float(error2[0] + 2.0 * (whole * constant[:, kinds]).sum() + (constant**2).sum())
    return np.repeat(error2, sizes), norm2


class DensityAliasing:
    r"""Predicted relative RMS error of a particle mesh's coefficients from aliasing, on the
    structure's own density: the mesh's :math:`\rho_a(k)` also holds :math:`\rho_a(k + K)` of the
    images :math:`K = \pm M_d b_d` (shape :math:`M`), and the interpolation sees every component
    again at its images, each damped by :math:`d = |u/(u \pm 1)|^P` with :math:`u = m_d/M_d`
    (B-splines of order P, module docstring of :mod:`gplode.methods.mesh`),

    .. math::

        \epsilon^2 = \frac{N\sum_k W(k)\sum_{d,\pm}d^2\,[S(k) + S(k \pm M_d b_d)]}{\|c\|^2}

    over the sphere's vectors, with the structure factors at the images (:func:`_image_spectra`).
    The mesh's own estimate assumes a featureless spectrum; a crystal's Bragg peaks at the
    images of its weak components (σ comparable to the cell), or of its vanishing, strongly
    weighted ones (a mesh that is not a multiple of the crystal's period), made this error
    dominate: measured 6× the accuracy, and 6,000× in a perfect 216-atom NaCl supercell at
    σ = 3 Å on a 15³ mesh, when only the lowest vectors' images were looked at. ``aliasing(shape, order)``; the
    images' structure factors are computed once per shape.

    :param constant_norm2: :math:`\|c_{k=0} + c_\mathrm{centre}\|^2` of the structure's atoms
    """

    def __init__(self, system, species, weight: KSpaceWeight, constant_norm2: float, k_cutoff: float):
        self.system, self.species = system, species
        cell = system.cell[None]
        points = selected_kpoints(cell, sphere_shape(cell, k_cutoff), k_cutoff, vectors=False)
        self.frequencies = points.frequencies
        norms = np.sqrt(points.norm2)
        self.weights = np.where(self.frequencies[:, 2] > 0, 2.0, 1.0) * weight(norms, system.volume)  # ±k
        self._density = None  # beyond the budget of _spectra: S and the images' S from one density mesh
        if len(self.frequencies) * system.n_atoms > _STRUCTURE_FACTOR_BUDGET:
            m = np.rint(self.frequencies).astype(np.int64)
            self._density = _DensityMesh(system, species, np.abs(m).max(axis=0, initial=0))
            self.spectrum = self._density.spectra(m)
        else:
            self.spectrum = _spectra([system], species, np.zeros(norms.size, dtype=np.int64), self.frequencies)
        self.norm2 = system.n_atoms * float(self.weights @ self.spectrum) + constant_norm2
        self._images = {}  # per mesh shape (the higher orders of a shape are tried in turn)

    def __call__(self, shape, order: int) -> float:
        if self.norm2 <= 0.0 or not len(self.frequencies):
            return 0.0
        images = self._images.get(shape)
        if images is None:
            images = _image_spectra(self.system, self.species, self.frequencies, shape, self._density)
            self._images[shape] = images
        damping = _damping(self.frequencies, shape, order)
        aliased = float(((damping * (self.spectrum + images)) @ self.weights).sum())
        return float(np.sqrt(self.system.n_atoms * aliased / self.norm2))


def _damping(frequencies, shape, order: int) -> np.ndarray:
    r""":math:`|u_d/(u_d \pm 1)|^{2P}` of the six images m ± M_d e_d of each frequency m, ``(6, n_k)``."""
    u = frequencies / np.asarray(shape, dtype=float)
    return np.stack([np.abs(u[:, d] / (u[:, d] + sign)) ** (2 * order) for d in range(3) for sign in (1, -1)])


def _spectra(systems, species, cell, frequencies) -> np.ndarray:
    r""":math:`\sum_a|\rho_a(k)|^2` at the vectors of integer ``frequencies`` m (``(n_k, 3)``,
    :math:`k = \sum_d m_d b_d`, sorted by their ``cell`` index into ``systems``), a few cells at a
    time (at most :data:`_SPECTRA_CHUNK` padded products, or one cell, at once).

    Separable phases: :math:`e^{ik\cdot r_j} = \prod_d e^{2\pi i m_d f_{jd}}` (fractional
    coordinates f), so that over the box of each cell's frequencies
    :math:`\rho_a(m) = \sum_j [e^{2\pi i m_1 f_{j1}}e^{2\pi i m_2 f_{j2}}]\,[\delta_{a,j}e^{2\pi i m_3 f_{j3}}]`
    is one complex matrix product per cell, (m₁m₂ × atoms) @ (atoms × species·m₃): a fraction of
    the ~8 ns per atom × vector of cosines and sines of every k·r (the box holds ~2× a sphere's
    vectors). In double precision: the structure factors that vanish (a crystal's, between its
    Bragg peaks) come out at ~(10⁻⁷ N_a)² in single precision, and where W(k) is 10¹⁰ and more
    above its value at the peaks (σ of 3 Å in a 17 Å NaCl supercell) that noise outweighed them
    in the norm: the chosen sphere missed a shell, measured 2.2 × the accuracy (5 % more time
    than in single precision)."""
    n = len(systems)
    counts = np.bincount(cell, minlength=n)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    m = np.rint(frequencies).astype(np.int64)
    low = np.zeros((n, 3), dtype=np.int64)
    high = np.zeros((n, 3), dtype=np.int64)
    seen = counts > 0
    low[seen] = np.minimum.reduceat(m, offsets[:-1][seen], axis=0)
    high[seen] = np.maximum.reduceat(m, offsets[:-1][seen], axis=0)
    widths = high - low + 1  # each cell's box of frequencies
    n_atoms = np.array([system.n_atoms for system in systems])
    work = n_atoms * np.prod(widths, axis=1)
    out = np.empty(cell.size)
    inverses = np.linalg.inv(np.stack([system.cell for system in systems]))
    start = 0
    while start < n:
        stop = start + max(1, int(np.searchsorted(np.cumsum(work[start:]), _SPECTRA_CHUNK, side="right")))
        chunk = systems[start:stop]
        owner, slot = atom_owners(chunk)
        # each cell's own species only (Σ_a |ρ_a|² does not depend on their names)
        kind, present = species_index(np.concatenate([system.numbers for system in chunk]), species)
        kind, n_kinds = species_slots(owner[present], kind[present], len(chunk), len(species))
        fractional = np.zeros((len(chunk), int(slot.max()) + 1, 3))
        fractional[owner, slot] = np.concatenate([s.positions for s in chunk])
        fractional = np.matmul(fractional, inverses[start:stop])
        onehot = np.zeros((len(chunk), fractional.shape[1], n_kinds), dtype=np.complex128)
        onehot[owner[present], slot[present], kind] = 1.0
        width = widths[start:stop].max(axis=0)
        tables = []  # e^{2πi m f} over each cell's frequencies m = low + 0 … width − 1, (cells, atoms, width)
        for d in range(3):
            turns = fractional[:, :, d, None] * (low[start:stop, d, None, None] + np.arange(width[d]))
            angles = (2.0 * np.pi) * (turns - np.rint(turns))  # in [-π, π]
            table = np.empty(angles.shape, dtype=np.complex128)
            table.real, table.imag = np.cos(angles), np.sin(angles)
            tables.append(table)
        # (cells, m₁, m₂, atoms): contiguous for the product, no transposed copy
        plane = tables[0].transpose(0, 2, 1)[:, :, None, :] * tables[1].transpose(0, 2, 1)[:, None, :, :]
        line = (onehot[:, :, :, None] * tables[2][:, :, None, :]).reshape(len(chunk), -1, n_kinds * width[2])
        rho = np.matmul(plane.reshape(len(chunk), width[0] * width[1], -1), line).ravel()  # (cells, m₁m₂, kinds, m₃)
        rows = slice(offsets[start], offsets[stop])
        shifted = m[rows] - low[cell[rows]]
        at = ((cell[rows] - start) * width[0] + shifted[:, 0]) * width[1] + shifted[:, 1]
        at = at * (n_kinds * width[2]) + shifted[:, 2]  # of each vector's first species
        out[rows] = 0.0
        for a in range(n_kinds):
            value = rho[at + a * width[2]]
            out[rows] += value.real**2 + value.imag**2
        start = stop
    return out


def _structure_factors(systems, species, cell, frequencies) -> np.ndarray:
    r""":math:`S(k) = \sum_a|\rho_a(k)|^2` at the vectors of integer ``frequencies`` (sorted by
    their ``cell`` index into ``systems``): by :func:`_spectra` for the cells within
    :data:`_STRUCTURE_FACTOR_BUDGET` atom × vector products, by :func:`_mesh_spectra` for the others."""
    counts = np.bincount(cell, minlength=len(systems))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    n_atoms = np.array([system.n_atoms for system in systems])
    large = counts * n_atoms > _STRUCTURE_FACTOR_BUDGET
    if not large.any():
        return _spectra(systems, species, cell, frequencies)
    out = np.empty(cell.size)
    small = ~large[cell]
    if small.any():
        out[small] = _spectra(systems, species, cell[small], frequencies[small])
    for i in np.flatnonzero(large):
        rows = slice(offsets[i], offsets[i + 1])  # the cell's vectors
        out[rows] = _mesh_spectra(systems[i], species, frequencies[rows])
    return out


def _mesh_spectra(system, species, frequencies) -> np.ndarray:
    r""":math:`\sum_a|\rho_a(k)|^2` of one ``system`` at integer ``frequencies`` m (``(n_k, 3)``)
    from the FFT of its species' densities (:class:`_DensityMesh`): O(M log M + N P³) where
    :func:`_spectra` is O(N × vectors)."""
    m = np.rint(frequencies).astype(np.int64)
    return _DensityMesh(system, species, np.abs(m).max(axis=0, initial=0)).spectra(m)


class _DensityMesh:
    r"""The species' densities of one ``system`` assigned with B-splines of order
    :data:`_MESH_SPECTRA_ORDER` to a mesh of :math:`M_d \ge 3 r_d` points, for structure factors
    at integer frequencies :math:`|m_d| \le r_d` (``reach``), divided by :math:`\hat K_P(m)`.
    The images :math:`m + qM` alias in with at most :math:`(u/(1-u))^P = 2^{-P}` of their
    amplitude (:math:`u = |m_d|/M_d \le 1/3`): ~2 digits of every Bragg peak, and a zero
    structure factor reads as at most ~10⁻⁴ of a peak's (:math:`N_a^2`), at the edge of the
    sphere, where W is smallest. The stencils are formed once (:data:`_MESH_SPECTRA_CHUNK`
    atoms at a time) and kept, as sparse matrices, for every :meth:`spectra` call."""

    def __init__(self, system, species, reach):
        self.shape = tuple(fast_length(3 * int(r) + 3) for r in reach)
        kind, present = species_index(system.numbers, species)
        self.fractional = (system.positions @ np.linalg.inv(system.cell)) % 1.0
        self.atoms = [np.flatnonzero(present & (kind == a)) for a in np.unique(kind[present])]
        chunks = [
            [atoms[i : i + _MESH_SPECTRA_CHUNK] for i in range(0, atoms.size, _MESH_SPECTRA_CHUNK)]
            for atoms in self.atoms
        ]
        size = math.prod(self.shape)
        self.spreading = [  # per species and chunk: the transposed stencil matrix, (mesh points, atoms)
            [
                (chunk, _spreading(*stencil(self.fractional[chunk], self.shape, _MESH_SPECTRA_ORDER), size))
                for chunk in species_chunks
            ]
            for species_chunks in chunks
        ]
        self._work = None  # the shifted densities' buffer (complex, the mesh's size)

    def spectra(self, m, shift=None) -> np.ndarray:
        r""":math:`\sum_a|\rho_a(m)|^2` at integer frequencies ``m`` (``(n_k, 3)``, within the reach).
        With an integer ``shift`` s, at m + s and m − s instead, ``(2, n_k)``: each atom's density
        carries :math:`e^{-2\pi i s\cdot f_j}`, so that the complex FFT holds :math:`\rho_a(m + s)`
        at m and :math:`\rho_a(-(m - s))` at −m."""
        shape, size = self.shape, math.prod(self.shape)
        if shift is None:
            m = np.where(m[:, 2:3] < 0, -m, m)  # |ρ(−m)| = |ρ(m)|: the half spectrum of a real FFT
            rows = [((m[:, 0] % shape[0]) * shape[1] + m[:, 1] % shape[1]) * (shape[2] // 2 + 1) + m[:, 2]]
        else:
            rows = [np.ravel_multi_index(tuple((sign * m % shape).T), shape) for sign in (1, -1)]
            turns = self.fractional @ np.asarray(shift, dtype=float)
            charge = np.exp(-2j * np.pi * (turns - np.rint(turns)))
        out = np.zeros((len(rows), len(m)))
        for spreading in self.spreading:  # one species
            if shift is None:
                density = sum(matrix @ np.ones(chunk.size) for chunk, matrix in spreading)
                spectrum = fft.rfftn(density.reshape(shape), workers=-1).ravel()
            else:  # in the kept buffer, transformed in place: fresh pages cost as much as the FFT
                if self._work is None:
                    self._work = np.empty(size, dtype=complex)
                density = self._work
                density[:] = 0.0
                for chunk, matrix in spreading:
                    density.real += matrix @ charge[chunk].real
                    density.imag += matrix @ charge[chunk].imag
                spectrum = fft.fftn(density.reshape(shape), workers=-1, overwrite_x=True).ravel()
            for i, at in enumerate(rows):
                out[i] += spectrum[at].real ** 2 + spectrum[at].imag ** 2
        khat = np.prod([bspline_fourier(m[:, d], _MESH_SPECTRA_ORDER, shape[d]) for d in range(3)], axis=0)
        return out[0] / khat**2 if shift is None else out / khat**2


def _spreading(indices, weights, size: int):
    """The B-spline assignment of atoms with stencils ``indices``, ``weights`` ``(n_atoms, P³)``
    to a flat mesh of ``size`` points, as a sparse (CSC) matrix ``(size, n_atoms)``: a density
    is one product with the atoms' charges (2,048 atoms on 90³, order 6: 0.6–0.75 ms against
    0.85–0.93 ms for a ``bincount``, and no weighted copy of the stencils per charge)."""
    n_atoms, width = indices.shape
    pointers = np.arange(0, n_atoms * width + 1, width)
    return sparse.csr_matrix((weights.ravel(), indices.ravel(), pointers), shape=(n_atoms, size)).T


def _image_spectra(system, species, frequencies, shape, density=None) -> np.ndarray:
    r""":math:`S(m \pm M_d e_d)` at the six images of each integer frequency m (``(n_k, 3)``) on a
    mesh of ``shape`` M, ``(6, n_k)`` in the order of :func:`_damping`: by :func:`_spectra`, each
    image a box of its own, or from ``density`` (a :class:`_DensityMesh` reaching the frequencies,
    for cells beyond :data:`_STRUCTURE_FACTOR_BUDGET`), one shifted density per axis."""
    if density is None:
        shifts = np.array([sign * shape[d] * np.eye(3)[d] for d in range(3) for sign in (1, -1)])
        images = (frequencies[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
        where = np.repeat(np.arange(6), len(frequencies))
        return _spectra([system] * 6, species, where, images).reshape(6, -1)
    m = np.rint(frequencies).astype(np.int64)
    return np.concatenate([density.spectra(m, shape[d] * np.eye(3)[d]) for d in range(3)])


def _ladder(radius: float, bound: float, below: float = np.inf) -> float:
    """The smallest ``bound`` × (1 + step)^-j (j ≥ 0) not below ``radius``, if it lies below
    ``below`` (the first shell left out: rounding up must not take it in, a sphere more accurate
    than asked for by a whole shell), else ``radius``."""
    steps = np.floor(np.log(bound / radius) / np.log1p(_LADDER_STEP))
    rung = float(min(bound, bound * (1.0 + _LADDER_STEP) ** -max(steps, 0.0)))
    return rung if rung < below else float(radius)
