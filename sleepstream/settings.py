"""One mapping per setting: a CLI flag, a ``SLEEPSTREAM_*`` variable and a beds.toml key.

A :class:`Setting` is declared once, next to the frozen dataclass field it fills
(:data:`sleepstream.config.DAEMON_SETTINGS` for the daemon, ``SinkKind.options`` for a
sink). From its ``key`` everything else follows::

    key "mqtt_username"  ->  flag --mqtt-username
                             env  SLEEPSTREAM_MQTT_USERNAME   (read by sleepstream.clikit)
                             beds.toml [daemon] mqtt_username
                             field target "mqtt.username" of RunConfig

Precedence, highest first: the command line, the environment, the beds.toml file, the
dataclass default. Every parser default is None (a switch: False), meaning "not given",
so only what the user set (flag or environment) overrides the file; there is no retyped
copy of the defaults to compare against (:mod:`sleepstream.commands._daemon_args`).

Each value is checked where it is read, so an error names where it came from:
``--lookahead -1``, ``environment SLEEPSTREAM_LOOKAHEAD='-1'`` or
``beds.toml: daemon.lookahead = -1``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sleepstream.errors import UsageError

#: Marks "no value given" for a setting's ``const`` (a switch that sets nothing).
_UNSET: Any = object()


@dataclass(frozen=True)
class Setting:
    """A daemon or sink setting and the field it fills.

    Attributes
    ----------
    key : str
        ``snake_case`` name: the argparse dest, the beds.toml key under ``[daemon]`` and
        the environment variable's suffix; the flag is ``--`` + key with ``-``.
    target : str
        Field it sets: dotted for a nested dataclass (``"mqtt.username"``); for a sink
        option, the field of the sink kind's config dataclass.
    help : str
        One line for ``--help`` (``%(default)s`` is not expanded: say the default).
    parse : callable
        ``str -> value`` for the command line and the environment; raises
        ``ValueError`` with a short reason for a bad value (it also validates).
    toml : type or tuple of type
        Types a beds.toml value may have; it is then passed through ``check``.
    check : callable, optional
        ``value -> value`` run on a beds.toml value (default: ``parse`` applied to
        ``str(value)`` when the TOML type is not already the parsed type).
    switch : bool
        A flag without a value (``store_true``); beds.toml takes ``true``/``false``.
    const : object
        For a switch: the value written to ``target`` when it is on (default True).
    optional : object
        A flag whose value may be left out (``--ha-discovery [PREFIX]``): the flag alone
        gives ``optional``, with a value ``parse(value)``. The environment takes a value
        or ``1``/``true``/``yes``/``on`` (= ``optional``); beds.toml ``true`` (=
        ``optional``), ``false`` (off) or a value.
    metavar : str, optional
    commands : tuple of str
        Commands that take it (``run``, ``replay``).
    beds : bool
        Also read from beds.toml ``[daemon]``.
    """

    key: str
    target: str
    help: str
    parse: Callable[[str], Any] = str
    toml: type | tuple[type, ...] = str
    check: Callable[[Any], Any] | None = None
    switch: bool = False
    const: Any = _UNSET
    optional: Any = _UNSET
    metavar: str | None = None
    commands: tuple[str, ...] = ("run", "replay")
    beds: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return "SLEEPSTREAM_" + self.key.upper()

    def value(self, given: Any) -> Any:
        """What ``target`` receives for a given (parsed) value."""
        if self.switch:
            if not given:
                return _UNSET
            return True if self.const is _UNSET else self.const
        return given

    @property
    def takes_optional_value(self) -> bool:
        return self.optional is not _UNSET

    def from_toml(self, value: Any) -> Any:
        """Check a beds.toml value; raise ``ValueError`` with the reason."""
        if self.takes_optional_value and isinstance(value, bool):
            return self.optional if value else None
        if self.switch:
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if isinstance(value, bool) or not isinstance(value, self.toml):
            names = self.toml if isinstance(self.toml, tuple) else (self.toml,)
            raise ValueError(f"expected {' or '.join(t.__name__ for t in names)}")
        if self.check is not None:
            return self.check(value)
        return self.parse(str(value))


# ---------------------------------------------------------------- parse helpers


def text(raw: str) -> str:
    """A non-empty string."""
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw


#: Longest file name and path the kernel takes (bytes; Linux NAME_MAX, PATH_MAX - 1).
NAME_MAX = 255
PATH_MAX = 4095


def check_path(raw: str) -> str:
    """A path that can at least be looked up: non-empty, no NUL, no name over 255 bytes,
    at most 4095 bytes in all. Returns it unchanged (``ValueError`` with the reason).

    Every path flag, variable and beds key goes through this (it is the parser's first
    step), so no later code meets an ``OSError`` such as "File name too long" from a
    path that could never exist.
    """
    if not raw.strip():
        raise ValueError("must not be empty")
    if "\0" in raw:
        raise ValueError("contains a NUL character")
    encoded = os.fsencode(raw)
    if len(encoded) > PATH_MAX:
        raise ValueError(f"path too long ({len(encoded)} bytes, at most {PATH_MAX})")
    for part in encoded.split(b"/"):
        if len(part) > NAME_MAX:
            raise ValueError(
                f"a name in the path is too long ({len(part)} bytes, at most {NAME_MAX})"
            )
    return raw


def path(raw: str) -> Path:
    """A path (``~`` expanded) that passes :func:`check_path`."""
    return Path(check_path(raw)).expanduser()


def path_text(raw: str) -> str:
    """:func:`path` kept as text (for fields typed ``str``)."""
    return str(path(raw))


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An int parser bounded to ``[lo, hi]``."""

    def parse(raw: str) -> int:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ValueError("expected an integer") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if hi is None:
                raise ValueError(f"must be >= {lo}")
            if lo is None:
                raise ValueError(f"must be <= {hi}")
            raise ValueError(f"must be in {lo}..{hi}")
        return value

    parse.__name__ = "integer"
    return parse


