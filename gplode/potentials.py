r"""Smeared power-law potential of one atom, in real and reciprocal space (docs/conventions.md).

The potential object owns every formula about the potential: :math:`v_p(r)`,
:math:`\hat v_p(k)`, the k = 0 rule and the centre-atom term. Backends call it and never
re-derive these expressions.
"""

from __future__ import annotations

import numpy as np
from scipy import special as sp

from .lib.quadrature import gauss_legendre_panels
from .lib.special import expint_nu, lower_gamma_ratio

__all__ = ["ShortRangePowerLaw", "SmearedPowerLaw", "WindowedPowerLaw", "kernel_reach"]


class SmearedPowerLaw:
    r"""Gaussian-smeared :math:`1/r^p` potential, for any real exponent ``p >= 0``.

    .. math::

        v_p(r) = \frac{\gamma(p/2,\, r^2/2\sigma^2)}{\Gamma(p/2)\, r^p},\qquad
        \hat v_p(k) = \frac{\pi^{3/2}\, 2^{3-p}\, k^{p-3}}{\Gamma(p/2)}
                      \Gamma\!\left(\tfrac{3-p}{2}, \tfrac{\sigma^2k^2}{2}\right)

    For ``p = 0`` the "potential" is the L2-normalised Gaussian density
    :math:`v_0(r) = (\pi\sigma^2)^{-3/4} e^{-r^2/2\sigma^2}` (SOAP-like).

    :param exponent: p, dimensionless, ``p >= 0``
    :param smearing: σ in Å (standard deviation of the Gaussian), ``σ > 0``
    """

    def __init__(self, exponent: float, smearing: float):
        if not np.isfinite(exponent) or exponent < 0:
            raise ValueError(f"exponent must be a finite real number >= 0, got {exponent!r}")
        if not np.isfinite(smearing) or smearing <= 0:
            raise ValueError(f"smearing must be a finite number > 0 (Å), got {smearing!r}")
        self.exponent = float(exponent)
        self.smearing = float(smearing)

    @property
    def has_k0_term(self) -> bool:
        """Whether the k = 0 Fourier component is kept (finite): ``p > 3`` or ``p = 0``.

        For ``0 < p <= 3`` it diverges and is dropped, which is equivalent to adding a
        uniform neutralising background to every species' density.
        """
        return self.exponent == 0.0 or self.exponent > 3.0

    def real_space(self, r: np.ndarray) -> np.ndarray:
        r"""Potential :math:`v_p(r)` at distances ``r`` (Å), in Å^-p; any shape.

        Written as :math:`[\gamma(a,x)/x^a] / (\Gamma(a)(2\sigma^2)^a)`, ``a = p/2``,
        ``x = r²/2σ²``, so that ``r = 0`` needs no limit (value
        :math:`1/(\Gamma(p/2+1)(2\sigma^2)^{p/2})`).
        """
        r = np.asarray(r, dtype=float)
        p, s2 = self.exponent, self.smearing**2
        if p == 0.0:
            return (np.pi * s2) ** -0.75 * np.exp(-(r**2) / (2 * s2))
        a = 0.5 * p
        x = r**2 / (2 * s2)
        return lower_gamma_ratio(a, x) * np.exp(-sp.gammaln(a) - a * np.log(2 * s2))

    def kspace(self, k: np.ndarray) -> np.ndarray:
        r"""Fourier transform :math:`\hat v_p(k)` at wave numbers ``k >= 0`` (Å^-1), in Å^(3-p).

        Uses :math:`k^{p-3}\Gamma(s, y) = (\sigma^2/2)^{s} E_{(p-1)/2}(y)`, ``s = (3-p)/2``,
        ``y = σ²k²/2``, so the same expression holds for every real p, across p = 3, and
        gives the finite k → 0 limit for p > 3 directly. Entries with ``k == 0`` follow the
        k = 0 rule: :meth:`k0_value` (0 where the term is dropped).
        """
        k = np.asarray(k, dtype=float)
        p, sigma = self.exponent, self.smearing
        y = 0.5 * (sigma * k) ** 2
        if p == 0.0:
            return (4 * np.pi * sigma**2) ** 0.75 * np.exp(-y)
        prefactor = np.pi**1.5 * 2.0 ** ((3.0 - p) / 2.0) * sigma ** (3.0 - p) / sp.gamma(0.5 * p)
        out = np.zeros_like(k)
        nonzero = k > 0
        out[nonzero] = prefactor * expint_nu(0.5 * (p - 1.0), y[nonzero])
        out[~nonzero] = self.k0_value()
        return out

    def kspace_derivative(self, k: np.ndarray, values: np.ndarray | None = None, xp=np) -> np.ndarray:
        r""":math:`d\hat v_p/dk` at wave numbers ``k > 0`` (Å^-1), in Å^(4-p), for every real p
        from the values of :math:`\hat v_p` (no new special function):

        .. math::

            k\,\frac{d\hat v_p}{dk} = (p-3)\,\hat v_p(k) - 2C_p e^{-\sigma^2k^2/2},\qquad
            C_p = \frac{\pi^{3/2}(2\sigma^2)^{(3-p)/2}}{\Gamma(p/2)};\qquad
            \frac{d\hat v_0}{dk} = -\sigma^2 k\,\hat v_0(k)

        (from :math:`\partial_y\Gamma(s, y) = -y^{s-1}e^{-y}`; for p = 1 the classical Ewald
        virial factor).

        :param values: :math:`\hat v_p(k)` if already known (e.g. splined), else computed exactly
        :param xp: array module of ``k`` and ``values`` (``numpy`` or ``cupy``)
        """
        values = self.kspace(k) if values is None else values
        p, s2 = self.exponent, self.smearing**2
        if p == 0.0:
            return -s2 * k * values
        c_p = np.pi**1.5 * (2 * s2) ** ((3 - p) / 2) / sp.gamma(0.5 * p)
        return ((p - 3.0) * values - 2.0 * c_p * xp.exp(-0.5 * s2 * k**2)) / k

    def k0_value(self) -> float:
        r""":math:`\hat v_p(0)` where it is finite, else 0 (the dropped term), in Å^(3-p).

        .. math::

            \hat v_p(0) = \frac{2\pi^{3/2}(2\sigma^2)^{(3-p)/2}}{(p-3)\,\Gamma(p/2)}\ (p>3),
            \qquad \hat v_0(0) = (4\pi\sigma^2)^{3/4}
        """
        p, s2 = self.exponent, self.smearing**2
        if p == 0.0:
            return (4 * np.pi * s2) ** 0.75
        if p <= 3.0:
            return 0.0
        return 2 * np.pi**1.5 * (2 * s2) ** ((3 - p) / 2) / ((p - 3) * sp.gamma(0.5 * p))

    def center_term(self, basis) -> np.ndarray:
        r"""Contribution of an atom to its own l = 0 coefficients, shape ``(max_radial+1,)``.

        .. math::

            c^{\mathrm{center}}_n = \sqrt{4\pi}\int_0^\infty r^2\,\tilde R_{n0}(r)\,v_p(r)\,dr

        :param basis: a :class:`gplode.basis.RadialBasis`
        """
        return np.sqrt(4 * np.pi) * basis.integrate(self.real_space, l=0, scale=self.smearing)


