"""Structures that share a mesh go through the stages together (issue 4).

Same numbers as one structure at a time, one stage call per batch (no per-structure loop
over kernels), batches cut to the memory budget, output in input order — for the NumPy
stages and for the Triton kernels (interpreted on NumPy arrays).
"""

import collections
import dataclasses
import threading

import ase
import ase.build
import numpy as np
import pytest

import gplode
from gplode.devices import CpuDevice, CudaDevice
from gplode.methods.accuracy import SINGLE_PRECISION_ACCURACY
from gplode.methods.direct import DirectKSum
from gplode.systems import as_systems

HYPERS = dict(smearing=1.0, cutoff=3.0, max_radial=2, max_angular=2, accuracy=1e-3)
CELL = np.array([[5.1, 0.4, 0.0], [0.7, 4.8, 0.3], [-0.2, 0.5, 5.4]])


def _family(n_structures, seed=0):
    """Periodic structures of 1–9 atoms in slightly strained copies of one cell (one mesh)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_structures):
        n_atoms = 1 + (3 * i + seed) % 9
        cell = CELL @ (np.eye(3) + rng.uniform(-0.003, 0.003, (3, 3)))
        symbols = list(rng.choice(["Na", "Cl", "K"], size=n_atoms))
        frames.append(ase.Atoms(symbols, scaled_positions=rng.uniform(size=(n_atoms, 3)), cell=cell, pbc=True))
    return frames


STAGES = (
    "stencil",
    "spread",
    "prepare_interpolation",
    "rfftn",
    "channel_meshes",
    "channel_spectra_into",
    "interpolate",
)


def _counting(device):
    """``device`` with its stage calls counted in ``device.calls``."""
    device.calls = collections.Counter()

    def counted(name, stage):
        def call(*args, **kwargs):
            device.calls[name] += 1
            return stage(*args, **kwargs)

        return call

    for name in STAGES:
        setattr(device, name, counted(name, getattr(device, name)))
    return device


def _calculator(stages="numpy", memory=None, route="mesh", **kwargs):
    """A calculator on the CPU device, or on the CUDA device's chain with NumPy arrays and
    interpreted kernels (``stages="triton"``), its stage calls counted."""
    if stages == "triton":
        device, backend = CudaDevice(xp=np, memory=memory, round_shapes=False), "gpu"
    else:
        device, backend = CpuDevice(memory=memory), "numpy"
    return gplode.LodeCalculator(backend=backend, device=_counting(device), route=route, **dict(HYPERS, **kwargs))


def _one_mesh(calc, frames):
    return {calc.pipeline.mesh.parameters(s.cell, s.n_atoms) for s in as_systems(frames)}


def _planned_meshes(calc, frames, species):
    """The batches ``compute`` makes of ``frames``: members' spheres (Å⁻¹) per mesh (shape, order)."""
    pipeline, species = calc.pipeline, np.array(species)
    systems = pipeline.with_spheres(as_systems(frames), species)
    meshes = collections.defaultdict(list)
    for members, _, params in pipeline.plan(systems, species):
        meshes[params.shape, params.order] += [systems[i].k_cutoff for i in members]
    return meshes


def _bytes(calc, system, params, n_species=3):
    """Memory of ``system`` alone on ``params`` (the mesh method's model), or on the direct sum."""
    method = calc.pipeline.mesh if params is not None else calc.pipeline.direct
    return method.batch_bytes(method.grow(None, system, params), n_species)


@pytest.mark.parametrize("stages", ["numpy", pytest.param("triton", marks=pytest.mark.slow)])
@pytest.mark.parametrize("p", [1.0, 6.0])
def test_batch_equals_one_structure_at_a_time(stages, p):
    frames = _family(6, seed=int(p))
    calc = _calculator(stages, exponent=p, neighbor_types=[11, 17, 19])
    meshes = _planned_meshes(calc, frames, [11, 17, 19])
    # the structures' own spheres: similar cells share a mesh, each summing its own sphere on it
    assert len(meshes) < len(frames) and any(len(set(radii)) > 1 for radii in meshes.values())
    batched = calc.compute(frames).values
    calls = calc.device.calls
    # one pass of each per-batch stage for all the structures of a mesh, one spectra pass, inverse
    # FFT and interpolation per (species, l, m) channel
    n_channels = 3 * (HYPERS["max_angular"] + 1) ** 2
    assert (calls["spread"], calls["rfftn"]) == (len(meshes), len(meshes))
    assert calls["channel_meshes"] == calls["interpolate"] == calls["channel_spectra_into"] == len(meshes) * n_channels
    expected = np.concatenate([calc.compute(frame).values for frame in frames])
    np.testing.assert_allclose(batched, expected, atol=1e-13 * np.abs(expected).max())


