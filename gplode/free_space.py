r"""Free-space (non-periodic) LODE coefficients as a pair sum (SPEC §3).

.. math::

    c^{(i)}_{anlm} = \sum_{j\in a,\,j\ne i} Y_{lm}(\hat d_{ij})\,F_{nl}(d_{ij})
    + \delta_{l0}\delta_{a a_i} w_c\, c^{\mathrm{center}}_n,\qquad
    F_{nl}(d) = 2\pi\int_0^\infty r^2\tilde R_{nl}(r)\int_{-1}^{1}P_l(u)\,
    v_p\big(\sqrt{r^2+d^2-2rdu}\big)\,du\,dr

:class:`PairRadialFunctions` tabulates :math:`F_{nl}` by 2D quadrature on Chebyshev
panels in d up to ``d_switch`` and uses the multipole series (SPEC §5) beyond.
"""

from __future__ import annotations

import numpy as np

from .corrections import species_index
from .multipoles import asymptotic_radial
from .radial import gauss_legendre_panels
from .spherical_harmonics import real_spherical_harmonics

__all__ = ["PairRadialFunctions", "free_space_coefficients"]

#: beyond this many σ the smeared potential equals r^-p to ~1e-19 relative
#: (Γ(p/2, 50)/Γ(p/2) ≈ 50^{p/2-1} e^{-50})
_SMEARING_RANGE = 10.0
_CHEB_DEGREE = 20
_INNER_PANELS, _INNER_ORDER = 12, 12


def _legendre_table(u: np.ndarray, max_l: int) -> np.ndarray:
    """P_l(u) for l = 0..max_l, shape ``(max_l + 1,) + u.shape``, by the stable recurrence."""
    out = np.empty((max_l + 1,) + u.shape)
    out[0] = 1.0
    if max_l > 0:
        out[1] = u
    for l in range(2, max_l + 1):
        out[l] = ((2 * l - 1) * u * out[l - 1] - (l - 1) * out[l - 2]) / l
    return out


class PairRadialFunctions:
    r"""The pair functions :math:`F_{nl}(d)` of one (potential, basis) pair.

    Quadrature (near field, ``d < d_switch``): the inner integral is taken over
    :math:`q = |r-d|^2` with the substitution :math:`w = \ln(q + \sigma^2)`, which
    resolves both the smearing scale σ² near q = 0 and the power-law scale q far away
    with a fixed composite Gauss–Legendre rule; the outer r rule has panels no wider
    than σ. F is then interpolated on Chebyshev panels of width ≤ 2σ (degree 20).
    Far field (``d >= d_switch = support_radius + 10σ``): the multipole series.

    :param potential: a :class:`gplode.potentials.SmearedPowerLaw`
    :param basis: a :class:`gplode.radial.RadialBasis`
    """

    def __init__(self, potential, basis):
        self.potential = potential
        self.basis = basis
        self.max_angular = basis.max_angular
        sigma = potential.smearing
        self.d_switch = basis.support_radius + _SMEARING_RANGE * sigma
        n_panels = max(2, int(np.ceil(self.d_switch / min(2.0 * sigma, basis.length_scale * 2.0))))
        self.edges = np.linspace(0.0, self.d_switch, n_panels + 1)
        nodes = np.cos(np.pi * (np.arange(_CHEB_DEGREE) + 0.5) / _CHEB_DEGREE)  # in (-1, 1)
        half = 0.5 * np.diff(self.edges)
        mid = 0.5 * (self.edges[1:] + self.edges[:-1])
        d_nodes = mid[:, None] + half[:, None] * nodes[None, :]
        values = self._quadrature(d_nodes.ravel())  # (n_d, L+1, n_radial)
        values = values.reshape(n_panels, _CHEB_DEGREE, *values.shape[1:])
        # Chebyshev coefficients per panel (discrete cosine transform of the node values)
        k = np.arange(_CHEB_DEGREE)
        cosines = np.cos(np.pi * k[:, None] * (np.arange(_CHEB_DEGREE) + 0.5)[None, :] / _CHEB_DEGREE)
        coefficients = (2.0 / _CHEB_DEGREE) * np.einsum("ki,pi...->pk...", cosines, values)
        coefficients[:, 0] *= 0.5
        self._coefficients = coefficients  # (n_panels, degree, L+1, n_radial)

    def _quadrature(self, d: np.ndarray) -> np.ndarray:
        """F_nl at distances ``d`` (> 0) by direct 2D quadrature, shape ``(n_d, L+1, n_radial)``."""
        pot, basis = self.potential, self.basis
        s2 = pot.smearing**2
        r, wr = basis.radial_quadrature(scale=pot.smearing, order=12)
        radial = [(wr * r**2)[:, None] * basis.evaluate(r, l) for l in range(self.max_angular + 1)]
        t, wt = gauss_legendre_panels(np.linspace(0.0, 1.0, _INNER_PANELS + 1), _INNER_ORDER)
        out = np.empty((d.size, self.max_angular + 1, basis.n_radial))
        for i, di in enumerate(d):
            two_rd = 2.0 * r * di  # (n_r,)
            q_min = (r - di) ** 2
            base = q_min + s2
            width = np.log1p(2.0 * two_rd / base)  # w-range: ln(q_max + σ²) - ln(q_min + σ²)
            w = width[:, None] * t[None, :]
            delta = base[:, None] * np.expm1(w)  # q - q_min, accurate for small w
            jac = width[:, None] * wt[None, :] * base[:, None] * np.exp(w)  # dq = (q + σ²) dw
            f = pot.real_space(np.sqrt(q_min[:, None] + delta)) * jac
            u = 1.0 - delta / two_rd[:, None]
            legendre = _legendre_table(u, self.max_angular)
            inner = np.einsum("lrq,rq->lr", legendre, f) * (2.0 * np.pi / two_rd)[None, :]
            for l in range(self.max_angular + 1):
                out[i, l] = inner[l] @ radial[l]
        return out

    def __call__(self, d: np.ndarray, l: int) -> np.ndarray:
        """F_nl(d) for distances ``d`` (Å, > 0), shape ``(len(d), n_radial)``, in Å^(3/2-p)."""
        return self.evaluate(d)[:, l]

    def evaluate(self, d: np.ndarray) -> np.ndarray:
        """F_nl(d) for every l at once, shape ``(len(d), max_angular+1, n_radial)``."""
        d = np.asarray(d, dtype=float)
        out = np.empty((d.size, self.max_angular + 1, self.basis.n_radial))
        near = d < self.d_switch
        if np.any(near):
            dn = d[near]
            panel = np.clip(np.searchsorted(self.edges, dn, side="right") - 1, 0, self.edges.size - 2)
            a, b = self.edges[panel], self.edges[panel + 1]
            x = (2.0 * dn - a - b) / (b - a)
            # Chebyshev polynomials T_k(x) of every distance, then one matrix product per
            # panel with that panel's coefficients (BLAS instead of a gather per term)
            chebyshev = np.empty((dn.size, _CHEB_DEGREE))
            chebyshev[:, 0], chebyshev[:, 1] = 1.0, x
            for k in range(2, _CHEB_DEGREE):
                chebyshev[:, k] = 2.0 * x * chebyshev[:, k - 1] - chebyshev[:, k - 2]
            values = np.empty((dn.size, out.shape[1] * out.shape[2]))
            order = np.argsort(panel, kind="stable")
            bounds = np.searchsorted(panel[order], np.arange(self.edges.size))
            for p in np.unique(panel):
                rows = order[bounds[p] : bounds[p + 1]]
                values[rows] = chebyshev[rows] @ self._coefficients[p].reshape(_CHEB_DEGREE, -1)
            out[near] = values.reshape(dn.size, *out.shape[1:])
        if np.any(~near):
            far = d[~near]
            for l in range(self.max_angular + 1):
                out[~near, l] = asymptotic_radial(far, self.potential.exponent, self.basis, l)
        return out


