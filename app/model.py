r"""Domain model of the explorer: ``param`` classes and NumPy numerics, no GUI import.

Two models, one per page, usable from a script, a notebook or the tests:

* :class:`DecayModel` — multipole decay of the LODE coefficients that one fragment (an atom,
  or half of an S22 dimer, or the second structure of a file) induces around a centre atom
  of another fragment, as a function of their separation d, against the asymptotic series
  of docs/conventions.md (channel l decays as :math:`d^{-(p+l)}`).
* :class:`DatasetModel` — LODE power spectra (docs/conventions.md) of a set of structures, reduced to
  two dimensions by PCA, with per-structure properties to colour by.

Only the public gplode API is used. Calculators are memoised by their hyper-parameters
(building one tabulates the free-space pair functions, 0.5–4 s), so widgets that change
nothing in the hypers never recompute them. Errors from bad settings or unreadable files
are stored in the ``error`` parameter as a message instead of being raised.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass

import ase
import ase.data
import ase.io
import numpy as np
import param
from ase.data import s22 as _s22

import gplode

__all__ = [
    "LodeSettings",
    "DecayCurves",
    "DecayModel",
    "DatasetModel",
    "DecaySnapshot",
    "DatasetResult",
    "calculator",
    "fit_slopes",
    "lm_labels",
    "read_structures",
    "s22x5_dataset",
]

#: user errors that become messages in the page (the library raises ValueError/TypeError
#: for bad settings; ASE raises these for unreadable files)
USER_ERRORS = (ValueError, TypeError, OSError, KeyError, IndexError, StopIteration, AttributeError)

#: element symbols offered for the two-atom system (H..Kr is plenty for a decay study)
ELEMENTS = list(ase.data.chemical_symbols[1:37])

#: direction of the two-atom separation vector: tilted so that every m of Y_lm(d̂) is
#: non-zero in the heatmap (|c_l| does not depend on it, by rotation invariance)
TWO_ATOM_AXIS = np.array([1.0, 0.6, 0.8]) / np.linalg.norm([1.0, 0.6, 0.8])


@functools.lru_cache(maxsize=16)
def calculator(
    exponent: float,
    smearing: float,
    cutoff: float,
    max_radial: int,
    max_angular: int,
    radial_basis: str,
    center_atom_weight: float = 1.0,
    neighbor_types: tuple | None = None,
) -> gplode.LodeCalculator:
    """A memoised :class:`gplode.LodeCalculator` (free-space pair functions are tabulated once).

    :raises ValueError, TypeError: for invalid hyper-parameters (the library's messages)
    """
    calc = gplode.LodeCalculator(
        exponent=float(exponent),
        smearing=float(smearing),
        cutoff=float(cutoff),
        max_radial=int(max_radial),
        max_angular=int(max_angular),
        radial_basis=radial_basis,
        center_atom_weight=float(center_atom_weight),
        neighbor_types=None if neighbor_types is None else list(neighbor_types),
        backend="numpy",
    )
    # warm the tabulation of F_nl now (computing one dimer), so that cached calculators are fast
    z = 1 if neighbor_types is None else int(neighbor_types[0])
    calc.compute(ase.Atoms([z, z], positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    return calc


def lm_labels(max_angular: int) -> list[str]:
    """Labels of the (l, m) axis in gplode's order: ``"0,0", "1,-1", "1,0", "1,1", …``."""
    return [f"{l},{m}" for l in range(max_angular + 1) for m in range(-l, l + 1)]


def fit_slopes(distances: np.ndarray, norms: np.ndarray, tail_fraction: float = 1 / 3) -> np.ndarray:
    """Least-squares slopes of log|c_l| against log d over the largest separations.

    :param distances: separations d in Å, shape ``(n_d,)``, increasing
    :param norms: |c_l|(d), shape ``(n_d, L+1)``
    :param tail_fraction: fraction of the points (the largest d) used in the fit
    :return: slopes, shape ``(L+1,)``; NaN where a channel vanishes in the tail
    """
    n_tail = max(2, int(round(len(distances) * tail_fraction)))
    x = np.log(distances[-n_tail:])
    y = norms[-n_tail:]
    slopes = np.full(norms.shape[1], np.nan)
    for l in range(norms.shape[1]):
        if np.all(y[:, l] > 0) and np.all(np.isfinite(y[:, l])):
            slopes[l] = np.polyfit(x, np.log(y[:, l]), 1)[0]
    return slopes


def _read(data: bytes | None, filename: str, path: str, index=":") -> list[ase.Atoms]:
    if data:
        suffix = os.path.splitext(filename or "")[1] or ".xyz"
        with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as handle:
            handle.write(data)
            name = handle.name
        try:
            frames = ase.io.read(name, index=index)
        finally:
            os.unlink(name)
        source = filename or "uploaded file"
    elif path:
        if not os.path.exists(path):
            raise OSError(f"no such file: {path!r}")
        frames = ase.io.read(path, index=index)
        source = path
    else:
        raise ValueError("no file given: upload a file or type a path")
    if isinstance(frames, ase.Atoms):
        frames = [frames]
    if not frames:
        raise ValueError(f"{source}: no structures found")
    return list(frames)


def read_structures(data: bytes | None = None, filename: str = "", path: str = "") -> list[ase.Atoms]:
    """All structures of an uploaded file (``data`` with its ``filename``) or of a ``path``.

    Any ASE-readable format; the format is guessed from the file name's extension.

    :raises ValueError, OSError: with a message naming the file when it cannot be read
    """
    try:
        return _read(data, filename, path)
    except USER_ERRORS as error:
        raise type(error)(f"could not read {filename or path or 'file'}: {error}") from None
    except Exception as error:  # ASE parsers raise many kinds of errors on garbage
        raise ValueError(f"could not read {filename or path or 'file'}: {error}") from None


def s22x5_dataset() -> tuple[list[ase.Atoms], list[str], dict[str, np.ndarray]]:
    """The S22x5 set shipped with ASE: 110 dimers at 0.9–2.0 × their equilibrium separation.

    :return: frames, names (``"Water_dimer_1.0"``), and properties ``interaction_energy``
        (CCSD(T), eV), ``distance_factor``, ``n_atoms``
    """
    frames, names, energy, factor = [], [], [], []
    for name in _s22.s22x5:
        frames.append(_s22.create_s22_system(name))
        names.append(name)
        energy.append(_s22.get_interaction_energy_s22x5(name))
        factor.append(float(name.rsplit("_", 1)[1]))
    properties = {
        "interaction_energy": np.array(energy),
        "distance_factor": np.array(factor),
        "n_atoms": np.array([len(f) for f in frames], dtype=float),
    }
    return frames, names, properties


# --------------------------------------------------------------------------------------------
# Page 1: multipole decay
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecayCurves:
    """|c_l|(d) of a fragment pair on a grid of separations (multipole series: docs/conventions.md).

    :ivar distances: separations d in Å, ``(n_d,)``
    :ivar norms: :math:`|c_l|(d) = (\\sum_{a,n,m} c_{anlm}^2)^{1/2}`, ``(n_d, L+1)``
    :ivar asymptotic: the same from the multipole series, ``(n_d, L+1)``; None for p = 0
    :ivar fitted: fitted log–log slopes over the largest third of d, ``(L+1,)``
    :ivar reference: −(p + l), ``(L+1,)``; None for p = 0 (no power-law tail)
    """

    distances: np.ndarray
    norms: np.ndarray
    asymptotic: np.ndarray | None
    fitted: np.ndarray
    reference: np.ndarray | None
    exponent: float


@dataclass(frozen=True)
class DecaySnapshot:
    """Coefficients and geometry at one separation.

    :ivar separation: d in Å
    :ivar coefficients: :math:`\\sum_a c_{anlm}`, ``((L+1)**2, N+1)``
    :ivar symbols, positions, fragment: the whole dimer, positions ``(n_atoms, 3)`` in Å,
        fragment 0 (A) or 1 (B) per atom; ``center`` is the index of the centre atom
    """

    separation: float
    coefficients: np.ndarray
    symbols: list
    positions: np.ndarray
    fragment: np.ndarray
    center: int
    axis: np.ndarray


class LodeSettings(param.Parameterized):
    """Hyper-parameters and file input shared by both pages' models."""

    file_data = param.Bytes(default=None, allow_None=True, precedence=-1, doc="Uploaded file content.")
    file_name = param.String(default="", precedence=-1, doc="Name of the uploaded file (gives the format).")

    exponent = param.Number(default=1.0, bounds=(0.0, 10.0), step=0.1, doc="Exponent p of the 1/r^p potential.")
    smearing = param.Number(
        default=1.0, bounds=(0.0, None), softbounds=(0.1, 3.0), step=0.05, doc="Gaussian width σ in Å."
    )
    radial_basis = param.Selector(
        default="monomial",
        objects=["gto", "monomial"],
        doc="""
        Radial basis. Monomials r^(l+2n) are the generalised multipoles of the far-field series.""",
    )
    cutoff = param.Number(default=3.0, bounds=(0.0, None), softbounds=(0.5, 8.0), step=0.1, doc="Basis radius r0 in Å.")
    max_radial = param.Integer(default=3, bounds=(0, 20), softbounds=(0, 10), doc="Largest n (inclusive).")
    max_angular = param.Integer(default=3, bounds=(0, 12), softbounds=(0, 8), doc="Largest l (inclusive).")

    error = param.String(default="", precedence=-1, doc="Output: message of the last error, '' if none.")

    def _hypers(self) -> tuple:
        """The hyper-parameters as the leading arguments of :func:`calculator`."""
        return (
            float(self.exponent),
            float(self.smearing),
            float(self.cutoff),
            int(self.max_radial),
            int(self.max_angular),
            self.radial_basis,
        )


class DecayModel(LodeSettings):
    """How LODE coefficients decay with the distance between two fragments.

    The centre atom is atom 0 of fragment A for two atoms, or the atom of fragment A nearest
    to its centre of mass for a dimer. Fragment B is moved rigidly along the axis joining
    the centres of mass, d being their distance. The curves use only the centre atom and
    fragment B: the features are linear in the potential, so the rest of A (and the centre
    atom's own density) adds a d-independent constant, which is left out (the calculator
    uses ``center_atom_weight=0``). For two atoms of the same species this removes the
    centre atom's own l = 0 contribution from the shared channel.
    """

    system = param.Selector(
        default="two atoms",
        objects=["two atoms", "S22 dimer", "file"],
        doc="""
        Two atoms, a molecular dimer of the S22 set (ase.data.s22), or a file: two structures
        (fragments A and B), or one structure with a per-atom ``fragment`` array (0/1).""",
    )
    center_species = param.Selector(default="O", objects=ELEMENTS, doc="Species of the centre atom (two atoms).")
    neighbor_species = param.Selector(default="H", objects=ELEMENTS, doc="Species of the far atom (two atoms).")
    s22_name = param.Selector(default="Water_dimer", objects=list(_s22.s22), doc="S22 dimer.")
    file_path = param.String(default="", doc="Path of a file with the two fragments (instead of an upload).")
    max_radial = 4  # defaults of this page (the parameters are LodeSettings')
    max_angular = 4
    separation_range = param.Range(
        default=(3.0, 40.0), bounds=(0.1, 500.0), softbounds=(0.5, 100.0), doc="Smallest and largest separation d in Å."
    )
    separation = param.Number(
        default=8.0,
        bounds=(0.1, 500.0),
        softbounds=(3.0, 40.0),
        step=0.1,
        doc="Separation d in Å shown in the heatmap and structure.",
    )
    n_points = param.Integer(default=48, bounds=(4, 400), precedence=-1, doc="Separations on the curve grid.")

    curves = param.ClassSelector(class_=DecayCurves, allow_None=True, precedence=-1, doc="Output: the curves.")
    snapshot = param.ClassSelector(
        class_=DecaySnapshot, allow_None=True, precedence=-1, doc="Output: coefficients and geometry at ``separation``."
    )
    busy = param.Boolean(default=False, precedence=-1, doc="Output: True while computing.")

    _CURVE_INPUTS = (
        "system",
        "center_species",
        "neighbor_species",
        "s22_name",
        "file_data",
        "file_name",
        "file_path",
        "exponent",
        "smearing",
        "radial_basis",
        "cutoff",
        "max_radial",
        "max_angular",
        "separation_range",
        "n_points",
    )

    def __init__(self, **params):
        super().__init__(**params)
        self._fragments_cache = None
        self.param.watch(self._update_curves, list(self._CURVE_INPUTS))
        self.param.watch(self._update_snapshot, ["separation"])
        self._update_curves()

    # --- system ---------------------------------------------------------------------------

    def fragments(self) -> tuple[ase.Atoms, ase.Atoms, int, np.ndarray]:
        """Fragments A and B (B's centre of mass at the origin), the centre atom's index in A
        and the unit axis from A to B.

        :raises ValueError, OSError: for an unreadable or unsuitable file
        """
        if self.system == "two atoms":
            a = ase.Atoms(self.center_species, positions=[[0.0, 0.0, 0.0]])
            b = ase.Atoms(self.neighbor_species, positions=[[0.0, 0.0, 0.0]])
            return a, b, 0, TWO_ATOM_AXIS
        if self.system == "S22 dimer":
            dimer = _s22.create_s22_system(self.s22_name)
            n_a = _s22.get_number_of_dimer_atoms(self.s22_name)[0]
            a, b = dimer[:n_a], dimer[n_a:]
        else:
            frames = read_structures(self.file_data, self.file_name, self.file_path)
            if len(frames) == 2:
                a, b = frames
            elif len(frames) == 1 and "fragment" in frames[0].arrays:
                tag = np.asarray(frames[0].arrays["fragment"])
                a, b = frames[0][tag == 0], frames[0][tag != 0]
            else:
                raise ValueError(
                    f"the file has {len(frames)} structure(s): give two structures (fragments A and B), "
                    "or one structure with a per-atom 'fragment' array of 0 and 1"
                )
            if len(a) == 0 or len(b) == 0:
                raise ValueError("both fragments need at least one atom")
        com_a, com_b = a.get_center_of_mass(), b.get_center_of_mass()
        axis = com_b - com_a
        norm = np.linalg.norm(axis)
        axis = TWO_ATOM_AXIS if norm < 1e-8 else axis / norm
        center = int(np.argmin(np.linalg.norm(a.positions - com_a, axis=1)))
        a = a.copy()
        a.positions -= com_a
        b = b.copy()
        b.positions -= com_b
        a.pbc = b.pbc = False
        return a, b, center, axis

    @staticmethod
    def _pair_frames(a, b, center, axis, distances) -> tuple[list[ase.Atoms], np.ndarray]:
        """Centre atom at A's position + fragment B shifted to each separation."""
        origin = a.positions[center]
        frames, vectors = [], []
        for d in distances:
            shifted = b.positions + d * axis
            frames.append(ase.Atoms([a.numbers[center], *b.numbers], positions=np.vstack([origin, shifted])))
            vectors.append(shifted - origin)
        return frames, np.array(vectors)

    # --- computations ---------------------------------------------------------------------

    def compute_curves(self) -> DecayCurves:
        """|c_l|(d) on the separation grid, with the multipole series (docs/conventions.md) and the fitted slopes.

        :raises ValueError, TypeError, OSError: for bad settings or files
        """
        d_min, d_max = self.separation_range
        if not 0 < d_min < d_max:
            raise ValueError(f"separation range must satisfy 0 < min < max, got {self.separation_range}")
        a, b, center, axis = self.fragments()
        calc = calculator(*self._hypers(), center_atom_weight=0.0)
        distances = np.geomspace(d_min, d_max, int(self.n_points))
        frames, vectors = self._pair_frames(a, b, center, axis, distances)
        feats = calc.compute(frames)  # one call for every separation
        values = feats.values[feats.atom == 0]  # the centre atom only: (n_d, n_types, lm, n)
        max_angular = int(self.max_angular)
        norms = self._norms(values, max_angular)
        p = float(self.exponent)
        asymptotic = reference = None
        if p > 0:  # p = 0 is a Gaussian density: no power-law tail
            n_d, n_b = vectors.shape[:2]
            series = gplode.asymptotic_coefficients(vectors.reshape(-1, 3), p, calc.basis, max_angular)
            series = series.reshape(n_d, n_b, *series.shape[1:])
            per_type = np.zeros((n_d, len(feats.neighbor_types)) + series.shape[2:])
            for t, z in enumerate(feats.neighbor_types):
                per_type[:, t] = series[:, b.numbers == z].sum(axis=1)
            asymptotic = self._norms(per_type, max_angular)
            reference = -(p + np.arange(max_angular + 1))
        return DecayCurves(distances, norms, asymptotic, fit_slopes(distances, norms), reference, p)

    @staticmethod
    def _norms(values: np.ndarray, max_angular: int) -> np.ndarray:
        """(Σ_{a,n,m} c²)^{1/2} per l; ``values`` is ``(n_d, n_types, (L+1)**2, N+1)``."""
        squares = values**2
        return np.stack(
            [np.sqrt(squares[:, :, l * l : (l + 1) ** 2].sum(axis=(1, 2, 3))) for l in range(max_angular + 1)],
            axis=1,
        )

    def compute_snapshot(self, separation: float) -> DecaySnapshot:
        """Coefficients (summed over neighbour types) and the dimer geometry at ``separation``."""
        a, b, center, axis = self.fragments()
        calc = calculator(*self._hypers(), center_atom_weight=0.0)
        frames, _ = self._pair_frames(a, b, center, axis, [float(separation)])
        feats = calc.compute(frames)
        coefficients = feats.values[0].sum(axis=0)
        positions = np.vstack([a.positions, b.positions + separation * axis])
        symbols = list(a.get_chemical_symbols()) + list(b.get_chemical_symbols())
        fragment = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
        return DecaySnapshot(float(separation), coefficients, symbols, positions, fragment, center, axis)

    def _update_curves(self, *events):
        self.busy = True
        try:
            curves = self.compute_curves()
            snapshot = self.compute_snapshot(self.separation)
        except USER_ERRORS as error:
            self.param.update(curves=None, snapshot=None, error=str(error) or type(error).__name__, busy=False)
            return
        # keep the separation slider inside the range
        low, high = self.separation_range
        self.param.separation.softbounds = (low, high)
        self.param.update(curves=curves, snapshot=snapshot, error="", busy=False)
        if not low <= self.separation <= high:
            self.separation = float(np.clip(self.separation, low, high))

    def _update_snapshot(self, *events):
        if self.curves is None:
            return
        try:
            snapshot = self.compute_snapshot(self.separation)
        except USER_ERRORS as error:
            self.param.update(snapshot=None, error=str(error))
            return
        self.param.update(snapshot=snapshot, error="")


# --------------------------------------------------------------------------------------------
# Page 2: dataset explorer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetResult:
    """Per-structure invariants and their 2D map.

    :ivar names: structure names, ``(n_structures,)``
    :ivar properties: per-structure numeric properties, each ``(n_structures,)``
    :ivar pca: the first two principal components of the standardised invariants, ``(n_structures, 2)``
    :ivar explained: fraction of the variance explained by each of the two, ``(2,)``
    :ivar channel_norms: atom-averaged :math:`(\\sum_m c_{anlm}^2)^{1/2}`, ``(n_structures, n_types, N+1, L+1)``
    :ivar neighbor_types: atomic numbers of the neighbour-type axis
    """

    names: list
    properties: dict
    pca: np.ndarray
    explained: np.ndarray
    channel_norms: np.ndarray
    neighbor_types: np.ndarray


def _pca(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x - x.mean(axis=0)
    scale = x.std(axis=0)
    x = x / np.where(scale > 0, scale, 1.0)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2)), np.zeros(2)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    comps = u[:, :2] * s[:2]
    if comps.shape[1] < 2:
        comps = np.c_[comps, np.zeros(len(comps))]
    total = (s**2).sum()
    explained = (s[:2] ** 2 / total) if total > 0 else np.zeros(2)
    return comps, np.r_[explained, np.zeros(2 - len(explained))]


