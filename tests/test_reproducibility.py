"""Results are a pure function of (hypers, structure): nothing a calculator computed
before changes what it computes next (docs/conventions.md, "Reproducibility")."""

import threading

import ase.build
import numpy as np
import pytest
from helpers import rattled_triclinic, water

import gplode

HYPERS = dict(
    exponent=1.0, smearing=1.0, cutoff=3.0, max_radial=3, max_angular=2, accuracy=1e-6, radial_basis="monomial"
)


def _structures():
    small = rattled_triclinic(seed=3)  # direct k-sum route
    large = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 2, 3))  # mesh route, smaller k_min
    large.rattle(0.05, seed=1)
    long = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((1, 1, 9))  # a much smaller |k|
    return small, large, long, water()


@pytest.mark.parametrize("backend", ["numpy", "reference"])
def test_history_does_not_change_results(backend):
    small, large, long, molecule = _structures()
    frames = [small, molecule] if backend == "reference" else [small, large, molecule]
    calc = gplode.LodeCalculator(backend=backend, **HYPERS)
    first = calc.compute(frames).values
    calc.compute(long)  # needs the spline further down in |k|: must not rebuild anything
    calc.compute([large, small] if backend == "numpy" else [small])
    again = calc.compute(frames).values
    np.testing.assert_array_equal(again, first)
    fresh = gplode.LodeCalculator(backend=backend, **HYPERS).compute(frames).values
    np.testing.assert_array_equal(fresh, first)


@pytest.mark.parametrize("route", ["direct", "mesh"])
def test_structure_alone_or_in_a_batch(route):
    """Batches are padded (direct route) or stacked (mesh route): equal to round-off, not bitwise."""
    small, large, long, _ = _structures()
    hypers = dict(HYPERS, neighbor_types=(11, 17, 19))
    if route == "mesh":
        hypers["interpolation_order"] = 6  # forces the mesh route
    calc = gplode.LodeCalculator(backend="numpy", **hypers)
    others = [rattled_triclinic(seed=s) for s in (4, 5, 6)] + [long]
    alone = calc.compute(small).values
    batched = calc.compute([*others[:2], small, *others[2:]])
    rows = batched.system == 2
    scale = np.abs(alone).max()
    np.testing.assert_allclose(batched.values[rows], alone, rtol=0, atol=1e-14 * scale)


def test_threads_share_a_calculator():
    small, large, _, molecule = _structures()
    calc = gplode.LodeCalculator(backend="numpy", **HYPERS)
    jobs = [[small], [large], [molecule, small]]
    other = gplode.LodeCalculator(backend="numpy", **HYPERS)
    serial = [other.compute(job).values for job in jobs]
    results = [None] * len(jobs)

    def run(i):
        results[i] = calc.compute(jobs[i]).values

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, expected in zip(results, serial, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_cells_longer_than_the_spline_floor_get_exact_potentials():
    """The v̂_p spline starts at K_FLOOR = 2π/10,000 Å⁻¹; a 12,000 Å cell has smaller |k|,
    evaluated exactly, so the fast backend still matches the reference."""
    from gplode.lib.splines import K_FLOOR, PotentialSpline
    from gplode.potentials import SmearedPowerLaw

    potential = SmearedPowerLaw(2.5, 1.0)
    spline = PotentialSpline(potential, K_FLOOR, 6.0)
    k = np.array([0.3 * K_FLOOR, 0.9 * K_FLOOR, 2 * K_FLOOR, 1.0])
    np.testing.assert_array_equal(spline(k)[:2], potential.kspace(k[:2]))
    np.testing.assert_allclose(spline(k), potential.kspace(k), rtol=1e-13)
    atoms = ase.Atoms("NaCl", positions=[[0, 0, 0], [1.5, 1.5, 5000.0]], cell=[3.0, 3.0, 12000.0], pbc=True)
    hypers = dict(exponent=2.5, smearing=1.0, cutoff=2.0, max_radial=1, max_angular=1, accuracy=1e-8)
    exact = gplode.LodeCalculator(backend="reference", **hypers).compute(atoms).values
    fast = gplode.LodeCalculator(backend="numpy", **hypers).compute(atoms).values
    assert np.sqrt(np.mean((fast - exact) ** 2) / np.mean(exact**2)) <= 1e-8