def test_batch_against_reference():
    frames = _family(5, seed=3)
    calc = _calculator(exponent=1.0, accuracy=1e-6)
    exact = gplode.LodeCalculator(backend="reference", **dict(HYPERS, exponent=1.0, accuracy=1e-13)).compute(frames)
    values = calc.compute(frames).values
    rms = np.sqrt(np.mean(exact.values**2))
    assert np.sqrt(np.mean((values - exact.values) ** 2)) <= 1e-6 * rms


def test_batches_fit_the_memory_budget():
    frames = _family(7, seed=5)
    one_sphere = dict(exponent=1.0, k_cutoff=4.4)  # one sphere, so that the seven cells share a mesh
    expected = _calculator(**one_sphere).compute(frames).values
    calc = _calculator(**one_sphere)
    (params,) = _one_mesh(calc, frames)
    largest = max(_bytes(calc, s, params) for s in as_systems(frames))
    # room for two structures per batch: the seven go through in four batches
    calc = _calculator(**one_sphere, memory=int(2.5 * largest / CpuDevice.memory_fraction))
    values = calc.compute(frames).values
    assert calc.device.calls["spread"] == 4
    np.testing.assert_allclose(values, expected, atol=1e-14 * np.abs(expected).max())
    # one structure larger than all the memory: a clear error naming it
    calc = _calculator(**one_sphere, memory=int(0.5 * largest))
    with pytest.raises(MemoryError, match=r"of a structure of \d+ atoms \(cell lengths .* Å\) needs about .* MiB"):
        calc.compute(frames)


def test_mixed_routes_keep_the_input_order():
    """Direct k-sums on two k-point grids, a mesh and a molecule, interleaved: each output row is its own."""
    group_a = _family(3, seed=1)
    # 192 atoms: direct (measured 0.017 s against 0.072 s on the mesh); 2,058: the mesh (0.42 s
    # against 0.50 s; at 1,296 atoms both took 0.20 s)
    group_b = [a.repeat(n) for a, n in zip(_family(2, seed=2), ((4, 4, 4), (7, 7, 7)), strict=True)]
    molecule = ase.build.molecule("H2O")
    tiny = ase.Atoms("Na", cell=4.0 * np.eye(3), pbc=True)
    frames = [group_a[0], group_b[0], molecule, group_a[1], tiny, group_b[1], group_a[2]]
    calc = _calculator(exponent=1.0, neighbor_types=[1, 8, 11, 17, 19], route="auto")
    species, periodic = np.array([1, 8, 11, 17, 19]), [0, 1, 3, 4, 5, 6]
    systems = [s for s in as_systems(frames) if s.periodic]
    routes = {}  # the cost model's choice on the structure-aware spheres, as compute makes it
    for members, method, _ in calc.pipeline.plan(calc.pipeline.with_spheres(systems, species), species):
        routes.update({periodic[i]: method.name for i in members})
    assert routes == {0: "direct", 1: "direct", 3: "direct", 4: "direct", 5: "mesh", 6: "direct"}
    features = calc.compute(frames)
    # at this accuracy the direct sums' values run in float32 (SINGLE_PRECISION_ACCURACY), whose
    # sums a batch's padding (and BLAS's threads: batches run two at a time single-threaded)
    # reorders: measured 1.7e-7 of the largest coefficient (float64 batches agree to 1e-14:
    # tests/test_reproducibility.py); the mesh's, in float64, to 1e-13
    assert HYPERS["accuracy"] >= SINGLE_PRECISION_ACCURACY
    for i, frame in enumerate(frames):
        alone = calc.compute(frame).values
        tolerance = 1e-6 if routes.get(i) == "direct" else 1e-13
        np.testing.assert_allclose(
            features.values[features.system == i], alone, rtol=0, atol=tolerance * np.abs(alone).max()
        )


