"""``command_line`` spells out an invocation that parses back to the same options."""

from __future__ import annotations

import argparse
import shlex

import pytest

from distill.commandline import command_line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distill train")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-deterministic", dest="deterministic", action="store_false")
    p.add_argument("--augment-param", action="append", default=None)
    p.add_argument("--checkpoints", nargs="+", default=None)
    p.add_argument("--out", "--output", dest="out", default="runs")
    p.set_defaults(_parser=p)
    return p


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        ([], "distill train"),
        (["--epochs", "15"], "distill train"),  # the default is implied
        (["--no-progress", "--epochs", "3"], "distill train --epochs 3 --no-progress"),
        (["--no-deterministic"], "distill train --no-deterministic"),
        (["--augment-param", "gain_max=3", "--augment-param", "noise_max=0.2"],
         "distill train --augment-param gain_max=3 --augment-param noise_max=0.2"),
        (["--checkpoints", "a b", "c"], "distill train --checkpoints 'a b' c"),
        (["--out", "x"], "distill train --output x"),
    ],
    ids=["defaults", "default-given", "store-true", "store-false", "append", "nargs", "alias"],
)  # fmt: skip
def test_command_line_round_trips(argv, want):
    """Non-default options appear once, flags alone, append once per value; the command
    parses back to the same namespace."""
    p = _parser()
    args = p.parse_args(argv)
    cmd = command_line(args)
    assert cmd == want
    again = p.parse_args(shlex.split(cmd)[2:])
    assert vars(again) == vars(args)


def test_command_line_without_a_parser_quotes_the_process_arguments(monkeypatch):
    """No ``_parser`` in the namespace: the arguments the process got, shell-quoted."""
    monkeypatch.setattr("sys.argv", ["distill", "train", "--out", "my runs"])
    assert command_line(argparse.Namespace(epochs=3)) == "distill train --out 'my runs'"
