"""Radial bases: orthonormality, k-space integrals, moments, centre term."""

import mpmath
import numpy as np
import pytest
from scipy import special

from gplode.basis import GtoBasis, MonomialBasis, make_basis
from gplode.lib.quadrature import gauss_legendre_panels
from gplode.potentials import SmearedPowerLaw

mpmath.mp.dps = 30
BASES = [GtoBasis(4.0, 5, 4), MonomialBasis(4.0, 5, 4), GtoBasis(2.0, 8, 2), MonomialBasis(2.5, 7, 6)]
IDS = ["gto-4-5", "monomial-4-5", "gto-2-8", "monomial-2.5-7"]


def _fine_rule(basis):
    return gauss_legendre_panels(np.linspace(0, basis.support_radius, 600), 20)


@pytest.mark.parametrize("basis", BASES, ids=IDS)
def test_orthonormal(basis):
    r, w = _fine_rule(basis)
    tolerance = 2e-13
    if isinstance(basis, GtoBasis):
        # Löwdin S^{-1/2} amplifies round-off by the overlap's condition number
        # (1e3 for max_radial 5, 2e5 for max_radial 8, as in featomic's basis)
        primitive_overlap = np.linalg.inv((basis.coefficients / basis.norms) @ (basis.coefficients / basis.norms).T)
        tolerance = max(tolerance, 1e-15 * np.linalg.cond(primitive_overlap))
    for l in range(basis.max_angular + 1):
        R = basis.evaluate(r, l)
        gram = (R * (w * r**2)[:, None]).T @ R
        np.testing.assert_allclose(gram, np.eye(basis.n_radial), atol=tolerance)


def test_gto_primitives_match_featomic_definition():
    basis = GtoBasis(4.0, 5, 0)
    n = np.arange(6)
    np.testing.assert_allclose(basis.sigmas, 4.0 * np.maximum(np.sqrt(n), 1) / 6)


def test_monomial_first_function_is_normalised_multipole_weight():
    r0, basis = 2.5, MonomialBasis(2.5, 3, 4)
    r = np.linspace(0.1, 2.4, 7)
    for l in range(5):
        np.testing.assert_allclose(
            basis.evaluate(r, l)[:, 0], np.sqrt((2 * l + 3) / r0 ** (2 * l + 3)) * r**l, rtol=1e-13
        )
    assert np.all(basis.evaluate(np.array([2.5001, 4.0]), 1) == 0)


def test_monomial_functions_are_polynomials_of_r_l_plus_2n():
    """R̃_nl lies in span{r^{l+2k}, k ≤ n}: fit exactly with those powers."""
    basis = MonomialBasis(1.7, 4, 3)
    r = np.linspace(0.05, 1.7, 40)
    for l in range(4):
        R = basis.evaluate(r, l)
        for n in range(5):
            powers = np.stack([r ** (l + 2 * k) for k in range(n + 1)], 1)
            coef, *_ = np.linalg.lstsq(powers, R[:, n], rcond=None)
            np.testing.assert_allclose(powers @ coef, R[:, n], atol=1e-11)


@pytest.mark.parametrize("basis", BASES, ids=IDS)
def test_kspace_integral_against_quadrature(basis):
    r, w = _fine_rule(basis)
    k = np.array([0.0, 1e-4, 0.3, 1.1, 2.9, 6.0, 11.0])
    for l in range(0, basis.max_angular + 1, 2):
        expected = special.spherical_jn(l, k[:, None] * r[None, :]) @ ((w * r**2)[:, None] * basis.evaluate(r, l))
        scale = np.abs(expected).max()
        # 12,000-node composite rule converged to round-off; analytic ₁F₁ (GTO) and
        # k-adaptive Gauss–Legendre (monomial) must agree to 1e-12 of the largest value
        np.testing.assert_allclose(basis.kspace_integral(k, l), expected, atol=1e-12 * scale)


def test_gto_kspace_integral_against_mpmath():
    basis = GtoBasis(3.0, 3, 3)
    for l in (0, 3):
        for k in (0.2, 2.0, 5.0):
            primitives = []
            for n in range(4):
                b, a = mpmath.mpf(basis.alphas[n]), mpmath.mpf(n + l + 3) / 2
                primitives.append(
                    mpmath.sqrt(mpmath.pi)
                    * mpmath.mpf(k) ** l
                    * mpmath.gamma(a)
                    / (2 ** (l + 2) * mpmath.gamma(l + 1.5) * b**a)
                    * mpmath.hyp1f1(a, l + 1.5, -(mpmath.mpf(k) ** 2) / (4 * b))
                )
            expected = basis.coefficients @ np.array([float(x) for x in primitives])
            np.testing.assert_allclose(basis.kspace_integral(np.array([k]), l)[0], expected, rtol=1e-12)


