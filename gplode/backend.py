"""The interface every backend implements, and what they share.

A backend turns one validated :class:`gplode.systems.System` into coefficients
``(n_atoms, n_species, (L+1)**2, n_radial)``. Free-space systems always go through the
pair sum of :mod:`gplode.free_space`; subclasses implement the periodic case.
"""

from __future__ import annotations

import numpy as np

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

    def compute(self, system, species: np.ndarray) -> np.ndarray:
        """Coefficients of one system, shape ``(n_atoms, len(species), (L+1)**2, n_radial)``."""
        if system.periodic:
            return self._periodic(system, species)
        if self._pair_functions is None:  # tabulated once per calculator, on first use
            self._pair_functions = PairRadialFunctions(self.potential, self.basis)
        h = self.hypers
        return free_space_coefficients(
            system, species, self._pair_functions, self.center_term, h.center_atom_weight, h.max_angular
        )

    def _periodic(self, system, species: np.ndarray) -> np.ndarray:
        raise NotImplementedError
