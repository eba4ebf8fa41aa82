"""Gradients of the particle-mesh k-sum (:meth:`gplode.methods.mesh.MeshKSum.vjp`): the exact
derivatives of the mesh approximation, against finite differences of ``compute`` on the
same mesh (shape, order and k-sphere fixed)."""

import functools

import ase
import numpy as np
import pytest

import gplode
from gplode.devices import CpuDevice
from gplode.lib.bspline import ORDERS, bspline_stencil, bspline_stencil_gradient, stencil
from gplode.systems import System, as_systems

HYPERS = dict(smearing=0.8, cutoff=3.0, max_radial=3, max_angular=3)
ACCURACY = 1e-6
SPECIES = np.array([11, 17])
TRICLINIC = np.array([[5.1, 0.4, 0.0], [0.7, 4.8, 0.3], [-0.2, 0.5, 5.4]])
CASES = [(p, basis) for p in (0.0, 1.0, 3.5, 6.0) for basis in ("gto", "monomial")]
STEP = 1e-5  # of the central differences (Å, and strain)


def _system(seed: int, symbols: str = "NaCl" * 4, cell=TRICLINIC) -> System:
    atoms = ase.Atoms(symbols, cell=cell, pbc=True)
    atoms.set_scaled_positions(np.random.default_rng(seed).uniform(size=(len(atoms), 3)))
    atoms.rattle(0.05, seed=seed)
    return as_systems(atoms)[0]


@functools.cache
def _mesh(p: float, basis: str, dtype: str = "float64"):
    hypers = dict(HYPERS, accuracy=ACCURACY, exponent=p, radial_basis=basis, dtype=dtype)
    return gplode.LodeCalculator(backend="numpy", route="mesh", **hypers).pipeline.mesh


def _weights(mesh, n_atoms: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n_atoms, len(SPECIES), mesh.n_lm, mesh.n_radial))


def _loss(mesh, params, weights, system, positions, cell=None) -> float:
    moved = System(positions, system.numbers, system.cell if cell is None else cell, True)
    return float((weights * mesh.compute([moved], SPECIES, params)).sum())


@functools.cache
def _case(p: float, basis: str):
    mesh, system = _mesh(p, basis), _system(1)
    params = mesh.parameters(system.cell, system.n_atoms)
    weights = _weights(mesh, system.n_atoms)
    return mesh, params, system, weights, *mesh.vjp([system], SPECIES, params, weights)


@pytest.mark.parametrize("order", ORDERS)
def test_stencil_derivatives(order):
    rng = np.random.default_rng(order)
    u = rng.uniform(0, 13, 40)
    indices, weights, derivatives = bspline_stencil_gradient(u, order, 13)
    expected_indices, expected_weights = bspline_stencil(u, order, 13)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(weights, expected_weights)
    np.testing.assert_allclose(derivatives.sum(axis=1), 0.0, atol=1e-14)  # Σ_t K_P(u - g_t) = 1
    h = 1e-6
    difference = (bspline_stencil(u + h, order, 13)[1] - bspline_stencil(u - h, order, 13)[1]) / (2 * h)
    np.testing.assert_allclose(derivatives, difference, atol=1e-8)
    # the device stage: per mesh axis, in mesh coordinates u_d = fractional_d M_d
    shape, fractional = (9, 10, 11), rng.uniform(size=(5, 3))
    indices, weights, gradients = CpuDevice().stencil_gradient(fractional, shape, order)
    expected_indices, expected_weights = stencil(fractional, shape, order)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(weights, expected_weights)
    assert gradients.shape == (3, 5, order**3)
    for d in range(3):
        step = np.zeros(3)
        step[d] = h / shape[d]
        difference = (stencil(fractional + step, shape, order)[1] - stencil(fractional - step, shape, order)[1]) / (
            2 * h
        )
        np.testing.assert_allclose(gradients[d], difference, atol=1e-8)