#: Gauss–Legendre nodes per panel of the windowed transform's radial quadrature
_WINDOW_ORDER = 16
#: distance (in window widths w) beyond the window's centre where the quadrature stops:
#: W(r) ≤ ½ erfc(10/√2) ≈ 8e-24 there
_WINDOW_TAIL = 10.0
#: wave numbers per block of the windowed transform (bounds the (k, r) temporaries)
_WINDOW_K_BLOCK = 256


class WindowedPowerLaw:
    r"""The smeared potential of one atom, smoothly truncated: :math:`v^W_p(r) = v_p(r)\,W(r)`
    (DESIGN.md §3), for free-space structures computed in a periodic box.

    .. math::

        W(r) = \tfrac12\,\mathrm{erfc}\!\left(\frac{r - R - t\,w}{\sqrt2\,w}\right),\qquad
        t = \sqrt2\,\mathrm{erfc}^{-1}(2\epsilon)

    so that :math:`1 - W \le \epsilon` on :math:`[0, R]` and :math:`W \le \epsilon` beyond
    :math:`R_W = R + 2tw` (:attr:`extent`). Its Fourier transform is finite at every k,
    k = 0 included, and smooth in k (the window's edge adds oscillations of period
    :math:`2\pi/(R + tw)` damped as :math:`e^{-w^2k^2/2}`):

    .. math::

        \hat v^W_p(k) = 4\pi\int_0^{\infty} r^2\,v_p(r)\,W(r)\,j_0(kr)\,dr,\qquad
        \frac{d\hat v^W_p}{dk} = -4\pi\int_0^{\infty} r^3\,v_p(r)\,W(r)\,j_1(kr)\,dr

    evaluated by composite Gauss–Legendre quadrature on :math:`[0, R + tw + 10w]` (panels
    no wider than σ/2, w/2 and 2/k_max: a bounded, smooth integrand, accurate to round-off),
    never as :math:`\hat v_p` minus a tail (both are singular as :math:`k^{p-3}` for p ≤ 3).

    Units: r, R, w in Å, k in Å⁻¹; :math:`v^W_p` in Å^-p, :math:`\hat v^W_p` in Å^(3-p),
    its derivative in Å^(4-p).

    :param potential: the :class:`SmearedPowerLaw` to truncate
    :param radius: R (Å), where the window is still 1 to within ``tolerance``
    :param width: w (Å) > 0, the width of the window's fall
    :param tolerance: ε of the definition above, in (0, 0.5)
    """

    #: the k = 0 term of a periodic sum with this kernel is always finite and kept
    has_k0_term = True

    def __init__(self, potential: SmearedPowerLaw, radius: float, width: float, tolerance: float = 1e-10):
        if not np.isfinite(radius) or radius < 0:
            raise ValueError(f"radius must be a finite number >= 0 (Å), got {radius!r}")
        if not np.isfinite(width) or width <= 0:
            raise ValueError(f"width must be a finite number > 0 (Å), got {width!r}")
        if not 0 < tolerance < 0.5:
            raise ValueError(f"tolerance must be in (0, 0.5), got {tolerance!r}")
        self.potential = potential
        self.exponent, self.smearing = potential.exponent, potential.smearing
        self.radius, self.width, self.tolerance = float(radius), float(width), float(tolerance)
        self.shift = float(np.sqrt(2.0) * sp.erfcinv(2.0 * tolerance))  # t
        #: R_W: beyond it W ≤ ε
        self.extent = self.radius + 2.0 * self.shift * self.width
        self._end = self.radius + (self.shift + _WINDOW_TAIL) * self.width
        self._k0 = None

    def window(self, r: np.ndarray) -> np.ndarray:
        """W(r), dimensionless, at distances ``r`` (Å)."""
        r = np.asarray(r, dtype=float)
        return 0.5 * sp.erfc((r - self.radius - self.shift * self.width) / (np.sqrt(2.0) * self.width))

    def real_space(self, r: np.ndarray) -> np.ndarray:
        r""":math:`v^W_p(r) = v_p(r)W(r)` at distances ``r`` (Å), in Å^-p."""
        return self.potential.real_space(r) * self.window(r)

    def _rule(self, k_max: float) -> tuple[np.ndarray, np.ndarray]:
        """Nodes and weights (with 4π r² v_p W) of the radial quadrature good up to ``k_max``."""
        width = 0.5 * min(self.smearing, self.width)
        if k_max > 0:
            width = min(width, 2.0 / k_max)
        n_panels = max(8, int(np.ceil(self._end / width)))
        r, w = gauss_legendre_panels(np.linspace(0.0, self._end, n_panels + 1), _WINDOW_ORDER)
        return r, 4.0 * np.pi * w * r**2 * self.real_space(r)

    def _transform(self, k: np.ndarray, derivative: bool) -> np.ndarray:
        k = np.asarray(k, dtype=float)
        flat = k.reshape(-1)
        out = np.empty(flat.shape)
        if not flat.size:
            return out.reshape(k.shape)
        if np.any(flat < 0) or not np.all(np.isfinite(flat)):
            raise ValueError("wave numbers must be finite and >= 0")
        r, weights = self._rule(float(flat.max()))
        if derivative:
            weights = -weights * r
        for start in range(0, flat.size, _WINDOW_K_BLOCK):
            x = flat[start : start + _WINDOW_K_BLOCK, None] * r[None, :]
            # j_0(x) = sin(x)/x = sinc(x/π); j_1 from SciPy (no cancellation at small x)
            bessel = sp.spherical_jn(1, x) if derivative else np.sinc(x / np.pi)
            out[start : start + _WINDOW_K_BLOCK] = bessel @ weights
        return out.reshape(k.shape)

    def kspace(self, k: np.ndarray) -> np.ndarray:
        r""":math:`\hat v^W_p(k)` at wave numbers ``k >= 0`` (Å⁻¹), k = 0 included, in Å^(3-p)."""
        return self._transform(k, derivative=False)

    def kspace_derivative(self, k: np.ndarray) -> np.ndarray:
        r""":math:`d\hat v^W_p/dk` at wave numbers ``k >= 0`` (Å⁻¹), in Å^(4-p) (0 at k = 0)."""
        return self._transform(k, derivative=True)

    def k0_value(self) -> float:
        r""":math:`\hat v^W_p(0) = 4\pi\int_0^\infty r^2 v_p(r)W(r)\,dr` (Å^(3-p)), finite for every p."""
        if self._k0 is None:
            self._k0 = float(self.kspace(np.zeros(1))[0])
        return self._k0


