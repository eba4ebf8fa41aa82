"""``accuracy`` is the measured error (issue 15): the k-sphere of each periodic structure from
the truncation-error model of :mod:`gplode.methods.accuracy`, checked against converged sums.

On a matrix of small cells (a perfect crystal, a skewed ionic cell, a rattled supercell, a
molecular box), exponents, both bases, smearings from 0.3 Å (r₀ = 2 Å) to 3 Å (r₀ = 6 Å,
comparable to the cells) and accuracies from 1e-2 to 1e-8, the measured relative RMS error of
all coefficients never exceeds the accuracy. The band's lower end (1/20 of the accuracy: no
accuracy paid for and not asked) is met by most cases, not all: a small cell's error falls in
steps of whole shells (exempt when the sphere without its outermost shell misses the
accuracy), and beyond the small cells whose error it computes exactly (cross terms kept) the
model, which neglects the interference of different k-vectors, errs on the safe side by up to
~10× in perfect crystals. The test asserts what holds today: every case
below the accuracy, the median in the band, and at least 85 % of the cases in the band or
exempt. The full table is benchmarks/results/accuracy_band.json.
"""

import functools

import ase
import ase.build
import numpy as np
import pytest

import gplode
from gplode.lib.kvectors import selected_kpoints, sphere_shape
from gplode.systems import as_systems


def _structures():
    nacl = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    rattled = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 1, 1))
    rattled.rattle(0.2, rng=np.random.default_rng(1))
    skewed = ase.Atoms(
        "NaClKCl",
        scaled_positions=np.random.default_rng(2).uniform(size=(4, 3)),
        cell=[[5.1, 0.4, 0.0], [2.7, 4.8, 0.3], [-1.2, 0.5, 5.4]],
        pbc=True,
    )
    rng = np.random.default_rng(3)
    oxygens = [[1.0, 1.2, 0.8], [4.1, 3.9, 1.1], [1.3, 4.4, 4.2], [4.4, 1.1, 3.9]]
    positions = [np.add(o, d) for o in oxygens for d in ([0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0])]
    water = ase.Atoms("OH2" * 4, positions=np.array(positions) + rng.normal(0, 0.05, (12, 3)), cell=[6.2] * 3, pbc=True)
    return {"perfect NaCl": nacl, "rattled NaCl": rattled, "skewed": skewed, "water": water}


STRUCTURES = _structures()


def _error(values, exact):
    return float(np.sqrt(((values - exact) ** 2).sum() / (exact**2).sum()))


@functools.cache
def _converged(name, p, basis, sigma, r0):
    """The reference sum to round-off: the summand is below e^{-39} of its largest beyond
    σ²k²/2 = ln(1e16) + 3."""
    k_cutoff = np.sqrt(2.0 * (np.log(1e16) + 3.0)) / sigma
    calc = gplode.LodeCalculator(backend="reference", k_cutoff=k_cutoff, **_hypers(p, basis, sigma, r0))
    return calc.compute(STRUCTURES[name]).values


def _hypers(p, basis, sigma, r0):
    return dict(exponent=p, smearing=sigma, cutoff=r0, max_radial=3, max_angular=3, radial_basis=basis)


def _smaller_sphere_misses(name, hypers, k_cutoff, exact, accuracy) -> bool:
    """Whether the sphere without its outermost shell misses ``accuracy`` (or there is none):
    then no cheaper sphere meets it, and the error may fall below the band."""
    cell = STRUCTURES[name].cell.array[None]
    norms = np.linalg.norm(selected_kpoints(cell, sphere_shape(cell, k_cutoff), k_cutoff).k, axis=1)
    if np.ptp(norms) <= 1e-9 * norms.max():
        return True  # the first shell only
    smaller = float(norms.max()) * (1 - 1e-9)
    values = gplode.LodeCalculator(backend="reference", k_cutoff=smaller, **hypers).compute(STRUCTURES[name]).values
    return _error(values, exact) > accuracy


