r"""Slabs and wires by kernel truncation (gplode.truncated, gplode.methods.truncated).

a. The truncated kernel: p = 1 closed forms (slab: the Coulomb cutoff of Ismail-Beigi /
   Rozzi; wire: the cylinder cutoff), and for any p the box Fourier series of each row
   reproduces the exact plane/axial transforms of the smeared potential (independent 1D
   quadratures of SPEC §1's Gaussian superposition), including the G = 0 convention.
b. Features against exact lattice sums (p > 2 slab, p > 1 wire: real-space image sums of the
   free-space pair terms; p = 1 slab: a 2D Ewald sum of point charges for a neutral
   combination), independence of the vacuum, rotations, supercells, non-orthogonal boxes.
"""

import numpy as np
import pytest
from scipy import integrate
from scipy import special as sp

from gplode.potentials import SmearedPowerLaw
from gplode.truncated import TruncatedPowerLaw, smearing_margin

SIGMA, RADIUS = 0.6, 7.0


# ---------------------------------------------------------------------------------------
# a. kernels
# ---------------------------------------------------------------------------------------


def test_p1_closed_forms():
    """p = 1: slab 4π/k² [1 − e^{−GR}(cos qR − (q/G) sin qR)], G = 0 row 4π/q²[1 − cos qR − qR sin qR];
    wire 4π/k² [1 + GR J₁(GR) K₀(qR) − qR J₀(GR) K₁(qR)]; all times e^{−σ²k²/2}."""
    sigma, radius = 0.7, 6.0
    pot = SmearedPowerLaw(1.0, sigma)
    slab = TruncatedPowerLaw(pot, "slab", radius)
    g = np.array([0.3, 1.0, 2.5, 0.05, 1.0, 3.0])
    q = np.array([0.0, 0.7, 2.0, 5.0, 11.3, 0.1])
    k2 = g**2 + q**2
    expected = 4 * np.pi / k2 * (1 - np.exp(-g * radius) * (np.cos(q * radius) - q / g * np.sin(q * radius)))
    expected *= np.exp(-(sigma**2) * k2 / 2)
    # measured ≤ 1e-17 of the largest value
    np.testing.assert_allclose(slab.kspace(g, q), expected, rtol=1e-13, atol=1e-15 * expected.max())
    q0 = np.pi / radius * np.array([1, 2, 3, 8])
    row = 4 * np.pi / q0**2 * (1 - np.cos(q0 * radius) - q0 * radius * np.sin(q0 * radius))
    row *= np.exp(-(sigma**2) * q0**2 / 2)
    np.testing.assert_allclose(slab.kspace(np.zeros(4), q0), row, rtol=0, atol=1e-13 * np.abs(row).max())

    wire = TruncatedPowerLaw(pot, "wire", radius)
    q = np.array([0.5, 1.0, 2.0, 0.2, 3.0])
    g = np.array([0.0, 0.4, 2.0, 3.3, 7.0])
    k2 = q**2 + g**2
    expected = 4 * np.pi / k2 * (1 + g * radius * sp.j1(g * radius) * sp.k0(q * radius))
    expected -= 4 * np.pi / k2 * q * radius * sp.j0(g * radius) * sp.k1(q * radius)
    expected *= np.exp(-(sigma**2) * k2 / 2)
    # measured ≤ 4e-16 of the largest value
    np.testing.assert_allclose(wire.kspace(q, g), expected, rtol=0, atol=1e-13 * expected.max())


def _plane_transform(p, g, z):
    r"""∫ d²ρ e^{−iG·ρ} v_p(ρ, z) = (π/Γ(a)) ∫_0^{1/2σ²} t^{a−2} e^{−G²/4t − z²t} dt (G > 0)."""
    a = p / 2
    return np.array(
        [
            integrate.quad(
                lambda t, zz=zz: t ** (a - 2) * np.exp(-(g**2) / (4 * t) - zz**2 * t),
                0,
                1 / (2 * SIGMA**2),
                epsabs=0,
                epsrel=1e-13,
                limit=200,
            )[0]
            * np.pi
            / sp.gamma(a)
            for zz in z
        ]
    )


