"""The command dispatcher: unknown commands, env defaults, one-line errors."""

import subprocess
import sys

import pytest

from sleepstream.cli import main


def test_cli_unknown_command_lists_valid_ones(capsys):
    """An unknown command exits 2 and names the valid ones."""
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "frobnicate" in err and "inspect" in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_runs_without_torch():
    """Importing the CLI and its dispatcher never imports torch or distill."""
    code = "import sys, sleepstream.cli; sys.exit(int('torch' in sys.modules or 'distill' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["inspect", "a\nb"],
        ["profiles", "show", "edf-replay", "--json", "\x1b[31m"],
        ["run", "--device", "bed1\n"],
        ["run", "--source", "edf:/none/\x1b]0;x\x07.edf", "--no-metrics"],
        ["report", "/none/\u2028night"],
        ["replay", "/none/x\x85.edf"],
        ["nope\x1b[2J"],
    ],
    ids=["path", "unrecognised", "flag-value", "spec", "line-separator", "nel", "command"],
)
def test_error_line_never_carries_control_characters(argv, capsys):
    """Whatever an error message quotes from the input, stderr gets exactly one line of
    printable text (no newline, escape sequence or Unicode line separator)."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc != 0
    lines = [ln for ln in err.split("\n") if ln.startswith("sleepstream")]
    error = [ln for ln in lines if ": error: " in ln]
    assert len(error) == 1, err
    assert all(ch.isprintable() for ch in error[0]), repr(error[0])
    assert err.count("\n") == len([ln for ln in err.split("\n") if ln]), repr(err)
