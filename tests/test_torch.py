"""gplode.torch: autograd through gplode's VJP (issue 14).

gradcheck in float64 on small periodic and free-space structures; the module against the
calculator; the force-loss gradient of a model's parameters (through gplode's JVP) against
finite differences; NaN, never a silent zero, for the unimplemented second derivatives
with respect to positions; the CUDA device's code (CuPy-strict stand-in) against the numpy
backend; the training example in its fast form.
"""

import sys
from pathlib import Path

import ase
import numpy as np
import pytest
from peers import import_peer

torch = import_peer("torch")
import gplode  # noqa: E402
import gplode.torch  # noqa: E402

HYPERS = dict(smearing=1.0, cutoff=3.0, max_radial=2, max_angular=2, neighbor_types=[11, 17], accuracy=1e-10)
CELL = np.array([[5.1, 0.4, 0.0], [0.7, 4.8, 0.3], [-0.2, 0.5, 5.4]])
RNG = np.random.default_rng(14)


def _batch():
    """A periodic 4-atom cell and a free 3-atom cluster in one batch, as tensors (the same every call)."""
    periodic = np.random.default_rng(3).uniform(size=(4, 3)) @ CELL
    free = np.array([[0.0, 0.0, 0.0], [2.3, 0.2, 0.1], [0.3, 2.1, -0.6]])
    positions = torch.tensor(np.concatenate([periodic, free]), requires_grad=True)
    cells = torch.tensor(np.stack([CELL, np.zeros((3, 3))]), requires_grad=True)
    numbers = torch.tensor([11, 17, 11, 17, 11, 17, 17])
    pbc = torch.tensor([[True] * 3, [False] * 3])
    structure = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    return positions, numbers, cells, pbc, structure


@pytest.mark.parametrize("p", [1.0, 4.5])
def test_gradcheck(p):
    """Analytic (VJP) against numerical gradients in float64, positions and cells."""
    lode = gplode.torch.LodeSphericalExpansion(exponent=p, backend="reference", **HYPERS)
    positions, numbers, cells, pbc, structure = _batch()

    def features(r, h):
        return lode(r, numbers, h, pbc, structure)

    # fast mode: random projections of the Jacobian (the full one needs a VJP per output entry)
    assert torch.autograd.gradcheck(features, (positions, cells), eps=1e-6, atol=1e-7, rtol=1e-6, fast_mode=True)


def test_module_matches_the_calculator():
    lode = gplode.torch.LodeSphericalExpansion(exponent=6.0, backend="numpy", **HYPERS)
    positions, numbers, cells, pbc, structure = _batch()
    values = lode(positions, numbers, cells, pbc, structure)
    frames = [
        ase.Atoms(numbers=[11, 17, 11, 17], positions=positions[:4].detach().numpy(), cell=CELL, pbc=True),
        ase.Atoms(numbers=[11, 17, 17], positions=positions[4:].detach().numpy(), pbc=False),
    ]
    expected = gplode.LodeCalculator(exponent=6.0, backend="numpy", **HYPERS).compute(frames).values
    np.testing.assert_array_equal(values.detach().numpy(), expected)
    np.testing.assert_array_equal(lode(frames).numpy(), expected)
    assert values.dtype == torch.float64 and values.requires_grad


def test_cell_gradient_is_at_fixed_cartesian_positions():
    """∂L/∂H from the module equals finite differences of L in H with the positions held fixed."""
    lode = gplode.torch.LodeSphericalExpansion(exponent=1.0, backend="reference", **HYPERS)
    positions, numbers, cells, pbc, structure = _batch()
    weights = torch.tensor(RNG.normal(size=lode(positions, numbers, cells, pbc, structure).shape))
    loss = (lode(positions, numbers, cells, pbc, structure) * weights).sum()
    (grad,) = torch.autograd.grad(loss, cells)
    direction = torch.tensor(RNG.normal(size=(3, 3)))
    h = 1e-6
    moved = [cells.detach().clone() for _ in range(2)]
    moved[0][0] += h * direction
    moved[1][0] -= h * direction
    fd = [(lode(positions.detach(), numbers, c, pbc, structure) * weights).sum() for c in moved]
    assert float((grad[0] * direction).sum()) == pytest.approx(float((fd[0] - fd[1]) / (2 * h)), rel=1e-7)
    assert torch.all(grad[1] == 0)  # the free cluster has no cell


