"""The public entry point: :class:`LodeCalculator` (docs/conventions.md)."""

from __future__ import annotations

import numpy as np

from ._dispatch import gpu_available
from .features import Features
from .gpu_backend import GpuBackend
from .hypers import LodeHypers
from .mesh_backend import NumpyBackend
from .potentials import SmearedPowerLaw
from .radial import make_basis
from .reference import ReferenceBackend
from .systems import as_systems, atom_owners

__all__ = ["LodeCalculator"]

_BACKENDS = {"reference": ReferenceBackend, "numpy": NumpyBackend, "gpu": GpuBackend}


def _resolve_backend(name: str):
    """The backend class: ``"auto"`` is ``"gpu"`` when a GPU is usable, else ``"numpy"``."""
    if name == "auto":
        return GpuBackend if gpu_available() else NumpyBackend
    return _BACKENDS[name]


class LodeCalculator:
    r"""Generalised LODE features: projections of the smeared 1/r^p potential of each
    neighbour species onto radial functions × real spherical harmonics around each atom.

    All keyword arguments are validated here, when the calculator is built, and stored in
    :attr:`hypers` (a :class:`gplode.hypers.LodeHypers`, see there for ranges).

    :param exponent: p ≥ 0 (1: Coulomb-like, 6: dispersion-like, 0: Gaussian density)
    :param smearing: σ in Å
    :param cutoff: radius r₀ of the radial basis in Å
    :param max_radial: largest radial index n (inclusive)
    :param max_angular: largest angular index l (inclusive)
    :param radial_basis: ``"gto"`` or ``"monomial"``
    :param center_atom_weight: weight w_c of each atom's own density in its features
    :param backend: ``"auto"``, ``"reference"``, ``"numpy"`` or ``"gpu"``
    :param accuracy: target relative RMS error of the coefficients
    :param dtype: ``"float64"`` or ``"float32"``
    :param k_cutoff: reference backend only: sum exactly 0 < |k| < k_cutoff (Å⁻¹)
    :param neighbor_types: atomic numbers of the neighbour species (default: all present)
    :param mesh_spacing: mesh backends: override the mesh spacing in Å
    :param interpolation_order: mesh backends: override the B-spline order (4, 6, 8, 10)

    >>> import ase.build, gplode
    >>> calc = gplode.LodeCalculator(exponent=1.0, smearing=1.0, cutoff=3.0,
    ...                              max_radial=2, max_angular=1, backend="reference")
    >>> feats = calc.compute(ase.build.bulk("NaCl", "rocksalt", a=5.64))
    >>> feats.values.shape
    (2, 2, 4, 3)
    """

    def __init__(self, **kwargs):
        self.hypers = LodeHypers(**kwargs)
        h = self.hypers
        self.potential = SmearedPowerLaw(h.exponent, h.smearing)
        self.basis = make_basis(h.radial_basis, h.cutoff, h.max_radial, h.max_angular)
        self._backend = _resolve_backend(h.backend)(h, self.potential, self.basis)

    @property
    def backend(self) -> str:
        """Name of the backend in use (``"auto"`` resolved)."""
        return self._backend.name

    def __repr__(self):
        return f"LodeCalculator({', '.join(f'{k}={v!r}' for k, v in self.hypers.to_dict().items())})"

    def compute(self, frames) -> Features:
        """Compute the features of one ``ase.Atoms`` or a sequence of them.

        With ``neighbor_types`` given, atoms of other species still get features as
        centres, but their density is left out of everyone's features (as featomic's
        neighbour-type selections do).

        :raises ValueError: for invalid structures (see :func:`gplode.systems.as_systems`)
        """
        systems = as_systems(frames)
        if self.hypers.neighbor_types is None:
            species = np.unique(np.concatenate([s.numbers for s in systems]))
        else:  # atoms of other species are centres, but no one's neighbours
            species = np.array(self.hypers.neighbor_types, dtype=np.int64)
        system, atom = atom_owners(systems)
        return Features(
            values=self._backend.compute(systems, species),
            neighbor_types=species,
            center_types=np.concatenate([s.numbers for s in systems]),
            system=system,
            atom=atom,
            hypers=self.hypers,
            backend=self.backend,
        )
