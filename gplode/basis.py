r"""Radial bases :math:`\tilde R_{nl}(r)` and their integrals (docs/conventions.md).

Two bases, behind one interface (:class:`RadialBasis`):

* :class:`GtoBasis` — featomic-compatible Gaussian-type orbitals, Löwdin-orthonormalised,
  the same for every l, no hard cutoff;
* :class:`MonomialBasis` — the "optimal" generalised-multipole basis: :math:`r^{l+2n}` on
  :math:`[0, r_0]`, Gram–Schmidt orthonormalised per l, so that ``n = 0`` is the normalised
  multipole weight :math:`\sqrt{(2l+3)/r_0^{2l+3}}\,r^l`.

Each gives values, the exact k-space integrals
:math:`\tilde I_{nl}(k) = \int_0^\infty r^2\tilde R_{nl}(r) j_l(kr)\,dr`, radial moments
:math:`M_{nl,k} = \int_0^\infty r^2\tilde R_{nl}(r)\,r^{l+2k}\,dr` (for the multipole series, docs/conventions.md)
and radial quadratures :math:`\int r^2 \tilde R_{nl} f\,dr`. All lengths in Å, wave numbers in Å^-1.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import special as sp

from ._gto_lowdin import LOWDIN
from .lib.quadrature import gauss_legendre_panels

__all__ = ["GtoBasis", "MonomialBasis", "RadialBasis", "make_basis"]


#: largest max_radial of the GTO basis. The Löwdin functions are sums of primitives with
#: coefficients growing with max_radial (overlap condition number 2e8 at 12, 4e11 at 16),
#: which cancel in float64: orthonormality by quadrature stays ≤ 1e-10 up to 16 (5e-11;
#: 1.1e-10 at 17), but the k-space integrals Ĩ_nl (₁F₁ × coefficients) reach ~1e-11 relative
#: noise at 12 (measured 8.5e-12 … 9.9e-12), 4.6e-11 at 13, and the fast backends' splines
#: are checked to 1e-11; at 11 they reach ≤ 5.7e-12.
GTO_MAX_RADIAL = 11
#: decimal digits of the extended-precision Löwdin orthonormalisation (condition number
#: ≤ 1e12 loses ≤ 12 of them)
_LOWDIN_DIGITS = 40


@functools.cache
def _lowdin_matrix(max_radial: int) -> np.ndarray:
    """:math:`S^{-1/2}` of the normalised GTO primitives (:func:`lowdin_matrix_extended`), from
    the table of :mod:`gplode._gto_lowdin` (its 40-digit values rounded once to float64): built
    at run time in mpmath it cost ~0.07 s, with mpmath's import, per process."""
    n_radial = max_radial + 1
    return np.array([float.fromhex(x) for x in LOWDIN[max_radial]]).reshape(n_radial, n_radial)