def test_rounded_shapes_batch_similar_cells_and_stay_accurate():
    """The GPU backend's shape ladder: strained cells share fewer meshes, errors do not grow."""
    frames = _family(6, seed=7)
    for i, frame in enumerate(frames):  # 15–17 Å cells: meshes of 30–40 points per axis
        frame.set_cell((3.0 + 0.05 * i) * frame.cell.array, scale_atoms=True)
    calc = _calculator(exponent=1.0, accuracy=1e-5, interpolation_order=8)
    plain = [calc.pipeline.mesh.parameters(s.cell, s.n_atoms) for s in as_systems(frames)]
    hypers = dict(HYPERS, exponent=1.0, accuracy=1e-5, interpolation_order=8)
    calc = gplode.LodeCalculator(backend="numpy", device=CpuDevice(round_shapes=True), **hypers)
    rounded = [calc.pipeline.mesh.parameters(s.cell, s.n_atoms) for s in as_systems(frames)]
    assert len(set(rounded)) < len(set(plain))
    for r, p in zip(rounded, plain, strict=True):
        assert r.order == p.order and all(r.shape[d] >= p.shape[d] for d in range(3))
    exact = gplode.LodeCalculator(backend="reference", **dict(HYPERS, exponent=1.0, accuracy=1e-13)).compute(frames)
    values = calc.compute(frames).values
    assert np.sqrt(np.mean((values - exact.values) ** 2) / np.mean(exact.values**2)) <= 1e-5


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-13), ("float32", 1e-6)])
@pytest.mark.parametrize("route", ["mesh", "direct"])
def test_cuda_device_never_mixes_host_and_device_arrays(route, dtype, tolerance):
    """The CUDA device itself (shape ladder, GPU memory query, batches, Triton kernels
    interpreted, both routes) on a stand-in CuPy as strict as CuPy about host/device mixing
    (tests/strict_device.py): runs, and equals the CPU device on the same meshes."""
    import strict_device

    cupy = strict_device.fake_cupy(free_bytes=2**30)
    frames = _family(4, seed=4)
    hypers = dict(HYPERS, exponent=6.0, neighbor_types=[11, 17, 19], dtype=dtype)
    auto = gplode.LodeCalculator(backend="gpu", device=CudaDevice(xp=cupy), **hypers)
    assert auto.backend == "gpu" and auto.device.xp is cupy
    assert all(
        auto.pipeline.method_for(s, np.array([11, 17, 19]))[0].name == "direct" for s in as_systems(frames)
    )  # GPU cost model
    # the same B-spline order on both devices (their cost models would choose differently)
    forced = dict(interpolation_order=6) if route == "mesh" else dict(route="direct")
    gpu = gplode.LodeCalculator(backend="gpu", device=_counting(CudaDevice(xp=cupy)), **hypers, **forced)
    cpu = gplode.LodeCalculator(backend="numpy", device=CpuDevice(round_shapes=True), **hypers, **forced)
    expected = cpu.compute(frames).values
    values = gpu.compute(frames).values
    # a batch per (rounded) mesh of the structures' spheres; the direct route spreads nothing
    meshes = _planned_meshes(gpu, frames, [11, 17, 19]) if route == "mesh" else {}
    assert len(meshes) < len(frames) and gpu.device.calls["spread"] == len(meshes)
    assert values.dtype == dtype
    np.testing.assert_allclose(values, expected, atol=tolerance * np.abs(expected).max())


def test_threads_sharing_a_calculator_get_their_own_results():
    """Work buffers are per thread (a shared buffer gave other threads' numbers)."""
    from concurrent.futures import ThreadPoolExecutor

    frames = [[frame] for frame in _family(8, seed=9)]
    hypers = dict(HYPERS, exponent=1.0, neighbor_types=[11, 17, 19])
    calc = gplode.LodeCalculator(backend="numpy", route="direct", **hypers)  # the direct sum keeps work buffers
    serial = [calc.compute(f).values for f in frames]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda f: calc.compute(f).values, frames * 3))
    for i, values in enumerate(threaded):
        np.testing.assert_array_equal(values, serial[i % len(frames)])


