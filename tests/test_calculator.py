"""LodeCalculator API: output layout, labels, accuracy control, invariants."""

import ase
import ase.build
import numpy as np
import pytest
from peers import import_peer

import gplode
from gplode.lib.kvectors import default_k_cutoff

SMALL = dict(smearing=1.0, cutoff=2.5, max_radial=2, max_angular=2, backend="reference")


def _rattled_triclinic(seed=5):
    rng = np.random.default_rng(seed)
    cell = np.array([[5.1, 0.4, 0.0], [0.7, 4.8, 0.3], [-0.2, 0.5, 5.4]])
    return ase.Atoms("NaClClK", scaled_positions=rng.uniform(size=(4, 3)), cell=cell, pbc=True)


def test_layout_and_labels():
    frames = [ase.build.bulk("NaCl", "rocksalt", a=5.64), ase.build.molecule("H2O")]
    feats = gplode.LodeCalculator(exponent=1.0, **SMALL).compute(frames)
    assert feats.values.shape == (5, 4, 9, 3)
    assert feats.neighbor_types.tolist() == [1, 8, 11, 17]
    assert feats.center_types.tolist() == [11, 17, 8, 1, 1]
    assert feats.system.tolist() == [0, 0, 1, 1, 1]
    assert feats.atom.tolist() == [0, 1, 0, 1, 2]
    assert feats.block(1).shape == (5, 4, 3, 3)
    assert np.shares_memory(feats.block(2), feats.values)
    # a species absent from a structure contributes nothing to it
    assert np.all(feats.values[:2, :2] == 0) and np.all(feats.values[2:, 2:] == 0)
    with pytest.raises(ValueError, match="l must be in"):
        feats.block(3)


