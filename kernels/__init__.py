"""GPU kernels of gplode (Triton, with CuPy arrays and cuFFT), installed as ``gplode.kernels``.

One module per stage, each with its ``_<stage>_kernel``, the launcher (the signature of the
stage in :class:`gplode.devices.base.Stages`, plus the array module ``xp``) and
``compile_variants()``, the specialisations the launcher uses, which the test suite
compiles ahead of time for sm_90 (H100/H200). :class:`gplode.devices.CudaDevice` calls the
launchers. Nothing here is imported by the CPU code paths.
"""
