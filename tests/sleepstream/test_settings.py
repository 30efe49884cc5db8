"""One merge of flags, environment and beds.toml: every setting reaches its field.

The parametrised tests below walk the settings tables and the argparse actions of
``run`` and ``replay``; a flag added without a mapping (or a mapping that drops a
value) makes them fail.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

import pytest

from sleepstream.clikit import _apply_env_defaults, _Parser
from sleepstream.commands import _daemon_args
from sleepstream.config import DAEMON_SETTINGS, RunConfig, all_settings, load_beds
from sleepstream.errors import ConfigError, UsageError
from sleepstream.settings import Setting
from sleepstream.wiring import SOURCE_SETTINGS

#: Candidate raw values: the first one a setting's parser accepts is used.
_CANDIDATES = ("3", "mqtt://probe.example:1884", "A1,A2", "1/1")
#: Flags of ``run`` that are not settings, each with its own test (test_cli, test_run).
RUN_LOCAL = {"help", "board", "lsl", "source", "config", "profile", "device", "log_level"}
#: Flags that ``replay`` defines itself (owned and tested with commands/replay.py).
REPLAY_LOCAL = {
    "help", "path", "hypnogram", "channel", "speed", "device", "profile", "no_trim",
    "json_summary", "no_record", "print_events", "log_level",
}  # fmt: skip


def _parser(command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"sleepstream.commands.{command}")
    parser = _Parser(prog=f"sleepstream {command}")
    module.add_arguments(parser)
    return parser


def _raw(setting: Setting) -> str:
    for raw in _CANDIDATES:
        try:
            setting.parse(raw)
        except ValueError:
            continue
        return raw
    raise AssertionError(f"no candidate value parses for {setting.flag}")


def _expected(setting: Setting, raw: str | None) -> Any:
    return setting.value(True if setting.switch else setting.parse(raw))


def _field(cfg: RunConfig, setting: Setting) -> Any:
    if setting in SOURCE_SETTINGS:
        return cfg.devices[0].options.get(setting.key)
    if setting not in DAEMON_SETTINGS:  # a sink kind's option
        from sleepstream.sinks.registry import sink_kinds

        kind = next(k for k in sink_kinds() if setting in k.options)
        return getattr(kind.config_of(cfg), setting.target)
    node: Any = cfg
    for part in setting.target.split("."):
        node = getattr(node, part)
    return node


def _argv(setting: Setting) -> tuple[list[str], str | None]:
    if setting.switch:
        return [setting.flag], None
    raw = _raw(setting)
    return [setting.flag, raw], raw


RUN_SETTINGS = [s for s in (*all_settings(), *SOURCE_SETTINGS) if "run" in s.commands]


def _build(argv: list[str]) -> RunConfig:
    from sleepstream.commands.run import build_config

    return build_config(_parser("run").parse_args(argv))


def test_every_flag_of_run_is_a_setting_or_tested_locally():
    """A new flag of ``run`` must come from the settings tables (or be listed here)."""
    dests = {a.dest for a in _parser("run")._actions}
    assert dests - {s.key for s in RUN_SETTINGS} == RUN_LOCAL


def test_every_flag_of_replay_is_a_setting_or_owned_by_replay():
    """The shared daemon flags of ``replay`` come from the same tables as ``run``'s."""
    dests = {a.dest for a in _parser("replay")._actions}
    shared = {s.key for s in all_settings() if "replay" in s.commands}
    assert shared <= dests
    assert dests - shared == REPLAY_LOCAL


@pytest.mark.parametrize("setting", RUN_SETTINGS, ids=lambda s: s.flag)
def test_run_flag_reaches_its_field(setting):
    """``--flag value`` ends up in the RunConfig field (or device option) it names."""
    argv, raw = _argv(setting)
    cfg = _build(argv)
    assert _field(cfg, setting) == _expected(setting, raw)
    assert _field(_build([]), setting) != _expected(setting, raw) or setting.key == "no_record"


