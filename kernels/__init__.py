"""GPU kernels of gplode (Triton, with CuPy arrays and cuFFT), installed as ``gplode.kernels``.

One module per stage, each with its ``_<stage>_kernel``, the launcher (same contract as the
NumPy stage in :mod:`gplode.stages`) and ``compile_variants()``, the specialisations the
launcher uses, which the test suite compiles ahead of time for sm_90 (H100/H200).
:mod:`gplode.kernels.stages` bundles the launchers for :class:`gplode.gpu_backend.GpuBackend`.
Nothing here is imported by the CPU code paths.
"""
