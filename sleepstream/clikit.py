"""A small lazy sub-command dispatcher shared by ``sleepstream`` and ``distill``.

Each sub-command lives in its own module that defines::

    HELP = "one line"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

Only the chosen module is imported, so ``sleepstream inspect`` never pays for MQTT or
ONNX Runtime. Every option also reads ``<PREFIX>_<DEST>`` from the environment
(e.g. ``SLEEPSTREAM_MQTT``), which is how systemd ``EnvironmentFile=`` reaches it.
Errors derived from :class:`~sleepstream.errors.SleepstreamError` become one line on
stderr and their exit code; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from sleepstream.errors import SleepstreamError, UsageError
from sleepstream.names import printable
from sleepstream.settings import BadValue

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would exit(2) with usage; keep it short
        raise UsageError(f"{self.prog}: {message}")


def _is_flag(action: argparse.Action) -> bool:
    """A ``store_true`` option (told by its public attributes: no value, const True)."""
    return action.nargs == 0 and action.const is True


def _apply_env_defaults(parser: argparse.ArgumentParser, env_prefix: str) -> None:
    # argparse has no public list of a parser's actions; ``_actions`` is the documented-
    # by-use attribute every argparse extension reads (stable since Python 3.2).
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help",):
            continue
        key = f"{env_prefix}_{action.dest.upper()}"
        if key not in os.environ:
            continue
        raw = os.environ[key]
        if _is_flag(action):
            value: object = raw.strip().lower() in ("1", "true", "yes", "on")
        elif action.nargs == "?" and raw.strip().lower() in _TRUE + _FALSE:
            # a flag with an optional value: SLEEPSTREAM_X=1 is the flag alone, =0 is off
            value = action.const if raw.strip().lower() in _TRUE else None
        elif action.type is not None:
            try:
                value = action.type(raw)  # type: ignore[operator]
            except BadValue as exc:
                raise UsageError(f"environment {key}={raw!r}: {exc.reason}") from None
            except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                raise UsageError(f"environment {key}={raw!r}: {exc}") from None
        else:
            value = raw
        if action.choices is not None and value not in action.choices:
            # set_defaults bypasses argparse's own choices check
            valid = ", ".join(map(str, action.choices))
            raise UsageError(f"environment {key}={raw!r}: expected one of {valid}")
        parser.set_defaults(**{action.dest: value})


def dispatch(
    prog: str,
    description: str,
    commands: Mapping[str, str],
    argv: Sequence[str] | None,
    env_prefix: str,
    version: str | None = None,
) -> int:
    """Parse ``argv``, import the chosen command module and run it; return the exit code.

    ``prog --version`` prints ``prog <version>`` when ``version`` is given.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if version is not None and argv[:1] in (["--version"], ["-V"]):
        print(f"{prog} {version}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        options = " [--version]" if version is not None else ""
        print(f"usage: {prog}{options} COMMAND [options]\n\n{description}\n\ncommands:")
        for name, target in commands.items():
            try:
                help_line = importlib.import_module(target).HELP
            except Exception:  # a broken optional command must not hide the others
                help_line = "(unavailable)"
            print(f"  {name:<10} {help_line}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    try:
        if name not in commands:
            raise UsageError(
                f"{prog}: unknown command {name!r}; valid commands: {', '.join(commands)}"
            )
        module = importlib.import_module(commands[name])
        parser = _Parser(prog=f"{prog} {name}", description=module.HELP)
        module.add_arguments(parser)
        _apply_env_defaults(parser, env_prefix)
        args = parser.parse_args(rest)
        return int(module.run(args) or 0)
    except SleepstreamError as exc:
        # a message may quote user input (a path, a flag value): never print its control
        # characters (newlines would break the one line, escapes would reach the terminal)
        print(f"{prog}: error: {printable(str(exc), max_len=2000)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
