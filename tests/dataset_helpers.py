"""What the dataset and store tests share: hypers, small periodic frames, store equality."""

import ase.build
import numpy as np

from gplode.io.dataset import FeatureStore, load_features

HYPERS = dict(smearing=1.0, cutoff=3.0, max_radial=2, max_angular=2, backend="numpy", accuracy=1e-5)


def _frames(n, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        atoms = ase.build.bulk("NaCl", "rocksalt", a=5.5 + 0.3 * rng.uniform(), cubic=bool(i % 2))
        atoms.rattle(0.05, seed=i)
        frames.append(atoms)
    return frames


def _same_store(a, b):
    fa, sa = load_features(a)
    fb, sb = load_features(b)
    np.testing.assert_array_equal(fa.values, fb.values)
    for name in ("system", "atom", "center_types", "neighbor_types"):
        np.testing.assert_array_equal(getattr(fa, name), getattr(fb, name))
    assert sa == sb
    assert FeatureStore(a).metadata == FeatureStore(b).metadata
