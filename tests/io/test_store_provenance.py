"""Feature stores record what they were made from; other inputs are refused, never mixed."""

import hashlib
import os
import shutil

import ase.io
import numpy as np
import pytest
from dataset_helpers import HYPERS, _frames
from peers import import_peer

import gplode
from gplode.io.dataset import DatasetError, FeatureStore, _file_record, featurize_dataset, load_features

zarr = import_peer("zarr")


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.extxyz"
    ase.io.write(path, _frames(12))
    return path


def _run(inputs, output, **kwargs):
    return featurize_dataset(inputs, gplode.LodeCalculator(**HYPERS), output, batch_size=5, **kwargs)


def test_store_records_its_input_files(data, tmp_path):
    _run(data, tmp_path / "out.zarr")
    inputs = FeatureStore(tmp_path / "out.zarr").metadata["inputs"]
    (record,) = inputs["files"]
    stat = os.stat(data)
    assert record["path"] == str(data.resolve()) and record["size"] == stat.st_size
    assert record["mtime"] == stat.st_mtime
    assert record["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()  # small: the whole file
    assert inputs["n_structures"] == 12 and len(inputs["structures_sha256"]) == 64


def test_large_file_is_hashed_by_its_first_and_last_mib(tmp_path):
    path = tmp_path / "big.bin"
    content = bytearray(np.random.default_rng(0).integers(0, 256, 3 * 2**20, dtype=np.uint8).tobytes())
    path.write_bytes(bytes(content))
    record = _file_record(str(path))
    assert record["sha256"] == hashlib.sha256(content[: 2**20] + content[-(2**20) :]).hexdigest()
    content[2**20 + 5] ^= 1  # the middle is not hashed (the structures' own hash covers it)
    path.write_bytes(bytes(content))
    assert _file_record(str(path))["sha256"] == record["sha256"]
    content[-1] ^= 1
    path.write_bytes(bytes(content))
    assert _file_record(str(path))["sha256"] != record["sha256"]


def _rewrite(path, frames):
    ase.io.write(path, frames)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda path, tmp: _rewrite(path, _frames(13)), r".*data.extxyz: size \d+ → \d+ bytes; 12 → 13 structures"),
        (lambda path, tmp: _rewrite(path, _frames(12, seed=1)), r".*data.extxyz: (content changed|size \d+ → \d+)"),
        (lambda path, tmp: shutil.copy(path, tmp / "copy.extxyz"), r"input file .*data.extxyz → .*copy.extxyz"),
    ],
)
def test_other_input_files_are_refused_naming_the_difference(data, tmp_path, change, message):
    _run(data, tmp_path / "out.zarr")
    before, _ = load_features(tmp_path / "out.zarr")
    change(data, tmp_path)
    inputs = tmp_path / "copy.extxyz" if (tmp_path / "copy.extxyz").exists() else data
    with pytest.raises(DatasetError, match=rf"out.zarr: existing store was made from different inputs \({message}"):
        _run(inputs, tmp_path / "out.zarr")
    after, _ = load_features(tmp_path / "out.zarr")
    np.testing.assert_array_equal(before.values, after.values)  # the old features are untouched


