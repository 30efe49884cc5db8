"""The one validator of device names, topic prefixes and client ids, and terminal text."""

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sleepstream.errors import ConfigError, UsageError
from sleepstream.names import (
    check_client_id,
    check_device,
    check_device_names,
    check_host,
    check_topic_prefix,
    daemon_id,
    printable,
    shard_of,
)

GOOD_DEVICES = ["bed1", "Bed-1", "a", "ward3.bed_12", "0", "x" * 64, "a.b", "a..b"]
BAD_DEVICES = {
    "bed1\n": "newline",
    "bed\r1": "carriage return",
    "bed\t1": "tab",
    "bed\x001": "NUL",
    "bed 1": "space",
    "bed/1": "'/'",
    "bed+": "'+'",
    "bed#": "'#'",
    "$bed": "'$'",
    ".": "starts with '.'",
    "..": "starts with '.'",
    ".hidden": "starts with '.'",
    "-rf": "starts with '-'",
    "_x": "starts with '_'",
    "bed.": "ends with '.'",
    "": "empty",
    "x" * 65: "65 characters",
    "bed\x1b[2J": "U+001B",
    "b\u00e9d": "position 1",
    "bed\u202e1": "U+202E",
    "bed\u200b": "U+200B",
    "CON": "reserved",
    "nul.txt": "reserved",
    "com1": "reserved",
}


@pytest.mark.parametrize("name", GOOD_DEVICES)
def test_names_device_accepts_portable_names(name):
    """Letters, digits, '.', '_' and '-' up to 64 characters pass unchanged."""
    assert check_device(name) == name


@pytest.mark.parametrize(("name", "why"), BAD_DEVICES.items())
def test_names_device_refuses_each_class_of_bad_name_in_one_line(name, why):
    """Control characters, MQTT specials, path parts, length: one line naming the flag."""
    with pytest.raises(UsageError) as err:
        check_device(name, "--device")
    msg = str(err.value)
    assert msg.startswith("--device ") and why in msg
    assert "\n" not in msg and "\x1b" not in msg and "\x00" not in msg


def test_names_device_error_type_and_place_come_from_the_caller():
    """A config file passes its own place and ConfigError."""
    with pytest.raises(ConfigError, match=r"^beds.toml: device\[2\].name 'bed1\\n'"):
        check_device("bed1\n", "beds.toml: device[2].name", error=ConfigError)


@pytest.mark.parametrize("value", [None, 3, ["bed1"], b"bed1"])
def test_names_device_refuses_non_strings(value):
    """A TOML integer or list is refused, not crashed on."""
    with pytest.raises(UsageError, match="expected a string"):
        check_device(value)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_names_device_anything_accepted_is_a_safe_topic_level_and_file_name(name):
    """Property: whatever passes is non-empty, ASCII, has no MQTT special or path part."""
    try:
        check_device(name)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert 1 <= len(name) <= 64 and name.isascii() and name.isprintable()
    assert not set(name) & set("/+#$ \x00") and name not in (".", "..")
    assert name[0] in string.ascii_letters + string.digits


def test_names_device_names_refuse_duplicates_and_case_only_differences():
    """Two beds that would share one folder on a case-insensitive file system are refused."""
    assert check_device_names(["bed1", "bed2"]) == ("bed1", "bed2")
    with pytest.raises(UsageError, match="given twice"):
        check_device_names(["bed1", "bed1"])
    with pytest.raises(UsageError, match="only in case"):
        check_device_names(["bed1", "BED1"])


@pytest.mark.parametrize("prefix", ["sleepstream", "clinic/ward-3", "_private/x", "a/b/c"])
def test_names_topic_prefix_accepts_levels(prefix):
    """One or more levels joined by '/'."""
    assert check_topic_prefix(prefix) == prefix


@pytest.mark.parametrize(
    ("prefix", "why"),
    [
        ("", "empty"),
        ("/sleepstream", "level 1 is empty"),
        ("sleepstream/", "level 2 is empty"),
        ("a//b", "level 2 is empty"),
        ("a/+/b", "'+' at position 2"),
        ("clinic/ward 3", "space (U+0020) at position 11"),
        ("a/#", "'#'"),
        ("$SYS", "'$'"),
        ("sleep\nstream", "newline"),
        ("sleep\x00", "NUL"),
        ("a/" * 8 + "a", "9 levels"),
        ("x" * 129, "129 characters"),
        ("ward 3", "space"),
    ],
)
def test_names_topic_prefix_refuses_wildcards_empty_levels_and_controls(prefix, why):
    """Wildcards, '$', empty levels, control characters and over-long prefixes are refused."""
    with pytest.raises(UsageError, match="^--topic-prefix ") as err:
        check_topic_prefix(prefix)
    assert why in str(err.value)


@pytest.mark.parametrize("cid", ["sleepstream-bed1-1234", "a", "host:1", "x" * 128])
def test_names_client_id_accepts_broker_safe_ids(cid):
    """Letters, digits, '.', '_', '-', ':' up to 128 characters."""
    assert check_client_id(cid) == cid


@pytest.mark.parametrize("cid", ["", "a/b", "a+b", "a#", "a b", "id\n", "x" * 129, "é"])
def test_names_client_id_refuses_acl_specials_and_controls(cid):
    """'/', '+', '#' would change ACL patterns; controls and length are refused."""
    with pytest.raises(UsageError, match="^--mqtt-client-id "):
        check_client_id(cid)


