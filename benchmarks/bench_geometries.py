"""Large free-space clusters and slabs (issue 16): the free-space mesh against the pair sum in
the same run, and the slab route.

    python benchmarks/bench_geometries.py            # 20,001-atom droplet, 2,048-atom slab (≈ 20 min)
    python benchmarks/bench_geometries.py --quick    # 2,001-atom droplet, 256-atom slab (≈ 2 min)

Hypers: GTO max_radial 5, radius 4 Å, max_angular 4, σ = 1 Å, NumPy backend, p ∈ {1, 6},
accuracy ∈ {1e-5, 1e-4}.

Cluster (:func:`water_droplet`: rigid water molecules, random orientations, on a jittered cubic
lattice at 1 g/cm³ inside a sphere; O–O ≥ 2.0 Å, two species):

* ``mesh``: ``compute`` with ``route="mesh"`` (the free-space mesh of
  :mod:`gplode.methods.free_mesh`: its levels, split and meshes are recorded), after a warm-up
  on a water molecule (the calculator's radial splines); box, kernels and k-sums timed;
* ``pair sum``: :func:`gplode.methods.pair_sum.free_space_coefficients` (what ``route="direct"``
  runs) on a random sample of centres (``PAIR_SAMPLE``), its time **extrapolated** linearly to
  all centres (each centre costs N pairs; the pair table built beforehand, its time given
  apart); what ``route="auto"`` would take is recorded;
* ``error``: the mesh's coefficients of the sampled centres against the pair sum's (relative RMS
  over the sample, and the largest deviation relative to that RMS).

Slab (:func:`rocksalt_slab`: rattled NaCl, pbc = (True, True, False), 20 Å of vacuum): the
truncated direct k-sum of the slab route (``route="auto"``; there is no pair sum for slabs);
error against the same route at accuracy / 100.

Each timing is one call in a fresh process (peak RSS its own); the machine is shared, so every
timed run is repeated (``--repeats``) and the best is kept. Writes
``benchmarks/results/geometries.json`` (``geometries_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine, relative_errors, run_isolated, write_results

HYPERS = dict(smearing=1.0, cutoff=4.0, max_radial=5, max_angular=4, radial_basis="gto")
EXPONENTS = (1.0, 6.0)
ACCURACIES = (1e-5, 1e-4)
#: centres of the cluster on which the pair sum is timed and the mesh's error measured
PAIR_SAMPLE = 400
#: Å³ per water molecule at 1 g/cm³
WATER_VOLUME = 29.9


def water_droplet(n_atoms: int, seed: int = 0):
    """About ``n_atoms`` atoms (a multiple of 3) of rigid water in a sphere at 1 g/cm³: molecules
    on the sites of a cubic lattice of spacing (29.9 Å³)^{1/3} nearest the centre, each rotated
    at random and shifted by N(0, 0.1 Å) per axis."""
    import ase
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    n_molecules = round(n_atoms / 3)
    spacing = WATER_VOLUME ** (1 / 3)
    radius = (3 * n_molecules * WATER_VOLUME / (4 * np.pi)) ** (1 / 3)
    m = int(np.ceil(radius / spacing)) + 2
    grid = np.arange(-m, m + 1) * spacing
    sites = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3)
    sites = sites[np.argsort(np.linalg.norm(sites, axis=1) + rng.uniform(0, 1e-3, len(sites)))][:n_molecules]
    molecule = np.array([[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])
    rotations = Rotation.random(n_molecules, random_state=seed)
    jitter = rng.normal(scale=0.1, size=(n_molecules, 3))
    positions = np.concatenate([rotations[i].apply(molecule) + sites[i] + jitter[i] for i in range(n_molecules)])
    return ase.Atoms("OH2" * n_molecules, positions=positions + radius + 10.0)


def rocksalt_slab(repeat: tuple[int, int, int], seed: int = 0):
    """A rattled (0.05 Å) NaCl slab of ``repeat`` conventional cells, pbc (True, True, False), 20 Å vacuum."""
    import ase.build

    slab = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(repeat)
    slab.rattle(0.05, seed=seed)
    cell = slab.cell.array.copy()
    cell[2] = [0.0, 0.0, cell[2, 2] + 20.0]
    slab.set_cell(cell)
    slab.pbc = [True, True, False]
    return slab


def _calculator(p: float, accuracy: float, route: str):
    import gplode

    return gplode.LodeCalculator(exponent=p, accuracy=accuracy, route=route, backend="numpy", **HYPERS)


def _sample(n_atoms: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.sort(rng.choice(n_atoms, min(PAIR_SAMPLE, n_atoms), replace=False))


def cluster_mesh(n_atoms: int, p: float, accuracy: float, output: str) -> dict:
    """The free-space mesh of the droplet (one process); saves the sampled centres' rows to ``output``."""
    import ase.build

    from gplode.systems import as_systems

    atoms = water_droplet(n_atoms)
    calc = _calculator(p, accuracy, "mesh")
    calc.compute(ase.build.molecule("H2O"))  # warm-up: the radial splines
    start = time.perf_counter()
    values = calc.compute(atoms).values
    seconds = time.perf_counter() - start
    np.save(output, values[_sample(len(atoms))])
    pipeline, system = calc.pipeline, as_systems(atoms)[0]
    box = pipeline.free_mesh.box(system)
    levels = [
        {
            "kind": "short-range" if level.short else "windowed",
            "mesh": list(level.mesh.shape),
            "order": level.mesh.order,
            "k_cutoff": level.mesh.k_cutoff,
            "box_edges": np.diag(level.cell).round(2).tolist(),
            "mesh_accuracy": level.accuracy,
        }
        for level in box.levels
    ]
    n_species = 2
    channels = n_species * (HYPERS["max_angular"] + 1) ** 2 * (HYPERS["max_radial"] + 1)
    from gplode.methods.free_mesh import pair_sum_cost

    return {
        "seconds": seconds,
        "split": box.split,
        "levels": levels,
        "float32_meshes": pipeline.free_mesh.single_precision,
        "cost_model_s": pipeline.free_mesh.cost(system, n_species, box),
        "pair_sum_cost_model_s": pair_sum_cost(system.n_atoms, channels),
        "auto_route": "mesh"
        if _calculator(p, accuracy, "auto").pipeline._free_method(system, n_species)
        else "pair sum",
        "memory_model_gib": pipeline.free_mesh.memory_bytes(system, n_species, box) / 2**30,
    }


