"""``sleepstream watch`` against a real mosquitto."""

import json
import subprocess
import time

import numpy as np
import pytest

from sleepstream.cli import main

pytestmark = pytest.mark.network


def _publish_events(port, n, *, duplicate_every=0):
    """Publish n stage events (and some redeliveries) with paho, QoS 1."""
    import paho.mqtt.client as paho

    from sleepstream.sinks.base import EventContext, build_event
    from sleepstream.types import Epoch, StagePrediction

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for i in range(n):
            epoch = Epoch(i, 30.0 * i, "2026-01-01T23:00:00Z", np.zeros(3000, np.float32))
            p = np.full(5, 0.1)
            p[2] = 0.6
            event = build_event(
                EventContext("bed1", "s"), epoch, StagePrediction(i, 2, p, 0.6, "m")
            )
            payload = json.dumps(event)
            client.publish("sleepstream/bed1/stage", payload, qos=1).wait_for_publish(5)
            if duplicate_every and i % duplicate_every == 0:
                client.publish("sleepstream/bed1/stage", payload, qos=1).wait_for_publish(5)
        client.publish("sleepstream/other/stage", b"not json", qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.mark.slow
def test_watch_prints_distinct_events_as_json_and_stops_at_count(mosquitto, tmp_path, helpers):
    """--count N --json: N JSON lines, redeliveries (same event_id) printed once, exit 0."""
    out = tmp_path / "watch.out"
    with out.open("w") as f:
        proc = subprocess.Popen(
            helpers.sleepstream_cmd(
                "watch", "--mqtt", mosquitto.url, "--device", "bed1", "--count", "10", "--json"
            ),
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            env=helpers.daemon_env(),
        )
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and "watching" not in line:
            line = proc.stderr.readline()
        assert "watching" in line
        _publish_events(mosquitto.port, 12, duplicate_every=3)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0
    events = [json.loads(x) for x in out.read_text().splitlines()]
    assert [e["epoch_index"] for e in events] == list(range(10))


@pytest.mark.slow
def test_watch_readable_lines_for_all_devices(mosquitto, tmp_path, helpers):
    """Without --json: one readable line per event naming device, epoch and stage."""
    out = tmp_path / "watch.out"
    with out.open("w") as f:
        proc = subprocess.Popen(
            helpers.sleepstream_cmd("watch", "--mqtt", mosquitto.url, "--count", "3"),
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            env=helpers.daemon_env(),
        )
    try:
        while "watching" not in proc.stderr.readline():
            pass
        _publish_events(mosquitto.port, 3)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    assert all("bed1" in x and "N2" in x for x in lines)
    assert "#2" in lines[-1]


def test_watch_unreachable_broker_fails_with_broker_error(helpers, capsys):
    """No broker: exit code 9 after the connect timeout, one line, no traceback."""
    port = helpers.free_port()
    rc = main(["watch", "--mqtt", f"mqtt://127.0.0.1:{port}", "--connect-timeout", "0.5"])
    err = capsys.readouterr().err
    assert rc == 9 and "cannot reach" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "flags",
    [
        ["--count", "0"],
        ["--count", "-1"],
        ["--count", "1e3"],
        ["--connect-timeout", "nan"],
        ["--connect-timeout", "inf"],
        ["--connect-timeout", "-1"],
        ["--connect-timeout", "1e300"],
        ["--idle-timeout", "nan"],
        ["--idle-timeout", "0"],
        ["--idle-timeout", "1e400"],
    ],
    ids=" ".join,
)
def test_watch_refuses_counts_and_timeouts_it_could_not_honour(flags, capsys):
    """A count below 1 or a timeout that is not a finite number of seconds (nan compares
    false with every deadline: it would retry for ever) is one usage line, exit 2, before
    any connection (faults' R10)."""
    rc = main(["watch", "--mqtt", "mqtt://127.0.0.1:9", *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and flags[0] in err and repr(flags[1]) in err


# --------------------------------------------------------------- untrusted payloads


def _good_event(i=0, device="bed1", start="2026-01-01T23:00:00Z", **changes):
    from sleepstream.sinks.base import EventContext, build_event
    from sleepstream.types import Epoch, StagePrediction

    epoch = Epoch(i, 30.0 * i, start, np.zeros(3000, np.float32))
    p = np.full(5, 0.1)
    p[2] = 0.6
    event = build_event(EventContext(device, "s"), epoch, StagePrediction(i, 2, p, 0.6, "m"))
    event.update(changes)
    return event


def _watcher(as_json=False):
    import io

    from sleepstream.commands.watch import Watcher

    return Watcher("sleepstream", as_json=as_json, out=io.StringIO(), err=io.StringIO())


def _safe(line: str) -> bool:
    return all(ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in line) and not any(
        c in line for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    )


def _V1(event: dict) -> dict:  # noqa: N802 - reads as the format's name
    """The same event as sleepstream.stage_event/1 wrote it (no time_zone field)."""
    return {**{k: v for k, v in event.items() if k != "time_zone"},
            "schema": "sleepstream.stage_event/1"}  # fmt: skip


MALFORMED = {
    "stage-null": json.dumps(_good_event(stage=None)),
    "stage-unknown": json.dumps(_good_event(stage="N4")),
    "stage-escape": json.dumps(_good_event(stage="\x1b[2J\x1b[31mREM")),
    "device-escape": json.dumps(_good_event(device="bed1\x1b]0;pwned\x07")),
    "device-other-topic": json.dumps(_good_event(device="bed2")),
    "epoch-index-string": json.dumps(_good_event(epoch_index="7")),
    "epoch-index-bool": json.dumps(_good_event(epoch_index=True)),
    "epoch-index-negative": json.dumps(_good_event(epoch_index=-1)),
    "confidence-nan": json.dumps(_good_event(confidence=float("nan"))),  # writes NaN
    "confidence-string": json.dumps(_good_event(confidence="high")),
    "confidence-huge": json.dumps(_good_event(confidence=1e400)),
    "latency-negative": json.dumps(_good_event(latency_ms=-1)),
    "quality-not-list": json.dumps(_good_event(quality="flat")),
    "quality-control": json.dumps(_good_event(quality=["\r\x1b[Kok"])),
    "unscored-without-reasons": json.dumps(_good_event(stage="unscored")),
    "revised-without-lookahead": json.dumps(_good_event(revised=True, lookahead=0)),
    "epoch-start-garbage": json.dumps(_good_event(epoch_start="\x1b[1mnow")),
    "extra-field": json.dumps(_good_event(evil="x")),
    "missing-field": json.dumps({k: v for k, v in _good_event().items() if k != "model"}),
    "wrong-schema": json.dumps(_good_event(schema="other/9")),
    "array": "[1, 2, 3]",
    "number": "42",
    "null": "null",
    "empty": "",
    "not-json": "not json \x1b[2J",
    "not-utf8": b"\xff\xfe\x1b[2J",
    "deep-nesting": "[" * 50_000 + "]" * 50_000,
    "huge-int": '{"epoch_index": ' + "9" * 5000 + "}",
    "too-big": json.dumps(_good_event(model="m" * 70_000)),
    "probabilities-missing-stage": json.dumps(_good_event(probabilities={"W": 1.0})),
    "time-zone-null-with-an-offset": json.dumps(_good_event(time_zone=None)),
    "time-zone-utc-without-an-offset": json.dumps(
        _good_event(start="1989-04-24T16:13:00", time_zone="UTC")
    ),
    "time-zone-other-offset": json.dumps(_good_event(epoch_start="2026-01-01T23:00:00+02:00")),
    "time-zone-not-utc-or-null": json.dumps(_good_event(time_zone="Europe/Paris")),
    "time-zone-missing-in-v2": json.dumps(
        {k: v for k, v in _good_event().items() if k != "time_zone"}
    ),
    "v1-without-an-offset": json.dumps(
        {**_V1(_good_event(start="1989-04-24T16:13:00")), "epoch_start": "1989-04-24T16:13:00"}
    ),
    "v1-with-a-time-zone": json.dumps({**_V1(_good_event()), "time_zone": "UTC"}),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_watch_malformed_stage_payloads_are_reported_safely_and_skipped(case):
    """Each malformed payload (`{"stage": null}`, escape sequences, NaN, nesting...) is
    one safe line on stderr; nothing reaches stdout; the watch goes on."""
    w = _watcher()
    payload = MALFORMED[case]
    raw = payload if isinstance(payload, bytes) else payload.encode()
    lines = w._handle("sleepstream/bed1/stage", raw)
    assert [s for s, _ in lines] == [w.err]
    assert "ignored a malformed message" in lines[0][1] and _safe(lines[0][1])
    assert w.events == 0
    good = w._handle("sleepstream/bed1/stage", json.dumps(_good_event(1)).encode())
    assert [s for s, _ in good] == [w.out] and w.events == 1


def test_watch_valid_events_print_once_and_pass_the_json_schema(stage_schema):
    """A valid event prints one line (JSON mode: the event itself); a redelivery none."""
    import jsonschema

    from sleepstream.commands.watch import check_event

    w = _watcher(as_json=True)
    raw = json.dumps(_good_event(3)).encode()
    out = w._handle("sleepstream/bed1/stage", raw)
    assert len(out) == 1 and json.loads(out[0][1]) == json.loads(raw)
    assert w._handle("sleepstream/bed1/stage", raw) == []
    jsonschema.validate(check_event(raw, "bed1"), stage_schema)


def test_watch_accepts_v2_events_in_utc_or_local_time_and_v1_events(stage_schema):
    """R18: a /2 event of a recording without a zone (naive epoch_start, time_zone null),
    a /2 event in UTC and a /1 event (older daemons: always an offset, no time_zone) are
    each printed with their own clock time; both /2 forms pass the JSON schema."""
    import jsonschema

    from sleepstream.commands.watch import check_event

    local = _good_event(1, start="1989-04-24T16:13:00")
    assert local["epoch_start"] == "1989-04-24T16:13:00.000" and local["time_zone"] is None
    utc = _good_event(2, start="2026-01-01T23:00:30+00:00")
    assert utc["epoch_start"] == "2026-01-01T23:00:30.000Z" and utc["time_zone"] == "UTC"
    old = _V1(_good_event(3))
    old["epoch_start"] = "2026-01-01T23:01:00.000+00:00"
    w = _watcher()
    lines = [w._handle("sleepstream/bed1/stage", json.dumps(e).encode()) for e in (local, utc, old)]
    assert [[s for s, _ in x] for x in lines] == [[w.out]] * 3 and w.events == 3
    assert [x[0][1].split()[0] for x in lines] == ["16:13:00", "23:00:30", "23:01:00"]
    for e in (local, utc):
        jsonschema.validate(check_event(json.dumps(e).encode(), "bed1"), stage_schema)
    assert check_event(json.dumps(old).encode(), "bed1")["schema"].endswith("/1")
    with pytest.raises(jsonschema.ValidationError):  # the schema file describes /2 only
        jsonschema.validate(old, stage_schema)
    bad = {**local, "epoch_start": "1989-04-24T16:13:00.000Z"}
    with pytest.raises(jsonschema.ValidationError):  # null zone with an offset
        jsonschema.validate(bad, stage_schema)


def test_watch_availability_needs_the_device_and_its_daemon_online():
    """A device whose retained status says online is shown offline once its daemon's
    will says offline."""
    w = _watcher()
    w._handle("sleepstream/bed1/daemon", b"node-a")
    w._handle("sleepstream/_daemon/node-a/status", b"online")
    assert w._handle("sleepstream/bed1/status", b"online")[0][1] == "[bed1 is online]"
    gone = w._handle("sleepstream/_daemon/node-a/status", b"offline")[0][1]
    assert gone == "[daemon node-a is offline: bed1 offline with it]"
    again = w._handle("sleepstream/bed1/status", b"online")[0][1]
    assert again == "[bed1 is offline (its daemon node-a is offline)]"
    bad = w._handle("sleepstream/bed1/status", b"\x1b[2Jonline!")
    assert "malformed" in bad[0][1] and _safe(bad[0][1])


def test_watch_reports_only_some_malformed_messages_in_a_flood():
    """A flood of junk gives the first ten lines, then one per hundred."""
    w = _watcher()
    shown = sum(len(w._handle("sleepstream/bed1/stage", b"junk")) for _ in range(1000))
    assert shown == 10 + 10 and w.malformed == 1000


def _mutated_events():
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
        st.text(max_size=20), st.lists(st.text(max_size=5), max_size=3),
    )  # fmt: skip
    base = st.builds(_good_event, st.integers(0, 100))
    keys = st.sampled_from(sorted(_good_event()) + ["reasons", "evil", "lookahead"])
    return st.tuples(base, st.dictionaries(keys, scalars, max_size=3), st.sets(keys, max_size=2))


@pytest.mark.parametrize("as_json", [False, True])
def test_watch_never_crashes_and_prints_only_safe_lines_for_any_payload(as_json, stage_schema):
    """Property (Hypothesis): for any topic and bytes, and for events with fields changed
    or removed, the handler returns safe lines; what it accepts passes the JSON schema."""
    import jsonschema
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from sleepstream.commands.watch import check_event

    schema = stage_schema
    topics = st.one_of(
        st.sampled_from(["sleepstream/bed1/stage", "sleepstream/bed1/status",
                         "sleepstream/bed1/daemon", "sleepstream/_daemon/x/status"]),
        st.text(max_size=40).map(lambda t: "sleepstream/" + t),
    )  # fmt: skip

    @settings(max_examples=300, deadline=None)
    @given(topics, st.binary(max_size=300))
    def any_bytes(topic, payload):
        w = _watcher(as_json)
        for _stream, line in w._handle(topic, payload):
            assert _safe(line)

    @settings(max_examples=300, deadline=None)
    @given(_mutated_events())
    def mutated(case):
        event, changes, removed = case
        event = {k: v for k, v in {**event, **changes}.items() if k not in removed}
        raw = json.dumps(event).encode()
        w = _watcher(as_json)
        for _stream, line in w._handle("sleepstream/bed1/stage", raw):
            assert _safe(line)
        try:
            accepted = check_event(raw, "bed1")
        except ValueError:
            return
        jsonschema.validate(accepted, schema)

    any_bytes()
    mutated()


@pytest.mark.slow
def test_watch_survives_hostile_publishers_on_a_real_broker(mosquitto, tmp_path, helpers):
    """On mosquitto: `{"stage": null}`, escape sequences and junk among real events; the
    watch prints exactly the real events, no control character reaches the terminal,
    and exits 0 at --count."""
    import paho.mqtt.client as paho

    out = tmp_path / "watch.out"
    with out.open("w") as f:
        proc = subprocess.Popen(
            helpers.sleepstream_cmd("watch", "--mqtt", mosquitto.url, "--count", "2"),
            stdout=f, stderr=subprocess.PIPE, text=True, env=helpers.daemon_env(),
        )  # fmt: skip
    try:
        while "watching" not in proc.stderr.readline():
            pass
        client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", mosquitto.port)
        client.loop_start()
        hostile = [MALFORMED[k] for k in ("stage-null", "stage-escape", "device-escape",
                                          "not-utf8", "deep-nesting")]  # fmt: skip
        hostile.append(b"\x1b[2J\x1b]0;owned\x07")
        for payload in hostile:
            client.publish("sleepstream/bed1/stage", payload, qos=1).wait_for_publish(5)
        # (mosquitto itself disconnects a client that puts control characters in a topic;
        # hostile topics are covered by the property test above)
        for i in range(2):
            good = json.dumps(_good_event(i))
            client.publish("sleepstream/bed1/stage", good, qos=1).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()
        rc = proc.wait(60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.read_text()
    assert rc == 0, err
    assert len(text.splitlines()) == 2 and all("bed1" in x and "N2" in x for x in text.splitlines())
    assert "\x1b" not in text and "\x1b" not in err and "\x07" not in err
    assert "Traceback" not in err and err.count("ignored a malformed message") >= 5
