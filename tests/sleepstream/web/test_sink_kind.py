"""``--web``: the live view's sink kind (flag, environment, beds.toml, start-up checks)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sleepstream.sinks import registry
from sleepstream.web.sink import SINK, WebOptions

LAUNCH = (
    "import sys\n"
    "from sleepstream.sinks import registry\n"
    "if 'web' not in registry.SINKS:\n"
    "    registry.register_sink('web', 'sleepstream.web.sink:SINK')\n"
    "from sleepstream.cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


@pytest.fixture
def web_kind():
    """The web kind registered for this test (restored afterwards)."""
    before = dict(registry.SINKS)
    if "web" not in registry.SINKS:
        registry.register_sink("web", SINK)
    yield SINK
    if "web" not in before:
        registry.unregister_sink("web")


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, "run", *args], capture_output=True, text=True,
        timeout=120, env=env,
    )  # fmt: skip


def test_web_is_off_by_default(web_kind):
    """No flag: the kind builds no factory (nothing listens)."""
    assert WebOptions().address is None
    assert web_kind.factory(WebOptions(), None) is None


@pytest.mark.slow
def test_beyond_loopback_without_token_is_refused_before_listening(tmp_path, helpers):
    """`--web 0.0.0.0:PORT` without a token: exit 2, one line naming the flag; no listener."""
    port = helpers.free_port()
    env = helpers.daemon_env(tmp_path)
    proc = _run("--source", "synthetic-night", "--web", f"0.0.0.0:{port}", "--no-metrics",
                "--quiet", "--state-dir", str(tmp_path / "s"), env=env)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"--web 0.0.0.0:{port}: listening beyond loopback needs a token" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not helpers.wait_port(port, 0.2)


@pytest.mark.slow
def test_bad_address_names_the_flag(tmp_path, helpers):
    """A malformed address is a usage error naming --web."""
    proc = _run("--source", "synthetic-night", "--web", "host:port", "--no-metrics",
                env=helpers.daemon_env(tmp_path))  # fmt: skip
    assert proc.returncode == 2
    assert "--web" in proc.stderr and "Traceback" not in proc.stderr


def test_beds_file_and_environment_set_the_address(tmp_path, web_kind, monkeypatch):
    """beds.toml `[daemon] web = 8088` and $SLEEPSTREAM_WEB reach the kind's config."""
    from sleepstream.config import load_beds

    beds = tmp_path / "beds.toml"
    beds.write_text(
        '[daemon]\nweb = 8088\n\n[[device]]\nname = "bed1"\nsource = "synthetic-night"\n'
    )
    assert web_kind.config_of(load_beds(beds)).address == "8088"
    beds.write_text(
        '[daemon]\nweb = "host:x"\n\n[[device]]\nname = "bed1"\nsource = "synthetic-night"\n'
    )
    with pytest.raises(Exception, match="web"):
        load_beds(beds)
