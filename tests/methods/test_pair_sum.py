"""Free-space (non-periodic) LODE coefficients: the pair sum of docs/conventions.md and the multipole
asymptotics of docs/conventions.md, "Multipole asymptotics".

1. The calculator's pair sum against a brute-force 3D quadrature of the definition
   c = ∫ d³x R̃_nl(|x|) Y_lm(x̂) V_a(r_i + x) on a water dimer (the quadrature is shown to
   be converged by doubling its nodes).
2. The multipole series against the direct 2D quadrature of F_nl(d) for a dimer at 8–60 Å.
3. The log–log slope of |c_l|(d) at 60 Å is −(p + l).
4. Properties of F_nl: continuity across d_switch, Chebyshev table vs quadrature, the
   d → 0 limits, the p = 0 (Gaussian overlap) closed form and decay.
5. An isolated atom, and permutation / parity symmetry of a two-atom system.
"""

import functools

import ase
import ase.build
import numpy as np
import pytest
from ase.collections import s22
from scipy import integrate
from scipy import special as sp

import gplode
from gplode.lib.quadrature import gauss_legendre_panels
from gplode.lib.spherical_harmonics import real_spherical_harmonics
from gplode.methods.pair_sum import PairRadialFunctions, free_space_coefficients
from gplode.multipoles import asymptotic_radial, multipole_coefficients
from gplode.systems import as_systems

BASES = ["gto", "monomial"]

# --- 1. brute-force quadrature on the water dimer ----------------------------------------
#: small hypers; σ = 0.5 Å is the sharpest smearing of the brief's range (hardest for the
#: brute-force quadrature), r₀ = 2.5 Å puts the other monomer partly inside the basis
DIMER_HYPERS = dict(smearing=0.5, cutoff=2.5, max_radial=2, max_angular=2)
DIMER_EXPONENTS = [1.0, 3.0, 6.0]
#: product rule of the brute-force quadrature: radial panels (Å) ≤ 0.4 inside r₀, ≤ 0.5 up to
#: 5 Å, ≤ 1.5 beyond (GTO tail), 12 Gauss–Legendre nodes each; 32 Gauss–Legendre nodes in
#: cosθ × 64 uniform φ. Measured: this grid already agrees with the calculator to ~4e-15
#: relative; half the nodes per axis still gives 2e-10.
BRUTE_GRID = dict(panel_scale=1.0, order=12, n_theta=32, n_phi=64)
#: relative to max |c|: the brute-force grid is converged to ≲1e-14 (doubling every axis
#: changes it by < BRUTE_TOL / 10, checked in test_brute_force_quadrature_is_converged); the
#: pair sum's own error (Chebyshev table of a 2D quadrature) is ~1e-14. Measured ≤ 4e-15.
BRUTE_TOL = 1e-11


def _water_dimer():
    atoms = s22["Water_dimer"]
    assert not any(atoms.pbc)
    return atoms


@functools.cache
def _calculator(exponent, basis, smearing, cutoff, max_radial, max_angular, center_atom_weight=1.0):
    """Calculators are cached: building the pair tables is the expensive part."""
    return gplode.LodeCalculator(
        exponent=exponent,
        smearing=smearing,
        cutoff=cutoff,
        max_radial=max_radial,
        max_angular=max_angular,
        radial_basis=basis,
        center_atom_weight=center_atom_weight,
        backend="reference",
    )


def _smeared_potential(p, sigma, r):
    """v_p(r) = γ(p/2, r²/2σ²) / (Γ(p/2) r^p) from scipy's regularised P(a, x), r > 0.

    Written independently of gplode.potentials (which test_potentials checks on its own).
    """
    assert np.min(r) > 0
    return sp.gammainc(0.5 * p, r**2 / (2 * sigma**2)) / r**p


