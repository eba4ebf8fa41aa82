"""The calculator's hyper-parameters: one frozen, validated object (docs/conventions.md).

It round-trips through a plain dict (:meth:`LodeHypers.to_dict` /
:meth:`LodeHypers.from_dict`) for the CLI, the app, stored outputs and cache keys.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable

import numpy as np

from .lib.bspline import ORDERS

__all__ = ["BACKENDS", "DTYPES", "RADIAL_BASES", "ROUTES", "LodeHypers"]

BACKENDS = ("auto", "reference", "numpy", "gpu")
ROUTES = ("auto", "direct", "mesh")
RADIAL_BASES = ("gto", "monomial")
DTYPES = ("float64", "float32")
#: largest supported l: the spherical-harmonic recurrences are exact well beyond this,
#: but the coefficient count grows as (l+1)² and larger values are surely a typo
MAX_ANGULAR_LIMIT = 30
MAX_RADIAL_LIMIT = 30
#: tightest accuracy accepted: the float64 round-off of the sums is ~1e-15 relative
MIN_ACCURACY = 1e-14
#: tightest accuracy of the fast backends (splined v̂_p and Ĩ_nl, checked to 1e-13 and 1e-11)
MIN_FAST_ACCURACY = 1e-10


def _real(name: str, value, *, low: float, low_inclusive: bool, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    ok = math.isfinite(value) and (value >= low if low_inclusive else value > low)
    if not ok:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def _integer(name: str, value, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _dtype_name(value) -> str:
    """``"float64"`` or ``"float32"`` from a name, a NumPy dtype or a scalar type."""
    try:
        name = np.dtype(value).name if not isinstance(value, str) else value
    except TypeError:
        name = value
    return _choice("dtype", name, DTYPES)


def _choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class LodeHypers:
    """Validated hyper-parameters of :class:`gplode.LodeCalculator`.

    :param exponent: p ≥ 0 of the 1/r^p potential (0: Gaussian density, 1: Coulomb, 6: dispersion)
    :param smearing: σ > 0, Gaussian width in Å
    :param cutoff: r₀ > 0, radius of the radial basis in Å
    :param max_radial: largest radial index n (inclusive), 0..30 (the GTO basis: 0..11, see
        :data:`gplode.basis.GTO_MAX_RADIAL`)
    :param max_angular: largest angular index l (inclusive), 0..30
    :param radial_basis: ``"gto"`` or ``"monomial"``
    :param center_atom_weight: w_c, weight of the centre atom's own density (1 keeps it)
    :param backend: ``"auto"``, ``"reference"``, ``"numpy"`` or ``"gpu"``
    :param accuracy: target relative RMS error of all coefficients, in [1e-14, 0.1]
        (the fast backends: [1e-10, 0.1])
    :param dtype: ``"float64"`` or ``"float32"`` (or the NumPy dtype): precision of the
        output, and of the fast backends' computation (the reference computes in float64)
    :param k_cutoff: if given, every backend sums exactly the sphere 0 < |k| < k_cutoff (Å⁻¹)
        (shells on the sphere excluded, see :data:`gplode.lib.kvectors.SHELL_TOLERANCE`); the mesh
        backends still choose the mesh from ``accuracy``
    :param neighbor_types: atomic numbers of the neighbour species (axis 1 of the
        features); ``None`` uses all species present in the frames of each call. Atoms of
        other species are still centres but nobody's neighbours.
    :param mesh_spacing: mesh backends only: override the mesh spacing (Å) chosen from
        ``accuracy``
    :param interpolation_order: mesh backends only: override the B-spline order (4, 6, 8 or 10)
    :param route: periodic structures on the fast backends: ``"auto"`` (the cheaper by the
        device's cost model), ``"direct"`` (direct k-sum) or ``"mesh"`` (particle mesh;
        implied by ``mesh_spacing`` or ``interpolation_order``); slabs and wires always take
        the truncated direct k-sum (:class:`gplode.methods.truncated.TruncatedKSum`); free-space
        structures: ``"auto"`` the free-space mesh (:class:`gplode.methods.free_mesh.FreeSpaceMesh`)
        where its cost model is below the pair sum's and it fits in memory, ``"mesh"`` always the
        mesh, ``"direct"`` always the pair sum
    """

    exponent: float = 1.0
    smearing: float = 1.0
    cutoff: float = 3.0
    max_radial: int = 5
    max_angular: int = 4
    radial_basis: str = "gto"
    center_atom_weight: float = 1.0
    backend: str = "auto"
    accuracy: float = 1e-6
    dtype: str = "float64"
    k_cutoff: float | None = None
    neighbor_types: tuple[int, ...] | None = None
    mesh_spacing: float | None = None
    interpolation_order: int | None = None
    route: str = "auto"

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "exponent", _real("exponent", self.exponent, low=0.0, low_inclusive=True, what="a finite real >= 0"))
        if self.exponent > 20:
            raise ValueError(f"exponent must be <= 20 (1/r^p beyond that is numerically local), got {self.exponent!r}")
        set_(self, "smearing", _real("smearing", self.smearing, low=0.0, low_inclusive=False, what="> 0 (Å)"))
        set_(self, "cutoff", _real("cutoff", self.cutoff, low=0.0, low_inclusive=False, what="> 0 (Å)"))
        set_(self, "max_radial", _integer("max_radial", self.max_radial, low=0, high=MAX_RADIAL_LIMIT))
        set_(self, "max_angular", _integer("max_angular", self.max_angular, low=0, high=MAX_ANGULAR_LIMIT))
        _choice("radial_basis", self.radial_basis, RADIAL_BASES)
        set_(
            self,
            "center_atom_weight",
            _real("center_atom_weight", self.center_atom_weight, low=-math.inf, low_inclusive=False, what="finite"),
        )
        _choice("backend", self.backend, BACKENDS)
        accuracy = _real("accuracy", self.accuracy, low=0.0, low_inclusive=False, what="in (0, 0.1]")
        if not MIN_ACCURACY <= accuracy <= 0.1:
            raise ValueError(
                f"accuracy must be in [{MIN_ACCURACY:g}, 0.1] (float64 round-off in the sums is ~1e-15), "
                f"got {accuracy!r}"
            )
        if self.backend != "reference" and accuracy < MIN_FAST_ACCURACY:
            raise ValueError(
                f"accuracy={accuracy:g} is below what backend={self.backend!r} delivers ({MIN_FAST_ACCURACY:g}: its "
                "k-space splines are checked to 1e-11); use backend='reference' for tighter accuracies"
            )
        set_(self, "accuracy", accuracy)
        set_(self, "dtype", _dtype_name(self.dtype))
        if self.k_cutoff is not None:
            set_(
                self,
                "k_cutoff",
                _real("k_cutoff", self.k_cutoff, low=0.0, low_inclusive=False, what="> 0 (Å⁻¹) or None"),
            )
        if self.neighbor_types is not None:
            if isinstance(self.neighbor_types, (str, bytes)) or not isinstance(self.neighbor_types, Iterable):
                raise TypeError(
                    "neighbor_types must be a sequence of atomic numbers or None, got "
                    f"{type(self.neighbor_types).__name__} {self.neighbor_types!r}"
                )
            types = tuple(sorted({_integer("neighbor_types", z, low=1, high=118) for z in self.neighbor_types}))
            if not types:
                raise ValueError("neighbor_types must list at least one atomic number, or be None")
            set_(self, "neighbor_types", types)

        if self.mesh_spacing is not None:
            spacing = _real("mesh_spacing", self.mesh_spacing, low=0.0, low_inclusive=False, what="> 0 (Å) or None")
            set_(self, "mesh_spacing", spacing)
        if self.interpolation_order is not None:
            order = self.interpolation_order
            if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order not in ORDERS:
                raise ValueError(f"interpolation_order must be one of {ORDERS} or None, got {order!r}")
            set_(self, "interpolation_order", int(order))
        _choice("route", self.route, ROUTES)
        if self.route == "direct" and (self.mesh_spacing is not None or self.interpolation_order is not None):
            raise ValueError(
                "route='direct' has no mesh: mesh_spacing and interpolation_order need route 'auto' or 'mesh'"
            )
        if self.backend == "reference":
            if self.route == "mesh":
                raise ValueError("backend='reference' sums the k-sphere directly: route must be 'auto' or 'direct'")
            for name in ("mesh_spacing", "interpolation_order"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name} applies to the mesh backends ('numpy', 'gpu', 'auto'), not to backend='reference', "
                        "which sums the k-sphere exactly"
                    )

    def to_dict(self) -> dict:
        """Plain-dict form (JSON/TOML serialisable)."""
        out = dataclasses.asdict(self)
        if out["neighbor_types"] is not None:
            out["neighbor_types"] = list(out["neighbor_types"])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> LodeHypers:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown hyper-parameter(s) {unknown}; allowed: {sorted(names)}")
        return cls(**data)