@pytest.mark.parametrize("setting", RUN_SETTINGS, ids=lambda s: s.env)
def test_run_environment_variable_reaches_its_field(setting, monkeypatch):
    """``SLEEPSTREAM_<KEY>`` sets the same field as the flag."""
    from sleepstream.commands.run import build_config

    _, raw = _argv(setting)
    monkeypatch.setenv(setting.env, "1" if setting.switch else raw)
    parser = _parser("run")
    _apply_env_defaults(parser, "SLEEPSTREAM")
    cfg = build_config(parser.parse_args([]))
    assert _field(cfg, setting) == _expected(setting, raw)


def _toml(setting: Setting, raw: str | None) -> str:
    if setting.switch:
        return "true"
    types = setting.toml if isinstance(setting.toml, tuple) else (setting.toml,)
    if int in types or float in types:
        return raw or ""
    return '"' + (raw or "") + '"'


BEDS_SETTINGS = [s for s in all_settings() if s.beds]


@pytest.mark.parametrize("setting", BEDS_SETTINGS, ids=lambda s: s.key)
def test_beds_key_reaches_its_field(setting, tmp_path):
    """``[daemon] <key> = value`` in beds.toml sets the field; the flag wins over it."""
    _, raw = _argv(setting)
    beds = tmp_path / "beds.toml"
    beds.write_text(
        f"[daemon]\n{setting.key} = {_toml(setting, raw)}\n"
        '[[device]]\nname = "a"\nsource = "synthetic-night"\n'
    )
    cfg = _build(["--config", str(beds)])
    assert _field(cfg, setting) == _expected(setting, raw)
    assert [d.name for d in cfg.devices] == ["a"]


def test_flag_beats_environment_beats_beds_file(tmp_path, monkeypatch):
    """Precedence: command line, then SLEEPSTREAM_*, then beds.toml, then the default."""
    from sleepstream.commands.run import build_config

    beds = tmp_path / "beds.toml"
    beds.write_text(
        '[daemon]\nlookahead = 1\ntopic_prefix = "file"\nmetrics_port = 9300\n'
        '[[device]]\nname = "a"\nsource = "synthetic-night"\n'
    )
    monkeypatch.setenv("SLEEPSTREAM_LOOKAHEAD", "2")
    monkeypatch.setenv("SLEEPSTREAM_TOPIC_PREFIX", "env")
    parser = _parser("run")
    _apply_env_defaults(parser, "SLEEPSTREAM")
    cfg = build_config(parser.parse_args(["--config", str(beds), "--lookahead", "3"]))
    assert cfg.lookahead == 3  # flag over env over file
    assert cfg.mqtt.topic_prefix == "env"  # env over file
    assert cfg.metrics_port == 9300  # file over default
    assert cfg.outbox_max_events == RunConfig.__dataclass_fields__["outbox_max_events"].default


def test_replay_shared_flags_reach_run_config():
    """``replay`` builds its RunConfig fields from the same settings (its own defaults)."""
    parser = _parser("replay")
    base = ["x.edf", "--hypnogram", "h.txt"]
    defaults = _daemon_args.daemon_settings(parser.parse_args(base))
    assert defaults["metrics_port"] is None and defaults["flush_timeout_s"] == 60.0
    for setting in (s for s in all_settings() if "replay" in s.commands):
        argv, raw = _argv(setting)
        fields = _daemon_args.daemon_settings(parser.parse_args(base + argv))
        cfg = RunConfig(devices=_build([]).devices, **fields)
        assert _field(cfg, setting) == _expected(setting, raw), setting.flag


def _rejects(setting: Setting, raw: str) -> bool:
    if setting.switch:
        return False
    try:
        setting.parse(raw)
    except ValueError:
        return True
    return False


