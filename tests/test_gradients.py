"""Position and strain derivatives of the features (issue 13, DESIGN.md §1–2).

Every check can fail: finite differences of the values (directional, with random
directions, and component by component), the dense Jacobian against the vector–Jacobian
product, translation invariance, rotation covariance, the antisymmetric part of the strain
gradient against the rotation generator, and the virial of an Ewald-like energy against an
independent formula. Finite differences of strain keep the set of Miller indices fixed
(checked): a vector crossing the k-sphere would make a jump of the truncation's size.
"""

import ase
import numpy as np
import pytest
from scipy.linalg import expm

import gplode
from gplode.lib.kvectors import selected_kpoints, sphere_shape
from gplode.lib.spherical_harmonics import real_spherical_harmonics
from gplode.systems import as_systems

RNG = np.random.default_rng(2026)
CELL = np.array([[5.1, 0.4, 0.0], [0.7, 4.8, 0.3], [-0.2, 0.5, 5.4]])
HYPERS = dict(smearing=1.0, cutoff=3.0, max_radial=3, max_angular=3, accuracy=1e-8, center_atom_weight=0.5)
EXPONENTS = [0.0, 1.0, 2.5, 3.0, 4.5, 6.0]
#: central differences with h = 1e-5 Å: truncation ~h² × third derivative ≈ 1e-10 of the scale
STEP = 1e-5


def _structure(periodic: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    if periodic:
        return ase.Atoms("NaClNaClK", scaled_positions=rng.uniform(size=(5, 3)), cell=CELL, pbc=True)
    positions = np.array([[0, 0, 0], [2.1, 0.3, 0.1], [0.2, 2.3, -0.4], [-1.9, 0.6, 1.2], [1.0, -1.2, 2.2]])
    return ase.Atoms("NaClNaClK", positions=positions + rng.normal(scale=0.1, size=(5, 3)), pbc=False)


def _strained(atoms, epsilon):
    """r → r(1+ε), H → H(1+ε) (rows)."""
    out = atoms.copy()
    if atoms.pbc.any():
        out.set_cell(atoms.cell.array @ (np.eye(3) + epsilon))
    out.positions = atoms.positions @ (np.eye(3) + epsilon)
    return out


def _same_miller_set(calc, structures):
    cutoff = calc.pipeline.k_cutoff
    cells = [s.cell.array for s in structures if s.pbc.any()]
    if cells:
        shape = sphere_shape(np.stack(cells), cutoff)
        sets = [selected_kpoints(cell[None], shape, cutoff).frequencies.tolist() for cell in cells]
        assert all(s == sets[0] for s in sets), "a k-vector crosses the sphere: choose another structure"


def _loss(calc, atoms, weights):
    return float(np.sum(weights * calc.compute(atoms).values))


def _directional(calc, atoms, weights, displacement=None, epsilon=None):
    """Central difference of Σλ·c along a displacement of all atoms or a strain direction."""
    plus, minus = atoms.copy(), atoms.copy()
    if displacement is not None:
        plus.positions += STEP * displacement
        minus.positions -= STEP * displacement
    else:
        plus, minus = _strained(atoms, STEP * epsilon), _strained(atoms, -STEP * epsilon)
        _same_miller_set(calc, [plus, minus])
    return (_loss(calc, plus, weights) - _loss(calc, minus, weights)) / (2 * STEP)


def _dense_contracted(features, weights):
    """Σ_i λ^{(i)}·∂c^{(i)}/∂r_j and Σ λ·∂c/∂ε from the dense gradients (of one structure)."""
    positions = features.gradients["positions"]
    index = {z: a for a, z in enumerate(features.neighbor_types)}
    kind = np.array([index[z] for z in positions.samples[:, 3]])
    per_row = np.einsum("rxlm,rlm->rx", positions.values, weights[positions.samples[:, 0], kind])
    forces = np.zeros((weights.shape[0], 3))
    np.add.at(forces, positions.samples[:, 2], per_row)
    strain = np.einsum("iaxylm,ialm->xy", features.gradients["strain"].values, weights)
    return forces, strain


@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "free"])
@pytest.mark.parametrize("basis", ["gto", "monomial"])
@pytest.mark.parametrize("p", EXPONENTS)
def test_gradients_match_finite_differences(p, basis, periodic):
    """Reference backend: VJP and dense gradients against directional finite differences
    (≤ 1e-6 of the gradient scale; measured ≲ 1e-9), and against each other (≤ 1e-12)."""
    calc = gplode.LodeCalculator(exponent=p, radial_basis=basis, backend="reference", **HYPERS)
    atoms = _structure(periodic, seed=int(10 * p))
    features = calc.compute(atoms, gradients=["positions", "strain"])
    weights = RNG.normal(size=features.values.shape)
    vjp = calc.vjp(atoms, weights)
    displacement, epsilon = RNG.normal(size=(len(atoms), 3)), RNG.normal(size=(3, 3))
    scale_r = np.linalg.norm(vjp.positions) * np.linalg.norm(displacement)
    scale_e = np.linalg.norm(vjp.strain) * np.linalg.norm(epsilon)
    fd = _directional(calc, atoms, weights, displacement=displacement)
    assert abs(np.sum(vjp.positions * displacement) - fd) <= 1e-6 * scale_r
    fd = _directional(calc, atoms, weights, epsilon=epsilon)
    assert abs(np.sum(vjp.strain[0] * epsilon) - fd) <= 1e-6 * scale_e
    forces, strain = _dense_contracted(features, weights)
    np.testing.assert_allclose(forces, vjp.positions, rtol=0, atol=1e-12 * np.abs(vjp.positions).max())
    np.testing.assert_allclose(strain, vjp.strain[0], rtol=0, atol=1e-12 * np.abs(vjp.strain).max())


