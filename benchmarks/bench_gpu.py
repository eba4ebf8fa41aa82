"""GPU benchmarks (issue 4's targets), run on a GPU machine; prints and writes JSON.

    GPLODE_TEST_GPU=1 python benchmarks/bench_gpu.py            # on the GPU machine
    python benchmarks/bench_gpu.py --smoke                       # tiny cases, CPU, no file

Cases (σ = 1 Å, GTO max_radial 5, radius 4 Å, max_angular 4, accuracy 1e-5, float32):

- ``NaCl-4096``: p = 1 and 6, end to end (structure conversion, transfers, all stages);
  the numpy backend on the same structure for the ratio;
- ``stage-profile``: the same structure with every stage timed separately (synchronised),
  the bytes each stage must move at least, and the achieved fraction of the device's
  peak memory bandwidth (FFTs included: on these sizes cuFFT is bandwidth-bound);
- ``dataset-10000``: 10,000 periodic structures of 64–216 atoms (rattled, strained NaCl
  supercells), atoms/s including host↔device transfers; the numpy backend on the
  first 100 for the per-atom ratio;
- ``NaCl-100k``: a 101,568-atom cell: time and peak GPU memory.

Every record has device, case, n_atoms, dtype, seconds, atoms_per_s and the gplode
commit. Writes ``benchmarks/results/gpu-<device>.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import time

import numpy as np
from _common import machine, write_results

HYPERS = dict(smearing=1.0, cutoff=4.0, max_radial=5, max_angular=4, accuracy=1e-5)


def _device():
    """(name, peak bandwidth in bytes/s, synchronize) of the GPU, or of the CPU in smoke runs."""
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # smoke runs on a CPU
        return "cpu (smoke run)", None, lambda: None
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    # double data rate: 2 transfers per clock (memoryClockRate in kHz, bus width in bits)
    bandwidth = 2.0 * props["memoryClockRate"] * 1e3 * props["memoryBusWidth"] / 8
    return name, bandwidth, cupy.cuda.Device().synchronize


def _dataset(n_structures: int, seed: int = 0):
    """NaCl supercells of 64, 96, 144 and 216 atoms, rattled (0.05 Å) and strained (±1 %)."""
    import ase.build

    rng = np.random.default_rng(seed)
    unit = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    repeats = [(2, 2, 2), (2, 2, 3), (2, 3, 3), (3, 3, 3)]
    frames = []
    for i in range(n_structures):
        atoms = unit.repeat(repeats[i % 4])
        atoms.rattle(0.05, seed=i)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.uniform(-0.01, 0.01, (3, 3))), scale_atoms=True)
        frames.append(atoms)
    return frames


STAGES = ("stencil", "spread", "prepare_interpolation", "rfftn", "irfftn", "channel_spectra_into", "interpolate")


def _timed(device, synchronize):
    """``device`` with its stage calls timed (synchronised wall time) and their minimal
    bytes moved counted, in ``device.seconds``, ``device.bytes`` and ``device.calls``."""
    device.seconds, device.bytes, device.calls = collections.Counter(), collections.Counter(), collections.Counter()

    def timed(name, stage):
        def call(*args):
            synchronize()
            start = time.perf_counter()
            result = stage(*args)
            synchronize()
            device.seconds[name] += time.perf_counter() - start
            device.bytes[name] += _bytes_moved(name, args, result)
            device.calls[name] += 1
            return result

        return call

    for name in STAGES:
        setattr(device, name, timed(name, getattr(device, name)))
    return device


def _nbytes(array) -> int:
    return int(array.size * array.dtype.itemsize)


def _bytes_moved(stage: str, args, result) -> int:
    """Lower bound on the device-memory traffic of one stage call (read once, write once)."""
    if stage == "stencil":
        return _nbytes(args[0]) + sum(_nbytes(a) for a in result)
    if stage == "spread":  # stencil in, atomics into the meshes (each touched point once)
        indices, weights, kind = args[:3]
        return _nbytes(indices) + _nbytes(weights) + _nbytes(kind) + 2 * _nbytes(result)
    if stage in ("rfftn", "irfftn"):
        return _nbytes(args[0]) + _nbytes(result)
    if stage == "channel_spectra_into":  # batch, selected, prefactor, radial, ylm
        batch, selected, prefactor, radial, ylm = args[:5]
        written = batch.shape[0] * selected.size * batch.dtype.itemsize
        return written + _nbytes(selected) + _nbytes(prefactor) + _nbytes(radial) + _nbytes(ylm)
    if stage == "interpolate":  # meshes gathered at the stencil points, stencil read per mesh
        fields, plan = args
        if hasattr(plan[0], "nnz"):  # the CPU's sparse matrix (smoke runs)
            entries, stencil_bytes = plan[0].nnz, plan[0].data.nbytes + plan[0].indices.nbytes
        else:  # the CUDA device's (indices, weights)
            entries, stencil_bytes = plan[0].size, _nbytes(plan[0]) + _nbytes(plan[1])
        per_mesh = entries * fields.dtype.itemsize + stencil_bytes
        return fields.shape[0] * per_mesh + _nbytes(result)
    return 0


def main():
    import gplode
    from gplode.devices import CpuDevice, CudaDevice

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny cases on the CPU, nothing written")
    args = parser.parse_args()
    info = machine()
    device, bandwidth, synchronize = _device()
    gpu = "numpy" if args.smoke else "gpu"
    rows = []

    def timed(calc, frames, repeats):
        calc.compute(frames)  # warm-up: kernel compilation, FFT plans, splines
        synchronize()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            calc.compute(frames)
            synchronize()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    def record(case, frames, backend, exponent, repeats=3, **extra):
        dtype = "float32" if backend == gpu else "float64"
        calc = gplode.LodeCalculator(backend=backend, dtype=dtype, exponent=exponent, **HYPERS)
        seconds = timed(calc, frames, repeats)
        n_atoms = sum(len(f) for f in frames)
        row = {
            "device": device if backend == gpu else info["cpu"],
            "backend": backend,
            "case": case,
            "exponent": exponent,
            "n_structures": len(frames),
            "n_atoms": n_atoms,
            "dtype": dtype,
            "seconds": seconds,
            "atoms_per_s": n_atoms / seconds,
            "gplode_commit": info["gplode_commit"],
            **extra,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        return row

    import ase.build

    nacl = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    big = [nacl.repeat(2 if args.smoke else 8)]
    for p in (1.0, 6.0):
        fast = record("NaCl-4096", big, gpu, p)
        slow = record("NaCl-4096", big, "numpy", p, repeats=1)
        print(json.dumps({"case": "NaCl-4096", "exponent": p, "speedup_vs_numpy": slow["seconds"] / fast["seconds"]}))

    # per-stage times and bandwidth fractions
    profiled = CpuDevice() if args.smoke else CudaDevice()
    calc = gplode.LodeCalculator(backend=gpu, device=profiled, dtype="float32", exponent=1.0, route="mesh", **HYPERS)
    calc.compute(big)
    stages = _timed(profiled, synchronize)
    start = time.perf_counter()
    calc.compute(big)
    synchronize()
    total = time.perf_counter() - start
    for name in sorted(stages.seconds, key=stages.seconds.get, reverse=True):
        achieved = stages.bytes[name] / stages.seconds[name]
        row = {
            "device": device,
            "case": "stage-profile",
            "stage": name,
            "calls": stages.calls[name],
            "seconds": stages.seconds[name],
            "fraction_of_total": stages.seconds[name] / total,
            "bytes": stages.bytes[name],
            "gb_per_s": achieved / 1e9,
            "fraction_of_peak_bandwidth": None if bandwidth is None else achieved / bandwidth,
            "n_atoms": len(big[0]),
            "dtype": "float32",
            "gplode_commit": info["gplode_commit"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    n_small = 20 if args.smoke else 10_000
    frames = _dataset(n_small)
    record(f"dataset-{n_small}", frames, gpu, 1.0, repeats=1)
    record(f"dataset-{n_small}", frames[: max(n_small // 100, 4)], "numpy", 1.0, repeats=1)

    huge = [nacl.repeat((3, 3, 2) if args.smoke else (23, 23, 24))]
    if not args.smoke:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    row = record("NaCl-100k", huge, gpu, 1.0, repeats=1)
    if not args.smoke:  # the pool keeps every block it handed out: its total is the peak
        row["gpu_memory_gib"] = cupy.get_default_memory_pool().total_bytes() / 2**30
        print(json.dumps({"case": "NaCl-100k", "gpu_memory_gib": row["gpu_memory_gib"]}))

    if args.smoke:
        return
    name = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()
    path = write_results(f"gpu-{name}", {"machine": info, "device": device, "hypers": HYPERS, "rows": rows})
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
