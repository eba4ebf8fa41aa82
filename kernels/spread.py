"""Mesh building: scatter every atom's B-spline weights onto its species' density mesh.

Same contract as :meth:`gplode.devices.base.Stages.spread` (after :func:`gplode.lib.bspline.stencil`).
"""

from __future__ import annotations

import math

import triton
import triton.language as tl

from ._adapter import as_triton


@triton.jit
def _spread_kernel(
    indices_ptr,  # (n_atoms * stencil,) int64 flat mesh indices
    weights_ptr,  # (n_atoms * stencil,) float weights
    kind_ptr,  # (n_atoms,) int64 species index; >= n_species: not a neighbour type
    mesh_ptr,  # (n_species * n_points,) float, zero-initialised, accumulated atomically
    n_entries,
    stencil,
    n_points,
    n_species,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    offsets = pid * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n_entries
    kind = tl.load(kind_ptr + offsets // stencil, mask=inside, other=n_species)
    valid = inside & (kind < n_species)
    index = tl.load(indices_ptr + offsets, mask=valid, other=0)
    weight = tl.load(weights_ptr + offsets, mask=valid, other=0.0)
    tl.atomic_add(mesh_ptr + kind * n_points + index, weight, mask=valid)


def compile_variants(block: int = 1024):
    """``(kernel, signature, constexprs)`` of every specialisation :func:`spread` launches
    (float32 and float64 weights), for ahead-of-time compilation checks."""
    for real in ("fp32", "fp64"):
        signature = {"indices_ptr": "*i64", "weights_ptr": f"*{real}", "kind_ptr": "*i64", "mesh_ptr": f"*{real}"}
        signature.update(dict.fromkeys(("n_entries", "stencil", "n_points", "n_species"), "i64"), BLOCK="constexpr")
        yield _spread_kernel, signature, {"BLOCK": block}


def spread(indices, weights, species_index, n_species: int, shape, xp, block: int = 1024):
    """Per-species density meshes ``(n_species, *shape)`` (see :meth:`gplode.devices.base.Stages.spread`).

    :param xp: the array module of the inputs (``cupy`` on a GPU, ``numpy`` in the interpreter)
    """
    n_points = math.prod(shape)
    mesh = xp.zeros(n_species * n_points, dtype=weights.dtype)
    n_entries = indices.size
    if n_entries == 0:
        return mesh.reshape(n_species, *shape)
    grid = (triton.cdiv(n_entries, block),)
    _spread_kernel[grid](
        as_triton(xp.ascontiguousarray(indices.ravel())),
        as_triton(xp.ascontiguousarray(weights.ravel())),
        as_triton(xp.ascontiguousarray(species_index.astype(xp.int64))),
        as_triton(mesh),
        n_entries,
        indices.shape[1],
        n_points,
        n_species,
        BLOCK=block,
    )
    return mesh.reshape(n_species, *shape)