def test_explicit_neighbor_types():
    atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64)
    calc = gplode.LodeCalculator(exponent=1.0, neighbor_types=[17, 11, 8], **SMALL)
    feats = calc.compute(atoms)
    assert feats.neighbor_types.tolist() == [8, 11, 17]
    assert np.all(feats.values[:, 0] == 0)
    reference = gplode.LodeCalculator(exponent=1.0, **SMALL).compute(atoms)
    np.testing.assert_allclose(feats.values[:, 1:], reference.values, rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize("backend", ["reference", "numpy"])
@pytest.mark.parametrize("periodic", [True, False])
def test_neighbor_types_subset_ignores_other_atoms_as_neighbours(backend, periodic):
    """Atoms of species outside ``neighbor_types`` are still centres, but contribute no
    density: the features equal those of the structure without them, for the listed centres."""
    atoms = _rattled_triclinic()  # Na, Cl, K
    if not periodic:
        atoms.pbc = False
    hypers = dict(SMALL, exponent=6.0, backend=backend)
    subset = gplode.LodeCalculator(neighbor_types=[11, 17], **hypers).compute(atoms)
    assert subset.values.shape[:2] == (len(atoms), 2)
    assert subset.center_types.tolist() == atoms.numbers.tolist()  # K atoms are still centres
    full = gplode.LodeCalculator(neighbor_types=[11, 17, 19], **hypers).compute(atoms)
    np.testing.assert_allclose(subset.values, full.values[:, :2], rtol=0, atol=1e-14 * np.abs(full.values).max())
    # the K atoms really are ignored: removing them leaves the Na/Cl rows unchanged
    without = atoms[atoms.numbers != 19]
    kept = gplode.LodeCalculator(neighbor_types=[11, 17], **hypers).compute(without)
    scale = np.abs(kept.values).max()
    np.testing.assert_allclose(subset.values[atoms.numbers != 19], kept.values, rtol=0, atol=1e-12 * scale)


def test_tensormap_layout():
    import_peer("metatensor")
    frames = [ase.build.bulk("NaCl", "rocksalt", a=5.64), _rattled_triclinic()]
    feats = gplode.LodeCalculator(exponent=2.0, **SMALL).compute(frames)
    tensor = feats.to_tensormap()
    assert tensor.keys.names == ["o3_lambda", "o3_sigma", "center_type", "neighbor_type"]
    assert len(tensor.keys) == 3 * 3 * 3
    block = tensor.block(o3_lambda=1, center_type=17, neighbor_type=11)
    assert block.samples.names == ["system", "atom"]
    assert block.samples.values.tolist() == [[0, 1], [1, 1], [1, 2]]
    assert block.components[0].names == ["o3_mu"] and block.properties.names == ["n"]
    rows = np.flatnonzero(feats.center_types == 17)
    np.testing.assert_array_equal(block.values, feats.block(1)[rows, 0])  # neighbour 11 is axis-1 index 0


@pytest.mark.parametrize("radial_basis", ["gto", "monomial"])
@pytest.mark.parametrize("p", [0.0, 1.0, 2.5, 6.0])
def test_default_k_cutoff_meets_accuracy(radial_basis, p):
    atoms = _rattled_triclinic()
    hypers = dict(SMALL, radial_basis=radial_basis, exponent=p, smearing=0.8)
    converged = gplode.LodeCalculator(accuracy=1e-14, **hypers).compute(atoms).values
    for accuracy in (1e-3, 1e-6, 1e-9):
        values = gplode.LodeCalculator(accuracy=accuracy, **hypers).compute(atoms).values
        error = np.sqrt(np.mean((values - converged) ** 2) / np.mean(converged**2))
        assert error <= accuracy, (accuracy, error)


def test_power_spectrum_is_rotation_invariant():
    atoms = _rattled_triclinic()
    rotated = atoms.copy()
    rotated.rotate(73, (1, 2, -0.5), rotate_cell=True)
    calc = gplode.LodeCalculator(exponent=1.0, accuracy=1e-10, **SMALL)
    ps, ps_rot = calc.compute(atoms).power_spectrum(), calc.compute(rotated).power_spectrum()
    assert ps.shape == (4, 3, 3, 3, 3, 3)
    np.testing.assert_allclose(ps_rot, ps, atol=1e-9 * np.abs(ps).max())


def test_power_spectrum_definition():
    feats = gplode.LodeCalculator(exponent=1.0, **SMALL).compute(_rattled_triclinic())
    ps = feats.power_spectrum()
    c = feats.block(2)
    expected = np.einsum("amn,bmk->anbk", c[1], c[1]) / np.sqrt(5)
    np.testing.assert_allclose(ps[1, ..., 2], expected, rtol=1e-14)


def test_float32_output():
    feats = gplode.LodeCalculator(exponent=1.0, dtype="float32", **SMALL).compute(_rattled_triclinic())
    assert feats.values.dtype == np.float32


def test_atoms_outside_cell_are_wrapped():
    atoms = _rattled_triclinic()
    shifted = atoms.copy()
    shifted.positions += atoms.cell[0] * 2 - atoms.cell[2]
    calc = gplode.LodeCalculator(exponent=1.0, **SMALL)
    np.testing.assert_allclose(calc.compute(shifted).values, calc.compute(atoms).values, atol=1e-13)


def test_free_space_multipole_far_field_uses_translation_invariant_pairs():
    """A molecule's free-space features do not depend on where it sits."""
    mol = ase.build.molecule("CH3OH")
    moved = mol.copy()
    moved.positions += [100.0, -50.0, 3.0]
    calc = gplode.LodeCalculator(exponent=3.0, **SMALL)
    np.testing.assert_allclose(calc.compute(moved).values, calc.compute(mol).values, atol=1e-12)


def test_repr_and_backend_name():
    calc = gplode.LodeCalculator(exponent=1.0, **SMALL)
    assert calc.backend == "reference"
    assert "exponent=1.0" in repr(calc)
    assert "Features(n_atoms=2" in repr(calc.compute(ase.build.bulk("NaCl", "rocksalt", a=5.64)))


@pytest.mark.slow
def test_features_continuous_across_p3():
    """k ≠ 0 part and free-space features are continuous at p = 3; only the k = 0 term
    (kept for p > 3) jumps, as 1/(p − 3), because the lattice sum itself diverges there."""
    eps = 1e-7
    crystal, molecule = _rattled_triclinic(), ase.build.molecule("H2O")
    values = {}
    # one k-sphere for the three exponents: with the accuracy's own sphere, p = 3 + ε's would be
    # tiny, since its k = 0 term of ~1/ε dominates the coefficients' norm
    k_cutoff = default_k_cutoff(SMALL["smearing"], 1e-10)
    for p in (3 - eps, 3.0, 3 + eps):
        calc = gplode.LodeCalculator(exponent=p, k_cutoff=k_cutoff, **SMALL)
        values[p] = (calc.compute(crystal).values, calc.compute(molecule).values, calc)
    for p in (3 - eps, 3 + eps):
        free, free3 = values[p][1], values[3.0][1]
        # first order in ε = 1e-7 with |∂c/∂p| = O(1): 1e-6 of the scale
        np.testing.assert_allclose(free, free3, atol=1e-6 * np.abs(free3).max())
    below, at = values[3 - eps][0], values[3.0][0]
    np.testing.assert_allclose(below, at, atol=1e-6 * np.abs(at).max())
    above, calc = values[3 + eps][0], values[3 + eps][2]
    counts = np.array([np.sum(crystal.numbers == z) for z in (11, 17, 19)])
    radial0 = calc.basis.kspace_integral(np.zeros(1), 0)[0]
    k0 = 4 * np.pi / crystal.get_volume() * calc.potential.k0_value() / np.sqrt(4 * np.pi)
    jump = k0 * counts[None, :, None] * radial0[None, None, :]
    assert np.abs(jump).max() > 1e5 * np.abs(at).max()  # the 1/(p − 3) divergence
    expected = at.copy()
    expected[:, :, 0, :] += jump
    np.testing.assert_allclose(above, expected, atol=1e-6 * np.abs(at).max(), rtol=1e-12)