@pytest.mark.parametrize("basis", BASES, ids=IDS)
def test_moments_against_quadrature(basis):
    r, w = _fine_rule(basis)
    for l in range(basis.max_angular + 1):
        powers = r[:, None] ** (l + 2 * np.arange(6))[None, :]
        expected = basis.evaluate(r, l).T @ ((w * r**2)[:, None] * powers)
        np.testing.assert_allclose(basis.moments(l, 6), expected, rtol=1e-11, atol=1e-13 * np.abs(expected).max())


@pytest.mark.parametrize("basis", BASES[:2], ids=IDS[:2])
@pytest.mark.parametrize("p", [0.0, 1.0, 2.5, 6.0])
def test_center_term_against_fine_quadrature(basis, p):
    pot = SmearedPowerLaw(p, 0.7)
    r, w = _fine_rule(basis)
    expected = np.sqrt(4 * np.pi) * basis.evaluate(r, 0).T @ (w * r**2 * pot.real_space(r))
    np.testing.assert_allclose(pot.center_term(basis), expected, rtol=1e-12, atol=1e-14)


def test_gto_lowdin_table_is_the_extended_precision_matrix():
    """The library's Löwdin matrices (:mod:`gplode._gto_lowdin`) are the 40-digit ones rounded
    once, bitwise, for every max_radial the GTO basis takes, and orthonormalise its primitives.
    Regenerate the table after a change of the basis with::

        from gplode.basis import lowdin_matrix_extended
        {n: tuple(x.hex() for row in lowdin_matrix_extended(n) for x in row) for n in range(12)}
    """
    from gplode._gto_lowdin import LOWDIN
    from gplode.basis import GTO_MAX_RADIAL, _lowdin_matrix, lowdin_matrix_extended

    assert sorted(LOWDIN) == list(range(GTO_MAX_RADIAL + 1))
    for max_radial in range(GTO_MAX_RADIAL + 1):
        np.testing.assert_array_equal(_lowdin_matrix(max_radial), np.array(lowdin_matrix_extended(max_radial)))
    basis = GtoBasis(3.0, 7, 2)
    r, w = _fine_rule(basis)
    values = basis.evaluate(r, 0)
    np.testing.assert_allclose((w * r**2 * values.T) @ values, np.eye(8), atol=1e-12)


def test_make_basis_rejects_unknown_name():
    with pytest.raises(ValueError, match="radial_basis must be one of"):
        make_basis("bessel", 3.0, 2, 2)


@pytest.mark.parametrize("basis", BASES[:2], ids=IDS[:2])
def test_kspace_spline_better_than_1e10(basis):
    from gplode.lib.splines import RadialIntegralSpline

    spline = RadialIntegralSpline(basis, k_max=12.0)
    assert spline.max_error <= 1e-11
    # independent random points, not the mid-points the construction checked
    k = np.random.default_rng(2).uniform(0, 12.0, 500)
    # relative to the largest integral of all channels (accuracy is an RMS over all coefficients)
    scale = max(np.abs(basis.kspace_integral(spline.grid, l)).max() for l in range(basis.max_angular + 1))
    for l in range(basis.max_angular + 1):
        exact = basis.kspace_integral(k, l)
        assert np.all(np.abs(spline(k, l) - exact) <= 1e-10 * scale)
    with pytest.raises(ValueError, match="k must lie in"):
        spline(np.array([13.0]), 0)


@pytest.mark.parametrize("tolerance", [1e-7, 1e-9])
@pytest.mark.parametrize("basis", BASES[:2], ids=IDS[:2])
def test_kspace_spline_meets_a_looser_tolerance_with_fewer_nodes(basis, tolerance):
    """A looser tolerance (from a larger ``accuracy``, :func:`gplode.lib.splines.spline_tolerance`)
    starts on a coarser grid: still within its tolerance at independent points (up to the
    ~10x between the mid-points' and the worst error of a quintic), on fewer nodes."""
    from gplode.lib.splines import RadialIntegralSpline

    spline = RadialIntegralSpline(basis, k_max=12.0, tolerance=tolerance)
    assert spline.max_error <= tolerance
    assert len(spline.grid) < len(RadialIntegralSpline(basis, k_max=12.0).grid)
    k = np.random.default_rng(3).uniform(0, 12.0, 500)
    scale = max(np.abs(basis.kspace_integral(spline.grid, l)).max() for l in range(basis.max_angular + 1))
    for l in range(basis.max_angular + 1):
        assert np.all(np.abs(spline(k, l) - basis.kspace_integral(k, l)) <= 10 * tolerance * scale)


