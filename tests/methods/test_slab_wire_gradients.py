r"""Derivatives of slab and wire features (gplode.truncated, gplode.methods.truncated).

a. The anisotropic kernel's derivative :math:`\partial\hat v^D/\partial k_\parallel` against
   finite differences of :math:`\hat v^D` (slab and wire, any p).
b. The box sum in a fixed box (the structure's own cell: a triclinic in-plane cell with a
   tilted vacuum vector for the slab): the JVP along positions and along in-plane (axial)
   strains against central finite differences of the values, and the VJP its adjoint.
c. Through the calculator (its own "auto" box): ⟨λ, J t⟩ = ⟨Jᵀλ, t⟩ in a batch with bulk and
   free-space structures, dense gradients = VJP, translation invariance, strain zero outside
   the periodic directions, out-of-plane strain tangents refused, and finite differences.

Finite differences of strain keep the set of Miller indices fixed (checked): a k-vector
crossing the sphere would make a jump of the truncation's size.
"""

import ase
import numpy as np
import pytest

import gplode
from gplode.lib.kvectors import selected_kpoints, sphere_shape
from gplode.methods.truncated import mixed_system, periodic_projector
from gplode.potentials import SmearedPowerLaw
from gplode.systems import as_systems
from gplode.truncated import TruncatedPowerLaw

RNG = np.random.default_rng(2031)
#: central differences with h = 1e-5: truncation ~h² × third derivative, round-off
#: ~1e-16/h of the scale; measured 1e-10–8e-10 of the tangent's largest entry
STEP = 1e-5
FD_TOLERANCE = 1e-7
SPECIES = np.array([11, 17])


def _slab(vacuum=24.0, tilt=(1.7, -2.3)):
    """A rattled 3-atom slab with a triclinic in-plane cell (normal z) and a vacuum vector not
    orthogonal to the plane."""
    cell = np.array([[3.1, 0.0, 0.0], [1.2, 2.8, 0.0], [tilt[0], tilt[1], vacuum]])
    positions = [[0.1, 0.2, 0.0], [1.6, 1.1, 1.3], [2.6, 1.9, 0.4]]
    return ase.Atoms("NaClCl", positions=positions, cell=cell, pbc=[True, True, False])


def _tilted_slab():
    """The slab rotated so that its plane is no Cartesian plane (normal not along an axis)."""
    atoms = _slab()
    rotation = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
    rotation *= np.sign(np.linalg.det(rotation))
    atoms.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    atoms.positions = atoms.positions @ rotation.T
    return atoms


def _wire(side=15.0):
    """A rattled 3-atom wire along x (period 3.3 Å) in a square transverse cell; the periodic
    vector is the first, so that the k-vectors of the half spectrum have both signs of q."""
    cell = np.array([[3.3, 0.0, 0.0], [0.0, side, 0.0], [0.0, 0.0, side]])
    positions = [[0.0, 0.0, 0.0], [1.1, 1.2, 0.4], [2.2, -0.3, 1.0]]
    return ase.Atoms("NaClCl", positions=positions, cell=cell, pbc=[True, False, False])


def _calculator(p, **extra):
    # low accuracy: small k-spheres and boxes (fast); the finite differences check the
    # derivative of the function computed, whatever its accuracy
    hypers = dict(smearing=0.8, cutoff=1.5, max_radial=2, max_angular=3, radial_basis="monomial", accuracy=1e-4)
    hypers = dict(hypers, backend="numpy", center_atom_weight=0.4) | extra
    return gplode.LodeCalculator(exponent=p, **hypers)


def _strained(atoms, epsilon):
    """r → r(1+ε), H → H(1+ε) (rows)."""
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + epsilon), scale_atoms=False)
    out.positions = atoms.positions @ (np.eye(3) + epsilon)
    return out


def _in_plane(atoms, rng):
    """A random strain of the periodic directions, P ε P."""
    projector = periodic_projector(atoms.cell.array, atoms.pbc)
    return projector @ rng.normal(size=(3, 3)) @ projector