@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "free"])
def test_every_component_against_finite_differences(periodic):
    """Each atom, each axis, each strain component (p = 2.5, non-integer, triclinic)."""
    calc = gplode.LodeCalculator(exponent=2.5, backend="reference", **HYPERS)
    atoms = _structure(periodic, seed=4)
    weights = RNG.normal(size=calc.compute(atoms).values.shape)
    vjp = calc.vjp(atoms, weights)
    for j in range(len(atoms)):
        for x in range(3):
            unit = np.zeros((len(atoms), 3))
            unit[j, x] = 1.0
            fd = _directional(calc, atoms, weights, displacement=unit)
            assert abs(vjp.positions[j, x] - fd) <= 1e-7 * np.abs(vjp.positions).max()
    for x in range(3):
        for y in range(3):
            fd = _directional(calc, atoms, weights, epsilon=np.eye(3)[[x]].T @ np.eye(3)[[y]])
            assert abs(vjp.strain[0, x, y] - fd) <= 1e-7 * np.abs(vjp.strain).max()


@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "free"])
def test_translation_invariance_and_strain_identity(periodic):
    """Σ_j ∂c^{(i)}/∂r_j = 0 per centre and species; free space: ∂c/∂ε = Σ_j r_j ⊗ ∂c/∂r_j;
    periodic: the same plus the cell term Σ_A H_Aa ∂c/∂H_Ab (finite differences in H)."""
    calc = gplode.LodeCalculator(exponent=1.0, backend="reference", **HYPERS)
    atoms = _structure(periodic, seed=5)
    features = calc.compute(atoms, gradients=["positions", "strain"])
    g = features.gradients["positions"]
    keys = g.samples[:, 0] * 1000 + g.samples[:, 3]
    for key in np.unique(keys):
        total = g.values[keys == key].sum(axis=0)
        assert np.abs(total).max() <= 1e-14 * np.abs(g.values).max()
    # Σ_j r_j ⊗ ∂c/∂r_j, per (centre, species, l, m, n)
    moment = np.zeros(features.gradients["strain"].values.shape)
    index = {z: a for a, z in enumerate(features.neighbor_types)}
    for row, (i, _, j, z) in enumerate(g.samples):
        moment[i, index[z]] += atoms.positions[j][:, None, None, None] * g.values[row][None]
    if periodic:  # + Σ_A H_Aa ∂c/∂H_Ab at fixed Cartesian positions
        for a in range(3):
            for b in range(3):
                e = np.zeros((3, 3))
                e[a, b] = STEP
                values = []
                for sign in (1, -1):
                    moved = atoms.copy()
                    moved.set_cell(atoms.cell.array @ (np.eye(3) + sign * e))
                    values.append(calc.compute(moved).values)
                moment[:, :, a, b] += (values[0] - values[1]) / (2 * STEP)
    strain = features.gradients["strain"].values
    np.testing.assert_allclose(moment, strain, rtol=0, atol=1e-7 * np.abs(strain).max())


