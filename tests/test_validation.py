"""Bad input gets a clear error naming the problem."""

import re
import sys

import ase
import ase.build
import numpy as np
import pytest

import gplode
from gplode.hypers import LodeHypers
from gplode.systems import as_systems, coincident_atoms


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(exponent=-1.0), ValueError, "exponent must be a finite real >= 0"),
        (dict(exponent=float("nan")), ValueError, "exponent"),
        (dict(exponent=25.0), ValueError, "exponent must be <= 20"),
        (dict(exponent="1"), TypeError, "exponent must be a real number"),
        (dict(smearing=0.0), ValueError, r"smearing must be > 0"),
        (dict(smearing=-1.0), ValueError, "smearing"),
        (dict(cutoff=0.0), ValueError, "cutoff must be > 0"),
        (dict(max_angular=-1), ValueError, r"max_angular must be an integer in \[0, 30\]"),
        (dict(max_radial=2.5), TypeError, "max_radial must be an integer"),
        (dict(max_radial=True), TypeError, "max_radial must be an integer"),
        (dict(radial_basis="bessel"), ValueError, "radial_basis must be one of 'gto', 'monomial'"),
        (dict(backend="cuda"), ValueError, "backend must be one of"),
        (dict(accuracy=0.0), ValueError, "accuracy"),
        (dict(accuracy=0.5), ValueError, r"accuracy must be in \[1e-14, 0.1\]"),
        (dict(accuracy=1e-16, backend="reference"), ValueError, r"accuracy must be in \[1e-14, 0.1\]"),
        (dict(accuracy=1e-300), ValueError, r"accuracy must be in \[1e-14, 0.1\]"),
        (dict(accuracy=1e-12, backend="numpy"), ValueError, "below what backend='numpy' delivers"),
        (dict(interpolation_order=4.0), ValueError, "interpolation_order must be one of"),
        (dict(interpolation_order=5), ValueError, "interpolation_order must be one of"),
        (dict(mesh_spacing=0.3, backend="reference"), ValueError, "mesh_spacing applies to the mesh backends"),
        (dict(interpolation_order=6, backend="reference"), ValueError, "interpolation_order applies to the mesh"),
        (dict(neighbor_types=11), TypeError, "neighbor_types must be a sequence of atomic numbers or None, got int"),
        (dict(neighbor_types="H"), TypeError, "neighbor_types must be a sequence"),
        (dict(dtype=np.float16), ValueError, "dtype must be one of"),
        (dict(dtype="float16"), ValueError, "dtype must be one of"),
        (dict(k_cutoff=-2.0), ValueError, "k_cutoff"),
        (dict(center_atom_weight=float("inf")), ValueError, "center_atom_weight"),
        (dict(neighbor_types=[]), ValueError, "neighbor_types must list at least one"),
        (dict(neighbor_types=[0]), ValueError, "neighbor_types must be an integer in"),
    ],
)
def test_invalid_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        gplode.LodeCalculator(**kwargs)


def test_unknown_option():
    with pytest.raises(TypeError, match="unexpected keyword argument 'exponnet'"):
        gplode.LodeCalculator(exponnet=1.0)
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['exponnet'\]"):
        LodeHypers.from_dict({"exponnet": 1.0})


def test_numpy_dtypes_are_normalised_to_names():
    """A NumPy dtype or scalar type is stored as its name (stores and caches serialise it)."""
    import json

    for dtype in (np.dtype("float32"), np.float32, "float32"):
        hypers = LodeHypers(dtype=dtype)
        assert hypers.dtype == "float32" and type(hypers.dtype) is str
        json.dumps(hypers.to_dict())
    assert LodeHypers(interpolation_order=np.int64(6)).interpolation_order == 6


def test_hypers_round_trip():
    hypers = LodeHypers(exponent=4.5, neighbor_types=(8, 1), k_cutoff=3.0)
    assert hypers.neighbor_types == (1, 8)
    assert LodeHypers.from_dict(hypers.to_dict()) == hypers


def test_unavailable_gpu_is_an_error_not_a_fallback(monkeypatch):
    from gplode.devices import cuda

    monkeypatch.setenv("GPLODE_GPU", "0")
    cuda._probe.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r'backend="gpu" needs an NVIDIA GPU .* disabled by GPLODE_GPU=0'):
            gplode.LodeCalculator(backend="gpu")
        assert gplode.LodeCalculator(backend="auto").backend == "numpy"
    finally:
        cuda._probe.cache_clear()


