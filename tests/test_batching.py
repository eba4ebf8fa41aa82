"""Structures that share a mesh go through the stages together (issue 4).

Same numbers as one structure at a time, one stage call per batch (no per-structure loop
over kernels), batches cut to the memory budget, output in input order — for the NumPy
stages and for the Triton kernels (interpreted on NumPy arrays).
"""

import collections
import sys

import ase
import ase.build
import numpy as np
import pytest
from gplode.kernels.stages import TritonStages

import gplode
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


class _Counting:
    """A stage provider that counts the calls of each stage of the one it wraps."""

    def __init__(self, inner):
        self.inner, self.xp, self.calls = inner, inner.xp, collections.Counter()

    def __getattr__(self, name):
        stage = getattr(self.inner, name)

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return stage(*args, **kwargs)

        return counted


def _calculator(stages="numpy", **kwargs):
    calc = gplode.LodeCalculator(backend="numpy", **dict(HYPERS, **kwargs))
    calc._backend.uses_mesh = lambda *args: True
    if stages == "triton":
        calc._backend.stages = TritonStages(np)
    calc._backend.stages = _Counting(calc._backend.stages)
    return calc


def _one_mesh(calc, frames):
    return {calc._backend.mesh_parameters(s.cell, s.n_atoms) for s in as_systems(frames)}


@pytest.mark.parametrize("stages", ["numpy", pytest.param("triton", marks=pytest.mark.slow)])
@pytest.mark.parametrize("p", [1.0, 6.0])
def test_batch_equals_one_structure_at_a_time(stages, p):
    frames = _family(6, seed=int(p))
    calc = _calculator(stages, exponent=p, neighbor_types=[11, 17, 19])
    assert len(_one_mesh(calc, frames)) == 1
    batched = calc.compute(frames).values
    calls = calc._backend.stages.calls
    # one pass of each per-batch stage for all six structures, one spectra pass, inverse
    # FFT and interpolation per (species, l, m) channel
    n_channels = 3 * (HYPERS["max_angular"] + 1) ** 2
    assert (calls["spread"], calls["rfftn"]) == (1, 1)
    assert calls["irfftn"] == calls["interpolate"] == calls["channel_spectra_into"] == n_channels
    expected = np.concatenate([calc.compute(frame).values for frame in frames])
    np.testing.assert_allclose(batched, expected, atol=1e-13 * np.abs(expected).max())


def test_batch_against_reference():
    frames = _family(5, seed=3)
    calc = _calculator(exponent=1.0, accuracy=1e-6)
    exact = gplode.LodeCalculator(backend="reference", **dict(HYPERS, exponent=1.0, accuracy=1e-13)).compute(frames)
    values = calc.compute(frames).values
    rms = np.sqrt(np.mean(exact.values**2))
    assert np.sqrt(np.mean((values - exact.values) ** 2)) <= 1e-6 * rms


def test_batches_fit_the_memory_budget(monkeypatch):
    frames = _family(7, seed=5)
    calc = _calculator(exponent=1.0)
    expected = calc.compute(frames).values
    backend = calc._backend
    systems = as_systems(frames)
    (params,) = _one_mesh(calc, frames)
    largest = max(backend._memory_bytes([backend._sizes(s, params)], 3, params) for s in systems)
    # room for two structures per batch: the seven go through in four batches
    monkeypatch.setattr(backend, "available_memory", lambda: int(2.5 * largest / backend.MEMORY_FRACTION))
    backend.stages = _Counting(backend.stages.inner)
    values = calc.compute(frames).values
    assert backend.stages.calls["spread"] == 4
    np.testing.assert_allclose(values, expected, atol=1e-14 * np.abs(expected).max())
    # one structure larger than all the memory: a clear error naming it
    monkeypatch.setattr(backend, "available_memory", lambda: int(0.5 * largest))
    with pytest.raises(MemoryError, match=r"of a structure of \d+ atoms \(cell lengths .* Å\) needs about .* MiB"):
        calc.compute(frames)


def test_mixed_routes_keep_the_input_order():
    """Two mesh groups, direct k-sums and a molecule, interleaved: each output row is its own."""
    group_a, group_b = _family(3, seed=1), [a.repeat((2, 1, 1)) for a in _family(2, seed=2)]
    molecule = ase.build.molecule("H2O")
    tiny = ase.Atoms("Na", cell=4.0 * np.eye(3), pbc=True)
    frames = [group_a[0], group_b[0], molecule, group_a[1], tiny, group_b[1], group_a[2]]
    calc = _calculator(exponent=1.0, neighbor_types=[1, 8, 11, 17, 19])
    calc._backend.uses_mesh = lambda system, *args: system.n_atoms > 1
    assert len(_one_mesh(calc, group_a + group_b)) == 2
    features = calc.compute(frames)
    for i, frame in enumerate(frames):
        alone = calc.compute(frame).values
        np.testing.assert_allclose(features.values[features.system == i], alone, atol=1e-13 * np.abs(alone).max())


