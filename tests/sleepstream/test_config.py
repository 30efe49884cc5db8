"""RunConfig and the beds.toml loader: validated once, errors name file, key and value."""

import pytest

from sleepstream.config import DeviceConfig, RunConfig, default_state_dir, load_beds
from sleepstream.errors import ConfigError, UsageError


def _write(tmp_path, text):
    p = tmp_path / "beds.toml"
    p.write_text(text)
    return p


def test_load_beds_reads_daemon_and_devices(tmp_path):
    """Daemon keys and [[device]] tables map onto the frozen RunConfig; extra keys are options."""
    cfg = load_beds(
        _write(
            tmp_path,
            """
[daemon]
mqtt = "mqtt://broker.local:1883"
metrics_port = 9200
lookahead = 2
state_dir = "/var/lib/x"
[[device]]
name = "bed-1"
source = "board:cyton"
serial_port = "/dev/ttyUSB0"
[[device]]
name = "bed-2"
source = "lsl:Bed2"
profile = "lsl-generic"
""",
        )
    )
    assert [d.name for d in cfg.devices] == ["bed-1", "bed-2"]
    assert cfg.devices[0].options == {"serial_port": "/dev/ttyUSB0"}
    assert cfg.devices[1].profile == "lsl-generic"
    assert cfg.mqtt.url == "mqtt://broker.local:1883"
    assert (cfg.metrics_port, cfg.lookahead, str(cfg.state_dir)) == (9200, 2, "/var/lib/x")
    with pytest.raises(AttributeError):
        cfg.lookahead = 3  # frozen


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[daemon\n", "not valid TOML"),
        ('[daemon]\nmetrics_port = "x"\n[[device]]\nname="a"\nsource="lsl:x"\n', "metrics_port"),
        ('[daemon]\nbogus = 1\n[[device]]\nname="a"\nsource="lsl:x"\n', "daemon.bogus"),
        ('[[device]]\nname = "a/b"\nsource = "lsl:x"\n', "device[0].name"),
        ('[[device]]\nsource = "lsl:x"\n', "device[0].name is missing"),
        ("[daemon]\n", "[[device]]"),
        ('[[device]]\nname="a"\nsource="lsl:x"\n[[device]]\nname="a"\nsource="lsl:y"\n', "unique"),
        ('[daemon]\nmqtt_password = "x"\n[[device]]\nname="a"\nsource="lsl:x"\n', "mqtt_password"),
    ],
)
def test_load_beds_bad_file_names_file_key_and_value(tmp_path, text, needle):
    """Every malformed beds.toml is a ConfigError naming the file and the culprit."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_beds(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_load_beds_missing_file_is_a_config_error(tmp_path):
    """A config file that does not exist names its path."""
    with pytest.raises(ConfigError, match="not found"):
        load_beds(tmp_path / "nope.toml")


def test_run_config_rejects_bad_values():
    """Negative lookahead, bad ports and bad device names are usage errors."""
    dev = (DeviceConfig("bed1", "synthetic-night"),)
    with pytest.raises(UsageError, match="lookahead"):
        RunConfig(devices=dev, lookahead=-1)
    with pytest.raises(UsageError, match="metrics-port"):
        RunConfig(devices=dev, metrics_port=70000)
    with pytest.raises(UsageError, match="device"):
        RunConfig(devices=(DeviceConfig("bed/1", "synthetic-night"),))


def test_default_state_dir_prefers_systemd_state_directory(monkeypatch, tmp_path):
    """$STATE_DIRECTORY wins; otherwise the per-user data directory."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "a") + ":" + str(tmp_path / "b"))
    assert default_state_dir() == tmp_path / "a"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "sleepstream"


@pytest.mark.parametrize("bad", ["bed1\n", "bed 1", "a/b", "..", "-x", "CON", "bed1\x00"])
def test_device_names_are_checked_in_one_place_for_flags_and_files(tmp_path, bad):
    """``--device $'bed1\\n'`` and the same name in beds.toml are refused (names.py rules),
    naming the flag or the file and key."""
    with pytest.raises(UsageError, match="--device"):
        RunConfig(devices=(DeviceConfig(bad, "synthetic-night"),))
    import json

    path = _write(tmp_path, f'[[device]]\nname = {json.dumps(bad)}\nsource = "synthetic-night"\n')
    with pytest.raises(ConfigError) as err:
        load_beds(path)
    assert "device[0].name" in str(err.value) and str(path) in str(err.value)


def test_shard_keeps_a_stable_share_of_the_beds_and_refuses_an_empty_one(tmp_path):
    """--shard i/n keeps the beds whose name hashes to shard i; the shards of n partition
    the beds file; a shard that owns no bed is an error naming it."""
    from sleepstream.names import shard_of

    beds = "".join(f'[[device]]\nname = "bed{k}"\nsource = "synthetic-night"\n' for k in range(9))
    path = _write(tmp_path, beds)
    parts = [load_beds(path, shard=(i, 3)).devices for i in (1, 2, 3)]
    names = [d.name for part in parts for d in part]
    assert sorted(names) == sorted(f"bed{k}" for k in range(9))
    for i, part in enumerate(parts):
        assert all(shard_of(d.name, 3) == i for d in part)
    one = _write(tmp_path, '[[device]]\nname = "solo"\nsource = "synthetic-night"\n')
    empty = next(i for i in (1, 2) if shard_of("solo", 2) != i - 1)
    with pytest.raises(ConfigError, match=f"--shard {empty}/2"):
        load_beds(one, shard=(empty, 2))
