r"""Truncated kernels of the smeared power law for slabs (2 periodic directions) and wires (1).

The features of a slab or a wire are computed in a periodic box (DESIGN.md §4) with the
kernel cut off in the non-periodic directions, so that no periodic image across the vacuum is
seen. The cut is exact but smooth in k: we use :math:`v_p = g_\sigma * w_p`, with
:math:`g_\sigma` the normalised Gaussian of variance σ² (:math:`\hat g_\sigma = e^{-\sigma^2k^2/2}`)
and the *unsmeared kernel*

.. math::

    w_p(r) = \frac{1}{\Gamma(p/2)}\int_0^\infty \tau^{p/2-1}(1+2\sigma^2\tau)^{(1-p)/2}e^{-r^2\tau}\,d\tau
           = (2\sigma^2)^{-p/2}\,U\!\big(\tfrac p2, \tfrac32, \tfrac{r^2}{2\sigma^2}\big)

(:math:`w_1 = 1/r`, :math:`w_p\sim 1/r` at short and :math:`r^{-p}` at long range; the
superposition of Gaussians :math:`v_p = \Gamma(p/2)^{-1}\int_0^{1/2\sigma^2}t^{p/2-1}e^{-r^2t}dt` of
SPEC §1, with each Gaussian of variance 1/2t ≥ σ² written as :math:`g_\sigma` times one of
variance 1/2t − σ², i.e. τ = t/(1 − 2σ²t)). The truncated kernel is

.. math::

    \hat v^D_p(k) = e^{-\sigma^2k^2/2}\,\widehat{w_p\,\chi_R}(k),\qquad
    \chi_R = \theta(R-|z|)\ \text{(slab)},\quad \theta(R-\rho)\ \text{(wire)}

Truncating :math:`w_p` (not :math:`v_p`) keeps the Gaussian decay of the k-sum; the box sum then
equals the slab's (wire's) lattice sum wherever the smearing Gaussian does not reach the cut,
i.e. for pair separations :math:`|z| \le R - \delta` (ρ ≤ R − δ), δ ≈ 6–8σ (see
:func:`smearing_margin`). Truncating :math:`v_p` itself would leave a jump in the box potential
and a k-sum converging only algebraically.

Notation: "par" is the norm of the component of k in the periodic directions, "perp" the norm
in the truncated ones (slab: :math:`G_\parallel` in-plane, q along the normal; wire: q along the
axis, :math:`G_\perp` across it). Lengths Å, wave numbers Å⁻¹, :math:`\hat v^D` in Å^(3-p).

Formulas (a = p/2, s = 2σ², y = sτ, every integral done by quadrature in ln y):

* slab, :math:`G_\parallel > 0`: :math:`\hat v^D = \hat v_p(|k|) - e^{-\sigma^2k^2/2}T`, with the
  part of :math:`w_p` beyond the cut

  .. math::

      T = \frac{\pi^{3/2}s^{3/2-a}}{\Gamma(a)}\int_0^\infty y^{a-5/2}(1+y)^{(1-p)/2}
          e^{-\sigma^2G_\parallel^2/2y - R^2y/s}\,\Re\big[e^{-iqR}\,
          w_F\big(-\tfrac q2\sqrt{s/y} + iR\sqrt{y/s}\big)\big]\,dy

  (:math:`w_F` the Faddeeva function: :math:`2\int_R^\infty\cos(qz)e^{-\tau z^2}dz =
  \sqrt{\pi/\tau}\,e^{-R^2\tau}\Re[e^{-iqR}w_F(\cdot)]`), of size :math:`e^{-G_\parallel R}`
  (dropped beyond :math:`G_\parallel R > 45`);
* slab, :math:`G_\parallel = 0` (q = 2πm/L_z): :math:`\hat v^D = e^{-\sigma^2q^2/2}\,2\int_0^R
  \cos(qz)\,W(z)\,dz` with the plane average of :math:`w_p`,
  :math:`W(z) = \frac{\pi s^{1-a}}{\Gamma(a)}\int_0^\infty y^{a-2}(1+y)^{(1-p)/2}e^{-yz^2/s}dy`;
* wire: :math:`\hat v^D = e^{-\sigma^2k^2/2}\,2\pi\int_0^R\rho J_0(G_\perp\rho)\,W_q(\rho)\,d\rho`
  with the axial Fourier transform of :math:`w_p`,
  :math:`W_q(\rho) = \frac{\sqrt\pi s^{1/2-a}}{\Gamma(a)}\int_0^\infty y^{a-3/2}(1+y)^{(1-p)/2}
  e^{-\sigma^2q^2/2y - y\rho^2/s}dy` (:math:`= 2K_0(q\rho)` for p = 1).

**The G = 0 convention.** The plane average (slab) or line average (wire) of one atom's smeared
potential is, at distance z (ρ) from its plane (line), with x = z²/2σ² (ρ²/2σ²),

.. math::

    P(x) = C_b\,\frac{\gamma(b, x)}{x^b},\qquad b = \tfrac p2 - 1,\ C_b = \frac{\pi(2\sigma^2)^{-b}}{\Gamma(p/2)}
    \ \text{(slab)};\qquad b = \tfrac{p-1}2,\ C_b = \frac{\sqrt\pi(2\sigma^2)^{-b}}{\Gamma(p/2)}\ \text{(wire)}

finite for b > 0 (p > 2 slab, p > 1 wire): the G = 0 term is then the exact, finite one (the
box reproduces the lattice sum exactly, and the features do not depend on the vacuum). For
b ≤ 0 the lattice sum diverges by an infinite constant per atom; we drop it, as SPEC drops the
3D k = 0 term for p ≤ 3: the average of each atom's potential is taken **relative to its value
in the atom's own plane (on its own line)**, :math:`P(x) = C_b\int_0^1 u^{b-1}(e^{-xu}-1)du`
(:math:`\gamma(b,x)/x^b - 1/b` continued to b ≤ 0; :math:`-\gamma_E - \ln x - E_1(x)` at b = 0).
For the slab at p = 1: :math:`P = -2\pi[(|z| * g_\sigma)(z) - \sigma\sqrt{2/\pi}]`, the charged
sheet; for a neutral combination of species the constants cancel and the features are the 2D
Ewald sum. The convention is continuous in p for p ≤ 2 (p ≤ 1), and independent of the box.
:meth:`TruncatedPowerLaw.zero_term` is the G = 0 Fourier coefficient that realises it in a box.

For p = 0 (the Gaussian density) :math:`w_0 = (4\pi\sigma^2)^{3/4}\delta`: nothing to truncate,
:math:`\hat v^D_0 = \hat v_0`, and the k = 0 term is kept as in 3D.
"""

