"""What the dataset and store tests share: hypers, small periodic frames, store equality."""

import sys
import time

import ase.build
import numpy as np

from gplode.io.dataset import DatasetError, FeatureStore, load_features

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


def featurize_command(path, output, *extra, batch_size: int = 4) -> list[str]:
    """``gplode featurize`` of ``path`` into ``output`` in a subprocess (small hypers)."""
    return [
        sys.executable,
        "-m",
        "gplode.io.cli",
        "featurize",
        str(path),
        "-o",
        str(output),
        "--batch-size",
        str(batch_size),
        "--max-radial",
        "3",
        "--max-angular",
        "3",
        "--accuracy",
        "1e-6",
        *extra,
    ]


def wait_for_chunks(store, count, process, timeout=120):
    """Poll ``store`` (written by ``process``) until ``count`` chunks are complete."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            if len(FeatureStore(store).completed()) >= count:
                return
        except DatasetError:  # not created (or its metadata not written) yet
            pass
        time.sleep(0.02)
    raise AssertionError(f"{count} chunks not complete in time (exit code {process.poll()})")
