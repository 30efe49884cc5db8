"""`torchrun -m distill train` on CPU (gloo, 2 processes): rank-0 checkpoints, and a run
whose rank 1 is killed resumes from the last checkpoint and ends with the same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill.ddpcheck import free_port

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]


def _train_args(out: Path, data: Path) -> list[str]:
    return ["-m", "distill", "train", "--model", "tiny-student", "--split", "full",
            "--pretrain-epochs", "6", "--epochs", "0", "--pretrain-batch-size", "64",
            "--seq-len", "3", "--data", str(data), "--out", str(out), "--resume",
            "--no-progress"]  # fmt: skip


def _rank_pids(parent: int, rank: str) -> list[int]:
    import psutil

    out = []
    for p in psutil.Process(parent).children(recursive=True):
        try:
            if p.environ().get("RANK") == rank and "distill" in " ".join(p.cmdline()):
                out.append(p.pid)
        except psutil.Error:
            pass
    return out


@pytest.mark.slow
def test_torchrun_resumes_after_a_killed_rank(shared_data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    rc = subprocess.run([*TORCHRUN, "--master-port", str(free_port()),
                         *_train_args(straight, shared_data)], env=env,
                        capture_output=True, text=True, timeout=600)  # fmt: skip
    assert rc.returncode == 0, rc.stderr[-2000:]
    assert (
        len(json.loads((straight / "pretrain-last.json").read_text())["train_state"]["history"])
        == 6
    )

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*TORCHRUN, "--max-restarts", "1", "--master-port", str(free_port()),
                             *_train_args(killed, shared_data)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    side = killed / "pretrain-last.json"
    deadline = time.monotonic() + 300
    victim = []
    while time.monotonic() < deadline and not victim:
        if side.is_file():
            victim = _rank_pids(proc.pid, "1")
        time.sleep(0.05)
    assert victim, "rank 1 never wrote a checkpoint"
    os.kill(victim[0], signal.SIGKILL)  # mid-run: epoch 1 of 6 is checkpointed
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    hist = json.loads(side.read_text())["train_state"]["history"]
    assert [h["epoch"] for h in hist] == list(range(6))
    assert "exitcode: -9" in err  # rank 1 died; torchrun restarted the group (rc 0)
    a = load_file(str(straight / "best.safetensors"))
    b = load_file(str(killed / "best.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
