"""Shared helpers of the science benchmarks: feature sets, structure features, ridge regression.

Modelling choice (used by every script): a *linear* model on the rotation-invariant l = 0
LODE coefficients, one weight vector per centre species, summed over the atoms of a
structure,

    E = sum_i w_{a_i} . c^{(i)}_{l=0}      (a_i: species of atom i),

with ``center_atom_weight = 0`` so that every feature is produced by the *other* atoms only
and vanishes for an isolated atom: the model predicts E = 0 at infinite separation without
an intercept, as the physics requires. For a pair-additive energy sum_{i<j} phi_{ab}(d_ij)
this model is exact whenever phi_{ab} lies in the span of the l = 0 radial channels
F_{n0}(d), which is the property the exponent p controls far away (F_{n0} ~ d^-p).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import gplode

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "science"


@dataclass(frozen=True)
class FeatureSet:
    """Hyper-parameters of one LODE feature set (l = 0 channels only are used)."""

    name: str
    exponent: float
    radial_basis: str = "gto"
    smearing: float = 1.0
    cutoff: float = 4.0
    max_radial: int = 5

    def calculator(self) -> gplode.LodeCalculator:
        """The free-space calculator for this feature set (``center_atom_weight = 0``)."""
        return gplode.LodeCalculator(
            exponent=self.exponent,
            smearing=self.smearing,
            cutoff=self.cutoff,
            max_radial=self.max_radial,
            max_angular=0,
            radial_basis=self.radial_basis,
            center_atom_weight=0.0,
            backend="numpy",
        )


#: Hyper-parameter settings (smearing, cutoff) in Å. "separated": the basis radius plus ~3 sigma
#: stays inside the shortest training separation, so the features probe the potential between
#: the atoms, where v_p is already ~1/r^p. "overlapping": sigma = 1, r0 = 4, the basis reaches
#: into the neighbour's smeared core, where v_6 differs from 1/r^6 by tens of per cent.
SETTINGS = {"separated": (0.5, 2.0), "overlapping": (1.0, 4.0)}


def standard_feature_sets(setting: str = "separated", max_radial: int = 5) -> list[FeatureSet]:
    """The feature sets compared by the toy and S22x5 benchmarks (same sigma and r0 for all)."""
    smearing, cutoff = SETTINGS[setting]
    kw = {"smearing": smearing, "cutoff": cutoff, "max_radial": max_radial}
    return [
        FeatureSet("local p=0 (gto)", 0.0, "gto", **kw),
        FeatureSet("p=1 gto", 1.0, "gto", **kw),
        FeatureSet("p=1 monomial", 1.0, "monomial", **kw),
        FeatureSet("p=6 gto", 6.0, "gto", **kw),
        FeatureSet("p=6 monomial", 6.0, "monomial", **kw),
    ]


def structure_features(calc: gplode.LodeCalculator, frames, species) -> np.ndarray:
    """Per-structure sums of the l = 0 coefficients, one block per centre species.

    :param species: sorted atomic numbers of every species that can occur (centres and
        neighbours), so that all structures share the same feature layout
    :return: array (n_structures, len(species) * len(species) * (max_radial + 1))
    """
    species = list(species)
    feats = calc.compute(list(frames))
    column = {int(z): k for k, z in enumerate(feats.neighbor_types)}
    l0 = feats.block(0)[:, :, 0, :]
    n_rad = l0.shape[-1]
    out = np.zeros((len(frames), len(species), len(species), n_rad))
    for row in range(l0.shape[0]):
        centre = species.index(int(feats.center_types[row]))
        for b, z in enumerate(species):
            if z in column:
                out[feats.system[row], centre, b] += l0[row, column[z]]
    return out.reshape(len(frames), -1)


@dataclass
class RidgeModel:
    """Ridge regression without intercept on RMS-scaled feature columns."""

    weights: np.ndarray
    scale: np.ndarray
    lam: float
    validation_rmse: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted targets for the feature matrix ``x``."""
        return (x / self.scale) @ self.weights


LAMBDAS = np.logspace(-14, 0, 29)


def _ridge_solve(x: np.ndarray, y: np.ndarray, lam_rel: float) -> np.ndarray:
    """Ridge weights via SVD; the penalty is ``lam_rel`` times the largest squared singular value."""
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    lam = lam_rel * s[0] ** 2
    return vt.T @ ((s / (s**2 + lam)) * (u.T @ y))


def fit_ridge(x: np.ndarray, y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> RidgeModel:
    """Choose the regularisation on a validation split, then refit on training + validation.

    :param train_idx: rows used to fit for each candidate lambda
    :param val_idx: rows on which the candidate lambdas are compared (RMSE)
    """
    fit_idx = np.concatenate([train_idx, val_idx])
    scale = np.sqrt(np.mean(x[fit_idx] ** 2, axis=0))
    scale[scale == 0] = 1.0
    xs = x / scale
    errors = []
    for lam in LAMBDAS:
        w = _ridge_solve(xs[train_idx], y[train_idx], lam)
        errors.append(np.sqrt(np.mean((xs[val_idx] @ w - y[val_idx]) ** 2)))
    best = int(np.argmin(errors))
    weights = _ridge_solve(xs[fit_idx], y[fit_idx], LAMBDAS[best])
    return RidgeModel(weights, scale, float(LAMBDAS[best]), float(errors[best]))


def random_split(n: int, rng: np.random.Generator, val_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, validation) split of ``range(n)``."""
    perm = rng.permutation(n)
    n_val = max(1, int(round(val_fraction * n)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference."""
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def relative_rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """RMSE divided by the RMS of the true values (1 = as bad as predicting zero)."""
    return rmse(pred, true) / float(np.sqrt(np.mean(np.asarray(true) ** 2)))


def format_table(header: list[str], rows: list[list], floatfmt: str = "{:.3g}") -> str:
    """A Markdown table with numbers formatted by ``floatfmt``."""

    def cell(v):
        return floatfmt.format(v) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(name: str, payload: dict) -> Path:
    """Write ``payload`` plus provenance to ``benchmarks/results/science/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "gplode": getattr(gplode, "__version__", None),
        "command": " ".join(sys.argv),
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"meta": meta, **payload}, indent=2) + "\n")
    return path


def finish(name: str, results: dict, start: float, quick: bool, plot) -> None:
    """Print the run time, write ``<name>[_quick].json`` and its figure (``plot(results, png_path)``)."""
    seconds = time.perf_counter() - start
    print(f"({seconds:.1f} s)")
    path = write_json(name + ("_quick" if quick else ""), {"seconds": seconds, "settings": results})
    plot(results, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


def figure(nrows: int, ncols: int, **kwargs):
    """``(fig, axes)`` of a matplotlib figure drawn off-screen (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, **kwargs)


def save_figure(fig, path) -> None:
    """Lay out, write to ``path`` (PNG, 100 dpi) and release the figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def argument_parser(doc: str, quick: str, sizes: bool = True) -> argparse.ArgumentParser:
    """The scripts' common options: ``--quick`` (what it does: ``quick``), ``--seed`` and,
    with ``sizes``, ``--n-train`` / ``--n-test``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"writes <name>_quick.*; {quick}")
    if sizes:
        parser.add_argument("--n-train", type=int, default=300)
        parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    return parser
