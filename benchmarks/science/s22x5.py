"""S22x5 extrapolation: CCSD(T) interaction energies of 22 dimers at 5 separations (ase.data.s22).

Features describe the *interaction* only: the per-structure l = 0 LODE features (see
``common.py``) of the dimer minus those of its two isolated monomers, so intramolecular
pairs cancel exactly and the model predicts zero for infinitely separated monomers. Model:
ridge regression, linear in these features, one weight vector per centre species (H, C, N,
O); lambda is chosen on a validation split that holds out whole dimers. Two evaluations:

- ``extrapolation``: train on all 22 dimers at 0.9, 1.0, 1.2 x the equilibrium separation,
  test on 1.5 and 2.0 (MAE per separation; 0.9-1.2 are training errors);
- ``leave-one-dimer-out``: for each dimer, train on the other 21 at 0.9-1.2 and predict the
  held-out dimer at all five separations (MAE per separation over the 22 held-out dimers).

"zero" is the trivial model E = 0, for scale. Run ``python benchmarks/science/s22x5.py [--quick]``.
"""

from __future__ import annotations

import time

import numpy as np
from ase.data.s22 import create_s22_system, data, get_interaction_energy_s22x5, s22
from common import (
    SETTINGS,
    FeatureSet,
    argument_parser,
    figure,
    finish,
    fit_ridge,
    format_table,
    save_figure,
    standard_feature_sets,
    structure_features,
)

SPECIES = (1, 6, 7, 8)
DISTANCES = ("0.9", "1.0", "1.2", "1.5", "2.0")
TRAIN_DISTANCES = ("0.9", "1.0", "1.2")


def load(names=s22) -> tuple[list, list, np.ndarray, np.ndarray, np.ndarray]:
    """Dimers, their monomer pairs, energies (eV), dimer index and separation label per row."""
    dimers, monomers, energy, dimer_id, dist = [], [], [], [], []
    for k, name in enumerate(names):
        n_first = data[name]["dimer atoms"][0]
        for d in DISTANCES:
            atoms = create_s22_system(name, dist=d)
            dimers.append(atoms)
            monomers += [atoms[:n_first], atoms[n_first:]]
            energy.append(get_interaction_energy_s22x5(name, dist=d))
            dimer_id.append(k)
            dist.append(d)
    return dimers, monomers, np.array(energy), np.array(dimer_id), np.array(dist)


def interaction_features(fs: FeatureSet, dimers, monomers) -> np.ndarray:
    """Dimer features minus the features of its two monomers."""
    calc = fs.calculator()
    x_dimer = structure_features(calc, dimers, SPECIES)
    x_mono = structure_features(calc, monomers, SPECIES)
    return x_dimer - x_mono[0::2] - x_mono[1::2]


def _grouped_fit(x, y, rows, dimer_id, rng, val_fraction=0.25):
    """Ridge on ``rows`` with lambda chosen on a validation split holding out whole dimers."""
    groups = np.unique(dimer_id[rows])
    val_groups = rng.choice(groups, size=max(1, int(round(val_fraction * len(groups)))), replace=False)
    is_val = np.isin(dimer_id[rows], val_groups)
    return fit_ridge(x, y, rows[~is_val], rows[is_val])


def mae_per_distance(pred, y, dist, rows=None) -> list[float]:
    """MAE (meV) per separation label, over ``rows`` (default: all)."""
    rows = np.arange(len(y)) if rows is None else rows
    return [float(1000 * np.mean(np.abs(pred[rows][dist[rows] == d] - y[rows][dist[rows] == d]))) for d in DISTANCES]