def test_gpu_probe_needs_a_working_triton_driver(monkeypatch):
    """CuPy and a device are not enough: Triton must be able to launch (Triton 3.6 needs
    PyTorch for that); here CuPy is the strict stand-in and Triton has no GPU driver."""
    import types

    import strict_device

    from gplode.devices import cuda

    cupy = strict_device.fake_cupy(free_bytes=2**30)
    cupy.cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.delenv("GPLODE_GPU", raising=False)
    cuda._probe.cache_clear()
    try:
        assert "Triton has no usable GPU driver" in cuda._probe()
        assert not cuda.gpu_available()
        with pytest.raises(RuntimeError, match="needs PyTorch installed to launch kernels"):
            gplode.LodeCalculator(backend="gpu")
    finally:
        cuda._probe.cache_clear()


CALC = gplode.LodeCalculator(exponent=1.0, max_radial=1, max_angular=1, backend="reference")


def test_empty_structure():
    with pytest.raises(ValueError, match="^structure has no atoms"):  # one structure: no index
        CALC.compute(ase.Atoms())
    with pytest.raises(ValueError, match="frames is empty"):
        CALC.compute([])


def test_non_finite_positions():
    atoms = ase.build.molecule("H2O")
    atoms.positions[1, 2] = np.nan
    with pytest.raises(ValueError, match="frame 1: position of atom 1 is not finite"):
        CALC.compute([ase.build.molecule("H2O"), atoms])


def test_singular_and_missing_cells():
    flat = ase.Atoms("Na", cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True)
    with pytest.raises(ValueError, match="non-singular cell"):
        CALC.compute(flat)
    with pytest.raises(ValueError, match="non-singular cell"):
        CALC.compute(ase.Atoms("Na", pbc=True))  # pbc without a cell


def test_mixed_pbc_is_accepted():
    """Slabs and wires are computed (their non-periodic cell vectors may be zero); positions
    are wrapped along the periodic vectors only."""
    slab = ase.Atoms("NaCl", positions=[[5.0, 0, 0], [0, 0, 9.0]], cell=[[4, 0, 0], [0, 4, 0], [0, 0, 0]])
    slab.pbc = [True, True, False]
    wire = ase.Atoms("Na", positions=[[7.0, 0, 5.0]], cell=[[0, 0, 0], [0, 0, 0], [0, 0, 4]], pbc=[False, False, True])
    (system,) = as_systems(slab)
    assert system.mixed and not system.periodic and not system.free and system.pbc == (True, True, False)
    np.testing.assert_allclose(system.positions, [[1.0, 0, 0], [0, 0, 9.0]])
    np.testing.assert_allclose(as_systems(wire)[0].positions, [[7.0, 0, 1.0]])
    values = CALC.compute([slab, wire]).values
    assert values.shape == (3, 2, 4, 2) and np.isfinite(values).all()
    # atoms one non-periodic cell vector apart are distinct
    apart = ase.Atoms("Na2", positions=[[0, 0, 0], [0, 0, 4.0]], cell=4.0 * np.eye(3), pbc=[True, True, False])
    assert coincident_atoms(as_systems(apart)[0]) is None


@pytest.mark.parametrize(
    "cell, pbc, match",
    [
        ([[3, 0, 0], [6, 0, 0], [0, 0, 5]], [True, True, False], "slab .* needs non-singular periodic lattice vectors"),
        ([[3, 0, 0], [0, 0, 0], [0, 0, 5]], [True, True, False], "slab .* needs non-singular periodic lattice vectors"),
        (
            [[3, 0, 0], [0, 3, 0], [0, 0, 0]],
            [False, False, True],
            "wire .* needs non-singular periodic lattice vectors",
        ),
        (
            [[3, 0, 0], [0, 3, np.inf], [0, 0, 0]],
            [True, True, False],
            "periodic lattice vectors of the slab .* not finite",
        ),
    ],
)
def test_bad_mixed_cells(cell, pbc, match):
    with pytest.raises(ValueError, match=match):
        CALC.compute(ase.Atoms("Na", cell=cell, pbc=pbc))


def test_coincident_atoms_in_a_slab():
    """Two atoms one periodic lattice vector apart are the same atom twice."""
    atoms = ase.Atoms("Na2", positions=[[0, 0, 1.0], [3.0, 0, 1.0]], cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]])
    atoms.pbc = [True, True, False]
    with pytest.raises(ValueError, match="atoms 0 and 1 are at the same position .*periodic images included"):
        CALC.compute(atoms)


