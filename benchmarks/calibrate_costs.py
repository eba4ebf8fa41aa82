"""Fit the CPU device's cost constants (:class:`gplode.devices.base.Costs`) to measured times.

    python benchmarks/calibrate_costs.py          # ≈ 6 min on 2 cores

Each method alone (``DirectKSum.compute`` and ``MeshKSum.compute`` on one structure, best of
3 after a warm-up) on rattled NaCl supercells of 216–1,728 atoms (both accuracies), σ = 1 Å, (max_angular,
n_radial) ∈ {(2, 4), (4, 6), (6, 8)}, at accuracies 1e-3 (float32 values) and 1e-6
(float64), on the sphere and the mesh the calculator chooses. Fitted by least squares on
relative errors:

- direct sum: t = N n_k (direct_term · n_species · channels + phase), the phase constant
  per precision of the values (``direct_phase``, ``direct_phase_double``);
- mesh: t = n_species · channels · (mesh_point · M + mesh_stencil · N P³).

Writes every timing, the fitted constants and each prediction / measurement to
``benchmarks/results/costs.json``; the constants in ``gplode/devices/cpu.py`` are these,
rounded.
"""

from __future__ import annotations

import time

import numpy as np
from _common import machine, write_results

#: (supercell repeat, accuracy) of the timed structures
CASES = [
    ((3, 3, 3), 1e-3),
    ((4, 4, 4), 1e-3),
    ((5, 5, 5), 1e-3),
    ((6, 6, 6), 1e-3),
    ((3, 3, 3), 1e-6),
    ((4, 4, 4), 1e-6),
    ((5, 5, 5), 1e-6),
    ((6, 6, 6), 1e-6),
]
#: (max_angular, n_radial) of the bases
BASES = [(2, 4), (4, 6), (6, 8)]


def _best(function, *args, repeats: int = 3) -> float:
    """Best of ``repeats`` calls of ``function(*args)`` after one warm-up, seconds."""
    function(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def measure() -> tuple[list, list]:
    """Timings of both methods on every case: direct rows and mesh rows (dicts)."""
    import ase.build

    import gplode
    from gplode.lib.kvectors import selected_kpoints, sphere_shape
    from gplode.systems import as_systems

    direct, mesh = [], []
    for max_angular, n_radial in BASES:
        for repeat, accuracy in CASES:
            if max_angular == 6 and repeat[0] > 4:
                continue  # the largest basis: the smaller cells are enough
            atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(repeat)
            atoms.rattle(0.05, seed=1)
            calc = gplode.LodeCalculator(
                exponent=1.0,
                smearing=1.0,
                cutoff=4.0,
                max_radial=n_radial - 1,
                max_angular=max_angular,
                accuracy=accuracy,
            )
            pipeline = calc.pipeline
            systems = as_systems(atoms)
            species = calc._species(systems)
            (system,) = pipeline.with_spheres(systems, species)
            cell = system.cell[None]
            n_k = len(selected_kpoints(cell, sphere_shape(cell, system.k_cutoff), system.k_cutoff).frequencies)
            channels = (max_angular + 1) ** 2 * n_radial
            common = dict(n_atoms=system.n_atoms, n_species=len(species), channels=channels, accuracy=accuracy)
            seconds = _best(pipeline.direct.compute, [system], species)
            precision = np.dtype(pipeline.direct.values_real(system)).name
            direct.append(dict(common, n_k=n_k, precision=precision, seconds=seconds))
            params = pipeline.mesh_for(system, species)
            seconds = _best(pipeline.mesh.compute, [system], species, params)
            mesh.append(dict(common, shape=list(params.shape), order=params.order, seconds=seconds))
            print(direct[-1], mesh[-1], flush=True)
    return direct, mesh


def _fit(columns: np.ndarray, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares on relative errors: the constants and each row's prediction / measurement."""
    weights = 1.0 / seconds
    constants = np.linalg.lstsq(columns * weights[:, None], seconds * weights, rcond=None)[0]
    return constants, columns @ constants / seconds


def fit(direct: list, mesh: list) -> dict:
    """The cost constants from the timings (:func:`measure`)."""
    atoms_k = np.array([r["n_atoms"] * r["n_k"] for r in direct], dtype=float)
    terms = np.array([r["n_species"] * r["channels"] for r in direct], dtype=float)
    single = np.array([r["precision"] == "float32" for r in direct])
    columns = np.stack([atoms_k * terms, atoms_k * single, atoms_k * ~single], axis=1)
    (term, phase, phase_double), direct_ratio = _fit(columns, np.array([r["seconds"] for r in direct]))
    per_channel = np.array([r["n_species"] * r["channels"] for r in mesh], dtype=float)
    points = np.array([np.prod(r["shape"]) for r in mesh], dtype=float)
    stencil = np.array([r["n_atoms"] * r["order"] ** 3 for r in mesh], dtype=float)
    columns = np.stack([per_channel * points, per_channel * stencil], axis=1)
    (point, stencil_point), mesh_ratio = _fit(columns, np.array([r["seconds"] for r in mesh]))
    return {
        "constants": {
            "direct_term": term,
            "direct_phase": phase,
            "direct_phase_double": phase_double,
            "mesh_point": point,
            "mesh_stencil": stencil_point,
        },
        "direct_predicted_over_measured": direct_ratio.round(3).tolist(),
        "mesh_predicted_over_measured": mesh_ratio.round(3).tolist(),
    }


def main():
    direct, mesh = measure()
    result = fit(direct, mesh)
    print(result)
    path = write_results("costs", {"machine": machine(), "direct": direct, "mesh": mesh, **result})
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