def _band(cases, accuracies, backends):
    """Measured error / accuracy of every case, and whether it is in the band or exempt (the
    band's lower end: 1/20 of the accuracy)."""
    rows = []
    for name, p, basis, (sigma, r0) in cases:
        hypers, exact = _hypers(p, basis, sigma, r0), _converged(name, p, basis, sigma, r0)
        species = np.unique(STRUCTURES[name].numbers)
        for backend in backends:
            for accuracy in accuracies:
                calc = gplode.LodeCalculator(backend=backend, accuracy=accuracy, **hypers)
                ratio = _error(calc.compute(STRUCTURES[name]).values, exact) / accuracy
                k_cutoff = calc.pipeline.with_spheres(as_systems(STRUCTURES[name]), species)[0].k_cutoff
                lower = ratio >= 0.05 or _smaller_sphere_misses(name, hypers, k_cutoff, exact, accuracy)
                rows.append((f"{name} p={p} {basis} σ={sigma} {backend} {accuracy:g}", ratio, lower))
    return rows


def _check(rows):
    over = [(label, ratio) for label, ratio, _ in rows if ratio > 1.0]
    assert not over, f"accuracy exceeded: {over}"
    ratios = np.array([ratio for _, ratio, _ in rows])
    assert 0.05 <= np.median(ratios) <= 1.0
    outside = [(label, f"{ratio:.3g}") for label, ratio, lower in rows if not lower]
    assert len(outside) <= 0.02 * len(rows), f"{len(outside)} of {len(rows)} below the band: {outside}"


EXPONENTS = [
    (0.0, "gto"),
    (0.5, "monomial"),
    (1.0, "monomial"),
    (2.0, "gto"),
    (3.0, "gto"),
    (3.5, "monomial"),
    (4.5, "gto"),
    (6.0, "gto"),
    (8.0, "monomial"),
]


def test_accuracy_band_everyday():
    """A representative corner of the matrix: ionic and molecular cells, p = 1 and 6, both
    bases, σ = 1 and 3 Å, the numpy backend."""
    cases = [
        (name, p, basis, smearing)
        for name in ("rattled NaCl", "water")
        for p, basis in [(1.0, "monomial"), (6.0, "gto")]
        for smearing in [(1.0, 4.0), (3.0, 6.0)]
    ]
    _check(_band(cases, (1e-3, 1e-6), ("numpy",)))


@pytest.mark.slow
def test_accuracy_band():
    """The whole matrix: 4 structures × 9 exponents and bases × 3 smearings (σ = 0.3 Å with
    the GTO basis only: the monomials' slowly decaying integrals make the converged reference
    slow there) × 6 accuracies (1e-5: the numpy backend's values in float32) × both backends."""
    smearings = [(0.3, 2.0), (1.0, 4.0), (3.0, 6.0)]
    cases = [(name, p, basis, s) for name in STRUCTURES for p, basis in EXPONENTS for s in smearings]
    cases = [case for case in cases if not (case[3][0] == 0.3 and case[2] == "monomial")]
    _check(_band(cases, (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8), ("reference", "numpy")))


@pytest.mark.parametrize(
    "route, smearing, p, accuracy",
    [
        ("direct", 2.0, 1.0, 1e-3),
        ("direct", 2.0, 1.0, 1e-4),
        ("direct", 2.0, 6.0, 1e-3),
        ("mesh", 3.0, 1.0, 1e-3),
        ("mesh", 3.0, 1.0, 1e-5),
        ("mesh", 2.0, 1.0, 1e-3),
        ("auto", 3.0, 1.0, 1e-3),
    ],
)
def test_large_rattled_crystal_meets_the_accuracy(route, smearing, p, accuracy):
    """A rattled 512-atom crystal with σ comparable to its cell: its Bragg peaks hold most of
    the direct sum's tail (⟨S⟩ in their place, too few exact structure factors, had given 1.15 ×
    the accuracy at σ = 2 Å), and on the mesh they alias onto the few weak components inside
    the sphere (the cell's own mesh had given 6.3 × at σ = 3 Å, 1e-3, the automatic route's
    choice then)."""
    atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(4)
    atoms.rattle(0.1, seed=1)
    hypers = dict(exponent=p, smearing=smearing, cutoff=2 * smearing, max_radial=4, max_angular=3)
    exact = gplode.LodeCalculator(backend="reference", accuracy=1e-10, **hypers).compute(atoms).values
    values = gplode.LodeCalculator(backend="numpy", route=route, accuracy=accuracy, **hypers).compute(atoms).values
    assert _error(values, exact) <= accuracy


