"""Optional peer libraries (featomic, metatensor, Triton) in the tests.

``GPLODE_REQUIRE_PEERS=1`` (set by ``.ci/run``) turns a missing peer into a failure
instead of a skip, so CI can never pass by skipping the comparisons.
"""

import importlib
import os

import pytest

REQUIRE_PEERS = os.environ.get("GPLODE_REQUIRE_PEERS", "") == "1"


def import_peer(name: str):
    """``pytest.importorskip`` for users; a hard import under ``GPLODE_REQUIRE_PEERS=1``."""
    if REQUIRE_PEERS:
        return importlib.import_module(name)
    return pytest.importorskip(name)