# ---------------------------------------------------------------------------------------
# a. the kernel
# ---------------------------------------------------------------------------------------


#: the wire's kernel costs a quadrature per distinct q: fewer points, and some exponents slow
_WIRE_SLOW = [pytest.param("wire", p, marks=pytest.mark.slow) for p in (0.0, 0.6, 2.0, 2.5, 3.0)]


@pytest.mark.parametrize(
    "geometry, p",
    [("slab", p) for p in (0.0, 0.6, 1.0, 2.0, 2.5, 3.0, 4.5)] + [("wire", p) for p in (1.0, 4.5)] + _WIRE_SLOW,
)
def test_kernel_parallel_derivative(geometry, p):
    """∂v̂^D/∂k_∥ at fixed k_⊥ against a fourth-order central difference (h = 1e-3 Å⁻¹:
    error ~h⁴ f⁽⁵⁾ and 1e-16/h; measured ≤ 3e-9 of the largest); the values returned with it
    are :meth:`kspace`'s, bitwise; the rows (k_∥ = 0) get 0."""
    kernel = TruncatedPowerLaw(SmearedPowerLaw(p, 0.6), geometry, 7.0)
    par = np.array([0.0, 0.0, 0.2, 0.45, 0.9, 1.7, 2.4, 4.0, 0.9])
    perp = np.array([0.0, 1.3, 0.4, 0.0, 1.3, 0.6, 5.1, 2.5, 5.0])
    if geometry == "wire":
        par, perp = par[[0, 1, 2, 4, 7]], perp[[0, 1, 2, 4, 7]]
    values, slope = kernel.kspace_with_par_derivative(par, perp)
    np.testing.assert_array_equal(values, kernel.kspace(par, perp))
    assert np.all(slope[:2] == 0.0)
    h = 1e-3
    f = [kernel.kspace(par[2:] + j * h, perp[2:]) for j in (-2, -1, 1, 2)]
    fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    np.testing.assert_allclose(slope[2:], fd, rtol=0, atol=1e-7 * np.abs(fd).max())
    assert np.abs(fd).min() > 1e-6 * np.abs(fd).max()  # every point tests something


# ---------------------------------------------------------------------------------------
# b. the box sum in a fixed box
# ---------------------------------------------------------------------------------------


class _FixedBox:
    """The calculator's truncated k-sum of ``atoms`` in the structure's own cell (``box="cell"``):
    values (k ≠ 0 and G = 0 terms; the centre term is constant) and their derivatives."""

    def __init__(self, calc):
        self.method, self.pipeline = calc.pipeline.truncated, calc.pipeline

    def box(self, atoms):
        return mixed_system(as_systems(atoms)[0], self.pipeline.reach, self.pipeline.margin, "cell")

    def values(self, atoms):
        return self.method.compute([self.box(atoms)], SPECIES)

    def jvp(self, atoms, values, rate, strain):
        """The full tangent: the method's plus the volume term −tr(ε̇) c (``values``: c)."""
        tangent = self.method.jvp([self.box(atoms)], SPECIES, None, rate, strain[None])
        return tangent - np.trace(strain) * values

    def miller(self, atoms):
        cell = self.box(atoms).cell[None]
        k_c = self.method.k_cutoff
        return selected_kpoints(cell, sphere_shape(cell, k_c), k_c).frequencies.tolist()


def _central(function, atoms, rate=None, epsilon=None):
    moved = []
    for sign in (1, -1):
        frame = atoms.copy() if rate is not None else _strained(atoms, sign * STEP * epsilon)
        if rate is not None:
            frame.positions += sign * STEP * rate
        moved.append(frame)
    return (function(moved[0]) - function(moved[1])) / (2 * STEP), moved