def _wigner_generators(max_angular, generator):
    """d/dt of the matrices D^l(t) with Y_lm(x R(t)^T) = Σ_m' D_mm' Y_lm'(x), R(t) = expm(tA), at t = 0,
    by least squares on random directions (an exact linear identity) and central differences."""
    points = RNG.normal(size=(200, 3))
    y = real_spherical_harmonics(points, max_angular)
    out = []
    for l in range(max_angular + 1):
        lm = slice(l * l, (l + 1) ** 2)
        matrices = []
        for t in (1e-5, -1e-5):
            rotated = real_spherical_harmonics(points @ expm(t * generator).T, max_angular)[:, lm]
            matrices.append(np.linalg.lstsq(y[:, lm], rotated, rcond=None)[0].T)
        out.append((matrices[0] - matrices[1]) / 2e-5)
    return out


def test_antisymmetric_strain_is_the_rotation_generator():
    """An antisymmetric ε is an infinitesimal rotation: Σ_xy A_xy ∂c_lm/∂ε_xy = Σ_m' (dD^l/dt)_mm' c_lm'
    with r → r(1 + tA) = r R(t)^T for R = expm(tAᵀ) — not zero for l ≥ 1 (never symmetrised)."""
    calc = gplode.LodeCalculator(exponent=6.0, backend="reference", **HYPERS)
    atoms = _structure(True, seed=6)
    features = calc.compute(atoms, gradients=["strain"])
    a = RNG.normal(size=(3, 3))
    a = a - a.T
    change = np.einsum("xy,iaxylm->ialm", a, features.gradients["strain"].values)
    generators = _wigner_generators(HYPERS["max_angular"], a.T)
    for l, d in enumerate(generators):
        lm = slice(l * l, (l + 1) ** 2)
        expected = np.einsum("mk,iakn->iamn", d, features.values[:, :, lm])
        scale = np.abs(features.gradients["strain"].values).max()
        np.testing.assert_allclose(change[:, :, lm], expected, rtol=0, atol=1e-8 * scale)
        if l >= 1:
            assert np.abs(expected).max() > 1e-3 * scale


def test_rotation_covariance_of_the_gradients():
    """Rotating the structure rotates ∂c_00/∂r_j as a vector and ∂c_00/∂ε as R S Rᵀ."""
    calc = gplode.LodeCalculator(exponent=1.0, backend="reference", **HYPERS)
    atoms = _structure(True, seed=7)
    rotation = expm(np.cross(np.eye(3), RNG.normal(size=3)))
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rotation.T)
    turned.positions = atoms.positions @ rotation.T
    before = calc.compute(atoms, gradients=["positions", "strain"])
    after = calc.compute(turned, gradients=["positions", "strain"])
    g0, g1 = before.gradients["positions"], after.gradients["positions"]
    np.testing.assert_array_equal(g0.samples, g1.samples)
    scale = np.abs(g0.values).max()
    rotated = np.einsum("xy,ryn->rxn", rotation, g0.values[:, :, 0])
    np.testing.assert_allclose(g1.values[:, :, 0], rotated, rtol=0, atol=1e-10 * scale)
    s0, s1 = before.gradients["strain"].values[..., 0, :], after.gradients["strain"].values[..., 0, :]
    rotated = np.einsum("xa,icabn,yb->icxyn", rotation, s0, rotation)
    np.testing.assert_allclose(s1, rotated, rtol=0, atol=1e-10 * np.abs(s0).max())