def _axial_transform(p, q, rho):
    r"""∫ dz e^{−iqz} v_p(ρ, z) = (√π/Γ(a)) ∫_0^{1/2σ²} t^{a−3/2} e^{−q²/4t − ρ²t} dt (q > 0)."""
    a = p / 2
    return np.array(
        [
            integrate.quad(
                lambda t, r=r: t ** (a - 1.5) * np.exp(-(q**2) / (4 * t) - r**2 * t),
                0,
                1 / (2 * SIGMA**2),
                epsabs=0,
                epsrel=1e-13,
                limit=200,
            )[0]
            * np.sqrt(np.pi)
            / sp.gamma(a)
            for r in rho
        ]
    )


@pytest.mark.parametrize("p", [0.6, 1.0, 1.5, 2.0, 2.5, 3.0, 4.5])
def test_slab_rows_reproduce_exact_plane_transforms(p):
    r"""In a box of height 2R, (1/L_z) Σ_q v̂^D(G, q) e^{iqz} is, for |z| ≤ R − δ, the in-plane
    Fourier transform of v_p at height z (G > 0), and for G = 0 the plane average with the
    G = 0 convention (:meth:`average`: exact for p > 2, zero in the own plane for p ≤ 2)."""
    slab = TruncatedPowerLaw(SmearedPowerLaw(p, SIGMA), "slab", RADIUS)
    q = np.pi / RADIUS * np.arange(-400, 401)
    z = np.linspace(0, RADIUS - smearing_margin(SIGMA, 1e-12), 7)
    basis = np.cos(q[None, :] * z[:, None]) / (2 * RADIUS)
    average = slab.average(z)
    # measured ≤ 1e-15 (row) and ≤ 4.3e-16 (G > 0)
    np.testing.assert_allclose(basis @ slab.kspace(np.zeros_like(q), q), average, atol=1e-13 * np.abs(average).max())
    expected = _plane_transform(p, 0.9, z)
    np.testing.assert_allclose(basis @ slab.kspace(np.full(q.shape, 0.9), q), expected, rtol=1e-12)
    if p <= 2:
        assert average[0] == 0.0
    # far away: the bare power law, 2π|z|^{2−p}/(p − 2) (−2π ln|z| at p = 2), plus for p ≤ 2 a
    # constant (the convention's): compared through differences for p ≤ 2
    far = np.array([30.0, 60.0])
    bare = -2 * np.pi * np.log(far) if p == 2 else 2 * np.pi * far ** (2 - p) / (p - 2)
    values = slab.average(far)
    if p > 2:
        np.testing.assert_allclose(values, bare, rtol=1e-12)
    else:
        np.testing.assert_allclose(np.diff(values), np.diff(bare), rtol=1e-12)


@pytest.mark.parametrize("p", [0.6, 1.0, 1.5, 3.0, 4.5])
def test_wire_rows_reproduce_exact_axial_transforms(p):
    r"""In a square transverse box of side 2R, (1/A_⊥) Σ_{G_⊥} v̂^D(q, G_⊥) e^{iG_⊥·ρ} is, for
    ρ ≤ R − δ, the axial Fourier transform of v_p (q > 0), and for q = 0 the line average
    with the G = 0 convention."""
    wire = TruncatedPowerLaw(SmearedPowerLaw(p, SIGMA), "wire", RADIUS)
    m = np.arange(-36, 37)
    gx, gy = (
        (np.pi / RADIUS * m[:, None] + 0 * m[None, :]).ravel(),
        (np.pi / RADIUS * m[None, :] + 0 * m[:, None]).ravel(),
    )
    g = np.hypot(gx, gy)
    rho = np.linspace(0, RADIUS - smearing_margin(SIGMA, 1e-12), 6)
    basis = np.cos(rho[:, None] * gx[None, :]) / (2 * RADIUS) ** 2
    average = wire.average(rho)
    # measured ≤ 6e-15 (q = 0) and ≤ 7.4e-16 (q > 0)
    np.testing.assert_allclose(basis @ wire.kspace(np.zeros_like(g), g), average, atol=1e-13 * np.abs(average).max())
    expected = _axial_transform(p, 0.8, rho)
    np.testing.assert_allclose(basis @ wire.kspace(np.full(g.shape, 0.8), g), expected, rtol=1e-12)


