"""Stores under stress: concurrent writers, interrupted runs, Ctrl-C, single-file outputs,
coincident atoms."""

import os
import signal
import subprocess

import ase
import ase.io
import numpy as np
import pytest
from dataset_helpers import HYPERS, _frames, _same_store, featurize_command, wait_for_chunks
from peers import import_peer

import gplode
from gplode.io.dataset import DatasetError, FeatureStore, featurize_dataset, load_features
from gplode.systems import COINCIDENT_DISTANCE

import_peer("zarr")


def _run(inputs, output, **kwargs):
    kwargs.setdefault("batch_size", 5)
    return featurize_dataset(inputs, gplode.LodeCalculator(**HYPERS), output, **kwargs)


def test_second_writer_is_refused_while_a_run_holds_the_store(tmp_path):
    out = tmp_path / "out.zarr"
    _run(_frames(6), out)
    holder = FeatureStore(out, FeatureStore(out).metadata)  # what a running featurize holds
    try:
        with pytest.raises(
            DatasetError, match=rf"out.zarr: store is being written by another run \(pid {os.getpid()}\)"
        ):
            _run(_frames(6), out)
        with pytest.raises(DatasetError, match="out.zarr: store is being written by another run"):
            _run(_frames(6), out, batch_size=3)  # refused before the settings are compared
    finally:
        holder.close()
    assert _run(_frames(6), out)["chunks_resumed"] == 2  # free again


@pytest.mark.slow
def test_concurrent_writers_in_two_processes(tmp_path):
    """A second writer (this process) is refused while a featurize run (a subprocess) writes."""
    path = tmp_path / "data.extxyz"
    ase.io.write(path, _frames(320, seed=4))  # seconds of work left when the second writer starts
    out = tmp_path / "out.zarr"
    first = subprocess.Popen(featurize_command(path, out, "--quiet"), stdout=subprocess.DEVNULL)
    try:
        wait_for_chunks(out, 1, first)
        with pytest.raises(DatasetError) as info:
            _run(path, out, batch_size=4)
    finally:
        assert first.wait(timeout=300) == 0
    assert str(info.value) == (
        f"{out}: store is being written by another run (pid {first.pid}); "
        "wait for it to finish or use another output path"
    )
    features, _ = load_features(out)  # complete, and all of the first run's
    np.testing.assert_array_equal(np.unique(features.system), np.arange(320))


def test_interrupted_store_says_how_much_is_complete(tmp_path):
    frames = _frames(12)
    frames[7] = ase.Atoms(cell=np.eye(3) * 4, pbc=True)  # no atoms: the run stops in chunk 1
    out = tmp_path / "out.zarr"
    with pytest.raises(DatasetError, match=r"structure 7 \(0-based\): structure has no atoms"):
        _run(frames, out)
    with pytest.raises(
        DatasetError,
        match=r"out.zarr: feature store is incomplete \(1 of 3 chunks, 5 of 12 structures\); re-run the same "
        r"featurize command to finish it, or load it with partial=True",
    ):
        load_features(out)
    features, skipped = load_features(out, partial=True)
    np.testing.assert_array_equal(np.unique(features.system), np.arange(5))
    assert skipped == []


def test_interrupted_store_being_written_says_so(tmp_path):
    out = tmp_path / "out.zarr"
    _run(_frames(12), out)
    root = import_peer("zarr").open_group(str(out), mode="a")
    root[FeatureStore.chunk_name(2)].attrs["complete"] = False
    holder = FeatureStore(out, FeatureStore(out).metadata)
    try:
        with pytest.raises(
            DatasetError, match=r"incomplete \(2 of 3 chunks, 10 of 12 structures\) and is being written"
        ):
            load_features(out)
    finally:
        holder.close()


