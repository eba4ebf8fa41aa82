"""The direct k-sum's single-precision values pass (accuracy ≥ SINGLE_PRECISION_ACCURACY)."""

import ase.build
import numpy as np

import gplode
from gplode.methods.accuracy import SINGLE_PRECISION_ACCURACY
from gplode.methods.direct import Workspace, _single_phases

RNG = np.random.default_rng(11)
HYPERS = dict(exponent=1.0, smearing=1.0, cutoff=4.0, max_radial=3, max_angular=3)


def test_single_precision_phases_are_float32_round_off():
    """cos θ and sin θ in float32 from |θ| up to 10³ rad: within 1e-7 of float64 (measured 6e-8;
    rounding the reduced θ to float32 without the first-order term gives 1.5e-7)."""
    theta = RNG.uniform(-1e3, 1e3, size=(4, 7, 5000))
    cos, sin = _single_phases(np, theta.copy(), Workspace())
    assert cos.dtype == sin.dtype == np.float32
    assert np.abs(cos - np.cos(theta)).max() < 1e-7
    assert np.abs(sin - np.sin(theta)).max() < 1e-7


def test_values_run_in_float32_from_the_single_precision_accuracy():
    """From SINGLE_PRECISION_ACCURACY up the values' pass is float32; on the same k-spheres and
    splines its coefficients agree with float64 to 0.2 × that accuracy, relative RMS: measured
    1.05e-6 for a rattled 16-atom crystal (its k-sum cancels: 17 × float32 round-off; float64
    phases with float32 products give 1.08e-6), 3–6e-7 on the benchmark datasets."""
    crystal = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((1, 1, 2))
    crystal.rattle(0.05, seed=3)
    water = ase.Atoms(
        "OH2" * 8, positions=RNG.uniform(0, 6.2, size=(24, 3)), cell=6.2 * np.eye(3), pbc=True
    )  # random positions: no coincident atoms at this density
    single = gplode.LodeCalculator(**HYPERS, accuracy=SINGLE_PRECISION_ACCURACY)
    assert single.pipeline.direct.values_real == np.float32
    assert gplode.LodeCalculator(**HYPERS, accuracy=1e-6).pipeline.direct.values_real == np.float64
    double = gplode.LodeCalculator(**HYPERS, accuracy=SINGLE_PRECISION_ACCURACY)
    double.pipeline.direct.values_real = np.float64  # the same spheres and splines, in float64
    for frame in (crystal, water):
        values, exact = single.compute(frame).values, double.compute(frame).values
        error = np.sqrt(np.mean((values - exact) ** 2) / np.mean(exact**2))
        assert 0 < error < 0.2 * SINGLE_PRECISION_ACCURACY
