"""The README's Python examples run as written (in order, one namespace), except the
dataset snippet, which writes files and is covered by tests/io; the PyTorch one needs torch."""

import importlib.util
import re
from pathlib import Path

from peers import REQUIRE_PEERS

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        if "featurize_dataset" in block:
            continue
        if "gplode.torch" in block and not REQUIRE_PEERS and importlib.util.find_spec("torch") is None:
            continue
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    assert namespace["forces"].shape == (8, 3)
    assert namespace["stress"].shape in ((1, 3, 3), (3, 3))
