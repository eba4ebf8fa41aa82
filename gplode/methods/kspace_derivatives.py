r"""Derivatives of the radial–angular kernel of the k-space routes (DESIGN.md §2).

The k ≠ 0 coefficients are sums over k of :math:`G_{nlm}(k) = \hat v_p(k)\tilde I_{nl}(k)
Y_{lm}(\hat k)` times phases. Under a strain ε (r → r(1+ε), H → H(1+ε)) the phases k·r are
invariant, Ω → Ω det(1+ε) and k → k(1+ε)^{-T}, so the strain derivative of the sum needs

.. math::

    k_b\,\partial_{k_a}G_{nlm} = \hat k_a\hat k_b\,\big[k\,g_{nl}'(k) - l\,g_{nl}(k)\big]Y_{lm}(\hat k)
    + g_{nl}(k)\,\hat k_b\,\partial_a\mathcal Y_{lm}(\hat k),\qquad g_{nl} = \hat v_p\tilde I_{nl}

with the solid harmonics :math:`\mathcal Y_{lm}(k) = k^lY_{lm}(\hat k)`
(:func:`gplode.lib.spherical_harmonics.solid_harmonics_gradient`) and
:math:`g' = \hat v_p'\tilde I + \hat v_p\tilde I'`.
"""

from __future__ import annotations

__all__ = ["contracted_strain_kernel", "strain_kernel", "strain_rate_kernel"]


def strain_kernel(k, knorm, g, dg, ylm, gradient, l: int, xp):
    r""":math:`k_b\,\partial_{k_a}G_{nlm}(k)` for one l, ``(n_k, 3, 3, 2l+1, n_radial)`` (axes a, b, m, n).

    :param k: wave vectors, Å⁻¹, ``(n_k, 3)``; ``knorm`` their norms (> 0), ``(n_k,)``
    :param g: :math:`\hat v_p\tilde I_{nl}` at ``knorm``, ``(n_k, n_radial)``
    :param dg: its derivative in k, ``(n_k, n_radial)``
    :param ylm: :math:`Y_{lm}(\hat k)` of this l, ``(n_k, 2l+1)``
    :param gradient: :math:`\nabla\mathcal Y_{lm}(\hat k)` of this l, ``(n_k, 3, 2l+1)``
    :param xp: array module of the arrays
    """
    khat = k / knorm[:, None]
    pair = khat[:, :, None] * khat[:, None, :]  # (n_k, a, b)
    radial = knorm[:, None] * dg - l * g  # (n_k, n_radial)
    out = pair[:, :, :, None, None] * ylm[:, None, None, :, None] * radial[:, None, None, None, :]
    out += gradient[:, :, None, :, None] * khat[:, None, :, None, None] * g[:, None, None, None, :]
    return xp.ascontiguousarray(out)


def contracted_strain_kernel(k, knorm, g, dg, ylm, gradient, l: int, weights, xp):
    r""":math:`\sum_{mn}` ``weights[k, m, n]`` :math:`k_b\partial_{k_a}G_{nlm}(k)`, ``(n_k, 3, 3)``,
    without forming the ``(n_k, 3, 3, 2l+1, n_radial)`` kernel (same arguments as
    :func:`strain_kernel`; ``weights`` ``(n_k, 2l+1, n_radial)``):
    :math:`\hat k_a\hat k_b\sum_{mn}w\,Y_m(kg_n' - lg_n) + \hat k_b\sum_{mn}w\,\partial_a\mathcal Y_m\,g_n`."""
    khat = k / knorm[:, None]
    radial = knorm[:, None] * dg - l * g
    along = xp.einsum("km,kmn,kn->k", ylm, weights, radial)
    across = xp.einsum("kam,kmn,kn->ka", gradient, weights, g)
    return (along[:, None] * khat)[:, :, None] * khat[:, None, :] + across[:, :, None] * khat[:, None, :]


def strain_rate_kernel(k, knorm, g, dg, ylm, gradient, l: int, rate, xp):
    r""":math:`\sum_{ab}\dot\varepsilon_{ab}\,k_b\partial_{k_a}G_{nlm}(k)`, ``(n_k, 2l+1, n_radial)``,
    for a strain rate per k-point ``rate`` ``(n_k, 3, 3)``, without forming the
    ``(n_k, 3, 3, 2l+1, n_radial)`` kernel (same arguments as :func:`strain_kernel`):
    :math:`(\hat k^T\dot\varepsilon\hat k)\,Y_m(kg_n' - lg_n)
    + g_n\sum_a(\dot\varepsilon\hat k)_a\partial_a\mathcal Y_m`."""
    khat = k / knorm[:, None]
    along = xp.einsum("ka,kab,kb->k", khat, rate, khat)
    across = xp.einsum("kab,kb,kam->km", rate, khat, gradient)
    radial = knorm[:, None] * dg - l * g
    return along[:, None, None] * ylm[:, :, None] * radial[:, None, :] + across[:, :, None] * g[:, None, :]