def test_p0_is_the_gaussian_density():
    """p = 0: nothing to truncate, v̂^D = v̂_0 (k = 0 included)."""
    pot = SmearedPowerLaw(0.0, SIGMA)
    k = np.array([0.0, 0.5, 3.0])
    for geometry in ("slab", "wire"):
        kernel = TruncatedPowerLaw(pot, geometry, RADIUS)
        np.testing.assert_array_equal(
            kernel.kspace(np.array([0.0, 0.3, 3.0]), np.sqrt(k**2 - [0, 0.09, 9])), pot.kspace(k)
        )
        assert kernel.zero_term() == pot.k0_value()


# ---------------------------------------------------------------------------------------
# b. features
# ---------------------------------------------------------------------------------------

import ase  # noqa: E402

from gplode.basis import make_basis  # noqa: E402
from gplode.lib.quadrature import gauss_legendre_panels  # noqa: E402
from gplode.lib.spherical_harmonics import real_spherical_harmonics  # noqa: E402
from gplode.methods.pair_sum import PairRadialFunctions  # noqa: E402
from gplode.methods.truncated import mixed_system, truncated_coefficients  # noqa: E402
from gplode.multipoles import multipole_coefficients  # noqa: E402
from gplode.systems import as_systems  # noqa: E402


def _slab(vacuum=20.0, tilt=(0.0, 0.0)):
    """A rattled 3-atom triclinic slab (normal z), third vector with in-plane ``tilt``."""
    cell = np.array([[3.1, 0.0, 0.0], [1.2, 2.8, 0.0], [tilt[0], tilt[1], vacuum]])
    positions = [[0.1, 0.2, 0.0], [1.6, 1.1, 1.3], [2.6, 1.9, 0.4]]
    return ase.Atoms("NaClCl", positions=positions, cell=cell, pbc=[True, True, False])


def _wire(side=20.0):
    """A rattled 3-atom wire along z (period 3.3 Å)."""
    cell = np.array([[side, 0.0, 0.0], [0.3, side, 0.0], [0.0, 0.0, 3.3]])
    positions = [[0.0, 0.0, 0.0], [1.2, 0.4, 1.1], [-0.3, 1.0, 2.2]]
    return ase.Atoms("NaClCl", positions=positions, cell=cell, pbc=[False, False, True])


def _setup(p, radial_basis="monomial"):
    return SmearedPowerLaw(p, 0.5), make_basis(radial_basis, 1.5, 2, 3)


def _window(d, radius, width):
    return 0.5 * sp.erfc((np.asarray(d) - radius) / width)


