"""Spherical-harmonic projection, last step: gather channel meshes at the atoms.

c[mesh, atom] = Σ_s weights[atom, s] · meshes[mesh, indices[atom, s]], the B-spline
interpolation of :meth:`gplode.devices.CpuDevice.interpolate` (one program per block of atoms and
mesh; the stencil is walked in tiles of ``BLOCK_STENCIL``).
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._adapter import as_triton


@triton.jit
def _interpolate_kernel(
    meshes_ptr,  # (n_meshes, n_points) float
    indices_ptr,  # (n_atoms, STENCIL) int64
    weights_ptr,  # (n_atoms, STENCIL) float
    out_ptr,  # (n_meshes, n_atoms) float
    n_atoms,
    n_points,
    STENCIL: tl.constexpr,
    BLOCK_ATOMS: tl.constexpr,
    BLOCK_STENCIL: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    mesh = tl.program_id(1).to(tl.int64)
    atoms = pid * BLOCK_ATOMS + tl.arange(0, BLOCK_ATOMS)
    atom_mask = atoms < n_atoms
    accumulator = tl.zeros((BLOCK_ATOMS,), dtype=weights_ptr.dtype.element_ty)
    for start in range(0, STENCIL, BLOCK_STENCIL):
        s = start + tl.arange(0, BLOCK_STENCIL)
        mask = atom_mask[:, None] & (s[None, :] < STENCIL)
        offsets = atoms[:, None] * STENCIL + s[None, :]
        index = tl.load(indices_ptr + offsets, mask=mask, other=0)
        weight = tl.load(weights_ptr + offsets, mask=mask, other=0.0)
        value = tl.load(meshes_ptr + mesh * n_points + index, mask=mask, other=0.0)
        accumulator += tl.sum(weight * value, axis=1)
    tl.store(out_ptr + mesh * n_atoms + atoms, accumulator, mask=atom_mask)


def compile_variants(block_atoms: int = 32, block_stencil: int = 64):
    """``(kernel, signature, constexprs)`` of every specialisation :func:`interpolate`
    launches (float32 and float64, every B-spline order), for ahead-of-time compilation checks."""
    from gplode.lib.bspline import ORDERS

    for real in ("fp32", "fp64"):
        for order in ORDERS:
            signature = {"meshes_ptr": f"*{real}", "indices_ptr": "*i64", "weights_ptr": f"*{real}"}
            signature.update(out_ptr=f"*{real}", n_atoms="i64", n_points="i64")
            signature.update(dict.fromkeys(("STENCIL", "BLOCK_ATOMS", "BLOCK_STENCIL"), "constexpr"))
            stencil = order**3
            constexprs = {
                "STENCIL": stencil,
                "BLOCK_ATOMS": block_atoms,
                "BLOCK_STENCIL": min(block_stencil, triton.next_power_of_2(stencil)),
            }
            yield _interpolate_kernel, signature, constexprs


def interpolate(meshes, plan, xp, block_atoms: int = 32, block_stencil: int = 64):
    """Values of ``meshes`` ``(n_meshes, ...)`` at the atoms: ``(n_meshes, n_atoms)``.

    :param plan: ``(indices, weights)`` of the stencils, ``(n_atoms, P**3)`` each
    """
    indices, weights = plan
    if meshes.dtype != weights.dtype:  # the compiled kernel accumulates in one type
        raise TypeError(f"meshes ({meshes.dtype}) and weights ({weights.dtype}) must have the same dtype")
    n_meshes = meshes.shape[0]
    n_atoms, stencil = indices.shape
    flat = xp.ascontiguousarray(meshes.reshape(n_meshes, -1))
    out = xp.zeros((n_meshes, n_atoms), dtype=weights.dtype)
    if n_atoms == 0 or n_meshes == 0:
        return out
    grid = (triton.cdiv(n_atoms, block_atoms), n_meshes)
    _interpolate_kernel[grid](
        as_triton(flat),
        as_triton(xp.ascontiguousarray(indices)),
        as_triton(xp.ascontiguousarray(weights)),
        as_triton(out),
        n_atoms,
        flat.shape[1],
        STENCIL=stencil,
        BLOCK_ATOMS=block_atoms,
        BLOCK_STENCIL=min(block_stencil, triton.next_power_of_2(stencil)),
    )
    return out
