"""GPU kernels of gplode (Triton, with CuPy arrays and FFTs), installed as ``gplode.kernels``.

The GPU backend is not part of this version yet; this subpackage holds its kernels once
they land. Nothing here is imported by the CPU code paths.
"""