def test_toy_energy_forces_and_ewald_virial():
    """E = Σ_i q_i Σ_a q_a Σ_n w_n c^{(i)}_{a n00} of a rattled NaCl crystal at p = 1 (w_c = 1) is an
    Ewald reciprocal energy of smeared charges q, E = Σ_{k≠0} K(k)|S(k)|² over the full ±k set, with
    the radial kernel K = (4π/Ω) v̂_1(k) Σ_n w_n Ĩ_n0(k) Y_00. Its classical reciprocal virial,
    ∂E/∂ε_ab = -δ_ab E - Σ_k K'(k) k_a k_b/k |S(k)|² (from Ω and k(1+ε)^{-T}), computed
    independently here, equals the VJP's strain; the VJP's forces match finite differences of E."""
    import ase.build

    atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.positions += RNG.normal(scale=0.1, size=atoms.positions.shape)
    hypers = dict(HYPERS, center_atom_weight=1.0, max_angular=0)
    calc = gplode.LodeCalculator(exponent=1.0, backend="reference", **hypers)
    charges = np.where(atoms.numbers == 11, 1.0, -1.0)
    w = RNG.normal(size=calc.basis.n_radial)
    species_charge = np.array([1.0, -1.0])  # neighbour types (11, 17)
    weights = charges[:, None, None, None] * species_charge[None, :, None, None] * w[None, None, None, :]
    vjp = calc.vjp(atoms, weights)
    energy = _loss(calc, atoms, weights)

    # independent Ewald-like sum over the full k-set (±k), its energy and virial
    potential, basis = calc.potential, calc.basis
    k_c = calc.pipeline.with_spheres(as_systems(atoms), np.array([11, 17]))[0].k_cutoff  # the structure's sphere
    cell = atoms.cell.array
    recip = 2 * np.pi * np.linalg.inv(cell).T
    n = int(np.ceil(k_c * np.linalg.norm(cell, axis=1).max() / (2 * np.pi))) + 1
    m = np.stack(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    k = m @ recip
    knorm = np.linalg.norm(k, axis=1)
    keep = (knorm > 0) & (knorm**2 < k_c**2 * (1 - 1e-10))
    k, knorm = k[keep], knorm[keep]
    volume = atoms.get_volume()
    radial = basis.kspace_integral(knorm, 0) @ w / np.sqrt(4 * np.pi)  # Y_00 = 1/√4π
    d_radial = basis.kspace_integral_derivative(knorm, 0) @ w / np.sqrt(4 * np.pi)
    kernel = 4 * np.pi / volume * potential.kspace(knorm) * radial
    d_kernel = 4 * np.pi / volume * (potential.kspace_derivative(knorm) * radial + potential.kspace(knorm) * d_radial)
    structure = np.exp(1j * atoms.positions @ k.T).T @ charges  # S(k)
    power = np.abs(structure) ** 2
    assert energy == pytest.approx(np.sum(kernel * power), rel=1e-12)
    virial = -np.eye(3) * energy - np.einsum("k,ka,kb->ab", d_kernel * power / knorm, k, k)
    np.testing.assert_allclose(vjp.strain[0], virial, rtol=0, atol=1e-11 * np.abs(virial).max())
    displacement = RNG.normal(size=atoms.positions.shape)
    fd = _directional(calc, atoms, weights, displacement=displacement)
    assert np.sum(vjp.positions * displacement) == pytest.approx(fd, rel=1e-7)


def test_fast_backend_gradients_match_the_reference():
    """numpy backend, direct route (splined v̂, Ĩ, Ĩ'): VJP and dense within 1e-7 of the reference."""
    atoms = [_structure(True, seed=8), _structure(False, seed=9), _structure(True, seed=10)]
    reference = gplode.LodeCalculator(exponent=4.5, backend="reference", **HYPERS)
    fast = gplode.LodeCalculator(exponent=4.5, backend="numpy", route="direct", **HYPERS)
    weights = RNG.normal(size=reference.compute(atoms).values.shape)
    expected, got = reference.vjp(atoms, weights), fast.vjp(atoms, weights)
    for name in ("positions", "strain"):
        scale = np.abs(getattr(expected, name)).max()
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=0, atol=1e-7 * scale)
    dense_ref = reference.compute(atoms, gradients=["positions", "strain"]).gradients
    dense = fast.compute(atoms, gradients=["positions", "strain"]).gradients
    for name in ("positions", "strain"):
        scale = np.abs(dense_ref[name].values).max()
        np.testing.assert_allclose(dense[name].values, dense_ref[name].values, rtol=0, atol=1e-7 * scale)


