r"""Special functions for smeared power-law potentials of any real exponent.

Everything here is vectorised NumPy/SciPy in float64. The two functions the rest of
the package needs are

* :func:`lower_gamma_ratio` :math:`\gamma(a, x) / x^a`, the real-space profile of the
  smeared potential (docs/conventions.md), finite and accurate at :math:`x = 0`;
* :func:`expint_nu` the generalised exponential integral
  :math:`E_\nu(y) = \int_1^\infty e^{-yt} t^{-\nu} dt = y^{\nu-1}\Gamma(1-\nu, y)`, which
  carries the reciprocal-space kernel for *every* real exponent, including the
  negative-order upper incomplete gamma functions :math:`\Gamma(s, y)`, :math:`s \le 0`,
  that library ``gammaincc`` cannot evaluate.

:func:`upper_gamma` exposes :math:`\Gamma(s, x)` for any real ``s`` built on the same code.
"""

from __future__ import annotations

import numpy as np
from scipy import special as sp

__all__ = ["expint_nu", "lower_gamma_ratio", "upper_gamma"]

#: Below this argument :func:`expint_nu` uses the power series, above it the
#: continued fraction (both converge there to round-off; the series cancels at most a
#: factor e^y ≤ e, the continued fraction needs at most ~80 terms at y = 1).
_SERIES_SWITCH = 1.0
_SERIES_TERMS = 30
_CF_MAX_ITER = 400
_EULER_GAMMA = 0.5772156649015329
#: ζ(k) for k = 2..60, used in the series of ln Γ(1 - ε) / ε (|ε| ≤ 1/2, terms ~ 2^-k / k).
_ZETA = sp.zeta(np.arange(2, 61, dtype=float))


def lower_gamma_ratio(a: float, x: np.ndarray) -> np.ndarray:
    r"""Return :math:`\gamma(a, x) / x^a` for ``a > 0`` and ``x >= 0``.

    .. math::

        \frac{\gamma(a, x)}{x^a} = \sum_{n \ge 0} \frac{(-x)^n}{n!\,(a + n)}
        \quad (x \le 1), \qquad
        \frac{\Gamma(a)\,P(a, x)}{x^a} \quad (x > 1)

    The series avoids the 0/0 of the second form at ``x = 0`` (value ``1/a``); the
    alternating terms cancel at most a factor e for ``x <= 1``.

    :param a: order, ``a > 0``
    :param x: non-negative arguments, any shape
    :return: array of the same shape as ``x``
    """
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    small = x <= 1.0
    xs = x[small]
    term = np.ones_like(xs)
    total = term / a
    for n in range(1, 40):  # x ≤ 1: 1/40! < 1e-47, far below round-off
        term = term * (-xs) / n
        total = total + term / (a + n)
    out[small] = total
    xl = x[~small]
    # gammainc is the regularised P(a, x); multiply back Γ(a) in log space so that large
    # a does not overflow Γ(a) before dividing by x^a.
    out[~small] = sp.gammainc(a, xl) * np.exp(sp.gammaln(a) - a * np.log(xl))
    return out


def _lngamma_1m_over_eps(eps: float) -> float:
    r"""Return :math:`\ln\Gamma(1-\varepsilon)/\varepsilon` for ``|eps| <= 1/2``.

    Uses :math:`\ln\Gamma(1-\varepsilon) = \gamma_E\varepsilon + \sum_{k\ge2}\zeta(k)\varepsilon^k/k`,
    which stays accurate as ``eps -> 0`` where ``gammaln(1 - eps) / eps`` would not.
    """
    k = np.arange(2, 2 + _ZETA.size)
    return _EULER_GAMMA + float(np.sum(_ZETA * eps ** (k - 1) / k))


def _log1p_over(x: float) -> float:
    """``log1p(x) / x`` with the limit 1 at ``x = 0``."""
    return 1.0 if x == 0.0 else float(np.log1p(x) / x)


