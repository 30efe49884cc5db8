"""``sleepstream replay`` of SC4001 against real brokers (acceptance of the daemon issue)."""

import json
import subprocess

import jsonschema
import numpy as np
import pytest

pytestmark = pytest.mark.network


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
    """Replay on the embedded amqtt broker; ``sleepstream watch --count 841`` sees every epoch."""
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
            "--count",
            "841",
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
        try:
            _, err = watch.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            watch.kill()
            _, err = watch.communicate()
        out = (tmp_path / "watch.out").read_text()
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        out_file.close()
    assert watch.returncode == 0, err[-2000:]
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["epoch_index"] for e in events] == list(range(841))
    assert json.loads(replay.stdout.strip().splitlines()[-1])["n_epochs_published"] == 841


def test_replay_survives_broker_killed_for_ten_seconds(
    sc4001_dir, tiny_model, persistent_mosquitto, subscribe, tmp_path, helpers
):
    """Fault injection: SIGKILL the broker mid-night, keep it down 10 s, restart it: the
    replay never exits early and the subscriber ends with all 841 event_ids, in order,
    exactly once after dedup."""
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
    assert sub.wait_for(lambda s: len({e["event_id"] for e in s.stage_events()}) >= 841, 30)
    unique = list(dict.fromkeys(e["event_id"] for e in sub.stage_events()))
    assert len(unique) == 841
    session = unique[0].split(":")[1]
    assert unique == [f"replay:{session}:{i}" for i in range(841)]