def test_direct_sum_batches_count_their_padding():
    """A direct-sum batch is padded to its largest member: its memory estimate is the
    largest member's times the batch size, and batches stay under the budget."""
    small = _family(12, seed=2)
    big = small[0].repeat((3, 3, 3))
    big.set_cell(small[0].cell.array, scale_atoms=True)  # same cell, 27 times the atoms
    frames = small + [big]
    systems = as_systems(frames)
    direct = _calculator(exponent=1.0, route="direct").pipeline.direct
    largest = _bytes(_calculator(exponent=1.0, route="direct"), systems[-1], None)
    summary = None
    for system in systems:
        summary = direct.grow(summary, system)
    assert summary[0] == len(systems)
    assert summary[1] == tuple(map(max, *(direct.sizes(s) for s in systems)))  # atoms, k-vectors, lengths
    assert direct.batch_bytes(summary, 3) == len(systems) * direct.batch_bytes((1, summary[1]), 3)
    calc = _calculator(exponent=1.0, route="direct", memory=int(3.5 * largest / CpuDevice.memory_fraction))
    batches = list(calc.pipeline.batches(list(range(len(systems))), systems, 3, calc.pipeline.direct, None))
    assert sorted(i for batch in batches for i in batch) == list(range(len(systems)))
    for batch in batches:
        summary = None
        for i in batch:
            summary = direct.grow(summary, systems[i])
        assert len(batch) == 1 or direct.batch_bytes(summary, 3) <= 3.5 * largest
    np.testing.assert_allclose(
        calc.compute(frames).values,
        _calculator(exponent=1.0, route="direct").compute(frames).values,
        rtol=0,
        atol=1e-14,
    )


def test_direct_batches_count_the_grid_of_their_longest_axes():
    """Slabs with the vacuum along x, y and z: kspace_sum builds one k-point grid holding
    the longest vector of every axis for every member, and the estimate counts that grid
    (it used to count each member's own, much smaller, grid)."""
    from gplode.lib.kvectors import sphere_shape

    cells = [np.diag(np.roll([40.0, 6.0, 6.0], shift)) for shift in range(3)]
    frames = [ase.Atoms("NaCl", positions=[[0, 0, 0], [3, 3, 3]], cell=cell, pbc=True) for cell in cells]
    systems = as_systems(frames)
    direct = _calculator(exponent=1.0, route="direct").pipeline.direct
    summary = None
    for system in systems:
        summary = direct.grow(summary, system)
    grid = np.prod(sphere_shape(np.stack(cells), direct.k_cutoff)) / 2  # per member: 40 Å on every axis
    assert direct.batch_bytes(summary, 2) >= len(systems) * 32 * grid


def test_direct_batches_run_two_at_a_time_within_one_budget(monkeypatch):
    """The CPU device computes two bulk direct-sum batches at once, each within half the batch
    budget (together: what one batch may use), on its batch threads; the results are those of
    the same batches one after the other, bit for bit."""
    frames = _family(8, seed=7)
    calc = _calculator(route="direct", exponent=1.0)
    largest = max(_bytes(calc, s, None) for s in as_systems(frames))
    threads = []
    compute = DirectKSum.compute
    together = threading.Barrier(2, timeout=30)  # the first two batches meet: they run at once

    def recorded(self, systems, species, params=None):
        threads.append((threading.current_thread().name, len(systems)))
        if len(threads) <= 2 and threading.current_thread().name.startswith("gplode-batch"):
            together.wait()
        return compute(self, systems, species, params)

    monkeypatch.setattr(DirectKSum, "compute", recorded)
    budget = 2 * 1.01 * largest  # shared by two batches: the largest structure alone in its batch
    concurrent = gplode.LodeCalculator(
        backend="numpy", device=CpuDevice(max_batch_bytes=budget), route="direct", exponent=1.0, **HYPERS
    )
    assert concurrent.device.batch_budget(shared=True) == pytest.approx(budget / 2)
    values = concurrent.compute(frames).values
    assert len(threads) >= 3 and all(name.startswith("gplode-batch") for name, _ in threads)
    assert len({name for name, _ in threads}) == 2
    one_at_a_time = CpuDevice(max_batch_bytes=budget / 2)
    one_at_a_time.concurrent_batches = 1
    threads.clear()
    serial = gplode.LodeCalculator(backend="numpy", device=one_at_a_time, route="direct", exponent=1.0, **HYPERS)
    np.testing.assert_array_equal(serial.compute(frames).values, values)
    assert all(name == threading.current_thread().name for name, _ in threads)


