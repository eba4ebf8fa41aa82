"""The command line's rough edges: help texts, --debug, config files, missing extras,
option validation, the summary line and ``bench --quick``."""

import json
import re
import sys
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
from dataset_helpers import _frames

from gplode.io.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--max-radial", "2", "--max-angular", "2", "--accuracy", "1e-5", "--backend", "numpy"]


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_help_shows_each_commands_own_defaults(capsys):
    demo = _help(capsys, "demo")
    assert "largest n, inclusive (default 4)" in demo and "largest l, inclusive (default 3)" in demo
    featurize = _help(capsys, "featurize")
    assert "largest n, inclusive (default 5)" in featurize and "largest l, inclusive (default 4)" in featurize
    assert "target relative RMS error (default 1e-06)" in featurize and "(default gto)" in featurize
    assert "port on 127.0.0.1 (default 5006)" in _help(capsys, "explore")


@pytest.mark.parametrize("command", ["demo", "featurize", "explore", "bench"])
def test_every_command_lists_debug(capsys, command):
    assert "--debug show tracebacks" in _help(capsys, command)


@pytest.mark.parametrize("argv", [["--debug", "demo", "--smearing", "-1"], ["demo", "--smearing", "-1", "--debug"]])
def test_debug_before_or_after_the_command_shows_the_traceback(argv):
    with pytest.raises(ValueError, match="smearing must be > 0"):
        main(argv)


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("gplode: error: "), captured.err
    return captured.err.removeprefix("gplode: error: ").strip()


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("typo.json", '{"smering": 1.0}', r"config .*typo.json: unknown key 'smering' \(did you mean 'smearing'\?\)"),
        ("other.toml", 'colour = "red"\n', r"config .*other.toml: unknown key 'colour' \(allowed: exponent, "),
        ("broken.json", '{"smearing": 1.0,\n "cutoff": }', r"config .*broken.json: invalid JSON at line 2, column 12"),
        ("broken.toml", "smearing = \ncutoff = 3\n", r"config .*broken.toml: invalid TOML \(.*line 1"),
        ("list.json", "[1, 2]", r"config .*list.json: must be a table of hyper-parameters, got list"),
        ("hypers.yaml", "smearing: 1.0\n", r"config .*hypers.yaml: YAML is not supported; write .* as .toml or .json"),
        ("hypers.yml", "smearing: 1.0\n", r"config .*hypers.yml: YAML is not supported"),
        ("hypers.txt", "{}", r"config .*hypers.txt: must be a .toml or .json file"),
    ],
)
def test_config_errors_name_the_file_and_the_key(tmp_path, capsys, name, text, message):
    pytest.importorskip("tomllib")  # Python >= 3.11
    (tmp_path / name).write_text(text)
    err = _error(capsys, ["demo", "--config", str(tmp_path / name)])
    assert re.match(message, err), err


def test_missing_config_file(tmp_path, capsys):
    assert "cannot be read (No such file or directory)" in _error(
        capsys, ["demo", "--config", str(tmp_path / "a.json")]
    )


@pytest.mark.parametrize("value", ["0", "-1"])
def test_dask_local_needs_a_positive_worker_count(tmp_path, capsys, value):
    err = _error(
        capsys, ["featurize", str(tmp_path / "never-read.xyz"), "-o", str(tmp_path / "o.zarr"), "--dask-local", value]
    )
    assert err == f"--dask-local needs N >= 1 worker processes, got {value}"
    err = _error(capsys, ["featurize", "x.xyz", "-o", "o.zarr", "--dask", "tcp://h:1", "--dask-local", "2"])
    assert err == "use either --dask ADDRESS or --dask-local N, not both"


