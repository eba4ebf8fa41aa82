"""Featurise datasets: lazy reading, chunked interruption-safe output, resume, Dask scale-out.

A dataset is cut into chunks of ``batch_size`` consecutive structures. Each chunk is
computed independently and written to its own group of a Zarr store
(``chunks/<index>``: ``values``, ``system``, ``atom``, ``center_type`` and, with
``invariants``, ``power_spectrum``); a chunk group is deleted before it is (re)written and
its ``complete`` attribute goes last, so an interrupted run leaves at most partial chunks,
which a re-run rewrites.

The store's ``gplode`` attribute records the settings (format, gplode version, backend,
hyper-parameters, ``batch_size``, ``invariants``) and the inputs (see :func:`scan`): the
number of structures, a SHA-256 of their contents (atomic numbers, positions, cell, pbc)
and, for files, each file's absolute path, size, modification time and a SHA-256 of its
content (the whole file up to 2 MiB, else its first and last MiB). Re-running into a
store that has complete chunks with other settings or other inputs is an error naming
what differs; the modification time is recorded but not compared (a ``touch`` or a copy
with the same content is the same input). A store without any complete chunk (a run that
stopped before its first chunk) may be taken over by a run with any settings; a run that
fails before its first chunk removes the store it created.

While a run writes a store it holds an exclusive ``flock`` on the store's directory
(POSIX), so a second run writing the same store stops with an error naming the first
run's process id. With Dask the driver holds the lock and the workers write the chunk
groups.

Small outputs can also be written as ``.npz`` or metatensor ``.mts`` files: computed in
one go (no resume), written to a temporary file that replaces the output at the end. The
output's directory is checked to be writable before computing, and an existing output
made with other settings or inputs is not overwritten.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .._version import __version__
from ..calculator import LodeCalculator
from ..features import Features
from ..systems import as_systems

__all__ = ["DatasetError", "FeatureStore", "featurize_dataset", "load_features"]

FORMAT = "gplode-features/2"
#: input files up to twice this size (bytes) are hashed whole; larger ones by their first
#: and last ``HASH_BLOCK`` bytes
HASH_BLOCK = 2**20
#: metadata keys that describe how features were computed (everything but the inputs)
SETTINGS = ("format", "gplode_version", "backend", "hypers", "batch_size", "invariants")


class DatasetError(ValueError):
    """A problem with the input or output of a dataset run, naming the file and structure."""


def _where(path: str | None, index: int) -> str:
    """How messages name a structure: its file (if any) and its 0-based index there."""
    return f"file {path}, structure {index} (0-based)" if path else f"structure {index} (0-based)"


def _sources(frames_or_path) -> list:
    """The inputs as a list: of paths (strings) or of structures."""
    if isinstance(frames_or_path, (str, Path)):
        return [str(frames_or_path)]
    if hasattr(frames_or_path, "get_positions"):  # one ase.Atoms (itself an iterable of Atom)
        return [frames_or_path]
    sources = list(frames_or_path)
    if sources and all(isinstance(s, (str, Path)) for s in sources):
        return [str(s) for s in sources]
    return sources


def _is_files(sources: list) -> bool:
    return bool(sources) and isinstance(sources[0], str)


def iter_frames(sources: list) -> Iterator[tuple[int, str, object]]:
    """Yield ``(global_index, where, atoms)`` lazily from the list of :func:`_sources`.

    ``where`` names the structure in messages (``file F, structure i (0-based)``, or
    ``structure i (0-based)`` for in-memory structures). Reading errors raise
    :class:`DatasetError` naming the file and the index of the structure that could not
    be read.
    """
    if not _is_files(sources):
        for index, atoms in enumerate(sources):
            yield index, _where(None, index), atoms
        return
    import ase.io

    index = 0
    for path in sources:
        if not Path(path).is_file():
            raise DatasetError(f"file {path}: no such file")
        frames = ase.io.iread(path, index=":")
        local = 0
        while True:
            try:
                atoms = next(frames)
            except StopIteration:
                break
            except Exception as error:  # ASE raises many kinds on malformed files
                raise DatasetError(f"{_where(path, local)}: cannot be read ({error})") from error
            yield index, _where(path, local), atoms
            index += 1
            local += 1
        if local == 0:
            raise DatasetError(f"file {path}: no structures in file")


def _file_record(path: str) -> dict:
    """Absolute path, size, modification time and content hash of one input file."""
    stat = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if stat.st_size <= 2 * HASH_BLOCK:
            digest.update(handle.read())
        else:
            digest.update(handle.read(HASH_BLOCK))
            handle.seek(-HASH_BLOCK, os.SEEK_END)
            digest.update(handle.read())
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime": stat.st_mtime, "sha256": digest.hexdigest()}


def scan(sources: list) -> tuple[dict, list[int]]:
    """First pass over the inputs: their description and the sorted atomic numbers present.

    :return: ``(inputs, species)``; ``inputs`` has ``n_structures``, ``structures_sha256``
        (of every structure's atomic numbers, positions, cell and pbc, in order) and
        ``files`` (:func:`_file_record` of each input file, or ``None`` for in-memory
        structures)
    """
    count, species, digest = 0, set(), hashlib.sha256()
    for _, where, atoms in iter_frames(sources):
        if not all(hasattr(atoms, name) for name in ("get_atomic_numbers", "get_positions", "get_cell", "get_pbc")):
            raise DatasetError(f"{where}: expected an ase.Atoms, got {type(atoms).__name__}")
        numbers = np.asarray(atoms.get_atomic_numbers(), dtype=np.int64)
        species.update(np.unique(numbers).tolist())
        for array in (
            np.array([numbers.size], dtype=np.int64),
            numbers,
            np.asarray(atoms.get_positions(), dtype=np.float64),
            np.asarray(atoms.get_cell()[:], dtype=np.float64),
            np.asarray(atoms.get_pbc(), dtype=bool),
        ):
            digest.update(np.ascontiguousarray(array).tobytes())
        count += 1
    files = [_file_record(path) for path in sources] if _is_files(sources) else None
    inputs = {"n_structures": count, "structures_sha256": digest.hexdigest(), "files": files}
    return inputs, sorted(int(z) for z in species)


def _input_differences(old: dict, new: dict) -> list[str]:
    """What differs between two :func:`scan` descriptions (modification times are ignored)."""
    differences = []
    old_files, new_files = old.get("files"), new.get("files")
    if (old_files is None) != (new_files is None):
        differences.append("files vs in-memory structures")
    elif old_files is not None:
        if len(old_files) != len(new_files):
            differences.append(f"{len(old_files)} → {len(new_files)} input files")
        for before, after in zip(old_files, new_files, strict=False):  # a count change is named above
            if before["path"] != after["path"]:
                differences.append(f"input file {before['path']} → {after['path']}")
            elif before["size"] != after["size"]:
                differences.append(f"{after['path']}: size {before['size']} → {after['size']} bytes")
            elif before["sha256"] != after["sha256"]:
                differences.append(f"{after['path']}: content changed")
    if old.get("n_structures") != new["n_structures"]:
        differences.append(f"{old.get('n_structures')} → {new['n_structures']} structures")
    if not differences and old.get("structures_sha256") != new["structures_sha256"]:
        differences.append("structure contents changed (atomic numbers, positions, cell or pbc)")
    return differences


def _setting_differences(old: dict, new: dict) -> list[str]:
    """What differs between the settings of two metadata dicts, hyper-parameters one by one."""
    differences = []
    for key in SETTINGS:
        before, after = old.get(key), json.loads(json.dumps(new.get(key)))
        if isinstance(before, dict) and isinstance(after, dict):
            names = sorted(set(before) | set(after))
            differences += [
                f"{key}.{k} {before.get(k)!r} → {after.get(k)!r}" for k in names if before.get(k) != after.get(k)
            ]
        elif before != after:
            differences.append(f"{key} {before!r} → {after!r}")
    return differences


def _check_same_origin(path: str, existing: dict, metadata: dict, what: str) -> None:
    """Refuse to add to (or replace) an output made with other settings or inputs."""
    differences = _setting_differences(existing, metadata)
    if differences:
        raise DatasetError(
            f"{path}: existing {what} was written with different settings ({'; '.join(differences)}); "
            "use a new output path or the same settings"
        )
    differences = _input_differences(existing.get("inputs", {}), metadata["inputs"])
    if differences:
        raise DatasetError(
            f"{path}: existing {what} was made from different inputs ({'; '.join(differences)}); "
            "use a new output path or the same inputs"
        )


def _validated(atoms):
    """``(system, None)``, or ``(None, why)`` one structure cannot be featurised (see
    :func:`gplode.systems.as_systems`)."""
    try:
        (system,) = as_systems(atoms)
    except (ValueError, TypeError) as error:
        return None, str(error)
    return system, None


#: what :meth:`LodeCalculator.compute` raises for a structure it refuses (e.g. one too large
#: for the memory, or for the reference backend's work limit)
_REFUSALS = (ValueError, TypeError, MemoryError)


def _refused(calculator: LodeCalculator, batch) -> list[tuple[int, str, str]]:
    """The structures of ``batch`` that ``calculator`` refuses on their own (checked, not
    computed): ``(index, where, reason)``."""
    refused = []
    for index, where, system in batch:
        try:
            calculator.check(system)
        except _REFUSALS as error:
            refused.append((index, where, str(error)))
    return refused


def _batches(frames: Iterable, batch_size: int) -> Iterator[tuple[int, list]]:
    batch, chunk = [], 0
    for item in frames:
        batch.append(item)
        if len(batch) == batch_size:
            yield chunk, batch
            batch, chunk = [], chunk + 1
    if batch:
        yield chunk, batch


def _empty_arrays(calculator: LodeCalculator, invariants: bool) -> dict:
    dtype = np.dtype(calculator.hypers.dtype)
    n_types = len(calculator.hypers.neighbor_types)
    L, n = calculator.hypers.max_angular, calculator.hypers.max_radial + 1
    arrays = {
        "values": np.zeros((0, n_types, (L + 1) ** 2, n), dtype),
        "system": np.zeros(0, np.int64),
        "atom": np.zeros(0, np.int64),
        "center_type": np.zeros(0, np.int64),
    }
    if invariants:
        arrays["power_spectrum"] = np.zeros((0, n_types * n * n_types * n * (L + 1)), dtype)
    return arrays


def featurize_chunk(batch, calculator: LodeCalculator, invariants: bool, skip_bad: bool, progress=None) -> dict:
    """Features of one chunk as plain arrays (rows of all its atoms) plus skipped structures.

    A structure is invalid when :func:`gplode.systems.as_systems` refuses it (coincident
    atoms included) or when the calculator refuses it on its own (e.g. too large for the
    memory). Invalid structures raise :class:`DatasetError` naming the file and index, or
    with ``skip_bad`` are listed in ``skipped`` as ``[global_index, message]``.
    With a :class:`Progress`, the free-space pair table (built once per calculator, before
    the first free-space structure) shows its progress in the progress line.
    """
    good, skipped = [], []

    def reject(index, where, reason):
        if not skip_bad:
            raise DatasetError(f"{where}: {reason}")
        skipped.append([int(index), f"{where}: {reason}"])

    for index, where, atoms in batch:
        system, reason = _validated(atoms)  # converted once: compute() takes the systems
        if reason is None:
            good.append((index, where, system))
        else:
            reject(index, where, reason)
    feats = None
    while good and feats is None:
        try:
            if progress is not None and any(not system.periodic for _, _, system in good):
                calculator.pipeline.pair_table(progress.table)  # built once: shown in the progress line
            feats = calculator.compute([system for _, _, system in good])
        except _REFUSALS as error:
            refused = _refused(calculator, good)
            if not refused:  # a problem of the batch as a whole, not of one structure
                raise DatasetError(f"structures {good[0][0]}..{good[-1][0]} (0-based): {error}") from error
            for item in refused:
                reject(*item)
            bad = {index for index, _, _ in refused}
            good = [item for item in good if item[0] not in bad]
    if feats is None:
        return {"arrays": _empty_arrays(calculator, invariants), "skipped": skipped}
    indices = np.array([index for index, _, _ in good], dtype=np.int64)
    arrays = {
        "values": feats.values,
        "system": indices[feats.system],
        "atom": feats.atom,
        "center_type": feats.center_types,
    }
    if invariants:
        arrays["power_spectrum"] = feats.power_spectrum().reshape(feats.values.shape[0], -1)
    return {"arrays": arrays, "skipped": skipped}


def _open_zarr():
    try:
        import zarr
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise DatasetError("Zarr output needs the zarr package: pip install 'gplode[data]'") from error
    return zarr


def _metatensor():
    try:
        import metatensor
    except ImportError as error:
        raise DatasetError("metatensor .mts files need metatensor-core: pip install 'gplode[data]'") from error
    return metatensor


def _lock_directory(path: str) -> int:
    """Create directory ``path`` if needed and hold an exclusive ``flock`` on it: its fd.

    :raises DatasetError: if another process holds the lock (naming its pid when known)
    """
    import fcntl

    while True:
        try:
            os.makedirs(path, exist_ok=True)
            fd = os.open(path, os.O_RDONLY)
        except OSError as error:
            raise DatasetError(f"{path}: cannot create feature store ({error.strerror or error})") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = _writer_pid(path)
            raise DatasetError(
                f"{path}: store is being written by another run ({f'pid {pid}' if pid else 'pid unknown'}); "
                "wait for it to finish or use another output path"
            ) from None
        try:  # the directory may have been removed (and re-created) between open and flock
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _writer_pid(path: str) -> int | None:
    """The pid recorded by the run writing store ``path``, or ``None`` (not recorded yet)."""
    try:
        return _open_zarr().open_group(path, mode="r").attrs.get("gplode_writer_pid")
    except (OSError, ValueError, KeyError):
        return None


def _is_locked(path: str) -> bool:
    """Whether a run holds the write lock of store ``path`` right now."""
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


#: the files of an empty Zarr group (formats 3 and 2)
_ZARR_METADATA_FILES = {"zarr.json", ".zgroup", ".zattrs"}


class FeatureStore:
    """A Zarr store of features written chunk by chunk (see the module docstring).

    :param path: directory of the store
    :param metadata: open for a run with these settings and inputs: locks the store (until
        :meth:`close`), creates it if absent, takes it over if it has no complete chunk,
        else requires the same settings and inputs (else :class:`DatasetError`). Without
        it the store must exist already.
    :param writable: open an existing store for writing chunks without locking it (Dask
        workers of a run whose driver holds the lock)
    """

    def __init__(self, path, metadata: dict | None = None, writable: bool = False):
        zarr = _open_zarr()
        self.path = str(path)
        self._lock = None
        self.created = False
        if metadata is None:
            if not Path(self.path).is_dir():
                raise DatasetError(f"{self.path}: no such feature store")
            self.root = self._open(zarr, "a" if writable else "r")
            self.metadata = self._gplode_metadata()
            return
        self.created = not Path(self.path).exists()
        self._lock = _lock_directory(self.path)
        try:
            self._start_run(zarr, metadata)
        except BaseException:
            if self.created:
                shutil.rmtree(self.path, ignore_errors=True)
            self.close()
            raise

    def _open(self, zarr, mode: str):
        try:
            return zarr.open_group(self.path, mode=mode)
        except (OSError, ValueError) as error:
            raise DatasetError(f"{self.path}: cannot open feature store ({error})") from error

    def _gplode_metadata(self) -> dict:
        existing = dict(self.root.attrs).get("gplode")
        if existing is None:
            raise DatasetError(f"{self.path}: not a gplode feature store (no 'gplode' metadata)")
        if existing.get("format") != FORMAT:
            raise DatasetError(
                f"{self.path}: feature store format {existing.get('format')!r} is not {FORMAT!r} "
                "(written by another gplode version); featurize into a new store"
            )
        return existing

    def _start_run(self, zarr, metadata: dict) -> None:
        entries = set(os.listdir(self.path))
        foreign = DatasetError(f"{self.path}: exists and is not a gplode feature store; use another output path")
        if entries and not entries & _ZARR_METADATA_FILES:
            raise foreign
        self.root = self._open(zarr, "a")
        attributes = dict(self.root.attrs)
        if "gplode" in attributes:
            if self.completed():
                _check_same_origin(self.path, attributes["gplode"], metadata, "store")
            elif "chunks" in self.root:  # no complete chunk: taken over whatever its settings
                del self.root["chunks"]
        elif attributes or entries - _ZARR_METADATA_FILES:  # a group that is not a store killed while created
            raise foreign
        self.root.attrs.update({"gplode": metadata, "gplode_writer_pid": os.getpid()})
        self.metadata = dict(self.root.attrs)["gplode"]

    def close(self) -> None:
        """Release the write lock (if this object holds it)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def remove_if_empty(self) -> None:
        """Delete the store if this run created it and no chunk is complete (a failed run)."""
        if self._lock is None or not self.created or self.completed():
            return
        shutil.rmtree(self.path, ignore_errors=True)

    @staticmethod
    def chunk_name(index: int) -> str:
        """Group name of chunk ``index``."""
        return f"chunks/{index:08d}"

    def completed(self) -> set[int]:
        """Indices of the chunks written completely."""
        if "chunks" not in self.root:
            return set()
        chunks = self.root["chunks"]
        done = set()
        with warnings.catch_warnings():
            # files another process is writing right now (temporary ".partial" files, a chunk
            # group without metadata yet) are not Zarr objects: zarr warns and skips them
            # while listing, or raises KeyError on access; either way they are not complete
            warnings.simplefilter("ignore")
            for name in list(chunks.group_keys()):
                try:
                    complete = chunks[name].attrs.get("complete", False)
                except KeyError:
                    continue
                if complete and name.isdigit():
                    done.add(int(name))
        return done

    def chunk_counts(self, index: int) -> tuple[int, int]:
        """Rows (atoms) and skipped structures of complete chunk ``index``."""
        group = self.root[self.chunk_name(index)]
        return int(group["values"].shape[0]), len(group.attrs.get("skipped", []))

    def write_chunk(self, index: int, result: dict) -> None:
        """(Re)write one chunk from scratch; its ``complete`` flag goes last."""
        name = self.chunk_name(index)
        if name in self.root:
            del self.root[name]
        group = self.root.require_group(name)
        for key, array in result["arrays"].items():
            data = np.ascontiguousarray(array)
            if hasattr(group, "create_array"):  # zarr 3
                group.create_array(key, data=data, overwrite=True)
            else:  # zarr 2 (Python 3.10)
                group.array(key, data, overwrite=True)
        group.attrs.update({"skipped": result["skipped"], "complete": True})

    def read(self, partial: bool = False, power_spectrum: bool = False):
        """All complete chunks concatenated in order: see :func:`load_features`."""
        meta = self.metadata
        total, batch_size = meta["inputs"]["n_structures"], meta["batch_size"]
        expected = -(-total // batch_size)
        order = sorted(self.completed())
        writing = " and is being written right now" if _is_locked(self.path) else ""
        if not order:
            raise DatasetError(
                f"{self.path}: feature store is empty (no chunk complete){writing}; "
                "run the featurize command (again) to fill it"
            )
        if len(order) < expected and not partial:
            structures = sum(min(batch_size, total - i * batch_size) for i in order)
            raise DatasetError(
                f"{self.path}: feature store is incomplete ({len(order)} of {expected} chunks, {structures} of "
                f"{total} structures){writing}; re-run the same featurize command to finish it, or load it "
                "with partial=True"
            )
        groups = [self.root[self.chunk_name(i)] for i in order]
        names = ("values", "system", "atom", "center_type") + (("power_spectrum",) if meta["invariants"] else ())
        arrays = {name: np.concatenate([g[name][:] for g in groups]) for name in names}
        skipped = [item for g in groups for item in g.attrs.get("skipped", [])]
        return _loaded(self.path, arrays, meta, skipped, power_spectrum)


def _loaded(path: str, arrays: dict, meta: dict, skipped: list, power_spectrum: bool):
    """The return value of :func:`load_features` from stored arrays and metadata."""
    from ..hypers import LodeHypers

    features = Features(
        values=arrays["values"],
        neighbor_types=meta["hypers"]["neighbor_types"],
        center_types=arrays["center_type"],
        system=arrays["system"],
        atom=arrays["atom"],
        hypers=LodeHypers.from_dict(meta["hypers"]),
        backend=meta["backend"],
    )
    if not power_spectrum:
        return features, skipped
    if "power_spectrum" not in arrays:
        raise DatasetError(
            f"{path}: stored without invariants (no power spectra); use features.power_spectrum() instead"
        )
    return features, skipped, arrays["power_spectrum"]


def load_features(path, *, partial: bool = False, power_spectrum: bool = False):
    """Read what :func:`featurize_dataset` wrote: a ``.zarr`` store, ``.npz`` or ``.mts`` file.

    :param partial: a Zarr store whose run was interrupted is an error (saying how many of
        how many chunks and structures are complete) unless ``partial`` is true; then its
        complete chunks are returned. A store without any complete chunk is always an error.
    :param power_spectrum: also return the stored power spectra (outputs written with
        ``invariants=True``; never in ``.mts`` files)
    :return: ``(features, skipped)``, or with ``power_spectrum`` ``(features, skipped,
        power_spectrum)``: a :class:`gplode.Features` of the stored atoms (``system`` is
        the structure's index in the whole input), the skipped structures as
        ``[index, message]`` pairs, and the flattened power spectra, shape ``(n_atoms,
        n_features)``, rows as in ``features`` (``features.power_spectrum().reshape(n_atoms,
        -1)``)
    """
    path = str(path)
    if Path(path).is_dir():
        return FeatureStore(path).read(partial, power_spectrum)
    if not Path(path).is_file():
        raise DatasetError(f"{path}: no such feature store or file")
    meta, arrays = _read_single_file(path)
    return _loaded(path, arrays, meta, meta["skipped"], power_spectrum)


def _read_single_file(path: str) -> tuple[dict, dict]:
    """Metadata and arrays of a ``.npz`` or ``.mts`` output (:class:`DatasetError` if it is not one)."""
    kind = Path(path).suffix
    if kind not in (".npz", ".mts"):
        raise DatasetError(f"{path}: not a feature output (.zarr directory, .npz or .mts file)")
    metatensor = _metatensor() if kind == ".mts" else None
    damaged = (OSError, ValueError, KeyError, TypeError) + ((metatensor.MetatensorError,) if metatensor else ())
    try:
        if metatensor:
            tensor = metatensor.load(path)
            meta = json.loads(tensor.info()["gplode"])
            arrays = _arrays_from_tensormap(tensor, meta)
        else:
            with np.load(path) as data:
                arrays = {name: data[name] for name in data.files if name not in ("metadata", "neighbor_types")}
                meta = json.loads(str(data["metadata"]))
    except damaged as error:  # not ours, or damaged
        raise DatasetError(f"{path}: not a gplode feature file ({type(error).__name__}: {error})") from error
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{path}: feature file format {meta.get('format')!r} is not {FORMAT!r}")
    return meta, arrays


def _arrays_from_tensormap(tensor, meta: dict) -> dict:
    """The arrays of :class:`Features` from its ``to_tensormap`` form, rows ordered by (system, atom)."""
    hypers = meta["hypers"]
    species = hypers["neighbor_types"]
    L, n = hypers["max_angular"], hypers["max_radial"] + 1
    rows = {}
    for key, block in tensor.items():
        if int(key["o3_lambda"]) == 0 and int(key["neighbor_type"]) == species[0]:
            for system, atom in block.samples.values:
                rows[(int(system), int(atom))] = int(key["center_type"])
    order = sorted(rows)
    row_of = {sample: i for i, sample in enumerate(order)}
    values = np.zeros((len(order), len(species), (L + 1) ** 2, n), dtype=hypers["dtype"])
    for key, block in tensor.items():
        l, a = int(key["o3_lambda"]), species.index(int(key["neighbor_type"]))
        index = [row_of[(int(s), int(i))] for s, i in block.samples.values]
        values[index, a, l * l : (l + 1) ** 2, :] = block.values
    samples = np.array(order, dtype=np.int64).reshape(-1, 2)
    return {
        "values": values,
        "system": samples[:, 0],
        "atom": samples[:, 1],
        "center_type": np.array([rows[s] for s in order], dtype=np.int64),
    }


class Progress:
    """A one-line progress report on stderr: structures/s, atoms/s and ETA."""

    def __init__(self, total: int | None, quiet: bool):
        self.total, self.quiet = total, quiet
        self.structures = self.atoms = 0
        self.start = self._last = time.perf_counter()
        self._shown = False

    def update(self, structures: int, atoms: int) -> None:
        self.structures += structures
        self.atoms += atoms
        now = time.perf_counter()
        if self.quiet or (now - self._last < 0.5 and self.structures != self.total):
            return
        self._last = now
        elapsed = max(now - self.start, 1e-9)
        rate = self.structures / elapsed
        text = f"\r{self.structures}"
        if self.total:
            eta = (self.total - self.structures) / rate if rate > 0 else float("inf")
            text += f"/{self.total} structures ({100 * self.structures / self.total:.0f} %), ETA {eta:.0f} s"
        text += f", {rate:.1f} structures/s, {self.atoms / elapsed:.0f} atoms/s"
        print(text, end="", file=sys.stderr, flush=True)
        self._shown = True

    def table(self, done: int, total: int) -> None:
        """Progress of the free-space pair table (built once per calculator, before the first
        free-space structure)."""
        if self.quiet:
            return
        text = f"\rtabulating the free-space pair functions (once per calculator): {100 * done / total:.0f} %"
        print(text + (" done" if done == total else ""), end="", file=sys.stderr, flush=True)
        self._shown = True

    def close(self) -> None:
        """End the progress line (if one was shown)."""
        if self._shown:
            print(file=sys.stderr, flush=True)


@functools.lru_cache(maxsize=4)
def _worker_calculator(hypers_json: str) -> LodeCalculator:
    return LodeCalculator(**json.loads(hypers_json))


def _chunk_summary(batch, result: dict) -> tuple[int, int, int, int]:
    """(structures, atoms read, rows stored, structures skipped) of a computed chunk."""
    return len(batch), sum(len(atoms) for _, _, atoms in batch), len(result["arrays"]["values"]), len(result["skipped"])


def _dask_task(index: int, batch, hypers_json: str, output: str, invariants: bool, skip_bad: bool):
    """Run on a Dask worker: compute one chunk and write it to the shared store (the
    driver holds the store's lock)."""
    calculator = _worker_calculator(hypers_json)
    result = featurize_chunk(batch, calculator, invariants, skip_bad)
    FeatureStore(output, writable=True).write_chunk(index, result)
    return _chunk_summary(batch, result)


#: structures per chunk when ``batch_size`` is not given, by backend
DEFAULT_BATCH_SIZE = {"numpy": 100, "reference": 100, "gpu": 2000}


def featurize_dataset(
    frames_or_path,
    calculator: LodeCalculator,
    output,
    *,
    batch_size: int | None = None,
    invariants: bool = False,
    skip_bad: bool = False,
    client=None,
    quiet: bool = True,
) -> dict:
    """Featurise a dataset into ``output`` (``.zarr`` directory, ``.npz`` or ``.mts`` file).

    :param frames_or_path: a path, a list of paths (any ASE-readable format, read lazily),
        or an iterable of ``ase.Atoms``
    :param calculator: the :class:`gplode.LodeCalculator` to use; when its
        ``neighbor_types`` is None the species are taken from a first pass over the data
    :param output: where to write; a ``.zarr`` store is resumable: re-running the same call
        skips the chunks already complete and gives the same store as an uninterrupted run;
        other settings or inputs are refused (see the module docstring)
    :param batch_size: structures per chunk (unit of work, of writing and of resuming);
        default :data:`DEFAULT_BATCH_SIZE` of the calculator's backend (larger on a GPU,
        where a chunk's structures sharing a mesh run as one batch of kernels)
    :param invariants: also store the power spectrum of every atom, flattened (not in
        ``.mts`` files, which hold the spherical expansion only)
    :param skip_bad: record invalid structures (see :func:`featurize_chunk`) in the output
        and go on, instead of stopping
    :param client: a ``dask.distributed.Client``: chunks are computed and written by its
        workers (the store must be on a file system all workers see)
    :param quiet: no progress line on stderr
    :return: a summary: ``structures`` (read), ``stored``, ``skipped``, ``atoms`` (stored),
        ``chunks_written``, ``chunks_resumed`` (complete before this run), ``seconds``
    """
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE.get(calculator.backend, DEFAULT_BATCH_SIZE["numpy"])
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    output = str(output)
    kind = Path(output).suffix
    if kind not in (".zarr", ".npz", ".mts"):
        raise DatasetError(f"{output}: output must end in .zarr, .npz or .mts")
    if kind == ".mts":
        _metatensor()
        if invariants:
            raise DatasetError(
                f"{output}: .mts files hold the spherical expansion only; write invariants to .zarr or .npz, "
                "or compute features.power_spectrum() after loading"
            )
    if kind != ".zarr":
        _check_writable(output)
    sources = _sources(frames_or_path)
    inputs, species = scan(sources)
    if not inputs["n_structures"]:
        raise DatasetError("no structures to featurize")
    hypers = calculator.hypers.to_dict()
    if hypers["neighbor_types"] is None:
        hypers["neighbor_types"] = species
        calculator = LodeCalculator(device=calculator.device, **hypers)
    metadata = {
        "format": FORMAT,
        "gplode_version": __version__,
        "backend": calculator.backend,
        "hypers": hypers,
        "batch_size": batch_size,
        "invariants": invariants,
        "inputs": inputs,
    }
    start = time.perf_counter()
    progress = Progress(inputs["n_structures"], quiet)
    summary = {"structures": inputs["n_structures"], "stored": 0, "skipped": 0, "atoms": 0}
    summary.update(chunks_written=0, chunks_resumed=0)
    batches = _batches(iter_frames(sources), batch_size)
    try:
        if kind == ".zarr":
            _featurize_into_store(batches, calculator, output, metadata, skip_bad, client, progress, summary)
        else:
            if Path(output).exists():
                _check_same_origin(output, _read_single_file(output)[0], metadata, "file")
            results = []
            for _, batch in batches:
                results.append(featurize_chunk(batch, calculator, invariants, skip_bad, progress))
                _count(summary, progress, *_chunk_summary(batch, results[-1]))
                summary["chunks_written"] += 1
            _write_single_file(output, kind, results, calculator, metadata)
    finally:
        progress.close()  # ends the progress line, also before an error message
    summary["seconds"] = time.perf_counter() - start
    return summary


def _count(summary: dict, progress: Progress, structures: int, atoms: int, rows: int, skipped: int) -> None:
    summary["stored"] += structures - skipped
    summary["skipped"] += skipped
    summary["atoms"] += rows
    progress.update(structures, atoms)


def _featurize_into_store(batches, calculator, output, metadata, skip_bad, client, progress, summary):
    """Compute the chunks not complete yet into the (locked) store; a failure before the
    first chunk removes a store this run created."""
    store = FeatureStore(output, metadata)
    try:
        done = store.completed()
        pending = []
        for index, batch in batches:
            if index in done:
                rows, skipped = store.chunk_counts(index)
                _count(summary, progress, len(batch), sum(len(atoms) for _, _, atoms in batch), rows, skipped)
                summary["chunks_resumed"] += 1
            elif client is None:
                result = featurize_chunk(batch, calculator, metadata["invariants"], skip_bad, progress)
                store.write_chunk(index, result)
                _count(summary, progress, *_chunk_summary(batch, result))
                summary["chunks_written"] += 1
            else:
                pending.append((index, batch))
        if client is not None:
            _run_on_dask(client, pending, metadata, output, skip_bad, progress, summary)
    except BaseException:
        store.remove_if_empty()
        raise
    finally:
        store.close()


def _run_on_dask(client, pending, metadata, output, skip_bad, progress, summary):
    from dask.distributed import as_completed

    # the driver's resolved backend (not "auto"): workers compute what the store records
    hypers_json = json.dumps(dict(metadata["hypers"], backend=metadata["backend"]), sort_keys=True)
    window = 2 * max(1, len(client.scheduler_info().get("workers", {})))
    futures = as_completed()
    in_flight = 0

    def collect(future):
        _count(summary, progress, *future.result())
        summary["chunks_written"] += 1

    for index, batch in pending:
        futures.add(
            client.submit(_dask_task, index, batch, hypers_json, output, metadata["invariants"], skip_bad, pure=False)
        )
        in_flight += 1
        while in_flight >= window:
            collect(next(futures))
            in_flight -= 1
    for future in futures:
        collect(future)


def _check_writable(output: str) -> None:
    """Before any computing: a single-file output's directory exists and takes new files."""
    target = Path(output)
    parent = target.parent
    if not parent.is_dir():
        raise DatasetError(f"{output}: cannot write ({parent} is not a directory)")
    if target.exists() and not target.is_file():
        raise DatasetError(f"{output}: cannot write (exists and is not a file)")
    try:
        probe = parent / f".{target.name}.{os.getpid()}.probe"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise DatasetError(f"{output}: cannot write ({error.strerror or error})") from error


def _write_single_file(output, kind, results, calculator, metadata):
    """Write all chunks to one ``.npz`` or ``.mts`` file via a temporary file in its directory."""
    arrays = {name: np.concatenate([r["arrays"][name] for r in results]) for name in results[0]["arrays"]}
    meta = json.dumps({**metadata, "skipped": [item for r in results for item in r["skipped"]]})
    target = Path(output)
    temporary = target.parent / f".{target.name}.{os.getpid()}.tmp{kind}"
    try:
        if kind == ".npz":
            with open(temporary, "wb") as handle:
                np.savez(handle, **arrays, neighbor_types=np.array(calculator.hypers.neighbor_types), metadata=meta)
        else:
            features = Features(
                arrays["values"],
                calculator.hypers.neighbor_types,
                arrays["center_type"],
                arrays["system"],
                arrays["atom"],
                calculator.hypers,
                calculator.backend,
            )
            tensor = features.to_tensormap()
            tensor.set_info("gplode", meta)
            _metatensor().save(str(temporary), tensor)
        os.replace(temporary, output)
    except OSError as error:
        raise DatasetError(f"{output}: cannot write ({error})") from error
    finally:
        temporary.unlink(missing_ok=True)
