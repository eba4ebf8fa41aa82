"""Mesh-pipeline stages on the CPU device: B-spline kernel, spreading, interpolation, mesh choice."""

import os

import numpy as np
import pytest
from helpers import half_sphere_kvectors

from gplode.devices import CpuDevice
from gplode.devices.base import Device
from gplode.lib.bspline import ORDERS, bspline_fourier, bspline_stencil
from gplode.lib.kvectors import selected_kpoints, sphere_shape, sphere_shapes
from gplode.methods.mesh import choose_mesh

CPU = CpuDevice()

RNG = np.random.default_rng(4)


@pytest.mark.parametrize("order", ORDERS)
def test_bspline_partition_of_unity_and_centre(order):
    u = RNG.uniform(0, 17, 200)
    indices, weights = bspline_stencil(u, order, 17)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-14)
    assert np.all(weights >= 0) and np.all((indices >= 0) & (indices < 17))
    # the centred kernel reproduces linear functions: Σ_t w_t g_t = u (unwrapped)
    start = np.floor(u).astype(int) - order // 2 + 1
    g = start[:, None] + np.arange(order)[None, :]
    np.testing.assert_allclose((weights * g).sum(axis=1), u, atol=1e-12)


@pytest.mark.parametrize("order", ORDERS)
def test_bspline_fourier_matches_discrete_transform(order):
    """Σ_g K(u - g) e^{-2πi m g/M} = K̂(2πm/M) e^{-2πi m u/M} + aliases (small for m ≪ M)."""
    size, u = 64, 10.3
    indices, weights = bspline_stencil(np.array([u]), order, size)
    m = np.arange(4)
    transform = (weights[0][None, :] * np.exp(-2j * np.pi * m[:, None] * indices[0][None, :] / size)).sum(1)
    expected = bspline_fourier(m, order, size) * np.exp(-2j * np.pi * m * u / size)
    aliasing = 2 * (m / size / (1 - m / size)) ** order  # relative bound of the q = ±1 images
    assert np.all(np.abs(transform - expected) <= 1.5 * aliasing + 1e-15)


def test_spread_and_interpolate_are_adjoint():
    shape, order = (9, 10, 12), 6
    frac = RNG.uniform(size=(7, 3))
    indices, weights = CPU.stencil(frac, shape, order)
    kind = np.array([0, 1, 0, 2, 1, 0, 5])  # type 5 is not a neighbour type: ignored
    meshes = CPU.spread(indices, weights, kind, 3, shape)
    assert meshes.shape == (3, *shape)
    np.testing.assert_allclose(meshes.reshape(3, -1).sum(1), [3, 2, 1], rtol=1e-14)
    field = RNG.normal(size=(2, *shape))
    plan = CPU.prepare_interpolation(indices, weights, int(np.prod(shape)))
    values = CPU.interpolate(field, plan)  # (2, 7)
    # <spread(δ_atom), field> = interpolate(field)[atom]
    for atom in range(7):
        single = CPU.spread(indices[atom : atom + 1], weights[atom : atom + 1], np.zeros(1, int), 1, shape)
        np.testing.assert_allclose((single[0] * field).sum(axis=(1, 2, 3)), values[:, atom], rtol=1e-13)