def test_force_loss_trains_the_parameters_exactly():
    """d/dθ of Σ|F(θ) − F_ref|² + stress terms, F = −∂E/∂r with E = Σ θ·c, through gplode's JVP,
    against central finite differences in θ; the positions' own second derivative is NaN."""
    lode = gplode.torch.LodeSphericalExpansion(exponent=1.0, backend="reference", **HYPERS)
    positions, numbers, cells, pbc, structure = _batch()
    shape = lode(positions, numbers, cells, pbc, structure).shape
    theta = torch.tensor(RNG.normal(size=shape[1:]), requires_grad=True)
    target_f, target_s = torch.tensor(RNG.normal(size=(7, 3))), torch.tensor(RNG.normal(size=(3, 3)))

    def loss(theta):
        energy = (lode(positions, numbers, cells, pbc, structure) * theta).sum()
        forces, cell_grad = torch.autograd.grad(energy, (positions, cells), create_graph=True)
        return ((-forces - target_f) ** 2).sum() + ((cell_grad[0] - target_s) ** 2).sum()

    loss(theta).backward()
    assert torch.isnan(positions.grad).all()  # loud, never a silently missing Hessian term
    direction = torch.tensor(RNG.normal(size=theta.shape))
    h = 1e-6
    fd = (loss(theta.detach() + h * direction) - loss(theta.detach() - h * direction)) / (2 * h)
    assert float((theta.grad * direction).sum()) == pytest.approx(float(fd.detach()), rel=1e-6)


@pytest.mark.parametrize("route", ["direct", "mesh"])
def test_cuda_device_code_matches_numpy(route):
    """The module on the CUDA device's code (Triton interpreted, CuPy-strict stand-in, which
    raises on any host/device mixing): the same features, gradients and force-loss parameter
    gradients (through the on-device JVP) as the numpy backend, with no array the size of the
    features ever copied to the host (DLPack both ways)."""
    import strict_device

    from gplode.devices import CudaDevice

    hypers = dict(HYPERS, accuracy=1e-5, route=route)
    if route == "mesh":  # the same mesh on both devices (their cost models would pick their own)
        hypers.update(mesh_spacing=0.6, interpolation_order=6)
    device = CudaDevice(xp=strict_device.fake_cupy(free_bytes=2**30), round_shapes=False)
    copied = []
    to_host = device.to_host
    device.to_host = lambda array: copied.append(array.size) or to_host(array)
    gpu = gplode.torch.LodeSphericalExpansion(exponent=1.0, backend="gpu", device=device, **hypers)
    cpu = gplode.torch.LodeSphericalExpansion(exponent=1.0, backend="numpy", **hypers)
    positions, numbers, cells, pbc, structure = _batch()
    periodic = (positions[:4], numbers[:4], cells[:1], pbc[:1], structure[:4])  # free space is a host route
    theta = torch.tensor(RNG.normal(size=(2, 9, 3)))
    results = []
    for lode in (gpu, cpu):
        inputs = [x.detach().clone().requires_grad_(x.requires_grad) for x in periodic]
        weights = theta.clone().requires_grad_(True)
        values = lode(*inputs)
        energy = (values * weights).sum()
        forces, cell_grad = torch.autograd.grad(energy, (inputs[0], inputs[2]), create_graph=True)
        ((forces**2).sum() + (cell_grad**2).sum()).backward(inputs=[weights])
        results.append((values.detach(), forces.detach(), cell_grad.detach(), weights.grad))
    assert copied and max(copied) < results[0][0].numel()  # only O(N) arrays (forces, k-point counts)
    for got, expected in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12 * float(expected.abs().max()))


def test_bad_inputs():
    lode = gplode.torch.LodeSphericalExpansion(exponent=1.0, backend="reference", **HYPERS)
    positions, numbers, cells, pbc, structure = _batch()
    with pytest.raises(ValueError, match="required"):
        lode(positions)
    with pytest.raises(ValueError, match="non-decreasing"):
        lode(positions, numbers, cells, pbc, structure.flip(0))
    with pytest.raises(ValueError, match="cells must be"):
        lode(positions, numbers, cells[0], pbc, structure)


@pytest.mark.slow
def test_training_example_quick():
    """examples/train_forces.py in its fast form: trained on energies and forces of 64-atom cells,
    tested on 216-atom cells; both models predict the unseen forces to a small fraction of
    their size (measured 0.16 of the RMS force for both; predicting zero gives 1)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import train_forces

    results = train_forces.main(quick=True)
    for model in ("linear", "mlp"):
        test = results[model]["test (216 atoms)"]
        assert test["force_rmse"] < 0.3 * test["force_rms"], (model, test)


def test_autograd_virial_is_the_strain_derivative():
    """Hᵀ ∂E/∂H + Σ_j r_jᵀ ∂E/∂r_j from autograd equals the calculator's ∂E/∂ε (the README's stress)."""
    lode = gplode.torch.LodeSphericalExpansion(exponent=4.5, backend="numpy", **HYPERS)
    positions, numbers, cells, pbc, structure = _batch()
    c = lode(positions, numbers, cells, pbc, structure)
    weights = torch.tensor(RNG.normal(size=c.shape))
    de_dr, de_dh = torch.autograd.grad((c * weights).sum(), (positions, cells))
    virial = cells[0].T @ de_dh[0] + positions[:4].T @ de_dr[:4]
    atoms = ase.Atoms(numbers=[11, 17, 11, 17], positions=positions[:4].detach().numpy(), cell=CELL, pbc=True)
    expected = lode.calculator.vjp(atoms, weights[:4].numpy()).strain[0]
    np.testing.assert_allclose(virial.detach().numpy(), expected, rtol=0, atol=1e-10 * np.abs(expected).max())