class DatasetModel(LodeSettings):
    """LODE invariants of a set of structures, mapped to 2D by PCA.

    Each structure is described by the power spectrum (docs/conventions.md) averaged over its atoms;
    the map is the PCA of these vectors after standardising each column. ``compute`` runs
    in batches and reports progress, so a GUI can show it.
    """

    source = param.Selector(
        default="S22x5 (built-in)",
        objects=["S22x5 (built-in)", "file"],
        doc="Built-in S22x5 set with CCSD(T) interaction energies, or a file.",
    )
    file_path = param.String(default="", doc="Path of an ASE-readable file (extxyz, …).")

    color_by = param.Selector(
        default="interaction_energy", objects=["interaction_energy"], doc="Per-structure property that colours the map."
    )
    selected = param.Integer(default=None, allow_None=True, precedence=-1, doc="Index of the selected structure.")
    batch_size = param.Integer(default=10, bounds=(1, None), precedence=-1, doc="Structures per progress step.")

    result = param.ClassSelector(class_=DatasetResult, allow_None=True, precedence=-1, doc="Output: the map.")
    progress = param.Number(default=0.0, bounds=(0.0, 1.0), precedence=-1, doc="Output: fraction done.")

    def load(self) -> tuple[list[ase.Atoms], list[str], dict[str, np.ndarray]]:
        """Frames, names and numeric properties of the chosen source."""
        if self.source == "S22x5 (built-in)":
            return s22x5_dataset()
        frames = read_structures(self.file_data, self.file_name, self.file_path)
        source = self.file_name or os.path.basename(self.file_path)
        names = [str(f.info.get("name", f"{source}[{i}]")) for i, f in enumerate(frames)]
        properties = {"n_atoms": np.array([len(f) for f in frames], dtype=float)}
        keys = set().union(*(f.info for f in frames))
        for key in sorted(keys):
            values = [f.info.get(key) for f in frames]
            if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values):
                properties[key] = np.array(values, dtype=float)
        for f in frames:
            if f.calc is not None:
                try:
                    properties.setdefault("energy", [])
                    properties["energy"].append(f.get_potential_energy())
                except Exception:  # no energy stored
                    properties.pop("energy", None)
                    break
        if isinstance(properties.get("energy"), list):
            if len(properties["energy"]) == len(frames):
                properties["energy"] = np.array(properties["energy"])
            else:
                properties.pop("energy")
        for f in frames:  # free space needs pbc all false; mixed pbc is rejected by gplode
            if not f.pbc.any():
                f.cell = None
        return frames, names, properties

    def iter_compute(self):
        """Compute the map in batches, yielding the fraction done after each batch.

        Sets ``result``, or ``error`` (and ``result=None``) on failure.
        """
        self.param.update(progress=0.0, error="", selected=None)
        try:
            frames, names, properties = self.load()
            # one neighbour-type axis for the whole set, not per batch
            species = tuple(int(z) for z in np.unique(np.concatenate([f.numbers for f in frames])))
            calc = calculator(*self._hypers(), 1.0, species)
            yield 0.05
            invariants, norms = [], []
            for start in range(0, len(frames), int(self.batch_size)):
                batch = frames[start : start + int(self.batch_size)]
                feats = calc.compute(batch)
                ps = feats.power_spectrum()  # (n_atoms, a, n, a', n', l)
                per_structure = np.zeros((len(batch),) + ps.shape[1:])
                np.add.at(per_structure, feats.system, ps)
                counts = np.bincount(feats.system, minlength=len(batch))[:, None, None, None, None, None]
                per_structure /= counts
                invariants.append(per_structure.reshape(len(batch), -1))
                diag = _diagonal(per_structure)
                l = np.arange(ps.shape[-1])
                norms.append(np.sqrt(np.clip(diag * np.sqrt(2 * l + 1), 0.0, None)))
                self.progress = 0.05 + 0.9 * min(1.0, (start + len(batch)) / len(frames))
                yield self.progress
            pca, explained = _pca(np.concatenate(invariants))
        except USER_ERRORS as error:
            self.param.update(result=None, error=str(error) or type(error).__name__, progress=0.0)
            return
        objects = list(properties)
        color = self.color_by if self.color_by in objects else objects[0]
        self.param.color_by.objects = objects
        result = DatasetResult(names, properties, pca, explained, np.concatenate(norms), np.array(species))
        self.param.update(result=result, color_by=color, progress=1.0)
        yield 1.0

    def compute(self) -> DatasetResult | None:
        """Run :meth:`iter_compute` to the end; returns ``result`` (None on error)."""
        for _ in self.iter_compute():
            pass
        return self.result


def _diagonal(per_structure: np.ndarray) -> np.ndarray:
    """P_{an,an,l}: ``(s, a, n, a, n, l)`` → ``(s, a, n, l)``."""
    s, a, n, _, _, l = per_structure.shape
    flat = per_structure.reshape(s, a * n, a * n, l)
    idx = np.arange(a * n)
    return flat[:, idx, idx, :].reshape(s, a, n, l)