from __future__ import annotations

import numpy as np
from scipy import special as sp

from .lib.quadrature import gauss_legendre_panels
from .potentials import SmearedPowerLaw

__all__ = ["GEOMETRIES", "TruncatedPowerLaw", "smearing_margin"]

GEOMETRIES = ("slab", "wire")
#: e-folds of the exponential factors kept by the quadratures in ln y
_EXPONENT_RANGE = 50.0
#: slab: the part beyond the cut is dropped where G_∥ R exceeds this (e^-45 ≈ 3e-20)
_TAIL_LIMIT = 45.0
#: composite Gauss–Legendre in ln y: panel width and nodes per panel
_LOG_PANEL, _LOG_ORDER = 0.5, 12
#: terms of the power series of the small-y end, and its extent y₀ (times 1/max(1, |α|, x))
_SERIES_TERMS, _SERIES_END = 20, 0.1
#: graded panels towards ρ = 0 (the log singularity of W_q): ρ₀ 2^-j, j < 48
_GRADED_PANELS = 48
#: pairs (G_∥, q) per chunk of the slab's tail quadrature (bounds memory: chunk × nodes complex)
_TAIL_CHUNK = 2048


def smearing_margin(smearing: float, accuracy: float) -> float:
    r"""Distance δ (Å) the smearing Gaussian must stay away from the cut: the box reproduces the
    lattice sum for separations up to R − δ with an error ≲ erfc(δ/√2σ) of the kernel's
    jump there. :math:`\delta = \sigma\sqrt{2\ln(1/\mathrm{accuracy}) + 6}` (the same margin e³
    as :func:`gplode.lib.kvectors.default_k_cutoff`: δ = σ²k_c)."""
    return float(smearing * np.sqrt(2.0 * np.log(1.0 / accuracy) + 6.0))


