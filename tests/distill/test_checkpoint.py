"""Checkpoints survive a process killed while writing them (no mixed sets)."""

from __future__ import annotations

import shutil

import torch

from distill.checkpoint import load_weights, read_sidecar, save_checkpoint


def _net(v: float) -> torch.nn.Module:
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(v)
    return net


def test_partial_write_is_dropped_and_complete_write_is_finished(tmp_path):
    """A killed writer leaves the old checkpoint (incomplete new set) or the new one
    (complete set, renames unfinished) — never new weights with an old sidecar."""
    p = tmp_path / "last.safetensors"
    opt = torch.optim.Adam(_net(1.0).parameters())
    save_checkpoint(p, _net(1.0), {"epoch": 1}, optimizer=opt)
    # killed after the new weights, before the sidecar: the old set stays
    save_checkpoint(tmp_path / "other.safetensors", _net(2.0), {"epoch": 2})
    shutil.copy(tmp_path / "other.safetensors", tmp_path / "last.safetensors.new")
    net = _net(0.0)
    load_weights(p, net)
    assert net.weight[0, 0].item() == 1.0 and read_sidecar(p)["epoch"] == 1
    assert not (tmp_path / "last.safetensors.new").exists()
    assert (tmp_path / "last.optim.safetensors").exists()
    # killed after the whole new set, before the renames: the new set wins
    shutil.copy(tmp_path / "other.safetensors", tmp_path / "last.safetensors.new")
    shutil.copy(tmp_path / "other.json", tmp_path / "last.json.new")
    assert read_sidecar(p)["epoch"] == 2
    load_weights(p, net)
    assert net.weight[0, 0].item() == 2.0
    assert not (tmp_path / "last.optim.safetensors").exists()  # the new set has none
    assert not list(tmp_path.glob("*.new"))
