"""Position and strain gradients of the free-space pair sum (gplode.methods.pair_sum).

1. ``PairRadialFunctions.evaluate_with_derivative`` against 4th-order central finite
   differences of ``evaluate`` on both sides of d_switch; F' does not jump at d_switch.
2. The dense pair derivatives ``pair_gradients``, assembled into the Jacobian of
   ``free_space_coefficients`` (neighbour and centre rows), against finite differences of the
   coefficients under moving one atom; the gradients of every coefficient sum to 0 over atoms.
3. ``free_space_vjp`` against the dense Jacobian contracted with random weights (species
   subsets, chunking); its strain against finite differences of L under r → r(1 + ε); rotation
   covariance of the position gradient (and strain) of rotation invariants.
"""

import functools

import ase
import numpy as np
import pytest

from gplode.basis import make_basis
from gplode.methods.pair_sum import PairRadialFunctions, free_space_coefficients, free_space_vjp, pair_gradients
from gplode.potentials import SmearedPowerLaw
from gplode.systems import as_systems

BASES = ["gto", "monomial"]
#: (σ, r₀) per basis: small tables (GTO ~1 s to build, monomial ~0.1 s), d_switch 16.7 Å (GTO)
#: and 13 Å (monomial)
HYPERS = {"gto": (0.7, 2.0), "monomial": (1.0, 3.0)}
MAX_RADIAL, MAX_ANGULAR = 4, 3
N_RADIAL = MAX_RADIAL + 1  # n = 0..max_radial
#: 4th-order central differences of the table: truncation ~h⁴ F⁽⁵⁾, round-off ~ε|F|/h
FD_STEP = 1e-3
#: relative to max|F'| over the samples of each side of d_switch (and each l). Measured
#: ≤ 4.4e-12 (near field ≤ 3.7e-12, far field ≤ 4.4e-12) for p ∈ {0, 1, 2.5, 6}, both bases.
DERIVATIVE_TOL = 1e-7
#: |F'(d_switch⁻) − F'(d_switch)| (the last double below d_switch against the series at it),
#: relative to max|F'| on [0, d_switch]: measured ≤ 1.2e-12 (p = 1, GTO); relative to
#: max_n|F'_nl(d_switch)| itself ≤ 4.4e-11 (p ≥ 1). p = 0: both sides ≤ 1e-22 of max|F'|.
JUMP_TOL = 1e-10
JUMP_LOCAL_TOL = 1e-9
#: FD step for the coefficients (Å); the Jacobian's tolerance relative to the largest entry of
#: each (centre, moved atom) block, plus the round-off of the differences, FD_NOISE × ε|c|/h
#: (measured ≤ 2.4 ε|c|/h). Measured, for blocks 1e7 × above that round-off: ≤ 3.2e-9 (p = 3,
#: far-field blocks, still round-off), ≤ 1.3e-11 for p ∈ {0, 4.5, 6} (near-field blocks only), both bases.
POSITION_STEP = 1e-3
JACOBIAN_TOL = 1e-6
FD_NOISE = 10.0
#: free_space_vjp against the dense Jacobian contracted with the same weights, relative to
#: max|∂L/∂r| (resp. max|∂L/∂ε|). Measured ≤ 2.9e-15 (chunk 250 000, 7 and 1 pairs).
VJP_TOL = 1e-12
#: strain against 4th-order central differences of L(r(1 + tE)), step 1e-4 (relative).
#: Measured ≤ 4e-13; translating the cluster by ~350 Å changes the strain by ≤ 1.9e-14.
STRAIN_STEP = 1e-4
STRAIN_TOL = 1e-6
#: rotation covariance and symmetry of an invariant's strain, relative to max|∂L/∂r| (max|∂L/∂ε|).
#: Measured ≤ 1.5e-15.
ROTATION_TOL = 1e-11


@functools.cache
def _table(exponent, name):
    """Pair tables are cached: building them is the expensive part."""
    sigma, cutoff = HYPERS[name]
    return PairRadialFunctions(SmearedPowerLaw(exponent, sigma), make_basis(name, cutoff, MAX_RADIAL, MAX_ANGULAR))


def _cluster(seed, n_compact, numbers=(1, 6, 8), far=True):
    """Random free-space cluster: ``n_compact`` atoms in a 4.5 Å box (min distance > 1.1 Å),
    and with ``far`` two atoms 2 Å apart at ~25 Å (beyond d_switch of both tables: the far-
    field series for their pairs with the compact atoms, the table for their own pair)."""
    rng = np.random.default_rng(seed)
    positions = []
    while len(positions) < n_compact:
        trial = rng.uniform(0.0, 4.5, 3)
        if all(np.linalg.norm(trial - q) > 1.1 for q in positions):
            positions.append(trial)
    positions = np.array(positions)
    if far:
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        other = np.cross(direction, rng.normal(size=3))
        other /= np.linalg.norm(other)
        base = positions.mean(axis=0) + 25.0 * direction
        positions = np.vstack([positions, base, base + 2.0 * other])
    types = np.array([numbers[i % len(numbers)] for i in range(positions.shape[0])])
    rng.shuffle(types)
    (system,) = as_systems(ase.Atoms(numbers=types, positions=positions, pbc=False))
    return system