def test_chunk_rewrite_replaces_a_partial_chunk(tmp_path):
    """A chunk left half-written (other arrays, no complete flag) is rewritten from scratch."""
    out = tmp_path / "out.zarr"
    _run(_frames(10), out, invariants=False)
    store = FeatureStore(out, writable=True)
    rows = store.chunk_counts(1)[0]
    stale = {"arrays": {"values": np.ones((3, 2, 9, 3)), "power_spectrum": np.ones((3, 4))}, "skipped": []}
    store.write_chunk(1, stale)
    store.root[FeatureStore.chunk_name(1)].attrs["complete"] = False
    assert _run(_frames(10), out)["chunks_written"] == 1
    group = FeatureStore(out).root[FeatureStore.chunk_name(1)]
    assert "power_spectrum" not in group and group["values"].shape == (rows, 2, 9, 3)


@pytest.mark.slow
def test_ctrl_c_exits_cleanly_and_the_store_resumes(tmp_path):
    path = tmp_path / "data.extxyz"
    ase.io.write(path, _frames(160, seed=5))
    reference = tmp_path / "reference.zarr"
    subprocess.run(featurize_command(path, reference, "--quiet"), check=True, stdout=subprocess.DEVNULL)
    out = tmp_path / "out.zarr"
    process = subprocess.Popen(featurize_command(path, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_chunks(out, 2, process)
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stdout == ""
    assert stderr.splitlines()[-1] == (
        "gplode: interrupted; its complete chunks are kept: run the same command again to resume"
    )
    assert 2 <= len(FeatureStore(out).completed()) < 40
    subprocess.run(featurize_command(path, out, "--quiet"), check=True, stdout=subprocess.DEVNULL)
    _same_store(reference, out)


def test_npz_is_not_overwritten_with_other_settings_or_inputs(tmp_path):
    out = tmp_path / "out.npz"
    _run(_frames(6), out)
    written = out.read_bytes()
    with pytest.raises(
        DatasetError, match=r"out.npz: existing file was written with different settings \(hypers.exponent 1.0 → 2.0\)"
    ):
        featurize_dataset(_frames(6), gplode.LodeCalculator(**dict(HYPERS, exponent=2.0)), out, batch_size=5)
    with pytest.raises(DatasetError, match=r"out.npz: existing file was made from different inputs \(6 → 7 structures"):
        _run(_frames(7), out)
    assert out.read_bytes() == written
    assert _run(_frames(6), out)["stored"] == 6  # the same settings and inputs: written again
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, values=np.zeros(3))
    with pytest.raises(DatasetError, match=r"foreign.npz: not a gplode feature file \(KeyError"):
        _run(_frames(6), foreign)
    import_peer("metatensor")
    (tmp_path / "foreign.mts").write_text("not a TensorMap")
    with pytest.raises(DatasetError, match=r"foreign.mts: not a gplode feature file \(MetatensorError"):
        load_features(tmp_path / "foreign.mts")
    with pytest.raises(DatasetError, match=r"foreign.txt: not a feature output"):
        (tmp_path / "foreign.txt").write_text("")
        load_features(tmp_path / "foreign.txt")


def test_single_file_outputs_are_checked_before_computing(tmp_path, monkeypatch):
    calc = gplode.LodeCalculator(**HYPERS)
    monkeypatch.setattr(gplode.LodeCalculator, "compute", lambda *args: pytest.fail("computed"))
    for name in ("missing/o.npz", "missing/o.mts"):
        with pytest.raises(DatasetError, match=rf"{name}: cannot write \(.*missing is not a directory\)"):
            featurize_dataset(_frames(3), calc, tmp_path / name)
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(DatasetError, match=r"dir.npz: cannot write \(exists and is not a file\)"):
        featurize_dataset(_frames(3), calc, tmp_path / "dir.npz")
    import_peer("metatensor")
    with pytest.raises(DatasetError, match="o.mts: .mts files hold the spherical expansion only"):
        featurize_dataset(_frames(3), calc, tmp_path / "o.mts", invariants=True)
    assert sorted(os.listdir(tmp_path)) == ["dir.npz"]  # no probe or temporary file left


def _with_bad_structures():
    frames = _frames(9)
    frames[4].positions[1] = frames[4].positions[0] + frames[4].cell[0]  # a periodic image of atom 0
    frames[7] = ase.Atoms(cell=np.eye(3) * 4, pbc=True)
    return frames


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_npz_and_mts_load_like_the_store(tmp_path, dtype):
    metatensor = import_peer("metatensor")  # noqa: F841 - .mts needs it
    frames = _with_bad_structures()
    calc = gplode.LodeCalculator(**dict(HYPERS, dtype=dtype))
    stores = {}
    for kind in (".zarr", ".npz", ".mts"):
        featurize_dataset(frames, calc, tmp_path / f"out{kind}", batch_size=4, skip_bad=True, invariants=kind != ".mts")
        stores[kind] = load_features(tmp_path / f"out{kind}")
    features, skipped = stores[".zarr"]
    assert [index for index, _ in skipped] == [4, 7] and features.values.dtype == dtype
    for kind in (".npz", ".mts"):
        other, other_skipped = stores[kind]
        assert other_skipped == skipped and other.values.dtype == dtype
        np.testing.assert_array_equal(other.values, features.values)
        for name in ("system", "atom", "center_types", "neighbor_types"):
            np.testing.assert_array_equal(getattr(other, name), getattr(features, name))
        assert other.hypers == features.hypers and other.backend == features.backend
    *_, from_zarr = load_features(tmp_path / "out.zarr", power_spectrum=True)
    *_, from_npz = load_features(tmp_path / "out.npz", power_spectrum=True)
    np.testing.assert_array_equal(from_npz, from_zarr)
    assert from_zarr.shape == (len(features.values), 2 * 3 * 2 * 3 * 3)
    with pytest.raises(DatasetError, match=r"out.mts: stored without invariants .*features.power_spectrum\(\)"):
        load_features(tmp_path / "out.mts", power_spectrum=True)
    with pytest.raises(DatasetError, match="nothing.npz: no such feature store or file"):
        load_features(tmp_path / "nothing.npz")


@pytest.mark.parametrize(
    "build, pair",
    [
        (lambda: ase.Atoms("NaClNa", positions=[[0, 0, 0], [1, 1, 1], [0, 0, 0]]), (0, 2)),  # free space
        # periodic: the same position modulo the lattice, in a skewed cell, up to round-off
        (
            lambda: ase.Atoms(
                "NaCl",
                positions=[[0.1, 0, 0], [5.1 + 1.5, 3.9, 1e-12]],
                cell=[[5, 0, 0], [1.5, 3.9, 0], [0, 0.7, 4.2]],
                pbc=True,
            ),
            (0, 1),
        ),
        (
            lambda: ase.Atoms(
                "NaClCl", positions=[[0, 0, 0], [2, 2, 2], [4 - 1e-9, 4, 0]], cell=np.eye(3) * 4, pbc=True
            ),
            (0, 2),
        ),
    ],
)
def test_coincident_atoms_are_invalid_structures(tmp_path, build, pair):
    frames = _frames(3)
    frames.insert(1, build())
    path = tmp_path / "bad.extxyz"
    ase.io.write(path, frames)
    message = rf"^file .*bad.extxyz, structure 1 \(0-based\): atoms {pair[0]} and {pair[1]} are at the same position"
    with pytest.raises(DatasetError, match=message):
        _run(path, tmp_path / "o.zarr")
    _run(path, tmp_path / "o.zarr", skip_bad=True)
    features, skipped = load_features(tmp_path / "o.zarr")
    assert [index for index, _ in skipped] == [1]
    np.testing.assert_array_equal(np.unique(features.system), [0, 2, 3])


def test_close_atoms_are_not_coincident():
    from gplode.systems import System, coincident_atoms

    cell = np.array([[5.0, 0, 0], [4.9, 0.3, 0], [0, 0, 4.0]])  # very skewed: a fractional radius covers more
    apart = 10 * COINCIDENT_DISTANCE
    numbers = np.array([11, 17])
    assert coincident_atoms(System(np.array([[0, 0, 0], [apart, 0, 0]]), numbers, cell, True)) is None
    close = np.array([[0, 0, 0], [0.1 * COINCIDENT_DISTANCE, 0, 0]])
    assert coincident_atoms(System(close, numbers, cell, True)) == (0, 1)
    far = np.array([[0, 0, 0], [0, 0, apart]])
    assert coincident_atoms(System(far, numbers, np.zeros((3, 3)), False)) is None
