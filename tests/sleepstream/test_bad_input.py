"""Bad input at the CLI level (issue 6): one test per case, in a subprocess.

Each case must end with one clear ``sleepstream: error: ...`` line naming the culprit,
the exit code of its error class (:mod:`sleepstream.errors`) and no traceback. Mid-stream
bad samples (a saturated burst in an EDF, a NaN/inf burst from a real LSL outlet) must
give flagged or ``unscored`` epochs while the daemon keeps scoring and exits 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sleepstream import errors

# every test here runs a whole daemon (most in a subprocess): the slow tier
pytestmark = [pytest.mark.network, pytest.mark.slow]

SC4001_PSG = "SC4001E0-PSG.edf"
SC4001_HYP = "SC4001EC-Hypnogram.edf"


@pytest.fixture
def model(request) -> Path:
    """The shipped default student when present, else the tiny test student."""
    from sleepstream.inference import default_model_path

    path = default_model_path()
    return path if path.is_file() else request.getfixturevalue("tiny_model")


@pytest.fixture
def cli(tmp_path, helpers, model):
    """``cli(*args)`` -> CompletedProcess of ``python -m sleepstream ...`` with a private
    state dir, a free embedded-broker port, no metrics listener and a short timeout."""

    def run(
        *args: str, timeout: float = 120, model_flag: bool = True
    ) -> subprocess.CompletedProcess:
        argv = list(args)
        if argv[0] in ("run", "replay"):
            argv += ["--state-dir", str(tmp_path / "state")]
            if "--metrics-port" not in argv:
                argv.append("--no-metrics")
            argv += ["--broker-port", str(helpers.free_port())]
            if model_flag:
                argv += ["--model", str(model)]
        return subprocess.run(
            helpers.sleepstream_cmd(*argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=helpers.daemon_env(),
        )

    return run


def _error_line(proc: subprocess.CompletedProcess, exit_code: int, *needles: str) -> str:
    """Check the exit code, the one-line error, and that there is no traceback."""
    assert proc.returncode == exit_code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("sleepstream: error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _truncated_copy(sc4001_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "truncated.edf"
    with open(sc4001_dir / SC4001_PSG, "rb") as f:
        path.write_bytes(f.read(200_000))  # the header and a few data records
    return path


# -- corrupt / truncated EDF ------------------------------------------------------------
def test_bad_input_truncated_edf_replay_exits_with_truncated_file_code(sc4001_dir, tmp_path, cli):
    """``replay`` of a truncated EDF: TruncatedFileError's exit code, file named."""
    path = _truncated_copy(sc4001_dir, tmp_path)
    proc = cli("replay", str(path), "--hypnogram", str(sc4001_dir / SC4001_HYP))
    _error_line(proc, errors.TruncatedFileError.exit_code, str(path), "truncated")


def test_bad_input_truncated_edf_run_source_exits_with_truncated_file_code(
    sc4001_dir, tmp_path, cli
):
    """``run --source edf:`` of a truncated EDF: same class, same code, file named."""
    path = _truncated_copy(sc4001_dir, tmp_path)
    proc = cli("run", "--source", f"edf:{path}", "--speed", "max", "--quiet")
    _error_line(proc, errors.TruncatedFileError.exit_code, str(path), "truncated")


def test_bad_input_corrupt_edf_header_exits_with_not_edf_code(sc4001_dir, tmp_path, cli):
    """An EDF whose fixed header is garbage: NotEdfError's code, for replay and run."""
    path = tmp_path / "corrupt.edf"
    data = bytearray((sc4001_dir / SC4001_PSG).read_bytes()[:300_000])
    data[0:256] = b"\xff" * 256
    path.write_bytes(bytes(data))
    proc = cli("replay", str(path), "--hypnogram", str(sc4001_dir / SC4001_HYP))
    _error_line(proc, errors.NotEdfError.exit_code, str(path))
    proc = cli("run", "--source", f"edf:{path}", "--quiet")
    _error_line(proc, errors.NotEdfError.exit_code, str(path))


