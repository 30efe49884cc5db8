"""``distill`` command line: argument parsing and exit codes only."""

from __future__ import annotations

from collections.abc import Sequence

from sleepstream.clikit import dispatch

COMMANDS = {
    "models": "distill.commands.models",
    "train": "distill.commands.train",
    "evaluate": "distill.commands.evaluate",
    "export": "distill.commands.export",
    "methods": "distill.commands.methods",
    "distill": "distill.commands.distill",
    "compare": "distill.commands.compare",
    "ablate": "distill.commands.ablate",
    "prepare": "distill.commands.prepare",
    "reproduce": "distill.commands.reproduce",
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(
        "distill",
        "Train teachers, distil students (SleepKD and baselines), evaluate, export ONNX.",
        COMMANDS,
        argv,
        env_prefix="DISTILL",
    )


if __name__ == "__main__":
    raise SystemExit(main())