@pytest.mark.parametrize(
    "setting",
    [s for s in RUN_SETTINGS if _rejects(s, "not-a-value")],
    ids=lambda s: s.env,
)
def test_bad_environment_value_names_the_variable_not_the_flag(setting, monkeypatch):
    """``SLEEPSTREAM_SPEED=abc`` (and every other checked setting) is reported as the
    environment variable it came from."""
    from sleepstream.cli import main

    monkeypatch.setenv(setting.env, "not-a-value")
    with pytest.raises(UsageError) as err:
        parser = _parser("run")
        _apply_env_defaults(parser, "SLEEPSTREAM")
    assert setting.env in str(err.value) and setting.flag not in str(err.value)
    assert main(["run", "--no-metrics"]) == UsageError.exit_code


@pytest.mark.parametrize(
    "setting",
    [s for s in BEDS_SETTINGS if _rejects(s, "not-a-value")],
    ids=lambda s: s.key,
)
def test_bad_beds_value_names_file_key_and_value(setting, tmp_path):
    """A bad value in beds.toml names the file, ``daemon.<key>`` and the value."""
    beds = tmp_path / "beds.toml"
    beds.write_text(
        f'[daemon]\n{setting.key} = "not-a-value"\n[[device]]\nname = "a"\nsource = "x"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_beds(beds)
    assert str(beds) in str(err.value) and f"daemon.{setting.key}" in str(err.value)
    assert "not-a-value" in str(err.value)


def test_every_setting_targets_a_real_field():
    """A setting whose target is not a RunConfig field would be dropped silently."""
    cfg = _build([])
    for s in DAEMON_SETTINGS:
        node: Any = cfg
        for part in s.target.split("."):
            assert hasattr(node, part), s.target
            node = getattr(node, part)
    keys = [s.key for s in (*all_settings(), *SOURCE_SETTINGS)]
    assert len(keys) == len(set(keys)), "two settings share a flag"


def test_state_dir_empty_string_means_the_default(monkeypatch, tmp_path):
    """``--state-dir ""`` (or SLEEPSTREAM_STATE_DIR="") is the default folder, not the cwd."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert _build(["--state-dir", ""]).state_dir == tmp_path / "sleepstream"
    assert _build(["--state-dir", "~/x"]).state_dir == Path("~/x").expanduser()


@pytest.mark.parametrize(
    "argv",
    [["--serial-port", "/dev/ttyUSB0"], ["--device", "bedroom"], ["--profile", "openbci"],
     ["--channel", "C3"], ["--speed", "2"]],
)  # fmt: skip
def test_per_device_flag_with_beds_file_is_refused_not_ignored(tmp_path, argv):
    """A per-device flag (or its SLEEPSTREAM_* variable) cannot silently apply to, or be
    dropped for, the beds of a beds file: it is refused, naming the flag."""
    beds = tmp_path / "beds.toml"
    beds.write_text('[[device]]\nname = "a"\nsource = "synthetic-night"\n')
    with pytest.raises(UsageError, match=argv[0]):
        _build(["--config", str(beds), *argv])


def test_flag_with_an_optional_value_from_flag_env_and_beds(tmp_path, monkeypatch):
    """``--probe-opt`` alone is the default value, ``--probe-opt X`` is X; the environment
    takes 1/true (default) or a value, beds.toml true/false or a value."""
    from dataclasses import dataclass

    from sleepstream import settings as st
    from sleepstream.sinks.registry import SinkKind, register_sink, unregister_sink

    @dataclass(frozen=True)
    class OptConfig:
        prefix: str | None = None

    kind = SinkKind(
        "probe_opt", "x", OptConfig, lambda c, x: None,
        (Setting("probe_opt", "prefix", "on, with a prefix", st.text, optional="default"),),
    )  # fmt: skip
    register_sink("probe_opt", kind)
    try:
        assert _build([]).sinks.get("probe_opt") is None
        assert _build(["--probe-opt"]).sinks["probe_opt"] == OptConfig("default")
        assert _build(["--probe-opt", "mine"]).sinks["probe_opt"] == OptConfig("mine")
        for raw, want in (("1", "default"), ("true", "default"), ("other", "other")):
            monkeypatch.setenv("SLEEPSTREAM_PROBE_OPT", raw)
            parser = _parser("run")
            _apply_env_defaults(parser, "SLEEPSTREAM")
            from sleepstream.commands.run import build_config

            assert build_config(parser.parse_args([])).sinks["probe_opt"] == OptConfig(want)
        monkeypatch.delenv("SLEEPSTREAM_PROBE_OPT")
        beds = tmp_path / "beds.toml"
        for value, want in (("true", "default"), ('"b"', "b"), ("false", None)):
            beds.write_text(f'[daemon]\nprobe_opt = {value}\n[[device]]\nname = "a"\n'
                            'source = "synthetic-night"\n')  # fmt: skip
            got = load_beds(beds).sinks.get("probe_opt")
            assert (got.prefix if got else None) == want, value
    finally:
        unregister_sink("probe_opt")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("speed = -3", "device[0].speed = -3"),
        ('start = "soon"', "device[0].start"),
        ("ip_port = 70000", "device[0].ip_port = 70000"),
        ("reference = []", "device[0].reference"),
    ],
)
def test_beds_device_options_are_checked_like_their_flags(tmp_path, line, needle):
    """A [[device]] key that `run` also takes as a flag is checked by the same parser, and
    the error names the file and the key (not the flag)."""
    beds = tmp_path / "beds.toml"
    beds.write_text(f'[[device]]\nname = "a"\nsource = "synthetic-night"\n{line}\n')
    with pytest.raises(ConfigError) as err:
        load_beds(beds)
    assert str(beds) in str(err.value) and needle in str(err.value)


def test_beds_option_the_source_does_not_take_names_the_key(tmp_path):
    """An option the device's source kind does not take names the beds key, not a flag."""
    from sleepstream.wiring import default_source

    beds = tmp_path / "beds.toml"
    beds.write_text('[[device]]\nname = "a"\nsource = "lsl:X"\nserial_port = "/dev/x"\n')
    (dev,) = load_beds(beds).devices
    with pytest.raises(UsageError, match=r"device\[0\]\.serial_port does not apply to lsl"):
        default_source(dev)


def test_environment_value_outside_the_choices_is_refused(monkeypatch):
    """SLEEPSTREAM_LOG_LEVEL=loud is refused naming the variable (argparse's choices
    check does not see environment defaults)."""
    monkeypatch.setenv("SLEEPSTREAM_LOG_LEVEL", "loud")
    with pytest.raises(UsageError, match="SLEEPSTREAM_LOG_LEVEL='loud': expected one of debug"):
        _apply_env_defaults(_parser("run"), "SLEEPSTREAM")


def test_every_path_setting_refuses_a_path_that_cannot_exist():
    """Every path flag (model, state dir, TLS files, password file, playback file...)
    refuses a name over 255 bytes, a NUL, or a path over 4095 bytes where it is read, so
    no later code meets 'File name too long' (the class of faults' R9/R16)."""
    from sleepstream import settings as st

    paths = [s for s in (*all_settings(), *SOURCE_SETTINGS) if _accepts(s, "/tmp/ok") and
             _rejects(s, "/tmp/" + "x" * 300)]  # fmt: skip
    keys = {s.key for s in paths}
    assert {"model", "state_dir", "mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file",
            "mqtt_password_file", "file"} <= keys, keys  # fmt: skip
    for s in paths:
        for bad in ("/tmp/a\x00b", "/" + "/".join(["y" * 200] * 25)):
            assert _rejects(s, bad), (s.key, bad[:20])
    assert st.check_path("/tmp/" + "x" * 255)


def _accepts(setting: Setting, raw: str) -> bool:
    return not setting.switch and not _rejects(setting, raw)


# ------------------------------------------------ MQTT flags of the client commands


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> Path:
    """A self-signed certificate + key (openssl), a file with both, and a password file."""
    import subprocess

    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "k.pem"),
         "-out", str(d / "c.pem"), "-subj", "/CN=127.0.0.1", "-days", "2"],
        check=True, capture_output=True,
    )  # fmt: skip
    (d / "both.pem").write_text((d / "c.pem").read_text() + (d / "k.pem").read_text())
    (d / "pw").write_text("s3cret\n")
    return d