@pytest.mark.parametrize("name", ["skewed", "perfect NaCl"])
def test_large_smearing_never_gives_an_empty_sum(name):
    """σ = 3 Å on small cells, p = 1 (no k = 0 term): the sphere of the old σ-only formula held
    a few vectors and missed the accuracy; in the perfect crystal the first two shells have
    zero structure factors (the model's first pass once stopped there: all-zero features)."""
    atoms = STRUCTURES[name]
    hypers = _hypers(1.0, "gto", 3.0, 6.0)
    exact = _converged(name, 1.0, "gto", 3.0, 6.0)
    for accuracy in (1e-2, 1e-3, 1e-5):
        values = gplode.LodeCalculator(backend="numpy", accuracy=accuracy, **hypers).compute(atoms).values
        assert np.abs(values).max() > 0
        assert _error(values, exact) <= accuracy


def test_explicit_empty_sphere_is_refused():
    atoms = STRUCTURES["perfect NaCl"]
    calc = gplode.LodeCalculator(
        exponent=1.0, smearing=1.0, cutoff=4.0, max_radial=2, max_angular=1, backend="reference", k_cutoff=0.5
    )
    with pytest.raises(ValueError, match="holds no k-vector"):
        calc.compute(atoms)


def test_sphere_depends_on_the_structure_only():
    """The radius is a function of the structure and the hypers: the same in any batch, after
    anything else was computed, and for a rigidly translated copy."""
    hypers = dict(exponent=1.0, smearing=1.0, cutoff=4.0, max_radial=3, max_angular=3, accuracy=1e-5)
    calc = gplode.LodeCalculator(backend="numpy", neighbor_types=[11, 17], **hypers)
    atoms = STRUCTURES["rattled NaCl"]
    alone = calc.compute(atoms).values
    together = calc.compute([STRUCTURES["water"], atoms, STRUCTURES["skewed"]]).values
    rows = slice(len(STRUCTURES["water"]), len(STRUCTURES["water"]) + len(atoms))
    np.testing.assert_allclose(together[rows], alone, rtol=0, atol=1e-13 * np.abs(alone).max())
    moved = atoms.copy()
    moved.translate([0.3, -1.1, 2.0])
    species = np.unique(atoms.numbers)
    radii = [calc.pipeline.with_spheres(as_systems(a), species)[0].k_cutoff for a in (atoms, moved)]
    assert radii[0] == pytest.approx(radii[1], rel=1e-12)


@pytest.mark.parametrize("smearing", [1.0, 2.0])
def test_a_perfect_supercell_meets_the_accuracy_on_the_direct_sum(smearing):
    """A perfect 512-atom NaCl supercell: its density lives on the Bragg peaks of the 8-atom
    cell, the first of them beyond a few hundred of the supercell's vectors. With exact
    structure factors only that far (10⁵ atom × vector products), the model took the peaks
    for a featureless spectrum: measured error 1.2× (σ = 1 Å) and 50× (σ = 2 Å) the accuracy."""
    unit = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    hypers = dict(exponent=1.0, smearing=smearing, cutoff=4.0, max_radial=3, max_angular=3)
    exact = gplode.LodeCalculator(backend="reference", accuracy=1e-12, **hypers).compute(unit).values
    exact = np.tile(exact, (64, 1, 1, 1))  # every Na/Cl of the supercell has the unit cell's features
    calc = gplode.LodeCalculator(backend="numpy", route="direct", accuracy=1e-3, **hypers)
    assert _error(calc.compute(unit.repeat((4, 4, 4))).values, exact) <= 1e-3


