"""MQTT configuration faults (TLS files, credentials, TLS handshakes) are found at
start-up: one line naming the flag and file, exit code 9, never a silent delivery task.

Real parts: certificates generated here with the openssl CLI, a mosquitto with a TLS
listener that requires a client certificate and a password.
"""

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from sleepstream.errors import BrokerError
from sleepstream.sinks.mqtt import MqttSink, mqtt_settings, read_password
from sleepstream.sinks.mqtt_link import MqttLink
from sleepstream.sinks.mqtt_settings import KEY_PASSWORD_ENV, classify_connect_error
from sleepstream.sinks.outbox import Outbox
from sleepstream.types import Epoch, StagePrediction

pytestmark = pytest.mark.network


def _ossl(d: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs():
    """A CA, a server and a client certificate (127.0.0.1) signed by it, an unrelated
    self-signed pair, the client key encrypted with passphrase ``s3cret``, and a
    mosquitto password file (user ``night``, password ``s3cret``). World-readable:
    mosquitto drops root to user ``mosquitto``."""
    if not (shutil.which("openssl") and shutil.which("mosquitto_passwd")):
        pytest.skip("openssl or mosquitto_passwd not available")
    d = Path(tempfile.mkdtemp(prefix="sleepstream-tls-"))
    _ossl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
          "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    _ossl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
          "/CN=other", "-keyout", "other.key", "-out", "other.pem")  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _ossl(d, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
              "-keyout", f"{name}.key", "-out", f"{name}.csr")  # fmt: skip
        _ossl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
              "-CAcreateserial", "-days", "1", "-out", f"{name}.pem", "-extfile", "san.cnf")  # fmt: skip
    _ossl(d, "pkey", "-in", "client.key", "-aes256", "-passout", "pass:s3cret",
          "-out", "client-enc.key")  # fmt: skip
    (d / "garbage.pem").write_text("this is not PEM\n")
    pem = (d / "ca.pem").read_text().splitlines()
    (d / "corrupt.pem").write_text("\n".join([pem[0], "AAAA" * 16, pem[-1]]) + "\n")
    (d / "both.pem").write_text((d / "client.pem").read_text() + (d / "client.key").read_text())
    (d / "passwd").write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(d / "passwd"), "night", "s3cret"], check=True)
    for f in d.iterdir():
        f.chmod(0o644)
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_broker(certs, helpers):
    """mosquitto: a TLS listener requiring a client certificate and a password."""
    if helpers.mosquitto_binary() is None:
        pytest.skip("mosquitto binary not found (Debian: apt-get install mosquitto)")
    port = helpers.free_port()
    conf = (
        f"listener {port} 127.0.0.1\n"
        f"cafile {certs / 'ca.pem'}\ncertfile {certs / 'server.pem'}\n"
        f"keyfile {certs / 'server.key'}\nrequire_certificate true\n"
        f"allow_anonymous false\npassword_file {certs / 'passwd'}\n"
        "persistence false\nset_tcp_nodelay true\n"
    )
    broker = helpers.Mosquitto(certs, port, extra_config=conf).start()
    yield broker
    broker.stop()


def _tls(certs, ca="ca.pem", cert="client.pem", key="client.key"):
    return {
        "ca_file": certs / ca if ca else None,
        "cert_file": certs / cert if cert else None,
        "key_file": certs / key if key else None,
    }


FILE_FAULTS = {
    "ca-not-pem": (dict(ca="garbage.pem"), "--mqtt-ca-file", "no PEM certificate"),
    "ca-is-a-key": (dict(ca="ca.key"), "--mqtt-ca-file", "no PEM certificate"),
    "ca-corrupt": (dict(ca="corrupt.pem"), "--mqtt-ca-file", "not a usable CA bundle"),
    "ca-missing": (dict(ca="nope.pem"), "--mqtt-ca-file", "no such file"),
    "ca-is-a-folder": (dict(ca="."), "--mqtt-ca-file", "no such file"),
    "cert-not-pem": (dict(cert="garbage.pem"), "--mqtt-cert-file", "no PEM certificate"),
    "key-not-pem": (dict(key="garbage.pem"), "--mqtt-key-file", "no PEM private key"),
    "key-of-another-cert": (dict(key="other.key"), "does not belong to the certificate", ""),
    "encrypted-key": (dict(key="client-enc.key"), "--mqtt-key-file", "key is encrypted"),
    "cert-without-key": (dict(key=None), "--mqtt-cert-file", "holds no private key"),
}