def _spherical_grid(cutoff, support, panel_scale, order, n_theta, n_phi):
    """Radial Gauss–Legendre panels × (Gauss–Legendre in cosθ) × (uniform φ).

    Radial panels end exactly at r₀ (the monomial basis jumps there) and reach the GTO
    support radius; ``panel_scale`` multiplies the number of panels of every stretch.
    """
    stretches = [(0.0, cutoff, 0.4), (cutoff, max(5.0, cutoff), 0.5), (max(5.0, cutoff), support, 1.5)]
    edges = [np.zeros(1)]
    for a, b, width in stretches:
        if b > a:
            n = int(np.ceil((b - a) / width * panel_scale))
            edges.append(np.linspace(a, b, n + 1)[1:])
    r, wr = gauss_legendre_panels(np.concatenate(edges), order)
    u, wu = np.polynomial.legendre.leggauss(n_theta)
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    sin = np.sqrt(1 - u**2)
    directions = np.stack(
        [sin[:, None] * np.cos(phi)[None, :], sin[:, None] * np.sin(phi)[None, :], np.repeat(u[:, None], n_phi, 1)],
        axis=-1,
    ).reshape(-1, 3)
    w_angle = np.repeat(wu, n_phi) * (2 * np.pi / n_phi)
    return r, wr, directions, w_angle


def _brute_force(atoms, center, p, sigma, bases, max_angular, grid):
    r"""c^{(i)}_{anlm} = ∫ d³x R̃_nl(|x|) Y_lm(x̂) V_a(r_i + x), V_a = Σ_{j∈a} v_p(|x + r_i − r_j|).

    The centre atom's own potential is included (w_c = 1). Returns, per basis name, an
    array (n_species, (L+1)², n_radial) with species sorted by atomic number.
    """
    support = max(b.support_radius for b in bases.values())
    cutoff = min(b.cutoff for b in bases.values())
    r, wr, directions, w_angle = _spherical_grid(cutoff, support, **grid)
    ylm = real_spherical_harmonics(directions, max_angular) * w_angle[:, None]
    positions, numbers = atoms.positions, atoms.numbers
    species = np.unique(numbers)
    out = {name: np.zeros((species.size, (max_angular + 1) ** 2, b.n_radial)) for name, b in bases.items()}
    for a_index, a in enumerate(species):
        potential = np.zeros((r.size, directions.shape[0]))
        for j in np.flatnonzero(numbers == a):
            x = r[:, None, None] * directions[None, :, :] - (positions[j] - positions[center])
            potential += _smeared_potential(p, sigma, np.linalg.norm(x, axis=-1))
        angular = potential @ ylm  # (n_r, (L+1)²)
        for name, basis in bases.items():
            for l in range(max_angular + 1):
                radial = basis.evaluate(r, l) * (wr * r**2)[:, None]
                out[name][a_index, l * l : (l + 1) ** 2] = angular[:, l * l : (l + 1) ** 2].T @ radial
    return out


@functools.cache
def _brute_force_dimer(p, center, grid_key):
    grid = dict(grid_key)
    atoms = _water_dimer()
    bases = {name: _calculator(p, name, **DIMER_HYPERS).basis for name in BASES}
    return _brute_force(atoms, center, p, DIMER_HYPERS["smearing"], bases, DIMER_HYPERS["max_angular"], grid)


def _grid_key(grid):
    return tuple(sorted(grid.items()))


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("p", DIMER_EXPONENTS)
def test_pair_sum_matches_brute_force_quadrature(p, basis):
    atoms = _water_dimer()
    features = _calculator(p, basis, **DIMER_HYPERS).compute(atoms)
    assert features.neighbor_types.tolist() == [1, 8]
    expected = np.stack([_brute_force_dimer(p, i, _grid_key(BRUTE_GRID))[basis] for i in range(len(atoms))])
    scale = np.abs(expected).max()
    np.testing.assert_allclose(features.values, expected, rtol=0, atol=BRUTE_TOL * scale)


@pytest.mark.parametrize("p", DIMER_EXPONENTS)
def test_brute_force_quadrature_is_converged(p):
    # atom 2 is the H-bond donor H: the other monomer's O is 1.95 Å away, inside the basis,
    # so its potential is the sharpest feature any centre sees
    center = 2
    base = _brute_force_dimer(p, center, _grid_key(BRUTE_GRID))
    doubled_grid = dict(BRUTE_GRID, panel_scale=2 * BRUTE_GRID["panel_scale"])
    doubled_grid.update(n_theta=2 * BRUTE_GRID["n_theta"], n_phi=2 * BRUTE_GRID["n_phi"])
    doubled = _brute_force_dimer(p, center, _grid_key(doubled_grid))
    for name in BASES:
        scale = np.abs(doubled[name]).max()
        # a tenth of the comparison's tolerance: the quadrature is not what limits test 1
        np.testing.assert_allclose(base[name], doubled[name], rtol=0, atol=0.1 * BRUTE_TOL * scale)