def _nacl_supercell(repeat: int, smearing: float, cutoff: float, accuracy: float, **kwargs):
    """The measured error of a perfect NaCl supercell against the tiled exact features of its
    8-atom cell, and the supercell's system with the sphere ``compute`` gives it."""
    unit = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    hypers = dict(exponent=1.0, smearing=smearing, cutoff=cutoff, max_radial=3, max_angular=3)
    exact = gplode.LodeCalculator(backend="reference", accuracy=1e-12, **hypers).compute(unit).values
    calc = gplode.LodeCalculator(backend="numpy", accuracy=accuracy, **hypers, **kwargs)
    values = calc.compute(unit.repeat((repeat,) * 3)).values
    return _error(values, np.tile(exact, (repeat**3, 1, 1, 1)))


@pytest.mark.parametrize("route", ["auto", "direct", "mesh"])
@pytest.mark.parametrize("repeat, smearing", [(3, 3.0), (4, 2.0)])
def test_a_perfect_supercell_at_a_large_smearing_meets_the_accuracy_on_every_route(route, repeat, smearing):
    """σ of 2–3 Å in a perfect NaCl supercell: all of the density is in Bragg peaks whose W(k)
    is 10¹⁰–10¹⁸ below that of the vanishing components between them. Measured at accuracy
    1e-3 before the fixes: the mesh summed the σ-only sphere, 50× (σ = 2 Å, 512 atoms); its
    aliasing model looked only at the images of the lowest vectors, 4.5× and 6,000× (σ = 3 Å,
    216 atoms, a 15-point mesh); the single-precision structure factors of the truncation model
    outweighed the peaks, 2.2× on the direct sum."""
    assert _nacl_supercell(repeat, smearing, 2 * smearing, 1e-3, route=route) <= 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("route, accuracy", [("auto", 1e-3), ("auto", 1e-4), ("direct", 1e-3)])
def test_a_perfect_4096_atom_supercell_meets_the_accuracy(route, accuracy):
    """The 4,096-atom NaCl supercell at σ = 2 Å: beyond the budget of structure factors from
    the atoms' phases, the truncation model takes them from a mesh. Measured 51× and 116× the
    accuracy on the default (mesh) route with the σ-only sphere; on the direct sum, 50× with
    the model's old budget, then 3× with float32 values (their round-off gain is 1.9·10⁴)."""
    assert _nacl_supercell(8, 2.0, 4.0, accuracy, route=route) <= accuracy


def test_float32_values_only_where_their_round_off_fits():
    """At accuracy 1e-3 the direct sum's values run in float32, unless the structure's predicted
    round-off (its gain: a perfect supercell at σ = 2 Å) exceeds half of it; such structures
    are batched apart and give the same values as alone."""
    from gplode.methods.accuracy import single_precision_roundoff

    unit = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    frames = [unit.repeat((4, 4, 4)), unit.copy(), unit.copy()]
    for seed, frame in enumerate(frames[1:]):
        frame.rattle(0.1, seed=seed)
    hypers = dict(exponent=1.0, smearing=2.0, cutoff=4.0, max_radial=3, max_angular=3, accuracy=1e-3)
    calc = gplode.LodeCalculator(backend="numpy", route="direct", **hypers)
    pipeline, species = calc.pipeline, np.array([11, 17])
    systems = pipeline.with_spheres(as_systems(frames), species)
    roundoff = [single_precision_roundoff(s) for s in systems]
    assert roundoff[0] > 5e-4 > 2e-6 > roundoff[1]
    assert [pipeline.direct.values_real(s) for s in systems] == [np.float64, np.float32, np.float32]
    plans = pipeline.plan(systems, species)
    assert sorted(sorted(members) for members, _, _ in plans) == [[0], [1, 2]]
    features = calc.compute(frames)
    for i, frame in enumerate(frames):
        alone = calc.compute(frame).values
        tolerance = 1e-9 if i == 0 else 1e-6  # float64 with a gain of 10⁴ (batched BLAS sums in another order)
        np.testing.assert_allclose(features.values[features.system == i], alone, atol=tolerance * np.abs(alone).max())


