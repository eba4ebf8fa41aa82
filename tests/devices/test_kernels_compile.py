"""Every Triton kernel compiles ahead of time for the H100/H200 target (sm_90, CUDA).

The interpreter (used by the rest of the suite) accepts programs that the compiler rejects
(e.g. a shape that is not a power of 2, a dtype mismatch in ``tl.where``); compiling to a
cubin without a GPU catches those. It runs in a subprocess because ``TRITON_INTERPRET=1``
(set by ``conftest.py``) turns ``@triton.jit`` functions into interpreted ones at import.
"""

import json
import os
import subprocess
import sys

import pytest
from peers import import_peer

SCRIPT = """
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from gplode.kernels import interpolate, spectra, spread

target = GPUTarget("cuda", 90, 32)
compiled = []
for module in (spread, spectra, interpolate):
    variants = list(module.compile_variants())
    for kernel, signature, constexprs in variants if sys.argv[1] == "all" else variants[-1:]:
        binary = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs), target=target)
        assert len(binary.asm["cubin"]) > 1000
        compiled.append([kernel.__name__, signature, constexprs])
print(json.dumps(compiled))
"""


@pytest.mark.parametrize("which", ["one per kernel", pytest.param("all", marks=pytest.mark.slow)])
def test_kernels_compile_for_sm90(which, tmp_path):
    import_peer("triton")
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1")  # a fresh compile; fusion as on a GPU
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, "all" if which == "all" else "one"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    compiled = json.loads(run.stdout)
    names = {name for name, _, _ in compiled}
    assert names == {"_spread_kernel", "_channel_spectra_kernel", "_interpolate_kernel"}
    if which == "all":  # float32 and float64 of each, every B-spline order of the interpolation
        assert len(compiled) == 2 + 2 + 2 * 4
