"""The k-sphere's vectors: :func:`gplode.lib.kvectors.selected_kpoints` against the whole grid."""

import numpy as np
import pytest

from gplode.lib.kvectors import SHELL_TOLERANCE, selected_kpoints, sphere_shape


def grid_kpoints(cells, shape, k_cutoff):
    """The definition, point by point over the whole half-spectrum grid of each cell: its
    structure, flat position, frequencies and |k|² (the same term-by-term metric sum)."""
    out = []
    cutoffs = np.broadcast_to(np.asarray(k_cutoff, dtype=float), (len(cells),))
    half = shape[2] // 2 + 1
    for c, (cell, k_c) in enumerate(zip(cells, cutoffs, strict=True)):
        recip = 2.0 * np.pi * np.linalg.inv(cell).T
        metric = recip @ recip.T
        for i1, m1 in enumerate(np.fft.fftfreq(shape[0], 1.0 / shape[0])):
            for i2, m2 in enumerate(np.fft.fftfreq(shape[1], 1.0 / shape[1])):
                for m3 in range(half):
                    if 2 * abs(m1) >= shape[0] or 2 * abs(m2) >= shape[1] or 2 * m3 >= shape[2]:
                        continue  # the Nyquist planes
                    f = (m1, m2, float(m3))
                    pairs = [(i, j) for i in range(3) for j in range(i, 3)]
                    norm2 = sum(metric[i, j] * f[i] * f[j] * (1 if i == j else 2) for i, j in pairs)
                    if 0 < norm2 < k_c**2 * (1.0 - SHELL_TOLERANCE):
                        out.append((c, (i1 * shape[1] + i2) * half + m3, f, norm2))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_selected_kpoints_are_the_grid_points_inside_the_sphere(seed):
    """Skewed triclinic and cubic cells, one radius or one per cell, the direct sum's smallest
    grid and a coarse user mesh whose Nyquist planes cut the sphere: the same points in the same
    order, and the same |k|² to the last bit."""
    rng = np.random.default_rng(seed)
    cells = np.stack([np.diag(rng.uniform(3, 9, 3)) + rng.uniform(-2, 2, (3, 3)) for _ in range(3)] + [5.0 * np.eye(3)])
    k_cutoff = rng.uniform(1.5, 3.0, len(cells)) if seed % 2 else 2.5
    for shape in (sphere_shape(cells, k_cutoff), (6, 5, 7)):
        points = selected_kpoints(cells, shape, k_cutoff)
        expected = grid_kpoints(cells, shape, k_cutoff)
        assert len(expected) > 20
        assert points.structure.tolist() == [e[0] for e in expected]
        assert points.position.tolist() == [e[1] for e in expected]
        assert points.frequencies.tolist() == [list(e[2]) for e in expected]
        assert points.norm2.tolist() == [e[3] for e in expected]  # bitwise
        recip = 2.0 * np.pi * np.linalg.inv(cells).transpose(0, 2, 1)
        k = np.einsum("ki,kij->kj", points.frequencies, recip[points.structure])
        np.testing.assert_array_equal(points.k, k)


def test_a_shell_on_the_sphere_is_dropped_whole_and_an_empty_sphere_is_empty():
    """k_c = 4π on a 1 Å cubic cell: the six vectors |k| = 2π·2 lie on the sphere and none is
    kept (round-off must not keep part of the shell); below the first shell nothing is."""
    cell = np.eye(3)[None]
    points = selected_kpoints(cell, sphere_shape(cell, 4 * np.pi), 4 * np.pi)
    norms = np.sqrt(points.norm2)
    assert np.all(norms < 4 * np.pi * (1 - 1e-12))
    assert (points.frequencies**2).sum(axis=1).max() == 3  # |m|² = 4 lies on the sphere
    # the half spectrum of |m|² = 1, 2, 3: m₃ > 0 (1 + 4 + 4, each for ±k) and the m₃ = 0 plane (4 + 4)
    assert len(norms) == 17
    empty = selected_kpoints(cell, sphere_shape(cell, 1.0), 1.0)
    assert empty.structure.size == 0 and empty.frequencies.shape == (0, 3) and empty.k.shape == (0, 3)
