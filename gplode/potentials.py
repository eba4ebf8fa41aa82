r"""Smeared power-law potential of one atom, in real and reciprocal space (docs/conventions.md).

The potential object owns every formula about the potential: :math:`v_p(r)`,
:math:`\hat v_p(k)`, the k = 0 rule and the centre-atom term. Backends call it and never
re-derive these expressions.
"""

from __future__ import annotations

import numpy as np
from scipy import special as sp

from .lib.special import expint_nu, lower_gamma_ratio

__all__ = ["SmearedPowerLaw"]


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