def _check_fixed_box(p, atoms):
    calc = _calculator(p)
    fixed = _FixedBox(calc)
    values = fixed.values(atoms)
    weights = RNG.normal(size=values.shape)
    rate, epsilon = RNG.normal(size=(len(atoms), 3)), _in_plane(atoms, RNG)
    scale = np.abs(values).max()
    # positions
    tangent = fixed.jvp(atoms, values, rate, np.zeros((3, 3)))
    fd, _ = _central(fixed.values, atoms, rate=rate)
    assert np.abs(tangent).max() > 1e-3 * scale
    np.testing.assert_allclose(tangent, fd, rtol=0, atol=FD_TOLERANCE * np.abs(tangent).max())
    # in-plane (axial) strain, the Miller set fixed
    strain_tangent = fixed.jvp(atoms, values, np.zeros((len(atoms), 3)), epsilon)
    fd, moved = _central(fixed.values, atoms, epsilon=epsilon)
    assert fixed.miller(moved[0]) == fixed.miller(moved[1]), "a k-vector crosses the sphere"
    assert np.abs(strain_tangent).max() > 1e-3 * scale
    np.testing.assert_allclose(strain_tangent, fd, rtol=0, atol=FD_TOLERANCE * np.abs(strain_tangent).max())
    # the VJP is the adjoint
    forces, strain = fixed.method.vjp([fixed.box(atoms)], SPECIES, None, weights)
    left = np.sum(weights * (tangent + strain_tangent))
    right = np.sum(forces * rate) + np.sum(strain[0] * epsilon)
    # round-off of sums over k-vectors and atoms: measured ≤ 1.1e-14
    assert left == pytest.approx(right, rel=1e-10, abs=1e-12 * np.abs(weights * values).sum())
    return np.abs(tangent - fd).max() / np.abs(tangent).max()


@pytest.mark.parametrize("p", [1.0, 2.5, 4.5])
def test_slab_derivatives_match_finite_differences(p):
    """Triclinic in-plane cell, tilted vacuum vector: positions and in-plane strain."""
    _check_fixed_box(p, _slab())


def test_slab_in_a_rotated_frame():
    """The slab's plane is no Cartesian plane: in-plane strain is P ε P with a full P (the
    derivative is covariant: a bug in a Cartesian component would show here)."""
    _check_fixed_box(2.5, _tilted_slab())


@pytest.mark.parametrize(
    "p", [pytest.param(1.0, marks=pytest.mark.slow), 2.5, pytest.param(4.5, marks=pytest.mark.slow)]
)
def test_wire_derivatives_match_finite_differences(p):
    """Positions and axial strain."""
    _check_fixed_box(p, _wire())


# ---------------------------------------------------------------------------------------
# c. through the calculator
# ---------------------------------------------------------------------------------------


def _frames():
    bulk = ase.Atoms("NaCl", scaled_positions=[[0, 0, 0], [0.5, 0.4, 0.5]], cell=4.0 * np.eye(3), pbc=True)
    molecule = ase.Atoms("NaCl", positions=[[0, 0, 0], [2.1, 0.3, 0.2]])
    wire = _wire()
    wire.cell = np.diag([3.3, 0.0, 0.0])  # no transverse cell: the calculator's own box
    return [_slab(), bulk, wire, molecule, _tilted_slab()]