def _moved(system, positions):
    (moved,) = as_systems(ase.Atoms(numbers=system.numbers, positions=positions, pbc=False))
    return moved


def _coefficients(system, species, pf, positions=None):
    if positions is not None:
        system = _moved(system, positions)
    center = np.linspace(0.3, 1.1, pf.basis.n_radial)  # no position dependence
    return free_space_coefficients(system, species, pf, center, 1.0, MAX_ANGULAR)


def _dense_jacobian(system, species, pf):
    r"""∂c^{(i)}_{anlm}/∂r_{kα} from pair_gradients, shape ``(n, n_species, lm, n_radial, n, 3)``:
    D[i, k] for k ∈ a, k ≠ i and the centre row −Σ_{j∈a, j≠i} D[i, j]."""
    n = system.n_atoms
    d = pair_gradients(system, pf, MAX_ANGULAR, np.arange(n))  # (i, j, 3, lm, n_radial)
    assert np.all(d[np.arange(n), np.arange(n)] == 0.0)
    onehot = (system.numbers[:, None] == np.asarray(species)[None, :]).astype(float)
    jac = np.einsum("ijxmr,ja->iamrjx", d, onehot)
    centre = -jac.sum(axis=4)  # (i, a, lm, n_radial, 3); the i-i entry of jac is 0
    jac[np.arange(n), ..., np.arange(n), :] += centre  # advanced indices first: (i, a, lm, n_radial, 3)
    return jac


def _fd_jacobian(system, species, pf, step=POSITION_STEP):
    """4th-order central differences of free_space_coefficients, same shape as _dense_jacobian."""
    n = system.n_atoms
    base = _coefficients(system, species, pf)
    out = np.empty((*base.shape, n, 3))
    for k in range(n):
        for alpha in range(3):
            values = []
            for shift in (2, 1, -1, -2):
                positions = system.positions.copy()
                positions[k, alpha] += shift * step
                values.append(_coefficients(system, species, pf, positions))
            out[..., k, alpha] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * step)
    return out


# --- 1. the pair functions' derivative ---------------------------------------------------


@pytest.mark.parametrize("name", BASES)
@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.5, 6.0])
def test_derivative_matches_finite_differences(exponent, name):
    pf = _table(exponent, name)
    rng = np.random.default_rng(1)
    h, ds = FD_STEP, pf.d_switch
    # stencils entirely on one side of d_switch
    sides = {"near": rng.uniform(0.1, ds - 3 * h, 300), "far": rng.uniform(ds + 3 * h, 3.0 * ds, 300)}
    for side, d in sides.items():
        values, derivative = pf.evaluate_with_derivative(d)
        assert values.shape == derivative.shape == (d.size, MAX_ANGULAR + 1, N_RADIAL)
        assert np.array_equal(values, pf.evaluate(d))
        fd = (-pf.evaluate(d + 2 * h) + 8 * pf.evaluate(d + h) - 8 * pf.evaluate(d - h) + pf.evaluate(d - 2 * h)) / (
            12 * h
        )
        if side == "far" and exponent == 0.0:  # the Gaussian's far field is exactly 0
            assert np.all(derivative == 0.0) and np.all(fd == 0.0)
            continue
        for l in range(MAX_ANGULAR + 1):
            scale = np.abs(derivative[:, l]).max()
            assert scale > 0
            error = np.abs(fd[:, l] - derivative[:, l]).max() / scale
            assert error <= DERIVATIVE_TOL, (exponent, name, side, l, error)


@pytest.mark.parametrize("name", BASES)
@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.5, 6.0])
def test_derivative_continuous_at_switch(exponent, name):
    pf = _table(exponent, name)
    ds = pf.d_switch
    _, derivative = pf.evaluate_with_derivative(np.array([np.nextafter(ds, 0.0), ds]))  # table | series
    _, inside = pf.evaluate_with_derivative(np.linspace(0.05, ds, 2001)[:-1])
    for l in range(MAX_ANGULAR + 1):
        jump = np.abs(derivative[0, l] - derivative[1, l]).max()
        assert jump <= JUMP_TOL * np.abs(inside[:, l]).max(), (exponent, name, l, jump)
        if exponent > 0:
            assert jump <= JUMP_LOCAL_TOL * np.abs(derivative[1, l]).max(), (exponent, name, l, jump)