def _log_rule(lo: np.ndarray, hi: np.ndarray, n_panels: int):
    """Composite Gauss–Legendre nodes and weights on ``[lo_i, hi_i]`` (arrays), ``n_panels``
    panels each: ``(len(lo), n_panels * order)``."""
    x, w = np.polynomial.legendre.leggauss(_LOG_ORDER)
    t = (np.arange(n_panels)[:, None] + 0.5 * (x[None, :] + 1.0)).ravel() / n_panels
    wt = np.tile(0.5 * w, n_panels) / n_panels
    span = (hi - lo)[:, None]
    return lo[:, None] + span * t[None, :], span * wt[None, :]


def _power_series(alpha: float, x: np.ndarray, n_terms: int) -> np.ndarray:
    r"""Taylor coefficients :math:`F_n(x)` of :math:`(1+y)^\alpha e^{-xy}` in y, ``(n_terms, len(x))``."""
    binom = np.cumprod(np.concatenate([[1.0], (alpha - np.arange(n_terms - 1)) / np.arange(1, n_terms)]))
    exp_terms = (-x[None, :]) ** np.arange(n_terms)[:, None] / sp.factorial(np.arange(n_terms))[:, None]
    out = np.zeros((n_terms, x.size))
    for n in range(n_terms):
        out[n] = binom[: n + 1][::-1] @ exp_terms[: n + 1]
    return out


def one_sided_integral(b: float, alpha: float, x: np.ndarray, drop_pole: bool) -> np.ndarray:
    r""":math:`\int_0^\infty y^{b-1}(1+y)^\alpha e^{-xy}\,dy` for ``x > 0``, any ``b > -1``,
    continued analytically from b > 0; with ``drop_pole`` the continuation minus 1/b (finite
    at b = 0: the Hadamard finite part). The end [0, y₀] by the power series
    :math:`\sum_n F_n y_0^{b+n}/(b+n)`, y₀ = 0.1/max(1, |α|, x) (x grouped by decades, so that
    the two parts cancel little), the rest in ln y up to :math:`x y = 50`.
    """
    x = np.asarray(x, dtype=float)
    out = np.empty(x.shape)
    decade = np.floor(np.log10(np.maximum(x, 1.0)))
    for level in np.unique(decade):
        group = decade == level
        out[group] = _one_sided(b, alpha, x[group], drop_pole)
    return out


def _one_sided(b: float, alpha: float, x: np.ndarray, drop_pole: bool) -> np.ndarray:
    y0 = _SERIES_END / max(1.0, abs(alpha), float(x.max()))
    coefficients = _power_series(alpha, x, _SERIES_TERMS)
    n = np.arange(1, _SERIES_TERMS)
    out = coefficients[1:].T @ (y0 ** (b + n) / (b + n))
    log_y0 = np.log(y0)
    if drop_pole:
        first = log_y0 * sp.exprel(b * log_y0)  # (y0^b − 1)/b, → ln y0 at b = 0
    else:
        first = y0**b / b
    out += coefficients[0] * first
    lo = np.full(1, log_y0)
    hi = np.full(1, np.log(_EXPONENT_RANGE / float(x.min())) + 2.0)
    n_panels = max(4, int(np.ceil((hi - lo)[0] / _LOG_PANEL)))
    s, w = _log_rule(lo, hi, n_panels)
    y = np.exp(s[0])
    integrand = np.exp(b * s[0] + alpha * np.log1p(y))[None, :] * np.exp(-x[:, None] * y[None, :])
    return out + integrand @ w[0]


