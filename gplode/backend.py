"""The interface every backend implements, and what they share.

A backend turns validated :class:`gplode.systems.System` objects into coefficients
``(n_atoms, n_species, (L+1)**2, n_radial)``, one array per system. Free-space systems
always go through the pair sum of :mod:`gplode.free_space`; subclasses implement the
k ≠ 0 sum of periodic systems (all of them at once, so that a backend can batch them),
to which the analytic k = 0 and centre-atom terms of :mod:`gplode.corrections` are added
here.
"""

from __future__ import annotations

import os

import numpy as np

from .corrections import periodic_corrections
from .free_space import PairRadialFunctions, free_space_coefficients
from .kvectors import default_k_cutoff

__all__ = ["Backend", "format_bytes", "host_memory"]


def host_memory() -> int:
    """Bytes of memory available to this process (``MemAvailable``, else physical memory)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def format_bytes(n_bytes: float) -> str:
    """``n_bytes`` as GiB, or MiB below 1 GiB."""
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


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
        #: radius of the summed k-sphere in Å⁻¹ (explicit ``k_cutoff``, or from ``accuracy``)
        self.k_cutoff = (
            hypers.k_cutoff if hypers.k_cutoff is not None else default_k_cutoff(hypers.smearing, hypers.accuracy)
        )

    @staticmethod
    def available_memory() -> int:
        """Bytes the backend's arrays may use (host memory; the GPU backend: device memory)."""
        return host_memory()

    def compute(self, systems, species: np.ndarray) -> np.ndarray:
        """Coefficients of all atoms of ``systems``, system after system.

        :return: ``(total atoms, len(species), (L+1)**2, n_radial)`` in ``hypers.dtype``
        """
        h = self.hypers
        counts = np.array([system.n_atoms for system in systems])
        offsets = np.concatenate([[0], np.cumsum(counts)])
        out = np.empty((offsets[-1], len(species), (h.max_angular + 1) ** 2, self.basis.n_radial), dtype=h.dtype)
        periodic = [i for i, system in enumerate(systems) if system.periodic]
        periodic_systems = [systems[i] for i in periodic]
        for members, block in self._kspace_part(periodic_systems, species):
            start = 0
            for i in (periodic[j] for j in members):  # block rows: the members' atoms in order
                out[offsets[i] : offsets[i + 1]] = block[start : start + counts[i]]
                start += counts[i]
        if periodic:
            corrections = periodic_corrections(
                periodic_systems, species, self.potential, self.basis, self.center_term, h.center_atom_weight
            ).astype(h.dtype, copy=False)
            if len(periodic) == len(systems):
                out[:, :, 0, :] += corrections
            else:
                out[np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in periodic]), :, 0, :] += corrections
        for i, system in enumerate(systems):
            if not system.periodic:
                if self._pair_functions is None:  # tabulated once per calculator, on first use
                    self._pair_functions = PairRadialFunctions(self.potential, self.basis)
                out[offsets[i] : offsets[i + 1]] = free_space_coefficients(
                    system, species, self._pair_functions, self.center_term, h.center_atom_weight, h.max_angular
                )
        return out

    def _kspace_part(self, systems, species: np.ndarray):
        """The k ≠ 0 sums of the periodic ``systems``.

        Yields ``(members, block)``: indices into ``systems`` and the coefficients of their
        atoms, one system after the other, ``(atoms of members, n_species, (L+1)**2, n_radial)``
        (host array, any float dtype); every system appears in exactly one ``members``.
        """
        raise NotImplementedError