def test_spline_tolerance_follows_the_accuracy_between_its_bounds():
    from gplode.lib.splines import POTENTIAL_TOLERANCE, RADIAL_TOLERANCE, SPLINE_CEILING, spline_tolerance

    assert spline_tolerance(1e-3, RADIAL_TOLERANCE) == SPLINE_CEILING == 1e-7
    assert spline_tolerance(1e-5, RADIAL_TOLERANCE) == pytest.approx(1e-9)
    assert spline_tolerance(1e-8, RADIAL_TOLERANCE) == RADIAL_TOLERANCE
    assert spline_tolerance(1e-8, POTENTIAL_TOLERANCE) == pytest.approx(1e-12)
    assert spline_tolerance(1e-12, POTENTIAL_TOLERANCE) == POTENTIAL_TOLERANCE


def test_spline_refinement_evaluates_each_node_once():
    """Halving the step turns the checked mid-points into nodes: no point is evaluated twice,
    and the result meets the tolerance at the last mid-points."""
    from gplode.lib.splines import UniformQuinticSpline

    seen = []

    def function(x):
        seen.append(np.array(x))
        return np.sin(3 * x)[:, None] * np.array([1.0, 2.0])

    spline = UniformQuinticSpline(function, 0.0, 10.0, 0.5, 1e-12, scale="column")
    points = np.concatenate(seen)
    assert len(seen) >= 6  # the grid and its mid-points, then the mid-points of each halving
    assert np.unique(points).size == points.size
    assert points.size == 2 * (len(spline.grid) - 1) + 1  # the final nodes and mid-points
    assert spline.max_error <= 1e-12
    x = np.linspace(0.0, 10.0, 777)
    np.testing.assert_allclose(spline(x), function(x), rtol=0, atol=2e-11)


@pytest.mark.parametrize("max_radial", [16, 30])
def test_many_monomials_on_the_fast_backend(max_radial):
    """High-n monomial channels have integrals many orders below the others at small k; the
    splines are measured against the largest channel, as the accuracy is, so the numpy
    backend builds them (it used to fail after 20 s, "spline did not reach 1e-11") and
    meets the accuracy against the reference."""
    import ase.build

    import gplode

    hypers = dict(radial_basis="monomial", max_radial=max_radial, max_angular=4, cutoff=4.0, accuracy=1e-8)
    atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    fast = gplode.LodeCalculator(backend="numpy", **hypers).compute(atoms).values
    exact = gplode.LodeCalculator(backend="reference", **dict(hypers, accuracy=1e-13)).compute(atoms).values
    assert np.isfinite(fast).all()
    assert np.sqrt(np.mean((fast - exact) ** 2) / np.mean(exact**2)) <= 1e-8


def test_spline_stops_at_the_round_off_of_its_function():
    """A function with noise above the tolerance is refused at once, not after ten refinements."""
    import time

    from gplode.lib.splines import UniformQuinticSpline

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="accurate only to"):
        UniformQuinticSpline(lambda x: np.sin(x) + 1e-9 * rng.normal(size=x.shape), 0.0, 10.0, 0.5, 1e-11)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("name", ["gto", "monomial"])
def test_kspace_integral_derivative_against_finite_differences(name):
    """dĨ_nl/dk (closed form for GTO, quadrature with j_l' for the monomials) vs fourth-order
    central differences (truncation ~h⁴ ≈ 1e-12, round-off ~1e-16/h)."""
    basis = make_basis(name, 3.5, 6, 5)
    k = np.linspace(0.05, 7.0, 36)
    h = 1e-3
    for l in range(6):
        exact = basis.kspace_integral_derivative(k, l)
        f = [basis.kspace_integral(k + j * h, l) for j in (-2, -1, 1, 2)]
        fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)  # fourth order
        scale = np.abs(exact).max()
        assert np.abs(exact - fd).max() < 1e-8 * scale, l
