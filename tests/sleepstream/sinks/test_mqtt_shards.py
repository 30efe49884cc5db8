"""Past one machine: two daemon processes, each owning a shard of one beds file, publish
to one mosquitto; through a broker crash every event of every bed arrives exactly once
after de-duplication on ``event_id``, from exactly one daemon per bed."""

import shutil
import subprocess
import threading
import time

import pytest

from sleepstream.names import shard_of

pytestmark = [pytest.mark.network, pytest.mark.slow]

N_EPOCHS = 40
BEDS = [f"ward1-bed{i}" for i in range(6)]


def _has_shard_flag(helpers) -> bool:
    proc = subprocess.run(
        helpers.sleepstream_cmd("run", "--help"), capture_output=True, text=True,
        env=helpers.daemon_env(), timeout=60,
    )  # fmt: skip
    return "--shard" in proc.stdout


def test_mqtt_two_sharded_daemons_deliver_every_event_of_every_bed_exactly_once(
    persistent_mosquitto, subscribe, tiny_model, tmp_path, helpers
):
    """`run --config beds.toml --shard 1/2` and `--shard 2/2` on one state dir and one
    broker, the broker SIGKILLed and restarted mid-night: each bed is served by exactly one
    daemon (one session), and its epochs 0..N-1 arrive, each once after dedup, in order."""
    if not _has_shard_flag(helpers):
        pytest.skip("`sleepstream run --shard i/n` (glue, request M4) is not there yet")
    broker = persistent_mosquitto
    sub = subscribe(broker.port, "sleepstream/#", persistent=True)
    time.sleep(2.5)  # let the broker autosave the subscriber's session
    beds = tmp_path / "beds.toml"
    beds.write_text(
        f'[daemon]\nmqtt = "{broker.url}"\nmodel = "{tiny_model}"\n'
        f'state_dir = "{tmp_path / "state"}"\nmetrics_port = 0\n'
        + "".join(
            f'[[device]]\nname = "{b}"\nsource = "synthetic-night"\n'
            f"n_epochs = {N_EPOCHS}\nspeed = 300\nseed = {i}\n"
            for i, b in enumerate(BEDS)
        )
    )
    procs = [
        subprocess.Popen(
            helpers.sleepstream_cmd("run", "--config", str(beds), "--shard", f"{i}/2", "--quiet"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=helpers.daemon_env(),
        )  # fmt: skip
        for i in (1, 2)
    ]
    errs = [""] * 2
    readers = [
        threading.Thread(target=lambda k=k: errs.__setitem__(k, procs[k].stderr.read()))
        for k in range(2)
    ]
    for t in readers:
        t.start()
    try:
        assert sub.wait_for(lambda s: len(s.stage_events()) >= 12, 120), errs
        broker.kill()
        time.sleep(1.0)  # both daemons keep scoring into their outboxes
        broker.start()
        rcs = [p.wait(180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for t in readers:
            t.join(10)
    assert rcs == [0, 0], errs

    def complete(s):
        ids = {e["event_id"] for e in s.stage_events()}
        return len(ids) >= N_EPOCHS * len(BEDS)

    assert sub.wait_for(complete, 60), errs
    events = sub.stage_events()
    sessions: dict[str, set[str]] = {}
    first: dict[str, list[int]] = {}
    for eid in dict.fromkeys(e["event_id"] for e in events):
        bed, session, idx = eid.split(":")
        sessions.setdefault(bed, set()).add(session)
        first.setdefault(bed, []).append(int(idx))
    assert sorted(first) == sorted(BEDS)
    assert all(len(s) == 1 for s in sessions.values()), sessions  # one daemon per bed
    assert first == {b: list(range(N_EPOCHS)) for b in BEDS}  # each once, in order
    # the shards are the documented split, and both daemons served some beds
    owners = {b: shard_of(b, 2) for b in BEDS}
    assert set(owners.values()) == {0, 1}
    daemons = {t.split("/")[2] for t, _, _ in sub.messages if t.startswith("sleepstream/_daemon/")}
    assert len(daemons) == 2
    served = {
        b: p.decode() for t, p, _ in sub.messages for b in BEDS if t == f"sleepstream/{b}/daemon"
    }
    by_daemon = {d: {b for b, o in served.items() if o == d} for d in daemons}
    assert sorted(map(sorted, by_daemon.values())) == sorted(
        sorted(b for b in BEDS if owners[b] == k) for k in (0, 1)
    )
    shutil.rmtree(tmp_path / "state", ignore_errors=True)
