"""Dataset featurisation: stores, resume after a kill, bad input, Dask."""

import json
import signal
import subprocess

import ase
import ase.build
import ase.io
import numpy as np
import pytest
from dataset_helpers import HYPERS, _frames, _same_store, featurize_command, wait_for_chunks
from peers import import_peer

import gplode
from gplode.devices import CpuDevice, CudaDevice
from gplode.io.dataset import DatasetError, FeatureStore, featurize_dataset, load_features
from gplode.systems import as_systems

import_peer("zarr")


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "data.extxyz"
    frames = _frames(23)
    ase.io.write(path, frames)
    return path, ase.io.read(path, ":")  # frames as read back (positions rounded by extxyz)


def assert_close_to(actual, expected):
    """Equal to round-off: chunked and one-call batches may differ in the last bits."""
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=1e-13, atol=1e-14 * scale)


def test_zarr_store_matches_direct_computation(dataset, tmp_path):
    path, frames = dataset
    calc = gplode.LodeCalculator(**HYPERS)
    summary = featurize_dataset(path, calc, tmp_path / "out.zarr", batch_size=5, invariants=True)
    assert summary["structures"] == 23 and summary["chunks_written"] == 5
    assert summary["stored"] == 23 and summary["skipped"] == 0 and summary["atoms"] == 112
    features, skipped, power_spectrum = load_features(tmp_path / "out.zarr", power_spectrum=True)
    direct = calc.compute(frames)
    assert_close_to(features.values, direct.values)
    assert_close_to(power_spectrum, direct.power_spectrum().reshape(len(direct.values), -1))
    np.testing.assert_array_equal(features.system, direct.system)
    np.testing.assert_array_equal(features.atom, direct.atom)
    assert skipped == []
    meta = FeatureStore(tmp_path / "out.zarr").metadata
    assert meta["hypers"]["neighbor_types"] == [11, 17] and meta["backend"] == "numpy"
    assert meta["gplode_version"] == gplode.__version__
    # re-running the same command finds every chunk complete
    again = featurize_dataset(path, calc, tmp_path / "out.zarr", batch_size=5, invariants=True)
    assert again["chunks_written"] == 0 and again["chunks_resumed"] == 5
    assert again["stored"] == 23 and again["atoms"] == 112


def test_mismatched_settings_are_refused(dataset, tmp_path):
    path, _ = dataset
    featurize_dataset(path, gplode.LodeCalculator(**HYPERS), tmp_path / "out.zarr", batch_size=5)
    other = gplode.LodeCalculator(**dict(HYPERS, exponent=6.0))
    with pytest.raises(DatasetError, match=r"different settings \(hypers.exponent 1.0 → 6.0\); use a new"):
        featurize_dataset(path, other, tmp_path / "out.zarr", batch_size=5)
    with pytest.raises(DatasetError, match=r"different settings \(batch_size 5 → 4\)"):
        featurize_dataset(path, gplode.LodeCalculator(**HYPERS), tmp_path / "out.zarr", batch_size=4)


def test_foreign_store_is_refused(tmp_path):
    zarr = import_peer("zarr")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(DatasetError, match="not a gplode feature store"):
        load_features(tmp_path / "other.zarr")


def test_npz_and_metatensor_outputs(dataset, tmp_path):
    path, frames = dataset
    calc = gplode.LodeCalculator(**HYPERS)
    featurize_dataset(path, calc, tmp_path / "out.npz", batch_size=10)
    data = np.load(tmp_path / "out.npz")
    assert_close_to(data["values"], calc.compute(frames).values)
    assert json.loads(str(data["metadata"]))["hypers"]["exponent"] == 1.0
    metatensor = import_peer("metatensor")
    featurize_dataset(path, calc, tmp_path / "out.mts", batch_size=10)
    tensor = metatensor.load(tmp_path / "out.mts")
    assert tensor.keys.names == ["o3_lambda", "o3_sigma", "center_type", "neighbor_type"]


