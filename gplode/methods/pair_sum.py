r"""Free-space (non-periodic) LODE coefficients as a pair sum (docs/conventions.md).

.. math::

    c^{(i)}_{anlm} = \sum_{j\in a,\,j\ne i} Y_{lm}(\hat d_{ij})\,F_{nl}(d_{ij})
    + \delta_{l0}\delta_{a a_i} w_c\, c^{\mathrm{center}}_n,\qquad
    F_{nl}(d) = 2\pi\int_0^\infty r^2\tilde R_{nl}(r)\int_{-1}^{1}P_l(u)\,
    v_p\big(\sqrt{r^2+d^2-2rdu}\big)\,du\,dr

:class:`PairRadialFunctions` tabulates :math:`F_{nl}` by 2D quadrature on Chebyshev
panels in d up to ``d_switch`` and uses the multipole series (docs/conventions.md) beyond; the switch
distance and the number of series terms come from error bounds (:data:`SWITCH_TOLERANCE`).

Position and strain gradients: :func:`pair_gradients` (the dense derivatives of each pair
term) and :func:`free_space_vjp` (the gradient of a linear function of the coefficients, in
O(N²) time and bounded memory), both from :meth:`PairRadialFunctions.evaluate_with_derivative`
and :func:`~gplode.lib.spherical_harmonics.solid_harmonics_gradient`.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import special as sp

from ..lib.spherical_harmonics import real_spherical_harmonics, solid_harmonics_gradient
from ..multipoles import multipole_coefficients, series_radial
from .corrections import species_index

__all__ = [
    "MAX_TABLE_BYTES",
    "MAX_TABLE_WORK",
    "SWITCH_TOLERANCE",
    "PairRadialFunctions",
    "free_space_coefficients",
    "free_space_jvp",
    "free_space_vjp",
    "pair_gradients",
]

#: bound on the relative error, at and beyond ``d_switch``, of the multipole series
#: against the exact pair function (truncation, smearing and basis tail each below it)
SWITCH_TOLERANCE = 1e-14
#: at least this many σ between the basis support and d_switch (the p = 0 overlap there
#: is e^{-50} of its maximum); large p need more (the smeared tail Γ(p/2, x)/Γ(p/2))
_MIN_SMEARING_RANGE = 10.0
#: when R + cσ needs too many terms (hard-edged basis, small σ), d_switch = this × R,
#: where the series converges at least as (R/d)² ≤ 4/9 per term (~150 terms at p = 20)
_MIN_SWITCH_RATIO = 1.5
#: series terms accepted at d_switch = R + cσ before falling back to d_switch = 1.5 R
_SERIES_TERMS = 256
_MAX_SERIES_TERMS = 4096
_CHEB_DEGREE = 20
#: inner (angular) rule: Gauss–Legendre panels of this width in w = ln(q + σ²), each with
#: _INNER_ORDER nodes; outer (radial) rule: panels ≤ min(σ, basis length scale), _OUTER_ORDER
#: nodes. Measured against a rule with 4× the nodes: ≤ 8e-15 of max|F_l| for p ∈ {0, 1, 6, 20},
#: both bases, σ ∈ {0.3, 1} (the previous fixed 12 × 12 inner rule with panels half as wide
#: used 8–12× more potential evaluations for the same error).
_INNER_PANEL, _INNER_ORDER = 1.0, 12
_OUTER_ORDER = 16
#: pairs (distance, radial node) processed at once by the quadrature
_PAIR_BLOCK = 4096
#: refuse tables needing more potential evaluations than this (~1 min on one core)
MAX_TABLE_WORK = 2e9
#: refuse tables larger than this (bytes)
MAX_TABLE_BYTES = 2**30


def _smearing_range(exponent: float) -> float:
    r"""Distance in σ beyond which the smearing changes :math:`r^{-p}` by less than the tolerance.

    :math:`v_p(r) = r^{-p}\,[1 - Q(p/2, r^2/2\sigma^2)]` (Q: regularised upper incomplete
    gamma), so :math:`c = \sqrt{2\,Q^{-1}(p/2, \varepsilon)}`, at least :data:`_MIN_SMEARING_RANGE`.
    """
    if exponent == 0.0:
        return _MIN_SMEARING_RANGE
    return max(_MIN_SMEARING_RANGE, float(np.sqrt(2.0 * sp.gammainccinv(0.5 * exponent, SWITCH_TOLERANCE))))


class PairRadialFunctions:
    r"""The pair functions :math:`F_{nl}(d)` of one (potential, basis) pair, in Å^(3/2-p).

    The basis is integrated over :math:`[0, R]`, R = ``radius``: its support radius, or for
    the GTO (no hard cutoff) further out until the bound of what the omitted weight adds
    at any d ≥ d_switch, :math:`4\pi[v_p((d-R)/2)\,\mathrm{tail}(R) + v_p(0)\,
    \mathrm{tail}((R+d)/2)]` (:meth:`~gplode.basis.RadialBasis.tail_mass`), is below
    :data:`SWITCH_TOLERANCE` of the leading far field :math:`4\pi|A_{l0}M_{nl,0}|d^{-(p+l)}`
    at d = d_switch (relative to it the bound decreases beyond, for R ≥ 11 σ_max). For large
    p and small σ the smeared core :math:`v_p(0)\propto\sigma^{-p}` overlapping the
    Gaussian tail can otherwise exceed :math:`d^{-p}`.

    Near field (``d < d_switch``): the inner integral is taken over :math:`q = |r-d|^2`
    with the substitution :math:`w = \ln(q + \sigma^2)`, which resolves both the smearing
    scale σ² near q = 0 and the power-law scale q far away, on Gauss–Legendre panels of
    fixed width in w (their number grows with the w-range); the outer r rule has panels no
    wider than σ. F is then interpolated on Chebyshev panels of width ≤ 2σ (degree 20).

    Far field (``d >= d_switch``): the multipole series of the basis restricted to [0, R],

    .. math::

        F_{nl}(d) = 4\pi d^{-p}\sum_{k<K_l} A^{(p)}_{lk}\,m_{nl,k}\,(R/d)^{l+2k},\qquad
        m_{nl,k} = \int_0^R r^2\tilde R_{nl}(r)\,(r/R)^{l+2k}\,dr

    exact for the unsmeared potential. ``d_switch = R + cσ``, c such that the smearing
    correction :math:`Q(p/2, c^2/2)` (relative) is below :data:`SWITCH_TOLERANCE`; if that
    needs more than 256 terms (a hard-edged basis with small σ: R/d close to 1),
    ``d_switch = 1.5 R``, where the series converges at least as :math:`(4/9)^k`. :math:`K_l` is the
    smallest K with the bound of the omitted terms (with
    :math:`b_{nl,k} = \int_0^R r^2|\tilde R_{nl}|(r/R)^{l+2k}dr`, non-increasing in k)

    .. math::

        4\pi d^{-p}(R/d)^{l+2K}\,\max_n b_{nl,K}\,|A_{lK}|\,/\,(1 - x\max(1, \rho_K)),
        \qquad x = (R/d)^2,\ \rho_K = |A_{l,K+1}/A_{lK}| \ (\text{non-increasing for } k \ge K)

    below :data:`SWITCH_TOLERANCE` × :math:`\max_n|F_{nl}(d_\mathrm{switch})|`; relative to
    F the bound only shrinks beyond d_switch.

    :param potential: a :class:`gplode.potentials.SmearedPowerLaw`
    :param basis: a :class:`gplode.basis.RadialBasis`
    :param progress: optional callable ``progress(done, total)`` called as the table's
        distances are computed
    :raises MemoryError: when the table needs more than :data:`MAX_TABLE_BYTES`
    :raises ValueError: when it needs more than :data:`MAX_TABLE_WORK` potential evaluations
    """

    def __init__(self, potential, basis, progress=None):
        self.potential = potential
        self.basis = basis
        self.max_angular = basis.max_angular
        sigma = potential.smearing
        self.radius = self._integration_radius()
        near_switch = self.radius + _smearing_range(potential.exponent) * sigma
        self.d_switch = near_switch
        self._check_cost()
        self._r, self._wr = basis.radial_quadrature(sigma, _OUTER_ORDER, self.radius, resolution=1.0)
        #: per l, A_lk m_nl,k for k < K_l, shape (K_l, n_radial)
        self._series = []
        if potential.exponent != 0.0:
            self._series = self._series_weights(_SERIES_TERMS)
            if self._series is None:  # (R/d)² too close to 1 (a hard-edged basis, small σ)
                self.d_switch = max(near_switch, _MIN_SWITCH_RATIO * self.radius)
                self._check_cost()
                self._series = self._series_weights(_MAX_SERIES_TERMS)
                if self._series is None:  # pragma: no cover - (R/d)² ≤ 4/9 converges long before
                    raise RuntimeError(f"multipole series did not converge in {_MAX_SERIES_TERMS} terms")
        n_panels = self._n_panels()
        self.edges = np.linspace(0.0, self.d_switch, n_panels + 1)
        nodes = np.cos(np.pi * (np.arange(_CHEB_DEGREE) + 0.5) / _CHEB_DEGREE)  # in (-1, 1)
        half = 0.5 * np.diff(self.edges)
        mid = 0.5 * (self.edges[1:] + self.edges[:-1])
        values = self._quadrature((mid[:, None] + half[:, None] * nodes[None, :]).ravel(), progress)
        values = values.reshape(n_panels, _CHEB_DEGREE, *values.shape[1:])  # (panels, nodes, L+1, n_radial)
        # Chebyshev coefficients per panel (discrete cosine transform of the node values)
        k = np.arange(_CHEB_DEGREE)
        cosines = np.cos(np.pi * k[:, None] * (np.arange(_CHEB_DEGREE) + 0.5)[None, :] / _CHEB_DEGREE)
        coefficients = (2.0 / _CHEB_DEGREE) * np.einsum("ki,pi...->pk...", cosines, values)
        coefficients[:, 0] *= 0.5
        self._coefficients = coefficients  # (n_panels, degree, L+1, n_radial)

    def _n_panels(self) -> int:
        """Chebyshev panels on [0, d_switch]: width ≤ 2σ and ≤ twice the basis length scale."""
        width = min(2.0 * self.potential.smearing, 2.0 * self.basis.length_scale)
        return max(2, int(np.ceil(self.d_switch / width)))

    # --- construction -----------------------------------------------------------------

    def _integration_radius(self) -> float:
        """R: ``support_radius``, grown for the GTO until its omitted tail is negligible."""
        pot, basis = self.potential, self.basis
        radius = basis.support_radius
        if pot.exponent == 0.0:  # the far field is 0: relative to the table's maximum, e^-40 is
            return radius
        monopoles = [
            np.abs(multipole_coefficients(pot.exponent, l, 1)[0] * basis.moments(l, 1)[:, 0]).max()
            for l in range(self.max_angular + 1)
        ]
        step = 0.25 * basis.length_scale
        while True:
            d_switch = radius + _smearing_range(pot.exponent) * pot.smearing  # the bound only shrinks beyond
            far = 4.0 * np.pi * min(m * d_switch ** -(pot.exponent + l) for l, m in enumerate(monopoles))
            middle = 0.5 * (radius + d_switch)
            v_middle, v_core = pot.real_space(np.array([0.5 * (d_switch - radius), 0.0]))
            omitted = 4.0 * np.pi * (v_middle * basis.tail_mass(radius) + v_core * basis.tail_mass(middle))
            if omitted <= SWITCH_TOLERANCE * far:
                return radius
            radius += step

    def _check_cost(self) -> None:
        """Refuse, before anything is allocated, tables beyond :data:`MAX_TABLE_BYTES` or
        :data:`MAX_TABLE_WORK` potential evaluations (estimated on a 64 × 64 sample of
        (distance, radius) for the inner panels)."""
        basis, sigma, L = self.basis, self.potential.smearing, self.max_angular
        n_panels = self._n_panels()
        n_d = n_panels * _CHEB_DEGREE
        n_r = max(4, int(np.ceil(self.radius / min(sigma, basis.length_scale)))) * _OUTER_ORDER
        table = 2 * n_d * (L + 1) * basis.n_radial * 8  # node values + Chebyshev coefficients
        what = (
            f"the free-space pair table (σ = {sigma:g} Å, basis radius {self.radius:.3g} Å: {n_panels} panels up "
            f"to d_switch = {self.d_switch:.3g} Å, {n_r} radial nodes)"
        )
        remedy = (
            "lower `smearing` or raise `cutoff`"
            if sigma > basis.length_scale
            else "raise `smearing`, or lower `cutoff`"
        )
        if table + n_r * (L + 1) * basis.n_radial * 8 > MAX_TABLE_BYTES:
            raise MemoryError(
                f"{what} needs {table / 2**30:.2f} GiB, more than the limit of {MAX_TABLE_BYTES / 2**30:.0f} GiB; "
                f"{remedy}; or lower `max_radial` or `max_angular`"
            )
        d = np.linspace(0.0, self.d_switch, 65)[1:, None]
        r = np.linspace(0.0, self.radius, 65)[None, 1:]
        work = n_d * n_r * _INNER_ORDER * float(np.mean(self._inner_panels(d, r)))
        if work > MAX_TABLE_WORK:
            raise ValueError(
                f"{what} needs ~{work:.2g} potential evaluations, more than the limit of {MAX_TABLE_WORK:.0e} "
                f"(~1 min); {remedy}"
            )

    def _inner_panels(self, d: np.ndarray, r: np.ndarray):
        """Number of inner panels of each (d, r): the w-range ln(q_max + σ²) − ln(q_min + σ²) over _INNER_PANEL."""
        s2 = self.potential.smearing**2
        width = np.log1p(4.0 * r * d / ((r - d) ** 2 + s2))
        return np.maximum(1, np.ceil(width / _INNER_PANEL)).astype(int)

    def _series_weights(self, limit: int) -> list[np.ndarray] | None:
        """:math:`A_{lk} m_{nl,k}` for :math:`k < K_l`, with :math:`K_l` from the tail bound at
        ``d_switch`` relative to the quadrature there; None if some :math:`K_l > ` ``limit``.

        The moments are computed for k < 64, 128, … until the bound is met, on radial
        panels narrow enough for :math:`(r/R)^{2k}` (≤ 8R/(2k), ≤ 8 e-folds per panel).
        """
        p, basis, radius = self.potential.exponent, self.basis, self.radius
        at_switch = self._quadrature(np.array([self.d_switch]))[0]  # (L+1, n_radial)
        x = (radius / self.d_switch) ** 2
        weights = []
        for l in range(self.max_angular + 1):
            scale = np.abs(at_switch[l]).max()
            n_max = 64
            while True:
                k = np.arange(n_max)
                r, w = basis.radial_quadrature(8.0 * radius / (2 * n_max + l), _OUTER_ORDER, radius, resolution=1.0)
                values = (w * r**2)[:, None] * basis.evaluate(r, l)  # (n_r, n_radial)
                powers = (r / radius)[:, None] ** (l + 2 * k)[None, :]  # (n_r, n_max)
                bounds = (powers.T @ np.abs(values)).max(axis=1)  # max_n b_nl,k
                a = multipole_coefficients(p, l, n_max + 1)
                ratio = np.abs(a[1:]) / np.maximum(np.abs(a[:-1]), np.finfo(float).tiny)
                contraction = x * np.maximum(1.0, ratio)
                with np.errstate(divide="ignore"):
                    growth = np.where(contraction < 1.0, 1.0 / (1.0 - contraction), np.inf)
                omitted = 4.0 * np.pi * self.d_switch**-p * x ** (0.5 * l + k) * bounds * np.abs(a[:-1]) * growth
                below = np.flatnonzero(omitted <= SWITCH_TOLERANCE * scale)
                if below.size:
                    break
                if n_max >= limit:
                    return None
                n_max *= 2
            n_terms = max(1, int(below[0]))
            weights.append(a[:n_terms, None] * (powers[:, :n_terms].T @ values))
        return weights

    def _quadrature(self, d: np.ndarray, progress=None) -> np.ndarray:
        """F_nl at distances ``d`` (> 0) by direct 2D quadrature, shape ``(n_d, L+1, n_radial)``.

        All (distance, radial node) pairs of a block of distances at once; pairs with the
        same number of inner panels share one rule.
        """
        pot, basis, L = self.potential, self.basis, self.max_angular
        s2 = pot.smearing**2
        r = self._r
        radial = np.stack([(self._wr * r**2)[:, None] * basis.evaluate(r, l) for l in range(L + 1)])  # (L+1, n_r, N)
        d = np.asarray(d, dtype=float)
        out = np.empty((d.size, L + 1, basis.n_radial))
        block = max(1, _PAIR_BLOCK // r.size)
        for start in range(0, d.size, block):
            dd = d[start : start + block, None]
            two_rd = (2.0 * r[None, :] * dd).ravel()
            q_min = ((r[None, :] - dd) ** 2).ravel()
            base = q_min + s2
            width = np.log1p(2.0 * two_rd / base)  # w-range: ln(q_max + σ²) - ln(q_min + σ²)
            panels = self._inner_panels(dd, r[None, :]).ravel()
            inner = np.empty((L + 1, two_rd.size))
            for n_panels in np.unique(panels):
                pairs = np.flatnonzero(panels == n_panels)
                t, wt = _inner_rule(int(n_panels))
                w = width[pairs, None] * t[None, :]
                delta = base[pairs, None] * np.expm1(w)  # q - q_min, accurate for small w
                jac = width[pairs, None] * wt[None, :] * base[pairs, None] * np.exp(w)  # dq = (q + σ²) dw
                f = pot.real_space(np.sqrt(q_min[pairs, None] + delta)) * jac
                u = 1.0 - delta / two_rd[pairs, None]
                # Legendre recurrence, each P_l contracted with f as soon as it is known
                previous, current = np.ones_like(u), u
                inner[0, pairs] = f.sum(axis=1)
                if L > 0:
                    inner[1, pairs] = (u * f).sum(axis=1)
                for l in range(2, L + 1):
                    previous, current = current, ((2 * l - 1) * u * current - (l - 1) * previous) / l
                    inner[l, pairs] = (current * f).sum(axis=1)
            inner *= 2.0 * np.pi / two_rd[None, :]
            inner = inner.reshape(L + 1, dd.shape[0], r.size)
            out[start : start + dd.shape[0]] = np.einsum("ldr,lrn->dln", inner, radial)
            if progress is not None:
                progress(min(start + block, d.size), d.size)
        return out

    # --- evaluation ---------------------------------------------------------------------

    def __call__(self, d: np.ndarray, l: int) -> np.ndarray:
        """F_nl(d) for distances ``d`` (Å, > 0), shape ``(len(d), n_radial)``, in Å^(3/2-p)."""
        return self.evaluate(d)[:, l]

    def evaluate(self, d: np.ndarray) -> np.ndarray:
        """F_nl(d) for every l at once, shape ``(len(d), max_angular+1, n_radial)``."""
        return self._evaluate(d, derivative=False)[0]

    def evaluate_with_derivative(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r""":math:`F_{nl}(d)` (Å^(3/2-p)) and :math:`F'_{nl}(d) = dF_{nl}/dd` (Å^(1/2-p)) for every l.

        Near field (``d < d_switch``): the exact derivative of the panel's Chebyshev polynomial,

        .. math::

            F = \sum_k c_k T_k(x),\qquad x = \frac{2d - a - b}{b - a},\qquad
            F' = \frac{2}{b - a}\sum_k c_k T'_k(x),\qquad
            T'_k = 2T_{k-1} + 2x\,T'_{k-1} - T'_{k-2}

        on the panel [a, b]. Far field: the term-by-term derivative of the multipole series,

        .. math::

            F'_{nl}(d) = -\frac{4\pi}{d}\,d^{-p}\sum_{k<K_l}(p + l + 2k)\,
            A^{(p)}_{lk}\,m_{nl,k}\,(R/d)^{l+2k}

        (0 for p = 0, whose far field is 0).

        :param d: distances in Å, shape ``(n,)``, all > 0
        :return: ``(F, dF/dd)``, each of shape ``(n, max_angular+1, n_radial)``
        """
        values, derivatives = self._evaluate(d, derivative=True)
        return values, derivatives

    def _evaluate(self, d: np.ndarray, derivative: bool) -> list[np.ndarray]:
        """[F] or [F, dF/dd], each ``(len(d), max_angular+1, n_radial)``: one panel lookup and
        one series evaluation shared by :meth:`evaluate` and :meth:`evaluate_with_derivative`."""
        d = np.asarray(d, dtype=float).reshape(-1)
        orders = 1 + int(derivative)
        out = [np.empty((d.size, self.max_angular + 1, self.basis.n_radial)) for _ in range(orders)]
        near = d < self.d_switch
        if np.any(near):
            dn = d[near]
            panel = np.clip(np.searchsorted(self.edges, dn, side="right") - 1, 0, self.edges.size - 2)
            a, b = self.edges[panel], self.edges[panel + 1]
            x = (2.0 * dn - a - b) / (b - a)
            # Chebyshev polynomials T_k(x) of every distance (and T'_k(x) = dT_k/dx), then one
            # matrix product per panel with that panel's coefficients (BLAS instead of a gather per term)
            chebyshev = np.empty((orders, dn.size, _CHEB_DEGREE))
            chebyshev[0, :, 0], chebyshev[0, :, 1] = 1.0, x
            if derivative:
                chebyshev[1, :, 0], chebyshev[1, :, 1] = 0.0, 1.0
            for k in range(2, _CHEB_DEGREE):
                chebyshev[0, :, k] = 2.0 * x * chebyshev[0, :, k - 1] - chebyshev[0, :, k - 2]
                if derivative:
                    chebyshev[1, :, k] = (
                        2.0 * chebyshev[0, :, k - 1] + 2.0 * x * chebyshev[1, :, k - 1] - chebyshev[1, :, k - 2]
                    )
            if derivative:
                chebyshev[1] *= (2.0 / (b - a))[:, None]  # dx/dd
            values = np.empty((orders, dn.size, out[0].shape[1] * out[0].shape[2]))
            order = np.argsort(panel, kind="stable")
            bounds = np.searchsorted(panel[order], np.arange(self.edges.size))
            for p in np.unique(panel):
                rows = order[bounds[p] : bounds[p + 1]]
                values[:, rows] = chebyshev[:, rows] @ self._coefficients[p].reshape(_CHEB_DEGREE, -1)
            for result, value in zip(out, values, strict=True):
                result[near] = value.reshape(dn.size, *result.shape[1:])
        if np.any(~near):
            far = d[~near]
            p = self.potential.exponent
            # no series for p = 0 (a Gaussian: beyond d_switch below e^-50 of its maximum)
            for result in out:
                result[~near] = 0.0
            for l, weights in enumerate(self._series):
                out[0][~near, l] = series_radial(far, p, l, weights, self.radius)
                if derivative:  # each term is ∝ d^-(p+l+2k)
                    powers = p + l + 2.0 * np.arange(weights.shape[0])
                    out[1][~near, l] = -series_radial(far, p, l, powers[:, None] * weights, self.radius) / far[:, None]
        return out

    @property
    def series_terms(self) -> list[int]:
        """Number of multipole terms :math:`K_l` used beyond ``d_switch``, per l."""
        return [weights.shape[0] for weights in self._series]


@functools.cache
def _inner_rule(n_panels: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss–Legendre rule on [0, 1] with ``n_panels`` equal panels."""
    x, w = np.polynomial.legendre.leggauss(_INNER_ORDER)
    edges = np.linspace(0.0, 1.0, n_panels + 1)
    half = 0.5 * np.diff(edges)
    nodes = (0.5 * (edges[1:] + edges[:-1]))[:, None] + half[:, None] * x[None, :]
    return nodes.ravel(), (half[:, None] * w[None, :]).ravel()


