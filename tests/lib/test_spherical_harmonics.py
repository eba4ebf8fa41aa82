"""Real spherical harmonics: convention, orthonormality and comparison with SciPy."""

import numpy as np
import pytest
from scipy import special

from gplode.lib.spherical_harmonics import lm_index, real_spherical_harmonics

RNG = np.random.default_rng(7)


def _sphere_rule(n_theta=40, n_phi=80):
    u, w = np.polynomial.legendre.leggauss(n_theta)
    phi = np.linspace(0, 2 * np.pi, n_phi, endpoint=False)
    U, P = np.meshgrid(u, phi, indexing="ij")
    s = np.sqrt(1 - U**2)
    points = np.stack([s * np.cos(P), s * np.sin(P), U], -1).reshape(-1, 3)
    weights = (w[:, None] * np.full(P.shape, 2 * np.pi / n_phi)).ravel()
    return points, weights


def test_low_orders_explicit():
    v = RNG.normal(size=(6, 3)) * 3.0
    r = np.linalg.norm(v, axis=1)
    y = real_spherical_harmonics(v, 1)
    assert np.allclose(y[:, 0], 1 / np.sqrt(4 * np.pi), rtol=0, atol=1e-16)
    expected = np.sqrt(3 / (4 * np.pi)) * np.stack([v[:, 1], v[:, 2], v[:, 0]], 1) / r[:, None]
    np.testing.assert_allclose(y[:, 1:], expected, rtol=1e-14)


def test_orthonormal_up_to_l20():
    points, weights = _sphere_rule(n_theta=48, n_phi=96)  # exact for degree ≤ 95 in φ, 95 in cosθ
    y = real_spherical_harmonics(points, 20)
    gram = (y * weights[:, None]).T @ y
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-12)


@pytest.mark.parametrize("l", [2, 5, 12])
def test_against_scipy_complex_harmonics(l):
    """Real Y without Condon–Shortley: Y_lm = √2 (-1)^m Re/Im Y_l^|m| (SciPy includes the phase)."""
    v = RNG.normal(size=(30, 3))
    theta = np.arccos(v[:, 2] / np.linalg.norm(v, axis=1))
    phi = np.arctan2(v[:, 1], v[:, 0])
    y = real_spherical_harmonics(v, l)
    for m in range(-l, l + 1):
        complex_y = special.sph_harm_y(l, abs(m), theta, phi)
        if m == 0:
            expected = complex_y.real
        elif m > 0:
            expected = np.sqrt(2) * (-1) ** m * complex_y.real
        else:
            expected = np.sqrt(2) * (-1) ** m * complex_y.imag
        np.testing.assert_allclose(y[:, lm_index(l, m)], expected, atol=1e-13)


def test_poles_and_scale_invariance():
    v = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, -0.5], [1e-30, 0.0, 1.0]])
    y = real_spherical_harmonics(v, 6)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(real_spherical_harmonics(7.5 * v, 6), y, atol=1e-15)
    # on the +z axis only m = 0 survives, with Y_l0 = √((2l+1)/4π)
    for l in range(7):
        row = y[0, l * l : (l + 1) ** 2]
        assert row[l] == pytest.approx(np.sqrt((2 * l + 1) / (4 * np.pi)), rel=1e-14)
        assert np.allclose(np.delete(row, l), 0.0, atol=1e-15)


def _solid(vectors, max_angular):
    r = np.linalg.norm(vectors, axis=1)
    degree = np.concatenate([[l] * (2 * l + 1) for l in range(max_angular + 1)])
    return real_spherical_harmonics(vectors, max_angular) * r[:, None] ** degree


def test_solid_harmonics_gradient_against_finite_differences():
    """∇(r^l Y_lm) at unit vectors, poles included, against central differences (error O(h²))."""
    from gplode.lib.spherical_harmonics import solid_harmonics_gradient

    L = 8
    v = RNG.normal(size=(40, 3))
    v[:3] = [[0, 0, 2.0], [0, 0, -0.5], [1e-9, 0, 1]]
    unit = v / np.linalg.norm(v, axis=1)[:, None]
    ylm, gradient = solid_harmonics_gradient(v, L)
    np.testing.assert_allclose(ylm, real_spherical_harmonics(v, L), rtol=0, atol=1e-14)
    h = 1e-5
    fd = np.stack([(_solid(unit + h * e, L) - _solid(unit - h * e, L)) / (2 * h) for e in np.eye(3)], axis=1)
    scale = np.abs(gradient).max()
    assert np.abs(fd - gradient).max() < 1e-8 * scale
    # Euler: x·∇𝒴_lm(x) = l 𝒴_lm (homogeneous of degree l)
    degree = np.concatenate([[l] * (2 * l + 1) for l in range(L + 1)])
    np.testing.assert_allclose(np.einsum("na,nak->nk", unit, gradient), degree * ylm, atol=1e-12)
