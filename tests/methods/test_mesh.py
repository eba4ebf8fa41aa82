"""The NumPy mesh backend against the exact reference (issue 3's accuracy contract)."""

import functools
import re

import ase
import ase.build
import numpy as np
import pytest

import gplode
import gplode.systems

ACCURACIES = [1e-3, 1e-5, 1e-7]
EXPONENTS = [0.0, 1.0, 2.0, 3.0, 4.5, 6.0]
BASES = ["gto", "monomial"]
HYPERS = dict(smearing=0.8, cutoff=3.0, max_radial=3, max_angular=3)


def _triclinic():
    rng = np.random.default_rng(5)
    cell = np.array([[5.1, 0.4, 0.0], [0.7, 4.8, 0.3], [-0.2, 0.5, 5.4]])
    atoms = ase.Atoms("NaClClKNa", scaled_positions=rng.uniform(size=(5, 3)), cell=cell, pbc=True)
    atoms.rattle(0.05, seed=1)
    return atoms


def _water_box():
    box = ase.Atoms(cell=np.eye(3) * 7.0, pbc=True)
    for i, corner in enumerate([[1, 1, 1], [4.5, 1.2, 1.5], [1.3, 4.4, 4.1], [4.0, 4.6, 4.2]]):
        water = ase.build.molecule("H2O")
        water.rotate(37 * i + 10, (1, i, 2))
        water.translate(corner)
        box += water
    return box


SYSTEMS = {
    "NaCl-2x2x2": ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(2),
    "triclinic-3-species": _triclinic(),
    "water-box": _water_box(),
}


@functools.cache
def _exact(name, p, basis):
    calc = gplode.LodeCalculator(backend="reference", accuracy=1e-13, exponent=p, radial_basis=basis, **HYPERS)
    return calc.compute(SYSTEMS[name]).values


def _calculator(route, **kwargs):
    """A numpy-backend calculator on one periodic route ("mesh" or "direct" k-sum)."""
    return gplode.LodeCalculator(backend="numpy", route=route, **kwargs)


@pytest.mark.parametrize("route", ["mesh", "direct"])
@pytest.mark.parametrize("name", list(SYSTEMS))
@pytest.mark.parametrize("p", [p if p in (1.0, 4.5) else pytest.param(p, marks=pytest.mark.slow) for p in EXPONENTS])
@pytest.mark.parametrize("basis", ["gto", pytest.param("monomial", marks=pytest.mark.slow)])
def test_accuracy_against_reference(route, name, p, basis):
    exact = _exact(name, p, basis)
    rms = np.sqrt(np.mean(exact**2))
    for accuracy in ACCURACIES:
        calc = _calculator(route, accuracy=accuracy, exponent=p, radial_basis=basis, **HYPERS)
        values = calc.compute(SYSTEMS[name]).values
        error = np.sqrt(np.mean((values - exact) ** 2)) / rms
        assert error <= accuracy, (accuracy, error)
        assert np.abs(values - exact).max() <= 10 * accuracy * rms


@pytest.mark.parametrize("p", [1.0, 6.0])
def test_supercell_gives_same_per_atom_features(p):
    small = _triclinic()
    big = small.repeat((2, 1, 2))
    calc = _calculator("mesh", accuracy=1e-7, exponent=p, **HYPERS)
    a, b = calc.compute(small).values, calc.compute(big).values
    # ase.repeat lists the copies one after another: every copy must equal the small cell
    # (the two meshes differ, so agreement is at the accuracy level, not round-off)
    for copy in range(4):
        np.testing.assert_allclose(b[copy * len(small) : (copy + 1) * len(small)], a, atol=1e-6 * np.abs(a).max())


@pytest.mark.parametrize("p", [1.0, 6.0])
def test_rotation_equivariance(p):
    atoms = _triclinic()
    rotated = atoms.copy()
    rotated.rotate(41, (0.3, -1, 2), rotate_cell=True)
    calc = _calculator("mesh", accuracy=1e-8, exponent=p, **HYPERS)
    ps, ps_rotated = calc.compute(atoms).power_spectrum(), calc.compute(rotated).power_spectrum()
    np.testing.assert_allclose(ps_rotated, ps, atol=1e-6 * np.abs(ps).max())


