"""Shared benchmark helpers: machine description, isolated timed runs, JSON results.

Every measurement runs in a fresh Python subprocess so that its peak memory (max RSS,
which includes native allocations of the peers) is its own.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """Description of this machine and software versions."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # e.g. a copy of the tree without .git
        commit = os.environ.get("GPLODE_COMMIT")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in ("gplode", "numpy", "scipy", "featomic", "metatensor-core")},
        "gplode_commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_isolated(module: str, function: str, kwargs: dict, timeout: float = 3600) -> dict:
    """Run ``module.function(**kwargs)`` in a fresh interpreter; returns its dict plus ``peak_rss_gib``.

    The function must return a JSON-serialisable dict.
    """
    code = (
        f"import json, resource, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
        f"from {module} import {function} as f\n"
        "out = f(**json.loads(sys.argv[1]))\n"
        "out['peak_rss_gib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20\n"
        "print('@@RESULT@@' + json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True, timeout=timeout
    )
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@") :])
    raise RuntimeError(f"benchmark run failed:\n{proc.stderr[-2000:]}")


def timed(function, repeats: int = 3, repeat_below: float = 2.0) -> tuple[dict, object]:
    """``(timing, result)`` of ``function()``: ``first_seconds`` of its first call and, if that
    took at most ``repeat_below`` seconds, the median ``warm_seconds`` of ``repeats`` more
    calls and their ``spread`` (max − min); ``seconds`` is the warm median, or else the first
    call."""
    start = time.perf_counter()
    result = function()
    first = time.perf_counter() - start
    timing = {"seconds": first, "first_seconds": first, "warm_seconds": None, "spread": 0.0}
    if first > repeat_below:  # slow runs: the single measurement is the timing
        return timing, result
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    warm = float(np.median(times))
    timing.update(seconds=warm, warm_seconds=warm, spread=float(np.ptp(times)))
    return timing, result


def featomic_calculator(hypers: dict, p: float, k_cutoff: float, exact_radial: bool):
    """featomic's ``LodeSphericalExpansion`` with gplode's ``hypers`` (GTO basis), integer ``p``
    and ``k_cutoff``; ``exact_radial``: exact radial integrals instead of featomic's splines."""
    import featomic
    from featomic.basis import Gto, TensorProduct
    from featomic.density import SmearedPowerLaw

    basis = dict(
        max_angular=hypers["max_angular"], radial=Gto(max_radial=hypers["max_radial"], radius=hypers["cutoff"])
    )
    if exact_radial:
        basis["spline_accuracy"] = None
    return featomic.LodeSphericalExpansion(
        k_cutoff=k_cutoff,
        density=SmearedPowerLaw(smearing=hypers["smearing"], exponent=int(p)),
        basis=TensorProduct(**basis),
    )


def relative_errors(values: np.ndarray, exact: np.ndarray) -> dict:
    """Relative RMS error and max error relative to the RMS of the exact values."""
    rms = float(np.sqrt(np.mean(exact**2)))
    return {
        "rms_error": float(np.sqrt(np.mean((values - exact) ** 2)) / rms),
        "max_error": float(np.abs(values - exact).max() / rms),
    }


def write_results(name: str, payload: dict) -> Path:
    """Write ``payload`` to ``benchmarks/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
