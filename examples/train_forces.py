"""Fit a PyTorch model on LODE features to long-range energies *and forces*, test it on
larger unseen structures (a few minutes on 2 cores; ``--quick``: about 40 s).

    python examples/train_forces.py [--quick]

The toy system: rattled rock-salt cells of ±1 point charges with a dispersion attraction,
E = ½ Σ' q_i q_j / r_ij (Ewald) − C₆ ½ Σ' f(r_ij)/r_ij⁶ (lattice sums, damped f), energies and
forces computed analytically here, independently of gplode. Features: gplode's l = 0
coefficients for p = 1 (the charges) and p = 6 (dispersion), through
``gplode.torch.LodeSphericalExpansion``; forces are −∂E/∂r by autograd (gplode's VJP), and
the force loss reaches the model's parameters through gplode's JVP. Models: linear in the
features, then a small MLP per species. Trained on 64-atom cells, tested on 216-atom cells.
"""

from __future__ import annotations

import argparse
import itertools
import math

import numpy as np
import torch
from scipy.special import erfc

import gplode.torch

CHARGE = {11: 1.0, 17: -1.0}
C6 = 2.0
HYPERS = dict(smearing=1.2, cutoff=3.0, max_radial=3, max_angular=0, neighbor_types=[11, 17], accuracy=1e-6)


