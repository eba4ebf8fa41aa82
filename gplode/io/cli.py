"""The ``gplode`` command line. Thin: arguments → hypers → :class:`LodeCalculator` → output.

``gplode demo`` featurises two built-in examples (a NaCl crystal and the S22x5 water
dimer at several separations) and prints a short summary.

Errors are one line on stderr, ``gplode: error: …``, exit code 2 (``--debug``, before or
after the sub-command: the traceback instead); Ctrl-C ends with ``gplode: interrupted``
and exit code 130 (a ``.zarr`` store keeps its complete chunks and resumes).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import sys
import time
from pathlib import Path

import numpy as np

from .._version import __version__
from ..calculator import LodeCalculator
from ..hypers import LodeHypers

__all__ = ["main"]


_HYPER_FLAGS = {
    # flag: (hyper-parameter, type, help; the default is appended per sub-command)
    "--exponent": ("exponent", float, "p of the 1/r^p potential"),
    "--smearing": ("smearing", float, "Gaussian width σ in Å"),
    "--cutoff": ("cutoff", float, "radial basis radius r0 in Å"),
    "--max-radial": ("max_radial", int, "largest n, inclusive"),
    "--max-angular": ("max_angular", int, "largest l, inclusive"),
    "--basis": ("radial_basis", str, "radial basis: gto or monomial"),
    "--backend": ("backend", str, "auto, reference, numpy or gpu"),
    "--accuracy": ("accuracy", float, "target relative RMS error"),
    "--dtype": ("dtype", str, "float64 or float32"),
}

#: hyper-parameters of ``gplode demo`` that differ from :class:`LodeHypers`' defaults
DEMO_DEFAULTS = {"cutoff": 3.0, "max_radial": 4, "max_angular": 3}


def _hyper_defaults() -> dict:
    """Default value of every hyper-parameter (the fields of :class:`LodeHypers`)."""
    return {field.name: field.default for field in dataclasses.fields(LodeHypers)}


def _add_hyper_arguments(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """The hyper-parameter flags; their help shows the sub-command's ``defaults``."""
    defaults = {**_hyper_defaults(), **defaults}
    for flag, (name, kind, text) in _HYPER_FLAGS.items():
        value = defaults[name]
        shown = format(value, "g") if isinstance(value, float) else value
        parser.add_argument(flag, dest=name, type=kind, default=None, help=f"{text} (default {shown})")
    parser.add_argument("--config", help="TOML or JSON file of hyper-parameters (flags override it)")


