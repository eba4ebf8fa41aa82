"""Exponent scan: error of the toy models as a function of the LODE exponent p in [0.5, 8].

Same toy clusters, model and "separated" hyper-parameters as ``toy_extrapolation.py``. For
every p and radial basis, two errors per target (RMSE / RMS of the true energy):

- ``validation``: on a random 25 % validation split of the training window (d_min 2.5-4 Å),
  the split also used to choose lambda;
- ``extrapolation``: on clusters with d_min in 7-10 Å.

The true exponents are 1 (coulomb) and 6 (dispersion).
Run ``python benchmarks/science/exponent_scan.py [--quick]``.
"""

from __future__ import annotations

import time

import numpy as np
from common import (
    SETTINGS,
    FeatureSet,
    argument_parser,
    figure,
    fit_ridge,
    format_table,
    random_split,
    relative_rmse,
    save_figure,
    structure_features,
    write_json,
)
from toy_extrapolation import SPECIES, TARGETS, TRAIN_WINDOW, make_clusters, toy_energies

FAR_WINDOW = (7.0, 10.0)


def run(exponents, bases, n_train: int, n_test: int, seed: int = 0) -> dict:
    """Validation and extrapolation errors for every (basis, p, target).

    :return: ``{"exponents", "errors": {basis: {target: {"validation": [...], "extrapolation": [...]}}}}``
    """
    rng = np.random.default_rng(seed)
    train = make_clusters(rng, n_train, TRAIN_WINDOW)
    far = make_clusters(rng, n_test, FAR_WINDOW)
    train_idx, val_idx = random_split(n_train, rng)
    y = {t: toy_energies(train, t) for t in TARGETS}
    y_far = {t: toy_energies(far, t) for t in TARGETS}
    smearing, cutoff = SETTINGS["separated"]
    errors = {b: {t: {"validation": [], "extrapolation": []} for t in TARGETS} for b in bases}
    for basis in bases:
        for p in exponents:
            calc = FeatureSet(f"p={p:g}", float(p), basis, smearing, cutoff).calculator()
            x, x_far = structure_features(calc, train, SPECIES), structure_features(calc, far, SPECIES)
            for t in TARGETS:
                model = fit_ridge(x, y[t], train_idx, val_idx)
                rms = float(np.sqrt(np.mean(y[t][val_idx] ** 2)))
                errors[basis][t]["validation"].append(model.validation_rmse / rms)
                errors[basis][t]["extrapolation"].append(relative_rmse(model.predict(x_far), y_far[t]))
    return {
        "exponents": [float(p) for p in exponents],
        "smearing_cutoff": [smearing, cutoff],
        "train_window": TRAIN_WINDOW,
        "far_window": FAR_WINDOW,
        "errors": errors,
    }


def best_exponents(result: dict) -> dict:
    """The exponent with the lowest error, per basis, target and error kind."""
    p = np.array(result["exponents"])
    return {
        b: {t: {kind: float(p[int(np.argmin(v))]) for kind, v in per_t.items()} for t, per_t in per_b.items()}
        for b, per_b in result["errors"].items()
    }


def tables(result: dict) -> str:
    """Markdown table: one row per exponent, one column per (basis, target, error kind)."""
    cols = [(b, t, k) for b in result["errors"] for t in TARGETS for k in ("validation", "extrapolation")]
    header = ["p"] + [f"{b} {t} {k[:5]}" for b, t, k in cols]
    rows = [
        [f"{p:g}"] + [float(result["errors"][b][t][k][i]) for b, t, k in cols]
        for i, p in enumerate(result["exponents"])
    ]
    return "(relative RMSE)\n\n" + format_table(header, rows, "{:.2g}")


def plot(result: dict, path) -> None:
    """Figure: error vs p, one panel per target, lines per basis and error kind."""
    p = np.array(result["exponents"])
    fig, axes = figure(1, 2, figsize=(11, 4.5))
    for ax, t, p_true in zip(axes, TARGETS, (1, 6), strict=True):
        for b in result["errors"]:
            for kind, style in (("validation", "--"), ("extrapolation", "-")):
                ax.semilogy(p, result["errors"][b][t][kind], style, marker="o", ms=3, label=f"{b}, {kind}")
        ax.axvline(p_true, color="k", lw=0.8, ls=":")
        ax.set_xlabel("LODE exponent p")
        ax.set_ylabel("RMSE / RMS(E)")
        ax.set_title(f"{t} (true exponent {p_true}); extrapolation: d_min 7-10 Å")
    axes[0].legend(fontsize=8)
    save_figure(fig, path)


def main(argv=None) -> None:
    """Command-line entry point."""
    args = argument_parser(__doc__, "monomial basis, 6 exponents, seconds").parse_args(argv)
    if args.quick:
        exponents, bases, n_train, n_test = [0.5, 1, 2, 4, 6, 8], ["monomial"], 60, 20
    else:
        exponents, bases, n_train, n_test = np.arange(0.5, 8.01, 0.5), ["gto", "monomial"], args.n_train, args.n_test
    start = time.perf_counter()
    result = run(exponents, bases, n_train, n_test, args.seed)
    result["seconds"] = time.perf_counter() - start
    result["best"] = best_exponents(result)
    print(tables(result))
    print(f"\nbest exponent: {result['best']}\n({result['seconds']:.1f} s)")
    path = write_json("exponent_scan" + ("_quick" if args.quick else ""), result)
    plot(result, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
