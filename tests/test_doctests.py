"""Run the docstring examples of every gplode module (the installed package)."""

import doctest
import importlib
import pkgutil

import pytest
from peers import import_peer

import gplode

MODULES = ["gplode"] + [m.name for m in pkgutil.walk_packages(gplode.__path__, "gplode.")]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name == "gplode.torch":  # the torch extra
        import_peer("torch")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
