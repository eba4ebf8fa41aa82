"""Slabs and wires through the public API: :class:`gplode.LodeCalculator` routes them to the
truncated direct k-sum (gplode.methods.truncated) in the box its rule asks for."""

import ase
import ase.build
import numpy as np
import pytest

import gplode
from gplode.methods.truncated import truncated_coefficients

HYPERS = dict(smearing=0.5, cutoff=1.5, max_radial=2, max_angular=3, radial_basis="monomial", accuracy=1e-10)


def _slab(vacuum=0.0):
    """A rattled 3-atom triclinic slab (normal z); ``vacuum``: the third cell vector's length
    (0: none given)."""
    cell = [[3.1, 0.0, 0.0], [1.2, 2.8, 0.0], [0.0, 0.0, vacuum]]
    positions = [[0.1, 0.2, 0.0], [1.6, 1.1, 1.3], [2.6, 1.9, 0.4]]
    return ase.Atoms("NaClCl", positions=positions, cell=cell, pbc=[True, True, False])


def _wire():
    """A rattled 3-atom wire along z (period 3.3 Å), no transverse cell vectors."""
    positions = [[0.0, 0.0, 0.0], [1.2, 0.4, 1.1], [-0.3, 1.0, 2.2]]
    return ase.Atoms("NaClCl", positions=positions, cell=[[0, 0, 0], [0, 0, 0], [0, 0, 3.3]], pbc=[False, False, True])


def _relative(values, expected):
    return float(np.abs(values - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("backend", ["numpy", "reference"])
@pytest.mark.parametrize("p", [1.0, 3.0])
def test_calculator_matches_the_reference_path(backend, p):
    """LodeCalculator.compute of a slab and a wire equals truncated_coefficients (w_c ≠ 1: the
    centre term is added once)."""
    calc = gplode.LodeCalculator(exponent=p, center_atom_weight=0.3, backend=backend, **HYPERS)
    for atoms in (_slab(), _wire()):
        values = calc.compute(atoms).values
        expected = truncated_coefficients(atoms, calc.potential, calc.basis, accuracy=1e-10, center_atom_weight=0.3)
        error = _relative(values, expected)
        assert error <= 1e-10, error  # measured ≤ 3e-14 (numpy: splined Ĩ_nl), 0 (reference)


def test_p1_slab_vacuum_independence():
    """p = 1: the features of a slab do not depend on the vacuum its cell gives, nor on where
    it sits along the normal."""
    calc = gplode.LodeCalculator(exponent=1.0, backend="numpy", **HYPERS)
    reference = calc.compute(_slab()).values
    assert np.abs(reference[:, :, 1:]).max() > 1e-3 * np.abs(reference).max()
    for vacuum in (10.0, 40.0):
        moved = _slab(vacuum)
        moved.positions += [0.0, 0.0, 0.37 * vacuum]
        error = _relative(calc.compute(moved).values, reference)
        assert error <= 1e-12, error  # measured ≤ 1e-15


def test_mixed_call():
    """Slabs, wires, bulk and free-space structures in one call: each as when computed alone."""
    calc = gplode.LodeCalculator(exponent=1.0, backend="numpy", neighbor_types=[1, 8, 11, 17], **HYPERS)
    frames = [_slab(), ase.build.bulk("NaCl", "rocksalt", a=5.64), _wire(), ase.build.molecule("H2O")]
    calc.check(frames)
    values = calc.compute(frames).values
    alone = np.concatenate([calc.compute(frame).values for frame in frames])
    np.testing.assert_allclose(values, alone, rtol=0, atol=1e-13 * np.abs(alone).max())


def test_gradients_in_a_mixed_call():
    """Slab and free-space gradients in one call (VJP, JVP, dense): each structure's as when
    computed alone, dense = VJP; a strain tangent out of the slab's plane is refused
    (finite differences: tests/methods/test_slab_wire_gradients.py)."""
    calc = gplode.LodeCalculator(exponent=1.0, backend="numpy", neighbor_types=[1, 8, 11, 17], **HYPERS)
    frames = [ase.build.molecule("H2O"), _slab()]
    rng = np.random.default_rng(7)
    values = calc.compute(frames).values
    weights, rate = rng.normal(size=values.shape), rng.normal(size=(6, 3))
    together = calc.vjp(frames, weights)
    tangent = calc.jvp(frames, positions=rate)
    dense = calc.compute(frames, gradients=["strain"]).gradients["strain"].values
    for s, rows in enumerate((slice(0, 3), slice(3, 6))):
        alone = calc.vjp(frames[s], weights[rows])
        np.testing.assert_allclose(together.positions[rows], alone.positions, rtol=0, atol=1e-13)
        np.testing.assert_allclose(together.strain[s], alone.strain[0], rtol=0, atol=1e-13)
        np.testing.assert_allclose(tangent[rows], calc.jvp(frames[s], positions=rate[rows]), rtol=0, atol=1e-13)
        strain = np.einsum("iaxylm,ialm->xy", dense[rows], weights[rows])
        np.testing.assert_allclose(strain, together.strain[s], rtol=0, atol=1e-12 * np.abs(strain).max())
    assert np.abs(together.strain[1, 2]).max() == 0.0  # the slab: nothing along its normal (z)
    with pytest.raises(ValueError, match="frame 1: the strain tangent of a slab .* outside the periodic directions"):
        calc.jvp(frames, strain=np.stack([np.eye(3), np.eye(3)]))