def lowdin_matrix_extended(max_radial: int) -> list[list[float]]:
    r""":math:`S^{-1/2}` of the normalised GTO primitives, in extended precision (mpmath),
    rounded once to float64 (a list of rows): how the table of :mod:`gplode._gto_lowdin` is made
    and checked.

    With :math:`\sigma_n \propto \max(\sqrt n, 1)` the overlap of the normalised primitives
    depends only on ``max_radial`` (not on r₀):

    .. math::

        S_{nm} = \frac{\Gamma(\frac{n+m+3}{2})}{\sqrt{\Gamma(n+\frac32)\Gamma(m+\frac32)}}
        \frac{(2\sigma_n\sigma_m)^{(n+m+3)/2}\,\sigma_n^{(m-n)/2}\,\sigma_m^{(n-m)/2}}
        {(\sigma_n^2+\sigma_m^2)^{(n+m+3)/2}}

    whose condition number reaches 1e11 at max_radial 16: float64 eigenvalues would lose
    all but ~5 digits; computed with 40 digits.
    """
    import mpmath  # a test dependency: the library reads the table

    with mpmath.workdps(_LOWDIN_DIGITS):
        n_radial = max_radial + 1
        sigma = [mpmath.sqrt(max(n, 1)) for n in range(n_radial)]  # in units of r₀ / n_radial
        overlap = mpmath.matrix(n_radial, n_radial)
        for n in range(n_radial):
            for m in range(n_radial):
                half = mpmath.mpf(n + m + 3) / 2
                overlap[n, m] = (
                    mpmath.gamma(half)
                    / mpmath.sqrt(mpmath.gamma(n + mpmath.mpf(3) / 2) * mpmath.gamma(m + mpmath.mpf(3) / 2))
                    * (2 * sigma[n] * sigma[m] / (sigma[n] ** 2 + sigma[m] ** 2)) ** half
                    * (sigma[m] / sigma[n]) ** (mpmath.mpf(n - m) / 2)
                )
        eigval, eigvec = mpmath.eigsy(overlap)
        inverse_root = eigvec * mpmath.diag([1 / mpmath.sqrt(e) for e in eigval]) * eigvec.T
        return [[float(x) for x in row] for row in inverse_root.tolist()]


class RadialBasis:
    """Common interface of the radial bases.

    :param cutoff: basis radius r₀ in Å
    :param max_radial: largest n (inclusive): ``max_radial + 1`` functions per l
    :param max_angular: largest l
    """

    name = ""

    def __init__(self, cutoff: float, max_radial: int, max_angular: int):
        self.cutoff = float(cutoff)
        self.max_radial = int(max_radial)
        self.max_angular = int(max_angular)

    @property
    def n_radial(self) -> int:
        """Number of radial functions per l."""
        return self.max_radial + 1

    #: radius (Å) beyond which every basis function is below round-off
    support_radius: float
    #: natural length scale (Å) of the basis functions, sets quadrature panel widths
    length_scale: float

    def evaluate(self, r: np.ndarray, l: int) -> np.ndarray:
        r"""Values :math:`\tilde R_{nl}(r)`, shape ``(len(r), n_radial)``, in Å^-3/2."""
        raise NotImplementedError

    def kspace_integral(self, k: np.ndarray, l: int) -> np.ndarray:
        r""":math:`\tilde I_{nl}(k)`, shape ``(len(k), n_radial)``, in Å^3/2."""
        raise NotImplementedError

    def kspace_integral_derivative(self, k: np.ndarray, l: int) -> np.ndarray:
        r""":math:`d\tilde I_{nl}/dk = \int_0^\infty r^3\tilde R_{nl}(r) j_l'(kr)\,dr`,
        shape ``(len(k), n_radial)``, in Å^5/2."""
        raise NotImplementedError

    def moments(self, l: int, n_terms: int) -> np.ndarray:
        r""":math:`M_{nl,k}` for ``k = 0..n_terms-1``, shape ``(n_radial, n_terms)``."""
        raise NotImplementedError

    def radial_quadrature(
        self, scale: float | None = None, order: int = 16, radius: float | None = None, resolution: float = 0.5
    ) -> tuple[np.ndarray, np.ndarray]:
        """Composite Gauss–Legendre nodes and weights on ``[0, radius]`` (default
        ``support_radius``), ``order`` nodes per panel, panels no wider than
        ``resolution × min(scale, length_scale)`` (Å)."""
        radius = self.support_radius if radius is None else float(radius)
        n_panels = max(4, int(np.ceil(radius / self._panel_width(scale, resolution))))
        return gauss_legendre_panels(np.linspace(0.0, radius, n_panels + 1), order)

    def _panel_width(self, scale: float | None, resolution: float) -> float:
        return resolution * min(self.length_scale, scale if scale is not None else np.inf)

    def tail_mass(self, radius: float) -> float:
        r"""Upper bound of :math:`\max_{n,l}\int_{R}^\infty r^2|\tilde R_{nl}(r)|\,dr` for
        ``R = radius`` ≥ ``support_radius`` (Å^{3/2}): the weight a quadrature on [0, R] omits."""
        raise NotImplementedError

    def integrate(self, func, l: int, scale: float | None = None) -> np.ndarray:
        r""":math:`\int_0^\infty r^2 \tilde R_{nl}(r) f(r)\,dr`, shape ``(n_radial,)``.

        :param func: vectorised callable of r (Å)
        :param scale: smallest length scale (Å) on which ``func`` varies, for the quadrature
        """
        r, w = self.radial_quadrature(scale)
        return (w * r**2 * func(r)) @ self.evaluate(r, l)