def test_rounded_shapes_batch_similar_cells_and_stay_accurate():
    """The GPU backend's shape ladder: strained cells share fewer meshes, errors do not grow."""
    frames = _family(6, seed=7)
    for i, frame in enumerate(frames):  # 15–17 Å cells: meshes of 30–40 points per axis
        frame.set_cell((3.0 + 0.05 * i) * frame.cell.array, scale_atoms=True)
    calc = _calculator(exponent=1.0, accuracy=1e-5, interpolation_order=8)
    plain = [calc._backend.mesh_parameters(s.cell, s.n_atoms) for s in as_systems(frames)]
    calc._backend.ROUND_SHAPES = True
    rounded = [calc._backend.mesh_parameters(s.cell, s.n_atoms) for s in as_systems(frames)]
    assert len(set(rounded)) < len(set(plain))
    for r, p in zip(rounded, plain, strict=True):
        assert r.order == p.order and all(r.shape[d] >= p.shape[d] for d in range(3))
    exact = gplode.LodeCalculator(backend="reference", **dict(HYPERS, exponent=1.0, accuracy=1e-13)).compute(frames)
    values = calc.compute(frames).values
    assert np.sqrt(np.mean((values - exact.values) ** 2) / np.mean(exact.values**2)) <= 1e-5


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-13), ("float32", 1e-6)])
@pytest.mark.parametrize("mesh", [True, False], ids=["mesh", "direct"])
def test_gpu_backend_never_mixes_host_and_device_arrays(monkeypatch, mesh, dtype, tolerance):
    """The GPU backend itself (``backend="gpu"``: shape ladder, GPU memory query, batches,
    Triton kernels interpreted, both routes) on a stand-in CuPy as strict as CuPy about
    host/device mixing (tests/strict_device.py): runs, and equals the NumPy backend."""
    import strict_device

    def array_module(array):
        return strict_device.xp if isinstance(array, strict_device.DeviceArray) else np

    for module in ("gplode.splines", "gplode.bspline", "gplode.spherical_harmonics"):
        monkeypatch.setattr(f"{module}.array_module", array_module)
    monkeypatch.setitem(sys.modules, "cupy", strict_device.fake_cupy(free_bytes=2**30))
    monkeypatch.setattr("gplode.gpu_backend.require_gpu", lambda: None)
    frames = _family(4, seed=4)
    hypers = dict(HYPERS, exponent=6.0, neighbor_types=[11, 17, 19], dtype=dtype)
    gpu = gplode.LodeCalculator(**dict(hypers, backend="gpu"))
    assert gpu.backend == "gpu" and gpu._backend.stages.xp is sys.modules["cupy"]
    assert not any(gpu._backend.uses_mesh(s, 3, gpu._backend.mesh_parameters(s.cell)) for s in as_systems(frames))
    gpu._backend.uses_mesh = lambda *args: mesh
    gpu._backend.stages = _Counting(gpu._backend.stages)
    reference = _calculator(**hypers)
    reference._backend.uses_mesh = lambda *args: mesh
    reference._backend.ROUND_SHAPES = True  # the GPU's meshes
    expected = reference.compute(frames).values
    values = gpu.compute(frames).values
    # the four cells share a (rounded) mesh: one batch; the direct route spreads nothing
    assert gpu._backend.stages.calls["spread"] == (1 if mesh else 0)
    assert values.dtype == dtype
    np.testing.assert_allclose(values, expected, atol=tolerance * np.abs(expected).max())


def test_threads_sharing_a_calculator_get_their_own_results():
    """Work buffers are per thread (a shared buffer gave other threads' numbers)."""
    from concurrent.futures import ThreadPoolExecutor

    frames = [[frame] for frame in _family(8, seed=9)]
    calc = gplode.LodeCalculator(backend="numpy", **dict(HYPERS, exponent=1.0, neighbor_types=[11, 17, 19]))
    calc._backend.uses_mesh = lambda *args: False  # the direct sum keeps work buffers
    serial = [calc.compute(f).values for f in frames]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda f: calc.compute(f).values, frames * 3))
    for i, values in enumerate(threaded):
        np.testing.assert_array_equal(values, serial[i % len(frames)])


def test_direct_sum_batches_count_their_padding(monkeypatch):
    """A direct-sum batch is padded to its largest member: its memory estimate is the
    largest member's times the batch size, and batches stay under the budget."""
    small = _family(12, seed=2)
    big = small[0].repeat((3, 3, 3))
    big.set_cell(small[0].cell.array, scale_atoms=True)  # same cell, 27 times the atoms
    frames = small + [big]
    calc = _calculator(exponent=1.0)
    backend = calc._backend
    params = backend.mesh_parameters(small[0].cell.array)
    systems = as_systems(frames)
    sizes = [backend._sizes(s, params) for s in systems]
    largest = backend._memory_bytes([sizes[-1]], 3, params, mesh=False)
    padded = tuple(map(max, *sizes))  # largest atoms, volume (k-points) and grid
    assert backend._memory_bytes(sizes, 3, params, mesh=False) == len(sizes) * backend._memory_bytes(
        [padded], 3, params, mesh=False
    )
    monkeypatch.setattr(backend, "available_memory", lambda: int(3.5 * largest / backend.MEMORY_FRACTION))
    batches = list(backend._batches(list(range(len(systems))), systems, 3, params, mesh=False))
    assert sorted(i for batch in batches for i in batch) == list(range(len(systems)))
    for batch in batches:
        cost = backend._memory_bytes([sizes[i] for i in batch], 3, params, mesh=False)
        assert len(batch) == 1 or cost <= 3.5 * largest