def free_space_coefficients(
    system, species, pair_functions, center_term, center_atom_weight, max_angular, chunk=250_000, centres=None
):
    """Free-space coefficients of every atom of ``system`` (or of the atoms ``centres`` only).

    Centres are processed in blocks of about ``chunk / n_atoms`` so that memory stays
    bounded (~``chunk`` × (L+1)² × n_radial floats) whatever the cluster size.

    :param system: a non-periodic :class:`gplode.systems.System`
    :param species: sorted neighbour atomic numbers (axis 1 of the output)
    :param pair_functions: :class:`PairRadialFunctions` of the calculator
    :param center_term: c^center_n, shape ``(n_radial,)``
    :param center_atom_weight: w_c
    :param chunk: number of (centre, neighbour) pairs handled at once
    :param centres: indices of the centre atoms, ``(n_centres,)`` (default: every atom), e.g. to
        check a faster method on a sample of a large structure
    :return: shape ``(n_atoms, len(species), (max_angular+1)**2, n_radial)``, or
        ``(n_centres, ...)`` for the rows of ``centres``
    """
    n, n_lm = system.n_atoms, (max_angular + 1) ** 2
    n_radial = pair_functions.basis.n_radial
    rows_of = np.arange(n) if centres is None else np.asarray(centres, dtype=int).reshape(-1)
    kind, present = species_index(system.numbers, species)
    onehot = (system.numbers[:, None] == np.asarray(species)[None, :]).astype(float)  # (n_atoms, n_species)
    out = np.zeros((rows_of.size, len(species), n_lm, n_radial))
    block = max(1, chunk // n)
    for start in range(0, rows_of.size, block):
        rows = np.arange(start, min(start + block, rows_of.size))
        centres = rows_of[rows]
        vectors = (system.positions[None, :, :] - system.positions[centres, None, :]).reshape(-1, 3)
        d = np.linalg.norm(vectors, axis=1)
        self_pair = d == 0.0  # the centre itself (no two atoms coincide: gplode.systems checks it)
        d_safe = np.where(self_pair, 1.0, d)
        ylm = real_spherical_harmonics(vectors, max_angular)
        ylm[self_pair] = 0.0
        radial_all = pair_functions.evaluate(d_safe).reshape(centres.size, n, max_angular + 1, n_radial)
        for l in range(max_angular + 1):
            radial = radial_all[:, :, l]
            angular = ylm[:, l * l : (l + 1) ** 2].reshape(centres.size, n, 2 * l + 1)
            out[rows, :, l * l : (l + 1) ** 2, :] = np.einsum("cjm,cjn,ja->camn", angular, radial, onehot)
    rows = np.flatnonzero(present[rows_of])
    out[rows, kind[rows_of[rows]], 0, :] += center_atom_weight * center_term
    return out


def _pair_geometry(vectors: np.ndarray, pair_functions, max_angular: int):
    r"""What the gradients of the pair terms :math:`Y_{lm}(\hat d)F_{nl}(d)` need, for ``vectors`` d.

    :return: ``self_pair`` ``(P,)`` (d = 0: the centre itself), ``d`` ``(P,)`` (1 where d = 0),
        ``unit`` d̂ ``(P, 3)``, ``ylm`` ``(P, (L+1)**2)``, :math:`\nabla\mathcal Y_{lm}(\hat d)`
        ``(P, 3, (L+1)**2)``, F and F' ``(P, L+1, n_radial)``
    """
    d = np.linalg.norm(vectors, axis=1)
    self_pair = d == 0.0  # no two atoms coincide: gplode.systems checks it
    d = np.where(self_pair, 1.0, d)
    unit = vectors / d[:, None]
    ylm, solid = solid_harmonics_gradient(vectors, max_angular)
    radial, derivative = pair_functions.evaluate_with_derivative(d)
    return self_pair, d, unit, ylm, solid, radial[:, : max_angular + 1], derivative[:, : max_angular + 1]


def pair_gradients(system, pair_functions, max_angular, centres):
    r"""Dense position derivatives of the pair terms of the centres ``centres``.

    .. math::

        D^{(i)}_{j\alpha,nlm} = \frac{\partial}{\partial r_{j\alpha}}\big[Y_{lm}(\hat d_{ij})F_{nl}(d_{ij})\big]
        = \Big[F'_{nl}(d)\,\hat d\,Y_{lm}(\hat d) + F_{nl}(d)\,
        \frac{\nabla\mathcal Y_{lm}(\hat d) - l\,\hat d\,Y_{lm}(\hat d)}{d}\Big]_\alpha,
        \qquad \mathbf d = \mathbf d_{ij} = \mathbf r_j - \mathbf r_i

    (:math:`\mathcal Y_{lm}` the solid harmonics), for every atom j ≠ i, whatever its
    species; exactly 0 for j = i. The Jacobian of :func:`free_space_coefficients` follows:
    :math:`\partial c^{(i)}_{a}/\partial r_j = D^{(i)}_j` for j ∈ a, j ≠ i, and
    :math:`\partial c^{(i)}_{a}/\partial r_i = -\sum_{j\in a,\,j\ne i} D^{(i)}_j`
    (the centre term does not depend on positions).

    The result is dense, ``len(centres) × n_atoms × 3 × channels``; for the gradient of a
    function of the coefficients use :func:`free_space_vjp` instead.

    :param system: a non-periodic :class:`gplode.systems.System`
    :param pair_functions: :class:`PairRadialFunctions` with ``max_angular`` ≥ the one given
    :param max_angular: largest l
    :param centres: indices of the centre atoms, shape ``(n_centres,)``
    :return: shape ``(n_centres, n_atoms, 3, (max_angular+1)**2, n_radial)`` (Cartesian x, y, z
        on axis 2), in Å^(1/2-p)
    """
    centres = np.asarray(centres, dtype=int).reshape(-1)
    n, L = system.n_atoms, int(max_angular)
    vectors = (system.positions[None, :, :] - system.positions[centres, None, :]).reshape(-1, 3)
    self_pair, d, unit, ylm, solid, radial, derivative = _pair_geometry(vectors, pair_functions, L)
    ells = np.repeat(np.arange(L + 1), 2 * np.arange(L + 1) + 1)
    grad_ylm = (solid - ells[None, None, :] * unit[:, :, None] * ylm[:, None, :]) / d[:, None, None]  # ∇Y_lm(d̂)
    out = np.empty((vectors.shape[0], 3, (L + 1) ** 2, radial.shape[2]))
    for l in range(L + 1):
        lm = slice(l * l, (l + 1) ** 2)
        out[:, :, lm, :] = (unit[:, :, None, None] * ylm[:, None, lm, None]) * derivative[:, None, None, l, :]
        out[:, :, lm, :] += grad_ylm[:, :, lm, None] * radial[:, None, None, l, :]
    out[self_pair] = 0.0
    return out.reshape(centres.size, n, *out.shape[1:])


def free_space_vjp(system, species, pair_functions, weights, max_angular, chunk=250_000):
    r"""Position and strain gradients of a linear function of the free-space coefficients.

    .. math::

        \mathcal L = \sum_{i,a,nlm} w_{i,a,lm,n}\,c^{(i)}_{anlm},\qquad
        \frac{\partial\mathcal L}{\partial\mathbf r_j} = \sum_{i\ne j}\mathbf g_{ij}
        - \sum_{k\ne j}\mathbf g_{jk},\qquad
        \frac{\partial\mathcal L}{\partial\varepsilon_{ab}} = \sum_{i\ne j} d_{ij,a}\,g_{ij,b}
        = \sum_j r_{ja}\,\frac{\partial\mathcal L}{\partial r_{jb}}

    with the sums over neighbours j of a species in ``species`` and every centre i, and

    .. math::

        \mathbf g_{ij} = \sum_{lm}\Big[\hat d\,Y_{lm}(\hat d)\Big(B_{lm} - \frac{l}{d}A_{lm}\Big)
        + \frac{A_{lm}}{d}\nabla\mathcal Y_{lm}(\hat d)\Big],\qquad
        A_{lm} = \sum_n w_{i,a_j,lm,n}F_{nl}(d),\quad B_{lm} = \sum_n w_{i,a_j,lm,n}F'_{nl}(d)

    (:math:`\mathbf d = \mathbf r_j - \mathbf r_i`; :func:`pair_gradients` contracted with the
    weights). The strain is that of :math:`\mathbf r \to \mathbf r(1+\varepsilon)` with
    positions as row vectors, :math:`r'_b = \sum_a r_a(\delta_{ab} + \varepsilon_{ab})`; it is
    accumulated from the pair vectors, so it does not depend on the origin. For a given
    weight tensor, this is also the gradient of any function of the coefficients whose
    derivative with respect to them is ``weights``.

    Centres are processed in blocks of about ``chunk`` / (number of neighbour atoms), so that
    memory stays bounded (~``chunk`` × (L+1)² × n_radial floats); O(N²) time.

    :param system: a non-periodic :class:`gplode.systems.System`
    :param species: sorted neighbour atomic numbers (axis 1 of ``weights``); atoms of other
        species are centres only
    :param pair_functions: :class:`PairRadialFunctions` of the calculator
    :param weights: :math:`\partial\mathcal L/\partial c`, shape
        ``(n_atoms, len(species), (max_angular+1)**2, n_radial)``
    :param max_angular: largest l
    :param chunk: number of (centre, neighbour) pairs handled at once
    :return: ``positions`` ∂L/∂r, shape ``(n_atoms, 3)`` (units of L per Å), and ``strain``
        ∂L/∂ε, shape ``(3, 3)`` (units of L)
    """
    n, L = system.n_atoms, int(max_angular)
    n_lm, n_radial = (L + 1) ** 2, pair_functions.basis.n_radial
    weights = np.asarray(weights, dtype=float)
    expected = (n, len(species), n_lm, n_radial)
    if weights.shape != expected:
        raise ValueError(f"weights must have shape {expected}, got {weights.shape}")
    kind, present = species_index(system.numbers, species)
    neighbours = np.flatnonzero(present)
    positions = np.zeros((n, 3))
    strain = np.zeros((3, 3))
    if neighbours.size == 0:
        return positions, strain
    ells = np.repeat(np.arange(L + 1), 2 * np.arange(L + 1) + 1)
    block = max(1, chunk // neighbours.size)
    for start in range(0, n, block):
        centres = np.arange(start, min(start + block, n))
        vectors = (system.positions[None, neighbours, :] - system.positions[centres, None, :]).reshape(-1, 3)
        self_pair, d, unit, ylm, solid, radial, derivative = _pair_geometry(vectors, pair_functions, L)
        w = weights[centres][:, kind[neighbours]].reshape(-1, n_lm, n_radial)  # w_{i, a_j} of each pair
        a = np.empty((vectors.shape[0], n_lm))
        b = np.empty((vectors.shape[0], n_lm))
        for l in range(L + 1):
            lm = slice(l * l, (l + 1) ** 2)
            a[:, lm] = np.einsum("pmn,pn->pm", w[:, lm], radial[:, l])
            b[:, lm] = np.einsum("pmn,pn->pm", w[:, lm], derivative[:, l])
        a[self_pair] = 0.0
        b[self_pair] = 0.0
        along = np.einsum("pm,pm->p", ylm, b - ells[None, :] * a / d[:, None])
        g = unit * along[:, None] + np.einsum("pxm,pm->px", solid, a) / d[:, None]  # ∂L/∂d of each pair
        g = g.reshape(centres.size, neighbours.size, 3)
        positions[neighbours] += g.sum(axis=0)
        positions[centres] -= g.sum(axis=1)
        strain += np.einsum("pa,pb->ab", vectors, g.reshape(-1, 3))
    return positions, strain


def free_space_jvp(system, species, pair_functions, positions, strain, max_angular, chunk=250_000):
    r"""Jacobian–vector product of :func:`free_space_coefficients`: the change of every
    coefficient along the tangents ``positions`` :math:`\dot r` ``(n_atoms, 3)`` and ``strain``
    :math:`\dot\varepsilon` ``(3, 3)`` (r → r(1+ε) moves every atom by :math:`r\dot\varepsilon`):

    .. math::

        \dot c^{(i)}_{anlm} = \sum_{j\in a, j\ne i} D_{ij}\cdot(\dot r'_j - \dot r'_i),\qquad
        \dot r' = \dot r + r\,\dot\varepsilon

    with the pair derivatives :math:`D_{ij}` of :func:`pair_gradients`; O(N²) time, centres in
    blocks of about ``chunk / n_atoms``.

    :return: ``(n_atoms, len(species), (max_angular+1)**2, n_radial)``
    """
    n = system.n_atoms
    moved = np.asarray(positions, dtype=float) + system.positions @ np.asarray(strain, dtype=float)
    onehot = (system.numbers[:, None] == np.asarray(species)[None, :]).astype(float)  # (n_atoms, n_species)
    out = np.zeros((n, len(species), (max_angular + 1) ** 2, pair_functions.basis.n_radial))
    block = max(1, chunk // n)
    for start in range(0, n, block):
        centres = np.arange(start, min(start + block, n))
        pairs = pair_gradients(system, pair_functions, max_angular, centres)
        relative = moved[None, :, :] - moved[centres, None, :]  # (centres, n, 3)
        out[centres] = np.einsum("cjxmn,ja,cjx->camn", pairs, onehot, relative)
    return out
