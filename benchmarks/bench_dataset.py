"""Dataset throughput: gplode against featomic on the same structures, and end to end.

    python benchmarks/bench_dataset.py            # both parts (≈ 15 min)
    python benchmarks/bench_dataset.py --quick    # a smaller comparison, 200 structures end to end

Comparison (issue 15): datasets of small cells (400 rattled NaCl/KCl/CsCl cells of 8–64
atoms, :func:`periodic_frames`) and of medium ones (rattled MgO-type supercells and water
boxes of 64–256 atoms, :func:`medium_frames`), values only, p = 1, σ = 1 Å, GTO max_radial 5,
r₀ 4 Å, max_angular 4. gplode runs at each accuracy; featomic at the smallest k_c, a multiple
of 0.1π/σ, whose measured error is ≤ gplode's (errors: relative RMS against the reference
backend at accuracy 1e-12, on the first structures of the dataset). Each timing is one
``compute`` of the whole dataset in a fresh process (setup included), after a warm-up call
on one structure (``seconds``), and the best of two more calls (``repeat_seconds``: as the
later batches of a dataset run); peak memory is the process's.

End to end: each dataset written to extxyz, then ``featurize_dataset`` (reading, computing,
writing a Zarr store) timed in a fresh process. Everything goes to
``benchmarks/results/dataset.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from _common import featomic_calculator, machine, relative_errors, run_isolated, write_results

#: timed repeats of each comparison's call after the first (their best is ``repeat_seconds``)
REPEATS = 2
HYPERS = dict(exponent=1.0, smearing=1.0, cutoff=4.0, max_radial=5, max_angular=4, accuracy=1e-5)
#: the comparison's hypers (no accuracy: that is the setting compared)
COMPARED = {key: value for key, value in HYPERS.items() if key != "accuracy"}
#: structures of each dataset whose errors are measured (the reference is slow)
ERROR_SAMPLE = 24


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


def medium_frames(n: int, seed: int = 1):
    """``n`` cells of 64–256 atoms: rattled MgO-type supercells (a = 4.21 Å ± 3 %) and boxes
    of rigid water molecules at random positions and orientations (density ≈ 1 g/cm³)."""
    import ase
    import ase.build
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        if i % 2 == 0:
            repeat = [(2, 2, 2), (2, 2, 3), (2, 2, 4), (2, 3, 4), (2, 4, 4)][(i // 2) % 5]
            atoms = ase.build.bulk("MgO", "rocksalt", a=4.21 * rng.uniform(0.97, 1.03), cubic=True).repeat(repeat)
            atoms.rattle(0.05, seed=i)
        else:
            n_molecules = int(rng.integers(22, 86))
            edge = (n_molecules * 29.9) ** (1 / 3)  # Å³ per molecule at 1 g/cm³
            molecule = np.array([[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])
            positions = [
                Rotation.random(random_state=int(rng.integers(2**31))).apply(molecule) + rng.uniform(0, edge, 3)
                for _ in range(n_molecules)
            ]
            atoms = ase.Atoms("OH2" * n_molecules, positions=np.concatenate(positions), cell=[edge] * 3, pbc=True)
        frames.append(atoms)
    return frames


def _frames(dataset: str, n: int):
    return periodic_frames(n) if dataset == "small" else medium_frames(n)


def _species(frames) -> list:
    return sorted({int(z) for atoms in frames for z in atoms.numbers})


def exact_values(dataset: str, n: int, output: str) -> dict:
    """The reference features of the first ``ERROR_SAMPLE`` structures, saved to ``output``."""
    import gplode

    frames = _frames(dataset, n)[:ERROR_SAMPLE]
    calc = gplode.LodeCalculator(backend="reference", accuracy=1e-12, neighbor_types=_species(frames), **COMPARED)
    np.save(output, calc.compute(frames).values)
    return {}


def featomic_all(frames, species, k_cutoff: float) -> np.ndarray:
    """featomic's coefficients of ``frames`` in gplode's layout (featomic's radial splines)."""
    tensor = featomic_calculator(COMPARED, COMPARED["exponent"], k_cutoff, exact_radial=False).compute(frames)
    offsets = np.concatenate([[0], np.cumsum([len(atoms) for atoms in frames])])
    L, n = COMPARED["max_angular"], COMPARED["max_radial"] + 1
    out = np.zeros((offsets[-1], len(species), (L + 1) ** 2, n))
    for key, block in tensor.items():
        l, a = int(key["o3_lambda"]), species.index(int(key["neighbor_type"]))
        rows = offsets[block.samples.values[:, 0]] + block.samples.values[:, 1]
        out[rows, a, l * l : (l + 1) ** 2, :] = block.values
    return out


def compare_one(code: str, dataset: str, n: int, setting: float, exact_file: str) -> dict:
    """One timed ``compute`` of a whole dataset in this (fresh) process: ``code`` "gplode"
    (``setting``: accuracy) or "featomic" (``setting``: k_cutoff)."""
    import time

    frames = _frames(dataset, n)
    species = _species(frames)
    if code == "gplode":
        import gplode

        calc = gplode.LodeCalculator(backend="numpy", accuracy=setting, neighbor_types=species, **COMPARED)
        calc.compute(frames[:1])  # splines and tables

        def compute(part):
            return calc.compute(part).values
    else:
        featomic_all(frames[:1], species, setting)

        def compute(part):
            return featomic_all(part, species, setting)

    start = time.perf_counter()
    values = compute(frames)
    seconds = time.perf_counter() - start
    exact = np.load(exact_file)
    errors = relative_errors(values[: exact.shape[0]], exact)
    del values
    repeats = []  # the same call again: work buffers, allocator and caches warm (a dataset's later batches)
    for _ in range(REPEATS):
        start = time.perf_counter()
        compute(frames)
        repeats.append(time.perf_counter() - start)
    atoms = int(sum(len(atoms) for atoms in frames))
    return {"seconds": seconds, "repeat_seconds": min(repeats), **errors, "atoms": atoms}


def featomic_matching(dataset: str, n: int, target: float, exact_file: str) -> dict:
    """The smallest featomic k_cutoff (multiple of 0.1π/σ) whose error on the sample is ≤ ``target``."""
    frames = _frames(dataset, n)[:ERROR_SAMPLE]
    species, exact = _species(_frames(dataset, n)), np.load(exact_file)
    for multiple in np.arange(0.8, 3.01, 0.1):
        k_cutoff = float(multiple * np.pi / COMPARED["smearing"])
        error = relative_errors(featomic_all(frames, species, k_cutoff), exact)["rms_error"]
        if error <= target:
            return {"k_cutoff": k_cutoff, "multiple": round(float(multiple), 1), "rms_error": error}
    raise RuntimeError(f"featomic did not reach {target:g}")


def compare(quick: bool, tmp: str) -> list:
    """gplode and featomic at equal measured error on the comparison datasets."""
    rows = []
    plans = [("small", 100 if quick else 400), ("medium", 20 if quick else 60)]
    accuracies = (1e-3, 1e-5) if quick else (1e-3, 1e-4, 1e-5, 1e-6)
    for dataset, n in plans:
        exact_file = str(Path(tmp) / f"exact-{dataset}.npy")
        run_isolated("bench_dataset", "exact_values", dict(dataset=dataset, n=n, output=exact_file))
        for accuracy in accuracies:
            ours = run_isolated(
                "bench_dataset",
                "compare_one",
                dict(code="gplode", dataset=dataset, n=n, setting=accuracy, exact_file=exact_file),
            )
            match = run_isolated(
                "bench_dataset",
                "featomic_matching",
                dict(dataset=dataset, n=n, target=ours["rms_error"], exact_file=exact_file),
            )
            theirs = run_isolated(
                "bench_dataset",
                "compare_one",
                dict(code="featomic", dataset=dataset, n=n, setting=match["k_cutoff"], exact_file=exact_file),
            )
            row = {
                "dataset": dataset,
                "structures": n,
                "atoms": ours["atoms"],
                "accuracy": accuracy,
                "gplode": ours,
                "featomic": {**theirs, "k_cutoff_pi_over_sigma": match["multiple"]},
                "speedup": theirs["seconds"] / ours["seconds"],
                "repeat_speedup": theirs["repeat_seconds"] / ours["repeat_seconds"],
                "memory_ratio": theirs["peak_rss_gib"] / ours["peak_rss_gib"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


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
        comparison = compare(args.quick, tmp)
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
        {
            "machine": machine(),
            "compared_hypers": COMPARED,
            "comparison": comparison,
            "hypers": HYPERS,
            "batch_size": args.batch_size,
            "rows": rows,
        },
    )
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