class GtoBasis(RadialBasis):
    r"""Gaussian-type orbitals as in featomic's ``Gto`` basis.

    Primitives :math:`R_n(r) = N_n r^n e^{-r^2/2\sigma_n^2}`, ``n = 0..max_radial``, with
    :math:`\sigma_n = r_0 \max(\sqrt n, 1)/(\mathrm{max\_radial}+1)` and :math:`N_n` such that
    :math:`\int r^2R_n^2 dr = 1`; then :math:`\tilde R = S^{-1/2} R` (Löwdin) with the overlap
    :math:`S_{nm} = \int r^2 R_n R_m dr`. The same functions serve every l.
    """

    name = "gto"

    def __init__(self, cutoff: float, max_radial: int, max_angular: int):
        if max_radial > GTO_MAX_RADIAL:
            raise ValueError(
                f"radial_basis='gto' supports max_radial <= {GTO_MAX_RADIAL}, got {max_radial}: beyond, the "
                "Löwdin-orthonormalised GTOs cancel so much that their k-space integrals lose the 1e-11 "
                "accuracy the splines need (overlap condition number > 1e8); use radial_basis='monomial'"
            )
        super().__init__(cutoff, max_radial, max_angular)
        n = np.arange(self.n_radial, dtype=float)
        self.sigmas = self.cutoff * np.maximum(np.sqrt(n), 1.0) / self.n_radial
        self.alphas = 1.0 / (2.0 * self.sigmas**2)  # primitive exponents b_n, Å^-2
        self.powers = n
        # ∫ r^{2n+2} e^{-r²/σ²} dr = Γ(n + 3/2) σ^{2n+3} / 2
        self.norms = np.sqrt(2.0 / (sp.gamma(n + 1.5) * self.sigmas ** (2 * n + 3)))
        # coefficients: R̃_n = Σ_m coefficients[n, m] r^m e^{-b_m r²}
        self.coefficients = _lowdin_matrix(self.max_radial) * self.norms[None, :]
        self.length_scale = float(self.sigmas[0])
        # r² R_n(r) ~ r^{n+2} e^{-r²/2σ²} peaks at σ√(n+2); 9σ further it is e^-40 smaller
        self.support_radius = float(np.max(self.sigmas * (np.sqrt(n + 2) + 9.0)))

    @staticmethod
    def _primitive_moment(power, alpha):
        r""":math:`\int_0^\infty r^{P} e^{-\alpha r^2} dr = \Gamma((P+1)/2)/(2\alpha^{(P+1)/2})`, P = ``power``."""
        return 0.5 * np.exp(sp.gammaln(0.5 * (power + 1)) - 0.5 * (power + 1) * np.log(alpha))

    def evaluate(self, r, l):
        r = np.asarray(r, dtype=float)[:, None]
        primitives = r**self.powers * np.exp(-self.alphas * r**2)
        return primitives @ self.coefficients.T

    def kspace_integral(self, k, l):
        r"""Exact :math:`\tilde I_{nl}(k)` from the primitives' closed form.

        .. math::

            \int_0^\infty r^{n+2}e^{-br^2}j_l(kr)\,dr = \frac{\sqrt\pi\,k^l\,
            \Gamma(\frac{n+l+3}{2})}{2^{l+2}\,\Gamma(l+\frac32)\,b^{(n+l+3)/2}}\,
            {}_1F_1\!\left(\tfrac{n+l+3}{2}; l+\tfrac32; -\tfrac{k^2}{4b}\right)
        """
        k = np.asarray(k, dtype=float)[:, None]
        a, log_pref = self._log_prefactor(l)
        primitive = np.exp(log_pref) * k**l * sp.hyp1f1(a, l + 1.5, -(k**2) / (4 * self.alphas))
        return primitive @ self.coefficients.T

    def _log_prefactor(self, l):
        a = 0.5 * (self.powers + l + 3)
        return a, (
            0.5 * np.log(np.pi) + sp.gammaln(a) - (l + 2) * np.log(2.0) - sp.gammaln(l + 1.5) - a * np.log(self.alphas)
        )

    def kspace_integral_derivative(self, k, l):
        r"""Exact derivative of the closed form of :meth:`kspace_integral`, with
        :math:`\frac{d}{dz}{}_1F_1(a; b; z) = \frac ab\,{}_1F_1(a+1; b+1; z)`:

        .. math::

            \frac{d}{dk}\big[k^l\,{}_1F_1(a; b; -\tfrac{k^2}{4\beta})\big] = l k^{l-1}{}_1F_1(a; b; \cdot)
            - \frac{a}{b}\frac{k^{l+1}}{2\beta}{}_1F_1(a+1; b+1; \cdot)
        """
        k = np.asarray(k, dtype=float)[:, None]
        a, log_pref = self._log_prefactor(l)
        b, z = l + 1.5, -(k**2) / (4 * self.alphas)
        first = l * k ** max(l - 1, 0) * sp.hyp1f1(a, b, z) if l > 0 else 0.0
        second = (a / b) * k ** (l + 1) / (2 * self.alphas) * sp.hyp1f1(a + 1, b + 1, z)
        return (np.exp(log_pref) * (first - second)) @ self.coefficients.T

    def moments(self, l, n_terms):
        order = np.arange(n_terms)
        power = self.powers[:, None] + 2 + l + 2 * order[None, :]
        primitive = self._primitive_moment(power, self.alphas[:, None])
        return self.coefficients @ primitive

    def tail_mass(self, radius):
        r"""Bound :math:`\sum_m \max_n|C_{nm}| \int_R^\infty r^{m+2}e^{-b_m r^2}dr`, with
        :math:`\int_R^\infty r^{P}e^{-br^2}dr = \Gamma(\frac{P+1}{2}, bR^2)/(2b^{(P+1)/2})`."""
        a = 0.5 * (self.powers + 3)
        upper = sp.gammaincc(a, self.alphas * radius**2) * np.exp(sp.gammaln(a) - a * np.log(self.alphas)) / 2
        return float(np.abs(self.coefficients).max(axis=0) @ upper)


