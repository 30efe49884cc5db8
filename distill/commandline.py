"""The exact command behind a parsed invocation, for sidecars and result tables."""

from __future__ import annotations

import argparse
import shlex
import sys


def command_line(args: argparse.Namespace) -> str:
    """An exact command equivalent to this invocation: ``distill <command> [options]``.

    Options left at their default are omitted (they are implied); the rest are spelled with
    their last (long) flag: a flag option (``store_true``/``store_false``) alone, an
    ``append`` option once per value, a multi-value option once with all its values.
    Needs the subcommand's parser in ``args._parser`` (``parser.set_defaults(_parser=...)``);
    without it, the process's own arguments are quoted as they came.
    """
    parser = getattr(args, "_parser", None)
    if parser is None:
        return "distill " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    words = ["distill", parser.prog.split()[-1]]
    for action in parser._actions:  # argparse has no public list of a parser's options
        if not action.option_strings or action.dest in ("help", "_parser"):
            continue
        val = getattr(args, action.dest, None)
        if val == action.default and not action.required:
            continue
        flag = action.option_strings[-1]
        if action.nargs == 0:  # a flag: it differs from its default, so it was given
            words.append(flag)
        elif action.nargs is None and isinstance(val, list):  # append: one flag per value
            for v in val:
                words += [flag, str(v)]
        elif val is not None:
            vals = val if isinstance(val, list) else [val]
            words += [flag, *(str(v) for v in vals)]
    return " ".join(shlex.quote(w) for w in words)