# --- shared hypers for the pair functions (tests 2–4) ------------------------------------
#: σ = 1 Å, r₀ = 3 Å, n ≤ 3, l ≤ 4. d_switch = support + 10σ is 24.6 Å (GTO) and 13 Å
#: (monomial); the series is checked from support + 8σ (22.6 Å / 11 Å) on, so a band
#: below d_switch is a genuine comparison of the series with the tabulated near field.
PAIR_HYPERS = dict(smearing=1.0, cutoff=3.0, max_radial=3, max_angular=4)
ASYMPTOTIC_EXPONENTS = [1.0, 2.0, 6.0]
#: every term of the series (40 is the default of asymptotic_radial, what the calculator
#: uses); terms shrink like (r/d)² so at d ≥ 11 Å the truncation is far below round-off
N_TERMS = 40


@functools.cache
def _pair_functions(p, basis):
    calc = _calculator(p, basis, **PAIR_HYPERS)
    return PairRadialFunctions(calc.potential, calc.basis)


# --- 2. multipole series vs the direct quadrature ----------------------------------------
#: relative to max_n |F_nl(d)| at each d. The quadrature of F_nl at d ≫ r₀ cancels ~(d/r₀)^l
#: of its magnitude (the l-th Legendre moment of a nearly constant integrand): ε (d/r₀)^l
#: ≈ 2e-16 × 20⁴ ≈ 3e-11 at d = 60, l = 4. Measured max 8e-11 (l = 4, p = 1, d = 60).
SERIES_TOL = 1e-9
SERIES_DISTANCES = np.geomspace(8.0, 60.0, 16)


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("p", ASYMPTOTIC_EXPONENTS)
def test_multipole_series_matches_quadrature(p, basis):
    pf = _pair_functions(p, basis)
    sigma = PAIR_HYPERS["smearing"]
    d_valid = pf.basis.support_radius + 8 * sigma
    # add two distances in [support + 8σ, d_switch): there the calculator itself still
    # uses the table, so the series meets an independent near-field value
    d = np.unique(np.concatenate([SERIES_DISTANCES, [d_valid + 0.5 * sigma, d_valid + 1.5 * sigma]]))
    assert np.any((d >= d_valid) & (d < pf.d_switch))
    quadrature = pf._quadrature(d)  # (n_d, L+1, n_radial), direct 2D quadrature at any d
    checked = d >= d_valid
    assert np.all(checked[d >= 30.0])
    for l in range(PAIR_HYPERS["max_angular"] + 1):
        exact = quadrature[:, l]
        scale = np.abs(exact).max(axis=1)
        series = asymptotic_radial(d, p, pf.basis, l, N_TERMS)
        error = np.abs(series - exact).max(axis=1) / scale
        assert np.all(error[checked] <= SERIES_TOL), (l, d[checked], error[checked])
        # what the calculator uses (table below d_switch, series beyond) at every d in [8, 60]
        used = pf(d, l)
        error = np.abs(used - exact).max(axis=1) / scale
        assert np.all(error <= SERIES_TOL), (l, d, error)


@pytest.mark.parametrize("basis", BASES)
def test_coulomb_series_has_a_single_term(basis):
    # for p = 1, A_lk ∝ ((p-1)/2)_k = (0)_k = 0 for k ≥ 1: ordinary Laplace multipoles, one
    # term per l
    pf = _pair_functions(1.0, basis)
    d = np.array([15.0, 30.0, 60.0])
    for l in range(PAIR_HYPERS["max_angular"] + 1):
        assert np.all(multipole_coefficients(1.0, l, N_TERMS)[1:] == 0.0)
        one, many = asymptotic_radial(d, 1.0, pf.basis, l, 1), asymptotic_radial(d, 1.0, pf.basis, l, N_TERMS)
        # the same non-zero products, summed in a different order by the matrix product
        # (monomial n ≥ 1 entries are round-off zeros: orthogonal to r^l)
        np.testing.assert_allclose(one, many, rtol=0, atol=1e-14 * np.abs(many).max())