# -- wrong channel, unknown board -----------------------------------------------------
def test_bad_input_wrong_channel_lists_available_channels(sc4001_dir, cli):
    """A channel that is not in the file: ChannelNotFoundError's code; the message lists
    the channels that are there."""
    psg = sc4001_dir / SC4001_PSG
    proc = cli(
        "replay", str(psg), "--hypnogram", str(sc4001_dir / SC4001_HYP), "--channel", "EEG C3"
    )
    _error_line(proc, errors.ChannelNotFoundError.exit_code, "'EEG C3'", "EEG Fpz-Cz")
    proc = cli("run", "--source", f"edf:{psg}", "--channel", "EEG C3", "--quiet")
    _error_line(proc, errors.ChannelNotFoundError.exit_code, "'EEG C3'", "EEG Fpz-Cz")


def test_bad_input_unknown_board_lists_valid_boards(cli):
    """``run --board toaster``: SourceError's code; the message lists the valid boards."""
    proc = cli("run", "--board", "toaster", "--quiet")
    _error_line(proc, errors.SourceError.exit_code, "'toaster'", "openbci", "synthetic")


# -- malformed TOML ---------------------------------------------------------------------
def test_bad_input_malformed_profile_toml_names_file_and_position(tmp_path, cli):
    """A profile that is not TOML: ConfigError's code, the file named."""
    path = tmp_path / "broken-profile.toml"
    path.write_text('name = "x"\n[signal\nfs = 100\n')
    proc = cli("run", "--source", "synthetic-night", "--profile", str(path), "--quiet")
    _error_line(proc, errors.ConfigError.exit_code, str(path), "TOML")


def test_bad_input_profile_bad_value_names_file_key_and_value(tmp_path, cli):
    """A profile with ``fs = "fast"``: ConfigError naming the file, key and value."""
    shipped = Path(__file__).resolve().parents[2] / "profiles" / "synthetic.toml"
    text = shipped.read_text()
    assert "\nfs = " in text
    lines = ['fs = "fast"' if ln.startswith("fs = ") else ln for ln in text.splitlines()]
    path = tmp_path / "bad-fs.toml"
    path.write_text("\n".join(lines) + "\n")
    proc = cli("run", "--source", "synthetic-night", "--profile", str(path), "--quiet")
    _error_line(proc, errors.ConfigError.exit_code, str(path), "signal.fs", "fast")


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[daemon\n", ("TOML",)),
        ('[daemon]\nlookahead = "two"\n[[device]]\nname = "a"\nsource = "synthetic-night"\n',
         ("daemon.lookahead", "two")),
        ('[[device]]\nname = "a"\nsource = "synthetic-night"\nspeed = "warp"\n',
         ("device[0].speed", "warp")),
    ],
)  # fmt: skip
def test_bad_input_malformed_beds_toml_names_file_key_and_value(tmp_path, cli, text, needles):
    """A broken beds.toml, a bad daemon key or a bad device option: ConfigError naming the
    file, the key and the value (a device option is checked like its flag)."""
    path = tmp_path / "beds.toml"
    path.write_text(text)
    proc = cli("run", "--config", str(path), "--quiet")
    line = _error_line(proc, errors.ConfigError.exit_code, *needles)
    assert str(path) in line


# -- invalid CLI values -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--speed", "-3"), "--speed"),
        (("--speed", "nan"), "--speed"),
        (("--metrics-port", "70000"), "--metrics-port 70000"),
        (("--lookahead", "-1"), "--lookahead -1"),
        (("--outbox-max-events", "0"), "--outbox-max-events"),
        (("--device", "bed/1"), "bed/1"),
    ],
)
def test_bad_input_invalid_cli_value_is_a_usage_error(cli, args, needle):
    """An invalid flag value: UsageError's exit code (2) and the flag named."""
    argv = ["run", "--source", "synthetic-night", "--quiet", *args]
    proc = cli(*argv)
    _error_line(proc, errors.UsageError.exit_code, needle)


def test_bad_input_replay_invalid_speed_is_a_usage_error(sc4001_dir, cli):
    """``replay --speed -3`` fails before reading anything."""
    proc = cli(
        "replay", str(sc4001_dir / SC4001_PSG), "--hypnogram", str(sc4001_dir / SC4001_HYP),
        "--speed", "-3",
    )  # fmt: skip
    _error_line(proc, errors.UsageError.exit_code, "--speed")