#: :meth:`ShortRangePowerLaw.real_space` switches from the difference of the lower-gamma forms
#: to the difference of the regularised upper incomplete gammas beyond this x' = r²/2σ'²
#: (both accurate to round-off there; the upper form keeps the relative accuracy of the tail)
_SHORT_SWITCH = 1.0
#: below this exponent :meth:`ShortRangePowerLaw.kspace` cancels the k^{p-3} terms analytically
_SHORT_SERIES_EXPONENT = 2.9
#: composite Gauss–Legendre panels of :meth:`ShortRangePowerLaw.reach`, per σ
_REACH_PANELS = 4


class ShortRangePowerLaw:
    r"""The short-range part of a range split of the smeared potential (DESIGN.md §3):
    :math:`u_p(r) = v^{\sigma}_p(r) - v^{\sigma'}_p(r)`, σ' > σ, for ``p > 0``.

    .. math::

        u_p(r) = \frac{Q(p/2,\,r^2/2\sigma'^2) - Q(p/2,\,r^2/2\sigma^2)}{r^p},\qquad
        \hat u_p(k) = \hat v^{\sigma}_p(k) - \hat v^{\sigma'}_p(k)

    (Q: the regularised upper incomplete gamma). u is positive and falls off as a Gaussian of
    width σ' (:math:`\propto r^{-2}(r/\sigma')^{p}e^{-r^2/2\sigma'^2}`), so a periodic box a few σ'
    wider than the structure holds it with no window. Its transform is finite at k = 0 for
    every p (the :math:`k^{p-3}\Gamma((3-p)/2)` singularities of the two terms cancel) and even
    and smooth in k:

    .. math::

        \hat u_p(0) = \frac{\pi^{3/2}\,(2\sigma^2)^b}{\Gamma(p/2)}\,
        \frac{(\sigma'/\sigma)^{2b} - 1}{b},\qquad b = \frac{3-p}{2}

    (:math:`4\pi\ln(\sigma'/\sigma)` at p = 3, the limit b → 0, evaluated with ``expm1`` so that
    it is continuous across p = 3; p = 1 gives :math:`2\pi(\sigma'^2 - \sigma^2)`).

    Units: r, σ, σ' in Å, k in Å⁻¹; u in Å^-p, û in Å^(3-p).

    :param potential: the :class:`SmearedPowerLaw` (exponent p > 0, smearing σ)
    :param outer_smearing: σ' (Å) > σ, the smearing of the long-range part
    """

    #: the k = 0 term of a periodic sum with this kernel is always finite and kept
    has_k0_term = True

    def __init__(self, potential: SmearedPowerLaw, outer_smearing: float):
        if potential.exponent <= 0.0:
            raise ValueError(f"the range split needs an exponent p > 0, got {potential.exponent!r}")
        if not np.isfinite(outer_smearing) or outer_smearing <= potential.smearing:
            raise ValueError(
                f"outer_smearing must be a finite number > smearing = {potential.smearing!r} (Å), "
                f"got {outer_smearing!r}"
            )
        self.potential = potential
        self.exponent, self.smearing = potential.exponent, potential.smearing
        self.outer_smearing = float(outer_smearing)
        self.outer = SmearedPowerLaw(potential.exponent, self.outer_smearing)

    def real_space(self, r: np.ndarray) -> np.ndarray:
        r""":math:`u_p(r)` at distances ``r`` (Å), in Å^-p."""
        r = np.asarray(r, dtype=float)
        a, s2 = 0.5 * self.exponent, self.outer_smearing**2
        out = np.empty_like(r)
        near = r**2 / (2 * s2) <= _SHORT_SWITCH
        out[near] = self.potential.real_space(r[near]) - self.outer.real_space(r[near])
        far = r[~near]
        upper = sp.gammaincc(a, far**2 / (2 * s2)) - sp.gammaincc(a, far**2 / (2 * self.smearing**2))
        out[~near] = upper / far**self.exponent
        return out

    def kspace(self, k: np.ndarray) -> np.ndarray:
        r""":math:`\hat u_p(k)` at wave numbers ``k >= 0`` (Å⁻¹), k = 0 included, in Å^(3-p).

        For p < :data:`_SHORT_SERIES_EXPONENT` the common :math:`k^{p-3}\Gamma(b)` of the two
        terms is cancelled analytically (:math:`\Gamma(b, y) = \Gamma(b) - \gamma(b, y)`, b = (3−p)/2):

        .. math::

            \hat u_p(k) = \frac{\pi^{3/2}2^{3-p}}{\Gamma(p/2)}\Big[\big(\tfrac{\sigma'^2}{2}\big)^b
            g_b\big(\tfrac{\sigma'^2k^2}{2}\big) - \big(\tfrac{\sigma^2}{2}\big)^b
            g_b\big(\tfrac{\sigma^2k^2}{2}\big)\Big],\qquad g_b(y) = \gamma(b, y)/y^b

        (:func:`~gplode.lib.special.lower_gamma_ratio`; the difference of two bounded terms); from
        there on the difference of the two :meth:`SmearedPowerLaw.kspace`, whose
        :math:`k^{p-3}` is then at most :math:`k^{-0.1}` (no cancellation at small k).
        """
        k = np.asarray(k, dtype=float)
        p = self.exponent
        if p < _SHORT_SERIES_EXPONENT:
            b = 0.5 * (3.0 - p)
            prefactor = np.pi**1.5 * 2.0 ** (3.0 - p) / sp.gamma(0.5 * p)
            terms = [
                (0.5 * s**2) ** b * lower_gamma_ratio(b, 0.5 * (s * k) ** 2)
                for s in (self.outer_smearing, self.smearing)
            ]
            return prefactor * (terms[0] - terms[1])
        out = np.empty_like(k)
        nonzero = k > 0
        out[nonzero] = self.potential.kspace(k[nonzero]) - self.outer.kspace(k[nonzero])
        out[~nonzero] = self.k0_value()
        return out

    def kspace_derivative(self, k: np.ndarray) -> np.ndarray:
        r""":math:`d\hat u_p/dk` at wave numbers ``k >= 0`` (Å⁻¹), in Å^(4-p) (0 at k = 0: û is even),
        from :meth:`kspace` and the identity of :meth:`SmearedPowerLaw.kspace_derivative`:

        .. math::

            k\,\frac{d\hat u_p}{dk} = (p-3)\,\hat u_p(k)
            - 2\big(C_\sigma e^{-\sigma^2k^2/2} - C_{\sigma'}e^{-\sigma'^2k^2/2}\big),\qquad
            C_s = \frac{\pi^{3/2}(2s^2)^{(3-p)/2}}{\Gamma(p/2)}

        (bounded terms: the singular :math:`k^{p-4}` of the two potentials' derivatives never appears)."""
        k = np.asarray(k, dtype=float)
        out = np.zeros_like(k)
        nonzero = k > 0
        kk = k[nonzero]
        p = self.exponent
        c = [np.pi**1.5 * (2 * s**2) ** ((3 - p) / 2) / sp.gamma(0.5 * p) for s in (self.smearing, self.outer_smearing)]
        edge = c[0] * np.exp(-0.5 * (self.smearing * kk) ** 2) - c[1] * np.exp(-0.5 * (self.outer_smearing * kk) ** 2)
        out[nonzero] = ((p - 3.0) * self.kspace(kk) - 2.0 * edge) / kk
        return out

    def k0_value(self) -> float:
        r""":math:`\hat u_p(0)` (Å^(3-p)), finite for every p > 0 (class docstring)."""
        p, s2 = self.exponent, self.smearing**2
        b = 0.5 * (3.0 - p)
        log_ratio = 2.0 * np.log(self.outer_smearing / self.smearing)  # ln(σ'²/σ²)
        # ((σ'/σ)^{2b} − 1)/b, → ln(σ'²/σ²) as b → 0 (p = 3)
        factor = log_ratio if b == 0.0 else float(np.expm1(b * log_ratio)) / b
        return float(np.pi**1.5 * (2 * s2) ** b / sp.gamma(0.5 * p) * factor)

    def reach(self, tolerance: float) -> float:
        r"""R (Å): the smallest radius beyond which the kernel's weight
        :math:`4\pi\int_R^\infty r^2u_p(r)\,dr` is at most ``tolerance`` × :math:`\hat u_p(0)`
        (its whole weight), from composite Gauss–Legendre quadrature out to where the Gaussian
        tail is below 1e-30 of it; resolved to σ/4."""
        return kernel_reach(
            self.real_space, self.k0_value(), self.smearing, self.outer_smearing, self.exponent, tolerance
        )


def kernel_reach(real_space, total: float, step: float, length: float, exponent: float, tolerance: float) -> float:
    r"""R (Å) beyond which a positive, Gaussian-decaying kernel ``real_space`` (width ``length``,
    Å; power-law prefactor ``exponent``) keeps at most ``tolerance`` × ``total`` of its weight
    :math:`4\pi\int r^2 u\,dr`; panels of ``step``/4 Å (:data:`_REACH_PANELS` per ``step``)."""
    # beyond x = r²/2ℓ² with Q(a, x) ~ x^{a-1}e^{-x} < 1e-30 nothing is left
    a = max(0.5 * exponent, 0.5)
    end = length * np.sqrt(2.0 * float(sp.gammainccinv(a + 1.0, 1e-30))) + length
    width = step / _REACH_PANELS
    edges = np.arange(0.0, end + width, width)
    r, w = gauss_legendre_panels(edges, 8)
    mass = (4.0 * np.pi * w * r**2 * real_space(r)).reshape(len(edges) - 1, 8).sum(axis=1)
    beyond = np.cumsum(mass[::-1])[::-1]  # weight beyond each panel's left edge
    inside = np.flatnonzero(beyond > tolerance * total)
    return float(edges[inside[-1] + 1]) if inside.size else 0.0