# --- 3. decay exponent of each channel -----------------------------------------------------
SLOPE_DISTANCE = 60.0
SLOPE_STEP = 1e-3


def _heteronuclear_dimer(d):
    direction = np.array([0.48, -0.6, 0.0])
    direction[2] = np.sqrt(1 - direction @ direction)
    return ase.Atoms("NaCl", positions=[np.zeros(3), d * direction], pbc=False)


def _channel_norms(calc, d):
    """|c_l| = (Σ_{n,m} c_nlm²)^{1/2} of atom 0 (Na) for the neighbour species Cl, l = 0..L."""
    features = calc.compute(_heteronuclear_dimer(d))
    assert features.neighbor_types.tolist() == [11, 17]
    return np.array([np.linalg.norm(features.block(l)[0, 1]) for l in range(calc.hypers.max_angular + 1)])


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("p", ASYMPTOTIC_EXPONENTS)
def test_log_log_slope_at_60_angstrom(p, basis):
    calc = _calculator(p, basis, **PAIR_HYPERS)
    h = SLOPE_STEP
    upper = _channel_norms(calc, SLOPE_DISTANCE * (1 + h))
    lower = _channel_norms(calc, SLOPE_DISTANCE * (1 - h))
    slope = (np.log(upper) - np.log(lower)) / (np.log1p(h) - np.log1p(-h))
    expected = -(p + np.arange(calc.hypers.max_angular + 1))
    # 1%: the k = 1 correction is ~A_l1 M_1 / (A_l0 M_0 d²) ≲ 0.3% at 60 Å, and the
    # centred difference adds O(h²) = 1e-6. Measured ≤ 0.56% (GTO, p = 6, l = 0).
    np.testing.assert_allclose(slope, expected, rtol=1e-2)
    if p == 1.0:
        # Laplace multipoles are exact outside the basis: c_l ∝ d^-(1+l) to round-off
        # (log differences of ~1e-16 relative values over a step of 2e-3: ~1e-13)
        np.testing.assert_allclose(slope, expected, rtol=1e-10)


# --- 4. properties of the pair functions --------------------------------------------------
PROPERTY_EXPONENTS = [1.0, 2.0, 3.5, 6.0]


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("p", PROPERTY_EXPONENTS)
def test_continuous_across_switch(p, basis):
    pf = _pair_functions(p, basis)
    left_d = np.array([np.nextafter(pf.d_switch, 0.0)])
    right_d = np.array([pf.d_switch])
    for l in range(PAIR_HYPERS["max_angular"] + 1):
        left, right = pf(left_d, l)[0], pf(right_d, l)[0]
        # left: Chebyshev table of the quadrature, right: multipole series. Both are
        # round-off accurate except the quadrature's cancellation ~ε (d/r₀)^l at l = 4;
        # measured ≤ 7e-13 relative to max_n |F_nl|
        np.testing.assert_allclose(left, right, rtol=0, atol=5e-12 * np.abs(right).max())


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("p", PROPERTY_EXPONENTS)
def test_chebyshev_table_matches_quadrature(p, basis):
    pf = _pair_functions(p, basis)
    rng = np.random.default_rng(12345)
    # random distances plus the panel edges (where the interpolation error peaks)
    d = np.concatenate([rng.uniform(0.0, pf.d_switch, 25), pf.edges[1:-1], [np.nextafter(pf.d_switch, 0.0)]])
    quadrature = pf._quadrature(d)
    for l in range(PAIR_HYPERS["max_angular"] + 1):
        table = pf(d, l)
        # degree-20 Chebyshev panels ≤ 2σ wide resolve F to round-off; measured ≤ 4e-15
        np.testing.assert_allclose(table, quadrature[:, l], rtol=0, atol=1e-12 * np.abs(quadrature[:, l]).max())


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("p", PROPERTY_EXPONENTS)
def test_short_distance_limits(p, basis):
    pf = _pair_functions(p, basis)
    calc = _calculator(p, basis, **PAIR_HYPERS)
    scale = np.abs(pf._quadrature(np.linspace(0.1, pf.d_switch, 12))).max(axis=(0, 2))  # per l
    # l = 0: F_n0(0+) = 4π ∫ r² R̃_n0 v_p dr = √(4π) c_center; the table is smooth at 0,
    # round-off of both quadratures (measured 3e-15)
    f0 = pf(np.array([1e-9]), 0)[0]
    np.testing.assert_allclose(f0, np.sqrt(4 * np.pi) * calc.potential.center_term(calc.basis), rtol=1e-12)
    delta = 0.01 * PAIR_HYPERS["smearing"]
    for l in range(1, PAIR_HYPERS["max_angular"] + 1):
        # l > 0 vanishes at d = 0 (the l-th Legendre moment of a constant) ...
        tiny = pf(np.array([1e-7]), l)[0]
        assert np.all(np.abs(tiny) <= 1e-6 * scale[l]), (l, tiny, scale[l])
        # ... like d^l: F(2δ)/F(δ) = 2^l (1 + O(δ²/σ²)); δ = 0.01σ makes the correction
        # ~1e-4 (measured ≤ 1.8e-4), and F(δ) ~ 1e-8 × scale at l = 4 leaves the table's
        # round-off at ~1e-7
        ratio = pf(np.array([2 * delta]), l)[0] / pf(np.array([delta]), l)[0]
        np.testing.assert_allclose(ratio, 2.0**l, rtol=2e-3)


