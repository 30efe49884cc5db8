"""The one place that decides which names may reach MQTT topics, file names and terminals.

A device name becomes an MQTT topic level (``<prefix>/<device>/stage``), a file name
(``nights/<device>/``, the outbox's ``device`` column) and the first part of every
``event_id``; the topic prefix becomes the first topic levels; the client id goes into
the MQTT CONNECT packet and into broker ACL patterns (mosquitto's ``%c``). Every caller
(``config``, the commands, the MQTT sink, ``watch``) validates through this module, so
the rules cannot drift apart.

Rules (each refusal is one line naming the flag or key, the value and the first
offending character):

- **device**: 1-64 ASCII letters, digits, ``.``, ``_`` or ``-``; starts with a letter or a
  digit (so never ``.``/``..``, a hidden file, a leading ``-`` read as a flag, or a
  leading ``$`` reserved by MQTT); does not end with ``.`` and is not a reserved
  Windows device name (``CON``, ``NUL``, ``COM1``...), so a state dir can move to any
  file system. No control character, NUL, space, ``/``, ``+`` or ``#`` can pass.
- **topic prefix**: 1-8 levels joined by ``/``, each level a device-like name (``_`` may
  also start a level); at most 128 characters. No empty level (``a//b``, leading or
  trailing ``/``), no wildcard, no ``$`` (reserved for broker topics such as ``$SYS``).
- **client id**: 1-128 ASCII letters, digits, ``.``, ``_``, ``-`` or ``:``. MQTT 3.1.1
  only obliges a broker to accept 1-23 characters of ``[0-9A-Za-z]``; mosquitto, EMQX,
  HiveMQ and amqtt accept this wider set. ``/``, ``+`` and ``#`` are refused because
  ACL patterns substitute the client id into topics.
- **host** (the broker to connect to): an IP literal or a DNS name of IDNA-encodable
  labels of 1-63 letters, digits, ``-`` or ``_`` (:func:`check_host`).

Two device names that differ only in case are refused together
(:func:`check_device_names`): on a case-insensitive file system (macOS, Windows, many
NAS shares) they would share one ``nights/`` folder.

:func:`printable` makes untrusted text (payloads, topics received from a broker) safe
to print on a terminal.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from typing import NoReturn

from sleepstream.errors import SleepstreamError, UsageError

#: Longest device name (characters).
DEVICE_MAX = 64
#: Longest topic prefix (characters, all levels and separators).
PREFIX_MAX = 128
#: Most levels in a topic prefix.
PREFIX_LEVELS_MAX = 8
#: Longest client id (characters).
CLIENT_ID_MAX = 128

_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_CLIENT_CHARS = _NAME_CHARS | {":"}
_HOST_CHARS = _NAME_CHARS - {"."}
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(1, 10)}
    | {f"lpt{i}" for i in range(1, 10)}
)
_DEVICE_RULE = (
    f"use 1-{DEVICE_MAX} ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"
)


def _describe(ch: str) -> str:
    """A readable name for one character: ``'/'``, ``newline (U+000A)``, ``NUL (U+0000)``."""
    names = {"\n": "newline", "\r": "carriage return", "\t": "tab", "\0": "NUL", " ": "space"}
    if ch in names:
        return f"{names[ch]} (U+{ord(ch):04X})"
    if unicodedata.category(ch)[0] in "CZ":
        return f"U+{ord(ch):04X} ({unicodedata.name(ch, 'control character')})"
    return f"{ch!r}"


def _first_bad(value: str, allowed: frozenset[str]) -> tuple[int, str] | None:
    for i, ch in enumerate(value):
        if ch not in allowed:
            return i, ch
    return None


def _refuse(error: type[SleepstreamError], where: str, value: object, why: str) -> NoReturn:
    shown = repr(value[:80]) + "..." if isinstance(value, str) and len(value) > 80 else repr(value)
    if len(shown) > 100:  # a long list or table from a config file
        shown = shown[:100] + "..."
    raise error(f"{where} {shown}: {why}")


def _check_level(value: str, *, where: str, shown: object, error: type[SleepstreamError],
                 max_len: int, rule: str, first_ok: str, offset: int = 0) -> None:  # fmt: skip
    """Shared rules of a device name and of one topic-prefix level (which starts at
    ``offset`` in the value shown)."""
    if not value:
        _refuse(error, where, shown, f"empty; {rule}")
    bad = _first_bad(value, _NAME_CHARS)
    if bad is not None:
        pos, ch = bad
        pos += offset
        _refuse(error, where, shown, f"{_describe(ch)} at position {pos} is not allowed; {rule}")
    if len(value) > max_len:
        _refuse(error, where, shown, f"{len(value)} characters; {rule}")
    if value[0] not in first_ok:
        _refuse(error, where, shown, f"starts with {value[0]!r}; {rule}")
    if value.endswith("."):
        _refuse(error, where, shown, f"ends with '.'; {rule}")
    if value.split(".")[0].lower() in _WINDOWS_RESERVED:
        _refuse(error, where, shown, "a reserved device file name on Windows; pick another")


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def check_device(
    name: object, where: str = "--device", *, error: type[SleepstreamError] = UsageError
) -> str:
    """Validate a device name (topic level, file name, ``event_id`` prefix) and return it.

    Parameters
    ----------
    name : object
        The value as given (anything that is not a ``str`` is refused).
    where : str
        What to name in the message: a flag (``--device``) or a file and key
        (``beds.toml: device[2].name``).
    error : type
        The typed error to raise (``UsageError`` for flags, ``ConfigError`` for files).

    Raises
    ------
    SleepstreamError
        Of type ``error``: one line naming ``where``, the value and the first bad character.
    """
    if not isinstance(name, str):
        _refuse(error, where, name, f"expected a string; {_DEVICE_RULE}")
    assert isinstance(name, str)
    _check_level(name, where=where, shown=name, error=error, max_len=DEVICE_MAX,
                 rule=_DEVICE_RULE, first_ok=_ALNUM)  # fmt: skip
    return name


def check_device_names(
    names: Iterable[object], where: str = "--device", *, error: type[SleepstreamError] = UsageError
) -> tuple[str, ...]:
    """Validate several device names; refuse duplicates, also those differing only in case."""
    seen: dict[str, str] = {}
    out = []
    for name in names:
        checked = check_device(name, where, error=error)
        key = checked.casefold()
        if key in seen:
            other = seen[key]
            why = "given twice" if other == checked else f"differs from {other!r} only in case"
            _refuse(error, where, checked, f"{why}; device names must be unique")
        seen[key] = checked
        out.append(checked)
    return tuple(out)


def check_topic_prefix(
    prefix: object, where: str = "--topic-prefix", *, error: type[SleepstreamError] = UsageError
) -> str:
    """Validate a topic prefix (``sleepstream``, ``clinic/ward-3``) and return it unchanged."""
    rule = (
        f"use 1-{PREFIX_LEVELS_MAX} levels joined by '/', each of ASCII letters, digits, "
        f"'.', '_' or '-' (at most {PREFIX_MAX} characters)"
    )
    if not isinstance(prefix, str):
        _refuse(error, where, prefix, f"expected a string; {rule}")
    assert isinstance(prefix, str)
    if not prefix:
        _refuse(error, where, prefix, f"empty; {rule}")
    if len(prefix) > PREFIX_MAX:
        _refuse(error, where, prefix, f"{len(prefix)} characters; {rule}")
    levels = prefix.split("/")
    if len(levels) > PREFIX_LEVELS_MAX:
        _refuse(error, where, prefix, f"{len(levels)} levels; {rule}")
    offset = 0
    for i, level in enumerate(levels):
        if not level:
            _refuse(error, where, prefix, f"level {i + 1} is empty ('/' at an end or '//'); {rule}")
        _check_level(level, where=where, shown=prefix, error=error, max_len=PREFIX_MAX,
                     rule=rule, first_ok=_ALNUM + "_", offset=offset)  # fmt: skip
        offset += len(level) + 1
    return prefix


def check_client_id(
    client_id: object,
    where: str = "--mqtt-client-id",
    *,
    error: type[SleepstreamError] = UsageError,
) -> str:
    """Validate an MQTT client id and return it."""
    rule = f"use 1-{CLIENT_ID_MAX} ASCII letters, digits, '.', '_', '-' or ':'"
    if not isinstance(client_id, str):
        _refuse(error, where, client_id, f"expected a string; {rule}")
    assert isinstance(client_id, str)
    if not client_id:
        _refuse(error, where, client_id, f"empty; {rule}")
    bad = _first_bad(client_id, _CLIENT_CHARS)
    if bad is not None:
        pos, ch = bad
        _refuse(
            error, where, client_id, f"{_describe(ch)} at position {pos} is not allowed; {rule}"
        )
    if len(client_id) > CLIENT_ID_MAX:
        _refuse(error, where, client_id, f"{len(client_id)} characters; {rule}")
    return client_id


def check_host(
    host: object,
    where: str = "--mqtt",
    *,
    error: type[SleepstreamError] = UsageError,
) -> str:
    """Validate a host to connect to (an MQTT broker) and return it.

    An IP literal (IPv4, or IPv6 without brackets), or a DNS name: at most 253
    characters, labels of 1-63 letters, digits, ``-`` or ``_`` (``_`` appears in
    container and ``/etc/hosts`` names and resolves), not starting or ending with ``-``,
    the whole IDNA-encodable (``bücher.de`` passes). Anything else would fail deep in
    the resolver (``UnicodeError: encoding with 'idna' codec failed``).
    """
    import ipaddress

    rule = "use an IP address or a host name (labels of 1-63 letters, digits, '-' or '_')"
    if not isinstance(host, str) or not host:
        _refuse(error, where, host, f"no host; {rule}")
    assert isinstance(host, str)
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if len(host) > 253:
        _refuse(error, where, host, f"{len(host)} characters (at most 253); {rule}")
    try:
        ascii_name = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        _refuse(error, where, host, f"not a valid host name ({exc.__class__.__name__}); {rule}")
    for label in ascii_name[:-1].split(".") if ascii_name.endswith(".") else ascii_name.split("."):
        bad = _first_bad(label, _HOST_CHARS)
        if bad is not None:
            _refuse(error, where, host, f"{_describe(bad[1])} is not allowed; {rule}")
        if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-":
            _refuse(error, where, host, f"label {label!r}: {rule}")
    return host


def daemon_id(host: str, devices: Iterable[str]) -> str:
    """A stable, valid name for one daemon: ``<host>-<8 hex of its device set>``.

    Stable across restarts with the same beds (so its retained status topic is reused,
    not littered), distinct for two daemons that own different shards on one host. The
    host part keeps only the allowed characters (at most 32).
    """
    clean = "".join(c if c in _NAME_CHARS else "-" for c in host)[:32].strip("-.") or "host"
    if clean[0] not in _ALNUM:
        clean = "h" + clean
    digest = hashlib.sha256("\n".join(sorted(devices)).encode()).hexdigest()[:8]
    return check_device(f"{clean}-{digest}", "daemon id")


def shard_of(device: str, n_shards: int) -> int:
    """The shard (0 <= i < n_shards) that owns ``device``: a stable hash of its name.

    Stable across processes and Python versions (sha256, not ``hash()``), and adding a
    bed to the beds file moves no other bed.
    """
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    return int.from_bytes(hashlib.sha256(device.encode()).digest()[:8], "big") % n_shards


# Unicode format characters that reorder or hide text (bidi overrides, zero-width).
_INVISIBLE = re.compile("[\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def printable(text: object, max_len: int = 200) -> str:
    """Untrusted text made safe for a terminal line.

    Control characters (C0, DEL, C1: escape sequences, carriage returns, newlines),
    bidirectional overrides, zero-width characters, surrogates and other
    non-characters are shown as ``\\xNN`` / ``\\uNNNN`` escapes; the result is cut at
    ``max_len`` characters with ``...``. Ordinary letters of any script pass unchanged.
    """
    s = text if isinstance(text, str) else str(text)
    if len(s) > max_len:
        s = s[:max_len] + "..."
    out = []
    for ch in s:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Co", "Cn") or _INVISIBLE.match(ch) or cat in ("Zl", "Zp"):
            code = ord(ch)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            else:
                out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        elif ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)
    return "".join(out)