class MonomialBasis(RadialBasis):
    r"""Generalised-multipole basis: :math:`r^{l+2n}` on :math:`[0, r_0]`, zero beyond.

    Gram–Schmidt in increasing n with weight r² on :math:`[0, r_0]` gives
    :math:`\tilde R_{nl}(r) = c_{nl}\, r^l P_n^{(0,\,l+1/2)}(2r^2/r_0^2 - 1)` (Jacobi
    polynomials, positive leading coefficient), which is how it is evaluated: stable for
    any n, unlike an explicit Gram–Schmidt of monomials.
    """

    name = "monomial"

    def __init__(self, cutoff: float, max_radial: int, max_angular: int):
        super().__init__(cutoff, max_radial, max_angular)
        self.length_scale = self.cutoff / 4.0
        self.support_radius = self.cutoff
        r, w = self._exact_rule(extra_degree=0)
        self._norms = np.empty((self.max_angular + 1, self.n_radial))
        for l in range(self.max_angular + 1):
            raw = self._unnormalised(r, l)
            self._norms[l] = 1.0 / np.sqrt((w * r**2) @ raw**2)

    def _exact_rule(self, extra_degree: int) -> tuple[np.ndarray, np.ndarray]:
        """Gauss–Legendre on [0, r₀], exact for r² R̃² times a polynomial of ``extra_degree``."""
        degree = 2 * self.max_angular + 4 * self.max_radial + 2 + extra_degree
        return gauss_legendre_panels(np.array([0.0, self.cutoff]), degree // 2 + 2)

    def _unnormalised(self, r, l):
        r = np.asarray(r, dtype=float)[:, None]
        n = np.arange(self.n_radial)
        return r**l * sp.eval_jacobi(n, 0.0, l + 0.5, 2.0 * (r / self.cutoff) ** 2 - 1.0)

    def evaluate(self, r, l):
        r = np.asarray(r, dtype=float)
        values = self._unnormalised(r, l) * self._norms[l]
        return np.where((r <= self.cutoff)[:, None], values, 0.0)

    def radial_quadrature(self, scale=None, order=16, radius=None, resolution=0.5):
        # the basis ends at r₀ with a jump: panels must end exactly there (``radius`` beyond
        # r₀ would only add zeros)
        n_panels = max(4, int(np.ceil(self.cutoff / self._panel_width(scale, resolution))))
        return gauss_legendre_panels(
            np.linspace(0.0, self.cutoff, n_panels + 1), max(order, self._exact_rule(0)[0].size)
        )

    def kspace_integral(self, k, l):
        r""":math:`\tilde I_{nl}(k)` by Gauss–Legendre quadrature on :math:`[0, r_0]`.

        The integrand is a polynomial times the entire function :math:`j_l(kr)`; the rule
        has ``k_max r₀ + 40`` extra nodes, beyond which the error decays faster than
        exponentially (checked against mpmath in the tests).
        """
        k = np.asarray(k, dtype=float)
        k_max = float(np.max(k)) if k.size else 0.0
        r, w = self._exact_rule(extra_degree=2 * int(k_max * self.cutoff) + 80)
        bessel = sp.spherical_jn(l, k[:, None] * r[None, :])
        return bessel @ ((w * r**2)[:, None] * self.evaluate(r, l))

    def kspace_integral_derivative(self, k, l):
        r""":math:`\int_0^{r_0} r^3\tilde R_{nl}(r)j_l'(kr)\,dr` by the rule of :meth:`kspace_integral`
        (one more power of r)."""
        k = np.asarray(k, dtype=float)
        k_max = float(np.max(k)) if k.size else 0.0
        r, w = self._exact_rule(extra_degree=2 * int(k_max * self.cutoff) + 81)
        bessel = sp.spherical_jn(l, k[:, None] * r[None, :], derivative=True)
        return bessel @ ((w * r**3)[:, None] * self.evaluate(r, l))

    def tail_mass(self, radius):
        """0: the functions vanish beyond r₀ = ``support_radius``."""
        return 0.0

    def moments(self, l, n_terms):
        r, w = self._exact_rule(extra_degree=l + 2 * n_terms)
        powers = r[:, None] ** (l + 2 * np.arange(n_terms))[None, :]
        return self.evaluate(r, l).T @ ((w * r**2)[:, None] * powers)


_BASES = {"gto": GtoBasis, "monomial": MonomialBasis}


def make_basis(name: str, cutoff: float, max_radial: int, max_angular: int) -> RadialBasis:
    """Build the radial basis called ``name`` (``"gto"`` or ``"monomial"``)."""
    try:
        cls = _BASES[name]
    except KeyError:
        raise ValueError(f"radial_basis must be one of {sorted(_BASES)}, got {name!r}") from None
    return cls(cutoff, max_radial, max_angular)