@pytest.mark.parametrize("p, basis", CASES)
def test_position_gradients_against_finite_differences(p, basis):
    mesh, params, system, weights, positions, _ = _case(p, basis)
    assert positions.shape == (system.n_atoms, 3)
    scale = np.abs(positions).max()
    rng = np.random.default_rng(7)
    # three single atoms, then all atoms at once, along random unit directions
    for atoms in ([0], [3], [6], list(range(system.n_atoms))):
        direction = np.zeros((system.n_atoms, 3))
        direction[atoms] = rng.normal(size=(len(atoms), 3))
        direction /= np.linalg.norm(direction)
        plus = _loss(mesh, params, weights, system, system.positions + STEP * direction)
        minus = _loss(mesh, params, weights, system, system.positions - STEP * direction)
        assert abs((positions * direction).sum() - (plus - minus) / (2 * STEP)) <= 1e-7 * scale, atoms


@pytest.mark.parametrize("p, basis", CASES)
def test_strain_gradient_against_finite_differences(p, basis):
    mesh, params, system, weights, _, strain = _case(p, basis)
    assert strain.shape == (1, 3, 3)
    epsilon = np.random.default_rng(11).normal(size=(3, 3))  # not symmetric
    epsilon /= np.linalg.norm(epsilon)

    def loss(t):
        deformation = np.eye(3) + t * epsilon  # r → r(1+ε), H → H(1+ε), rows
        return _loss(mesh, params, weights, system, system.positions @ deformation, system.cell @ deformation)

    difference = (loss(STEP) - loss(-STEP)) / (2 * STEP)
    assert abs((strain[0] * epsilon).sum() - difference) <= 1e-7 * np.abs(strain).max()


def test_translation():
    r"""Σ_j ∂L/∂r_j is the derivative of L under a rigid translation: zero for the exact
    k-sum, only as small as the mesh's translation error here (measured: 2.5e-8 of the
    largest gradient at p = 1, 5e-7 at p = 0, for accuracy 1e-6; 1.6e-11 at accuracy 1e-10).
    A translation by a mesh vector is exact on the mesh: the gradients do not change."""
    for p in (0.0, 1.0):
        mesh, params, system, weights, positions, strain = _case(p, "gto")
        assert np.abs(positions.sum(axis=0)).max() <= ACCURACY * np.abs(positions).max()
    shifted = System(system.positions + system.cell[0] / params.shape[0], system.numbers, system.cell, True)
    moved = mesh.vjp([shifted], SPECIES, params, weights)
    np.testing.assert_allclose(moved[0], positions, rtol=0, atol=1e-12 * np.abs(positions).max())
    np.testing.assert_allclose(moved[1], strain, rtol=0, atol=1e-12 * np.abs(strain).max())


def test_atoms_of_no_neighbour_species_are_centres_only():
    """A K atom, not a neighbour species: its gradient is the centre term alone."""
    mesh, system = _mesh(1.0, "gto"), _system(2, "NaClKNaClK")
    params = mesh.parameters(system.cell, system.n_atoms)
    weights = _weights(mesh, system.n_atoms)
    positions, _ = mesh.vjp([system], SPECIES, params, weights)
    for atom in (2, 3):  # K, then Na
        for e in range(3):
            step = np.zeros((system.n_atoms, 3))
            step[atom, e] = STEP
            plus = _loss(mesh, params, weights, system, system.positions + step)
            minus = _loss(mesh, params, weights, system, system.positions - step)
            assert abs(positions[atom, e] - (plus - minus) / (2 * STEP)) <= 1e-7 * np.abs(positions).max()


def test_batch_of_two_cells_equals_each_alone():
    mesh = _mesh(3.5, "gto")
    first = _system(4)
    second = _system(5, "NaClKClNa", cell=np.array([[5.3, -0.2, 0.1], [0.3, 5.0, 0.0], [0.4, -0.3, 5.2]]))
    params = mesh.parameters(first.cell, first.n_atoms)  # shared by both
    weights = _weights(mesh, first.n_atoms + second.n_atoms)
    positions, strain = mesh.vjp([first, second], SPECIES, params, weights)
    alone = [
        mesh.vjp([first], SPECIES, params, weights[: first.n_atoms]),
        mesh.vjp([second], SPECIES, params, weights[first.n_atoms :]),
    ]
    expected_positions = np.concatenate([a[0] for a in alone])
    expected_strain = np.concatenate([a[1] for a in alone])
    np.testing.assert_allclose(positions, expected_positions, rtol=0, atol=1e-12 * np.abs(expected_positions).max())
    np.testing.assert_allclose(strain, expected_strain, rtol=0, atol=1e-12 * np.abs(expected_strain).max())
    with pytest.raises(ValueError, match="shape of the coefficients"):
        mesh.vjp([first], SPECIES, params, weights)