def _mqtt_cases(d: Path) -> dict[str, tuple[list[str], str, Any]]:
    """setting key -> (argv, MqttSettings attribute, expected value); argv[0:2] is the
    setting's own flag and value, the rest companions it needs."""
    return {
        "mqtt": (["--mqtt", "mqtt://probe.example:1884"], "port", 1884),
        "mqtt_username": (["--mqtt-username", "night"], "username", "night"),
        "mqtt_password_file": (["--mqtt-password-file", str(d / "pw")], "password", "s3cret"),
        "mqtt_ca_file": (["--mqtt-ca-file", str(d / "c.pem")], "ca_file", d / "c.pem"),
        "mqtt_cert_file": (["--mqtt-cert-file", str(d / "both.pem")], "cert_file", d / "both.pem"),
        "mqtt_key_file": (
            ["--mqtt-key-file", str(d / "k.pem"), "--mqtt-cert-file", str(d / "c.pem")],
            "key_file",
            d / "k.pem",
        ),  # fmt: skip
        "mqtt_tls_insecure": (["--mqtt-tls-insecure"], "tls_insecure", True),
        "mqtt_client_id": (["--mqtt-client-id", "probe-1"], "client_id", "probe-1"),
        "topic_prefix": (["--topic-prefix", "probe"], "topic_prefix", "probe"),
    }