@pytest.mark.slow
def test_free_space_uses_the_pair_sum():
    molecule = ase.build.molecule("CH3CH2OH")
    hypers = dict(exponent=1.0, **HYPERS)
    fast = gplode.LodeCalculator(backend="numpy", **hypers).compute(molecule).values
    exact = gplode.LodeCalculator(backend="reference", **hypers).compute(molecule).values
    np.testing.assert_allclose(fast, exact, rtol=1e-13, atol=1e-15)


def test_overrides_and_memory_error():
    atoms = SYSTEMS["NaCl-2x2x2"]
    calc = gplode.LodeCalculator(backend="numpy", mesh_spacing=0.4, interpolation_order=8, exponent=1.0, **HYPERS)
    params = calc.pipeline.mesh.parameters(atoms.cell.array, len(atoms))
    assert params.order == 8 and all(n >= 29 for n in params.shape)  # 11.28 Å / 0.4 Å
    coarse = gplode.LodeCalculator(backend="numpy", mesh_spacing=1.0, exponent=1.0, **HYPERS)
    with pytest.raises(ValueError, match=r"mesh_spacing=1.0 Å is too coarse") as error:
        coarse.compute(atoms)
    # the spacing the structure's own sphere needs: π / k_c
    (system,) = coarse.pipeline.with_spheres(gplode.systems.as_systems(atoms), np.array([11, 17]))
    k_cutoff, spacing = (
        float(x) for x in re.search(r"k_c = (\S+) Å⁻¹\) needs a spacing below (\S+) Å", str(error.value)).groups()
    )
    assert k_cutoff == pytest.approx(system.k_cutoff, rel=1e-2) and spacing == pytest.approx(np.pi / k_cutoff, rel=1e-2)
    huge = gplode.LodeCalculator(backend="numpy", mesh_spacing=1e-3, exponent=1.0, **HYPERS)
    with pytest.raises(MemoryError, match=r"needs about .* GiB"):
        huge.compute(atoms)


def test_route_choice():
    """Small cells take the direct k-sum, large ones the mesh (at the default accuracy, in
    float64: 512 atoms take the direct sum, 0.22 s measured against the mesh's 0.54 s)."""
    calc = gplode.LodeCalculator(backend="numpy", exponent=1.0, smearing=1.0, cutoff=4.0, max_radial=5, max_angular=4)
    for repeat, route in ((1, "direct"), (4, "direct"), (6, "mesh")):
        atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(repeat)
        system = gplode.systems.as_systems(atoms)[0]
        assert calc.pipeline.method_for(system, np.array([11, 17]))[0].name == route


@pytest.mark.parametrize("smearing, accuracy", [(0.5, 1e-3), (1.0, 1e-6), (3.0, 1e-8)])
def test_mesh_cost_floor_is_a_lower_bound(smearing, accuracy):
    """The route choice skips choosing a mesh when the direct sum costs less than
    ``cost_floor``: it must never exceed the cost of the mesh actually chosen."""
    calc = gplode.LodeCalculator(backend="numpy", smearing=smearing, cutoff=4.0, accuracy=accuracy)
    mesh, rng = calc.pipeline.mesh, np.random.default_rng(5)
    for _ in range(20):
        cell = np.diag(rng.uniform(3, 40, 3)) + rng.uniform(-2, 2, (3, 3))
        n_atoms = int(rng.integers(1, 5000))
        atoms = ase.Atoms(f"Na{n_atoms}", positions=rng.uniform(0, 1, (n_atoms, 3)) @ cell, cell=cell, pbc=True)
        system = gplode.systems.as_systems(atoms)[0]
        cost = mesh.cost(system, 2, mesh.parameters(system.cell, n_atoms))
        assert 0 < mesh.cost_floor(system, 2) <= cost


def test_auto_backend_is_numpy_without_gpu():
    assert gplode.LodeCalculator().backend == "numpy"