def test_single_precision():
    mesh, params, system, weights, positions, strain = _case(1.0, "gto")
    single = _mesh(1.0, "gto", "float32").vjp([system], SPECIES, params, weights)
    np.testing.assert_allclose(single[0], positions, rtol=0, atol=1e-5 * np.abs(positions).max())
    np.testing.assert_allclose(single[1], strain, rtol=0, atol=1e-5 * np.abs(strain).max())


def test_no_kpoints_gives_zero():
    """k_c below the cell's smallest |k| (≈ 1.2 Å⁻¹): nothing summed, zero gradients."""
    hypers = dict(HYPERS, exponent=1.0, k_cutoff=0.5)
    mesh, system = gplode.LodeCalculator(backend="numpy", route="mesh", **hypers).pipeline.mesh, _system(1)
    params = mesh.parameters(system.cell, system.n_atoms)
    assert not mesh.compute([system], SPECIES, params).any()
    positions, strain = mesh.vjp([system], SPECIES, params, _weights(mesh, system.n_atoms))
    assert positions.shape == (system.n_atoms, 3) and strain.shape == (1, 3, 3)
    assert not positions.any() and not strain.any()


@pytest.mark.slow
def test_against_the_exact_k_sum():
    """Within the mesh accuracy of the derivatives of the exact direct k-sum (same k-sphere),
    from its finite differences (measured: ≤ 1e-7 of the gradient scale for p ∈ {0, 1, 3.5, 6})."""
    p = 1.0
    mesh, params, system, weights, positions, strain = _case(p, "gto")
    hypers = dict(HYPERS, accuracy=ACCURACY, exponent=p, k_cutoff=mesh.k_cutoff)
    direct = gplode.LodeCalculator(backend="reference", **hypers).pipeline.direct

    def loss(positions_, cell):
        return float((weights * direct.compute([System(positions_, system.numbers, cell, True)], SPECIES)).sum())

    rng = np.random.default_rng(5)
    direction, epsilon = rng.normal(size=(system.n_atoms, 3)), rng.normal(size=(3, 3))
    difference = (
        loss(system.positions + STEP * direction, system.cell) - loss(system.positions - STEP * direction, system.cell)
    ) / (2 * STEP)
    scale = np.linalg.norm(positions) * np.linalg.norm(direction)
    assert abs((positions * direction).sum() - difference) <= 10 * ACCURACY * scale
    plus, minus = np.eye(3) + STEP * epsilon, np.eye(3) - STEP * epsilon
    difference = (
        loss(system.positions @ plus, system.cell @ plus) - loss(system.positions @ minus, system.cell @ minus)
    ) / (2 * STEP)
    assert abs((strain[0] * epsilon).sum() - difference) <= 10 * ACCURACY * np.linalg.norm(strain) * np.linalg.norm(
        epsilon
    )


@pytest.mark.slow
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-13), ("float32", 1e-5)])
def test_cuda_device_runs_the_same_code(dtype, tolerance):
    """The CUDA device (Triton kernels interpreted) on a stand-in CuPy as strict as CuPy about
    host/device mixing (tests/strict_device.py) gives the CPU's gradients."""
    import strict_device

    from gplode.devices import CudaDevice

    hypers = dict(HYPERS, max_radial=1, max_angular=2, exponent=6.0, accuracy=1e-4, interpolation_order=6, dtype=dtype)
    cupy = strict_device.fake_cupy(free_bytes=2**30)
    gpu = gplode.LodeCalculator(backend="gpu", device=CudaDevice(xp=cupy), route="mesh", **hypers).pipeline.mesh
    cpu = gplode.LodeCalculator(backend="numpy", route="mesh", **hypers).pipeline.mesh
    systems = [_system(6, "NaClKNaCl")]
    params = cpu.parameters(systems[0].cell, systems[0].n_atoms)
    weights = _weights(cpu, systems[0].n_atoms)
    values, expected_values = gpu.vjp(systems, SPECIES, params, weights), cpu.vjp(systems, SPECIES, params, weights)
    for value, expected in zip(values, expected_values, strict=True):
        assert isinstance(value, np.ndarray)
        np.testing.assert_allclose(value, expected, rtol=0, atol=tolerance * np.abs(expected).max())
