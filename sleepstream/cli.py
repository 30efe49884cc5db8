"""``sleepstream`` command line: argument parsing and exit codes only."""

from __future__ import annotations

from collections.abc import Sequence

from sleepstream.clikit import dispatch

COMMANDS = {
    "run": "sleepstream.commands.run",
    "replay": "sleepstream.commands.replay",
    "watch": "sleepstream.commands.watch",
    "inspect": "sleepstream.commands.inspect",
    "profiles": "sleepstream.commands.profiles",
    "report": "sleepstream.commands.report",
    "export-bids": "sleepstream.commands.export_bids",
    "ha-forget": "sleepstream.commands.ha_forget",
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(
        "sleepstream",
        "Real-time sleep staging from one EEG channel.",
        COMMANDS,
        argv,
        env_prefix="SLEEPSTREAM",
        version=_version(),
    )


def _version() -> str:
    """The installed distribution's version (the package's own when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sleepstream")
    except PackageNotFoundError:
        from sleepstream import __version__

        return __version__


if __name__ == "__main__":
    raise SystemExit(main())