@pytest.mark.parametrize("case", FILE_FAULTS, ids=list(FILE_FAULTS))
def test_mqtt_tls_file_faults_are_one_line_before_any_connection(case, certs, monkeypatch):
    """Each way a TLS file can be wrong is a BrokerError at settings time naming the flag
    and the file (the TLS context used to be built in the delivery task, which died
    unseen)."""
    monkeypatch.delenv(KEY_PASSWORD_ENV, raising=False)
    files, flag, why = FILE_FAULTS[case]
    with pytest.raises(BrokerError) as err:
        mqtt_settings("mqtts://127.0.0.1:1", **_tls(certs, **files))  # port 1: never dialled
    msg = str(err.value)
    assert flag in msg and why in msg and "\n" not in msg
    assert str(certs) in msg


def test_mqtt_tls_encrypted_key_wrong_passphrase_is_named(certs, monkeypatch):
    """A wrong $SLEEPSTREAM_MQTT_KEY_PASSWORD is reported as such (OpenSSL never prompts)."""
    monkeypatch.setenv(KEY_PASSWORD_ENV, "wrong")
    with pytest.raises(BrokerError, match="wrong passphrase"):
        mqtt_settings("mqtts://127.0.0.1:1", **_tls(certs, key="client-enc.key"))


def test_mqtt_tls_key_in_the_certificate_file_is_accepted(certs):
    """A PEM bundle holding certificate and key works without --mqtt-key-file."""
    s = mqtt_settings("mqtts://127.0.0.1:1", **_tls(certs, cert="both.pem", key=None))
    assert s.tls and s.key_file is None


def _event(i: int) -> tuple[Epoch, StagePrediction]:
    p = np.full(5, 0.1)
    p[i % 5] = 0.6
    epoch = Epoch(
        i, 30.0 * i, "2026-01-01T23:00:00Z", np.zeros(3000, np.float32),
        last_sample_at=time.perf_counter(),
    )  # fmt: skip
    return epoch, StagePrediction(i, i % 5, p, 0.6, "m")


async def _deliver(settings, path: Path, n: int) -> int:
    async with MqttSink(settings, device="bed1", session="s", outbox=Outbox(path)) as sink:
        for i in range(n):
            await sink.publish(*_event(i))
    return sink.delivered


def test_mqtt_tls_client_certificate_and_password_deliver(certs, tls_broker, tmp_path, monkeypatch):
    """TLS (CA + client certificate) and user/password from the environment deliver."""
    monkeypatch.setenv("SLEEPSTREAM_MQTT_PASSWORD", "s3cret")
    url = f"mqtts://night@127.0.0.1:{tls_broker.port}"
    settings = mqtt_settings(url, password=read_password(None), **_tls(certs))
    assert asyncio.run(_deliver(settings, tmp_path / "o.sqlite", 3)) == 3


def test_mqtt_tls_encrypted_key_with_its_passphrase_delivers(
    certs, tls_broker, tmp_path, monkeypatch
):
    """An encrypted client key works when $SLEEPSTREAM_MQTT_KEY_PASSWORD holds its passphrase."""
    monkeypatch.setenv(KEY_PASSWORD_ENV, "s3cret")
    url = f"mqtts://night@127.0.0.1:{tls_broker.port}"
    settings = mqtt_settings(url, password="s3cret", **_tls(certs, key="client-enc.key"))
    assert asyncio.run(_deliver(settings, tmp_path / "o.sqlite", 2)) == 2