# -- models -----------------------------------------------------------------------------
def _graph_entries(card: dict) -> list[dict]:
    """The card's graph entries (``onnx`` in window mode, ``split.encoder``/``head``)."""
    if "onnx" in card:
        return [card["onnx"]]
    return [card["split"]["encoder"], card["split"]["head"]]


def _copy_model(model: Path, dest: Path) -> tuple[Path, Path]:
    """Copy a model (given as its ``.onnx`` or its ``.card.json``) with every graph its
    card names; return (the copied card, the copied first graph file)."""
    card = model if model.name.endswith(".card.json") else model.with_suffix(".card.json")
    dest.mkdir()
    shutil.copy(card, dest / card.name)
    entries = _graph_entries(json.loads(card.read_text()))
    for entry in entries:
        shutil.copy(card.parent / entry["file"], dest / entry["file"])
    return dest / card.name, dest / entries[0]["file"]


def test_bad_input_model_sha256_mismatch_is_a_model_error(model, tmp_path, cli):
    """A model whose bytes changed after its card was written: ModelError's code, sha named."""
    card_path, path = _copy_model(model, tmp_path / "m")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    proc = cli("run", "--source", "synthetic-night", "--quiet", "--model", str(card_path),
               model_flag=False)  # fmt: skip
    _error_line(proc, errors.ModelError.exit_code, str(path), "sha256")


