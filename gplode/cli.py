"""The ``gplode`` command line. Thin: arguments → hypers → :class:`LodeCalculator` → output.

``gplode demo`` featurises two built-in examples (a NaCl crystal and the S22x5 water
dimer at several separations) and prints a short summary.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import __version__
from .calculator import LodeCalculator

__all__ = ["main"]


def _add_hyper_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exponent", type=float, default=1.0, help="p of the 1/r^p potential (default 1)")
    parser.add_argument("--smearing", type=float, default=1.0, help="Gaussian width σ in Å (default 1)")
    parser.add_argument("--cutoff", type=float, default=3.0, help="radial basis radius r0 in Å (default 3)")
    parser.add_argument("--max-radial", type=int, default=4, help="largest n, inclusive (default 4)")
    parser.add_argument("--max-angular", type=int, default=3, help="largest l, inclusive (default 3)")
    parser.add_argument("--basis", choices=["gto", "monomial"], default="gto", help="radial basis (default gto)")
    parser.add_argument("--backend", default="auto", help="auto, reference, numpy or gpu (default auto)")
    parser.add_argument("--accuracy", type=float, default=1e-6, help="target relative RMS error (default 1e-6)")


def _calculator(args, exponent=None) -> LodeCalculator:
    return LodeCalculator(
        exponent=args.exponent if exponent is None else exponent,
        smearing=args.smearing,
        cutoff=args.cutoff,
        max_radial=args.max_radial,
        max_angular=args.max_angular,
        radial_basis=args.basis,
        backend=args.backend,
        accuracy=args.accuracy,
    )


def _demo(args) -> int:
    import ase.build
    from ase.data.s22 import create_s22_system, get_interaction_energy_s22x5

    calc = _calculator(args)
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
    print("  scale  E_int(CCSD(T), eV)  " + "  ".join(f"|c_{l}|".rjust(10) for l in range(args.max_angular + 1)))
    for scale in (0.9, 1.0, 1.2, 1.5, 2.0):
        dimer = create_s22_system("Water_dimer", dist=scale)
        feats = calc.compute(dimer)
        oxygen = feats.neighbor_types.tolist().index(8)
        norms = [np.linalg.norm(feats.block(l)[0, oxygen]) for l in range(args.max_angular + 1)]
        energy = get_interaction_energy_s22x5("Water_dimer", dist=scale)
        print(f"  {scale:5.1f}  {energy:18.4f}  " + "  ".join(f"{v:10.3e}" for v in norms))
    return 0


def main(argv=None) -> int:
    """Entry point of the ``gplode`` command."""
    parser = argparse.ArgumentParser(prog="gplode", description="Generalised LODE features for any exponent p.")
    parser.add_argument("--version", action="version", version=f"gplode {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="featurise a NaCl crystal and the S22x5 water dimer, print a summary")
    _add_hyper_arguments(demo)
    args = parser.parse_args(argv)
    try:
        return {"demo": _demo}[args.command](args)
    except (ValueError, TypeError, NotImplementedError, OSError) as error:
        if args.debug:
            raise
        print(f"gplode: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