def test_route_costs_the_direct_sum_over_the_species_present():
    """A rattled 384-atom NaCl cell among six neighbour species: its direct sum runs over two
    species slots, and the cost model counts those two: direct, where costing all six species
    would have chosen the mesh. On a device whose species products dominate the direct sum
    (0.5 ns per term, the CPU's constants before the phases were measured to dominate there),
    so that the species count decides."""
    atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((4, 4, 3))
    atoms.rattle(0.1, seed=1)
    species = np.array([1, 6, 8, 11, 17, 19])
    device = CpuDevice()
    device.costs = dataclasses.replace(device.costs, direct_term=0.5e-9, direct_phase=20e-9, mesh_point=12e-9)
    calc = gplode.LodeCalculator(
        exponent=1.0,
        smearing=1.0,
        cutoff=4.0,
        max_radial=3,
        max_angular=3,
        accuracy=1e-4,
        neighbor_types=species,
        device=device,
    )
    pipeline = calc.pipeline
    (system,) = pipeline.with_spheres(as_systems(atoms), species)
    mesh = pipeline.mesh.cost(system, len(species), pipeline.mesh_for(system, species))
    assert pipeline.direct.cost(system, 2) < mesh < pipeline.direct.cost(system, len(species))
    assert pipeline.method_for(system, species)[0] is pipeline.direct


def test_rows_of_members_are_their_atoms_in_member_order():
    """``Pipeline._atoms_of``: the output rows of the chosen systems' atoms, each system's in
    order, systems in the order given (how the batches' blocks are scattered into the output)."""
    from gplode.methods.pipeline import Pipeline

    rng = np.random.default_rng(3)
    for _ in range(50):
        counts = rng.integers(1, 6, rng.integers(1, 9))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        members = [int(i) for i in rng.permutation(counts.size)[: rng.integers(0, counts.size + 1)]]
        expected = [row for i in members for row in range(offsets[i], offsets[i + 1])]
        rows = Pipeline._atoms_of(members, offsets)
        assert rows.dtype == np.int64
        assert rows.tolist() == expected


def test_chunks_of_a_large_batch_hold_at_most_chunk_points(monkeypatch):
    """A batch whose padded atoms × k-points exceed the device's chunk_points runs in narrower
    chunks (never below K_CHUNK_MIN k-points, never wider than K_CHUNK), with the same
    coefficients as in one chunk, and the memory model counts the narrower chunk."""
    import gplode.methods.direct as direct

    points = CpuDevice.chunk_points
    assert direct.chunk_width(512, 5000, points) == points // 512
    assert direct.chunk_width(10**6, 5000, points) == direct.K_CHUNK_MIN
    assert direct.chunk_width(1, 5000, points) == direct.K_CHUNK
    assert direct.chunk_width(10**6, 5000) == direct.K_CHUNK  # a device without a cap
    assert direct.chunk_width(10**6, 40, points) == 40  # no wider than the k-points there are
    atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=1)
    calc = gplode.LodeCalculator(**dict(HYPERS, accuracy=1e-7))
    whole = calc.compute(atoms).values
    widths = []
    kspace_chunks = direct._PaddedBatch.chunks

    def chunks(self, workspace, phases=False):
        for chunk in kspace_chunks(self, workspace, phases):
            widths.append(chunk.width)
            yield chunk

    monkeypatch.setattr(direct._PaddedBatch, "chunks", chunks)
    monkeypatch.setattr(direct, "K_CHUNK_MIN", 16)
    monkeypatch.setattr(CpuDevice, "chunk_points", 64 * 20)  # 64 atoms: 20 k-points a chunk
    chunked = gplode.LodeCalculator(**dict(HYPERS, accuracy=1e-7)).compute(atoms).values
    assert len(widths) > 3 and max(widths) == 20
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12 * np.abs(whole).max())
    method = calc._pipeline.direct
    system = as_systems(atoms)[0]
    one = method.batch_bytes(method.grow(None, system), 2)
    monkeypatch.setattr(CpuDevice, "chunk_points", None)
    assert method.batch_bytes(method.grow(None, system), 2) > one
