"""Triton kernels against the NumPy stages, through Triton's CPU interpreter.

``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` before the kernels are imported, and the
kernels get NumPy arrays through :class:`gplode.kernels._adapter.TritonArray`; CI installs
Triton, so with ``GPLODE_REQUIRE_PEERS=1`` a missing Triton is a failure, not a skip.
"""

import ase
import numpy as np
import pytest
from peers import import_peer

import gplode
from gplode.devices import CpuDevice, CudaDevice
from gplode.lib.bspline import ORDERS

import_peer("triton")
from gplode.kernels import interpolate as kinterpolate  # noqa: E402
from gplode.kernels import spectra as kspectra  # noqa: E402
from gplode.kernels import spread as kspread  # noqa: E402
from gplode.kernels._adapter import as_triton  # noqa: E402

CPU = CpuDevice()
#: the CUDA device's chain on NumPy arrays, kernels in Triton's interpreter
INTERPRETED = CudaDevice(xp=np, round_shapes=False)

RNG = np.random.default_rng(8)
SHAPE = (9, 10, 12)
ATOM_COUNTS = [0, 1, 7, 129]


def _stencil(n_atoms, order):
    fractional = RNG.uniform(size=(n_atoms, 3))
    return CPU.stencil(fractional, SHAPE, order)


@pytest.mark.parametrize("n_atoms", ATOM_COUNTS)
@pytest.mark.parametrize("order", [4, 6])
def test_spread_kernel(n_atoms, order):
    indices, weights = _stencil(n_atoms, order)
    kind = RNG.integers(0, 4, size=n_atoms)  # type 3 is not a neighbour type below
    expected = CPU.spread(indices, weights, kind, 3, SHAPE)
    # atomics accumulate in a different order: equal to round-off
    np.testing.assert_allclose(kspread.spread(indices, weights, kind, 3, SHAPE, np), expected, atol=1e-14)


@pytest.mark.parametrize("n_atoms", ATOM_COUNTS)
@pytest.mark.parametrize("order", ORDERS)
def test_interpolate_kernel(n_atoms, order):
    indices, weights = _stencil(n_atoms, order)
    fields = RNG.normal(size=(3, *SHAPE))
    expected = CPU.interpolate(fields, CPU.prepare_interpolation(indices, weights, int(np.prod(SHAPE))))
    np.testing.assert_allclose(kinterpolate.interpolate(fields, (indices, weights), np), expected, atol=1e-13)


@pytest.mark.parametrize("l", [0, 1, 2, 3])
@pytest.mark.parametrize("n_k", [0, 1, 17, 300])
def test_channel_spectra_kernel(l, n_k):
    n_radial, n_half = 4, 500
    selected = RNG.choice(n_half, size=n_k, replace=False)
    prefactor = RNG.normal(size=n_k) + 1j * RNG.normal(size=n_k)
    radial, ylm = RNG.normal(size=(n_k, n_radial)), RNG.normal(size=n_k)
    expected = np.zeros((n_radial, n_half), dtype=complex)
    CPU.channel_spectra_into(expected, selected, prefactor, radial, ylm, l)
    batch = np.zeros((n_radial, n_half), dtype=complex)
    kspectra.channel_spectra_into(batch, selected, prefactor, radial, ylm, l, np)
    np.testing.assert_allclose(batch, expected, atol=1e-15)


def test_adapter_rejects_what_triton_cannot_read():
    with pytest.raises(ValueError, match="C-contiguous"):
        as_triton(np.zeros((4, 4))[:, ::2])
    assert as_triton(np.zeros(3, dtype=complex)).dtype == np.float64  # complex → float pairs


def _triclinic(seed, n_atoms):
    rng = np.random.default_rng(seed)
    cell = np.array([[5.1, 0.4, 0.0], [0.7, 4.8, 0.3], [-0.2, 0.5, 5.4]])
    symbols = rng.choice(["Na", "Cl", "K"], size=n_atoms)
    return ase.Atoms(symbols=list(symbols), scaled_positions=rng.uniform(size=(n_atoms, 3)), cell=cell, pbc=True)


@pytest.mark.parametrize("p", [0.0, 1.0, 4.5, 6.0])
@pytest.mark.parametrize("n_atoms", [1, 7])
def test_gpu_orchestration_with_interpreted_kernels(p, n_atoms):
    """The CUDA device's whole chain on NumPy arrays (interpreted kernels) equals the CPU
    device's mesh route (the B-spline order is fixed, so both pick the same mesh)."""
    atoms = _triclinic(int(10 * p) + n_atoms, n_atoms)
    hypers = dict(exponent=p, smearing=1.0, cutoff=3.0, max_radial=2, max_angular=2, accuracy=1e-3)
    hypers["interpolation_order"] = 6
    numpy_calc = gplode.LodeCalculator(backend="numpy", **hypers)
    triton_calc = gplode.LodeCalculator(backend="gpu", device=INTERPRETED, **hypers)
    expected = numpy_calc.compute(atoms).values
    np.testing.assert_allclose(triton_calc.compute(atoms).values, expected, atol=1e-13 * np.abs(expected).max())


def test_float32_chain_with_interpreted_kernels():
    atoms = _triclinic(4, 5)
    hypers = dict(exponent=1.0, smearing=1.0, cutoff=3.0, max_radial=2, max_angular=2, accuracy=1e-4)
    exact = gplode.LodeCalculator(backend="reference", **dict(hypers, accuracy=1e-12)).compute(atoms).values
    calc = gplode.LodeCalculator(backend="gpu", device=INTERPRETED, dtype="float32", route="mesh", **hypers)
    values = calc.compute(atoms).values
    assert values.dtype == np.float32
    assert np.sqrt(np.mean((values - exact) ** 2) / np.mean(exact**2)) <= 1e-4


