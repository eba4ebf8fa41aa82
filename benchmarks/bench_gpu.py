"""GPU benchmarks (issue 4's targets), run on a GPU machine; prints and writes JSON.

    GPLODE_TEST_GPU=1 python benchmarks/bench_gpu.py [--quick]

Cases: NaCl 4,096 atoms (p = 1 and 6, σ = 1 Å, GTO max_radial 5, radius 4 Å, max_angular 4,
accuracy 1e-5, float32), a dataset of small periodic cells (atoms/s including transfers),
and a ~100,000-atom cell. The numpy backend is timed on the same cases where it is cheap
enough (ratios). Every record has device, case, n_atoms, dtype, seconds, atoms_per_s and
the gplode commit. Writes ``benchmarks/results/gpu-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import time

from _common import machine, write_results

HYPERS = dict(smearing=1.0, cutoff=4.0, max_radial=5, max_angular=4, accuracy=1e-5)


def _device_name() -> str:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def _timed(calc, frames, repeats=3):
    import cupy

    calc.compute(frames)  # warm-up: kernel compilation, FFT plans, splines
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        calc.compute(frames)
        cupy.cuda.Device().synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    import ase.build

    import gplode

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    info, device = machine(), _device_name()
    rows = []

    def record(case, frames, backend, dtype, exponent, repeats=3):
        calc = gplode.LodeCalculator(backend=backend, dtype=dtype, exponent=exponent, **HYPERS)
        seconds = _timed(calc, frames, repeats) if backend == "gpu" else _cpu_time(calc, frames)
        n_atoms = sum(len(f) for f in frames)
        row = {
            "device": device if backend == "gpu" else info["cpu"],
            "backend": backend,
            "case": case,
            "exponent": exponent,
            "n_atoms": n_atoms,
            "dtype": dtype,
            "seconds": seconds,
            "atoms_per_s": n_atoms / seconds,
            "gplode_commit": info["gplode_commit"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    nacl = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    for p in (1.0, 6.0):
        record("NaCl-4096", [nacl.repeat(8)], "gpu", "float32", p)
        record("NaCl-4096", [nacl.repeat(8)], "numpy", "float64", p)
    n_small = 200 if args.quick else 10_000
    small = [nacl.repeat((1, 1, 1 + i % 3)) for i in range(n_small)]
    record(f"dataset-{n_small}", small, "gpu", "float32", 1.0, repeats=1)
    if not args.quick:
        record("NaCl-100k", [nacl.repeat((23, 23, 24))], "gpu", "float32", 1.0, repeats=1)
    name = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()
    path = write_results(f"gpu-{name}", {"machine": info, "device": device, "hypers": HYPERS, "rows": rows})
    print(f"results written to {path}")


def _cpu_time(calc, frames):
    start = time.perf_counter()
    calc.compute(frames)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