def test_bad_input_unreadable_model_is_a_model_error(model, tmp_path, cli):
    """A truncated ONNX file whose card matches it (so the hash passes): ONNX Runtime
    cannot parse it; ModelError's code, file named."""
    card_path, path = _copy_model(model, tmp_path / "m")
    data = path.read_bytes()[: min(50_000, path.stat().st_size // 2)]
    path.write_bytes(data)
    card = json.loads(card_path.read_text())
    _graph_entries(card)[0].update(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    card_path.write_text(json.dumps(card))
    proc = cli("run", "--source", "synthetic-night", "--quiet", "--model", str(card_path),
               model_flag=False)  # fmt: skip
    _error_line(proc, errors.ModelError.exit_code, str(path))


def test_bad_input_model_without_card_is_a_model_error(model, tmp_path, cli):
    """A model file with no card next to it is refused (models load only with a card)."""
    card_path, path = _copy_model(model, tmp_path / "m")
    card_path.unlink()
    proc = cli("run", "--source", "synthetic-night", "--quiet", "--model", str(path),
               model_flag=False)  # fmt: skip
    _error_line(proc, errors.ModelError.exit_code, "card")


# -- secrets ----------------------------------------------------------------------------
def test_bad_input_password_in_mqtt_url_is_refused_and_not_echoed(cli):
    """``--mqtt mqtt://user:secret@host`` is refused (argv is public); the secret is not
    printed back."""
    proc = cli(
        "run", "--source", "synthetic-night", "--quiet",
        "--mqtt", "mqtt://alice:hunter2-secret@127.0.0.1:1",
    )  # fmt: skip
    line = _error_line(proc, errors.UsageError.exit_code, "password")
    assert "hunter2-secret" not in proc.stderr + proc.stdout, line


# -- mid-stream bad samples -------------------------------------------------------------
def test_bad_input_saturated_burst_in_edf_is_flagged_and_later_epochs_scored(
    sc4001_dir, tmp_path, cli
):
    """A synthetic EDF (edfio) with two epochs saturated at the ADC range streams through
    ``run --source edf:``: those epochs are flagged ``clipping`` (or unscored), every other
    epoch is scored, no epoch is missing, exit 0. (EDF stores integers: it cannot carry
    NaN; the NaN/inf case goes through LSL below.)"""
    edfio = pytest.importorskip("edfio")
    x = np.load(sc4001_dir / "SC4001E0_FpzCz_30s_trimmed.npz")["x"][200:210].reshape(-1)
    x = np.clip(x.astype(np.float64), -150.0, 150.0)
    burst = slice(4 * 3000, 6 * 3000)
    x[burst] = np.where(np.arange(2 * 3000) % 20 < 10, 192.0, -192.0)  # saturated square
    sig = edfio.EdfSignal(x, sampling_frequency=100.0, label="EEG Fpz-Cz",
                          physical_dimension="uV", physical_range=(-192.0, 192.0))  # fmt: skip
    path = tmp_path / "burst.edf"
    edfio.Edf([sig]).write(path)
    proc = cli("run", "--source", f"edf:{path}", "--speed", "max", "--json", "--device", "burst")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    events = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert [e["epoch_index"] for e in events] == list(range(10))
    for e in events[4:6]:
        assert e["stage"] == "unscored" or "clipping" in e["quality"], e
    clean = [e for i, e in enumerate(events) if i not in (4, 5)]
    assert all(e["stage"] != "unscored" for e in clean), clean
    assert all("clipping" not in e["quality"] for e in clean[1:]), clean


def test_bad_input_nan_inf_burst_from_lsl_gives_unscored_nonfinite_and_daemon_goes_on(
    sc4001_dir, tmp_path, helpers, model
):
    """A real LSL outlet sends a NaN burst (epoch 3) and an inf burst (epoch 4) into
    ``sleepstream run --lsl``: those epochs are ``unscored`` with reason ``nonfinite``,
    the epochs after them are scored, and SIGTERM ends the daemon with exit 0."""
    pylsl = pytest.importorskip("pylsl")
    from sleepstream.sources.lsl import load_lsl_config

    load_lsl_config()  # also exports LSLAPICFG for the daemon subprocess
    x = np.load(sc4001_dir / "SC4001E0_FpzCz_30s_trimmed.npz")["x"][300:310].reshape(-1)
    x = x.astype(np.float32)
    x[3 * 3000 : 4 * 3000] = np.nan
    x[4 * 3000 : 5 * 3000 : 2] = np.inf
    x[4 * 3000 + 1 : 5 * 3000 : 2] = -np.inf
    name = f"sleepstream-nan-{os.getpid()}"
    stop = threading.Event()

    def push():
        info = pylsl.StreamInfo(name, "EEG", 1, 100.0, "float32", f"{name}-id")
        info.desc().append_child("channels").append_child("channel").append_child_value(
            "label", "Fpz-Cz"
        )
        outlet = pylsl.StreamOutlet(info, chunk_size=50)
        if not outlet.wait_for_consumers(60):
            return
        t0 = pylsl.local_clock()
        for i in range(0, x.size, 50):
            if stop.is_set():
                break
            outlet.push_chunk(x[i : i + 50, None].tolist(), t0 + (i + 49) / 100.0)
            time.sleep(0.5 / 30)  # 30x real time
        stop.wait(60)
        del outlet

    out_path = tmp_path / "stdout.jsonl"
    thread = threading.Thread(target=push, daemon=True)
    thread.start()
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            helpers.sleepstream_cmd(
                "run",
                "--lsl",
                name,
                "--timeout",
                "30",
                "--profile",
                "lsl-generic",
                "--json",
                "--device",
                "nanbed",
                "--model",
                str(model),
                "--state-dir",
                str(tmp_path / "s"),
                "--no-metrics",
                "--broker-port",
                str(helpers.free_port()),
            ),  # fmt: skip
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            env=helpers.daemon_env(),
        )
    try:
        deadline = time.monotonic() + 120
        events: list[dict] = []
        while time.monotonic() < deadline and proc.poll() is None:
            events = [json.loads(ln) for ln in out_path.read_text().splitlines() if ln]
            if len(events) >= 8:
                break
            time.sleep(0.2)
        running = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
        thread.join(10)
    assert running, err[-2000:]
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    events = [json.loads(ln) for ln in out_path.read_text().splitlines() if ln]
    assert [e["epoch_index"] for e in events] == list(range(len(events)))
    assert len(events) >= 8
    for e in events[3:5]:
        assert e["stage"] == "unscored" and "nonfinite" in e["reasons"], e
    assert all(e["stage"] != "unscored" for e in events[:3]), events[:3]
    assert all(e["stage"] != "unscored" for e in events[5:8]), events[5:8]