@pytest.mark.slow
def test_resume_after_kill_gives_identical_store(tmp_path):
    frames = _frames(240, seed=3)
    path = tmp_path / "big.extxyz"
    ase.io.write(path, frames)
    reference = tmp_path / "reference.zarr"
    subprocess.run(featurize_command(path, reference, "--quiet", batch_size=8), check=True)
    interrupted = tmp_path / "interrupted.zarr"
    process = subprocess.Popen(featurize_command(path, interrupted, "--quiet", batch_size=8))
    try:
        wait_for_chunks(interrupted, 3, process)  # a few chunks complete, then kill hard
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    done = len(FeatureStore(interrupted).completed())
    assert 3 <= done < 30, done  # really interrupted mid-run
    subprocess.run(featurize_command(path, interrupted, "--quiet", batch_size=8), check=True)
    _same_store(reference, interrupted)


@pytest.mark.slow
def test_dask_local_cluster_gives_identical_store(dataset, tmp_path):
    distributed = import_peer("distributed")
    path, _ = dataset
    calc = gplode.LodeCalculator(**HYPERS)
    featurize_dataset(path, calc, tmp_path / "serial.zarr", batch_size=4)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            summary = featurize_dataset(path, calc, tmp_path / "dask.zarr", batch_size=4, client=client)
    assert summary["chunks_written"] == 6
    _same_store(tmp_path / "serial.zarr", tmp_path / "dask.zarr")


def _bad_frames():
    good = _frames(3)
    nan = good[0].copy()
    nan.positions[1, 0] = np.nan
    singular = ase.Atoms("Na", cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True)
    flat_slab = ase.Atoms("Na", cell=[[3, 0, 0], [6, 0, 0], [0, 0, 0]], pbc=[True, True, False])
    return [good[0], nan, good[1], singular, flat_slab, ase.Atoms(cell=np.eye(3) * 4, pbc=True), good[2]]


@pytest.mark.parametrize(
    "index, message",
    [(1, "not finite"), (3, "non-singular cell"), (4, "non-singular periodic lattice"), (5, "no atoms")],
)
def test_bad_structures_stop_with_file_and_index(tmp_path, index, message):
    frames = _bad_frames()
    keep = [0, 2, 6, index]
    with pytest.raises(DatasetError, match=rf"^structure {keep.index(index)} \(0-based\): [^:]*{message}"):
        featurize_dataset([frames[i] for i in keep], gplode.LodeCalculator(**HYPERS), tmp_path / "o.zarr")


def test_skip_bad_records_skipped_structures(tmp_path):
    frames = _bad_frames()
    calc = gplode.LodeCalculator(**HYPERS)
    featurize_dataset(frames, calc, tmp_path / "o.zarr", batch_size=3, skip_bad=True)
    features, skipped = load_features(tmp_path / "o.zarr")
    assert [index for index, _ in skipped] == [1, 3, 4, 5]
    assert "not finite" in skipped[0][1]
    np.testing.assert_array_equal(np.unique(features.system), [0, 2, 6])
    good = calc.compute([frames[0], frames[2], frames[6]])
    np.testing.assert_allclose(features.values, good.values, rtol=1e-12, atol=1e-15)


