"""Arbitrary-exponent convolution in k-space: build one channel's spectra and scatter them.

For a channel (species a, l, m), every n and every selected k-point:
G_n(k) = iˡ · prefactor_a(k) · Y_lm(k̂) · Ĩ_nl(|k|), written into the half-spectrum batch
at the k-point's flat position (same result as
:meth:`gplode.devices.CpuDevice.channel_spectra_into`). The prefactor already holds
N_mesh (4π/Ω) v̂_p(k) Q̂_a(k) / K̂_P(k)², so any real exponent p enters only through it.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._adapter import as_triton


@triton.jit
def _channel_spectra_kernel(
    prefactor_ptr,  # (n_k, 2) float: complex prefactor as (re, im)
    ylm_ptr,  # (n_k,) float
    radial_ptr,  # (n_k, n_radial) float
    selected_ptr,  # (n_k,) int64 flat position in the half spectrum
    batch_ptr,  # (n_radial, n_half, 2) float: complex output as (re, im)
    n_k,
    n_radial,
    n_half,
    phase_re,
    phase_im,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    n = tl.program_id(1).to(tl.int64)
    k = pid * BLOCK + tl.arange(0, BLOCK)
    inside = k < n_k
    pre_re = tl.load(prefactor_ptr + 2 * k, mask=inside, other=0.0)
    pre_im = tl.load(prefactor_ptr + 2 * k + 1, mask=inside, other=0.0)
    scale = tl.load(ylm_ptr + k, mask=inside, other=0.0) * tl.load(
        radial_ptr + k * n_radial + n, mask=inside, other=0.0
    )
    destination = tl.load(selected_ptr + k, mask=inside, other=0)
    out = batch_ptr + 2 * (n * n_half + destination)
    tl.store(out, (phase_re * pre_re - phase_im * pre_im) * scale, mask=inside)
    tl.store(out + 1, (phase_re * pre_im + phase_im * pre_re) * scale, mask=inside)


def compile_variants(block: int = 1024):
    """``(kernel, signature, constexprs)`` of every specialisation :func:`channel_spectra_into`
    launches (float32 and float64), for ahead-of-time compilation checks."""
    for real in ("fp32", "fp64"):
        signature = dict.fromkeys(("prefactor_ptr", "ylm_ptr", "radial_ptr"), f"*{real}")
        signature.update(selected_ptr="*i64", batch_ptr=f"*{real}", n_k="i64", n_radial="i64", n_half="i64")
        signature.update(phase_re="fp64", phase_im="fp64", BLOCK="constexpr")
        yield _channel_spectra_kernel, signature, {"BLOCK": block}


def channel_spectra_into(batch, selected, prefactor, radial, ylm, l: int, xp, block: int = 1024):
    """Fill ``batch[:, selected]`` (complex ``(n_radial, n_half)``) with the channel's spectra."""
    n_radial, n_half = batch.shape
    n_k = selected.size
    if n_k == 0:
        return
    phase_re, phase_im = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))[l % 4]  # iˡ
    grid = (triton.cdiv(n_k, block), n_radial)
    _channel_spectra_kernel[grid](
        as_triton(xp.ascontiguousarray(prefactor)),
        as_triton(xp.ascontiguousarray(ylm)),
        as_triton(xp.ascontiguousarray(radial)),
        as_triton(xp.ascontiguousarray(selected.astype(xp.int64))),
        as_triton(batch),
        n_k,
        n_radial,
        n_half,
        phase_re,
        phase_im,
        BLOCK=block,
    )