def rocksalt(repeat: int, rattle: float, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, numbers, cell) of a rattled, slightly strained NaCl supercell, a = 5.64 Å."""
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    frac = np.concatenate([base, base + 0.5]) % 1.0
    numbers = np.array([11] * 4 + [17] * 4)
    shifts = np.array(list(itertools.product(range(repeat), repeat=3)))
    frac = ((frac[None] + shifts[:, None]) / repeat).reshape(-1, 3)
    numbers = np.tile(numbers, len(shifts))
    cell = 5.64 * repeat * (np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3)))
    positions = frac @ cell + rng.normal(scale=rattle, size=(len(frac), 3))
    return positions, numbers, cell


def reference(positions, numbers, cell, alpha=0.35, real_cut=14.0, k_cut=3.0):
    """Energy and forces of point charges (Ewald) plus damped −C₆/r⁶ (real-space lattice sum)."""
    q = np.array([CHARGE[z] for z in numbers])
    reach = [
        math.ceil(real_cut / (abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(*np.delete(cell, i, 0)))))
        for i in range(3)
    ]
    images = np.array(list(itertools.product(*(range(-m, m + 1) for m in reach)))) @ cell
    d = positions[None, :, None, :] - positions[:, None, None, :] + images[None, None]  # r_j + T - r_i
    r = np.linalg.norm(d, axis=-1)
    mask = (r > 1e-9) & (r < real_cut)
    r_safe = np.where(mask, r, 1.0)
    qq = (q[:, None] * q[None, :])[:, :, None]
    # Coulomb, real space: erfc(αr)/r; dispersion: -C6 f(r)/r^6 with f = (1 - e^{-(r/2)^8})
    damp = 1.0 - np.exp(-((r_safe / 2.0) ** 8))
    energy_pair = qq * erfc(alpha * r_safe) / r_safe - C6 * damp / r_safe**6
    energy = 0.5 * np.sum(np.where(mask, energy_pair, 0.0))
    d_coulomb = -qq * (
        erfc(alpha * r_safe) / r_safe**2 + 2 * alpha / np.sqrt(np.pi) * np.exp(-((alpha * r_safe) ** 2)) / r_safe
    )
    d_damp = 8.0 * (r_safe / 2.0) ** 7 / 2.0 * np.exp(-((r_safe / 2.0) ** 8))
    d_disp = -C6 * (d_damp / r_safe**6 - 6 * damp / r_safe**7)
    de_dr = np.where(mask, d_coulomb + d_disp, 0.0)  # dE_pair/dr
    forces = np.sum((de_dr / r_safe)[..., None] * d, axis=(1, 2))  # F_i = -∂E/∂r_i = Σ_j dE/dr d̂_ij
    # Coulomb, reciprocal space and self term
    volume = abs(np.linalg.det(cell))
    recip = 2 * np.pi * np.linalg.inv(cell).T
    m = math.ceil(k_cut * np.linalg.norm(cell, axis=1).max() / (2 * np.pi))
    ks = np.array(list(itertools.product(range(-m, m + 1), repeat=3))) @ recip
    knorm2 = np.sum(ks**2, axis=1)
    ks, knorm2 = ks[(knorm2 > 0) & (knorm2 < k_cut**2)], knorm2[(knorm2 > 0) & (knorm2 < k_cut**2)]
    factor = 4 * np.pi / volume * np.exp(-knorm2 / (4 * alpha**2)) / knorm2
    phase = positions @ ks.T
    structure = q @ np.exp(1j * phase)
    energy += 0.5 * np.sum(factor * np.abs(structure) ** 2) - alpha / np.sqrt(np.pi) * np.sum(q**2)
    forces -= np.einsum("k,ik,kx->ix", factor, q[:, None] * np.imag(np.exp(-1j * phase) * structure[None]), ks)
    return energy, forces


class Linear(torch.nn.Module):
    """E = Σ_i w_{a_i} · c_i + b_{a_i}: linear in the features, one weight vector per species."""

    def __init__(self, n_features):
        super().__init__()
        self.weights = torch.nn.Parameter(torch.zeros(2, n_features, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))

    def forward(self, features, kind):
        return (features * self.weights[kind]).sum() + self.bias[kind].sum()


class PerSpeciesMLP(torch.nn.Module):
    """E = linear part + Σ_i MLP_{a_i}(c_i): one small network per species on top of the
    linear model (its last layer starts at zero, so training starts from the linear fit's
    family and the network learns the rest)."""

    def __init__(self, n_features, hidden=16):
        super().__init__()
        self.linear = Linear(n_features)
        self.nets = torch.nn.ModuleList(
            torch.nn.Sequential(
                torch.nn.Linear(n_features, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
            ).double()
            for _ in range(2)
        )
        for net in self.nets:
            torch.nn.init.zeros_(net[2].weight)

    def forward(self, features, kind):
        return self.linear(features, kind) + sum(self.nets[a](features[kind == a]).sum() for a in range(2))


class Featurizer:
    """l = 0 LODE coefficients for p = 1 and p = 6, scaled to unit variance on the training set."""

    def __init__(self):
        self.lodes = [gplode.torch.LodeSphericalExpansion(exponent=p, backend="numpy", **HYPERS) for p in (1.0, 6.0)]
        self.scale = None

    def __call__(self, positions, numbers, cell):
        n = len(numbers)
        args = (
            torch.as_tensor(numbers),
            cell[None],
            torch.ones(1, 3, dtype=torch.bool),
            torch.zeros(n, dtype=torch.long),
        )
        features = torch.cat([lode(positions, *args).reshape(n, -1) for lode in self.lodes], dim=1)
        if self.scale is None:
            self.scale = features.detach().std(dim=0) + 1e-12
        return features / self.scale


def evaluate(model, featurize, data):
    """Energies per atom and forces, and their errors."""
    energy_errors, force_errors, forces_ref = [], [], []
    for positions, numbers, cell, energy, forces in data:
        r = torch.tensor(positions, requires_grad=True)
        kind = torch.as_tensor((numbers == 17).astype(np.int64))
        e = model(featurize(r, numbers, torch.tensor(cell)), kind)
        (f,) = torch.autograd.grad(-e, r)
        energy_errors.append((e.item() - energy) / len(numbers))
        force_errors.append(f.numpy() - forces)
        forces_ref.append(forces)
    force_errors, forces_ref = np.concatenate(force_errors), np.concatenate(forces_ref)
    return {
        "energy_rmse_per_atom": float(np.sqrt(np.mean(np.square(energy_errors)))),
        "force_rmse": float(np.sqrt(np.mean(force_errors**2))),
        "force_rms": float(np.sqrt(np.mean(forces_ref**2))),
    }


def train(model, featurize, data, steps, force_weight=1.0):
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=steps, line_search_fn="strong_wolfe")
    prepared = []
    for positions, numbers, cell, energy, forces in data:
        r = torch.tensor(positions, requires_grad=True)
        prepared.append((r, numbers, torch.tensor(cell), energy, torch.tensor(forces)))

    def closure():
        optimizer.zero_grad()
        loss = 0.0
        for r, numbers, cell, energy, forces in prepared:
            kind = torch.as_tensor((numbers == 17).astype(np.int64))
            e = model(featurize(r, numbers, cell), kind)
            (f,) = torch.autograd.grad(-e, r, create_graph=True)  # gplode's VJP, differentiable in the model
            loss = loss + ((e - energy) / len(numbers)) ** 2 + force_weight * ((f - forces) ** 2).mean()
        loss.backward(inputs=list(model.parameters()))  # through gplode's JVP
        return loss

    optimizer.step(closure)
    return model


def main(quick: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n_train, steps = (3, 30) if quick else (8, 80)
    train_set = [(*(s := rocksalt(2, 0.15, rng)), *reference(*s)) for _ in range(n_train)]
    test_set = [(*(s := rocksalt(3, 0.15, rng)), *reference(*s)) for _ in range(1 if quick else 3)]
    results = {}
    for name, make in (("linear", Linear), ("mlp", PerSpeciesMLP)):
        torch.manual_seed(seed)
        featurize = Featurizer()
        featurize(torch.tensor(train_set[0][0]), train_set[0][1], torch.tensor(train_set[0][2]))  # sets the scale
        model = make(2 * (HYPERS["max_radial"] + 1) * 2)
        train(model, featurize, train_set, steps)
        results[name] = {
            "train": evaluate(model, featurize, train_set),
            "test (216 atoms)": evaluate(model, featurize, test_set),
        }
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for model, sets in main(args.quick).items():
        for name, errors in sets.items():
            print(
                f"{model:7s} {name:16s} energy RMSE/atom {errors['energy_rmse_per_atom']:.2e}, "
                f"force RMSE {errors['force_rmse']:.3f} (force RMS {errors['force_rms']:.3f})"
            )
