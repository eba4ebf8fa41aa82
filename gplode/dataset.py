"""Featurise datasets: lazy reading, chunked interruption-safe output, resume, Dask scale-out.

A dataset is cut into chunks of ``batch_size`` consecutive structures. Each chunk is
computed independently and written to its own group of a Zarr store
(``chunks/<index>``: ``values``, ``system``, ``atom``, ``center_type`` and, with
``invariants``, ``power_spectrum``); the chunk's ``complete`` attribute is written last,
so an interrupted run leaves at most one partial chunk, which a re-run overwrites. The
store's attributes record the format, gplode version, backend and hyper-parameters; a
re-run with different settings is refused instead of mixing results.

Small outputs can also be written as ``.npz`` or metatensor ``.mts`` (no resume).
"""

from __future__ import annotations

import functools
import json
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ._version import __version__
from .calculator import LodeCalculator
from .features import Features
from .systems import as_systems

__all__ = ["DatasetError", "FeatureStore", "featurize_dataset", "load_features"]

FORMAT = "gplode-features/1"


class DatasetError(ValueError):
    """A problem with the input or output of a dataset run, naming the file and structure."""


def _iread(path: str) -> Iterator:
    import ase.io

    return ase.io.iread(path, index=":")


def iter_frames(sources) -> Iterator[tuple[int, str, object]]:
    """Yield ``(global_index, label, atoms)`` lazily from paths or an iterable of ``ase.Atoms``.

    ``label`` is ``"file:index"`` for files. Reading errors raise :class:`DatasetError`
    naming the file and the index of the structure that could not be read.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    sources = list(sources)
    if sources and all(isinstance(s, (str, Path)) for s in sources):
        index = 0
        for path in map(str, sources):
            if not Path(path).is_file():
                raise DatasetError(f"{path}: no such file")
            frames = _iread(path)
            local = 0
            while True:
                try:
                    atoms = next(frames)
                except StopIteration:
                    break
                except Exception as error:  # ASE raises many kinds on malformed files
                    raise DatasetError(f"{path}: structure {local}: cannot be read ({error})") from error
                yield index, f"{path}:{local}", atoms
                index += 1
                local += 1
            if local == 0:
                raise DatasetError(f"{path}: no structures in file")
    else:
        for index, atoms in enumerate(sources):
            yield index, f"frame {index}", atoms


def scan(sources) -> tuple[int, list[int]]:
    """First pass: number of structures and the sorted atomic numbers present."""
    count, species = 0, set()
    for _, _, atoms in iter_frames(sources):
        species.update(int(z) for z in np.unique(atoms.get_atomic_numbers()))
        count += 1
    return count, sorted(species)


def _batches(frames: Iterable, batch_size: int) -> Iterator[tuple[int, list]]:
    batch, chunk = [], 0
    for item in frames:
        batch.append(item)
        if len(batch) == batch_size:
            yield chunk, batch
            batch, chunk = [], chunk + 1
    if batch:
        yield chunk, batch


def featurize_chunk(batch, calculator: LodeCalculator, invariants: bool, skip_bad: bool) -> dict:
    """Features of one chunk as plain arrays (rows of all its atoms) plus skipped structures."""
    good, skipped = [], []
    for index, label, atoms in batch:
        try:
            as_systems(atoms)
        except (ValueError, TypeError) as error:
            if not skip_bad:
                raise DatasetError(f"{label}: {error}") from error
            skipped.append([int(index), f"{label}: {error}"])
        else:
            good.append((index, atoms))
    dtype = np.dtype(calculator.hypers.dtype)
    n_types = len(calculator.hypers.neighbor_types)
    L, n = calculator.hypers.max_angular, calculator.hypers.max_radial + 1
    if not good:
        arrays = {
            "values": np.zeros((0, n_types, (L + 1) ** 2, n), dtype),
            "system": np.zeros(0, np.int64),
            "atom": np.zeros(0, np.int64),
            "center_type": np.zeros(0, np.int64),
        }
        if invariants:
            arrays["power_spectrum"] = np.zeros((0, n_types * n * n_types * n * (L + 1)), dtype)
        return {"arrays": arrays, "skipped": skipped}
    try:
        feats = calculator.compute([atoms for _, atoms in good])
    except (ValueError, TypeError) as error:  # e.g. coincident atoms, species not in neighbor_types
        raise DatasetError(f"structures {good[0][0]}..{good[-1][0]}: {error}") from error
    indices = np.array([index for index, _ in good], dtype=np.int64)
    arrays = {
        "values": feats.values,
        "system": indices[feats.system],
        "atom": feats.atom,
        "center_type": feats.center_types,
    }
    if invariants:
        arrays["power_spectrum"] = feats.power_spectrum().reshape(feats.values.shape[0], -1)
    return {"arrays": arrays, "skipped": skipped}


class FeatureStore:
    """A Zarr store of features written chunk by chunk (see the module docstring).

    :param path: directory of the store
    :param metadata: settings the store must have; a new store records them, an existing
        one must match them exactly (else :class:`DatasetError`). Without it the store must
        exist already.
    :param writable: open for writing chunks (implied by ``metadata``)
    """

    def __init__(self, path, metadata: dict | None = None, writable: bool = False):
        try:
            import zarr
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise DatasetError("Zarr output needs the zarr package: pip install 'gplode[data]'") from error
        self.path = str(path)
        try:
            if metadata is None and not Path(self.path).is_dir():
                raise DatasetError(f"{self.path}: no such feature store")
            self.root = zarr.open_group(self.path, mode="a" if (metadata is not None or writable) else "r")
        except (OSError, ValueError) as error:
            raise DatasetError(f"{self.path}: cannot open feature store ({error})") from error
        if metadata is not None:
            existing = dict(self.root.attrs).get("gplode")
            if existing is None:
                self.root.attrs["gplode"] = metadata
            elif existing != json.loads(json.dumps(metadata)):
                changed = sorted(k for k in set(existing) | set(metadata) if existing.get(k) != metadata.get(k))
                raise DatasetError(
                    f"{self.path}: existing store was written with different settings ({', '.join(changed)}); "
                    "use a new output path or the same settings"
                )
        if "gplode" not in dict(self.root.attrs):  # another store, or one being created right now
            raise DatasetError(f"{self.path}: not a gplode feature store (no 'gplode' metadata)")
        self.metadata = dict(self.root.attrs)["gplode"]

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

    def write_chunk(self, index: int, result: dict) -> None:
        """Write one chunk; its ``complete`` flag goes last."""
        group = self.root.require_group(self.chunk_name(index))
        group.attrs["complete"] = False
        for name, array in result["arrays"].items():
            data = np.ascontiguousarray(array)
            if hasattr(group, "create_array"):  # zarr 3
                group.create_array(name, data=data, overwrite=True)
            else:  # zarr 2 (Python 3.10)
                group.array(name, data, overwrite=True)
        group.attrs["skipped"] = result["skipped"]
        group.attrs["complete"] = True

    def read(self) -> tuple[Features, list]:
        """All chunks concatenated in order, and the skipped structures."""
        order = sorted(self.completed())
        groups = [self.root[self.chunk_name(i)] for i in order]
        meta = self.metadata
        from .hypers import LodeHypers

        def gather(name):
            return np.concatenate([g[name][:] for g in groups]) if groups else np.zeros(0)

        features = Features(
            values=gather("values"),
            neighbor_types=meta["hypers"]["neighbor_types"],
            center_types=gather("center_type"),
            system=gather("system"),
            atom=gather("atom"),
            hypers=LodeHypers.from_dict(meta["hypers"]),
            backend=meta["backend"],
        )
        skipped = [item for g in groups for item in g.attrs.get("skipped", [])]
        return features, skipped


def load_features(path) -> tuple[Features, list]:
    """Read a store written by :func:`featurize_dataset`: ``(features, skipped)``."""
    return FeatureStore(path).read()


class Progress:
    """A one-line progress report on stderr: structures/s, atoms/s and ETA."""

    def __init__(self, total: int | None, quiet: bool):
        self.total, self.quiet = total, quiet
        self.structures = self.atoms = 0
        self.start = self._last = time.perf_counter()

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

    def close(self) -> None:
        if not self.quiet:
            print(file=sys.stderr, flush=True)


@functools.lru_cache(maxsize=4)
def _worker_calculator(hypers_json: str) -> LodeCalculator:
    return LodeCalculator(**json.loads(hypers_json))


def _dask_task(index: int, batch, hypers_json: str, output: str, invariants: bool, skip_bad: bool):
    """Run on a Dask worker: compute one chunk and write it to the shared store."""
    calculator = _worker_calculator(hypers_json)
    result = featurize_chunk(batch, calculator, invariants, skip_bad)
    FeatureStore(output, writable=True).write_chunk(index, result)
    return index, sum(len(atoms) for _, _, atoms in batch), len(batch)


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
        skips the chunks already complete and gives the same store as an uninterrupted run
    :param batch_size: structures per chunk (unit of work, of writing and of resuming);
        default :data:`DEFAULT_BATCH_SIZE` of the calculator's backend (larger on a GPU,
        where a chunk's structures sharing a mesh run as one batch of kernels)
    :param invariants: also store the power spectrum of every atom, flattened
    :param skip_bad: record invalid structures in the store and go on, instead of stopping
    :param client: a ``dask.distributed.Client``: chunks are computed and written by its
        workers (the store must be on a file system all workers see)
    :param quiet: no progress line on stderr
    :return: a summary: structures, atoms, chunks written, chunks skipped as complete, seconds
    """
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE.get(calculator.backend, DEFAULT_BATCH_SIZE["numpy"])
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    output = str(output)
    kind = Path(output).suffix
    if kind not in (".zarr", ".npz", ".mts"):
        raise DatasetError(f"{output}: output must end in .zarr, .npz or .mts")
    if not isinstance(frames_or_path, (str, Path)) and not isinstance(frames_or_path, list):
        frames_or_path = list(frames_or_path)
    total, species = scan(frames_or_path)
    hypers = calculator.hypers.to_dict()
    if hypers["neighbor_types"] is None:
        hypers["neighbor_types"] = species
        calculator = LodeCalculator(**hypers)
    start = time.perf_counter()
    progress = Progress(total, quiet)
    summary = {"structures": total, "atoms": 0, "chunks_written": 0, "chunks_resumed": 0}
    if kind != ".zarr":
        results = [
            featurize_chunk(batch, calculator, invariants, skip_bad)
            for _, batch in _batches(iter_frames(frames_or_path), batch_size)
        ]
        _write_single_file(output, kind, results, calculator)
        summary["atoms"] = int(sum(r["arrays"]["values"].shape[0] for r in results))
        summary["chunks_written"] = len(results)
    else:
        metadata = {
            "format": FORMAT,
            "gplode_version": __version__,
            "backend": calculator.backend,
            "hypers": hypers,
            "batch_size": batch_size,
            "invariants": invariants,
            "n_structures": total,
        }
        store = FeatureStore(output, metadata)
        pending = _skip_completed(
            _batches(iter_frames(frames_or_path), batch_size), store.completed(), progress, summary
        )
        if client is None:
            for index, batch in pending:
                store.write_chunk(index, featurize_chunk(batch, calculator, invariants, skip_bad))
                _count_written(len(batch), sum(len(atoms) for _, _, atoms in batch), progress, summary)
        else:
            _run_on_dask(client, pending, hypers, output, invariants, skip_bad, progress, summary)
    progress.close()
    summary["seconds"] = time.perf_counter() - start
    return summary