def number(lo: float = -math.inf, hi: float = math.inf) -> Callable[[str], float]:
    """A finite float parser bounded to ``[lo, hi]``."""

    def parse(raw: str) -> float:
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            if hi == math.inf:
                raise ValueError(f"must be a finite number >= {lo:g}")
            raise ValueError(f"must be a finite number in [{lo:g}, {hi:g}]")
        return value

    parse.__name__ = "number"
    return parse


def host(raw: str) -> str:
    """An address to listen on: an IP literal or a DNS name (labels of 1-63 letters,
    digits or ``-``, at most 253 characters, IDNA-encodable)."""
    import ipaddress

    value = raw.strip()
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not value or len(value) > 253:
        raise ValueError("expected an IP address or a host name")
    try:
        ascii_name = value.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("not a valid host name (IDNA)") from None
    for label in ascii_name.rstrip(".").split("."):
        ok = label and len(label) <= 63 and not label.startswith("-") and not label.endswith("-")
        if not ok or not all(c.isalnum() or c == "-" for c in label):
            raise ValueError("expected an IP address or a host name (labels of 1-63 "
                             "letters, digits or '-')")  # fmt: skip
    return value


def named(check: Callable[..., str]) -> Callable[[str], str]:
    """A parser from a :mod:`sleepstream.names` validator (``check(value, where, error=)``),
    failing with its reason alone (the caller names the flag, variable or key)."""

    class _Reason(UsageError):
        pass

    def parse(raw: str) -> str:
        try:
            return check(raw, "", error=_Reason)
        except _Reason as exc:
            text = str(exc).lstrip()
            shown = repr(raw)
            reason = text[len(shown) + 2 :] if text.startswith(shown + ": ") else text
            raise ValueError(reason) from None

    parse.__name__ = getattr(check, "__name__", "name")
    return parse


def port(raw: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    return integer(0, 65535)(raw)


# ---------------------------------------------------------------- argparse glue


class BadValue(UsageError):
    """A flag's value was refused: ``--flag value: reason`` (``reason`` kept apart so an
    environment variable can be named instead of the flag)."""

    def __init__(self, flag: str, raw: str, reason: str) -> None:
        shown = raw if raw.isprintable() and raw.strip() == raw and raw else repr(raw)
        super().__init__(f"{flag} {shown}: {reason}")
        self.raw = raw
        self.reason = reason


def argtype(setting: Setting) -> Callable[[str], Any]:
    """The argparse ``type=`` of a setting: its parser, failing with :class:`BadValue`."""

    def convert(raw: str) -> Any:
        try:
            return setting.parse(raw)
        except ValueError as exc:
            raise BadValue(setting.flag, raw, str(exc)) from None

    convert.__name__ = setting.parse.__name__
    return convert


def assign(fields: dict[str, Any], setting: Setting, value: Any) -> None:
    """Write ``setting.value(value)`` into the nested ``fields`` dict at ``target``."""
    out = setting.value(value)
    if out is _UNSET or (out is None and setting.takes_optional_value):
        return
    *parents, leaf = setting.target.split(".")
    node = fields
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = out
