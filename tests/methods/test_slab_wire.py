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
