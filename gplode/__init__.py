"""gplode: generalised long-distance equivariant (LODE) features for any exponent p, on GPUs.

>>> import gplode
>>> sorted(gplode.__all__)  # doctest: +NORMALIZE_WHITESPACE
['Features', 'LodeCalculator', 'LodeHypers', 'SmearedPowerLaw', '__version__',
 'asymptotic_coefficients', 'featurize_dataset', 'load_features']
"""

from ._version import __version__
from .calculator import LodeCalculator
from .features import Features
from .hypers import LodeHypers
from .io.dataset import featurize_dataset, load_features
from .multipoles import asymptotic_coefficients
from .potentials import SmearedPowerLaw

__all__ = [
    "Features",
    "LodeCalculator",
    "LodeHypers",
    "SmearedPowerLaw",
    "__version__",
    "asymptotic_coefficients",
    "featurize_dataset",
    "load_features",
]