def _real_space_reference(atoms, potential, basis, periodic, radius=28.0, width=4.0):
    r"""Σ_{j,T} Y_lm(d̂) F_nl(d) w(d) over the lattice of the periodic vectors, plus per j the
    continuum (1/A or 1/L) ∫ Y_lm F_nl (1 − w) over the translations (Poisson: the smooth window
    makes the neglected G ≠ 0 terms ~e^{-G²W²/4} f(R) small; R = 7W: w(0) = 1 − erfc(7)/2); beyond
    X = R + 7W the multipole series of F (SPEC §5, exact there). The self term (j = i, T = 0) is
    c_center w(0), w_c = 1."""
    p, L, n_terms = potential.exponent, basis.max_angular, 8
    pair = PairRadialFunctions(potential, basis)
    outer = radius + 7.0 * width
    cell = np.array(atoms.cell[:])[periodic]
    measure = np.linalg.norm(np.cross(*cell)) if len(cell) == 2 else np.linalg.norm(cell[0])
    bounds = [int(np.ceil((outer + 10) / np.linalg.norm(v) * 1.5)) for v in cell]
    grid = np.stack(np.meshgrid(*[np.arange(-b, b + 1) for b in bounds], indexing="ij"), -1).reshape(-1, len(cell))
    shifts = grid @ cell
    positions, numbers = atoms.get_positions(), atoms.numbers
    species = np.unique(numbers)
    moments = [basis.moments(l, n_terms) * multipole_coefficients(p, l, n_terms)[None, :] for l in range(L + 1)]

    def far(vectors):  # Y_lm(d̂) F_nl(d) from the multipole series, (n, lm, n_radial)
        d = np.linalg.norm(vectors, axis=1)
        ylm = real_spherical_harmonics(vectors, L)
        out = np.zeros((len(d), (L + 1) ** 2, basis.n_radial))
        for l in range(L + 1):
            radial = 4 * np.pi * (d[:, None] ** -(p + l + 2 * np.arange(n_terms))[None, :]) @ moments[l].T
            out[:, l * l : (l + 1) ** 2] = ylm[:, l * l : (l + 1) ** 2, None] * radial[:, None, :]
        return out

    def near(vectors):
        d = np.linalg.norm(vectors, axis=1)
        ylm = real_spherical_harmonics(vectors, L)
        out = np.zeros((len(d), (L + 1) ** 2, basis.n_radial))
        for l in range(L + 1):
            out[:, l * l : (l + 1) ** 2] = ylm[:, l * l : (l + 1) ** 2, None] * pair(d, l)[:, None, :]
        return out

    if len(cell) == 2:  # continuum over the plane at height h: polar, ρ = h tan θ-free: ∫ 2πρ dρ
        normal = np.cross(*cell) / measure
        rho, w_rho = gauss_legendre_panels(np.linspace(0.0, outer, 200), 16)
        u, w_u = gauss_legendre_panels(np.linspace(0.0, 1.0 / outer, 8), 16)  # ρ = 1/u beyond X
        phi, w_phi = np.linspace(0, 2 * np.pi, 16, endpoint=False), np.full(16, 2 * np.pi / 16)
        in_plane = np.linalg.svd(cell)[2][:2]  # orthonormal in-plane directions
    else:
        axis = cell[0] / measure
        t, w_t = gauss_legendre_panels(np.linspace(-outer, outer, 400), 16)
        u, w_u = gauss_legendre_panels(np.linspace(0.0, 1.0 / outer, 8), 16)

    center = potential.center_term(basis)
    out = np.zeros((len(atoms), len(species), (L + 1) ** 2, basis.n_radial))
    for i in range(len(atoms)):
        for s, z in enumerate(species):
            for j in np.flatnonzero(numbers == z):
                offset = positions[j] - positions[i]
                vectors = offset + shifts
                d = np.linalg.norm(vectors, axis=1)
                keep = (d < outer) & (d > 1e-9)
                out[i, s] += np.einsum("k,kmn->mn", _window(d[keep], radius, width), near(vectors[keep]))
                if j == i:
                    out[i, s, 0] += center * _window(0.0, radius, width)
                if len(cell) == 2:
                    h = offset @ normal
                    directions = np.cos(phi)[:, None] * in_plane[0] + np.sin(phi)[:, None] * in_plane[1]
                    inner = (rho[:, None, None] * directions[None]).reshape(-1, 3) + h * normal
                    weights = (w_rho * rho * (1 - _window(np.hypot(rho, h), radius, width)))[:, None] * w_phi[None, :]
                    total = np.einsum("k,kmn->mn", weights.ravel(), near(inner))
                    outer_vectors = ((1.0 / u)[:, None, None] * directions[None]).reshape(-1, 3) + h * normal
                    weights = (w_u / u**3)[:, None] * w_phi[None, :]  # ρ dρ = du / u³
                    total += np.einsum("k,kmn->mn", weights.ravel(), far(outer_vectors))
                else:
                    across = offset - (offset @ axis) * axis
                    inner = across + t[:, None] * axis
                    weights = w_t * (1 - _window(np.linalg.norm(inner, axis=1), radius, width))
                    total = np.einsum("k,kmn->mn", weights, near(inner))
                    for sign in (1.0, -1.0):  # t = ±1/u beyond X
                        total += np.einsum("k,kmn->mn", w_u / u**2, far(across + sign / u[:, None] * axis))
                out[i, s] += total / measure
    return out