def test_jvp_is_the_adjoint_of_the_vjp():
    """⟨λ, J·(ṙ, ε̇)⟩ = ⟨Jᵀλ, (ṙ, ε̇)⟩ to round-off for slabs and a wire in a batch with bulk and
    free space (measured 6e-16 relative); the strain of a slab or a wire is zero outside its
    periodic directions, non-zero inside. (At accuracy ≥ SINGLE_PRECISION_ACCURACY the bulk
    member's values, and so the JVP's volume term, would carry float32 round-off.)"""
    calc = _calculator(2.5, accuracy=1e-6)
    frames = _frames()
    values = calc.compute(frames).values
    weights = RNG.normal(size=values.shape)
    rate = RNG.normal(size=(values.shape[0], 3))
    strain = RNG.normal(size=(len(frames), 3, 3))
    for i in (0, 2, 4):
        strain[i] = _in_plane(frames[i], RNG)
    tangent = calc.jvp(frames, rate, strain)
    vjp = calc.vjp(frames, weights)
    left, right = np.sum(weights * tangent), np.sum(vjp.positions * rate) + np.sum(vjp.strain * strain)
    assert left == pytest.approx(right, rel=1e-10)
    for i in (0, 2, 4):
        projector = periodic_projector(frames[i].cell.array, frames[i].pbc)
        inside = projector @ vjp.strain[i] @ projector
        np.testing.assert_allclose(vjp.strain[i], inside, rtol=0, atol=1e-14 * np.abs(vjp.strain[i]).max())
        assert np.abs(inside).max() > 1e-3 * np.abs(vjp.positions).max()


def test_dense_gradients_agree_with_the_vjp_and_are_translation_invariant():
    """compute(gradients=["positions", "strain"]) of a slab and a wire: Σ_j ∂c^{(i)}/∂r_j = 0
    (≤ 1e-13 of the scale, exact up to round-off; measured 8e-17), contracted with λ equal to the
    VJP (≤ 1e-12; measured 3e-15), the VJP's forces sum to zero (measured 6e-16)."""
    calc = _calculator(4.5)
    frames = _frames()
    frames = [frames[0], frames[2]]
    features = calc.compute(frames, gradients=["positions", "strain"])
    weights = RNG.normal(size=features.values.shape)
    vjp = calc.vjp(frames, weights)
    positions = features.gradients["positions"]
    keys = positions.samples[:, 0] * 1000 + positions.samples[:, 3]
    for key in np.unique(keys):
        total = positions.values[keys == key].sum(axis=0)
        assert np.abs(total).max() <= 1e-13 * np.abs(positions.values).max()
    index = {z: a for a, z in enumerate(features.neighbor_types)}
    kind = np.array([index[z] for z in positions.samples[:, 3]])
    per_row = np.einsum("rxlm,rlm->rx", positions.values, weights[positions.samples[:, 0], kind])
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in frames])])
    forces = np.zeros((weights.shape[0], 3))
    np.add.at(forces, offsets[positions.samples[:, 1]] + positions.samples[:, 2], per_row)
    np.testing.assert_allclose(forces, vjp.positions, rtol=0, atol=1e-12 * np.abs(vjp.positions).max())
    for s in range(len(frames)):
        rows = slice(offsets[s], offsets[s + 1])
        strain = np.einsum("iaxylm,ialm->xy", features.gradients["strain"].values[rows], weights[rows])
        np.testing.assert_allclose(strain, vjp.strain[s], rtol=0, atol=1e-12 * np.abs(vjp.strain[s]).max())
        assert np.abs(vjp.positions[rows].sum(axis=0)).max() <= 1e-12 * np.abs(vjp.positions[rows]).max()


def test_calculator_finite_differences():
    """The calculator's own box follows the structure (its height from the thickness): the
    features do not depend on it, so the VJP matches finite differences of compute() too
    (positions of all atoms, in-plane strain; ≤ 1e-7, measured 1.3e-10 and 1.2e-11)."""
    calc = _calculator(1.0, accuracy=1e-8)
    atoms = _slab(vacuum=0.0)
    values = calc.compute(atoms).values
    weights = RNG.normal(size=values.shape)
    vjp = calc.vjp(atoms, weights)
    rate, epsilon = RNG.normal(size=(len(atoms), 3)), _in_plane(atoms, RNG)

    def loss(frame):
        return float(np.sum(weights * calc.compute(frame).values))

    fd, _ = _central(loss, atoms, rate=rate)
    scale = np.linalg.norm(vjp.positions) * np.linalg.norm(rate)
    assert abs(np.sum(vjp.positions * rate) - fd) <= FD_TOLERANCE * scale
    fd, _ = _central(loss, atoms, epsilon=epsilon)
    scale = np.linalg.norm(vjp.strain) * np.linalg.norm(epsilon)
    assert abs(np.sum(vjp.strain[0] * epsilon) - fd) <= FD_TOLERANCE * scale