def two_sided_integral(b: float, alpha: float, x: np.ndarray, g: np.ndarray, extra=None, shifts=None) -> np.ndarray:
    r""":math:`\int_0^\infty y^{b-1}(1+y)^\alpha e^{-g/y - xy}\,f(y)\,dy` for arrays ``x, g > 0``
    (broadcast), by Gauss–Legendre in ln y on :math:`[\ln(g/50), \ln(50/x)]`; ``extra``:
    ``(y, index) -> f`` (index: the flat entries of the broadcast arrays), default 1.
    Entries with :math:`2\sqrt{gx} > 90` (:math:`e^{-90}`) are 0. ``shifts``: also the
    integrals with b lowered by each shift, on the same nodes (one integrand for all),
    stacked on a first axis ``(len(shifts), ...)``."""
    x, g = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(g, dtype=float))
    shape, x, g = x.shape, x.ravel(), g.ravel()
    powers = (0.0,) if shifts is None else tuple(float(shift) for shift in shifts)
    out = np.zeros((len(powers), x.size))
    live = np.flatnonzero(2.0 * np.sqrt(g * x) < 90.0)
    for start in range(0, live.size, _TAIL_CHUNK):
        index = live[start : start + _TAIL_CHUNK]
        lo = np.log(g[index] / _EXPONENT_RANGE) - 2.0
        hi = np.log(_EXPONENT_RANGE / x[index]) + 2.0
        n_panels = max(4, int(np.ceil((hi - lo).max() / _LOG_PANEL)))
        s, w = _log_rule(lo, hi, n_panels)
        y = np.exp(s)
        log_integrand = b * s + alpha * np.log1p(y) - g[index, None] / y - x[index, None] * y
        integrand = np.exp(log_integrand)
        if extra is not None:
            integrand = integrand * extra(y, index)
        for j, shift in enumerate(powers):
            out[j, index] = np.einsum("ij,ij->i", integrand if shift == 0.0 else integrand * y**-shift, w)
    return out[0].reshape(shape) if shifts is None else out.reshape((len(powers), *shape))


def _row_panels(length: float, scale: float, graded: bool, order: int = 16):
    """Gauss–Legendre nodes on [0, length], panels no wider than ``scale``; ``graded``: the
    first panel split geometrically towards 0 (log singularity)."""
    n = max(2, int(np.ceil(length / scale)))
    edges = np.linspace(0.0, length, n + 1)
    if graded:
        first = edges[1] * 2.0 ** -np.arange(_GRADED_PANELS, 0, -1)
        edges = np.concatenate([[0.0], first, edges[1:]])
    return gauss_legendre_panels(edges, order)