CONNECT_FAULTS = {
    "wrong-password": (dict(password="wrong"), {}, "Not authorized", "check --mqtt-username"),
    "no-user": (dict(user=None), {}, "Not authorized", "check --mqtt-username"),
    "wrong-ca": ({}, dict(ca="other.pem"), "CERTIFICATE_VERIFY_FAILED", "--mqtt-ca-file"),
    "no-client-cert": ({}, dict(cert=None, key=None), "certificate required", "--mqtt-cert-file"),
}
#: Cases that take the 5-s connect timeout before the refusal arrives.
SLOW_CONNECT_FAULTS = {"no-client-cert"}


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CONNECT_FAULTS else c
     for c in CONNECT_FAULTS],
)  # fmt: skip
def test_mqtt_connect_faults_are_refused_at_start_not_retried(
    case, certs, tls_broker, tmp_path, caplog
):
    """Credentials and TLS handshakes the broker refuses: the link raises one BrokerError
    line at start-up (not "broker down, retrying" all night) and releases its outbox."""
    auth, files, why, hint = CONNECT_FAULTS[case]
    user = auth.get("user", "night")
    url = f"mqtts://{user + '@' if user else ''}127.0.0.1:{tls_broker.port}"
    settings = mqtt_settings(url, password=auth.get("password", "s3cret"), **_tls(certs, **files))
    box = Outbox(tmp_path / "o.sqlite")

    async def start():
        async with MqttLink(settings, outbox=box, devices=["bed1"]):
            pass  # pragma: no cover - never reached

    with pytest.raises(BrokerError) as err:
        asyncio.run(asyncio.wait_for(start(), 30))
    msg = str(err.value)
    assert why in msg and hint in msg and "\n" not in msg
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    with Outbox(tmp_path / "o.sqlite"):  # released: a restart can open it
        pass


def test_mqtt_classify_connect_errors_by_what_retrying_can_fix():
    """CONNACK codes of MQTT 3.1.1 and 5 and socket errors sort into config vs transient."""
    import socket
    import ssl

    import aiomqtt
    from aiomqtt.exceptions import MqttConnectError

    def wrapped(exc: BaseException) -> aiomqtt.MqttError:
        try:
            try:
                raise exc
            except BaseException as inner:
                raise aiomqtt.MqttError(str(inner)) from None
        except aiomqtt.MqttError as outer:
            return outer

    cases = [
        (MqttConnectError(4), "auth"),
        (MqttConnectError(5), "auth"),
        (MqttConnectError(2), "refused"),
        (MqttConnectError(3), "unavailable"),
        (wrapped(ConnectionRefusedError(111, "Connection refused")), "unreachable"),
        (wrapped(socket.gaierror(-2, "Name or service not known")), "unreachable"),
        (wrapped(ssl.SSLCertVerificationError(1, "certificate verify failed")), "tls"),
        (aiomqtt.MqttError("Operation timed out"), "timeout"),
        (aiomqtt.MqttCodeError(7, "Unexpected disconnection"), "lost"),
    ]
    for exc, reason in cases:
        failure = classify_connect_error(exc)
        assert failure.reason == reason, (exc, failure)
        assert failure.config == (reason in ("auth", "tls", "refused"))
    hinted = classify_connect_error(
        aiomqtt.MqttError("Operation timed out"),
        "failed to receive on socket: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert",
    )
    assert hinted.reason == "tls" and "CERTIFICATE_REQUIRED" in hinted.detail


def test_mqtt_run_with_a_bad_ca_file_exits_9_in_one_line_before_anything_starts(
    certs, tmp_path, capsys
):
    """`sleepstream run --mqtt-ca-file <not PEM>`: exit code 9, one line naming the flag
    and the file, no traceback, and nothing started (no state directory)."""
    from sleepstream.cli import main

    state = tmp_path / "state"
    rc = main([
        "run", "--source", "synthetic-night", "--mqtt", "mqtts://127.0.0.1:1",
        "--mqtt-ca-file", str(certs / "garbage.pem"), "--state-dir", str(state), "--no-metrics",
    ])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 9
    assert "--mqtt-ca-file" in err and "garbage.pem" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not state.exists()


@pytest.mark.slow
def test_mqtt_run_with_a_wrong_password_exits_9_at_start(
    certs, tls_broker, tiny_model, tmp_path, helpers
):
    """`sleepstream run` against a broker that refuses the password: exit code 9 at
    start-up with the broker's answer, not a daemon retrying all night."""
    env = helpers.daemon_env() | {"SLEEPSTREAM_MQTT_PASSWORD": "wrong"}
    cmd = helpers.sleepstream_cmd(
        "run", "--source", "synthetic-night", "--mqtt",
        f"mqtts://night@127.0.0.1:{tls_broker.port}",
        "--mqtt-ca-file", str(certs / "ca.pem"), "--mqtt-cert-file", str(certs / "client.pem"),
        "--mqtt-key-file", str(certs / "client.key"), "--model", str(tiny_model),
        "--state-dir", str(tmp_path / "state"), "--no-metrics", "--quiet",
    )  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert "Not authorized" in proc.stderr and "Traceback" not in proc.stderr
    assert sum("Not authorized" in line for line in proc.stderr.splitlines()) == 1