def _gaussian_overlap_reference(basis, sigma, d, l):
    r"""p = 0: F_nl(d) = 4π (πσ²)^{-3/4} ∫ r² R̃_nl(r) e^{-(r²+d²)/2σ²} i_l(rd/σ²) dr.

    From ∫_{-1}^{1} P_l(u) e^{zu} du = 2 i_l(z); with e^{-(r²+d²)/2σ²} i_l(z) =
    e^{-(r-d)²/2σ²} √(π/2z) I_{l+1/2}(z) e^{-z} (scipy's ive) nothing overflows.
    Composite Gauss–Legendre, panels ≤ σ/4, 20 nodes: exact to round-off for these
    smooth integrands.
    """
    n_panels = int(np.ceil(basis.support_radius / (0.25 * sigma)))
    r, w = gauss_legendre_panels(np.linspace(0.0, basis.support_radius, n_panels + 1), 20)
    radial = (w * r**2)[:, None] * basis.evaluate(r, l)  # (n_r, n_radial)
    z = r[None, :] * d[:, None] / sigma**2
    kernel = np.exp(-((r[None, :] - d[:, None]) ** 2) / (2 * sigma**2)) * np.sqrt(np.pi / (2 * z)) * sp.ive(l + 0.5, z)
    return 4 * np.pi * (np.pi * sigma**2) ** -0.75 * kernel @ radial


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_gaussian_overlap_for_p0(basis, sigma):
    calc = _calculator(0.0, basis, sigma, 3.0, 3, 4)
    pf = PairRadialFunctions(calc.potential, calc.basis)
    d = np.concatenate([np.linspace(0.05, pf.d_switch, 40, endpoint=False), [np.nextafter(pf.d_switch, 0.0)]])
    for l in range(5):
        expected = _gaussian_overlap_reference(calc.basis, sigma, d, l)
        table = pf(d, l)
        # two round-off accurate evaluations of the same integral
        np.testing.assert_allclose(table, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
        # decays to 0: at d_switch = support + 10σ the overlap is ≲ e^{-50} of its maximum
        # (measured ≤ 1e-23), and beyond it the calculator returns exactly 0
        assert np.all(np.abs(table[-1]) <= 1e-18 * np.abs(expected).max())
        far = pf(np.array([pf.d_switch, 2 * pf.d_switch, 100.0]), l)
        assert np.all(far == 0.0)


# --- 5. isolated atom and two-atom symmetry ------------------------------------------------
SINGLE_CASES = [(p, basis, w) for p in [1.0, 6.0] for basis in BASES for w in [1.0, 0.37]]


def _center_term_reference(calc):
    """c_center_n = √(4π) ∫ r² R̃_n0(r) v_p(r) dr by adaptive quadrature (scipy.quad)."""
    sigma, p = calc.hypers.smearing, calc.hypers.exponent
    out = []
    for n in range(calc.basis.n_radial):

        def integrand(r, n=n):
            return r**2 * calc.basis.evaluate(np.array([r]), 0)[0, n] * _smeared_potential(p, sigma, np.array([r]))[0]

        # quad's Gauss–Kronrod nodes never touch r = 0; the integrand is smooth
        value, _ = integrate.quad(integrand, 0.0, calc.basis.support_radius, epsabs=0, epsrel=1e-12, limit=200)
        out.append(np.sqrt(4 * np.pi) * value)
    return np.array(out)


@pytest.mark.parametrize(("p", "basis", "weight"), SINGLE_CASES)
def test_isolated_atom(p, basis, weight):
    calc = gplode.LodeCalculator(
        exponent=p,
        radial_basis=basis,
        center_atom_weight=weight,
        neighbor_types=[1, 8],
        backend="reference",
        **PAIR_HYPERS,
    )
    atoms = ase.Atoms("O", positions=[[0.3, -1.2, 2.0]], pbc=False)
    values = calc.compute(atoms).values
    assert values.shape == (1, 2, 25, 4)
    # quad at epsrel 1e-12 vs the calculator's composite Gauss–Legendre: both near round-off
    # (measured ≤ 3e-14)
    np.testing.assert_allclose(values[0, 1, 0], weight * _center_term_reference(calc), rtol=1e-11)
    rest = values.copy()
    rest[0, 1, 0] = 0.0
    assert np.all(rest == 0.0)


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("distance", [2.3, 40.0])  # inside the basis (table) / far (series)
def test_two_atoms_swap_and_parity(basis, distance):
    calc = _calculator(6.0, basis, **PAIR_HYPERS)
    dimer = _heteronuclear_dimer(distance)
    swapped = dimer[[1, 0]]
    values = calc.compute(dimer).values
    values_swapped = calc.compute(swapped).values
    # relabelling atoms permutes rows and nothing else: the same operations on the same
    # numbers, so equal up to the order of floating-point additions
    np.testing.assert_allclose(values_swapped, values[[1, 0]], rtol=1e-14, atol=1e-300)
    # Na sees Cl at +d, Cl sees Na at -d: same F_nl(d), Y_lm(-d̂) = (-1)^l Y_lm(d̂)
    na, cl = 0, 1  # neighbor_types [11, 17]
    parity = np.concatenate([np.full(2 * l + 1, (-1.0) ** l) for l in range(PAIR_HYPERS["max_angular"] + 1)])
    np.testing.assert_allclose(values[1, na], parity[:, None] * values[0, cl], rtol=1e-13, atol=0)
    # and each atom's own channel is only its centre term on l = 0
    center = calc.potential.center_term(calc.basis)
    for row, own in ((0, na), (1, cl)):
        np.testing.assert_allclose(values[row, own, 0], center, rtol=1e-14)
        assert np.all(values[row, own, 1:] == 0.0)


def test_centres_subset():
    """``centres=``: the rows of those atoms, in that order, as in the whole computation (the
    same sums: equal to round-off), centre terms included (w_c ≠ 1), chunks of a few centres."""
    calc = _calculator(1.0, "gto", **PAIR_HYPERS)
    pipeline = calc.pipeline
    system = as_systems(ase.build.molecule("CH3CH2OH"))[0]  # 9 atoms, three species
    species = np.array([1, 6, 8])
    args = (system, species, pipeline.pair_table(), pipeline.center_term, 0.4, PAIR_HYPERS["max_angular"])
    everything = free_space_coefficients(*args)
    centres = np.array([7, 0, 3])
    rows = free_space_coefficients(*args, chunk=20, centres=centres)
    np.testing.assert_allclose(rows, everything[centres], rtol=1e-14, atol=1e-15 * np.abs(everything).max())
