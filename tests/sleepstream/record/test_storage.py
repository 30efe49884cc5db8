"""Storage faults never stop live staging (issue 13 class 3), on real file systems.

A small tmpfs (``small_fs``) gives a really full disk, a read-only remount gives
``EROFS``; a night directory removed under the recorder gives ``ENOENT``. Each test
drives the recorder through the fault and checks that every call returned, that the
fault is logged and counted, and that no data already collected is lost.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import stat
import subprocess
import warnings

import numpy as np
import pytest

from sleepstream.record import files
from sleepstream.record.storage import FAULT_KINDS, StorageFaults, fault_kind
from sleepstream.sinks.recorder import Recorder


def _night(rec: Recorder) -> dict:
    return json.loads((rec.night_dir / "night.json").read_text())


def test_fault_kind_numpy_full_disk_has_no_errno(small_fs, kit):
    """numpy's tofile on a full tmpfs raises OSError(errno=None): still classed disk_full."""
    fs = small_fs("256k")
    kit.fill(fs)
    with pytest.raises(OSError) as err, open(fs / "x.bin", "wb") as fh:
        np.zeros(10_000).tofile(fh)
    assert err.value.errno is None  # the instance of the report
    assert fault_kind(err.value, fs) == "disk_full"
    with pytest.raises(OSError) as err2, open(fs / "y.bin", "wb") as fh:
        fh.write(b"\0" * 65536)
        fh.flush()
    assert err2.value.errno == errno.ENOSPC and fault_kind(err2.value, fs) == "disk_full"


def test_fault_kinds_of_other_failures(tmp_path):
    """Every other failure has its kind; an errno-less error with free space is io_error."""
    assert fault_kind(OSError(errno.EROFS, "ro"), tmp_path) == "read_only"
    assert fault_kind(PermissionError(errno.EACCES, "no"), tmp_path) == "permission"
    assert fault_kind(FileNotFoundError(errno.ENOENT, "gone"), tmp_path) == "missing"
    assert fault_kind(OSError(errno.EIO, "io"), tmp_path) == "io_error"
    assert fault_kind(OSError("1 requested and 0 written"), tmp_path) == "io_error"
    assert fault_kind(RuntimeError("bug"), tmp_path) == "internal"
    assert {"disk_full", "read_only", "permission", "missing", "io_error", "internal"} == set(
        FAULT_KINDS
    )


def test_storage_faults_log_once_per_run_and_count(tmp_path, caplog):
    """A run of failures of one file kind logs its first line, then once a minute, and one
    line on recovery; another kind's success does not end the run."""
    t = [0.0]
    manifest: dict = {}
    faults = StorageFaults(manifest, device="bed1", clock=lambda: t[0])
    with caplog.at_level(logging.WARNING, "sleepstream.sinks.recorder"):
        for k in range(9):
            t[0] = 10.0 * k
            faults.failed("raw_0001.edf", OSError(errno.ENOSPC, "No space left"), tmp_path)
        faults.failed("night.json", OSError(errno.ENOSPC, "No space left"), tmp_path)
        faults.succeeded("night.json")  # another file's success does not end the raw run
        assert faults.in_a_row == {"raw": 9}
        faults.succeeded("raw_0001.edf")
        assert faults.in_a_row == {}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5, lines  # raw at t = 0 and 60 s; night.json and its recovery; raw ok
    assert "disk_full" in lines[0] and "staging continues" in lines[0]
    assert "(5 more since the last line)" in lines[1]
    assert "night.json works again" in lines[3] and "raw_0001.edf works again" in lines[4]
    assert manifest["storage_errors"] == 10
    assert manifest["storage_errors_by_kind"] == {"disk_full": 10}
    assert manifest["last_storage_error"].startswith("night.json: disk_full")


def _run(rec: Recorder, x: np.ndarray, kit, *, at=None, every: int = 6) -> int:
    """Feed ``x`` in 5-s chunks and one epoch per 30 s; call ``at[i]()`` before chunk i."""
    at = at or {}

    async def go() -> int:
        n = 0
        async with rec:
            for i, c in enumerate(kit.chunks(x)):
                if i in at:
                    await rec.sync()
                    at[i]()
                await rec.write_chunk(c)
                if (i + 1) % every == 0:
                    k = (i + 1) // every - 1
                    await rec.publish(kit.epoch(k), kit.prediction(k, k % 5))
                    n += 1
        return n

    return asyncio.run(go())


