"""Values + forces + stress through the VJP against values alone, and against featomic's dense
position gradients at equal k_cutoff, same run (issue 13).

    python benchmarks/bench_gradients.py            # NaCl 64 … 4,096 atoms, p = 1 and 6, and a dataset
    python benchmarks/bench_gradients.py --quick    # 64 and 512 atoms only, writes gradients_quick.json

NaCl supercells (conventional 8-atom cell repeated), σ = 1 Å, GTO max_radial 5, radius 4 Å,
max_angular 4, gplode's NumPy backend at accuracy 1e-5 (route by its cost model). Rows:

* ``values``: ``compute(frames)``;
* ``vjp``: ``compute(frames)`` then ``vjp(frames, λ)`` — the features, every atom's force and
  the virial of a model linear in the features;
* ``dense``: ``compute(frames, gradients=["positions"])`` (featomic's layout, O(N²) memory);
* ``featomic``: featomic's ``LodeSphericalExpansion`` with position gradients at gplode's
  k_cutoff, skipped (with its memory estimate) beyond ``--featomic-max-atoms`` or when its
  estimated memory exceeds 75 % of this machine's.

Each run is its own process (peak RSS its own). Writes ``benchmarks/results/gradients.json``
and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _common import featomic_calculator, machine, run_isolated, timed, write_results

HYPERS = dict(smearing=1.0, cutoff=4.0, max_radial=5, max_angular=4)
ACCURACY = 1e-5


def nacl(repeat: int, seed: int = 0):
    import ase.build

    atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(repeat)
    atoms.positions += np.random.default_rng(seed).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def dataset(n: int):
    from bench_dataset import periodic_frames

    return periodic_frames(n)


def featomic_gradient_bytes(n_atoms: int, n_species: int = 2) -> float:
    """Bytes of featomic's dense position gradients: N (N + S) rows × 3 × (L+1)² × n_radial doubles."""
    n_channels = (HYPERS["max_angular"] + 1) ** 2 * (HYPERS["max_radial"] + 1)
    return n_atoms * (n_atoms + n_species) * 3 * n_channels * 8


def run_one(mode: str, p: float, repeat: int = 0, n_frames: int = 0) -> dict:
    """One timed run in its own process: ``mode`` in values, vjp, dense, featomic."""
    import gplode

    frames = nacl(repeat) if repeat else dataset(n_frames)
    calc = gplode.LodeCalculator(exponent=p, backend="numpy", accuracy=ACCURACY, **HYPERS)
    k_cutoff = calc.pipeline.k_cutoff
    small = nacl(1)  # warm-up: the splines of v̂, Ĩ and dĨ/dk are built once per calculator
    calc.vjp(small, np.zeros(calc.compute(small).values.shape))
    if mode == "values":
        timing, _ = timed(lambda: calc.compute(frames))
    elif mode == "vjp":
        weights = np.random.default_rng(0).normal(size=calc.compute(frames).values.shape)

        def run():
            calc.compute(frames)
            return calc.vjp(frames, weights)

        timing, _ = timed(run)
    elif mode == "dense":
        timing, _ = timed(lambda: calc.compute(frames, gradients=["positions"]))
    else:
        peer = featomic_calculator(HYPERS, p, k_cutoff, exact_radial=False)
        timing, _ = timed(lambda: peer.compute(frames, gradients=["positions"]), repeats=1)
    n_atoms = len(frames) if repeat else sum(len(f) for f in frames)
    return {"seconds": timing["seconds"], "spread": timing["spread"], "k_cutoff": k_cutoff, "n_atoms": n_atoms}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64 and 512 atoms only; writes gradients_quick.json")
    parser.add_argument("--repeats", type=int, nargs="*", default=[2, 4, 5, 6, 8], help="supercell repeats n")
    parser.add_argument("--exponents", type=float, nargs="*", default=[1.0, 6.0])
    parser.add_argument("--featomic-max-atoms", type=int, default=1000)
    parser.add_argument("--dense-max-atoms", type=int, default=1000)
    parser.add_argument("--dataset", type=int, default=400, help="small cells in the dataset rows (0: none)")
    args = parser.parse_args()
    repeats = [2, 4] if args.quick else args.repeats
    info = machine()
    budget = 0.75 * info["memory_gib"] * 2**30
    rows = []
    for p in args.exponents:
        for repeat in repeats:
            n_atoms = 8 * repeat**3
            for mode in ("values", "vjp", "dense", "featomic"):
                row = {"mode": mode, "exponent": p, "system": f"NaCl {n_atoms}", "n_atoms": n_atoms}
                limit = args.featomic_max_atoms if mode == "featomic" else args.dense_max_atoms
                estimate = featomic_gradient_bytes(n_atoms)
                if mode in ("dense", "featomic") and (n_atoms > limit or estimate > budget):
                    row["skipped"] = f"dense gradients need ~{estimate / 2**30:.1f} GiB"
                else:
                    row.update(run_isolated("bench_gradients", "run_one", dict(mode=mode, p=p, repeat=repeat)))
                rows.append(row)
                print(json.dumps(row), flush=True)
        if args.dataset and not args.quick:
            for mode in ("values", "vjp"):
                row = {"mode": mode, "exponent": p, "system": f"{args.dataset} small cells"}
                row.update(run_isolated("bench_gradients", "run_one", dict(mode=mode, p=p, n_frames=args.dataset)))
                rows.append(row)
                print(json.dumps(row), flush=True)
    payload = {"machine": info, "hypers": dict(HYPERS, accuracy=ACCURACY), "rows": rows, "summary": summarise(rows)}
    path = write_results("gradients" + ("_quick" if args.quick else ""), payload)
    print(markdown_table(rows))
    print(f"results written to {path}")


def summarise(rows: list[dict]) -> list[dict]:
    """Per system and p: the VJP's time over the values' and featomic's (dense) over the VJP's."""
    out = []
    for system, p in sorted({(r["system"], r["exponent"]) for r in rows}):
        times = {r["mode"]: r for r in rows if r["system"] == system and r["exponent"] == p and "seconds" in r}
        entry = {"system": system, "exponent": p}
        if "values" in times and "vjp" in times:
            entry["vjp_over_values"] = times["vjp"]["seconds"] / times["values"]["seconds"]
        if "featomic" in times and "vjp" in times:
            entry["featomic_over_vjp"] = times["featomic"]["seconds"] / times["vjp"]["seconds"]
            entry["featomic_peak_over_vjp_peak"] = times["featomic"]["peak_rss_gib"] / times["vjp"]["peak_rss_gib"]
        out.append(entry)
    return out


def markdown_table(rows: list[dict]) -> str:
    lines = ["| system | p | run | time (s) | peak RSS (GiB) |", "|---|---|---|---|---|"]
    names = {
        "values": "gplode values",
        "vjp": "gplode values + forces + stress (VJP)",
        "dense": "gplode dense position gradients",
        "featomic": "featomic position gradients",
    }
    for r in rows:
        time = f"{r['seconds']:.3g}" if "seconds" in r else f"skipped ({r['skipped']})"
        peak = f"{r['peak_rss_gib']:.2f}" if "peak_rss_gib" in r else "–"
        lines.append(f"| {r['system']} | {r['exponent']:g} | {names[r['mode']]} | {time} | {peak} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