def free_space_coefficients(
    system, species, pair_functions, center_term, center_atom_weight, max_angular, chunk=250_000
):
    """Free-space coefficients of every atom of ``system``.

    Centres are processed in blocks of about ``chunk / n_atoms`` so that memory stays
    bounded (~``chunk`` × (L+1)² × n_radial floats) whatever the cluster size.

    :param system: a non-periodic :class:`gplode.systems.System`
    :param species: sorted neighbour atomic numbers (axis 1 of the output)
    :param pair_functions: :class:`PairRadialFunctions` of the calculator
    :param center_term: c^center_n, shape ``(n_radial,)``
    :param center_atom_weight: w_c
    :param chunk: number of (centre, neighbour) pairs handled at once
    :return: shape ``(n_atoms, len(species), (max_angular+1)**2, n_radial)``
    """
    n, n_lm = system.n_atoms, (max_angular + 1) ** 2
    n_radial = pair_functions.basis.n_radial
    kind, present = species_index(system.numbers, species)
    onehot = (system.numbers[:, None] == np.asarray(species)[None, :]).astype(float)  # (n_atoms, n_species)
    out = np.zeros((n, len(species), n_lm, n_radial))
    block = max(1, chunk // n)
    for start in range(0, n, block):
        centres = np.arange(start, min(start + block, n))
        vectors = (system.positions[None, :, :] - system.positions[centres, None, :]).reshape(-1, 3)
        d = np.linalg.norm(vectors, axis=1)
        self_pair = d == 0.0  # the centre itself
        if np.count_nonzero(self_pair) != centres.size:
            i, j = np.argwhere((d == 0.0).reshape(centres.size, n) & (centres[:, None] != np.arange(n)))[0]
            raise ValueError(f"atoms {centres[i]} and {j} are at the same position")
        d_safe = np.where(self_pair, 1.0, d)
        ylm = real_spherical_harmonics(vectors, max_angular)
        ylm[self_pair] = 0.0
        radial_all = pair_functions.evaluate(d_safe).reshape(centres.size, n, max_angular + 1, n_radial)
        for l in range(max_angular + 1):
            radial = radial_all[:, :, l]
            angular = ylm[:, l * l : (l + 1) ** 2].reshape(centres.size, n, 2 * l + 1)
            out[centres, :, l * l : (l + 1) ** 2, :] = np.einsum("cjm,cjn,ja->camn", angular, radial, onehot)
    rows = np.flatnonzero(present)
    out[rows, kind[rows], 0, :] += center_atom_weight * center_term
    return out