@pytest.mark.parametrize(
    "host",
    ["localhost", "127.0.0.1", "::1", "broker.example.org", "mqtt_broker", "bücher.de",
     "a.org.", "x" * 63 + ".org", "10.0.0.1"],
)  # fmt: skip
def test_names_host_accepts_addresses_and_resolvable_names(host):
    """IP literals, DNS names (also '_' and internationalised names) pass unchanged."""
    assert check_host(host) == host
    host.encode("idna")  # what the resolver will do with it: no UnicodeError


@pytest.mark.parametrize(
    ("host", "why"),
    [("a..b", "valid host name"), ("x" * 64 + ".org", "valid host name"),
     ("-a.org", "label '-a'"), ("a b", "space"), ("a\nb", "newline"), ("a%0a", "'%'"),
     ("a/b", "'/'"), ("\udcff", "valid host name"), ("x." * 127 + "x", "253"), ("", "no host")],
)  # fmt: skip
def test_names_host_refuses_what_the_resolver_cannot_take_in_one_line(host, why):
    """A host the resolver would choke on (IDNA) is one line naming it (faults' R11)."""
    with pytest.raises(UsageError, match="^--mqtt ") as err:
        check_host(host)
    assert why in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "argv",
    [["watch", "--mqtt", "mqtt://a..b:1", "--connect-timeout", "0.2", "--count", "1"],
     ["run", "--source", "synthetic-night", "--mqtt", "mqtt://a..b:1"]],
    ids=["watch", "run"],
)  # fmt: skip
def test_names_a_broker_host_the_resolver_cannot_take_is_refused_at_start(argv, tmp_path, capsys):
    """run and watch: exit 2 in one line before any connection (was: a traceback from
    the resolver; run retried it 5 times in its delivery task)."""
    from sleepstream.cli import main

    state = tmp_path / "state"
    extra = ["--state-dir", str(state), "--no-metrics"] if argv[0] == "run" else []
    rc = main(argv + extra)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "'a..b'" in err and "Traceback" not in err
    assert not state.exists()


def test_names_daemon_id_is_stable_valid_and_differs_per_shard():
    """Same host and beds: same id; another bed set: another id; odd host names cleaned."""
    a = daemon_id("node-1", ["bed1", "bed2"])
    assert a == daemon_id("node-1", ["bed2", "bed1"])
    assert a != daemon_id("node-1", ["bed3"])
    assert a.startswith("node-1-")
    odd = daemon_id("-weird host\n/é", ["bed1"])
    assert check_device(odd) == odd


def test_names_shard_of_is_stable_and_spreads_devices():
    """Known values (sha256), every shard used for many beds, one shard for n=1."""
    beds = [f"bed{i}" for i in range(200)]
    assert {shard_of(b, 1) for b in beds} == {0}
    counts = [sum(shard_of(b, 4) == i for b in beds) for i in range(4)]
    assert all(c > 20 for c in counts) and sum(counts) == 200
    assert (
        shard_of("bed1", 2)
        == int.from_bytes(__import__("hashlib").sha256(b"bed1").digest()[:8], "big") % 2
    )
    with pytest.raises(ValueError):
        shard_of("bed1", 0)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("N2", "N2"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("a\rb\nc", "a\\x0db\\x0ac"),
        ("\x9b2J", "\\x9b2J"),
        ("abc\u202edef", "abc\\u202edef"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("back\\slash", "back\\\\slash"),
        ("Schlafphase äöü 睡眠", "Schlafphase äöü 睡眠"),
        ("\ud800", "\\ud800"),
    ],
)
def test_names_printable_escapes_terminal_controls(raw, shown):
    """Escape sequences, CR/LF, C1, bidi and zero-width characters are shown escaped."""
    assert printable(raw) == shown


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_names_printable_output_never_holds_a_control_character(text):
    """Property: no C0/C1/DEL/bidi/zero-width character survives, whatever the input."""
    out = printable(text, max_len=10_000)
    assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in out)
    assert not set(out) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b")


def test_names_printable_cuts_long_text():
    """Long text is cut with '...'."""
    assert printable("x" * 500, max_len=10) == "x" * 10 + "..."


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--source", "synthetic-night", "--device", "bed1\n"],
        ["run", "--source", "synthetic-night", "--device", "bed\x1b[31m"],
        ["run", "--source", "synthetic-night", "--device", ".."],
        ["run", "--source", "synthetic-night", "--topic-prefix", "a/\x1b[2J"],
        ["run", "--source", "synthetic-night", "--topic-prefix", "$SYS"],
        ["run", "--source", "synthetic-night", "--mqtt-client-id", "id\r"],
        ["watch", "--device", "bed/1"],
        ["watch", "--topic-prefix", "sleepstream/#"],
    ],
    ids=lambda a: repr(a[-1]),
)
def test_names_every_command_refuses_bad_names_in_one_safe_line(argv, tmp_path, capsys):
    """The reported `--device $'bed1\\n'` and its class through the real CLI: exit code 2,
    one line with the value escaped, and nothing created on disk."""
    from sleepstream.cli import main

    state = tmp_path / "state"
    extra = ["--state-dir", str(state), "--no-metrics"] if argv[0] == "run" else []
    rc = main(argv + extra)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "\x1b" not in err and "\r" not in err
    assert not state.exists()
