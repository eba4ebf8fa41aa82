"""End-to-end dataset featurisation throughput (``gplode featurize`` path).

    python benchmarks/bench_dataset.py            # S22x5 (110 dimers) + 2,000 periodic structures
    python benchmarks/bench_dataset.py --quick    # 200 periodic structures

Writes each dataset to extxyz, then times ``featurize_dataset`` (reading, computing,
writing a Zarr store) in a fresh process, and records structures/s, atoms/s and peak
memory to ``benchmarks/results/dataset.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from _common import machine, run_isolated, write_results

HYPERS = dict(exponent=1.0, smearing=1.0, cutoff=4.0, max_radial=5, max_angular=4, accuracy=1e-5)


def s22x5_frames():
    from ase.data.s22 import create_s22_system, s22

    return [create_s22_system(name, dist=d) for name in s22 for d in (0.9, 1.0, 1.2, 1.5, 2.0)]


def periodic_frames(n: int, seed: int = 0):
    """``n`` rattled rock-salt and CsCl-type cells of 8–64 atoms with random lattice constants."""
    import ase.build

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        kind = ["NaCl", "KCl", "CsCl"][i % 3]
        if kind == "CsCl":
            atoms = ase.build.bulk("CsCl", "cesiumchloride", a=4.1 * rng.uniform(0.95, 1.05)).repeat(
                int(rng.integers(2, 4))
            )
        else:
            a = {"NaCl": 5.64, "KCl": 6.29}[kind] * rng.uniform(0.95, 1.05)
            atoms = ase.build.bulk(kind, "rocksalt", a=a, cubic=True).repeat((1, 1, int(rng.integers(1, 4))))
        atoms.rattle(0.05, seed=i)
        frames.append(atoms)
    return frames


def run_one(path: str, output: str, batch_size: int) -> dict:
    """Featurise ``path`` into ``output`` (in its own process)."""
    import gplode
    from gplode.io.dataset import featurize_dataset

    calc = gplode.LodeCalculator(**HYPERS)
    summary = featurize_dataset(path, calc, output, batch_size=batch_size)
    summary["backend"] = calc.backend
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    import ase.io

    datasets = {"periodic-200" if args.quick else "periodic-2000": periodic_frames(200 if args.quick else 2000)}
    if not args.quick:
        datasets = {"S22x5": s22x5_frames(), **datasets}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, frames in datasets.items():
            path = str(Path(tmp) / f"{name}.extxyz")
            ase.io.write(path, frames)
            result = run_isolated(
                "bench_dataset",
                "run_one",
                dict(path=path, output=str(Path(tmp) / f"{name}.zarr"), batch_size=args.batch_size),
            )
            row = {
                "dataset": name,
                "structures": result["structures"],
                "atoms": result["atoms"],
                "seconds": result["seconds"],
                "structures_per_s": result["structures"] / result["seconds"],
                "atoms_per_s": result["atoms"] / result["seconds"],
                "peak_rss_gib": result["peak_rss_gib"],
                "backend": result["backend"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    path = write_results(
        "dataset-quick" if args.quick else "dataset",
        {"machine": machine(), "hypers": HYPERS, "batch_size": args.batch_size, "rows": rows},
    )
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