def test_bad_gradient_requests():
    calc = gplode.LodeCalculator(exponent=1.0, backend="reference", **HYPERS)
    atoms = _structure(True)
    with pytest.raises(ValueError, match="unknown gradients"):
        calc.compute(atoms, gradients=["cell"])
    with pytest.raises(ValueError, match="shape of the features"):
        calc.vjp(atoms, np.zeros((2, 3)))
    shape = calc.compute(atoms).values.shape
    with pytest.raises(ValueError, match="NaN"):
        calc.vjp(atoms, np.full(shape, np.nan))
    tiny = gplode.LodeCalculator(exponent=1.0, backend="numpy", device=gplode.devices.CpuDevice(memory=2**20), **HYPERS)
    with pytest.raises(MemoryError, match="dense position gradients"):
        tiny.compute(atoms, gradients="positions")


def test_gradients_of_a_batch_are_those_of_each_structure():
    """Rows of several structures: each structure's rows, its sample indices offset."""
    calc = gplode.LodeCalculator(exponent=3.0, backend="numpy", neighbor_types=[11, 17, 19], **HYPERS)
    frames = [_structure(True, seed=11), _structure(False, seed=12), _structure(True, seed=13)[:3]]
    together = calc.compute(frames, gradients=["positions", "strain"]).gradients
    start, first = 0, 0
    for index, atoms in enumerate(frames):
        alone = calc.compute(atoms, gradients=["positions", "strain"]).gradients
        rows = slice(start, start + len(alone["positions"].samples))
        expected = alone["positions"].samples + [first, index, 0, 0]
        np.testing.assert_array_equal(together["positions"].samples[rows], expected)
        scale = np.abs(alone["positions"].values).max()
        np.testing.assert_allclose(together["positions"].values[rows], alone["positions"].values, atol=1e-13 * scale)
        strain = together["strain"].values[first : first + len(atoms)]
        np.testing.assert_allclose(strain, alone["strain"].values, atol=1e-13 * np.abs(strain).max())
        start, first = rows.stop, first + len(atoms)


@pytest.mark.parametrize("p", [1.0, 6.0])
def test_mesh_route_vjp_within_its_accuracy(p):
    """The mesh route's VJP (exact derivative of the mesh approximation) against the reference:
    relative RMS error ≤ 10 × accuracy (the k factor of a derivative weights the sphere's edge;
    measured ≤ 3e-7 at accuracy 1e-6), and the mesh's own finite differences to ≤ 1e-7."""
    atoms = ase.Atoms("NaClNaClK" * 4, scaled_positions=RNG.uniform(size=(20, 3)), cell=1.6 * CELL, pbc=True)
    hypers = dict(HYPERS, accuracy=1e-6)
    mesh = gplode.LodeCalculator(exponent=p, backend="numpy", route="mesh", **hypers)
    reference = gplode.LodeCalculator(exponent=p, backend="reference", k_cutoff=mesh.pipeline.k_cutoff, **HYPERS)
    weights = RNG.normal(size=mesh.compute(atoms).values.shape)
    got, expected = mesh.vjp(atoms, weights), reference.vjp(atoms, weights)
    for name in ("positions", "strain"):
        error = np.linalg.norm(getattr(got, name) - getattr(expected, name)) / np.linalg.norm(getattr(expected, name))
        assert error <= 10 * hypers["accuracy"], name
    displacement = RNG.normal(size=(len(atoms), 3))
    fd = _directional(mesh, atoms, weights, displacement=displacement)
    assert abs(np.sum(got.positions * displacement) - fd) <= 1e-7 * np.linalg.norm(got.positions) * np.linalg.norm(
        displacement
    )


