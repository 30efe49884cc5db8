"""``distill methods``: one registered name per line."""

from __future__ import annotations

from distill.cli import main
from distill.methods import names


def test_methods_prints_one_name_per_line(capsys):
    """The output is exactly the registry's names, one per line, exit 0."""
    assert main(["methods"]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == names()


def test_distill_unknown_method_exits_2_listing_methods(capsys):
    """``distill distill --method hinton`` is a usage error (exit 2) naming the valid methods."""
    assert main(["distill", "--method", "hinton", "--family", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "hinton" in err and "sleepkd" in err and "dkd" in err
