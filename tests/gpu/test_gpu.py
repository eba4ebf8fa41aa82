"""End-to-end checks on a real GPU (skipped without one).

Run on a GPU machine with ``GPLODE_TEST_GPU=1 python -m pytest tests/gpu`` (the variable
keeps Triton out of interpreter mode, see tests/conftest.py).
"""

import ase
import ase.build
import numpy as np
import pytest

import gplode
from gplode.devices import CudaDevice, gpu_available
from gplode.systems import as_systems

pytestmark = pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy and Triton")

HYPERS = dict(smearing=1.0, cutoff=3.0, max_radial=3, max_angular=3)


def _triclinic(seed=2, n_atoms=11):
    rng = np.random.default_rng(seed)
    cell = np.array([[7.1, 0.4, 0.0], [0.7, 6.8, 0.3], [-0.2, 0.5, 7.4]])
    symbols = list(rng.choice(["Na", "Cl", "K"], size=n_atoms))
    return ase.Atoms(symbols=symbols, scaled_positions=rng.uniform(size=(n_atoms, 3)), cell=cell, pbc=True)


@pytest.mark.parametrize("route", ["direct", "mesh"])
@pytest.mark.parametrize("p", [0.0, 1.0, 3.0, 4.5, 6.0])
@pytest.mark.parametrize("dtype, accuracy", [("float64", 1e-7), ("float32", 1e-5)])
def test_agrees_with_reference(route, p, dtype, accuracy):
    """Small cells: the direct k-sum by default; a given interpolation order forces the mesh."""
    frames = [_triclinic(), ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(2)]
    exact = gplode.LodeCalculator(backend="reference", accuracy=1e-13, exponent=p, **HYPERS).compute(frames).values
    forced = {"interpolation_order": 10} if route == "mesh" else {}
    calc = gplode.LodeCalculator(backend="gpu", accuracy=accuracy, dtype=dtype, exponent=p, **forced, **HYPERS)
    values = calc.compute(frames).values
    error = np.sqrt(np.mean((values - exact) ** 2) / np.mean(exact**2))
    assert error <= max(accuracy, 1e-5 if dtype == "float32" else 0.0)


def test_batch_of_mixed_sizes_matches_numpy_backend():
    frames = [_triclinic(seed, n) for seed, n in ((1, 3), (2, 17), (3, 40))]
    frames.append(ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(3))
    hypers = dict(exponent=1.0, accuracy=1e-6, **HYPERS)
    expected = gplode.LodeCalculator(backend="numpy", **hypers).compute(frames).values
    values = gplode.LodeCalculator(backend="gpu", **hypers).compute(frames).values
    np.testing.assert_allclose(values, expected, atol=1e-5 * np.abs(expected).max())


def test_auto_picks_the_gpu():
    assert gplode.LodeCalculator().backend == "gpu"


def _strained_supercells(n_structures, seed=0):
    rng = np.random.default_rng(seed)
    unit = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    frames = []
    for i in range(n_structures):
        atoms = unit.repeat((2, 2, 2 + i % 2))
        atoms.rattle(0.05, seed=i)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.uniform(-0.01, 0.01, (3, 3))), scale_atoms=True)
        frames.append(atoms)
    return frames


def test_batched_dataset_matches_numpy_backend_and_splits_to_fit():
    """Many small cells: batched on the GPU (the direct k-sum for these sizes), same
    features as the CPU backend at the accuracy level, and identical when the memory
    budget forces many small batches."""
    frames = _strained_supercells(40)
    hypers = dict(exponent=1.0, accuracy=1e-6, **HYPERS)
    expected = gplode.LodeCalculator(backend="numpy", **hypers).compute(frames).values
    calc = gplode.LodeCalculator(backend="gpu", **hypers)
    values = calc.compute(frames).values
    rms = np.sqrt(np.mean(expected**2))
    assert np.sqrt(np.mean((values - expected) ** 2)) <= 2e-6 * rms
    one = 0
    for system in as_systems(frames):
        method, params = calc.pipeline.method_for(system, calc._species([system]))
        one = max(one, method.batch_bytes(method.grow(None, system, params), 2))
    small = gplode.LodeCalculator(
        backend="gpu", device=CudaDevice(memory=int(3 * one / CudaDevice.memory_fraction)), **hypers
    )
    np.testing.assert_allclose(small.compute(frames).values, values, atol=1e-12 * np.abs(values).max())


def test_torch_cuda_tensors_stay_on_the_gpu():
    """CUDA tensors in, CUDA tensors out (DLPack with CuPy), and the same features, forces and
    force-loss parameter gradients as CPU tensors on the numpy backend."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here")
    import gplode.torch

    frames = [_triclinic(), ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)]
    hypers = dict(HYPERS, exponent=1.0, accuracy=1e-8, neighbor_types=[11, 17, 19])
    results = []
    for backend, device in (("gpu", "cuda"), ("numpy", "cpu")):
        lode = gplode.torch.LodeSphericalExpansion(backend=backend, **hypers)
        positions = torch.tensor(np.concatenate([f.positions for f in frames]), device=device, requires_grad=True)
        cells = torch.tensor(np.stack([f.cell.array for f in frames]), device=device, requires_grad=True)
        numbers = torch.tensor(np.concatenate([f.numbers for f in frames]), device=device)
        pbc = torch.ones((2, 3), dtype=torch.bool, device=device)
        structure = torch.tensor(np.repeat([0, 1], [len(f) for f in frames]), device=device)
        values = lode(positions, numbers, cells, pbc, structure)
        assert values.device.type == device
        theta = torch.linspace(-1, 1, values[0].numel(), dtype=values.dtype, device=device)
        theta = theta.reshape(values.shape[1:]).requires_grad_(True)
        forces, cell_grad = torch.autograd.grad((values * theta).sum(), (positions, cells), create_graph=True)
        assert forces.device.type == device
        ((forces**2).sum() + (cell_grad**2).sum()).backward(inputs=[theta])
        results.append([x.detach().cpu() for x in (values, forces, cell_grad, theta.grad)])
    for got, expected in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-9 * float(expected.abs().max()))
