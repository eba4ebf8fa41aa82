"""gplode: generalised long-distance equivariant (LODE) features for any exponent p, on GPUs.

>>> import gplode
>>> sorted(gplode.__all__)
['Features', 'LodeCalculator', 'LodeHypers', 'SmearedPowerLaw', '__version__', 'asymptotic_coefficients']
"""

from .calculator import LodeCalculator
from .features import Features
from .hypers import LodeHypers
from .multipoles import asymptotic_coefficients
from .potentials import SmearedPowerLaw

__version__ = "0.1.0"

__all__ = ["Features", "LodeCalculator", "LodeHypers", "SmearedPowerLaw", "__version__", "asymptotic_coefficients"]