def cluster_pair(n_atoms: int, p: float, accuracy: float, mesh_file: str) -> dict:
    """The pair sum of the sampled centres (one process), extrapolated; the mesh's error there."""
    from gplode.methods.pair_sum import free_space_coefficients
    from gplode.systems import as_systems

    atoms = water_droplet(n_atoms)
    calc = _calculator(p, accuracy, "direct")
    pipeline, system = calc.pipeline, as_systems(atoms)[0]
    start = time.perf_counter()
    table = pipeline.pair_table()
    table_seconds = time.perf_counter() - start
    sample = _sample(system.n_atoms)
    species = np.array(sorted(set(system.numbers.tolist())))
    start = time.perf_counter()
    exact = free_space_coefficients(
        system, species, table, pipeline.center_term, 1.0, HYPERS["max_angular"], centres=sample
    )
    seconds = time.perf_counter() - start
    errors = relative_errors(np.load(mesh_file), exact)
    return {
        "sample_centres": int(sample.size),
        "sample_seconds": seconds,
        "table_seconds": table_seconds,
        "seconds_extrapolated": table_seconds + seconds * system.n_atoms / sample.size,
        **errors,
    }


def slab_run(repeat: list, p: float, accuracy: float, output: str, reference: str | None = None) -> dict:
    """The slab route on the slab (one process); saves its values, or compares them with ``reference``."""
    import ase.build

    atoms = rocksalt_slab(tuple(repeat))
    calc = _calculator(p, accuracy, "auto")
    calc.compute(ase.build.bulk("NaCl", "rocksalt", a=5.64))  # warm-up: the radial splines
    start = time.perf_counter()
    values = calc.compute(atoms).values
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "n_atoms": len(atoms)}
    if reference is None:
        np.save(output, values)
    else:
        out.update(relative_errors(values, np.load(reference)))
    return out


