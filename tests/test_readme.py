"""The README's Python examples run as written (in order, one namespace), except the
dataset snippet, which writes files and is covered by tests/io."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        if "featurize_dataset" in block:
            continue
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    assert namespace["forces"].shape == (8, 3)
    assert namespace["stress"].shape == (1, 3, 3)