def test_recorder_full_disk_keeps_data_in_memory_and_writes_it_when_space_returns(
    small_fs, kit, caplog
):
    """A really full tmpfs mid-night: every call returns, the segments wait in memory and
    reach the disk once space is freed; nothing collected is lost."""
    fs = small_fs("1m")
    x = kit.noise(30 * 100 * 12)  # 12 epochs, 6 segments of 60 s
    rec = Recorder(fs / "state", device="bed1", segment_seconds=60, retry_s=0, min_rewrite_s=0)
    state = {}

    def full() -> None:
        state["ballast"] = kit.fill(fs)

    def seen_full() -> None:
        state["during"] = json.loads(json.dumps(rec.manifest))
        state["ballast"].unlink()

    with caplog.at_level(logging.ERROR, "sleepstream.sinks.recorder"):
        n = _run(rec, x, kit, at={12: full, 48: seen_full})
    assert n == 12  # staging went on: every epoch was handed over and returned
    during = state["during"]
    assert during["storage_errors_by_kind"].get("disk_full", 0) >= 1
    assert len(during["pending_segments"]) >= 2  # held in memory while the disk was full
    assert any("disk_full" in r.getMessage() for r in caplog.records)
    m = _night(rec)
    assert m["status"] == "closed" and m["lost_segments"] == [] and m["pending_segments"] == []
    assert [s["file"] for s in m["segments"]] == [f"raw_{k:04d}.edf" for k in range(6)]
    got = kit.read_segments(rec.night_dir, m)
    step = np.ptp(x, axis=1, keepdims=True) / 65535
    assert got.shape == x.shape and np.all(np.abs(got - x) <= step)
    rows = (rec.night_dir / "hypnogram.csv").read_text().splitlines()
    assert len(rows) == 13


def test_recorder_disk_full_until_close_lists_the_lost_segments(small_fs, kit):
    """A disk that never frees: the recorder closes without raising and says what is lost."""
    fs = small_fs("1m")
    x = kit.noise(30 * 100 * 6)
    rec = Recorder(fs / "state", device="bed1", segment_seconds=60, retry_s=0, min_rewrite_s=0)
    n = _run(rec, x, kit, at={12: lambda: kit.fill(fs)})
    assert n == 6
    m = rec.manifest  # night.json itself may not be writable any more
    assert [s["file"] for s in m["segments"]] == ["raw_0000.edf"]
    assert [s["file"] for s in m["lost_segments"]] == ["raw_0001.edf", "raw_0002.edf"]
    assert all("not written before the recorder closed" in s["reason"] for s in m["lost_segments"])
    assert m["storage_errors_by_kind"]["disk_full"] >= 2 and m["status"] == "closed"
    on_disk = json.loads((rec.night_dir / "night.json").read_text())
    assert on_disk["segments"][0]["file"] == "raw_0000.edf"  # the last good version is whole


def test_recorder_memory_bound_gives_up_the_oldest_segment(small_fs, kit):
    """While the disk stays full, memory is bounded: the oldest unwritten segment is lost first."""
    fs = small_fs("1m")
    x = kit.noise(30 * 100 * 10)
    one_segment = 2 * 6000 * 8  # bytes of a 60-s float64 segment
    rec = Recorder(
        fs / "state", device="bed1", segment_seconds=60, retry_s=0, min_rewrite_s=0,
        max_backlog_bytes=int(1.5 * one_segment),
    )  # fmt: skip
    state = {}

    def free() -> None:
        state["lost"] = [s["file"] for s in rec.manifest["lost_segments"]]
        state["ballast"].unlink()

    n = _run(rec, x, kit, at={12: lambda: state.update(ballast=kit.fill(fs)), 48: free})
    assert n == 10
    assert state["lost"] == ["raw_0001.edf", "raw_0002.edf"]  # 3 waited, room for 1
    m = _night(rec)
    assert [s["file"] for s in m["lost_segments"]] == ["raw_0001.edf", "raw_0002.edf"]
    assert all("memory bound" in s["reason"] for s in m["lost_segments"])
    assert [s["file"] for s in m["segments"]] == ["raw_0000.edf", "raw_0003.edf", "raw_0004.edf"]