def test_unreadable_inputs(tmp_path):
    calc = gplode.LodeCalculator(**HYPERS)
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    with pytest.raises(
        DatasetError,
        match=r"file .*empty.extxyz(: no structures in file|, structure 0 \(0-based\): cannot be read \(Empty file)",
    ):
        featurize_dataset(empty, calc, tmp_path / "o.zarr")
    with pytest.raises(DatasetError, match="file .*missing.extxyz: no such file"):
        featurize_dataset(tmp_path / "missing.extxyz", calc, tmp_path / "o.zarr")
    truncated = tmp_path / "truncated.extxyz"
    ase.io.write(truncated, _frames(3))
    lines = truncated.read_text().splitlines()
    truncated.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(DatasetError, match=r"^file .*truncated.extxyz, structure 2 \(0-based\): cannot be read"):
        featurize_dataset(truncated, calc, tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()
    with pytest.raises(DatasetError, match="output must end in"):
        featurize_dataset(_frames(2), calc, tmp_path / "o.txt")


def test_structures_the_calculator_refuses_are_named_and_skippable(tmp_path):
    """A structure too large for the device's memory is refused on its own (found by
    ``check``, nothing recomputed), named in its chunk, and skippable."""
    frames = _frames(5)
    frames[2] = frames[2].repeat((4, 4, 4))  # 128 or 512 atoms, the others 2 or 8
    path = tmp_path / "big.extxyz"
    ase.io.write(path, frames)
    hypers = dict(HYPERS, neighbor_types=[11, 17], route="direct")
    probe = gplode.LodeCalculator(**hypers).pipeline.direct
    needs = [probe.batch_bytes(probe.grow(None, s), 2) for s in as_systems(frames)]
    memory = int(max(needs[:2] + needs[3:]) * 1.5)
    assert needs[2] > memory
    calc = gplode.LodeCalculator(device=CpuDevice(memory=memory), **hypers)  # used as given (not rebuilt)
    with pytest.raises(DatasetError, match=r"^file .*big.extxyz, structure 2 \(0-based\): the direct k-sum of"):
        featurize_dataset(path, calc, tmp_path / "o.zarr", batch_size=5)
    summary = featurize_dataset(path, calc, tmp_path / "o.zarr", batch_size=5, skip_bad=True)
    assert summary["stored"] == 4 and summary["skipped"] == 1
    features, skipped = load_features(tmp_path / "o.zarr")
    assert [index for index, _ in skipped] == [2] and "more than the" in skipped[0][1]
    np.testing.assert_array_equal(np.unique(features.system), [0, 1, 3, 4])


def test_unwritable_output(tmp_path):
    """An output under a regular file cannot be created, even by root."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    calc = gplode.LodeCalculator(**HYPERS)
    with pytest.raises(DatasetError, match="not-a-directory/o.npz: cannot write .*not a directory"):
        featurize_dataset(_frames(2), calc, blocker / "o.npz")
    with pytest.raises(DatasetError, match="not-a-directory/o.zarr: cannot create feature store"):
        featurize_dataset(_frames(2), calc, blocker / "o.zarr")


def test_cli_featurize_with_config_and_exit_codes(dataset, tmp_path, capsys):
    from gplode.io.cli import main

    path, frames = dataset
    config = tmp_path / "hypers.json"
    config.write_text(json.dumps({"exponent": 6.0, "max_radial": 2, "max_angular": 2, "smearing": 1.0}))
    out = tmp_path / "cli.zarr"
    assert (
        main(
            [
                "featurize",
                str(path),
                "-o",
                str(out),
                "--config",
                str(config),
                "--cutoff",
                "3.0",
                "--batch-size",
                "10",
                "--invariants",
            ]
        )
        == 0
    )
    assert "23 structures (23 stored, 0 skipped), 112 atoms" in capsys.readouterr().out
    meta = FeatureStore(out).metadata
    assert meta["hypers"]["exponent"] == 6.0 and meta["hypers"]["cutoff"] == 3.0 and meta["invariants"]
    assert main(["featurize", str(tmp_path / "nope.xyz"), "-o", str(tmp_path / "x.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gplode: error: ") and "nope.xyz: no such file" in err and err.count("\n") == 1
    assert not (tmp_path / "x.zarr").exists()


def test_default_chunk_size_depends_on_the_backend(tmp_path):
    frames = _frames(3)
    calc = gplode.LodeCalculator(**HYPERS)
    featurize_dataset(frames, calc, tmp_path / "cpu.zarr")
    assert FeatureStore(tmp_path / "cpu.zarr").metadata["batch_size"] == 100
    # the CUDA device's chain on NumPy arrays: chunks large enough to batch many structures per kernel
    gpu = gplode.LodeCalculator(device=CudaDevice(xp=np), **dict(HYPERS, backend="gpu"))
    featurize_dataset(frames, gpu, tmp_path / "gpu.zarr")
    assert FeatureStore(tmp_path / "gpu.zarr").metadata["batch_size"] == 2000


def test_free_space_table_build_shows_in_the_progress_line(tmp_path, capsys):
    """The pair table of free-space structures takes seconds for the GTO basis: the
    progress line says so while it is built (once), then counts structures."""
    import ase.build

    molecules = [ase.build.molecule(name) for name in ("H2O", "CH4", "NH3")]
    calc = gplode.LodeCalculator(**dict(HYPERS, radial_basis="gto"))
    featurize_dataset(molecules, calc, tmp_path / "m.zarr", batch_size=2, quiet=False)
    err = capsys.readouterr().err
    assert err.count("tabulating the free-space pair functions (once per calculator): 100 % done") == 1
    assert "3/3 structures" in err