class TruncatedPowerLaw:
    r"""The smeared power law of SPEC §1 truncated in the non-periodic directions of a slab or a
    wire (module docstring: formulas and the G = 0 convention), for any real ``p >= 0``.

    :param potential: :class:`gplode.potentials.SmearedPowerLaw` (p, σ)
    :param geometry: ``"slab"`` (cut |z| < R along the normal) or ``"wire"`` (cut ρ < R around
        the axis)
    :param radius: R in Å: half the box height (slab) or half the shortest transverse box
        vector (wire)
    """

    def __init__(self, potential: SmearedPowerLaw, geometry: str, radius: float):
        if geometry not in GEOMETRIES:
            raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
        if not np.isfinite(radius) or radius <= 0:
            raise ValueError(f"radius must be a finite number > 0 (Å), got {radius!r}")
        self.potential, self.geometry, self.radius = potential, geometry, float(radius)
        p, sigma = potential.exponent, potential.smearing
        self.exponent, self.smearing = p, sigma
        a = 0.5 * p
        s = 2.0 * sigma**2
        #: b and C_b of the plane (line) average, module docstring
        self.order = a - 1.0 if geometry == "slab" else a - 0.5
        if p > 0:
            root = np.pi if geometry == "slab" else np.sqrt(np.pi)
            self.scale = root * s ** (-self.order) / sp.gamma(a)

    @property
    def convergent(self) -> bool:
        """Whether the lattice sum converges (p > 2 slab, p > 1 wire; and p = 0): the G = 0 term is
        then exact; otherwise each atom's plane (line) average is zero in its own plane (line)."""
        return self.exponent == 0.0 or self.order > 0

    def average(self, distance: np.ndarray) -> np.ndarray:
        r"""The plane (slab) or line (wire) average :math:`P` of one atom's smeared potential at
        ``distance`` z or ρ (Å) from its plane or line, with the G = 0 convention, in Å^(2-p)
        (slab) or Å^(1-p) (wire): :math:`\int v_p\,d^2\rho` or :math:`\int v_p\,dz`."""
        b, x = self.order, np.asarray(distance, dtype=float) ** 2 / (2.0 * self.smearing**2)
        if self.exponent == 0.0:
            raise ValueError("p = 0: the average of the Gaussian density is not a kernel of this class")
        if b > 0:
            from .lib.special import lower_gamma_ratio

            return self.scale * lower_gamma_ratio(b, x)
        # ∫_0^1 u^{b-1}(e^{-xu} - 1) du = Σ_{n≥1} (-x)^n/(n!(b+n)) (x ≤ 1), else via E_{1-b}
        from .lib.special import expint_nu

        out = np.empty_like(x)
        small = x <= 1.0
        xs = x[small]
        term, total = np.ones_like(xs), np.zeros_like(xs)
        for n in range(1, 40):
            term = term * (-xs) / n
            total += term / (b + n)
        out[small] = total
        xl = x[~small]
        # Γ(b) x^{-b} − 1/b = expm1(ln Γ(1+b) − b ln x)/b, exact through b = 0
        h = (sp.gammaln(1.0 + b) / b if b != 0 else -np.euler_gamma) - np.log(xl)
        out[~small] = h * sp.exprel(b * h) - expint_nu(1.0 - b, xl)
        return self.scale * out

    # -------------------------------------------------------------------------------------
    def kspace(self, par: np.ndarray, perp: np.ndarray) -> np.ndarray:
        r""":math:`\hat v^D_p` at wave vectors with components of norms ``par`` (periodic
        directions) and ``perp`` (truncated directions), Å⁻¹, in Å^(3-p). Entries with
        ``par == 0`` are the slab's G_∥ = 0 row or the wire's q = 0 row; ``par == perp == 0`` is
        :meth:`zero_term`."""
        return self._evaluate(par, perp, derivative=False)[0]

    def zero_term(self) -> float:
        r""":math:`\hat v^D(0)` with the G = 0 convention (Å^(3-p)): the (4π/Ω) N_a v̂^D(0)
        Ĩ_n0(0)/√4π term of the l = 0 features, Ω the box volume."""
        return float(self.kspace(np.zeros(1), np.zeros(1))[0])

    def kspace_with_par_derivative(self, par: np.ndarray, perp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r""":meth:`kspace` and :math:`\partial\hat v^D_p/\partial k_\parallel` at fixed
        :math:`k_\perp` (``par``, ``perp`` as there), in Å^(3-p) and Å^(4-p), from the same
        quadrature nodes. The kernel is anisotropic: its k-gradient is
        :math:`\partial_\parallel\hat v^D\,\hat e_\parallel + \partial_\perp\hat v^D\,\hat e_\perp`,
        not :math:`(d\hat v/dk)\,\hat k`; strains of the periodic directions move only
        :math:`k_\parallel` (:class:`gplode.methods.truncated.TruncatedKSum`), so the parallel part
        is the one they need. With one more power of 1/y in the quadratures (a = p/2, s = 2σ²):

        * slab, :math:`G_\parallel > 0`: :math:`\hat v_p'(|k|)\,G_\parallel/|k|
          + \sigma^2G_\parallel e^{-\sigma^2k^2/2}(T + T_1)`, :math:`T_1` the tail T of the module
          docstring with :math:`y^{a-7/2}` for :math:`y^{a-5/2}` (from
          :math:`\partial_{G}e^{-\sigma^2G^2/2y} = -(\sigma^2G/y)\,e^{-\sigma^2G^2/2y}`);
        * wire, q ≠ 0: :math:`-\sigma^2|q|\,\big(\hat v^D + e^{-\sigma^2k^2/2}\,2\pi\int_0^R\rho
          J_0(G_\perp\rho)W^{(1)}_q(\rho)\,d\rho\big)`, :math:`W^{(1)}_q` the :math:`W_q` of the
          module docstring with :math:`y^{a-5/2}` for :math:`y^{a-3/2}`;
        * p = 0: :math:`\hat v_0'(|k|)\,k_\parallel/|k|`.

        The slab's G_∥ = 0 and the wire's q = 0 rows get 0: no strain of the periodic
        directions moves a k-vector off its row, so their derivative is never needed.
        """
        return self._evaluate(par, perp, derivative=True)

    def _evaluate(self, par, perp, derivative: bool):
        """``(values, ∂_∥ values or None)``, flat inputs broadcast and reshaped."""
        par, perp = np.broadcast_arrays(np.asarray(par, dtype=float), np.asarray(perp, dtype=float))
        shape, par, perp = par.shape, par.ravel(), np.abs(perp.ravel())
        knorm = np.hypot(par, perp)
        rest = np.flatnonzero(par != 0.0)  # off the rows
        slope = np.zeros(par.size) if derivative else None
        if self.exponent == 0.0:
            out = self.potential.kspace(knorm)
            if derivative:
                slope[rest] = self.potential.kspace_derivative(knorm[rest], out[rest]) * par[rest] / knorm[rest]
            return out.reshape(shape), None if slope is None else slope.reshape(shape)
        out = np.empty(par.size)
        row = par == 0.0
        shifts = (0.0, 1.0) if derivative else (0.0,)
        if self.geometry == "slab":
            damping = np.exp(-0.5 * self.smearing**2 * knorm[rest] ** 2)
            tails = self._slab_tail(par[rest], perp[rest], shifts)
            out[rest] = self.potential.kspace(knorm[rest])
            out[rest] -= damping * tails[0]
            if derivative:
                slope[rest] = self.potential.kspace_derivative(knorm[rest]) * par[rest] / knorm[rest]
                slope[rest] += self.smearing**2 * par[rest] * damping * (tails[0] + tails[1])
            if row.any():
                out[row] = self._slab_row(perp[row])
        else:
            both = self._wire(par, perp, shifts)
            out[:] = both[0]
            if derivative:
                slope[rest] = -(self.smearing**2) * par[rest] * (both[0][rest] + both[1][rest])
        return out.reshape(shape), None if slope is None else slope.reshape(shape)

    # ---- slab --------------------------------------------------------------------------
    def _unique_pairs(self, par, perp):
        """Unique (par, perp) pairs (to 1e-13 relative) and the inverse map."""
        scale = max(float(np.max(par, initial=0.0)), float(np.max(perp, initial=0.0)), 1e-300)
        keys = np.round(np.stack([par, perp], axis=1) / scale * 1e13).astype(np.int64)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        return first, inverse.ravel()

    def _slab_tail(self, par, perp, shifts=(0.0,)) -> np.ndarray:
        r"""T of the module docstring: the Fourier transform of :math:`w_p\,\theta(|z| - R)`, and
        with the power of y lowered by each further shift (for the derivative), ``(len(shifts), n)``."""
        first, inverse = self._unique_pairs(par, perp)
        g_par, q = par[first], perp[first]
        a, s, radius = 0.5 * self.exponent, 2.0 * self.smearing**2, self.radius
        x = np.full(g_par.shape, radius**2 / s)
        g = 0.5 * self.smearing**2 * g_par**2
        values = np.zeros((len(shifts), g_par.size))
        live = np.flatnonzero(g_par * radius < _TAIL_LIMIT)
        if live.size:
            qr = q[live] * radius
            phase = np.exp(-1j * np.mod(qr, 2 * np.pi))

            def faddeeva(y, index):
                z = -0.5 * q[live][index, None] * np.sqrt(s / y) + 1j * radius * np.sqrt(y / s)
                return (phase[index, None] * sp.wofz(z)).real

            alpha = 0.5 * (1.0 - self.exponent)
            integral = two_sided_integral(a - 1.5, alpha, x[live], g[live], faddeeva, shifts)
            values[:, live] = np.pi**1.5 * s ** (1.5 - a) / sp.gamma(a) * integral
        return values[:, inverse]

    def _plane_average_w(self, z) -> np.ndarray:
        r"""The plane average W(z) of :math:`w_p` (not smeared) with the G = 0 convention."""
        b, s = self.order, 2.0 * self.smearing**2
        return self.scale * one_sided_integral(b, -b - 0.5, z**2 / s, drop_pole=b <= 0)

    def _slab_row(self, q) -> np.ndarray:
        r""":math:`e^{-\sigma^2q^2/2}\,2\int_0^R\cos(qz)W(z)\,dz`, the G_∥ = 0 row."""
        q_max = float(q.max())
        scale = min(self.smearing, 1.0 / max(q_max, 1e-300), self.radius / 4)
        z, w = _row_panels(self.radius, scale, graded=False)
        profile = 2.0 * w * self._plane_average_w(z)
        unique, inverse = np.unique(q, return_inverse=True)
        values = np.cos(unique[:, None] * z[None, :]) @ profile
        return np.exp(-0.5 * self.smearing**2 * unique**2)[inverse.ravel()] * values[inverse.ravel()]

    # ---- wire --------------------------------------------------------------------------
    def _line_transform_w(self, q: float, rho: np.ndarray, shifts=(0.0,)) -> np.ndarray:
        r""":math:`W_q(\rho)`, the axial Fourier transform of :math:`w_p` (q = 0: its line
        average, with the G = 0 convention), and with the power of y lowered by each further
        shift (q ≠ 0; 0 at q = 0, where no derivative is needed), ``(len(shifts), n_rho)``."""
        b, s = self.order, 2.0 * self.smearing**2
        x = rho**2 / s
        if q == 0.0:
            out = np.zeros((len(shifts), rho.size))
            out[0] = self.scale * one_sided_integral(b, -b, x, drop_pole=b <= 0)
            return out
        g = np.full(rho.shape, 0.5 * self.smearing**2 * q**2)
        return self.scale * two_sided_integral(b, -b, x, g, shifts=shifts)

    def _wire(self, q, g_perp, shifts=(0.0,)) -> np.ndarray:
        r""":math:`e^{-\sigma^2k^2/2}\,2\pi\int_0^R\rho J_0(G_\perp\rho)W_q(\rho)\,d\rho`, and the same
        with :math:`W_q` of each further shift (:meth:`_line_transform_w`), ``(len(shifts), n)``."""
        g_max = float(g_perp.max(initial=0.0))
        scale = min(self.smearing, 1.0 / max(g_max, 1e-300), self.radius / 4)
        rho, w = _row_panels(self.radius, scale, graded=True)
        q_values, q_index = np.unique(q, return_inverse=True)
        g_values, g_index = np.unique(g_perp, return_inverse=True)
        profiles = np.stack([2.0 * np.pi * w * rho * self._line_transform_w(float(v), rho, shifts) for v in q_values])
        profiles = profiles.transpose(1, 0, 2)  # (shifts, q, ρ)
        table = np.empty((len(shifts), g_values.size, q_values.size))
        for start in range(0, g_values.size, 512):  # J_0 table by blocks of G_⊥
            bessel = sp.j0(g_values[start : start + 512, None] * rho[None, :])
            for j in range(len(shifts)):
                table[j, start : start + 512] = bessel @ profiles[j].T
        values = table[:, g_index.ravel(), q_index.ravel()]
        return np.exp(-0.5 * self.smearing**2 * (q**2 + g_perp**2))[None, :] * values
