"""``sleepstream replay`` of SC4001 against real brokers (acceptance of the daemon issue)."""

import json
import subprocess
from pathlib import Path

import jsonschema
import numpy as np
import pytest

pytestmark = [pytest.mark.network, pytest.mark.slow]


def _replay_args(sc4001_dir, model, state_dir, *extra):
    return [
        "replay",
        str(sc4001_dir / "SC4001E0-PSG.edf"),
        "--hypnogram", str(sc4001_dir / "SC4001EC-Hypnogram.edf"),
        "--channel", "EEG Fpz-Cz",
        "--speed", "max",
        "--model", str(model),
        "--state-dir", str(state_dir),
        "--json-summary",
        *extra,
    ]  # fmt: skip


def _distill_causal(sc4001_dir, model):
    """Reference figures: distill's causal evaluation of the same ONNX model on SC4001."""
    from distill.data import load_sc4001_recording
    from distill.evaluate import onnx_predictor, score_fold
    from sleepstream.scoring import agreement

    predict, seq, _card = onnx_predictor(model)
    rec = load_sc4001_recording(sc4001_dir)
    yt, yp = score_fold(predict, [rec], None, seq, ["causal"])["causal"]
    return rec.n_epochs, agreement(yt, yp)


def test_replay_sc4001_to_mosquitto_matches_distill_causal_evaluation(
    sc4001_dir, tiny_model, mosquitto, subscribe, stage_schema, tmp_path, helpers
):
    """841 schema-valid events in order; accuracy and kappa equal distill's causal evaluation."""
    sub = subscribe(mosquitto.port, "sleepstream/replay/stage")
    proc = subprocess.run(
        helpers.sleepstream_cmd(
            *_replay_args(sc4001_dir, tiny_model, tmp_path / "state", "--mqtt", mosquitto.url)
        ),
        capture_output=True,
        text=True,
        timeout=400,
        env=helpers.daemon_env(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sub.wait_for(lambda s: len(s.stage_events()) >= 841, 30)
    events = sub.stage_events()
    assert len(events) == 841
    assert [e["epoch_index"] for e in events] == list(range(841))
    assert len({e["event_id"] for e in events}) == 841
    validator = jsonschema.Draft202012Validator(stage_schema)
    for e in events:
        validator.validate(e)
    assert summary["n_epochs_published"] == 841 and summary["n_epochs_scored"] == 841
    assert summary["latency_ms_p50"] > 0 and summary["latency_ms_p99"] >= summary["latency_ms_p50"]
    n_ref, ref = _distill_causal(sc4001_dir, tiny_model)
    assert n_ref == 841
    assert abs(summary["accuracy"] - ref["accuracy"]) <= 1e-6
    assert abs(summary["kappa"] - ref["kappa"]) <= 1e-6
    assert abs(summary["macro_f1"] - ref["macro_f1"]) <= 1e-6
    # the published stages are the ones that were scored
    counts = {k: 0 for k in ("W", "N1", "N2", "N3", "REM")}
    for e in events:
        counts[e["stage"]] += 1
    assert list(counts.values()) == list(np.asarray(summary["confusion"]).sum(axis=0))


def test_replay_through_embedded_broker_is_seen_by_watch(sc4001_dir, tiny_model, tmp_path, helpers):
    """Replay on the embedded amqtt broker; ``sleepstream watch`` sees every epoch from its
    subscription on, in order, to the night's last (840).

    The broker lives in the replay process, so watch can only subscribe once the replay
    has started: at --speed max (30-s chunks) the first epochs may be published before
    that, and a clean MQTT session never receives those. The replay itself must report
    all 841 published; watch is stopped once the replay has exited."""
    port = helpers.free_port()
    env = helpers.daemon_env()
    out_file = (tmp_path / "watch.out").open("w+")  # a file, not a pipe: never blocks watch
    watch = subprocess.Popen(
        helpers.sleepstream_cmd(
            "watch",
            "--mqtt",
            f"mqtt://127.0.0.1:{port}",
            "--device",
            "replay",
            "--json",
            "--connect-timeout",
            "300",
        ),  # fmt: skip
        stdout=out_file,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        replay = subprocess.run(
            helpers.sleepstream_cmd(
                *_replay_args(
                    sc4001_dir, tiny_model, tmp_path / "state", "--broker-port", str(port)
                )
            ),
            capture_output=True,
            text=True,
            timeout=400,
            env=env,
        )
        assert replay.returncode == 0, replay.stderr[-2000:]
        # the broker handed every event to its subscribers before the replay exited
        watch.terminate()
        _, err = watch.communicate(timeout=60)
        out = (tmp_path / "watch.out").read_text()
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        out_file.close()
    events = [json.loads(line) for line in out.splitlines()]
    assert events, err[-2000:]
    first = events[0]["epoch_index"]
    # how early watch subscribed depends on the machine's load; from then on, nothing lacks
    got = [e["epoch_index"] for e in events]
    assert got == list(range(first, 841)), (got[:20], replay.stderr[-3000:])
    assert json.loads(replay.stdout.strip().splitlines()[-1])["n_epochs_published"] == 841


def test_replay_survives_broker_killed_for_ten_seconds(
    sc4001_dir, tiny_model, persistent_mosquitto, subscribe, tmp_path, helpers
):
    """Fault injection: SIGKILL the broker mid-night, keep it down 10 s, restart it: the
    replay never exits early and the subscriber ends with all 841 event_ids, in order,
    exactly once after dedup, even those the broker had acknowledged and then lost."""
    import time

    broker = persistent_mosquitto
    sub = subscribe(broker.port, "sleepstream/replay/stage", persistent=True)
    time.sleep(2.5)  # the broker autosaves the subscriber's session
    proc = subprocess.Popen(
        helpers.sleepstream_cmd(
            *_replay_args(
                sc4001_dir, tiny_model, tmp_path / "state", "--mqtt", broker.url, "--no-record"
            )
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=helpers.daemon_env(),
    )
    try:
        assert sub.wait_for(lambda s: len(s.stage_events()) >= 50, 300)
        broker.kill()
        time.sleep(10.0)
        still_running_or_ok = proc.poll() in (None, 0)
        broker.start()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert still_running_or_ok and proc.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["n_epochs_published"] == 841 and summary["n_events_undelivered"] == 0
    # what the killed broker had acknowledged in the last minute went out again
    assert summary["n_events_resent"] > 0
    sub.wait_for(lambda s: len({e["event_id"] for e in s.stage_events()}) >= 841, 30)
    unique = list(dict.fromkeys(e["event_id"] for e in sub.stage_events()))
    got = sorted(int(u.rsplit(":", 1)[1]) for u in unique)
    missing = sorted(set(range(841)) - set(got))
    assert len(unique) == 841, f"missing epoch indices {missing}"
    session = unique[0].split(":")[1]
    assert unique == [f"replay:{session}:{i}" for i in range(841)]


# ------------------------------------------------------------------ any format (issue 16)
_HYP_SYMBOL = {0: "W", 1: "1", 2: "2", 3: "3", 4: "R", -1: "?"}


@pytest.fixture(scope="module")
def sc4001_sleep(sc4001_dir):
    """60 epochs of SC4001 Fpz-Cz from inside the night (µV, 100 Hz) and their stages."""
    from sleepstream.io import read_sleep_edf

    night = read_sleep_edf(
        sc4001_dir / "SC4001E0-PSG.edf", sc4001_dir / "SC4001EC-Hypnogram.edf", cache=False
    )
    first = 1021
    x = night.signal[first * 3000 : (first + 60) * 3000].astype(np.float64)
    return x, night.stages[first : first + 60].astype(int)


def _run_replay(helpers, model, path, tmp_path, *extra, timeout=300):
    proc = subprocess.run(
        helpers.sleepstream_cmd(
            "replay",
            str(path),
            "--speed",
            "max",
            "--model",
            str(model),
            "--json-summary",
            "--broker-port",
            str(helpers.free_port()),
            "--state-dir",
            str(tmp_path / "state"),
            *map(str, extra),
        ),  # fmt: skip
        capture_output=True,
        text=True,
        timeout=timeout,
        env=helpers.daemon_env(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


def test_replay_edf_d_pause_becomes_gap_epochs(sc4001_sleep, tiny_model, tmp_path, helpers):
    """EDF+D (issue 13 class 4): the 5-min pause between records is 10 unscored gap epochs
    on the stream's grid, the epochs after it keep their time, night.json lists the gap,
    and the agreement counts only the 40 recorded epochs (stages from the file's own
    annotations)."""
    from sleepstream.io.writers import write_edf_d

    x, stages = sc4001_sleep
    keep = list(range(20)) + list(range(30, 50))
    ann = [(30.0 * k, 30.0, "Sleep stage " + _HYP_SYMBOL[int(stages[k])]) for k in keep]
    path = write_edf_d(
        tmp_path / "paused.edf", np.concatenate([x[k * 3000 : (k + 1) * 3000] for k in keep]),
        100.0, [30.0 * k for k in keep], record_s=30.0, annotations=ann, physical_max=300.0,
    )  # fmt: skip
    summary, _ = _run_replay(helpers, tiny_model, path, tmp_path, "--no-trim")
    assert summary["n_epochs_streamed"] == 50 and summary["n_epochs_gap"] == 10
    assert summary["n_epochs_scored"] == 40 and summary["n_epochs_outside_reference"] == 0
    night_dir = next((tmp_path / "state" / "nights").glob("*/*"))
    manifest = json.loads((night_dir / "night.json").read_text())
    assert [(g["onset_s"], g["duration_s"]) for g in manifest["gaps"]] == [(600.0, 300.0)]
    from sleepstream.report.night import load_night

    recorded = load_night(night_dir)
    assert (recorded.stages[20:30] == -1).all() and (recorded.stages[:20] >= 0).all()
    assert recorded.onsets[30] == pytest.approx(900.0)


def test_replay_brainflow_file_with_its_board_profile(sc4001_sleep, tiny_model, tmp_path, helpers):
    """A BrainFlow CSV (DataFilter.write_file, Cyton layout, 250 Hz) replays at --speed max
    with a Cyton profile; its 60-s pause (timestamps) becomes gap epochs."""
    from scipy.signal import resample_poly

    from sleepstream.io import writers as w

    x, stages = sc4001_sleep
    x250 = resample_poly(x[: 20 * 3000], 5, 2)
    arr = w.board_array("cyton", x250[None], t0=1.7e9)
    arr = np.delete(arr, np.s_[250 * 300 : 250 * 360], axis=1)  # one minute lost
    path = w.write_brainflow(tmp_path / "BrainFlow-RAW.csv", arr)
    profile = tmp_path / "cyton-plain.toml"
    profile.write_text(
        'name = "cyton-plain"\n[source]\nkind = "board"\nboard = "cyton"\n[signal]\n'
        'channel = "Fp1"\nscale_to_uv = 1.0\nfs = 250.0\n[quality]\nclip_uv = 400.0\n'
    )
    hyp = tmp_path / "night.hyp"
    hyp.write_text("\r".join(_HYP_SYMBOL[int(s)] for s in stages[:20]) + "\r")
    summary, _ = _run_replay(
        helpers, tiny_model, path, tmp_path, "--profile", profile, "--hypnogram", hyp,
        "--no-trim", "--no-record",
    )  # fmt: skip
    assert summary["channel"] == "Fp1" and summary["n_epochs_streamed"] == 20
    assert summary["n_epochs_gap"] == 2 and summary["n_epochs_scored"] == 18


@pytest.mark.slow
def test_replay_of_a_training_recording_warns_and_says_so(
    sc4001_sleep, tiny_model, tmp_path, helpers
):
    """A recording listed in the card's training.recordings (by sha256) gets a one-line
    warning and "training_recording": true; another recording does not."""
    import hashlib
    import shutil

    from sleepstream.io import writers as w

    x, _ = sc4001_sleep
    night = w.write_fif(tmp_path / "trained_raw.fif", x[None, : 10 * 3000], 100.0, ["EEG Fpz-Cz"])
    other = w.write_fif(tmp_path / "other_raw.fif", x[None, 3000 : 11 * 3000], 100.0,
                        ["EEG Fpz-Cz"])  # fmt: skip
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    onnx = Path(shutil.copy(tiny_model, model_dir))
    card_src = tiny_model.with_name(tiny_model.name.replace(".onnx", ".card.json"))
    card = json.loads(card_src.read_text())
    sha = hashlib.sha256(night.read_bytes()).hexdigest()
    card["training"]["recordings"] = [{"name": "x.fif", "sha256": sha, "channels": ["EEG Fpz-Cz"]}]
    (model_dir / card_src.name).write_text(json.dumps(card))
    summary, proc = _run_replay(helpers, onnx, night, tmp_path, "--no-record")
    assert summary["training_recording"] is True and summary["reference_epochs"] is None
    warnings = [line for line in proc.stderr.splitlines() if "trained" in line]
    assert len(warnings) == 1 and "trained_raw.fif" in warnings[0]
    summary, proc = _run_replay(helpers, onnx, other, tmp_path, "--no-record")
    assert summary["training_recording"] is False and "trained" not in proc.stderr
    assert sum(summary["predicted_counts"].values()) == summary["n_epochs_streamed"] == 10


def test_replay_channel_flag_reaches_the_dsp_for_any_edf(sc4001_sleep, tiny_model, tmp_path,
                                                         helpers):  # fmt: skip
    """--channel on an EDF without the profile's channel (here C3-A1 only) is streamed and
    staged end to end (issue 13 class 1)."""
    from sleepstream.io import writers as w

    x, stages = sc4001_sleep
    path = w.write_edf(tmp_path / "c3.edf", x[None, : 12 * 3000], 100.0, ["C3-A1"])
    summary, _ = _run_replay(helpers, tiny_model, path, tmp_path, "--channel", "C3-A1",
                             "--no-record")  # fmt: skip
    assert summary["channel"] == "C3-A1" and summary["n_epochs_published"] == 12


def test_replay_stopped_by_ctrl_c_prints_a_partial_summary(sc4001_dir, tiny_model, tmp_path,
                                                           helpers):  # fmt: skip
    """SIGINT during a paced replay: exit 0 and the JSON summary says partial, with the
    epochs scored so far."""
    import signal

    proc = subprocess.Popen(
        helpers.sleepstream_cmd(
            "replay",
            str(sc4001_dir / "SC4001E0-PSG.edf"),
            "--speed",
            "300",
            "--model",
            str(tiny_model),
            "--json-summary",
            "--print-events",
            "--no-record",
            "--broker-port",
            str(helpers.free_port()),
            "--state-dir",
            str(tmp_path / "s"),
        ),  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=helpers.daemon_env(),
    )
    try:
        seen = [proc.stdout.readline() for _ in range(3)]  # three scored epochs printed
        assert all(seen), proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["partial"] is True and 3 <= summary["n_epochs_streamed"] < 841
    assert summary["n_epochs_scored"] == summary["n_epochs_streamed"]
