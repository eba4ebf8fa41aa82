"""The interface every backend implements, and what they share.

A backend turns validated :class:`gplode.systems.System` objects into coefficients
``(n_atoms, n_species, (L+1)**2, n_radial)``, one array per system. Free-space systems
always go through the pair sum of :mod:`gplode.free_space`; subclasses implement the
k ≠ 0 sum of periodic systems (all of them at once, so that a backend can batch them),
to which the analytic k = 0 and centre-atom terms of :mod:`gplode.corrections` are added
here.
"""

from __future__ import annotations

import numpy as np

from .corrections import add_periodic_corrections
from .free_space import PairRadialFunctions, free_space_coefficients

__all__ = ["Backend"]


class Backend:
    """Base class of the backends.

    :param hypers: :class:`gplode.hypers.LodeHypers`
    :param potential: :class:`gplode.potentials.SmearedPowerLaw`
    :param basis: :class:`gplode.radial.RadialBasis`
    """

    name = ""

    def __init__(self, hypers, potential, basis):
        self.hypers = hypers
        self.potential = potential
        self.basis = basis
        self.center_term = potential.center_term(basis)
        self._pair_functions = None

    def compute(self, systems, species: np.ndarray) -> list[np.ndarray]:
        """Coefficients of each system, shapes ``(n_atoms, len(species), (L+1)**2, n_radial)``."""
        h = self.hypers
        out = [None] * len(systems)
        periodic = [i for i, system in enumerate(systems) if system.periodic]
        for i, values in zip(periodic, self._kspace_part([systems[i] for i in periodic], species), strict=True):
            add_periodic_corrections(
                values, systems[i], species, self.potential, self.basis, self.center_term, h.center_atom_weight
            )
            out[i] = values
        for i, system in enumerate(systems):
            if not system.periodic:
                if self._pair_functions is None:  # tabulated once per calculator, on first use
                    self._pair_functions = PairRadialFunctions(self.potential, self.basis)
                out[i] = free_space_coefficients(
                    system, species, self._pair_functions, self.center_term, h.center_atom_weight, h.max_angular
                )
        return out

    def _kspace_part(self, systems, species: np.ndarray) -> list[np.ndarray]:
        """The k ≠ 0 sums of periodic ``systems``, one array per system (float64, host)."""
        raise NotImplementedError
