"""Parity with featomic's LodeSphericalExpansion (v0.6.7), block by block.

featomic evaluates the same truncated k-sum (0 < |k| < k_cutoff) with the same GTO basis
and exact radial integrals (``spline_accuracy=None``), so the two must agree to
round-off: the 1e-9 bound is dominated by featomic's own erfc (≈1e-10 relative, used for
even p).
"""

import ase
import ase.build
import numpy as np
import pytest
from peers import import_peer

import gplode

featomic = import_peer("featomic")
import_peer("metatensor")

HYPERS = dict(smearing=0.9, cutoff=3.0, max_radial=3, max_angular=3)
K_CUTOFF = 4.5


def _triclinic():
    rng = np.random.default_rng(11)
    cell = np.array([[4.6, 0.3, 0.2], [0.5, 4.2, -0.3], [0.4, 0.6, 4.9]])
    return ase.Atoms("NaClKCl", scaled_positions=rng.uniform(size=(4, 3)), cell=cell, pbc=True)


def _water_box():
    rng = np.random.default_rng(3)
    water = ase.build.molecule("H2O")
    atoms = ase.Atoms(cell=np.eye(3) * 6.2, pbc=True)
    for corner in np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) * 6.2:
        w = water.copy()
        w.rotate(rng.uniform(0, 360), rng.normal(size=3))
        w.translate(corner + 1.0)
        atoms += w
    return atoms


SYSTEMS = {
    "NaCl": ase.build.bulk("NaCl", "rocksalt", a=5.64),
    "CsCl": ase.build.bulk("CsCl", "cesiumchloride", a=4.12),
    "triclinic": _triclinic(),
    "water-box": _water_box(),
}


def _featomic_features(atoms, p, center_atom_weight, gradients=None):
    from featomic.basis import Gto, TensorProduct
    from featomic.density import SmearedPowerLaw

    calculator = featomic.LodeSphericalExpansion(
        k_cutoff=K_CUTOFF,
        density=SmearedPowerLaw(smearing=HYPERS["smearing"], exponent=p, center_atom_weight=center_atom_weight),
        basis=TensorProduct(
            max_angular=HYPERS["max_angular"],
            radial=Gto(max_radial=HYPERS["max_radial"], radius=HYPERS["cutoff"]),
            spline_accuracy=None,
        ),
    )
    return calculator.compute(atoms, gradients=gradients)


@pytest.mark.parametrize("name", list(SYSTEMS))
@pytest.mark.parametrize("p", [0, 1, 2, 3, 4, 5, 6])
def test_blocks_match_featomic(name, p):
    atoms = SYSTEMS[name]
    weight = 0.35 if p % 2 else 1.0  # exercise the centre-atom subtraction too
    expected = _featomic_features(atoms, p, weight)
    calc = gplode.LodeCalculator(
        exponent=float(p), k_cutoff=K_CUTOFF, center_atom_weight=weight, backend="reference", **HYPERS
    )
    ours = calc.compute(atoms).to_tensormap()
    assert ours.keys.names == expected.keys.names
    assert sorted(map(tuple, ours.keys.values.tolist())) == sorted(map(tuple, expected.keys.values.tolist()))
    scale = max(np.abs(block.values).max() for block in expected.blocks())
    for key, block in expected.items():
        mine = ours.block(key)
        assert mine.samples == block.samples
        assert mine.components == block.components
        assert mine.properties == block.properties
        # relative to the block's largest value; blocks that vanish by symmetry hold
        # only round-off noise (~1e-15 of the global scale) in both codes, so their floor
        # is 1e-5 of the global scale: they must vanish to 1e-14 of it
        block_scale = max(np.abs(block.values).max(), 1e-5 * scale)
        np.testing.assert_allclose(mine.values, block.values, rtol=0, atol=1e-9 * block_scale, err_msg=str(key))


@pytest.mark.parametrize("name", list(SYSTEMS))
@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 6])
def test_position_gradients_match_featomic(name, p):
    """Dense position gradients, block by block, in featomic's gradient layout (≤ 1e-8 of each
    block's scale, or of the whole map's for blocks that vanish by symmetry; featomic has no
    strain gradients for LODE)."""
    atoms = SYSTEMS[name]
    expected = _featomic_features(atoms, p, 1.0, gradients=["positions"])
    overall = max(np.abs(block.gradient("positions").values).max() for block in expected.blocks())
    calc = gplode.LodeCalculator(exponent=float(p), k_cutoff=K_CUTOFF, backend="reference", **HYPERS)
    ours = calc.compute(atoms, gradients=["positions"]).to_tensormap()
    for key, block in expected.items():
        theirs, mine = block.gradient("positions"), ours.block(key).gradient("positions")
        assert mine.samples.names == theirs.samples.names
        np.testing.assert_array_equal(mine.samples.values, theirs.samples.values)
        assert [c.names for c in mine.components] == [c.names for c in theirs.components]
        scale = np.abs(theirs.values).max()
        scale = scale if scale > 1e-10 * overall else overall
        np.testing.assert_allclose(mine.values, theirs.values, rtol=0, atol=1e-8 * scale)
