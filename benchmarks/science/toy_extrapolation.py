"""Toy extrapolation: train on short separations, test on long ones, for known pair physics.

Two species, Na and Cl, in free-space clusters of 2-3 atoms. Two pair-additive energies:

- ``coulomb``: E = sum_{i<j} q_i q_j / d_ij with q(Na) = +1, q(Cl) = -1;
- ``dispersion``: E = -sum_{i<j} sqrt(C6_i C6_j) / d_ij^6 with C6(Na) = 300, C6(Cl) = 1200.

Each cluster is scaled so that its shortest pair distance d_min lies in a window; the
models are trained on d_min in [2.5, 4] Å and tested on [5, 7], [7, 10] and [10, 15] Å
(and on fresh clusters in the training window). Model: ridge regression, linear in the
per-structure l = 0 LODE features (see ``common.py``), lambda chosen on a random 25 %
validation split of the training clusters. Error measure: RMSE / RMS(true energy) per window.

Run ``python benchmarks/science/toy_extrapolation.py [--quick]``.
"""

from __future__ import annotations

import time

import ase
import numpy as np
from common import (
    SETTINGS,
    FeatureSet,
    argument_parser,
    figure,
    finish,
    fit_ridge,
    format_table,
    random_split,
    relative_rmse,
    save_figure,
    standard_feature_sets,
    structure_features,
)

SPECIES = (11, 17)
CHARGE = {11: 1.0, 17: -1.0}
C6 = {11: 300.0, 17: 1200.0}
TARGETS = ("coulomb", "dispersion")
TRAIN_WINDOW = (2.5, 4.0)
TEST_WINDOWS = ((2.5, 4.0), (5.0, 7.0), (7.0, 10.0), (10.0, 15.0))


def make_clusters(rng: np.random.Generator, n: int, window: tuple[float, float], max_atoms: int = 3) -> list:
    """Random Na/Cl clusters of 2..max_atoms atoms, scaled so that d_min is uniform in ``window``."""
    frames = []
    while len(frames) < n:
        n_atoms = int(rng.integers(2, max_atoms + 1))
        pos = rng.normal(size=(n_atoms, 3))
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)[np.triu_indices(n_atoms, 1)]
        if d.max() > 2.5 * d.min():
            continue  # keep clusters compact: every pair distance within 2.5 d_min
        pos *= rng.uniform(*window) / d.min()
        frames.append(ase.Atoms(numbers=rng.choice(SPECIES, size=n_atoms), positions=pos, pbc=False))
    return frames


def pair_energy(z1: int, z2: int, d: np.ndarray | float, target: str):
    """Pair energy of species z1, z2 at distance d for the given toy ``target``."""
    if target == "coulomb":
        return CHARGE[z1] * CHARGE[z2] / d
    if target == "dispersion":
        return -np.sqrt(C6[z1] * C6[z2]) / d**6
    raise ValueError(f"unknown target {target!r}")


def toy_energies(frames, target: str) -> np.ndarray:
    """Exact pair-additive energy of every cluster."""
    out = []
    for atoms in frames:
        z, pos = atoms.numbers, atoms.positions
        e = 0.0
        for i in range(len(atoms)):
            for j in range(i + 1, len(atoms)):
                e += pair_energy(int(z[i]), int(z[j]), np.linalg.norm(pos[i] - pos[j]), target)
        out.append(e)
    return np.array(out)


def dimer_scan(d: np.ndarray, pair: tuple[int, int]) -> list:
    """Dimers of the given species pair at distances ``d``."""
    return [ase.Atoms(numbers=pair, positions=[[0, 0, 0], [0, 0, x]], pbc=False) for x in d]


