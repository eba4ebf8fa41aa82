"""The hand-over of the free-space pair functions from the table to the multipole series,
the bounds on building the table, and the radial bases' orthonormality at every allowed
max_radial (issue 11, item 4).

1. F_nl just below and at d_switch agree (the switch distance and the number of series
   terms come from error bounds), for p up to 20, both bases, small σ with large r₀; at
   and beyond d_switch F equals an independent quadrature over ρ = |r − d| with scipy's
   regularised incomplete gamma and, for the GTO, the basis integrated far beyond the
   radius the table chose.
2. Tables that would need too much memory or work are refused in well under a second.
3. Orthonormality by independent quadrature for every allowed max_radial; GTO values above
   the limit are refused at construction.
"""

import time

import numpy as np
import pytest
from scipy import special as sp

import gplode
from gplode.basis import GTO_MAX_RADIAL, GtoBasis, MonomialBasis, make_basis
from gplode.lib.quadrature import gauss_legendre_panels
from gplode.methods.pair_sum import PairRadialFunctions
from gplode.potentials import SmearedPowerLaw

SWITCH_EXPONENTS = [0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 9.5, 12.0, 16.0, 20.0]
#: (basis, σ, r₀): small σ against r₀ (the series' ratio R/d_switch close to 1, and the
#: smeared core σ^-p large against d^-p)
SWITCH_CASES = [("monomial", 0.3, 4.0), ("gto", 0.5, 3.0)]
SLOW_SWITCH_CASES = [("monomial", 0.1, 6.0), ("gto", 0.3, 6.0)]
#: |F(d_switch⁻) − F(d_switch)| relative to max_n |F_nl(d_switch)|: the table's round-off
#: (~ε × the variation of d^-p over a 2σ panel) plus the series' bound 1e-14. Measured
#: ≤ 1e-13 (p = 20); before the fix 0.79 at p = 20, 0.1 at p = 12 (monomial, σ = 0.1, r₀ = 6).
SWITCH_TOL = 1e-12
#: against the independent quadrature, relative to max_n |F_nl|: that quadrature's P_l
#: moment cancels ~(d/r)^l of its magnitude (at l = 2 it alone is off by 5e-13 at d_switch
#: and 2e-12 at 2 d_switch, where gplode's table, series and the 40-term closed-form series
#: agree to 3e-13). Measured ≤ 1e-12.
FAR_TOL = 1e-11


def _reference(p, sigma, basis, d, l, radius):
    r"""F_nl(d) = (2π/d) ∫_0^R r R̃_nl(r) ∫_{|r-d|}^{r+d} P_l((r²+d²−ρ²)/2rd) v_p(ρ) ρ dρ dr.

    v_p(ρ) = P(p/2, ρ²/2σ²)/ρ^p (scipy). For d ≥ R + 10σ the inner integrand is smooth
    (ρ ≥ 10σ): 64 Gauss–Legendre nodes in ρ; outer panels ≤ R/80 with 20 nodes.
    """
    edges = np.linspace(0.0, radius, 81)
    if isinstance(basis, MonomialBasis):
        edges = np.linspace(0.0, basis.cutoff, 81)
    r, wr = gauss_legendre_panels(edges, 20)
    x, wx = np.polynomial.legendre.leggauss(64)
    lo, hi = np.abs(r - d), r + d
    rho = 0.5 * (lo + hi)[:, None] + 0.5 * (hi - lo)[:, None] * x[None, :]
    w_rho = 0.5 * (hi - lo)[:, None] * wx[None, :]
    u = (r[:, None] ** 2 + d**2 - rho**2) / (2 * r[:, None] * d)
    v = sp.gammainc(0.5 * p, rho**2 / (2 * sigma**2)) / rho**p
    inner = (sp.eval_legendre(l, u) * v * rho * w_rho).sum(axis=1) * 2 * np.pi / (r * d)
    return (wr * r**2 * inner) @ basis.evaluate(r, l)


def _check_switch(p, name, sigma, cutoff):
    basis = make_basis(name, cutoff, 3, 2)
    pf = PairRadialFunctions(SmearedPowerLaw(p, sigma), basis)
    below = pf.evaluate(np.array([np.nextafter(pf.d_switch, 0.0)]))[0]
    d_far = np.array([pf.d_switch, 1.2 * pf.d_switch])
    far = pf.evaluate(d_far)
    # the GTO integrated 10 of its widest σ_n beyond the radius the table chose
    radius = pf.radius + 10.0 * basis.sigmas.max() if name == "gto" else basis.cutoff
    for l in range(3):
        scale = np.abs(far[0, l]).max()
        jump = np.abs(below[l] - far[0, l]).max() / scale
        assert jump <= SWITCH_TOL, (p, name, l, jump)
        for i, d in enumerate(d_far):
            expected = _reference(p, sigma, basis, d, l, radius)
            error = np.abs(far[i, l] - expected).max() / np.abs(expected).max()
            assert error <= FAR_TOL, (p, name, l, d, error)