# --- 2. dense pair derivatives ------------------------------------------------------------


def _check_jacobian(jac, fd, coefficients, step=POSITION_STEP):
    """Per (centre i, moved atom k): |error| ≤ JACOBIAN_TOL × max|∂c^{(i)}/∂r_k| plus the round-off
    of the differences, FD_NOISE × ε max|c^{(i)}| / h (far-field blocks can be far below it:
    ~1e-7 of the near ones at p = 6). Returns the worst error relative to the block scale
    among blocks 1e7 × above the round-off (where it is below 1e-7 of them)."""
    worst = 0.0
    for i in range(jac.shape[0]):
        noise = FD_NOISE * np.finfo(float).eps * np.abs(coefficients[i]).max() / step
        for k in range(jac.shape[-2]):
            scale = np.abs(jac[i, ..., k, :]).max()
            error = np.abs(jac[i, ..., k, :] - fd[i, ..., k, :]).max()
            assert error <= JACOBIAN_TOL * scale + noise, (i, k, error, scale, noise)
            if scale > 1e7 * noise:
                worst = max(worst, error / scale)
    return worst


@pytest.mark.parametrize("name", BASES)
@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.5, 3.0, 4.5, 6.0])
def test_pair_gradients_match_finite_differences(exponent, name):
    pf = _table(exponent, name)
    system = _cluster(2, 6)
    species = [1, 6, 8]
    jac = _dense_jacobian(system, species, pf)
    fd = _fd_jacobian(system, species, pf)
    worst = _check_jacobian(jac, fd, _coefficients(system, species, pf))
    assert worst <= JACOBIAN_TOL, worst
    # the far field was exercised: far atoms' derivatives from the series are non-zero for p > 0
    far_block = np.abs(jac[-1, ..., 0, :]).max()
    assert (far_block > 0) == (exponent > 0)


def test_pair_gradients_of_a_subset_of_centres():
    pf = _table(2.5, "monomial")
    system = _cluster(3, 5)
    full = pair_gradients(system, pf, MAX_ANGULAR, np.arange(system.n_atoms))
    some = pair_gradients(system, pf, MAX_ANGULAR, [4, 1])
    assert some.shape == (2, system.n_atoms, 3, (MAX_ANGULAR + 1) ** 2, N_RADIAL)
    np.testing.assert_array_equal(some, full[[4, 1]])
    # lower max_angular than the table: the leading channels
    low = pair_gradients(system, pf, 1, [4, 1])
    np.testing.assert_array_equal(low, some[:, :, :, :4])


def test_gradients_sum_to_zero():
    """Σ_j ∂c^{(i)}/∂r_j = 0: for the finite differences (a check of them) and for free_space_vjp,
    whose centre terms −Σ_j g_ij are accumulated separately from the neighbour terms."""
    pf = _table(4.5, "gto")
    system = _cluster(4, 6)
    species = [1, 6, 8]
    fd = _fd_jacobian(system, species, pf)
    assert np.abs(fd.sum(axis=-2)).max() <= 1e-9 * np.abs(fd).max()  # measured 1.2e-12
    rng = np.random.default_rng(4)
    weights = rng.normal(size=(system.n_atoms, len(species), (MAX_ANGULAR + 1) ** 2, N_RADIAL))
    positions, _ = free_space_vjp(system, species, pf, weights, MAX_ANGULAR)
    assert np.abs(positions.sum(axis=0)).max() <= 1e-13 * np.abs(positions).max()  # measured 2.8e-16


# --- 3. vector–Jacobian products and strain ----------------------------------------------


def _loss(system, species, pf, weights, positions=None):
    return float(np.sum(weights * _coefficients(system, species, pf, positions)))


@pytest.mark.parametrize(
    ("exponent", "name", "species"),
    [
        (2.5, "gto", [1, 6, 8]),
        (6.0, "monomial", [1, 8]),  # carbon: centres only, nobody's neighbour
        (1.0, "monomial", [6, 9]),  # H and O centres only; F listed but absent
        (0.0, "monomial", [1, 6, 8]),
    ],
)
def test_vjp_matches_dense_jacobian(exponent, name, species):
    pf = _table(exponent, name)
    system = _cluster(5, 7)
    rng = np.random.default_rng(5)
    weights = rng.normal(size=(system.n_atoms, len(species), (MAX_ANGULAR + 1) ** 2, N_RADIAL))
    jac = _dense_jacobian(system, species, pf)
    expected = np.einsum("iamr,iamrkx->kx", weights, jac)
    expected_strain = system.positions.T @ expected
    for chunk in (250_000, 7, 1):
        positions, strain = free_space_vjp(system, species, pf, weights, MAX_ANGULAR, chunk=chunk)
        assert np.abs(positions - expected).max() <= VJP_TOL * np.abs(expected).max(), chunk
        assert np.abs(strain - expected_strain).max() <= VJP_TOL * np.abs(expected_strain).max(), chunk
    # no atom of a listed species: nobody is a neighbour, the gradients are exactly 0
    lonely = free_space_vjp(system, [2], pf, weights[:, :1], MAX_ANGULAR)
    assert np.all(lonely[0] == 0.0) and np.all(lonely[1] == 0.0)