def test_channel_last_meshes_and_blocked_interpolation_match_the_plain_stages():
    """The CPU's channel-last spectra and meshes, interpolated by row blocks on threads, give the
    generic channel-first stages' values (a batch of two meshes, 600 atoms: three row blocks
    on three cores, two on two), bitwise up to the FFT's and the product's rounding."""
    shape, order, n_channels, n_batch = (10, 12, 9), 6, 4, 2
    n_half = n_batch * shape[0] * shape[1] * (shape[2] // 2 + 1)
    spectra = RNG.normal(size=(n_channels, n_half)) + 1j * RNG.normal(size=(n_channels, n_half))
    work = CPU.channel_spectra(n_channels, n_half, complex)
    assert work.shape == (n_channels, n_half) and work.T.flags.c_contiguous and not work.any()
    work[...] = spectra
    meshes = CPU.channel_meshes(work, shape)
    expected = Device.channel_meshes(CPU, spectra, shape)  # channel-first, one batched irfftn
    assert meshes.shape == expected.shape == (n_channels, n_batch * np.prod(shape))
    np.testing.assert_allclose(meshes, expected, rtol=0, atol=1e-13 * np.abs(expected).max())
    indices, weights = CPU.stencil(RNG.uniform(size=(600, 3)), shape, order)
    indices = indices + RNG.integers(0, n_batch, 600)[:, None] * int(np.prod(shape))  # into the batch
    plan = CPU.prepare_interpolation(indices, weights, n_batch * int(np.prod(shape)))
    assert len(plan[2]) == min(os.cpu_count() or 1, 600 // 256)
    values = CPU.interpolate(meshes, plan)
    direct = np.einsum("is,cis->ci", weights, expected[:, indices])
    np.testing.assert_allclose(values, direct, rtol=0, atol=1e-13 * np.abs(direct).max())
    np.testing.assert_array_equal(CPU.interpolate(np.ascontiguousarray(meshes), plan), values)


def test_interpolation_of_a_plane_wave():
    """A band-limited field is interpolated to the accuracy the aliasing estimate gives."""
    shape, order = (32, 32, 32), 8
    m = np.array([2, -3, 1])
    g = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1)
    field = np.cos(2 * np.pi * (g / np.array(shape)) @ m)
    frac = RNG.uniform(size=(50, 3))
    indices, weights = CPU.stencil(frac, shape, order)
    khat = np.prod([bspline_fourier(mi, order, n) for mi, n in zip(m, shape, strict=True)])
    plan = CPU.prepare_interpolation(indices, weights, int(np.prod(shape)))
    values = CPU.interpolate(field[None], plan)[0] / khat
    np.testing.assert_allclose(values, np.cos(2 * np.pi * frac @ m), atol=1e-7)


def test_selected_kpoints_and_mesh_choice():
    cell = np.array([[6.0, 0.5, 0.0], [0.0, 5.0, 0.3], [0.4, 0.0, 7.0]])
    params = choose_mesh(cell, smearing=0.8, accuracy=1e-6, n_atoms=100, costs=CPU.costs)
    # every k-vector of the sphere is on the mesh below the Nyquist frequency
    nyquist = np.array(params.shape) / 2
    bound = params.k_cutoff * np.linalg.norm(cell, axis=1) / (2 * np.pi)
    assert np.all(bound < nyquist)
    # a batch of two cells: each one's points, with the mirror -k of every point off the
    # m3 = 0 plane (which the half spectrum stands for), are exactly its full k-sphere
    cells = np.stack([cell, 1.1 * cell[::-1]])
    shape = sphere_shape(cells, params.k_cutoff)  # holds both spheres (the mesh is the first cell's)
    points = selected_kpoints(cells, shape, params.k_cutoff)
    for b in range(2):
        mine = points.structure == b
        m = points.frequencies[mine].astype(int)
        np.testing.assert_allclose(points.k[mine], m @ (2 * np.pi * np.linalg.inv(cells[b]).T), atol=1e-12)
        full = {tuple(v) for v in m} | {tuple(-v) for v in m[m[:, 2] > 0]}
        exact = np.round(half_sphere_kvectors(cells[b], params.k_cutoff) @ cells[b].T / (2 * np.pi)).astype(int)
        assert full == {tuple(v) for v in exact} | {tuple(-v) for v in exact}
        # flat positions index the half spectrum (M1, M2, M3//2 + 1)
        half = (shape[0], shape[1], shape[2] // 2 + 1)
        np.testing.assert_array_equal(np.ravel_multi_index(tuple((m % shape).T), half), points.position[mine])
        np.testing.assert_allclose(points.norm2[mine], (points.k[mine] ** 2).sum(axis=1), rtol=1e-13)
    # a tighter accuracy never gives a coarser mesh
    finer = choose_mesh(cell, smearing=0.8, accuracy=1e-9, n_atoms=100, costs=CPU.costs)
    assert finer.n_points >= params.n_points


def test_sphere_shapes_are_each_cells_own_grid():
    """kvectors.sphere_shapes (all cells at once) is each cell's sphere_shape, whose largest is
    the batch's grid, and that grid holds every vector of each cell's own sphere."""
    rng = np.random.default_rng(7)
    cells = np.stack([np.diag(rng.uniform(3.0, 12.0, 3)) + rng.uniform(-1.0, 1.0, (3, 3)) for _ in range(6)])
    k_cutoffs = rng.uniform(1.0, 6.0, 6)
    shapes = sphere_shapes(cells, k_cutoffs)
    assert shapes.dtype == np.int64 and shapes.shape == (6, 3)
    for cell, k_cutoff, shape in zip(cells, k_cutoffs, shapes, strict=True):
        assert tuple(shape) == sphere_shape(cell, k_cutoff)
        m = selected_kpoints(cell[None], tuple(shape), k_cutoff).frequencies.astype(int)
        exact = np.round(half_sphere_kvectors(cell, k_cutoff) @ cell.T / (2 * np.pi)).astype(int)
        assert {tuple(v) for v in m} | {tuple(-v) for v in m[m[:, 2] > 0]} == {tuple(v) for v in exact} | {
            tuple(-v) for v in exact
        }
    assert sphere_shape(cells, k_cutoffs) == tuple(shapes.max(axis=0))


@pytest.mark.parametrize("seed", range(4))
def test_shell_on_the_sphere_is_dropped_whole(seed):
    """k_c = π on a 4 Å cube lies exactly on the |m|² = 4 shell (k = 2π/4 · (±2, 0, 0), …):
    in any orientation the whole shell is dropped, and a k_c a hair larger keeps all of it."""
    from scipy.spatial.transform import Rotation

    cell = Rotation.random(random_state=seed).apply(4.0 * np.eye(3))
    shape = (16, 16, 16)

    def count(k_cutoff):
        points = selected_kpoints(cell[None], shape, k_cutoff)
        m2 = np.sum(points.frequencies**2, axis=1)
        return np.bincount(m2.astype(int), weights=np.where(points.frequencies[:, 2] > 0, 2, 1), minlength=6)

    on_shell, beyond = count(np.pi), count(np.pi * (1 + 1e-8))
    # full-sphere counts per |m|²: 6, 12, 8 vectors at 1, 2, 3; 6 at 4
    np.testing.assert_array_equal(on_shell[:5], [0, 6, 12, 8, 0])
    np.testing.assert_array_equal(beyond[:5], [0, 6, 12, 8, 6])


def test_k_cutoff_on_a_shell_gives_the_features_of_the_open_sphere():
    import ase

    import gplode

    atoms = ase.Atoms("NaCl", scaled_positions=[[0, 0, 0], [0.5, 0.4, 0.3]], cell=4.0 * np.eye(3), pbc=True)
    atoms.rotate(31, (1, 2, 3), rotate_cell=True)
    hypers = dict(exponent=1.0, smearing=0.5, cutoff=2.0, max_radial=2, max_angular=2, backend="reference")
    on_shell = gplode.LodeCalculator(k_cutoff=np.pi, **hypers).compute(atoms).values
    inside = gplode.LodeCalculator(k_cutoff=np.pi * (1 - 1e-6), **hypers).compute(atoms).values
    np.testing.assert_array_equal(on_shell, inside)