MQTT_SETTINGS = {s.key: s for s in all_settings() if s.key in _daemon_args.MQTT_KEYS}


def test_every_mqtt_setting_has_a_client_command_case(tmp_path):
    """A new MQTT setting must be added to the cases below (so watch/ha-forget see it)."""
    assert set(_mqtt_cases(tmp_path)) == set(_daemon_args.MQTT_KEYS) == set(MQTT_SETTINGS)


@pytest.mark.parametrize("how", ["flag", "env"])
@pytest.mark.parametrize("key", _daemon_args.MQTT_KEYS)
@pytest.mark.parametrize("command", ["watch", "ha_forget"])
def test_mqtt_flag_of_a_client_command_reaches_its_connection(
    command, key, how, tls_files, monkeypatch
):
    """Each MQTT flag (and its SLEEPSTREAM_* variable) of ``watch`` and ``ha-forget``
    reaches the MqttSettings they connect with, through the daemon's one mapping
    (the lead's duplicates: three copies of MqttOptions -> MqttSettings had drifted)."""
    monkeypatch.delenv("SLEEPSTREAM_MQTT_PASSWORD", raising=False)
    argv, attr, want = _mqtt_cases(tls_files)[key]
    positional = ["bed1"] if command == "ha_forget" else []
    parser = _parser(command)
    if how == "env":
        setting = MQTT_SETTINGS[key]
        monkeypatch.setenv(setting.env, "1" if setting.switch else argv[1])
        argv = argv[1 if setting.switch else 2 :]
        _apply_env_defaults(parser, "SLEEPSTREAM")
    settings = _daemon_args.client_settings(parser.parse_args(positional + argv))
    default = _daemon_args.client_settings(_parser(command).parse_args(positional))
    assert getattr(settings, attr) == want != getattr(default, attr)
    assert (default.host, default.port) == ("127.0.0.1", 1883)


def test_mqtt_options_map_onto_settings_in_one_place():
    """Only ``mqtt_settings.settings_of`` turns MQTT options into MqttSettings: any other
    call of ``mqtt_settings(...)`` in the package passes a URL alone (the embedded broker's
    probe), so watch, ha-forget and the daemon cannot drift apart again."""
    import ast

    import sleepstream

    root = Path(sleepstream.__file__).parent
    twins = []
    for path in root.rglob("*.py"):
        if path.name == "mqtt_settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "mqtt_settings"
                and (node.keywords or len(node.args) > 1)
            ):
                twins.append(f"{path.relative_to(root)}:{node.lineno}")
    assert twins == []