def test_recorder_read_only_file_system_then_writable(small_fs, kit):
    """A file system remounted read-only (EROFS) and back: counted as read_only, nothing lost."""
    fs = small_fs("4m")
    x = kit.noise(30 * 100 * 8)
    rec = Recorder(fs / "state", device="bed1", segment_seconds=60, retry_s=0, min_rewrite_s=0)
    n = _run(rec, x, kit, at={12: lambda: kit.remount(fs, "ro"), 30: lambda: kit.remount(fs, "rw")})
    assert n == 8
    m = _night(rec)
    assert m["storage_errors_by_kind"].get("read_only", 0) >= 1
    assert m["lost_segments"] == [] and len(m["segments"]) == 4
    got = kit.read_segments(rec.night_dir, m)
    assert got.shape == x.shape


def test_recorder_night_directory_removed_mid_night_is_recreated(tmp_path, kit):
    """Someone deletes the night folder mid-night: it comes back (0700) with the later data."""
    x = kit.noise(30 * 100 * 6)
    rec = Recorder(
        tmp_path / "state", device="bed1", segment_seconds=60, retry_s=0, min_rewrite_s=0
    )
    n = _run(rec, x, kit, at={24: lambda: shutil.rmtree(rec.night_dir)})
    assert n == 6
    m = _night(rec)
    assert stat.S_IMODE(rec.night_dir.stat().st_mode) == 0o700
    on_disk = sorted(p.name for p in rec.night_dir.glob("raw_*.edf"))
    assert on_disk == ["raw_0002.edf"]  # 0 and 1 went with the folder; 2 was written after
    assert m["status"] == "closed" and len(m["segments"]) == 3
    assert len((rec.night_dir / "hypnogram.csv").read_text().splitlines()) == 7


def test_recorder_writer_bug_is_a_counted_fault_not_a_crash(tmp_path, kit, monkeypatch):
    """A bug in a writer (here: the stages EDF writer raises RuntimeError, injected) is an
    ``internal`` storage fault; publishing and the other files go on."""

    def broken(*args, **kw):
        raise RuntimeError("writer bug")

    monkeypatch.setattr(files, "write_stages_edf", broken)
    x = kit.noise(30 * 100 * 3)
    rec = Recorder(tmp_path / "state", device="bed1", segment_seconds=60)
    assert _run(rec, x, kit) == 3
    m = _night(rec)
    assert m["storage_errors_by_kind"].get("internal", 0) >= 1
    assert "RuntimeError: writer bug" in m["last_storage_error"]
    assert len(m["segments"]) == 2
    assert len((rec.night_dir / "hypnogram.csv").read_text().splitlines()) == 4


def test_recorder_bad_chunk_is_a_fault_not_a_crash(tmp_path, kit):
    """A malformed chunk (1-D samples) is an internal fault; later chunks are kept."""
    from sleepstream.types import Chunk

    x = kit.noise(30 * 100 * 2)

    async def go() -> Recorder:
        async with Recorder(tmp_path / "state", device="bed1", segment_seconds=60) as rec:
            await rec.write_chunk(Chunk(x[0, :10], np.arange(10.0) / 100, 100.0, kit.CHANNELS, 0))
            for c in kit.chunks(x):
                await rec.write_chunk(c)
        return rec

    rec = asyncio.run(go())
    m = _night(rec)
    assert m["storage_errors_by_kind"] == {"internal": 1}
    assert sum(s["n_samples"] for s in m["segments"]) == x.shape[1]


NAMESPACE_SCRIPT = r"""
set -u
mount -t tmpfs -o size=$SIZE tmpfs "$FS" || exit 97
"$@" > "$OUT/stdout" 2> "$OUT/stderr"
rc=$?
cp -r "$FS/state/nights" "$OUT/" 2>/dev/null
exit $rc
"""


