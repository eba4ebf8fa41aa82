"""Special functions against mpmath at 40 digits."""

import mpmath
import numpy as np
import pytest

from gplode.lib.special import expint_nu, lower_gamma_ratio, upper_gamma

mpmath.mp.dps = 40

# orders across every regime: negative (p < 1), near the integer poles handled
# analytically (ν = 1 is p = 3, ν = 2 is p = 5), half-integers and large orders
ORDERS = [-0.49, -0.25, 0.0, 0.25, 0.5, 1 - 1e-7, 1.0, 1 + 1e-7, 1.25, 2 - 1e-9, 2.0, 2.5, 3.5, 4.0, 7.3]
ARGUMENTS = np.array([1e-10, 1e-6, 1e-3, 0.1, 0.5, 0.999, 1.0, 1.001, 2.0, 7.5, 30.0, 300.0])


@pytest.mark.parametrize("nu", ORDERS)
def test_expint_nu_matches_mpmath(nu):
    values = expint_nu(nu, ARGUMENTS)
    expected = np.array([float(mpmath.expint(nu, y)) for y in ARGUMENTS])
    # series and continued fraction both reach a few ulps; 5e-14 leaves a 20x margin
    np.testing.assert_allclose(values, expected, rtol=5e-14, atol=0)


def test_expint_nu_at_zero():
    assert expint_nu(2.5, np.array([0.0]))[0] == pytest.approx(1 / 1.5, rel=1e-15)
    assert np.isinf(expint_nu(0.5, np.array([0.0]))[0])


@pytest.mark.parametrize("s", [-3.5, -3.0, -2.0 + 1e-8, -1.0, -0.5, -1e-9, 0.0, 1e-9, 0.5, 1.5])
def test_upper_gamma_negative_orders(s):
    x = np.array([1e-4, 0.3, 1.0, 3.0, 25.0])
    expected = np.array([float(mpmath.gammainc(s, xi)) for xi in x])
    np.testing.assert_allclose(upper_gamma(s, x), expected, rtol=5e-14)


@pytest.mark.parametrize("a", [0.01, 0.5, 1.5, 3.0, 10.25])
def test_lower_gamma_ratio(a):
    x = np.array([0.0, 1e-12, 0.2, 1.0, 1.0000001, 4.0, 60.0])
    expected = np.array([1 / a if xi == 0 else float(mpmath.gammainc(a, 0, xi) / mpmath.mpf(xi) ** a) for xi in x])
    np.testing.assert_allclose(lower_gamma_ratio(a, x), expected, rtol=5e-15)