def _best(function: str, kwargs: dict, repeats: int) -> dict:
    """The fastest of ``repeats`` isolated runs (the machine is shared); its peak RSS is kept with it."""
    runs = [run_isolated("bench_geometries", function, kwargs, timeout=7200) for _ in range(repeats)]
    best = min(runs, key=lambda run: run["seconds"] if "seconds" in run else run["sample_seconds"])
    best["all_seconds"] = [run.get("seconds", run.get("sample_seconds")) for run in runs]
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--repeats", type=int, default=None, help="isolated runs per timing, the best kept (2; 1 with --quick)"
    )
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.quick else 2
    n_cluster = 2001 if args.quick else 20001
    repeat = [4, 4, 2] if args.quick else [8, 8, 4]
    accuracies = ACCURACIES
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for p in EXPONENTS:
            for accuracy in accuracies:
                mesh_file = str(Path(tmp) / f"mesh-{p}-{accuracy}.npy")
                # every repeat writes the same values (the same box and meshes)
                kwargs = dict(n_atoms=n_cluster, p=p, accuracy=accuracy, output=mesh_file)
                mesh = _best("cluster_mesh", kwargs, args.repeats)
                pair = _best("cluster_pair", dict(n_atoms=n_cluster, p=p, accuracy=accuracy, mesh_file=mesh_file), 1)
                row = {
                    "geometry": "cluster",
                    "structure": f"water droplet, {n_cluster} atoms",
                    "n_atoms": n_cluster,
                    "exponent": p,
                    "accuracy": accuracy,
                    "mesh": mesh,
                    "pair_sum": pair,
                    "error_over_accuracy": pair["rms_error"] / accuracy,
                    "speedup_vs_pair_sum": pair["seconds_extrapolated"] / mesh["seconds"],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
        for p in EXPONENTS:
            reference = str(Path(tmp) / f"slab-{p}.npy")
            tight = run_isolated(
                "bench_geometries",
                "slab_run",
                dict(repeat=repeat, p=p, accuracy=min(accuracies) / 100, output=reference),
            )
            for accuracy in accuracies:
                run = _best(
                    "slab_run",
                    dict(repeat=repeat, p=p, accuracy=accuracy, output="", reference=reference),
                    args.repeats,
                )
                row = {
                    "geometry": "slab",
                    "structure": f"NaCl slab {'x'.join(map(str, repeat))} cells, {run['n_atoms']} atoms, 20 Å vacuum",
                    "n_atoms": run["n_atoms"],
                    "exponent": p,
                    "accuracy": accuracy,
                    "route": "truncated direct k-sum (slab route)",
                    "slab": run,
                    "reference": {"accuracy": min(accuracies) / 100, "seconds": tight["seconds"]},
                    "error_over_accuracy": run["rms_error"] / accuracy,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    path = write_results(
        "geometries_quick" if args.quick else "geometries",
        {
            "machine": machine(),
            "hypers": HYPERS,
            "pair_sum_timing": (
                f"measured on {PAIR_SAMPLE} random centres (all centres if fewer), extrapolated linearly "
                "to all centres; the pair table's construction added once"
            ),
            "slab_error_reference": "the same route at accuracy / 100",
            "timing": "best of the isolated runs in all_seconds (the machine is shared with other jobs)",
            "total_seconds": time.perf_counter() - start,
            "rows": rows,
        },
    )
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