def _skip_completed(batches, done: set[int], progress, summary):
    """Yield the chunks still to compute; count the complete ones (resume) as they pass."""
    for index, batch in batches:
        if index in done:
            summary["chunks_resumed"] += 1
            n_atoms = sum(len(atoms) for _, _, atoms in batch)
            summary["atoms"] += n_atoms
            progress.update(len(batch), n_atoms)
        else:
            yield index, batch


def _count_written(n_structures: int, n_atoms: int, progress, summary) -> None:
    summary["chunks_written"] += 1
    summary["atoms"] += n_atoms
    progress.update(n_structures, n_atoms)


def _run_on_dask(client, pending, hypers, output, invariants, skip_bad, progress, summary):
    from dask.distributed import as_completed

    hypers_json = json.dumps(hypers, sort_keys=True)
    window = 2 * max(1, len(client.scheduler_info().get("workers", {})))
    futures = as_completed()
    in_flight = 0
    for index, batch in pending:
        futures.add(client.submit(_dask_task, index, batch, hypers_json, output, invariants, skip_bad, pure=False))
        in_flight += 1
        while in_flight >= window:
            _, n_atoms, n_structures = next(futures).result()
            _count_written(n_structures, n_atoms, progress, summary)
            in_flight -= 1
    for future in futures:
        _, n_atoms, n_structures = future.result()
        _count_written(n_structures, n_atoms, progress, summary)


def _write_single_file(output, kind, results, calculator):
    hypers = calculator.hypers
    arrays = {name: np.concatenate([r["arrays"][name] for r in results]) for name in results[0]["arrays"]}
    skipped = [item for r in results for item in r["skipped"]]
    try:
        if kind == ".npz":
            np.savez(
                output,
                **arrays,
                neighbor_types=np.array(hypers.neighbor_types),
                metadata=np.array(
                    json.dumps(
                        {
                            "gplode_version": __version__,
                            "backend": calculator.backend,
                            "hypers": hypers.to_dict(),
                            "skipped": skipped,
                        }
                    )
                ),
            )
        else:
            import metatensor

            features = Features(
                arrays["values"],
                hypers.neighbor_types,
                arrays["center_type"],
                arrays["system"],
                arrays["atom"],
                hypers,
                calculator.backend,
            )
            metatensor.save(output, features.to_tensormap())
    except OSError as error:
        raise DatasetError(f"{output}: cannot write ({error})") from error