@pytest.mark.parametrize("route", ["mesh", "direct"])
@pytest.mark.parametrize("p", [1.0, 6.0])
def test_float32_within_accuracy_or_1e5(route, p):
    """dtype="float32" runs the mesh chain in single precision (issue 4's float32 contract)."""
    exact = _exact("NaCl-2x2x2", p, "gto")
    for accuracy in (1e-3, 1e-6):
        calc = _calculator(route, accuracy=accuracy, dtype="float32", exponent=p, radial_basis="gto", **HYPERS)
        values = calc.compute(SYSTEMS["NaCl-2x2x2"]).values
        assert values.dtype == np.float32
        error = np.sqrt(np.mean((values - exact) ** 2) / np.mean(exact**2))
        assert error <= max(accuracy, 1e-5), (accuracy, error)


@pytest.mark.parametrize("smearing", [3.0, 5.0])
@pytest.mark.parametrize("order", [6, 10])
def test_mesh_meets_accuracy_when_smearing_is_large_against_the_cell(smearing, order):
    """Few, strongly damped k-components: aliasing must be small against the largest of
    them (before the fix: relative errors 2e-7 (σ = 3) and 3e-5 (σ = 5) at accuracy 1e-8)."""
    atoms = ase.Atoms("NaCl", scaled_positions=[[0, 0, 0], [0.3, 0.4, 0.5]], cell=5.0 * np.eye(3), pbc=True)
    hypers = dict(HYPERS, smearing=smearing, exponent=1.0)
    calc = gplode.LodeCalculator(backend="numpy", accuracy=1e-8, interpolation_order=order, **hypers)
    k_cutoff = calc.pipeline.k_cutoff
    exact = gplode.LodeCalculator(backend="reference", k_cutoff=k_cutoff, **hypers).compute(atoms).values
    values = calc.compute(atoms).values
    assert np.sqrt(np.mean((values - exact) ** 2) / np.mean(exact**2)) <= 1e-8


@pytest.mark.parametrize("route", ["direct", "mesh"])
def test_k_cutoff_is_honoured_by_the_mesh_backend(route):
    """An explicit k_cutoff sets the summed sphere on every backend (it used to be ignored)."""
    atoms = SYSTEMS["triclinic-3-species"]
    hypers = dict(HYPERS, exponent=1.0, k_cutoff=2.5)
    exact = gplode.LodeCalculator(backend="reference", **hypers).compute(atoms).values
    default = gplode.LodeCalculator(backend="reference", **dict(hypers, k_cutoff=None)).compute(atoms).values
    values = _calculator(route, accuracy=1e-9, **hypers).compute(atoms).values

    def error(a, b):
        return np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2))

    assert error(default, exact) > 1e-3  # the truncation is visible
    assert error(values, exact) <= 1e-9


@pytest.mark.parametrize("exponent, accuracy", [(6.0, 4e-5), (6.0, 1e-6)])
def test_a_crystal_whose_own_density_allows_it_gets_a_lower_order_on_the_same_mesh(exponent, accuracy):
    """The mesh's own choice assumes a featureless density spectrum; a perfect crystal's (its
    Bragg peaks) allows a lower B-spline order on the same shape, and the error stays in the
    band (measured 0.14× and 0.06× the accuracy with orders 6 and 8 where it chose 8 and 10)."""
    unit = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    hypers = dict(exponent=exponent, smearing=1.0, cutoff=4.0, max_radial=3, max_angular=3)
    exact = gplode.LodeCalculator(backend="reference", accuracy=1e-12, **hypers).compute(unit).values
    calc = gplode.LodeCalculator(backend="numpy", accuracy=accuracy, route="mesh", **hypers)
    atoms, species = unit.repeat(4), np.array([11, 17])
    (system,) = calc.pipeline.with_spheres(gplode.systems.as_systems(atoms), species)
    own = calc.pipeline.mesh.parameters(system.cell, system.n_atoms, system.k_cutoff)
    chosen = calc.pipeline.mesh_for(system, species)
    assert chosen.shape == own.shape and chosen.order < own.order
    values = calc.compute(atoms).values
    error = np.linalg.norm(values - np.tile(exact, (64, 1, 1, 1))) / np.linalg.norm(values)
    assert 0.05 * accuracy <= error <= accuracy