def _relative(values, expected):
    return float(np.abs(values - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("p", [3.0, pytest.param(6.0, marks=pytest.mark.slow)])
def test_slab_against_real_space_lattice_sum(p):
    """p > 2: the truncated box sum equals the absolutely convergent 2D lattice sum of the
    free-space pair terms (w_c = 1)."""
    potential, basis = _setup(p)
    atoms = _slab()
    values = truncated_coefficients(atoms, potential, basis, accuracy=1e-12)
    expected = _real_space_reference(atoms, potential, basis, [0, 1])
    error = _relative(values, expected)
    assert error <= 1e-11, error  # measured ≤ 2e-14


@pytest.mark.parametrize("p", [2.0, 4.5])
def test_wire_against_real_space_lattice_sum(p):
    """p > 1: the truncated box sum equals the 1D lattice sum of the free-space pair terms."""
    potential, basis = _setup(p)
    atoms = _wire()
    values = truncated_coefficients(atoms, potential, basis, accuracy=1e-12)
    expected = _real_space_reference(atoms, potential, basis, [2], radius=40.0, width=5.0)
    error = _relative(values, expected)
    assert error <= 1e-11, error  # measured ≤ 2e-14


def _ewald_2d(positions, charges, cell2, alpha=0.7, cut=6.0):
    r"""Potential at each point charge of a slab (bare 1/r, normal z) due to all others and
    their in-plane images: the 2D Ewald sum of Parry / Kawata–Mikami with the G = 0 term
    −(2π/A) Σ_j q_j [z erf(αz) + e^{−α²z²}/(α√π)] (neutral cell)."""
    area = abs(np.linalg.det(cell2[:, :2]))  # cell2: the two in-plane rows (3 columns)
    recip = 2 * np.pi * np.linalg.inv(cell2[:, :2]).T
    n = np.arange(-25, 26)
    grid = np.stack(np.meshgrid(n, n, indexing="ij"), -1).reshape(-1, 2)
    shifts = np.concatenate([grid @ cell2[:, :2], np.zeros((len(grid), 1))], axis=1)
    g = grid @ recip
    gnorm = np.linalg.norm(g, axis=1)
    g, gnorm = g[gnorm > 0], gnorm[gnorm > 0]
    g, gnorm = g[gnorm < 2 * alpha * cut], gnorm[gnorm < 2 * alpha * cut]
    out = np.zeros(len(positions))
    for i in range(len(positions)):
        for j in range(len(positions)):
            d = positions[j] + shifts - positions[i]
            r = np.linalg.norm(d, axis=1)
            keep = r > 1e-12
            out[i] += charges[j] * np.sum(sp.erfc(alpha * r[keep]) / r[keep])
            z = positions[j, 2] - positions[i, 2]
            plane = (positions[j] - positions[i])[:2]
            terms = sp.erfc(gnorm / (2 * alpha) + alpha * z) * np.exp(gnorm * z)
            terms += sp.erfc(gnorm / (2 * alpha) - alpha * z) * np.exp(-gnorm * z)
            out[i] += charges[j] * np.pi / area * np.sum(np.cos(g @ plane) / gnorm * terms)
            out[i] -= (
                charges[j]
                * 2
                * np.pi
                / area
                * (z * sp.erf(alpha * z) + np.exp(-((alpha * z) ** 2)) / (alpha * np.sqrt(np.pi)))
            )
        out[i] -= 2 * alpha / np.sqrt(np.pi) * charges[i]
    return out


def test_p1_slab_against_2d_ewald():
    """p = 1, neutral charged layers (a dipolar slab, so the G = 0 term matters): the ball average
    of Σ_a q_a V_a around each ion (own charge removed, w_c = 0; σ and r₀ small, so every other
    Gaussian is ≥ 8σ outside the ball and the average is the centre value) is the 2D Ewald
    potential of point charges. The convention's constants cancel in the neutral sum."""
    cell = np.array([[3.0, 0.0, 0.0], [0.9, 2.7, 0.0], [0.0, 0.0, 30.0]])
    positions = np.array([[0.0, 0.0, 0.0], [1.9, 1.35, 0.1], [0.2, 0.1, 2.3], [2.1, 1.5, 2.2]])
    atoms = ase.Atoms("NaClClNa", positions=positions, cell=cell, pbc=[True, True, False])
    charges = np.array([1.0, -1.0, -1.0, 1.0]) * np.array([1.0, 1.0, 1.0, 1.0])
    sigma, r0 = 0.18, 0.36
    potential, basis = SmearedPowerLaw(1.0, sigma), make_basis("monomial", r0, 0, 0)
    values = truncated_coefficients(atoms, potential, basis, accuracy=1e-13, center_atom_weight=0.0)
    q_species = np.array([1.0, -1.0])  # Na (11), Cl (17)
    average = (values[:, :, 0, 0] @ q_species) / np.sqrt(4 * np.pi * r0**3 / 3)
    expected = _ewald_2d(positions, charges, cell[:2])
    # measured 7e-15 (relative to the largest); the neglected overlaps (erfc(8/√2)) allow 1e-11
    np.testing.assert_allclose(average, expected, rtol=0, atol=1e-11 * np.abs(expected).max())
    # the 2D Ewald G = 0 term is not negligible here (a dipole layer)
    assert np.abs(np.ptp(expected)) > 0.1


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _real_wigner_matrices(rotation, max_angular, rng):
    """D^l with Y_l(R v) = D^l Y_l(v), by least squares on random points."""
    points = rng.normal(size=(200, 3))
    y, y_rotated = (
        real_spherical_harmonics(points, max_angular),
        real_spherical_harmonics(points @ rotation.T, max_angular),
    )
    return [
        np.linalg.lstsq(y[:, l * l : (l + 1) ** 2], y_rotated[:, l * l : (l + 1) ** 2], rcond=None)[0].T
        for l in range(max_angular + 1)
    ]


#: identities of the sums up to round-off and the accuracy-limited truncations (k-sphere,
#: smearing margin: accuracy 1e-10 here); box changes measured 1.4e-14 and 1.9e-14 (slab, p = 1)
INVARIANCE_TOLERANCE = 1e-10


@pytest.mark.parametrize(
    "geometry, p, radial_basis",
    [("slab", p, "monomial") for p in (0.0, 0.7, 1.0, 2.0, 3.5)]
    + [("slab", 1.5, "gto")]
    + [pytest.param("wire", p, "monomial", marks=pytest.mark.slow) for p in (0.0, 0.7, 1.0, 2.0, 3.5)],
)
def test_vacuum_box_and_rotation_independence(geometry, p, radial_basis):
    """The same features whatever the box: the smallest orthogonal one, the structure's own
    cell with a tilted (non-orthogonal) vacuum vector, twice the vacuum; and rotating the whole
    structure rotates the features by the real Wigner matrices."""
    potential, basis = _setup(p, radial_basis)
    if geometry == "slab":
        atoms, tilted, doubled = _slab(24.0, (1.7, -2.3)), None, _slab(48.0)
    else:
        atoms, doubled = _wire(16.0), _wire(32.0)
        tilted = atoms.copy()
        tilted.cell[0] = [16.0, 3.0, 1.4]  # not orthogonal to the axis nor to the other vector
    reference = truncated_coefficients(atoms, potential, basis, accuracy=1e-10)
    assert np.abs(reference[:, :, 1:]).max() > 1e-3 * np.abs(reference).max()
    for other in (atoms, doubled) + ((tilted,) if tilted is not None else ()):
        values = truncated_coefficients(other, potential, basis, accuracy=1e-10, box="cell")
        error = _relative(values, reference)
        assert error <= INVARIANCE_TOLERANCE, error
    rng = np.random.default_rng(5)
    rotation = _random_rotation(rng)
    rotated = atoms.copy()
    rotated.set_cell(np.array(atoms.cell[:]) @ rotation.T, scale_atoms=False)
    rotated.positions = atoms.positions @ rotation.T
    values = truncated_coefficients(rotated, potential, basis, accuracy=1e-10)
    expected = np.empty_like(reference)
    for l, wigner in enumerate(_real_wigner_matrices(rotation, basis.max_angular, rng)):
        block = slice(l * l, (l + 1) ** 2)
        expected[:, :, block] = np.einsum("mk,iakn->iamn", wigner, reference[:, :, block])
    error = _relative(values, expected)
    assert error <= INVARIANCE_TOLERANCE, error


@pytest.mark.parametrize("p", [1.0, pytest.param(2.5, marks=pytest.mark.slow)])
def test_supercell(p):
    """An in-plane 2×1 supercell of the slab (and a 2-fold wire) has the same features per atom."""
    potential, basis = _setup(p)
    for atoms, repeat in ((_slab(), (2, 1, 1)), (_wire(), (1, 1, 2))):
        values = truncated_coefficients(atoms, potential, basis, accuracy=1e-10)
        bigger = truncated_coefficients(atoms.repeat(repeat), potential, basis, accuracy=1e-10)
        error = _relative(bigger, np.concatenate([values, values]))
        assert error <= INVARIANCE_TOLERANCE, error


def test_box_rule_is_enforced():
    """A box below 2 × (thickness + basis reach + smearing margin) is refused; wrong pbc too."""
    atoms = _slab(5.0)
    with pytest.raises(ValueError, match="box's height"):
        mixed_system(as_systems(atoms)[0], reach=1.5, margin=3.0, box="cell")
    atoms.pbc = [True, True, True]
    with pytest.raises(ValueError, match="one or two periodic"):
        mixed_system(as_systems(atoms)[0], reach=1.5, margin=3.0)