def run(feature_sets: list[FeatureSet], n_train: int, n_test: int, seed: int = 0) -> dict:
    """Train every feature set on the short window and evaluate on every test window.

    :return: ``{"windows", "errors": {target: {set name: [relative RMSE per window]}},
        "lambda", "scan": {...}}``
    """
    rng = np.random.default_rng(seed)
    train = make_clusters(rng, n_train, TRAIN_WINDOW)
    tests = [make_clusters(rng, n_test, w) for w in TEST_WINDOWS]
    train_idx, val_idx = random_split(n_train, rng)
    scan_d = np.linspace(2.5, 15.0, 51)
    scans = {"coulomb": (11, 17), "dispersion": (17, 17)}
    errors = {t: {} for t in TARGETS}
    lambdas = {t: {} for t in TARGETS}
    scan = {"d": scan_d.tolist(), "true": {}, "pred": {t: {} for t in TARGETS}}
    for t in TARGETS:
        scan["true"][t] = [float(pair_energy(*scans[t], x, t)) for x in scan_d]
    for fs in feature_sets:
        calc = fs.calculator()
        x_train = structure_features(calc, train, SPECIES)
        x_tests = [structure_features(calc, frames, SPECIES) for frames in tests]
        x_scan = {t: structure_features(calc, dimer_scan(scan_d, scans[t]), SPECIES) for t in TARGETS}
        for t in TARGETS:
            model = fit_ridge(x_train, toy_energies(train, t), train_idx, val_idx)
            errors[t][fs.name] = [
                relative_rmse(model.predict(x), toy_energies(frames, t))
                for x, frames in zip(x_tests, tests, strict=True)
            ]
            lambdas[t][fs.name] = model.lam
            scan["pred"][t][fs.name] = model.predict(x_scan[t]).tolist()
    return {
        "train_window": TRAIN_WINDOW,
        "windows": [list(w) for w in TEST_WINDOWS],
        "n_train": n_train,
        "n_test": n_test,
        "errors": errors,
        "lambda": lambdas,
        "scan": scan,
    }


def tables(result: dict) -> str:
    """Markdown tables of the relative test RMSE, one per target."""
    header = ["features"] + [f"{a:g}-{b:g} Å" for a, b in result["windows"]]
    out = []
    for t in TARGETS:
        rows = [[name] + [float(v) for v in errs] for name, errs in result["errors"][t].items()]
        out.append(
            f"**{t}** (relative RMSE, training window {result['train_window'][0]:g}-"
            f"{result['train_window'][1]:g} Å)\n\n" + format_table(header, rows)
        )
    return "\n\n".join(out)


def plot(results: dict, path) -> None:
    """Figure: relative error per window for each setting, and the rescaled dimer curves E d^p."""
    settings = list(results)
    fig, axes = figure(len(settings) + 1, 2, figsize=(11, 4 * (len(settings) + 1)))
    for row, setting in enumerate(settings):
        result = results[setting]
        labels = [f"{a:g}-{b:g}" for a, b in result["windows"]]
        for col, t in enumerate(TARGETS):
            ax = axes[row, col]
            names = list(result["errors"][t])
            width = 0.8 / len(names)
            for k, name in enumerate(names):
                ax.bar(np.arange(len(labels)) + k * width, result["errors"][t][name], width, label=name)
            ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels)
            ax.set_yscale("log")
            ax.set_xlabel("d_min window (Å); training window 2.5-4 Å")
            ax.set_ylabel("RMSE / RMS(E)")
            sigma, r0 = result["smearing_cutoff"]
            ax.set_title(f"{t}, {setting} (σ={sigma:g}, r0={r0:g} Å)")
            ax.axhline(1.0, color="k", lw=0.8, ls=":")
    axes[0, 0].legend(fontsize=8)
    result = results[settings[0]]
    d = np.array(result["scan"]["d"])
    for col, (t, p) in enumerate(zip(TARGETS, (1, 6), strict=True)):
        ax = axes[-1, col]
        exact = np.array(result["scan"]["true"][t]) * d**p
        ax.plot(d, exact, "k", lw=3, label="exact")
        for name, pred in result["scan"]["pred"][t].items():
            ax.plot(d, np.array(pred) * d**p, label=name)
        ax.axvspan(*result["train_window"], color="0.9")
        ax.set_xlabel("dimer separation d (Å)")
        ax.set_ylabel(f"E · d^{p}")
        ax.set_title(f"{'Na-Cl dimer, Coulomb' if t == 'coulomb' else 'Cl-Cl dimer, dispersion'} ({settings[0]})")
        ax.set_ylim(exact.min() - 1.5 * abs(exact).max(), exact.max() + 1.5 * abs(exact).max())
    save_figure(fig, path)


def main(argv=None) -> None:
    """Command-line entry point."""
    args = argument_parser(__doc__, "few structures, seconds").parse_args(argv)
    n_train, n_test = (60, 20) if args.quick else (args.n_train, args.n_test)
    start = time.perf_counter()
    results = {}
    for setting in SETTINGS:
        results[setting] = run(standard_feature_sets(setting), n_train, n_test, args.seed)
        results[setting]["smearing_cutoff"] = SETTINGS[setting]
        print(f"### setting {setting!r}: sigma, r0 = {SETTINGS[setting]} Å\n\n{tables(results[setting])}\n")
    finish("toy_extrapolation", results, start, args.quick, plot)


if __name__ == "__main__":
    main()