def _load_config(path: str) -> dict:
    """Hyper-parameters of a ``.toml`` or ``.json`` file; errors name the file (and key)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".yaml", ".yml"):
        raise ValueError(f"config {path}: YAML is not supported; write the hyper-parameters as .toml or .json")
    if suffix not in (".toml", ".json"):
        raise ValueError(f"config {path}: must be a .toml or .json file")
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ValueError(f"config {path}: cannot be read ({error.strerror or error})") from error
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise ValueError(f"config {path}: TOML configs need Python >= 3.11; use a .json config") from None
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"config {path}: invalid TOML ({error})") from None
    else:
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"config {path}: invalid JSON at line {error.lineno}, column {error.colno} ({error.msg})"
            ) from None
    if not isinstance(config, dict):
        raise ValueError(f"config {path}: must be a table of hyper-parameters, got {type(config).__name__}")
    allowed = _hyper_defaults()
    for key in config:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
            raise ValueError(f"config {path}: unknown key {key!r} ({hint})")
    return config


def _hypers(args, **defaults) -> dict:
    """Hyper-parameters from ``defaults`` < ``--config`` < command-line flags."""
    hypers = dict(defaults)
    if getattr(args, "config", None):
        hypers.update(_load_config(args.config))
    hypers.update(
        {name: getattr(args, name) for name, _, _ in _HYPER_FLAGS.values() if getattr(args, name) is not None}
    )
    if getattr(args, "neighbor_types", None):
        hypers["neighbor_types"] = args.neighbor_types
    return hypers


def _calculator(args, **defaults) -> LodeCalculator:
    return LodeCalculator(**_hypers(args, **defaults))


def _demo(args) -> int:
    import ase.build
    from ase.data.s22 import create_s22_system, get_interaction_energy_s22x5

    calc = _calculator(args, **DEMO_DEFAULTS)
    max_angular = calc.hypers.max_angular
    print(f"gplode {__version__} demo — {calc!r}")
    print(f"backend in use: {calc.backend}\n")

    crystal = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    start = time.perf_counter()
    feats = calc.compute(crystal)
    elapsed = time.perf_counter() - start
    print(f"NaCl conventional cell ({len(crystal)} atoms, periodic): {elapsed:.2f} s")
    print(f"  values shape {feats.values.shape} = (atoms, neighbour types, (l,m), n)")
    for z, name in ((11, "Na"), (17, "Cl")):
        row = np.flatnonzero(feats.center_types == z)[0]
        c = feats.values[row, :, 0, 0]
        types = feats.neighbor_types.tolist()
        print(f"  {name} centre, l=0 n=0 coefficient per neighbour type {types}: {np.round(c, 6).tolist()}")

    print("\nS22x5 water dimer (free space): |c_l| of the first O atom in the O-neighbour channel")
    print("(its own density included), against the dimer's scaled separation:")
    print("  scale  E_int(CCSD(T), eV)  " + "  ".join(f"|c_{l}|".rjust(10) for l in range(max_angular + 1)))
    for scale in (0.9, 1.0, 1.2, 1.5, 2.0):
        dimer = create_s22_system("Water_dimer", dist=scale)
        feats = calc.compute(dimer)
        oxygen = feats.neighbor_types.tolist().index(8)
        norms = [np.linalg.norm(feats.block(l)[0, oxygen]) for l in range(max_angular + 1)]
        energy = get_interaction_energy_s22x5("Water_dimer", dist=scale)
        print(f"  {scale:5.1f}  {energy:18.4f}  " + "  ".join(f"{v:10.3e}" for v in norms))
    return 0


def _featurize(args) -> int:
    from .dataset import featurize_dataset

    if args.dask and args.dask_local is not None:
        raise ValueError("use either --dask ADDRESS or --dask-local N, not both")
    if args.dask_local is not None and args.dask_local < 1:
        raise ValueError(f"--dask-local needs N >= 1 worker processes, got {args.dask_local}")
    calc = _calculator(args)
    client = _dask_client(args) if args.dask or args.dask_local else None
    try:
        summary = featurize_dataset(
            args.inputs,
            calc,
            args.output,
            batch_size=args.batch_size,
            invariants=args.invariants,
            skip_bad=args.skip_bad,
            client=client,
            quiet=args.quiet,
        )
    finally:
        if client is not None:
            client.close()
    print(
        f"{summary['structures']} structures ({summary['stored']} stored, {summary['skipped']} skipped), "
        f"{summary['atoms']} atoms → {args.output} ({summary['chunks_written']} chunks written, "
        f"{summary['chunks_resumed']} already complete, {summary['seconds']:.1f} s, backend {calc.backend})"
    )
    return 0


def _dask_client(args):
    """A ``dask.distributed`` client for ``--dask ADDRESS`` or a local cluster of ``--dask-local N``."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as error:
        raise ImportError(
            f"--dask and --dask-local need the dask extra ({error}): pip install 'gplode[dask]'"
        ) from None
    if args.dask:
        return Client(args.dask)
    if _dask_cuda_available():
        from dask_cuda import LocalCUDACluster

        return Client(LocalCUDACluster(n_workers=args.dask_local))  # one worker per GPU
    return Client(LocalCluster(n_workers=args.dask_local, threads_per_worker=1, processes=True))


