"""The calculator's hyper-parameters: one frozen, validated object (SPEC §4).

It round-trips through a plain dict (:meth:`LodeHypers.to_dict` /
:meth:`LodeHypers.from_dict`) for the CLI, the app, stored outputs and cache keys.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from .bspline import ORDERS

__all__ = ["BACKENDS", "DTYPES", "RADIAL_BASES", "LodeHypers"]

BACKENDS = ("auto", "reference", "numpy", "gpu")
RADIAL_BASES = ("gto", "monomial")
DTYPES = ("float64", "float32")
#: largest supported l: the spherical-harmonic recurrences are exact well beyond this,
#: but the coefficient count grows as (l+1)² and larger values are surely a typo
MAX_ANGULAR_LIMIT = 30
MAX_RADIAL_LIMIT = 30


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
    :param max_radial: largest radial index n (inclusive), 0..30
    :param max_angular: largest angular index l (inclusive), 0..30
    :param radial_basis: ``"gto"`` or ``"monomial"``
    :param center_atom_weight: w_c, weight of the centre atom's own density (1 keeps it)
    :param backend: ``"auto"``, ``"reference"``, ``"numpy"`` or ``"gpu"``
    :param accuracy: target relative RMS error of all coefficients, in (0, 0.1]
    :param dtype: ``"float64"`` or ``"float32"`` (output precision of fast backends)
    :param k_cutoff: if given, the reference backend sums exactly 0 < |k| < k_cutoff (Å⁻¹)
    :param neighbor_types: atomic numbers of the neighbour species (axis 1 of the
        features); ``None`` uses all species present in the frames of each call
    :param mesh_spacing: mesh backends only: override the mesh spacing (Å) chosen from
        ``accuracy``
    :param interpolation_order: mesh backends only: override the B-spline order (4, 6, 8 or 10)
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
        if accuracy > 0.1:
            raise ValueError(f"accuracy must be in (0, 0.1], got {accuracy!r}")
        set_(self, "accuracy", accuracy)
        _choice("dtype", self.dtype, DTYPES)
        if self.k_cutoff is not None:
            set_(
                self,
                "k_cutoff",
                _real("k_cutoff", self.k_cutoff, low=0.0, low_inclusive=False, what="> 0 (Å⁻¹) or None"),
            )
        if self.neighbor_types is not None:
            types = tuple(sorted({_integer("neighbor_types", z, low=1, high=118) for z in self.neighbor_types}))
            if not types:
                raise ValueError("neighbor_types must list at least one atomic number, or be None")
            set_(self, "neighbor_types", types)

        if self.mesh_spacing is not None:
            spacing = _real("mesh_spacing", self.mesh_spacing, low=0.0, low_inclusive=False, what="> 0 (Å) or None")
            set_(self, "mesh_spacing", spacing)
        if self.interpolation_order is not None and self.interpolation_order not in ORDERS:
            raise ValueError(f"interpolation_order must be one of {ORDERS} or None, got {self.interpolation_order!r}")

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