def test_strain_outside_the_periodic_directions_is_refused():
    """A strain tangent with components along a slab's normal or across a wire's axis: a
    one-line ValueError naming the frame, before anything is computed; round-off leaks pass."""
    calc = _calculator(1.0)
    frames = _frames()
    strain = np.zeros((len(frames), 3, 3))
    for i, component, what in ((0, (2, 2), "in-plane strain"), (0, (0, 2), "in-plane"), (2, (1, 1), "axial strain")):
        bad = strain.copy()
        bad[i][component] = 1.0
        with pytest.raises(ValueError, match=f"frame {i}: .*outside the periodic directions: only {what}") as error:
            calc.jvp(frames, strain=bad)
        assert "\n" not in str(error.value)
    tilted = strain.copy()
    tilted[4] = _in_plane(frames[4], RNG)
    leak = np.zeros_like(tilted)
    leak[4] = 1e-14 * RNG.normal(size=(3, 3))  # round-off of a rotated plane
    projected = calc.pipeline.check_gradients(as_systems(frames), tilted + leak)
    np.testing.assert_allclose(projected, tilted, rtol=0, atol=1e-13)


def test_reference_backend_and_float32():
    """The slab's VJP on the reference backend (exact Ĩ_nl, Ĩ'_nl) equals the numpy backend's
    (splines; ≤ 1e-10, measured 2e-14), and dtype="float32" is within 1e-5 (measured 1.5e-7)."""
    atoms = _slab(vacuum=0.0)
    numpy = _calculator(1.0, accuracy=1e-5)
    weights = RNG.normal(size=numpy.compute(atoms).values.shape)
    expected = numpy.vjp(atoms, weights)
    for backend, dtype, tolerance in (("reference", "float64", 1e-10), ("numpy", "float32", 1e-5)):
        other = _calculator(1.0, accuracy=1e-5, backend=backend, dtype=dtype)
        for got, want in zip(other.vjp(atoms, weights), expected, strict=True):
            assert got.dtype == np.dtype(dtype)
            np.testing.assert_allclose(got, want, rtol=0, atol=tolerance * np.abs(want).max())


@pytest.mark.slow
def test_cuda_device_code_matches_the_cpu():
    """The CUDA device's code (CuPy-strict stand-in: any host/device mixing raises) gives the
    CPU's VJP, JVP and dense gradients of a slab and a wire (≤ 1e-12)."""
    import strict_device

    from gplode.devices import CudaDevice

    device = CudaDevice(xp=strict_device.xp, round_shapes=False, memory=2**30)
    frames = [_frames()[0], _frames()[2]]
    hypers = dict(smearing=0.7, cutoff=1.5, max_radial=2, max_angular=2, radial_basis="monomial", accuracy=1e-5)
    cpu = gplode.LodeCalculator(exponent=2.5, backend="numpy", **hypers)
    gpu = gplode.LodeCalculator(exponent=2.5, backend="gpu", device=device, **hypers)
    weights = RNG.normal(size=cpu.compute(frames).values.shape)
    for got, expected in zip(gpu.vjp(frames, weights), cpu.vjp(frames, weights), strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    rate, strain = RNG.normal(size=(6, 3)), np.stack([_in_plane(f, RNG) for f in frames])
    expected = cpu.jvp(frames, rate, strain)
    np.testing.assert_allclose(gpu.jvp(frames, rate, strain), expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    dense, dense_cpu = (c.compute(frames, gradients=["positions", "strain"]).gradients for c in (gpu, cpu))
    for name in ("positions", "strain"):
        scale = np.abs(dense_cpu[name].values).max()
        np.testing.assert_allclose(dense[name].values, dense_cpu[name].values, rtol=0, atol=1e-12 * scale)