def _block(monkeypatch, *modules):
    """Make ``modules`` unimportable (as if not installed) for this test."""
    for name in list(sys.modules):
        if any(name == m or name.startswith(m + ".") for m in modules):
            monkeypatch.delitem(sys.modules, name)
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_extras_name_the_extra_to_install(tmp_path, capsys, monkeypatch):
    path = tmp_path / "data.extxyz"
    ase.io.write(path, _frames(2))
    for name in [name for name in sys.modules if name.startswith("gplode.app")]:  # imported afresh
        monkeypatch.delitem(sys.modules, name)
    _block(monkeypatch, "panel")
    assert _error(capsys, ["explore", "--no-browser"]).endswith("pip install 'gplode[app]'")
    _block(monkeypatch, "metatensor")
    err = _error(capsys, ["featurize", str(path), "-o", str(tmp_path / "o.mts")])
    assert err == "metatensor .mts files need metatensor-core: pip install 'gplode[data]'"
    _block(monkeypatch, "dask", "distributed")
    assert _error(capsys, ["featurize", str(path), "-o", str(tmp_path / "o.zarr"), "--dask-local", "1"]).endswith(
        "pip install 'gplode[dask]'"
    )


def test_quiet_hides_progress_but_not_the_summary(tmp_path, capsys):
    pytest.importorskip("zarr")
    frames = _frames(4)
    frames.insert(2, ase.Atoms("Na2", positions=[[0, 0, 0], [0, 0, 0]]))
    path = tmp_path / "data.extxyz"
    ase.io.write(path, frames)
    assert main(["featurize", str(path), "-o", str(tmp_path / "o.zarr"), "--skip-bad", "--quiet", *SMALL]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.startswith("5 structures (4 stored, 1 skipped), ") and captured.out.count("\n") == 1


def test_bad_structure_message_names_file_and_index_once(tmp_path, capsys):
    pytest.importorskip("zarr")
    frames = _frames(3)
    frames[2].positions[0] = frames[2].positions[1]
    path = tmp_path / "bad.extxyz"
    ase.io.write(path, frames)
    err = _error(capsys, ["featurize", str(path), "-o", str(tmp_path / "o.zarr"), *SMALL])
    assert err.startswith(f"file {path}, structure 2 (0-based): atoms 0 and 1 are at the same position")
    assert err.count("(0-based)") == 1 and "frame" not in err


def test_bench_passes_quick_on(monkeypatch):
    import subprocess

    calls = []
    monkeypatch.setattr(subprocess, "call", lambda argv: calls.append(argv) or 0)
    assert main(["bench", "--quick"]) == 0
    assert calls == [[sys.executable, str(ROOT / "benchmarks" / "bench_cpu.py"), "--quick"]]


def test_bench_quick_writes_quick_results_and_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _common
    import bench_cpu

    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    monkeypatch.setattr(bench_cpu, "machine", lambda: {"memory_gib": 64.0})
    monkeypatch.setattr(bench_cpu, "exact_values", lambda p: np.zeros((8, 2, 25, 6)))
    monkeypatch.setattr(bench_cpu, "featomic_fine_k_cutoff", lambda p, exact: 5.0)
    monkeypatch.setattr(bench_cpu, "featomic_default_error", lambda p, exact: 3e-4)
    monkeypatch.setattr(
        bench_cpu,
        "run_isolated",
        lambda module, function, kwargs: {
            "seconds": 0.4,
            "first_seconds": 0.5,
            "warm_seconds": 0.4,
            "spread": 0.0,
            "rms_error": 1e-6,
            "max_error": 1e-5,
            "peak_rss_gib": 0.1,
        },
    )
    monkeypatch.setattr(sys, "argv", ["bench_cpu.py", "--quick"])
    bench_cpu.main()
    out = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpu_quick.json"]
    assert json.loads((tmp_path / "cpu_quick.json").read_text())["rows"][0]["n_atoms"] == 64
    assert out.startswith("| atoms | p | code |") and not any(line.startswith("{") for line in out.splitlines())
    assert out.splitlines()[-1] == f"results written to {tmp_path / 'cpu_quick.json'}"
    # first calls and warm ones, each code's, and both speed-ups
    # gplode's "default" run asks for featomic's measured error at its default k_c
    assert "| 64 | 1 | gplode | accuracy 0.0003 | 0.5 | 0.4 |" in out
    speedup = json.loads((tmp_path / "cpu_quick.json").read_text())["summary"]["speedup"][0]
    assert speedup["ratio"] == 1.0 and speedup["warm_ratio"] == 1.0