@pytest.mark.parametrize("all_pairs", [10**6, 1], ids=["all-pairs", "k-d-tree"])
def test_coincident_atoms_both_searches(monkeypatch, all_pairs):
    """Small structures compare every pair, large ones go through a k-d tree: both find the
    same first pair (periodic images across a skewed cell, a slab's periodic vectors, free
    space) and none where atoms are apart, here forced on the same structures."""
    monkeypatch.setattr(gplode.systems, "_ALL_PAIRS_ATOMS", all_pairs)
    rng = np.random.default_rng(3)
    skewed = np.array([[4.0, 0, 0], [3.1, 3.5, 0], [1.2, -0.7, 4.4]])
    positions = rng.uniform(0, 1, (12, 3)) @ skewed
    crystal = ase.Atoms("Na12", positions=positions, cell=skewed, pbc=True)
    assert coincident_atoms(as_systems(crystal)[0]) is None
    # on opposite faces of the cell once wrapped: 8e-8 Å apart through the periodic boundary
    crystal.positions[4], crystal.positions[9] = np.array([[1e-8, 0.3, 0.5], [1 - 1e-8, 1.3, -0.5]]) @ skewed
    with pytest.raises(ValueError, match="atoms 4 and 9 are at the same position"):
        as_systems(crystal)
    slab = ase.Atoms("Na3", positions=[[0, 0, 1.0], [1, 1, 1.0], [3.0, 0, 1.0]], cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]])
    slab.pbc = [True, True, False]
    with pytest.raises(ValueError, match="atoms 0 and 2 are at the same position"):
        as_systems(slab)
    apart = ase.Atoms("Na2", positions=[[0, 0, 0], [0, 0, 4.0]], cell=4.0 * np.eye(3), pbc=[True, True, False])
    assert coincident_atoms(as_systems(apart)[0]) is None
    cluster = ase.Atoms("H4", positions=[[0, 0, 0], [1, 0, 0], [1, 0, 2e-7], [0, 0, 0.5]])
    with pytest.raises(ValueError, match="atoms 1 and 2 are at the same position"):
        as_systems(cluster)


def test_wrong_type():
    with pytest.raises(TypeError, match="expected an ase.Atoms, got ndarray"):
        CALC.compute([np.zeros((3, 3))])


def test_coincident_atoms_in_free_space():
    atoms = ase.Atoms("H3", positions=[[0, 0, 0], [1, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="atoms 0 and 2 are at the same position"):
        CALC.compute(atoms)


@pytest.mark.parametrize("backend", ["reference", "numpy"])
def test_coincident_atoms_in_a_crystal_are_refused_not_computed(backend):
    """Two atoms one lattice vector apart are the same atom twice: an error on every backend
    (it used to be computed silently), naming the structure in a list."""
    atoms = ase.Atoms("NaClNa", positions=[[0, 0, 0], [2, 2, 2], [4, 0, 0]], cell=4.0 * np.eye(3), pbc=True)
    calc = gplode.LodeCalculator(exponent=1.0, max_radial=1, max_angular=1, backend=backend)
    with pytest.raises(ValueError, match=r"^frame 1: atoms 0 and 2 are at the same position .*periodic images"):
        calc.compute([ase.build.bulk("NaCl", "rocksalt", a=5.64), atoms])


def test_the_first_invalid_frame_is_named_and_conversion_is_batch_independent():
    """Bulk frames are checked and wrapped all at once, the others one by one: the error
    names the first invalid frame whatever its kind, and a frame's arrays are the same
    numbers alone and among others."""
    good = ase.build.bulk("NaCl", "rocksalt", a=5.64).repeat((2, 1, 1))
    good.rattle(0.3, seed=2)
    twice = ase.Atoms("Na2", positions=[[0, 0, 0], [4, 0, 0]], cell=4.0 * np.eye(3), pbc=True)
    flat = ase.Atoms("Na", cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True)
    nan = ase.Atoms("Na", positions=[[np.nan, 0, 0]], cell=4.0 * np.eye(3), pbc=True)
    slab = ase.Atoms("Na2", positions=[[0, 0, 1.0], [3.0, 0, 1.0]], cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]])
    slab.pbc = [True, True, False]
    cases = [
        ([good, twice, nan], "frame 1: atoms 0 and 1 are at the same position"),
        ([good, nan, twice], "frame 1: position of atom 0 is not finite"),
        ([good, flat, twice], "frame 1: periodic structure needs a non-singular cell"),
        ([good, twice, flat], "frame 1: atoms 0 and 1"),
        ([good, good, slab, flat], "frame 2: atoms 0 and 1"),
        ([good, good, flat, slab], "frame 2: periodic structure needs a non-singular cell"),
        ([twice], "^atoms 0 and 1"),
    ]
    for frames, match in cases:
        with pytest.raises(ValueError, match=match):
            as_systems(frames if len(frames) > 1 else frames[0])
    moved = good.copy()
    moved.translate(2 * good.cell[0] - 3 * good.cell[2])  # wrapped back into the cell
    alone = as_systems(moved)[0]
    among = as_systems([good, moved, ase.build.molecule("H2O")])[1]
    assert np.array_equal(alone.positions, among.positions) and np.array_equal(alone.cell, among.cell)
    np.testing.assert_allclose(alone.positions, as_systems(good)[0].positions, atol=1e-12)


