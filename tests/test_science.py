"""Fast versions of the science benchmarks (benchmarks/science), asserting what the physics guarantees.

The full runs and their numbers are in benchmarks/results/science/; here only small data sets
and the fast monomial basis are used, so the whole module takes seconds.
"""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.data.s22 import create_s22_system

SCIENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "science"


@pytest.fixture(scope="module")
def science():
    """The benchmark modules, imported from benchmarks/science."""
    sys.path.insert(0, str(SCIENCE))
    try:
        yield {
            name: importlib.import_module(name) for name in ("common", "toy_extrapolation", "exponent_scan", "s22x5")
        }
    finally:
        sys.path.remove(str(SCIENCE))


def _sets(common, names):
    return [fs for fs in common.standard_feature_sets("separated") if fs.name in names]


def test_toy_matching_exponent_extrapolates(science):
    """Trained on d_min 2.5-4 Å: the matching exponent extrapolates, the mismatched one does not."""
    toy, common = science["toy_extrapolation"], science["common"]
    sets = _sets(common, {"local p=0 (gto)", "p=1 monomial", "p=6 monomial"})
    result = toy.run(sets, n_train=60, n_test=20, seed=1)
    far = [k for k, w in enumerate(result["windows"]) if w[0] >= 7.0]
    coulomb, dispersion = result["errors"]["coulomb"], result["errors"]["dispersion"]
    for k in far:
        assert coulomb["p=1 monomial"][k] < 1e-3 < 0.1 < coulomb["p=6 monomial"][k]
        assert dispersion["p=6 monomial"][k] < 0.05 < 1.0 < dispersion["p=1 monomial"][k]
        # a local model cannot see the partner: it predicts E = 0, i.e. relative error ~1
        assert coulomb["local p=0 (gto)"][k] > 0.9 and dispersion["local p=0 (gto)"][k] > 0.9


def test_exponent_scan_optimum_at_true_exponent(science):
    """The extrapolation error is smallest at the true exponent (1 for Coulomb, 6 for dispersion)."""
    result = science["exponent_scan"].run([0.5, 1, 2, 4, 6, 8], ["monomial"], n_train=60, n_test=20, seed=2)
    best = science["exponent_scan"].best_exponents(result)["monomial"]
    assert best["coulomb"]["extrapolation"] == 1.0
    assert best["dispersion"]["extrapolation"] == 6.0


def test_s22_interaction_features_vanish_with_separation(science):
    """Dimer-minus-monomer features contain only intermolecular pairs: ~N_a N_b c_n / D far away."""
    s22, common = science["s22x5"], science["common"]
    fs = common.FeatureSet("p=1", 1.0, "monomial", 0.5, 2.0)
    water = create_s22_system("Water_dimer", dist="1.0")
    first, second = water[:3], water[3:]
    far = []
    for shift in (200.0, 400.0):
        moved = second.copy()
        moved.positions += [shift, 0.0, 0.0]
        far.append(s22.interaction_features(fs, [first + moved], [first, moved])[0])
    assert np.all(np.isfinite(far)) and np.abs(far[0]).max() > 0
    np.testing.assert_allclose(far[1] * 400.0, far[0] * 200.0, rtol=5e-2, atol=1e-12)


def test_s22_pipeline_quick(science):
    """The S22x5 evaluation runs on a few dimers and gives finite MAEs for every model."""
    s22, common = science["s22x5"], science["common"]
    names = [
        "Water_dimer",
        "Ammonia_dimer",
        "Formic_acid_dimer",
        "Methane_dimer",
        "Ethene_dimer",
        "Benzene_dimer_T-shaped",
    ]
    result = s22.run(_sets(common, {"p=1 monomial", "p=6 monomial"}), names=names)
    assert set(result["results"]) == {"p=1 monomial", "p=6 monomial", "zero (E = 0)"}
    for r in result["results"].values():
        assert len(r["extrapolation"]) == len(r["leave_one_dimer_out"]) == 5
        assert np.all(np.isfinite(r["extrapolation"])) and np.all(np.isfinite(r["leave_one_dimer_out"]))
