"""The command dispatcher: unknown commands, env defaults, one-line errors."""

import subprocess
import sys

from sleepstream.cli import main


def test_cli_unknown_command_lists_valid_ones(capsys):
    """An unknown command exits 2 and names the valid ones."""
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "frobnicate" in err and "inspect" in err and "Traceback" not in err


def test_cli_runs_without_torch():
    """Importing the CLI and its dispatcher never imports torch or distill."""
    code = "import sys, sleepstream.cli; sys.exit(int('torch' in sys.modules or 'distill' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