def test_the_truncation_share_leaves_room_for_the_predicted_round_off():
    """The direct sum's predicted round-off, which the exact model's truncation share leaves room
    for: float32's where the values run in it (accuracy 1e-3, within half of it), 0 in float64."""
    from gplode.methods.accuracy import single_precision_roundoff_of

    hypers = dict(exponent=1.0, smearing=1.0, cutoff=4.0, max_radial=3, max_angular=3)
    single = gplode.LodeCalculator(backend="numpy", accuracy=1e-3, **hypers).pipeline.direct
    assert single.roundoff(24, 10.0) == single_precision_roundoff_of(24, 10.0) > 0
    assert single.roundoff(24, 1e5) == 0.0  # beyond half the accuracy: float64
    assert gplode.LodeCalculator(backend="numpy", accuracy=1e-6, **hypers).pipeline.direct.roundoff(24, 10.0) == 0.0
    forced = gplode.LodeCalculator(backend="numpy", accuracy=1e-6, dtype="float32", **hypers).pipeline.direct
    assert forced.roundoff(24, 1e5) == single_precision_roundoff_of(24, 1e5)


def test_rounding_the_radius_up_never_takes_in_the_next_shell():
    """The ladder of radii (1 % steps) rounds up, but not past the first shell left out: the
    skewed 4-atom cell at σ = 3 Å has shells at 1.658, 1.663 and 1.680 Å⁻¹, and the sphere
    without the last measured 0.69 × accuracy 1e-3 (rounded up, it was kept: 0.012 ×)."""
    from gplode.methods.accuracy import _ladder

    rung = _ladder(1.6715, 3.6)
    assert 1.6715 < rung <= 1.6715 * 1.01 and _ladder(rung, 3.6) == rung
    assert _ladder(1.6715, 3.6, below=1.680) == rung  # the rung lies below the next shell
    assert _ladder(1.6715, 3.6, below=rung) == 1.6715  # it does not: the radius itself
    hypers = _hypers(1.0, "gto", 3.0, 6.0)
    atoms = STRUCTURES["skewed"]
    calc = gplode.LodeCalculator(backend="numpy", accuracy=1e-3, **hypers)
    (system,) = calc.pipeline.with_spheres(as_systems(atoms), np.unique(atoms.numbers))
    cell = system.cell[None]
    norms = np.linalg.norm(selected_kpoints(cell, sphere_shape(cell, 2.0), 2.0).k, axis=1)
    shell = norms[(norms > 1.675) & (norms < 1.69)].min()  # 1.680 Å⁻¹, left out
    assert norms[norms < shell].max() < system.k_cutoff < shell
    error = _error(calc.compute(atoms).values, _converged("skewed", 1.0, "gto", 3.0, 6.0))
    assert 0.5 <= error / 1e-3 <= 1.0