def test_vjp_rejects_wrong_weights_shape():
    pf = _table(1.0, "monomial")
    system = _cluster(6, 5, far=False)
    with pytest.raises(ValueError, match="weights must have shape"):
        free_space_vjp(system, [1, 6, 8], pf, np.zeros((5, 3, 4, N_RADIAL)), MAX_ANGULAR)


@pytest.mark.parametrize(("exponent", "name"), [(1.0, "gto"), (3.0, "monomial"), (6.0, "monomial")])
def test_strain_matches_finite_differences(exponent, name):
    pf = _table(exponent, name)
    system = _cluster(7, 6)
    species = [1, 6, 8]
    rng = np.random.default_rng(7)
    weights = rng.normal(size=(system.n_atoms, len(species), (MAX_ANGULAR + 1) ** 2, N_RADIAL))
    direction = rng.normal(size=(3, 3))  # not symmetric: the rotation part counts too
    _, strain = free_space_vjp(system, species, pf, weights, MAX_ANGULAR)
    h = STRAIN_STEP
    values = [
        _loss(system, species, pf, weights, system.positions @ (np.eye(3) + s * h * direction)) for s in (2, 1, -1, -2)
    ]
    fd = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * h)
    predicted = float(np.sum(strain * direction))
    assert abs(predicted - fd) <= STRAIN_TOL * np.abs(strain).sum(), (predicted, fd)
    # origin independence: the same cluster translated far away
    shifted = _moved(system, system.positions + np.array([300.0, -170.0, 55.0]))
    _, strain_shifted = free_space_vjp(shifted, species, pf, weights, MAX_ANGULAR)
    assert np.abs(strain_shifted - strain).max() <= 1e-12 * np.abs(strain).max()


def _rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


@pytest.mark.parametrize(("exponent", "name"), [(1.0, "monomial"), (2.5, "gto"), (6.0, "monomial")])
def test_rotation_covariance_of_invariants(exponent, name):
    """Rotating the cluster (r → r Qᵀ) rotates the gradient of an invariant as a vector and its
    strain as a tensor (Q S Qᵀ), and an invariant's strain is symmetric (no torque).

    Invariants: the l = 0 coefficients with random weights (linear), and a random quadratic
    form of each l's coefficients, Σ_i Σ_l Σ_m c^{(i)}_{·lm}ᵀ M_l c^{(i)}_{·lm}, whose gradient is
    free_space_vjp with weights (M_l + M_lᵀ) c (all l, through the chain rule)."""
    pf = _table(exponent, name)
    system = _cluster(8, 6)
    species = [1, 6, 8]
    q = _rotation(8)
    rotated = _moved(system, system.positions @ q.T)
    rng = np.random.default_rng(8)
    n_lm, n_channels = (MAX_ANGULAR + 1) ** 2, len(species) * N_RADIAL
    linear = np.zeros((system.n_atoms, len(species), n_lm, N_RADIAL))
    linear[:, :, 0] = rng.normal(size=(system.n_atoms, len(species), N_RADIAL))
    forms = [rng.normal(size=(n_channels, n_channels)) for _ in range(MAX_ANGULAR + 1)]

    def quadratic_weights(s):
        c = np.moveaxis(_coefficients(s, species, pf), 2, 1).reshape(s.n_atoms, n_lm, n_channels)  # (i, lm, an)
        w = np.empty_like(c)
        for l, m in enumerate(forms):
            w[:, l * l : (l + 1) ** 2] = c[:, l * l : (l + 1) ** 2] @ (m + m.T)
        return np.moveaxis(w.reshape(s.n_atoms, n_lm, len(species), N_RADIAL), 1, 2)

    for weights, weights_rotated in [(linear, linear), (quadratic_weights(system), quadratic_weights(rotated))]:
        positions, strain = free_space_vjp(system, species, pf, weights, MAX_ANGULAR)
        positions_r, strain_r = free_space_vjp(rotated, species, pf, weights_rotated, MAX_ANGULAR)
        scale = np.abs(positions).max()
        assert scale > 0
        assert np.abs(positions_r - positions @ q.T).max() <= ROTATION_TOL * scale
        assert np.abs(strain_r - q @ strain @ q.T).max() <= ROTATION_TOL * np.abs(strain).max()
        assert np.abs(strain - strain.T).max() <= ROTATION_TOL * np.abs(strain).max()