def _namespace_prefix() -> list[str] | None:
    """``unshare`` argv giving a private mount namespace (so the tmpfs dies with it)."""
    if shutil.which("unshare") is None:
        return None
    prefix = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        prefix[1:1] = ["--user", "--map-root-user"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


@pytest.mark.slow
@pytest.mark.network
def test_daemon_on_a_really_full_disk_stages_every_epoch(tmp_path, sc4001_dir, helpers):
    """The reported instance: ``run`` on a 400 kB tmpfs. Raw segments (67 kB each) fill
    the disk; the daemon still scores all 80 epochs, exits 0, logs the fault, and
    night.json (written from the reserve at close) lists what could not be written."""
    import edfio

    prefix = _namespace_prefix()
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare) to mount a small tmpfs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        psg = edfio.read_edf(sc4001_dir / "SC4001E0-PSG.edf")
    signals = [edfio.EdfSignal(psg.signals[i].data[:240000], 100.0, label=psg.signals[i].label,
                               physical_dimension="uV") for i in (0, 1)]  # fmt: skip
    short = tmp_path / "sc4001_40min.edf"
    edfio.Edf(signals, starttime=psg.starttime, recording=psg.recording).write(short)
    fs_dir, out = tmp_path / "fs", tmp_path / "out"
    fs_dir.mkdir()
    out.mkdir()
    argv = helpers.sleepstream_cmd(
        "run", "--source", f"edf:{short}", "--speed", "max", "--json", "--no-metrics",
        "--broker-port", str(helpers.free_port()), "--state-dir", str(fs_dir / "state"),
    )  # fmt: skip
    env = helpers.daemon_env() | {"SIZE": "400k", "FS": str(fs_dir), "OUT": str(out)}
    proc = subprocess.run(
        [*prefix, "sh", "-c", NAMESPACE_SCRIPT, "sh", *argv], env=env, timeout=300
    )
    if proc.returncode == 97:
        pytest.skip("cannot mount a tmpfs in a private mount namespace here")
    stderr = (out / "stderr").read_text()
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    events = [json.loads(ln) for ln in (out / "stdout").read_text().splitlines() if ln.strip()]
    assert [e["epoch_index"] for e in events if "epoch_index" in e] == list(range(80))
    assert "disk_full" in stderr and "staging continues" in stderr
    night = next(out.glob("nights/*/*/night.json")).parent
    m = json.loads((night / "night.json").read_text())
    assert m["status"] == "closed" and m["storage_errors_by_kind"].get("disk_full", 0) >= 1
    assert m["segments"] and m["lost_segments"] and not m["pending_segments"]
    covered = sorted((s["start_s"], s["duration_s"]) for s in m["segments"] + m["lost_segments"])
    assert covered == [(300.0 * k, 300.0) for k in range(8)]  # every segment is accounted for
    rows = (night / "hypnogram.csv").read_text().splitlines()
    assert len(rows) == 81  # the final stages were written from the reserve


def test_recorder_faults_reach_the_daemons_metrics(small_fs, kit):
    """The daemon's Metrics count each fault by kind and show the bytes held in memory."""
    from sleepstream.metrics import Metrics

    fs = small_fs("1m")
    metrics = Metrics()
    metrics.add_device("bed1")
    x = kit.noise(30 * 100 * 6)
    rec = Recorder(
        fs / "state", device="bed1", segment_seconds=60, retry_s=0, min_rewrite_s=0,
        metrics=metrics,
    )  # fmt: skip
    seen = {}

    def look() -> None:
        reg = metrics.registry
        seen["full"] = reg.get_sample_value(
            "sleepstream_storage_errors_total", {"device": "bed1", "kind": "disk_full"}
        )
        seen["backlog"] = reg.get_sample_value(
            "sleepstream_recorder_backlog_bytes", {"device": "bed1"}
        )
        seen["ro"] = reg.get_sample_value(
            "sleepstream_storage_errors_total", {"device": "bed1", "kind": "read_only"}
        )

    _run(rec, x, kit, at={12: lambda: kit.fill(fs), 30: look})
    assert seen["full"] >= 1 and seen["ro"] == 0
    assert seen["backlog"] == 2 * 6000 * 8  # segment 1 waits in memory (float64)
    assert metrics.registry.get_sample_value(
        "sleepstream_recorder_backlog_bytes", {"device": "bed1"}
    ) == 0  # fmt: skip