def _expint_series(nu: float, y: np.ndarray) -> np.ndarray:
    r"""Power series of :math:`E_\nu(y)` for ``0 < y <= 1``.

    .. math::

        E_\nu(y) = \Gamma(1-\nu)\,y^{\nu-1} - \sum_{k\ge0}\frac{(-y)^k}{k!\,(1-\nu+k)}

    When ``nu`` is near a positive integer ``m + 1`` the first term and the ``k = m``
    term both diverge (as ±1/ε, ε = ν − m − 1). They are combined analytically:

    .. math::

        T = -\frac{(-y)^m}{m!}\,\frac{\operatorname{expm1}(\varepsilon h)}{\varepsilon},\quad
        h = \ln y + \frac{\ln\Gamma(1-\varepsilon)}{\varepsilon}
            - \sum_{j=1}^{m}\frac{\ln(1+\varepsilon/j)}{\varepsilon}

    which is smooth through ε = 0 (where it gives the digamma form of :math:`E_{m+1}`).
    """
    m = int(np.round(nu)) - 1
    out = np.zeros_like(y)
    if m >= 0:
        eps = nu - m - 1.0
        h = np.log(y) + _lngamma_1m_over_eps(eps)
        h = h - sum(_log1p_over(eps / j) / j for j in range(1, m + 1))
        # expm1(ε h) / ε = h · exprel(ε h), exact at ε = 0
        out -= (-y) ** m / sp.factorial(m) * h * sp.exprel(eps * h)
    else:
        out += sp.gamma(1.0 - nu) * y ** (nu - 1.0)
    term = np.ones_like(y)
    for k in range(_SERIES_TERMS):
        if k > 0:
            term = term * (-y) / k
        if k != m:
            out -= term / (1.0 - nu + k)
    return out


def _expint_continued_fraction(nu: float, y: np.ndarray) -> np.ndarray:
    r"""Continued fraction of :math:`E_\nu(y)` (modified Lentz), for ``y > 1``.

    .. math::

        E_\nu(y) = e^{-y}\left(\frac{1}{y+\nu-}\,\frac{1\cdot\nu}{y+\nu+2-}\,
        \frac{2(\nu+1)}{y+\nu+4-}\cdots\right)
    """
    tiny = 1e-300
    b = y + nu
    c = np.full_like(y, 1.0 / tiny)
    d = 1.0 / b
    h = d.copy()
    active = np.arange(y.size)  # elements not yet converged: the loop works on these only
    for i in range(1, _CF_MAX_ITER + 1):
        an = -i * (nu - 1.0 + i)
        b[active] += 2.0
        dd = an * d[active] + b[active]
        dd = np.where(np.abs(dd) < tiny, tiny, dd)
        cc = b[active] + an / c[active]
        cc = np.where(np.abs(cc) < tiny, tiny, cc)
        dd = 1.0 / dd
        delta = cc * dd
        d[active], c[active] = dd, cc
        h[active] *= delta
        active = active[np.abs(delta - 1.0) >= 1e-16]
        if active.size == 0:
            break
    return h * np.exp(-y)


def expint_nu(nu: float, y: np.ndarray) -> np.ndarray:
    r"""Generalised exponential integral :math:`E_\nu(y)` for real ``nu > -1`` and ``y >= 0``.

    .. math::

        E_\nu(y) = \int_1^\infty e^{-yt}\,t^{-\nu}\,dt = y^{\nu-1}\,\Gamma(1-\nu, y)

    At ``y = 0`` the value is ``1/(nu - 1)`` for ``nu > 1`` and ``+inf`` otherwise.
    Continuous in ``nu`` (no special case at integers) and free of cancellation blow-up:
    relative accuracy ~1e-15 over the whole range.

    :param nu: real order (``nu = (p - 1)/2`` for the potential of exponent p)
    :param y: non-negative arguments, any shape
    :return: array of the same shape as ``y``
    """
    y = np.asarray(y, dtype=float)
    out = np.empty_like(y)
    zero = y == 0.0
    out[zero] = 1.0 / (nu - 1.0) if nu > 1.0 else np.inf
    small = (~zero) & (y <= _SERIES_SWITCH)
    large = y > _SERIES_SWITCH
    if np.any(small):
        out[small] = _expint_series(nu, y[small])
    if np.any(large):
        out[large] = _expint_continued_fraction(nu, y[large])
    return out


def upper_gamma(s: float, x: np.ndarray) -> np.ndarray:
    r"""Non-regularised upper incomplete gamma :math:`\Gamma(s, x)` for any real ``s``.

    Computed as :math:`x^s E_{1-s}(x)`, so negative and zero orders (``s <= 0``, where
    ``scipy.special.gammaincc`` is undefined) are as accurate as positive ones.
    Requires ``s < 2`` (``nu = 1 - s > -1``); for larger ``s`` use
    ``gammaincc(s, x) * gamma(s)``.

    :param s: real order, ``s < 2``
    :param x: positive arguments
    """
    x = np.asarray(x, dtype=float)
    return x**s * expint_nu(1.0 - s, x)
