"""The command line: demo output and error handling."""

import pytest

from gplode.io.cli import main


def test_demo_runs_and_prints_summary(capsys):
    # the monomial basis: the GTO's free-space tables take seconds to build
    assert (
        main(["demo", "--max-radial", "2", "--max-angular", "2", "--backend", "reference", "--basis", "monomial"]) == 0
    )
    out = capsys.readouterr().out
    assert "NaCl conventional cell (8 atoms, periodic)" in out
    assert "values shape (8, 2, 9, 3)" in out
    assert out.count("\n    ") >= 5  # one line per S22x5 separation


def test_bad_option_is_a_one_line_error(capsys):
    assert main(["demo", "--smearing", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gplode: error: smearing must be > 0") and err.count("\n") == 1


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
