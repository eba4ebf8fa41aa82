"""The direct k-sum's single-precision values pass (accuracy ≥ SINGLE_PRECISION_ACCURACY)."""

import ase
import ase.build
import numpy as np
import pytest

import gplode
from gplode.methods.accuracy import SINGLE_PRECISION_ACCURACY, single_precision_roundoff
from gplode.methods.direct import Workspace
from gplode.systems import as_systems

RNG = np.random.default_rng(11)
HYPERS = dict(exponent=1.0, smearing=1.0, cutoff=4.0, max_radial=3, max_angular=3)


@pytest.mark.parametrize("complex_type, atol", [(np.complex128, 2e-14), (np.complex64, 6e-8)])
def test_phases_are_cos_and_sin_of_k_dot_r(complex_type, atol):
    """The phases, products of plane and line tables over the frequencies, are cos and sin of
    k·r_i to a few ulp of their precision (float64: 2e-14; float32 values: the float64 phases
    rounded, within half a float32 ulp of 1) on a padded batch of cells of different sizes,
    shapes and spheres (padding atoms and slots: k·r = 0)."""
    from gplode.devices.cpu import CpuDevice
    from gplode.methods.direct import _PaddedBatch

    frames = [
        ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((1, 1, 2)),
        ase.build.bulk("Cu", "fcc", a=3.6),
    ]
    frames[1].set_cell(frames[1].cell @ np.array([[1, 0.1, 0], [0, 1, 0.2], [0.05, 0, 1]]), scale_atoms=True)
    for frame in frames:
        frame.rattle(0.1, seed=3)
    systems = as_systems(frames)
    batch = _PaddedBatch(
        systems,
        np.array([11, 17, 29]),
        lambda k: np.ones_like(k),
        [3.0, 4.5],
        2,
        CpuDevice(),
        complex_type,
    )
    workspace = Workspace()
    chunks = list(batch.chunks(workspace, phases=True))
    assert len(chunks) == 1 and batch.n_k[0] != batch.n_k[1]
    (chunk,) = chunks
    assert chunk.phase.dtype == complex_type
    theta = np.matmul(batch.positions, chunk.k.transpose(0, 2, 1))
    np.testing.assert_allclose(chunk.phase.real, np.cos(theta), rtol=0, atol=atol)
    np.testing.assert_allclose(chunk.phase.imag, np.sin(theta), rtol=0, atol=atol)


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
    double = gplode.LodeCalculator(**HYPERS, accuracy=SINGLE_PRECISION_ACCURACY)
    double.pipeline.direct.single_roundoff = -1.0  # the same spheres and splines, in float64
    finer = gplode.LodeCalculator(**HYPERS, accuracy=1e-6)
    for frame in (crystal, water):
        species = np.unique(frame.numbers)
        (system,) = single.pipeline.with_spheres(as_systems(frame), species)
        assert single.pipeline.direct.values_real(system) == np.float32
        assert double.pipeline.direct.values_real(system) == np.float64
        assert finer.pipeline.direct.values_real(system) == np.float64
        values, exact = single.compute(frame).values, double.compute(frame).values
        error = np.sqrt(np.mean((values - exact) ** 2) / np.mean(exact**2))
        # within the predicted round-off, which holds it to half of the accuracy
        assert 0 < error <= single_precision_roundoff(system) <= 0.5 * SINGLE_PRECISION_ACCURACY


def test_species_slots_batch_cells_of_different_compositions():
    """A batch sums over each structure's own species (two slots for NaCl, KCl, CsK and Na
    cells, not five neighbour species): values, their vector–Jacobian and Jacobian–vector
    products and strain rows are those of each structure alone, the species it lacks 0,
    and the JVP stays the adjoint of the VJP."""
    rng = np.random.default_rng(4)
    skewed = [[5.9, 0.3, 0], [0, 6.1, 0.2], [0.4, 0, 5.8]]
    frames = [
        ase.Atoms(["Na", "Cl", "Na", "Cl"], scaled_positions=rng.uniform(size=(4, 3)), cell=5.6 * np.eye(3), pbc=True),
        ase.Atoms(["K", "Cl", "K"], scaled_positions=rng.uniform(size=(3, 3)), cell=skewed, pbc=True),
        ase.Atoms(["Cs", "K", "Cs", "K"], scaled_positions=rng.uniform(size=(4, 3)), cell=6.0 * np.eye(3), pbc=True),
        ase.Atoms(["Na", "Na"], scaled_positions=rng.uniform(size=(2, 3)), cell=5.8 * np.eye(3), pbc=True),
    ]
    species = np.array([1, 11, 17, 19, 55])
    calc = gplode.LodeCalculator(accuracy=1e-6, route="direct", neighbor_types=species.tolist(), **HYPERS)
    pipeline = calc.pipeline
    plans = pipeline.plan(pipeline.with_spheres(as_systems(frames), species), species)
    assert [sorted(members) for members, _, _ in plans] == [[0, 1, 2, 3]]  # one batch
    assert pipeline.direct._batch(as_systems(frames), species).n_species == 2  # of two slots
    features = calc.compute(frames)
    weights = rng.normal(size=features.values.shape)
    rate, strain = rng.normal(size=(len(features.values), 3)), rng.normal(size=(len(frames), 3, 3))
    vjp, tangent = calc.vjp(frames, weights), calc.jvp(frames, rate, strain)
    adjoint = np.sum(vjp.positions * rate) + np.sum(vjp.strain * strain)
    assert np.sum(weights * tangent) == pytest.approx(adjoint, rel=1e-12)
    start = 0
    for i, atoms in enumerate(frames):
        rows = slice(start, start + len(atoms))
        alone = calc.compute(atoms).values
        scale = np.abs(alone).max()
        np.testing.assert_allclose(features.values[rows], alone, rtol=0, atol=1e-13 * scale)
        absent = [a for a, z in enumerate(species) if z not in atoms.numbers]
        assert not features.values[rows][:, absent].any()
        one = calc.vjp(atoms, weights[rows])
        np.testing.assert_allclose(vjp.positions[rows], one.positions, rtol=0, atol=1e-12 * np.abs(one.positions).max())
        np.testing.assert_allclose(vjp.strain[i], one.strain[0], rtol=0, atol=1e-12 * np.abs(one.strain).max())
        own = calc.jvp(atoms, rate[rows], strain[i : i + 1])
        np.testing.assert_allclose(tangent[rows], own, rtol=0, atol=1e-12 * np.abs(own).max())
        start = rows.stop