def test_reference_refuses_a_huge_k_sum_before_allocating():
    """A 1000 Å cell at accuracy 1e-6 has ~1.7e9 k-vectors: refused in a moment, with the GiB."""
    import time

    start = time.perf_counter()
    big = ase.Atoms("NaCl", positions=[[0, 0, 0], [500, 500, 500]], cell=np.eye(3) * 1000.0, pbc=True)
    with pytest.raises(
        MemoryError,
        match=r"direct k-sum of a structure of 2 atoms .* needs about [\d.]+ GiB.*use a mesh backend \('numpy'",
    ):
        CALC.compute(big)
    tiny_smearing = gplode.LodeCalculator(smearing=1e-3, max_radial=1, max_angular=1, backend="reference")
    with pytest.raises(MemoryError, match="raise `accuracy` or `smearing`"):
        tiny_smearing.compute(ase.build.bulk("NaCl", "rocksalt", a=5.64))
    assert time.perf_counter() - start < 2.0


def test_reference_refuses_hours_of_work(monkeypatch):
    from gplode.devices import CpuDevice
    from gplode.methods.direct import MAX_WORK

    rng = np.random.default_rng(0)
    n = 20_000
    crowd = ase.Atoms(f"Na{n}", positions=rng.uniform(0, 100, (n, 3)), cell=np.eye(3) * 100.0, pbc=True)
    calc = gplode.LodeCalculator(max_radial=7, max_angular=6, backend="reference", device=CpuDevice(memory=2**50))
    with pytest.raises(ValueError, match=re.escape(f"h): more than the limit of {MAX_WORK:.0e}")):
        calc.compute(crowd)


def test_validated_systems_pass_through():
    """The dataset path validates each structure once and hands the systems to compute()."""
    from gplode.systems import as_systems

    (system,) = as_systems(ase.build.bulk("NaCl", "rocksalt", a=5.64))
    assert as_systems(system)[0] is system and as_systems([system, system])[1] is system
    np.testing.assert_array_equal(
        CALC.compute(system).values, CALC.compute(ase.build.bulk("NaCl", "rocksalt", a=5.64)).values
    )


def test_size_refusals_name_the_option_that_helps():
    """With an explicit k_cutoff, raising the accuracy changes nothing: the advice says so;
    a fast backend forced onto the direct sum is told about route=."""
    big = ase.Atoms("NaCl", positions=[[0, 0, 0], [500, 500, 500]], cell=np.eye(3) * 1000.0, pbc=True)
    with pytest.raises(MemoryError, match=r"available; lower `k_cutoff`, or use a mesh backend"):
        gplode.LodeCalculator(max_radial=1, max_angular=1, backend="reference", k_cutoff=6.0).compute(big)
    with pytest.raises(MemoryError, match=r"available; raise `accuracy` or `smearing`, or use route='auto' or 'mesh'"):
        gplode.LodeCalculator(max_radial=1, max_angular=1, backend="numpy", route="direct").compute(big)
    with pytest.raises(
        MemoryError, match=r"the mesh .* available; raise `accuracy` or `smearing`, or raise `mesh_spacing`"
    ):
        gplode.LodeCalculator(max_radial=1, max_angular=1, backend="numpy").compute(big)  # auto: the mesh, too big too


def test_device_options_are_validated():
    from gplode.devices import CpuDevice

    with pytest.raises(ValueError, match="memory must be a positive number of bytes or None, got '1GB'"):
        CpuDevice(memory="1GB")
    with pytest.raises(ValueError, match="max_batch_bytes must be a positive number"):
        CpuDevice(max_batch_bytes=-1)


def test_check_raises_what_compute_would_without_computing(monkeypatch):
    from gplode.methods.direct import DirectKSum

    big = ase.Atoms("NaCl", positions=[[0, 0, 0], [500, 500, 500]], cell=np.eye(3) * 1000.0, pbc=True)
    monkeypatch.setattr(DirectKSum, "compute", lambda *args: pytest.fail("computed"))
    with pytest.raises(MemoryError, match="direct k-sum of a structure of 2 atoms"):
        CALC.check([ase.build.bulk("NaCl", "rocksalt", a=5.64), big])
    CALC.check(ase.build.bulk("NaCl", "rocksalt", a=5.64))  # fine: nothing raised, nothing computed
    with pytest.raises(ValueError, match="^frame 1: structure has no atoms"):
        CALC.check([big, ase.Atoms()])