@pytest.mark.parametrize(("name", "sigma", "cutoff"), SWITCH_CASES)
@pytest.mark.parametrize("p", SWITCH_EXPONENTS)
def test_hand_over_to_series_is_continuous(p, name, sigma, cutoff):
    _check_switch(p, name, sigma, cutoff)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "sigma", "cutoff"), SLOW_SWITCH_CASES)
@pytest.mark.parametrize("p", [1.0, 6.0, 12.0, 20.0])
def test_hand_over_to_series_is_continuous_small_smearing(p, name, sigma, cutoff):
    _check_switch(p, name, sigma, cutoff)


def test_coulomb_series_needs_one_term_per_l():
    pf = PairRadialFunctions(SmearedPowerLaw(1.0, 0.5), make_basis("monomial", 3.0, 2, 3))
    assert pf.series_terms == [1, 1, 1, 1]


def test_table_is_a_pure_function_of_its_inputs():
    def build():
        return PairRadialFunctions(SmearedPowerLaw(2.5, 0.7), make_basis("gto", 2.5, 2, 2))

    first, second = build(), build()
    d = np.linspace(0.05, 2 * first.d_switch, 200)
    np.testing.assert_array_equal(first.evaluate(d), second.evaluate(d))


# --- 2. bounded memory and work -------------------------------------------------------------
#: (exponent, basis, σ, r₀): tiny σ against r₀, and huge σ against r₀ (Chebyshev panels no
#: wider than the basis length scale up to d_switch ≈ 10σ)
EXTREME_CASES = [
    (1.0, "monomial", 1e-3, 10.0),
    (1.0, "gto", 1e-3, 10.0),
    (6.0, "monomial", 1e-6, 3.0),
    (1.0, "monomial", 1e4, 1.0),
    (20.0, "gto", 1e3, 0.5),
    (0.0, "gto", 1e-4, 30.0),
]


@pytest.mark.parametrize(("p", "name", "sigma", "cutoff"), EXTREME_CASES)
def test_extreme_tables_are_refused_fast(p, name, sigma, cutoff):
    basis = make_basis(name, cutoff, 5, 4)
    start = time.perf_counter()
    with pytest.raises((ValueError, MemoryError), match="free-space pair table .* (GiB|potential evaluations)"):
        PairRadialFunctions(SmearedPowerLaw(p, sigma), basis)
    assert time.perf_counter() - start < 1.0


# --- 3. orthonormality at every allowed max_radial ------------------------------------------
def _gram(basis, l):
    """∫ r² R̃_n R̃_m dr by composite Gauss–Legendre (600 panels × 24 nodes)."""
    edges = np.linspace(0.0, basis.support_radius, 601)
    r, w = gauss_legendre_panels(edges, 24)
    values = basis.evaluate(r, l)
    return (values * (w * r**2)[:, None]).T @ values


@pytest.mark.parametrize("max_radial", range(GTO_MAX_RADIAL + 1))
def test_gto_orthonormal_at_every_allowed_max_radial(max_radial):
    basis = GtoBasis(3.3, max_radial, 0)
    np.testing.assert_allclose(_gram(basis, 0), np.eye(max_radial + 1), rtol=0, atol=1e-10)


@pytest.mark.parametrize("max_radial", range(31))
def test_monomial_orthonormal_at_every_allowed_max_radial(max_radial):
    basis = MonomialBasis(2.7, max_radial, 30)
    for l in (0, 7, 30):
        np.testing.assert_allclose(_gram(basis, l), np.eye(max_radial + 1), rtol=0, atol=1e-10)


@pytest.mark.parametrize("max_radial", range(GTO_MAX_RADIAL + 1, 31))
def test_gto_above_limit_refused_at_construction(max_radial):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=f"max_radial <= {GTO_MAX_RADIAL}"):
        gplode.LodeCalculator(radial_basis="gto", max_radial=max_radial, backend="reference")
    assert time.perf_counter() - start < 1.0