@pytest.mark.parametrize("route", ["direct", pytest.param("mesh", marks=pytest.mark.slow)])
def test_cuda_device_gradients_match_the_cpu(route):
    """The CUDA device's code (Triton kernels interpreted) on the stand-in CuPy as strict as CuPy
    about host/device mixing (tests/strict_device.py): VJP and dense gradients as on the CPU."""
    import strict_device

    from gplode.devices import CudaDevice

    hypers = dict(HYPERS, accuracy=1e-5, max_angular=2, max_radial=2, route=route)
    if route == "mesh":  # the devices' cost models would choose different meshes
        hypers["interpolation_order"] = 8
    gpu = gplode.LodeCalculator(
        exponent=6.0,
        backend="gpu",
        device=CudaDevice(xp=strict_device.fake_cupy(free_bytes=2**30), round_shapes=False),
        **hypers,
    )
    cpu = gplode.LodeCalculator(exponent=6.0, backend="numpy", **hypers)
    frames = [_structure(True, seed=14), _structure(False, seed=15)]
    weights = RNG.normal(size=cpu.compute(frames).values.shape)
    # route="mesh" puts the free structure on the free-space mesh, in float32 at accuracy 1e-5:
    # the two devices' round-off (measured 6e-7 of the largest gradient; 1e-12 on the direct route)
    tolerance = 2e-6 if route == "mesh" else 1e-12
    for got, expected in zip(gpu.vjp(frames, weights), cpu.vjp(frames, weights), strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance * np.abs(expected).max())
    dense, dense_cpu = (c.compute(frames, gradients=["positions", "strain"]).gradients for c in (gpu, cpu))
    for name in ("positions", "strain"):
        scale = np.abs(dense_cpu[name].values).max()
        np.testing.assert_allclose(dense[name].values, dense_cpu[name].values, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("route", ["direct", "mesh"])
def test_float32_gradients(route):
    """dtype="float32": the VJP in single precision, within 1e-5 of float64 (relative to the scale)."""
    atoms = [_structure(True, seed=16), _structure(False, seed=17)]
    hypers = dict(HYPERS, accuracy=1e-5, route=route)
    double = gplode.LodeCalculator(exponent=1.0, backend="numpy", **hypers)
    single = gplode.LodeCalculator(exponent=1.0, backend="numpy", dtype="float32", **hypers)
    weights = RNG.normal(size=double.compute(atoms).values.shape)
    for got, expected in zip(single.vjp(atoms, weights), double.vjp(atoms, weights), strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(
    "backend, route", [("reference", None), ("numpy", "direct"), pytest.param("numpy", "mesh", marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("p", [0.0, 1.0, 4.5])
def test_jvp_is_the_adjoint_of_the_vjp(backend, route, p):
    """⟨λ, J·(ṙ, ε̇)⟩ = ⟨Jᵀλ, (ṙ, ε̇)⟩ to round-off (periodic and free space in one batch,
    monomial basis), and the JVP equals a directional finite difference of the values."""
    hypers = dict(HYPERS, radial_basis="monomial") | ({"route": route} if route else {})
    calc = gplode.LodeCalculator(exponent=p, backend=backend, **hypers)
    frames = [_structure(True, seed=18), _structure(False, seed=19)]
    values = calc.compute(frames).values
    weights = RNG.normal(size=values.shape)
    rate, strain = RNG.normal(size=(10, 3)), RNG.normal(size=(2, 3, 3))
    tangent = calc.jvp(frames, rate, strain)
    vjp = calc.vjp(frames, weights)
    left, right = np.sum(weights * tangent), np.sum(vjp.positions * rate) + np.sum(vjp.strain * strain)
    assert left == pytest.approx(right, rel=1e-12)
    moved = []
    for sign in (1, -1):
        frame = [_strained(f, sign * STEP * e) for f, e in zip(frames, strain, strict=True)]
        for f, r in zip(frame, (rate[:5], rate[5:]), strict=True):
            f.positions += sign * STEP * r
        moved.append(calc.compute(frame).values)
    fd = (moved[0] - moved[1]) / (2 * STEP)
    np.testing.assert_allclose(tangent, fd, rtol=0, atol=1e-6 * np.abs(tangent).max())


def test_bad_jvp_tangents():
    calc = gplode.LodeCalculator(exponent=1.0, backend="reference", **HYPERS)
    atoms = _structure(True)
    with pytest.raises(ValueError, match="positions tangent must have shape"):
        calc.jvp(atoms, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="strain tangent contains NaN"):
        calc.jvp(atoms, strain=np.full((1, 3, 3), np.nan))