def _dask_cuda_available() -> bool:
    """dask-cuda is installed and a GPU is usable: --dask-local then starts one worker per GPU."""
    from ..devices import gpu_available

    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        return False
    return gpu_available()


def _explore(args) -> int:
    try:
        from ..app import serve
    except ImportError as error:
        raise ImportError(f"gplode explore needs the app extra ({error}): pip install 'gplode[app]'") from None

    serve(port=args.port, open_browser=not args.no_browser)
    return 0


def _bench(args) -> int:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cpu.py"
    if not script.is_file():
        raise OSError("gplode bench runs benchmarks/bench_cpu.py from a source checkout (pip install -e .)")
    import subprocess

    return subprocess.call([sys.executable, str(script)] + (["--quick"] if args.quick else []))


def main(argv=None) -> int:
    """Entry point of the ``gplode`` command."""
    # --debug is accepted before and after the sub-command (SUPPRESS: a sub-command that
    # does not see it keeps the value given before it)
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    parser = argparse.ArgumentParser(
        prog="gplode", description="Generalised LODE features for any exponent p.", parents=[debug]
    )
    parser.add_argument("--version", action="version", version=f"gplode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", parents=[debug], help="featurise a NaCl crystal and the S22x5 water dimer, print a summary"
    )
    _add_hyper_arguments(demo, DEMO_DEFAULTS)
    feat = sub.add_parser(
        "featurize", parents=[debug], help="featurise ASE-readable files into a .zarr store, .npz or .mts file"
    )
    feat.add_argument("inputs", nargs="+", help="input files (extxyz, ASE db, …), read lazily")
    feat.add_argument("-o", "--output", required=True, help="output: DIR.zarr (resumable), FILE.npz or FILE.mts")
    _add_hyper_arguments(feat, {})
    feat.add_argument(
        "--neighbor-types",
        type=int,
        nargs="+",
        help="neighbour species, atomic numbers (default: all in the inputs); atoms of other species are "
        "centres but no one's neighbours",
    )
    feat.add_argument("--invariants", action="store_true", help="also store per-atom power spectra (not in .mts)")
    feat.add_argument(
        "--batch-size", type=int, default=None, help="structures per chunk (default 100 on a CPU, 2000 on a GPU)"
    )
    feat.add_argument("--skip-bad", action="store_true", help="record invalid structures and go on")
    feat.add_argument("--quiet", action="store_true", help="no progress line (the one-line summary is always printed)")
    feat.add_argument("--dask", metavar="ADDRESS", help="run chunks on this dask.distributed scheduler")
    feat.add_argument(
        "--dask-local",
        metavar="N",
        type=int,
        help="start a local Dask cluster of N >= 1 processes (N GPU workers with dask-cuda)",
    )
    explore = sub.add_parser("explore", parents=[debug], help="serve the browser app on 127.0.0.1")
    explore.add_argument("--port", type=int, default=5006, help="port on 127.0.0.1 (default %(default)s)")
    explore.add_argument("--no-browser", action="store_true", help="do not open a browser")
    bench = sub.add_parser("bench", parents=[debug], help="run the CPU benchmark against featomic (source checkout)")
    bench.add_argument(
        "--quick", action="store_true", help="64 and 512 atoms only; writes benchmarks/results/cpu_quick.json"
    )
    args = parser.parse_args(argv)
    commands = {"demo": _demo, "featurize": _featurize, "explore": _explore, "bench": _bench}
    try:
        return commands[args.command](args)
    except (ValueError, TypeError, RuntimeError, OSError, MemoryError, ImportError) as error:
        if getattr(args, "debug", False):
            raise
        print(f"gplode: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if getattr(args, "debug", False):
            raise
        resumable = args.command == "featurize" and args.output.endswith(".zarr")
        hint = "; its complete chunks are kept: run the same command again to resume" if resumable else ""
        print(f"gplode: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