def test_changed_structures_of_a_large_file_are_refused(data, tmp_path, monkeypatch):
    """Same size, same first and last bytes: the structures' own hash still sees the change."""
    monkeypatch.setattr(gplode.io.dataset, "HASH_BLOCK", 256)  # "large" files from 512 bytes on
    _run(data, tmp_path / "out.zarr")
    text = data.read_text()
    middle = text.index("Na ", len(text) // 2)
    data.write_text(text[:middle] + "Cl" + text[middle + 2 :])  # an atom in the middle changes species
    record = FeatureStore(tmp_path / "out.zarr").metadata["inputs"]["files"][0]
    assert os.path.getsize(data) == record["size"] and _file_record(str(data))["sha256"] == record["sha256"]
    with pytest.raises(DatasetError, match=r"different inputs \(structure contents changed"):
        _run(data, tmp_path / "out.zarr")


def test_touched_file_with_the_same_content_resumes(data, tmp_path):
    _run(data, tmp_path / "out.zarr")
    stat = os.stat(data)
    os.utime(data, (stat.st_atime + 100, stat.st_mtime + 100))
    summary = _run(data, tmp_path / "out.zarr")
    assert summary["chunks_written"] == 0 and summary["chunks_resumed"] == 3
    assert FeatureStore(tmp_path / "out.zarr").metadata["inputs"]["files"][0]["mtime"] == stat.st_mtime + 100


def test_in_memory_structures_are_recorded_by_their_contents(tmp_path):
    frames = _frames(7)
    _run(frames, tmp_path / "out.zarr")
    inputs = FeatureStore(tmp_path / "out.zarr").metadata["inputs"]
    assert inputs["files"] is None and inputs["n_structures"] == 7
    assert _run([atoms.copy() for atoms in frames], tmp_path / "out.zarr")["chunks_resumed"] == 2
    moved = [atoms.copy() for atoms in frames]
    moved[6].positions[0, 0] += 1e-9
    with pytest.raises(DatasetError, match=r"different inputs \(structure contents changed"):
        _run(moved, tmp_path / "out.zarr")
    moved[6].pbc = [True, True, True]
    with pytest.raises(DatasetError, match=r"different inputs \(7 → 6 structures"):
        _run(moved[:6], tmp_path / "out.zarr")
    ase.io.write(tmp_path / "same.extxyz", frames)
    with pytest.raises(DatasetError, match=r"different inputs \(files vs in-memory structures"):
        _run(tmp_path / "same.extxyz", tmp_path / "out.zarr")


def test_run_failing_before_its_first_chunk_leaves_no_store(tmp_path):
    frames = _frames(8)
    frames[1].positions[0] = np.nan
    with pytest.raises(DatasetError, match=r"^structure 1 \(0-based\): position of atom 0 is not finite"):
        _run(frames, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()
    frames[1].positions[0] = 0.0
    frames[6].positions[0] = np.nan  # second chunk: the first one is kept, the run resumable
    with pytest.raises(DatasetError, match=r"^structure 6 \(0-based\)"):
        _run(frames, tmp_path / "out.zarr")
    assert FeatureStore(tmp_path / "out.zarr").completed() == {0}


def test_store_without_complete_chunk_is_empty_and_taken_over(data, tmp_path):
    out = tmp_path / "out.zarr"
    featurize_dataset(data, gplode.LodeCalculator(**dict(HYPERS, exponent=6.0)), out, batch_size=4)
    root = zarr.open_group(str(out), mode="a")
    for name in FeatureStore(out).completed():  # as if killed before the first chunk was complete
        root[FeatureStore.chunk_name(name)].attrs["complete"] = False
    with pytest.raises(DatasetError, match=r"out.zarr: feature store is empty \(no chunk complete\)"):
        load_features(out)
    with pytest.raises(DatasetError, match="is empty"):
        load_features(out, partial=True)
    _run(data, out)  # other settings (exponent, batch size) take it over
    meta = FeatureStore(out).metadata
    assert meta["hypers"]["exponent"] == 1.0 and meta["batch_size"] == 5
    _run(data, tmp_path / "fresh.zarr")
    np.testing.assert_array_equal(load_features(out)[0].values, load_features(tmp_path / "fresh.zarr")[0].values)


def test_foreign_directories_are_not_taken_over(tmp_path):
    (tmp_path / "mine.zarr").mkdir()
    (tmp_path / "mine.zarr" / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="mine.zarr: exists and is not a gplode feature store"):
        _run(_frames(2), tmp_path / "mine.zarr")
    assert os.listdir(tmp_path / "mine.zarr") == ["notes.txt"]
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.attrs["owner"] = "someone else"
    with pytest.raises(DatasetError, match="group.zarr: exists and is not a gplode feature store"):
        _run(_frames(2), tmp_path / "group.zarr")