def evaluate(x, y, dimer_id, dist, seed: int = 0) -> dict:
    """The extrapolation and leave-one-dimer-out MAEs (meV) per separation for one feature matrix."""
    rng = np.random.default_rng(seed)
    train = np.flatnonzero(np.isin(dist, TRAIN_DISTANCES))
    model = _grouped_fit(x, y, train, dimer_id, rng)
    extrapolation = mae_per_distance(model.predict(x), y, dist)
    lodo_pred = np.zeros_like(y)
    for k in np.unique(dimer_id):
        rows = train[dimer_id[train] != k]
        held = dimer_id == k
        lodo_pred[held] = _grouped_fit(x, y, rows, dimer_id, rng).predict(x[held])
    return {
        "extrapolation": extrapolation,
        "leave_one_dimer_out": mae_per_distance(lodo_pred, y, dist),
        "lambda": model.lam,
    }


def run(feature_sets: list[FeatureSet], names=s22, seed: int = 0) -> dict:
    """Evaluate every feature set, the p = 1 + p = 6 concatenation and the zero model."""
    dimers, monomers, y, dimer_id, dist = load(names)
    feats = {fs.name: interaction_features(fs, dimers, monomers) for fs in feature_sets}
    if "p=1 gto" in feats and "p=6 gto" in feats:
        feats["p=1 + p=6 gto"] = np.hstack([feats["p=1 gto"], feats["p=6 gto"]])
    results = {name: evaluate(x, y, dimer_id, dist, seed) for name, x in feats.items()}
    zero = mae_per_distance(np.zeros_like(y), y, dist)
    results["zero (E = 0)"] = {"extrapolation": zero, "leave_one_dimer_out": zero, "lambda": None}
    return {
        "distances": list(DISTANCES),
        "train_distances": list(TRAIN_DISTANCES),
        "mean_abs_energy_meV": mae_per_distance(np.zeros_like(y), y, dist),
        "results": results,
    }


def tables(result: dict) -> str:
    """Markdown tables of the MAE (meV) per separation for both evaluations."""
    header = ["features"] + [f"{d}{' (window)' if d in result['train_distances'] else ''}" for d in result["distances"]]
    out = []
    for key, title in (("extrapolation", "train 0.9-1.2, all dimers"), ("leave_one_dimer_out", "leave one dimer out")):
        rows = [[name] + r[key] for name, r in result["results"].items()]
        out.append(f"**{title}** (MAE, meV)\n\n" + format_table(header, rows, "{:.1f}"))
    return "\n\n".join(out)


def plot(results: dict, path) -> None:
    """Figure: MAE per separation, per feature set, for both evaluations of the first setting."""
    setting = next(iter(results))
    result = results[setting]
    fig, axes = figure(1, 2, figsize=(12, 4.5), sharey=True)
    names = list(result["results"])
    width = 0.8 / len(names)
    x = np.arange(len(result["distances"]))
    for ax, key in zip(axes, ("extrapolation", "leave_one_dimer_out"), strict=True):
        for k, name in enumerate(names):
            ax.bar(x + k * width, result["results"][name][key], width, label=name)
        ax.set_xticks(x + 0.4 - width / 2, [f"{d}" for d in result["distances"]])
        ax.set_yscale("log")
        ax.set_xlabel("separation / equilibrium (train: 0.9-1.2)")
        ax.set_title(f"S22x5 {key.replace('_', ' ')} ({setting})")
    axes[0].set_ylabel("MAE (meV)")
    axes[1].legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None) -> None:
    """Command-line entry point."""
    args = argument_parser(__doc__, "monomial basis only, seconds", sizes=False).parse_args(argv)
    start = time.perf_counter()
    results = {}
    for setting in SETTINGS:
        sets = standard_feature_sets(setting)
        if args.quick:
            sets = [fs for fs in sets if fs.radial_basis == "monomial"]
        results[setting] = run(sets, seed=args.seed)
        results[setting]["smearing_cutoff"] = SETTINGS[setting]
        print(f"### setting {setting!r}: sigma, r0 = {SETTINGS[setting]} Å\n\n{tables(results[setting])}\n")
    finish("s22x5", results, start, args.quick, plot)


if __name__ == "__main__":
    main()