def test_mesh_structure_factors_match_the_phases():
    """:func:`_mesh_spectra` (plain, and at the images m ± s) against :func:`_spectra` (the
    atoms' separable phases), on a perfect and a rattled skewed supercell: measured 3·10⁻³
    relative at the Bragg peaks (order 6 with u ≤ 1/3: the images alias in with at most 2⁻⁶
    of their amplitude, ~3 % at the corners of the box), 10⁻⁴ of the largest elsewhere."""
    from gplode.methods import accuracy

    rng = np.random.default_rng(0)
    species = np.array([11, 17])
    for rattle in (0.0, 0.05):
        atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((3, 3, 4))
        atoms.set_cell(atoms.cell @ np.array([[1, 0.1, 0], [0, 1, 0.2], [0.05, 0, 1]]), scale_atoms=True)
        atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
        (system,) = as_systems(atoms)
        m = selected_kpoints(system.cell[None], sphere_shape(system.cell[None], 2.5), 2.5).frequencies
        where = np.zeros(len(m), dtype=np.int64)
        exact = accuracy._spectra([system], species, where, m)
        plain = accuracy._mesh_spectra(system, species, m)
        np.testing.assert_allclose(plain, exact, rtol=5e-3, atol=1e-4 * exact.max())
        shift = np.array([0.0, 18.0, 0.0])
        images = np.concatenate([accuracy._spectra([system], species, where, m + shift * sign) for sign in (1, -1)])
        density = accuracy._DensityMesh(system, species, np.abs(m).max(axis=0))
        shifted = density.spectra(np.rint(m).astype(np.int64), shift).ravel()
        np.testing.assert_allclose(shifted, images, rtol=5e-3, atol=1e-4 * images.max())
        assert exact.max() > 0.5 * system.n_atoms**2 / 2  # the peaks are there: N_a² each


@pytest.mark.parametrize("by_shells", [True, False])
@pytest.mark.parametrize(
    "name, p, basis, smearing", [("perfect NaCl", 1.0, "gto", (1.0, 4.0)), ("skewed", 6.0, "monomial", (3.0, 6.0))]
)
def test_exact_tail_is_the_measured_truncation_error(name, p, basis, smearing, by_shells):
    """The small cells' model (cross terms kept), both ways (by shells and by the vectors' Gram
    matrices): its squared error of the sphere truncated before each shell, and its squared
    norm, are those of the reference sums (the perfect crystal's l ≠ 0 components cancel over
    its shells: the incoherent model overestimated its tail by up to ~10×)."""
    from gplode.methods.accuracy import _coherent_tails
    from gplode.methods.corrections import periodic_corrections

    hypers, atoms = _hypers(p, basis, *smearing), STRUCTURES[name]
    species = np.unique(atoms.numbers)
    pipeline = gplode.LodeCalculator(backend="reference", accuracy=1e-8, **hypers).pipeline
    system = as_systems(atoms)[0]
    k_max = 4.5 / smearing[0]
    cell = system.cell[None]
    points = selected_kpoints(cell, sphere_shape(cell, k_max), k_max)
    norms = np.linalg.norm(points.k, axis=1)
    order = np.argsort(norms, kind="stable")
    weights = np.where(points.frequencies[order, 2] > 0, 2.0, 1.0)
    constant = periodic_corrections(
        [system], species, pipeline.potential, pipeline.basis, pipeline.center_term, pipeline.hypers.center_atom_weight
    )
    norms = norms[order]
    starts = np.flatnonzero(np.diff(norms) > 1e-9 * norms[1:]) + 1  # shells but the first
    shells = np.concatenate([[0], starts])
    kspace = pipeline.kspace_weight
    vectors = (points.k[order], norms, shells, weights)
    error2, norm2 = _coherent_tails(system, species, kspace, *vectors, constant, by_shells=by_shells)

    def values(k_cutoff):
        return gplode.LodeCalculator(backend="reference", k_cutoff=k_cutoff, **hypers).compute(atoms).values

    whole = values(k_max)
    np.testing.assert_allclose(norm2, (whole**2).sum(), rtol=1e-9)
    assert len(starts) >= 2
    for start in starts:
        measured = ((values(0.5 * (norms[start - 1] + norms[start])) - whole) ** 2).sum()
        np.testing.assert_allclose(error2[start], measured, rtol=1e-8, atol=1e-12 * norm2)
