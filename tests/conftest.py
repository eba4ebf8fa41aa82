"""Shared pytest configuration (the tests directory is on ``sys.path``, see pyproject).

Triton kernels run through Triton's CPU interpreter in the normal suite: the variable
must be set before any ``@triton.jit`` function is defined, i.e. before
``gplode.kernels`` is imported, hence here. ``GPLODE_TEST_GPU=1`` (for ``tests/gpu`` on a
GPU machine) leaves it unset so the kernels compile for the device.
"""

import os

if os.environ.get("GPLODE_TEST_GPU", "") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")