@pytest.mark.parametrize("n_atoms", [1, 7, 129])
@pytest.mark.parametrize("device", [CPU, INTERPRETED], ids=["cpu", "triton"])
def test_spread_values_is_the_adjoint_of_interpolation(device, n_atoms):
    """⟨interpolate(M), v⟩ = ⟨M, spread_values(v)⟩ for random meshes and per-atom values, and
    each spread mesh equals the species spreading of the weighted stencils."""
    indices, weights = _stencil(n_atoms, 6)
    n_points = int(np.prod(SHAPE))
    plan = device.prepare_interpolation(indices, weights, n_points)
    meshes, values = RNG.normal(size=(3, n_points)), RNG.normal(size=(3, n_atoms))
    spread = device.spread_values(values, plan, n_points)
    assert spread.shape == (3, n_points)
    left = np.sum(device.interpolate(meshes, plan) * values)
    assert np.sum(meshes * spread) == pytest.approx(left, rel=1e-12)
    expected = CPU.spread(indices, weights * values[1][:, None], np.zeros(n_atoms, dtype=np.int64), 1, SHAPE)
    np.testing.assert_allclose(spread[1], expected.ravel(), atol=1e-13)


@pytest.mark.parametrize("route", ["direct", "mesh"])
def test_on_device_results_match_the_host(route):
    """``compute(on_device=True)``, ``vjp`` of device weights and ``jvp(on_device=True)`` on the
    CuPy-strict stand-in (any host/device mixing raises) agree with the host path, for a
    periodic and a free-space structure in one call; device values refuse ``to_tensormap``."""
    import strict_device

    frames = [_triclinic(3, 5), ase.Atoms("NaCl", positions=[[0, 0, 0], [2.4, 0.3, 0.1]], pbc=False)]
    hypers = dict(exponent=1.0, smearing=1.0, cutoff=3.0, max_radial=2, max_angular=2, accuracy=1e-4)
    if route == "mesh":  # the periodic cell on a small mesh (Triton interprets the kernels), the dimer on the pair sum
        hypers.update(mesh_spacing=0.6, interpolation_order=4)
    else:
        hypers.update(route="direct")
    device = CudaDevice(xp=strict_device.xp, round_shapes=False, memory=2**30)
    calc = gplode.LodeCalculator(backend="gpu", device=device, **hypers)
    host = calc.compute(frames).values
    features = calc.compute(frames, on_device=True)
    assert isinstance(features.values, strict_device.DeviceArray)
    np.testing.assert_array_equal(features.values.get(), host)
    with pytest.raises(ValueError, match="host values"):
        features.to_tensormap()
    with pytest.raises(ValueError, match="on_device=False"):
        calc.compute(frames, gradients=["strain"], on_device=True)
    weights = RNG.normal(size=host.shape)
    from_device = calc.vjp(frames, strict_device.xp.asarray(weights))
    from_host = calc.vjp(frames, weights)
    np.testing.assert_array_equal(from_device.positions, from_host.positions)
    np.testing.assert_array_equal(from_device.strain, from_host.strain)
    rate = RNG.normal(size=(7, 3))
    tangent = calc.jvp(frames, positions=rate, on_device=True)
    assert isinstance(tangent, strict_device.DeviceArray)
    np.testing.assert_array_equal(tangent.get(), calc.jvp(frames, positions=rate))


@pytest.mark.slow
def test_slabs_wires_and_the_free_space_mesh_on_the_cuda_device_code():
    """The truncated k-sum of slabs and wires and the free-space mesh on the CUDA device's code
    (CuPy-strict stand-in: any host/device mixing raises; kernels interpreted) equal the CPU's."""
    import strict_device

    device = CudaDevice(xp=strict_device.xp, round_shapes=False, memory=2**30)
    slab = ase.Atoms("NaClCl", positions=[[0.1, 0.2, 0.0], [1.6, 1.1, 1.3], [2.6, 1.9, 0.4]], pbc=[True, True, False])
    slab.cell = [[3.1, 0.0, 0.0], [1.2, 2.8, 0.0], [0.0, 0.0, 0.0]]
    wire = ase.Atoms("NaClCl", positions=[[0.0, 0.0, 0.0], [1.2, 0.4, 1.1], [-0.3, 1.0, 2.2]], pbc=[False, False, True])
    wire.cell = [[0, 0, 0], [0, 0, 0], [0, 0, 3.3]]
    molecule = ase.Atoms("NaClCl", positions=[[0, 0, 0], [2.1, 0.3, 0.1], [0.2, 2.3, -0.5]], pbc=False)
    mixed = dict(exponent=1.0, smearing=0.5, cutoff=1.5, max_radial=2, max_angular=3, radial_basis="monomial")
    free = dict(exponent=1.0, smearing=1.0, cutoff=3.0, max_radial=2, max_angular=2, route="mesh")
    # the free-space mesh runs in float32 from accuracy 1e-5 up (measured 4.4e-7 of the largest
    # value apart at 1e-4: the two devices' float32 round-off), in float64 below (1e-15)
    cases = [
        ([slab, wire], dict(mixed, accuracy=1e-6), 1e-13),
        ([molecule], dict(free, accuracy=1e-6), 1e-13),
        ([molecule], dict(free, accuracy=1e-4), 4e-6),
    ]
    for frames, hypers, tolerance in cases:
        expected = gplode.LodeCalculator(backend="numpy", **hypers).compute(frames).values
        values = gplode.LodeCalculator(backend="gpu", device=device, **hypers).compute(frames).values
        np.testing.assert_allclose(values, expected, rtol=0, atol=tolerance * np.abs(expected).max())
